package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

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

// fwCallTimeout bounds one firewall batch, probe or read-back.
const fwCallTimeout = 20 * time.Second

// firewallState is the agent's side of the firewall: the mode every shim
// gets, and one lock that serialises every rule change on the host.
type firewallState struct {
	mu     sync.Mutex
	fw     *firewall.Firewall // nil when off
	mode   shimapi.FirewallMode
	caps   firewall.Capabilities
	reject bool
}

// startFirewall probes the kernel once and settles the mode.
func (a *Agent) startFirewall(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
	defer cancel()
	want := a.cfg.Firewall
	if want == "" {
		want = FirewallAuto
	}
	if want == string(shimapi.FirewallOff) {
		a.fw.mode = shimapi.FirewallOff
		a.log.Warn("firewall off: VM traffic is not filtered by Infinivirt")
		return nil
	}
	caps, err := firewall.Probe(ctx)
	if err != nil {
		return fmt.Errorf("probe the kernel's nftables: %w", err)
	}
	switch {
	case want == string(shimapi.FirewallConntrack) && !caps.Conntrack:
		return fmt.Errorf("--firewall=conntrack: the kernel lacks nf_conntrack_bridge; use stateless or auto")
	case want == string(shimapi.FirewallConntrack) || want == FirewallAuto && caps.Conntrack:
		a.fw.mode = shimapi.FirewallConntrack
	case want == string(shimapi.FirewallStateless) || want == FirewallAuto:
		a.fw.mode = shimapi.FirewallStateless
		if want == FirewallAuto {
			a.log.Warn("kernel lacks nf_conntrack_bridge: filtering statelessly; connectionState rules are refused (see pkg/firewall/STATELESS.md)")
		}
	default:
		return fmt.Errorf("--firewall must be auto, conntrack, stateless or off, got %q", want)
	}
	if !caps.Reject {
		a.log.Info("kernel lacks nft_reject_bridge: REJECT rules are refused")
	}
	a.fw.caps, a.fw.reject = caps, caps.Reject
	a.fw.fw, err = firewall.New(ctx, firewall.Options{Stateless: a.fw.mode == shimapi.FirewallStateless, Caps: &caps})
	return err
}

// resyncFirewall re-applies every department and running VM from the
// persisted state: after an agent restart or a host reboot, the kernel
// holds exactly what the files say.
func (a *Agent) resyncFirewall(ctx context.Context) {
	if a.fw.fw == nil {
		return
	}
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	depts, err := vmspec.ListDepartments(a.cfg.Layout)
	if err != nil {
		a.log.Error("cannot read departments", "ERROR", err.Error())
		return
	}
	for _, d := range depts {
		vms := a.runningFirewallVMs(d.ID)
		if len(vms) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
		err := a.fw.fw.Resync(cctx, d, vms)
		cancel()
		if err != nil {
			a.log.Error("firewall resync failed; the department's VMs are dropped", "DEPARTMENT", d.ID, "ERROR", err.Error())
		}
	}
}

// runningFirewallVMs are the firewall views of the department's VMs whose
// shims run.
func (a *Agent) runningFirewallVMs(dept string) []firewall.VM {
	var out []firewall.VM
	for _, rec := range a.records() {
		if rec.currentStatus().Terminal() {
			continue
		}
		st, err := vmspec.LoadVMFirewall(a.cfg.Layout, rec.id)
		if err != nil || st.Department != dept {
			continue
		}
		out = append(out, st.FirewallVM(rec.currentSpec()))
	}
	return out
}

// FirewallInfo is what GET /v1/firewall answers.
type FirewallInfo struct {
	Mode         shimapi.FirewallMode  `json:"mode"`
	Capabilities firewall.Capabilities `json:"capabilities"`
}

// Firewall reports the mode and what the kernel offers.
func (a *Agent) Firewall() FirewallInfo {
	return FirewallInfo{Mode: a.fw.mode, Capabilities: a.fw.caps}
}

