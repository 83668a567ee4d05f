package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// BridgeRequest is the body of PUT /v1/bridges/{name}.
type BridgeRequest struct {
	MAC       string         `json:"mac,omitempty"` // fixed; derived from the name when empty
	MTU       int            `json:"mtu,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
}

// Bridges lists the host's bridges.
func (p *Policy) Bridges(ctx context.Context) ([]netdev.BridgeInfo, error) {
	return p.net.ListBridges(ctx)
}

// PutBridge creates a department bridge, or brings an existing one to the
// request: fixed MAC, MTU, addresses. It is idempotent.
func (p *Policy) PutBridge(ctx context.Context, name string, req BridgeRequest) (netdev.BridgeInfo, error) {
	cfg := netdev.BridgeConfig{Name: name, MTU: req.MTU, Addresses: req.Addresses}
	if req.MAC != "" {
		mac, err := net.ParseMAC(req.MAC)
		if err != nil {
			return netdev.BridgeInfo{}, errdefs.Invalid("mac", "%v", err)
		}
		cfg.MAC = mac
	}
	return p.net.EnsureBridge(ctx, cfg)
}

// DeleteBridge removes a bridge no VM is defined on.
func (p *Policy) DeleteBridge(ctx context.Context, name string, force bool) error {
	var users []string
	for _, vm := range p.vms.VMs() {
		for _, d := range vm.Spec.NICs() {
			if d.NIC.Bridge == name {
				users = append(users, vm.ID)
				break
			}
		}
	}
	if len(users) > 0 {
		return errdefs.FailedPrecondition("bridge %s is the network of VMs %v", name, users)
	}
	return p.net.DeleteBridge(ctx, name, netdev.DeleteBridgeOptions{Force: force})
}

// CheckBridge refuses, naming the request's field, a bridge that does not
// exist; a kernel that does not answer is not the request's fault.
func (p *Policy) CheckBridge(ctx context.Context, field, name string) error {
	err := p.net.BridgeExists(ctx, name)
	if errors.Is(err, netdev.ErrBridgeNotFound) || errors.Is(err, netdev.ErrNotBridge) {
		return errdefs.Invalid(field, "%v", err)
	}
	return err
}

// MoveRunning moves the TAP of a running VM's NIC from one bridge to
// another and applies the VM's rules again; if that fails, the TAP goes
// back and the old rules are restored before the error is returned.
func (p *Policy) MoveRunning(ctx context.Context, vm VM, nic, from, to string) error {
	tap := netdev.TapName(vm.ID, nic)
	if err := p.net.MoveTAP(ctx, tap, to); err != nil {
		return errdefs.Internal("move %s to %s: %v", tap, to, err)
	}
	if err := p.reapplyVM(ctx, vm); err != nil {
		back := context.WithoutCancel(ctx)
		if berr := p.net.MoveTAP(back, tap, from); berr != nil {
			return errdefs.Internal("re-apply rules on %s failed (%v), and moving back to %s failed too: %v", to, err, from, berr)
		}
		if rerr := p.reapplyVM(back, vm); rerr != nil {
			// The firewall fails closed: the VM is back on its bridge, dropped.
			return errdefs.Internal("re-apply rules on %s failed (%v); moved back to %s, where re-applying failed too, so the VM's traffic is dropped: %v", to, err, from, rerr)
		}
		return errdefs.Internal("re-apply rules on %s failed; moved back to %s: %v", to, from, err)
	}
	return nil
}
