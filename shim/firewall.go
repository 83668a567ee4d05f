package shim

import (
	"context"
	"fmt"
	"time"

	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// firewallOptions turns the mode the agent chose (it probes the kernel once)
// into library options, so that no shim start pays for a probe.
func firewallOptions(mode shimapi.FirewallMode, reject bool) firewall.Options {
	caps := firewall.Capabilities{Conntrack: mode == shimapi.FirewallConntrack, Reject: reject}
	return firewall.Options{Stateless: mode == shimapi.FirewallStateless, Caps: &caps}
}

// firewallTimeout bounds installing the VM's rules.
const firewallTimeout = 15 * time.Second

// installFirewall starts putting the VM's rules in place, keyed by the TAP's
// name, while the TAP is made and QEMU initialises; awaitFirewall joins it
// before the CPUs run. The guest sends and receives nothing before that, so
// its first frame is already filtered, and the start does not wait for the
// kernel's nftables round trips on top of QEMU's own start.
func (s *Shim) installFirewall(ctx context.Context) error {
	s.firewallDone = make(chan error, 1)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), firewallTimeout)
	go func() {
		defer cancel()
		s.firewallDone <- s.applyFirewall(fctx)
	}()
	return nil
}

// awaitFirewall fails the start, before any guest code runs, if the rules
// could not be installed: fail-closed.
func (s *Shim) awaitFirewall(ctx context.Context) error {
	select {
	case err := <-s.firewallDone:
		return err
	case <-ctx.Done():
		return fmt.Errorf("firewall: %w", ctx.Err())
	}
}

func (s *Shim) applyFirewall(ctx context.Context) error {
	if s.cfg.Firewall == shimapi.FirewallOff || s.cfg.Firewall == "" {
		return nil
	}
	state, err := vmspec.LoadVMFirewall(s.cfg.Layout, s.spec.ID)
	if err != nil {
		return err
	}
	dept, err := vmspec.LoadDepartment(s.cfg.Layout, state.Department)
	if err != nil {
		return err
	}
	fw, err := firewall.New(ctx, firewallOptions(s.cfg.Firewall, s.cfg.FirewallReject))
	if err != nil {
		return err
	}
	if err := fw.ApplyVM(ctx, dept, state.FirewallVM(s.spec)); err != nil {
		return fmt.Errorf("install firewall: %w", err)
	}
	s.progress("firewall installed: department %s, %d rules of its own, %s mode",
		dept.ID, len(state.RuleSet.Rules), s.cfg.Firewall)
	return nil
}

// removeFirewall takes the chains and dispatch of every NIC of the VM out
// of the kernel. The kernel says which NICs have chains, so no spec is read.
func removeFirewall(ctx context.Context, mode shimapi.FirewallMode, reject bool, id string) error {
	if mode == shimapi.FirewallOff || mode == "" {
		return nil
	}
	fw, err := firewall.New(ctx, firewallOptions(mode, reject))
	if err != nil {
		return err
	}
	return fw.RemoveVM(ctx, id)
}