// checkMode refuses what the kernel cannot enforce, before anything changes.
func (a *Agent) checkMode(check func(firewall.Mode) error) error {
	if a.fw.fw == nil {
		return nil
	}
	return check(a.fw.fw.Mode())
}

// Departments lists every department's firewall.
func (a *Agent) Departments() ([]firewall.Department, error) {
	return vmspec.ListDepartments(a.cfg.Layout)
}

// Department returns one department's firewall.
func (a *Agent) Department(id string) (firewall.Department, error) {
	if err := vmspec.CheckDepartmentID("id", id); err != nil {
		return firewall.Department{}, err
	}
	return vmspec.LoadDepartment(a.cfg.Layout, id)
}

// PutDepartment creates or replaces a department's policy and rules and
// applies them to all its running VMs in one atomic batch. Input the kernel
// cannot enforce is refused before anything changes.
func (a *Agent) PutDepartment(ctx context.Context, d firewall.Department) (firewall.Department, error) {
	if err := vmspec.CheckDepartmentID("id", d.ID); err != nil {
		return d, err
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	if err := a.checkMode(func(m firewall.Mode) error { return m.CheckDepartment(d) }); err != nil {
		return d, err
	}
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	if a.fw.fw != nil {
		if vms := a.runningFirewallVMs(d.ID); len(vms) > 0 {
			cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
			err := a.fw.fw.ApplyDepartment(cctx, d, vms)
			cancel()
			if err != nil {
				return d, errdefs.Internal("apply department %s to %d VMs: %v", d.ID, len(vms), err)
			}
		}
	}
	if err := vmspec.SaveDepartment(a.cfg.Layout, d); err != nil {
		return d, errdefs.Internal("save department: %v", err)
	}
	a.log.Info("department firewall applied", "DEPARTMENT", d.ID, "RULES", len(d.RuleSet.Rules))
	return d, nil
}

// DeleteDepartment removes a department no VM belongs to.
func (a *Agent) DeleteDepartment(ctx context.Context, id string) error {
	if err := vmspec.CheckDepartmentID("id", id); err != nil {
		return err
	}
	if id == vmspec.DefaultDepartment {
		return errdefs.FailedPrecondition("the default department cannot be deleted")
	}
	if _, err := vmspec.LoadDepartment(a.cfg.Layout, id); err != nil {
		return err
	}
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	var members []string
	for _, vm := range a.allIDs() { // VMs being created too: see joinDepartment
		if st, err := vmspec.LoadVMFirewall(a.cfg.Layout, vm); err == nil && st.Department == id {
			members = append(members, vm)
		}
	}
	if len(members) > 0 {
		return errdefs.FailedPrecondition("department %s still has VMs: %v", id, members)
	}
	if err := vmspec.DeleteDepartment(a.cfg.Layout, id); err != nil {
		return errdefs.Internal("delete department: %v", err)
	}
	if a.fw.fw != nil {
		cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
		defer cancel()
		if err := a.fw.fw.Prune(cctx); err != nil {
			a.log.Warn("prune firewall chains", "ERROR", err.Error())
		}
	}
	return nil
}

// SetDepartmentPreset turns a service preset on or off for a department.
func (a *Agent) SetDepartmentPreset(ctx context.Context, id string, p firewall.Preset, on bool) (firewall.Department, error) {
	d, err := a.Department(id)
	if err != nil {
		return d, err
	}
	d.RuleSet.Presets, err = togglePreset(d.RuleSet.Presets, p, on)
	if err != nil {
		return d, err
	}
	return a.PutDepartment(ctx, d)
}

// VMFirewall returns a VM's firewall state.
func (a *Agent) VMFirewall(id string) (vmspec.VMFirewall, error) {
	if _, err := a.get(id); err != nil {
		return vmspec.VMFirewall{}, err
	}
	return vmspec.LoadVMFirewall(a.cfg.Layout, id)
}

// PutVMFirewall replaces a VM's department, rules and known addresses, and
// applies them at once if the VM runs.
func (a *Agent) PutVMFirewall(ctx context.Context, id string, st vmspec.VMFirewall) (vmspec.VMFirewall, error) {
	rec, err := a.get(id)
	if err != nil {
		return st, err
	}
	if err := st.Validate(); err != nil {
		return st, err
	}
	nic := st.FirewallVM(rec.currentSpec())
	if err := a.checkMode(func(m firewall.Mode) error { return m.CheckVM(nic) }); err != nil {
		return st, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return st, err
	}
	defer unlock()
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	// Under the firewall lock, so that DeleteDepartment cannot remove it meanwhile.
	dept, err := vmspec.LoadDepartment(a.cfg.Layout, st.Department)
	if err != nil {
		return st, errdefs.Invalid("department", "%v", err)
	}
	if a.fw.fw != nil && !rec.currentStatus().Terminal() {
		cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
		err := a.fw.fw.ApplyVM(cctx, dept, nic)
		cancel()
		if err != nil {
			return st, errdefs.Internal("apply VM firewall: %v", err)
		}
	}
	if err := vmspec.SaveVMFirewall(a.cfg.Layout, id, st); err != nil {
		return st, errdefs.Internal("save VM firewall: %v", err)
	}
	a.log.Info("VM firewall applied", logging.KeyVM, id, "DEPARTMENT", st.Department, "RULES", len(st.RuleSet.Rules))
	return st, nil
}

// SetVMPreset turns a service preset on or off for one VM.
func (a *Agent) SetVMPreset(ctx context.Context, id string, p firewall.Preset, on bool) (vmspec.VMFirewall, error) {
	st, err := a.VMFirewall(id)
	if err != nil {
		return st, err
	}
	if st.RuleSet.Presets, err = togglePreset(st.RuleSet.Presets, p, on); err != nil {
		return st, err
	}
	return a.PutVMFirewall(ctx, id, st)
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

// EffectiveFirewall shows what a VM's traffic meets.
func (a *Agent) EffectiveFirewall(ctx context.Context, id string) (EffectiveFirewall, error) {
	rec, err := a.get(id)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	st, err := vmspec.LoadVMFirewall(a.cfg.Layout, id)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	dept, err := vmspec.LoadDepartment(a.cfg.Layout, st.Department)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	vm := st.FirewallVM(rec.currentSpec())
	out := EffectiveFirewall{
		Mode:       a.fw.mode,
		Department: dept.ID,
		Effective:  firewall.ComputeEffective(dept, vm, a.fw.mode == shimapi.FirewallStateless),
	}
	if a.fw.fw != nil && !rec.currentStatus().Terminal() {
		cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
		defer cancel()
		if out.Kernel, err = a.fw.fw.VMRuleset(cctx, id); err != nil {
			return out, errdefs.Internal("read the VM's rules back: %v", err)
		}
		out.NICCounters = map[string]map[string]uint64{}
		for _, nic := range vm.NICs {
			c, err := a.fw.fw.Counters(cctx, id, nic.Name)
			if err != nil {
				return out, errdefs.Internal("read the counters of NIC %s: %v", nic.Name, err)
			}
			out.NICCounters[nic.Name] = c
		}
		out.Counters = out.NICCounters[firewall.PrimaryNIC]
	}
	return out, nil
}

func togglePreset(list []firewall.Preset, p firewall.Preset, on bool) ([]firewall.Preset, error) {
	if !slices.Contains(firewall.Presets(), p) {
		return list, errdefs.NotFound("no preset %q; presets are %v", p, firewall.Presets())
	}
	list = slices.DeleteFunc(slices.Clone(list), func(x firewall.Preset) bool { return x == p })
	if on {
		list = append(list, p)
	}
	return list, nil
}
