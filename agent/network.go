package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// BridgeRequest is the body of PUT /v1/bridges/{name}.
type BridgeRequest struct {
	MAC       string         `json:"mac,omitempty"` // fixed; derived from the name when empty
	MTU       int            `json:"mtu,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
}

// Bridges lists the host's bridges.
func (a *Agent) Bridges(ctx context.Context) ([]netdev.BridgeInfo, error) {
	return a.cfg.Network.ListBridges(ctx)
}

// PutBridge creates a department bridge, or brings an existing one to the
// request: fixed MAC, MTU, addresses. It is idempotent.
func (a *Agent) PutBridge(ctx context.Context, name string, req BridgeRequest) (netdev.BridgeInfo, error) {
	cfg := netdev.BridgeConfig{Name: name, MTU: req.MTU, Addresses: req.Addresses}
	if req.MAC != "" {
		mac, err := net.ParseMAC(req.MAC)
		if err != nil {
			return netdev.BridgeInfo{}, errdefs.Invalid("mac", "%v", err)
		}
		cfg.MAC = mac
	}
	return a.cfg.Network.EnsureBridge(ctx, cfg)
}

// DeleteBridge removes a bridge no VM is defined on.
func (a *Agent) DeleteBridge(ctx context.Context, name string, force bool) error {
	var users []string
	for _, rec := range a.records() {
		for _, d := range rec.currentSpec().NICs() {
			if d.NIC.Bridge == name {
				users = append(users, rec.id)
				break
			}
		}
	}
	if len(users) > 0 {
		return errdefs.FailedPrecondition("bridge %s is the network of VMs %v", name, users)
	}
	return a.cfg.Network.DeleteBridge(ctx, name, netdev.DeleteBridgeOptions{Force: force})
}

// MoveVM puts a VM on another bridge. A running VM's TAP moves at once and
// its rules are applied again; if that fails, the TAP goes back and the old
// rules are restored before the error is returned.
func (a *Agent) MoveVM(ctx context.Context, id, bridge string) (api.VM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.VM{}, err
	}
	if err := a.cfg.Network.BridgeExists(ctx, bridge); err != nil {
		if errors.Is(err, netdev.ErrBridgeNotFound) || errors.Is(err, netdev.ErrNotBridge) {
			return api.VM{}, errdefs.Invalid("bridge", "%v", err)
		}
		return api.VM{}, err // the kernel did not answer: not the request's fault
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	// The API moves the first NIC, the one a create request's networkBridge made.
	old := rec.currentSpec().NICs()[0].NIC.Bridge
	if old == bridge {
		return rec.view(), nil
	}
	running := !rec.currentStatus().Terminal()
	if running {
		if err := a.moveRunning(ctx, rec, old, bridge); err != nil {
			return rec.view(), err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.NICs()[0].NIC.Bridge = bridge; return nil }); err != nil {
		if running {
			if berr := a.moveRunning(context.WithoutCancel(ctx), rec, bridge, old); berr != nil {
				return rec.view(), errdefs.Internal("save spec: %v; and moving back to %s failed: %v", err, old, berr)
			}
		}
		return rec.view(), err
	}
	a.sync.Resync(id)
	a.log.Info("VM moved to another bridge", logging.KeyVM, id, "FROM", old, "TO", bridge)
	return rec.view(), nil
}

func (a *Agent) moveRunning(ctx context.Context, rec *record, from, to string) error {
	tap := netdev.TapName(rec.id, netdev.PrimaryNIC)
	if err := a.cfg.Network.MoveTAP(ctx, tap, to); err != nil {
		return errdefs.Internal("move %s to %s: %v", tap, to, err)
	}
	if err := a.reapplyVM(ctx, rec); err != nil {
		back := context.WithoutCancel(ctx)
		if berr := a.cfg.Network.MoveTAP(back, tap, from); berr != nil {
			return errdefs.Internal("re-apply rules on %s failed (%v), and moving back to %s failed too: %v", to, err, from, berr)
		}
		if rerr := a.reapplyVM(back, rec); rerr != nil {
			// The firewall fails closed: the VM is back on its bridge, dropped.
			return errdefs.Internal("re-apply rules on %s failed (%v); moved back to %s, where re-applying failed too, so the VM's traffic is dropped: %v", to, err, from, rerr)
		}
		return errdefs.Internal("re-apply rules on %s failed; moved back to %s: %v", to, from, err)
	}
	return nil
}

// reapplyVM installs a running VM's rules again from its persisted state.
func (a *Agent) reapplyVM(ctx context.Context, rec *record) error {
	if a.fw.fw == nil {
		return nil
	}
	st, err := vmspec.LoadVMFirewall(a.cfg.Layout, rec.id)
	if err != nil {
		return err
	}
	dept, err := vmspec.LoadDepartment(a.cfg.Layout, st.Department)
	if err != nil {
		return err
	}
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, fwCallTimeout)
	defer cancel()
	if err := a.fw.fw.ApplyVM(cctx, dept, st.FirewallVM(rec.currentSpec())); err != nil {
		return fmt.Errorf("apply firewall: %w", err)
	}
	return nil
}

// joinDepartment saves a new VM's firewall state in its department. It runs
// under the firewall lock, as DeleteDepartment does, and looks for the
// department again: either the deletion sees the new VM, or the create
// sees the department gone.
func (a *Agent) joinDepartment(id, dept string) error {
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	if _, err := vmspec.LoadDepartment(a.cfg.Layout, dept); err != nil {
		return errdefs.Invalid("departmentId", "%v", err)
	}
	if err := vmspec.SaveVMFirewall(a.cfg.Layout, id, vmspec.VMFirewall{Department: dept}); err != nil {
		return errdefs.Internal("save firewall state: %v", err)
	}
	return nil
}

// checkDepartment is the create-time check of a requested department.
func (a *Agent) checkDepartment(id string) (firewall.Department, error) {
	if id == "" {
		id = vmspec.DefaultDepartment
	}
	if err := vmspec.CheckDepartmentID("departmentId", id); err != nil {
		return firewall.Department{}, err
	}
	d, err := vmspec.LoadDepartment(a.cfg.Layout, id)
	if err != nil {
		return d, errdefs.Invalid("departmentId", "%v", err)
	}
	return d, nil
}
