package agent

import (
	"context"

	"github.com/infinibay/infinivirt/agent/netpolicy"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// The firewall and the bridges are agent/netpolicy's; the agent finds the
// VM, holds its operation lock where the VM changes, and passes it on.

// FirewallAuto is the default firewall setting: conntrack where the kernel
// has it, otherwise stateless.
const FirewallAuto = netpolicy.FirewallAuto

type (
	// FirewallInfo is what GET /v1/firewall answers.
	FirewallInfo = netpolicy.FirewallInfo
	// EffectiveFirewall is what GET /v1/vms/{id}/firewall/effective answers.
	EffectiveFirewall = netpolicy.EffectiveFirewall
	// BridgeRequest is the body of PUT /v1/bridges/{name}.
	BridgeRequest = netpolicy.BridgeRequest
)

// netVM is the VM as the network policy sees it.
func netVM(rec *record) netpolicy.VM {
	return netpolicy.VM{ID: rec.id, Spec: rec.currentSpec(), Running: !rec.currentStatus().Terminal()}
}

// netRegistry is the agent's VMs for the network policy.
type netRegistry struct{ a *Agent }

func (r netRegistry) VMs() []netpolicy.VM {
	recs := r.a.records()
	out := make([]netpolicy.VM, len(recs))
	for i, rec := range recs {
		out[i] = netVM(rec)
	}
	return out
}

func (r netRegistry) IDs() []string { return r.a.allIDs() }

// Firewall reports the mode and what the kernel offers.
func (a *Agent) Firewall() FirewallInfo { return a.net.Info() }

// Departments lists every department's firewall.
func (a *Agent) Departments() ([]firewall.Department, error) { return a.net.Departments() }

// Department returns one department's firewall.
func (a *Agent) Department(id string) (firewall.Department, error) { return a.net.Department(id) }

// PutDepartment creates or replaces a department's policy and rules and
// applies them to all its running VMs in one atomic batch.
func (a *Agent) PutDepartment(ctx context.Context, d firewall.Department) (firewall.Department, error) {
	return a.net.PutDepartment(ctx, d)
}

// DeleteDepartment removes a department no VM belongs to.
func (a *Agent) DeleteDepartment(ctx context.Context, id string) error {
	return a.net.DeleteDepartment(ctx, id)
}

// SetDepartmentPreset turns a service preset on or off for a department.
func (a *Agent) SetDepartmentPreset(ctx context.Context, id string, p firewall.Preset, on bool) (firewall.Department, error) {
	return a.net.SetDepartmentPreset(ctx, id, p, on)
}

// VMFirewall returns a VM's firewall state.
func (a *Agent) VMFirewall(id string) (vmspec.VMFirewall, error) {
	if _, err := a.get(id); err != nil {
		return vmspec.VMFirewall{}, err
	}
	return a.net.VMFirewall(id)
}

// PutVMFirewall replaces a VM's department, rules and known addresses, and
// applies them at once if the VM runs.
func (a *Agent) PutVMFirewall(ctx context.Context, id string, st vmspec.VMFirewall) (vmspec.VMFirewall, error) {
	rec, err := a.get(id)
	if err != nil {
		return st, err
	}
	if err := a.net.CheckVMFirewall(rec.currentSpec(), st); err != nil {
		return st, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return st, err
	}
	defer unlock()
	return a.net.PutVMFirewall(ctx, netVM(rec), st)
}

// SetVMPreset turns a service preset on or off for one VM.
func (a *Agent) SetVMPreset(ctx context.Context, id string, p firewall.Preset, on bool) (vmspec.VMFirewall, error) {
	st, err := a.VMFirewall(id)
	if err != nil {
		return st, err
	}
	if st.RuleSet.Presets, err = netpolicy.TogglePreset(st.RuleSet.Presets, p, on); err != nil {
		return st, err
	}
	return a.PutVMFirewall(ctx, id, st)
}

// EffectiveFirewall shows what a VM's traffic meets.
func (a *Agent) EffectiveFirewall(ctx context.Context, id string) (EffectiveFirewall, error) {
	rec, err := a.get(id)
	if err != nil {
		return EffectiveFirewall{}, err
	}
	return a.net.Effective(ctx, netVM(rec))
}

// Bridges lists the host's bridges.
func (a *Agent) Bridges(ctx context.Context) ([]netdev.BridgeInfo, error) { return a.net.Bridges(ctx) }

// PutBridge creates a department bridge, or brings an existing one to the
// request: fixed MAC, MTU, addresses. It is idempotent.
func (a *Agent) PutBridge(ctx context.Context, name string, req BridgeRequest) (netdev.BridgeInfo, error) {
	return a.net.PutBridge(ctx, name, req)
}

// DeleteBridge removes a bridge no VM is defined on.
func (a *Agent) DeleteBridge(ctx context.Context, name string, force bool) error {
	return a.net.DeleteBridge(ctx, name, force)
}

// MoveVM puts one NIC of a VM (the primary one when nic is empty) on
// another bridge. A running VM's TAP moves at once and its rules are
// applied again; if that fails, the TAP goes back and the old rules are
// restored before the error is returned.
func (a *Agent) MoveVM(ctx context.Context, id, nic, bridge string) (api.VM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.VM{}, err
	}
	if nic == "" {
		nic = netdev.PrimaryNIC
	}
	if _, err := nicBridge(rec.currentSpec(), nic); err != nil {
		return api.VM{}, err
	}
	if err := a.net.CheckBridge(ctx, "bridge", bridge); err != nil {
		return api.VM{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	// Read again under the lock: the spec may have changed since.
	old, err := nicBridge(rec.currentSpec(), nic)
	if err != nil {
		return rec.view(), err
	}
	if old == bridge {
		return rec.view(), nil
	}
	vm := netVM(rec)
	if vm.Running {
		if err := a.net.MoveRunning(ctx, vm, nic, old, bridge); err != nil {
			return rec.view(), err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.Device(nic).NIC.Bridge = bridge; return nil }); err != nil {
		if vm.Running {
			if berr := a.net.MoveRunning(context.WithoutCancel(ctx), vm, nic, bridge, old); berr != nil {
				return rec.view(), errdefs.Internal("save spec: %v; and moving back to %s failed: %v", err, old, berr)
			}
		}
		return rec.view(), err
	}
	a.sync.Resync(id)
	a.log.Info("VM moved to another bridge", logging.KeyVM, id, "NIC", nic, "FROM", old, "TO", bridge)
	return rec.view(), nil
}

// nicBridge is the bridge of the VM's NIC named nic; a name that is not one
// of its NICs is the request's fault.
func nicBridge(s *vmspec.Spec, nic string) (string, error) {
	d := s.Device(nic)
	if d == nil || d.Type != api.DeviceNIC || d.NIC == nil {
		return "", errdefs.Invalid("nic", "the VM has no NIC %q; its NICs are %v", nic, s.NICNames())
	}
	return d.NIC.Bridge, nil
}
