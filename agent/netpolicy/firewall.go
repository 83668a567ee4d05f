package netpolicy

import (
	"context"
	"fmt"
	"slices"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Firewall settings an operator can choose.
const (
	FirewallAuto = "auto" // conntrack where the kernel has it, otherwise stateless
)

// Start probes the kernel once and settles the mode: want is auto (or
// empty), conntrack, stateless or off.
func (p *Policy) Start(ctx context.Context, want string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if want == "" {
		want = FirewallAuto
	}
	if want == string(shimapi.FirewallOff) {
		p.mode = shimapi.FirewallOff
		p.log.Warn("firewall off: VM traffic is not filtered by Infinivirt")
		return nil
	}
	caps, err := p.kernel.Probe(ctx)
	if err != nil {
		return fmt.Errorf("probe the kernel's nftables: %w", err)
	}
	switch {
	case want == string(shimapi.FirewallConntrack) && !caps.Conntrack:
		return fmt.Errorf("--firewall=conntrack: the kernel lacks nf_conntrack_bridge; use stateless or auto")
	case want == string(shimapi.FirewallConntrack) || want == FirewallAuto && caps.Conntrack:
		p.mode = shimapi.FirewallConntrack
	case want == string(shimapi.FirewallStateless) || want == FirewallAuto:
		p.mode = shimapi.FirewallStateless
		if want == FirewallAuto {
			p.log.Warn("kernel lacks nf_conntrack_bridge: filtering statelessly; connectionState rules are refused (see pkg/firewall/STATELESS.md)")
		}
	default:
		return fmt.Errorf("--firewall must be auto, conntrack, stateless or off, got %q", want)
	}
	if !caps.Reject {
		p.log.Info("kernel lacks nft_reject_bridge: REJECT rules are refused")
	}
	p.caps, p.reject = caps, caps.Reject
	p.engine, err = p.kernel.Open(ctx, firewall.Options{Stateless: p.mode == shimapi.FirewallStateless, Caps: &caps})
	return err
}

// Resync re-applies every department and running VM from the persisted
// state: after an agent restart or a host reboot, the kernel holds exactly
// what the files say.
func (p *Policy) Resync(ctx context.Context) {
	if p.engine == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	depts, err := vmspec.ListDepartments(p.layout)
	if err != nil {
		p.log.Error("cannot read departments", "ERROR", err.Error())
		return
	}
	for _, d := range depts {
		vms := p.runningVMs(d.ID)
		if len(vms) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := p.engine.Resync(cctx, d, vms)
		cancel()
		if err != nil {
			p.log.Error("firewall resync failed; the department's VMs are dropped", "DEPARTMENT", d.ID, "ERROR", err.Error())
		}
	}
}

// runningVMs are the firewall views of the department's VMs whose shims
// run.
func (p *Policy) runningVMs(dept string) []firewall.VM {
	var out []firewall.VM
	for _, vm := range p.vms.VMs() {
		if !vm.Running {
			continue
		}
		st, err := vmspec.LoadVMFirewall(p.layout, vm.ID)
		if err != nil || st.Department != dept {
			continue
		}
		out = append(out, st.FirewallVM(vm.Spec))
	}
	return out
}

// FirewallInfo is what GET /v1/firewall answers.
type FirewallInfo struct {
	Mode         shimapi.FirewallMode  `json:"mode"`
	Capabilities firewall.Capabilities `json:"capabilities"`
}

// Info reports the mode and what the kernel offers.
func (p *Policy) Info() FirewallInfo {
	return FirewallInfo{Mode: p.mode, Capabilities: p.caps}
}

// checkMode refuses what the kernel cannot enforce, before anything changes.
func (p *Policy) checkMode(check func(firewall.Mode) error) error {
	if p.engine == nil {
		return nil
	}
	return check(p.engine.Mode())
}

// Departments lists every department's firewall.
func (p *Policy) Departments() ([]firewall.Department, error) {
	return vmspec.ListDepartments(p.layout)
}

// Department returns one department's firewall.
func (p *Policy) Department(id string) (firewall.Department, error) {
	if err := vmspec.CheckDepartmentID("id", id); err != nil {
		return firewall.Department{}, err
	}
	return vmspec.LoadDepartment(p.layout, id)
}

// PutDepartment creates or replaces a department's policy and rules and
// applies them to all its running VMs in one atomic batch. Input the kernel
// cannot enforce is refused before anything changes.
func (p *Policy) PutDepartment(ctx context.Context, d firewall.Department) (firewall.Department, error) {
	if err := vmspec.CheckDepartmentID("id", d.ID); err != nil {
		return d, err
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	if err := p.checkMode(func(m firewall.Mode) error { return m.CheckDepartment(d) }); err != nil {
		return d, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.engine != nil {
		if vms := p.runningVMs(d.ID); len(vms) > 0 {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := p.engine.ApplyDepartment(cctx, d, vms)
			cancel()
			if err != nil {
				return d, errdefs.Internal("apply department %s to %d VMs: %v", d.ID, len(vms), err)
			}
		}
	}
	if err := vmspec.SaveDepartment(p.layout, d); err != nil {
		return d, errdefs.Internal("save department: %v", err)
	}
	p.log.Info("department firewall applied", "DEPARTMENT", d.ID, "RULES", len(d.RuleSet.Rules))
	return d, nil
}

// DeleteDepartment removes a department no VM belongs to.
func (p *Policy) DeleteDepartment(ctx context.Context, id string) error {
	if err := vmspec.CheckDepartmentID("id", id); err != nil {
		return err
	}
	if id == vmspec.DefaultDepartment {
		return errdefs.FailedPrecondition("the default department cannot be deleted")
	}
	if _, err := vmspec.LoadDepartment(p.layout, id); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var members []string
	for _, vm := range p.vms.IDs() { // VMs being created too: see JoinDepartment
		if st, err := vmspec.LoadVMFirewall(p.layout, vm); err == nil && st.Department == id {
			members = append(members, vm)
		}
	}
	if len(members) > 0 {
		return errdefs.FailedPrecondition("department %s still has VMs: %v", id, members)
	}
	if err := vmspec.DeleteDepartment(p.layout, id); err != nil {
		return errdefs.Internal("delete department: %v", err)
	}
	if p.engine != nil {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := p.engine.Prune(cctx); err != nil {
			p.log.Warn("prune firewall chains", "ERROR", err.Error())
		}
	}
	return nil
}

// SetDepartmentPreset turns a service preset on or off for a department.
func (p *Policy) SetDepartmentPreset(ctx context.Context, id string, preset firewall.Preset, on bool) (firewall.Department, error) {
	d, err := p.Department(id)
	if err != nil {
		return d, err
	}
	d.RuleSet.Presets, err = TogglePreset(d.RuleSet.Presets, preset, on)
	if err != nil {
		return d, err
	}
	return p.PutDepartment(ctx, d)
}

// JoinDepartment saves a new VM's firewall state in its department. It
// runs under the firewall lock, as DeleteDepartment does, and looks for the
// department again: either the deletion sees the new VM, or the create
// sees the department gone.
func (p *Policy) JoinDepartment(id, dept string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := vmspec.LoadDepartment(p.layout, dept); err != nil {
		return errdefs.Invalid("departmentId", "%v", err)
	}
	if err := vmspec.SaveVMFirewall(p.layout, id, vmspec.VMFirewall{Department: dept}); err != nil {
		return errdefs.Internal("save firewall state: %v", err)
	}
	return nil
}

// CheckDepartment is the create-time check of a requested department.
func (p *Policy) CheckDepartment(id string) (firewall.Department, error) {
	if id == "" {
		id = vmspec.DefaultDepartment
	}
	if err := vmspec.CheckDepartmentID("departmentId", id); err != nil {
		return firewall.Department{}, err
	}
	d, err := vmspec.LoadDepartment(p.layout, id)
	if err != nil {
		return d, errdefs.Invalid("departmentId", "%v", err)
	}
	return d, nil
}

// VMFirewall returns a VM's firewall state.
func (p *Policy) VMFirewall(id string) (vmspec.VMFirewall, error) {
	return vmspec.LoadVMFirewall(p.layout, id)
}

// CheckVMFirewall refuses a VM firewall that is invalid, that names
// addresses for a NIC the VM does not have, or that the kernel cannot
// enforce, before anything changes.
func (p *Policy) CheckVMFirewall(spec *vmspec.Spec, st vmspec.VMFirewall) error {
	if err := st.ValidateFor(spec); err != nil {
		return err
	}
	fv := st.FirewallVM(spec)
	return p.checkMode(func(m firewall.Mode) error { return m.CheckVM(fv) })
}

// PutVMFirewall replaces a VM's department, rules and known addresses, and
// applies them at once if the VM runs. The caller checked st with
// CheckVMFirewall and holds the VM's operation lock.
func (p *Policy) PutVMFirewall(ctx context.Context, vm VM, st vmspec.VMFirewall) (vmspec.VMFirewall, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Under the firewall lock, so that DeleteDepartment cannot remove it meanwhile.
	dept, err := vmspec.LoadDepartment(p.layout, st.Department)
	if err != nil {
		return st, errdefs.Invalid("department", "%v", err)
	}
	if p.engine != nil && vm.Running {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := p.engine.ApplyVM(cctx, dept, st.FirewallVM(vm.Spec))
		cancel()
		if err != nil {
			return st, errdefs.Internal("apply VM firewall: %v", err)
		}
	}
	if err := vmspec.SaveVMFirewall(p.layout, vm.ID, st); err != nil {
		return st, errdefs.Internal("save VM firewall: %v", err)
	}
	p.log.Info("VM firewall applied", logging.KeyVM, vm.ID, "DEPARTMENT", st.Department, "RULES", len(st.RuleSet.Rules))
	return st, nil
}

// reapplyVM installs a running VM's rules again from its persisted state.
func (p *Policy) reapplyVM(ctx context.Context, vm VM) error {
	if p.engine == nil {
		return nil
	}
	st, err := vmspec.LoadVMFirewall(p.layout, vm.ID)
	if err != nil {
		return err
	}
	dept, err := vmspec.LoadDepartment(p.layout, st.Department)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := p.engine.ApplyVM(cctx, dept, st.FirewallVM(vm.Spec)); err != nil {
		return fmt.Errorf("apply firewall: %w", err)
	}
	return nil
}

// EffectiveFirewall is what GET /v1/vms/{id}/firewall/effective answers:
// the rules in evaluation order, and what the kernel holds right now.
type EffectiveFirewall struct {
	Mode       shimapi.FirewallMode `json:"mode"`
	Department string               `json:"department"`
	Effective  firewall.Effective   `json:"effective"`
	// Kernel is the VM's chains as nftables lists them; empty while the VM is off.
	Kernel string `json:"kernel,omitempty"`
	// Counters are the primary NIC's drop counters, NICCounters every NIC's,
	// by NIC name.
	Counters    map[string]uint64            `json:"counters,omitempty"`
	NICCounters map[string]map[string]uint64 `json:"nicCounters,omitempty"`
}

// Effective shows what a VM's traffic meets.
func (p *Policy) Effective(ctx context.Context, vm VM) (EffectiveFirewall, error) {
	st, err := vmspec.LoadVMFirewall(p.layout, vm.ID)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	dept, err := vmspec.LoadDepartment(p.layout, st.Department)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	fv := st.FirewallVM(vm.Spec)
	out := EffectiveFirewall{
		Mode:       p.mode,
		Department: dept.ID,
		Effective:  firewall.ComputeEffective(dept, fv, p.mode == shimapi.FirewallStateless),
	}
	if p.engine != nil && vm.Running {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if out.Kernel, err = p.engine.VMRuleset(cctx, vm.ID); err != nil {
			return out, errdefs.Internal("read the VM's rules back: %v", err)
		}
		out.NICCounters = map[string]map[string]uint64{}
		for _, nic := range fv.NICs {
			c, err := p.engine.Counters(cctx, vm.ID, nic.Name)
			if err != nil {
				return out, errdefs.Internal("read the counters of NIC %s: %v", nic.Name, err)
			}
			out.NICCounters[nic.Name] = c
		}
		out.Counters = out.NICCounters[firewall.PrimaryNIC]
	}
	return out, nil
}

// TogglePreset turns preset on or off in list, which it does not change.
func TogglePreset(list []firewall.Preset, preset firewall.Preset, on bool) ([]firewall.Preset, error) {
	if !slices.Contains(firewall.Presets(), preset) {
		return list, errdefs.NotFound("no preset %q; presets are %v", preset, firewall.Presets())
	}
	list = slices.DeleteFunc(slices.Clone(list), func(x firewall.Preset) bool { return x == preset })
	if on {
		list = append(list, preset)
	}
	return list, nil
}
