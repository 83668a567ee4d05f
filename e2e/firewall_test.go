package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
)

// fwGuest is a test guest with TCP listeners on 22, 23 and 80.
type fwGuest struct {
	api.VM
	ip string
}

func (b *bed) createFirewallGuest(t *testing.T, name, dept string) fwGuest {
	t.Helper()
	in, ip := b.vmInput(name)
	in.DepartmentID = dept
	in.Boot.Cmdline += " tg.listen=22,23,80 tg.gw=10.99.0.1"
	return fwGuest{VM: b.createVMFrom(t, in), ip: ip}
}

func rule(action api.FirewallAction, dir api.FirewallDirection, proto api.FirewallProtocol, port int, src string) api.FirewallRule {
	r := api.FirewallRule{Action: action, Direction: dir, Protocol: proto, Priority: 100, DstPortStart: port, SrcIPAddr: src}
	if src != "" {
		r.SrcIPMask = "32"
	}
	return r
}

// TestFirewallBetweenRealGuests drives the firewall through the API with
// three guests on one bridge and the host on it too: VM rules, host-bound
// traffic, a department change fanned out to all VMs, an override, BLOCK_ALL
// with an accepted port, and refusal of what the kernel cannot enforce.
func TestFirewallBetweenRealGuests(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dept := "fw-e2e"
	put := func(d api.Department) {
		t.Helper()
		d.ID = dept
		if _, err := b.client.PutDepartment(ctx, d); err != nil {
			t.Fatalf("put department: %v", err)
		}
	}
	allowAll := api.DepartmentPolicy{Policy: api.PolicyAllowAll, DefaultConfig: api.ConfigNone}
	put(api.Department{Policy: allowAll})
	t.Cleanup(func() {
		if err := b.client.DeleteDepartment(context.Background(), dept); err != nil {
			t.Logf("delete department %s: %v", dept, err)
		}
	})
	a := b.createFirewallGuest(t, "fw-a", dept)
	bb := b.createFirewallGuest(t, "fw-b", dept)
	c := b.createFirewallGuest(t, "fw-c", dept)

	if !b.canPing(t, a.ID, bb.ip) || !b.canPing(t, c.ID, bb.ip) || !b.canPing(t, a.ID, "10.99.0.1") {
		t.Fatal("guests cannot reach each other or the host before any rule")
	}

	t.Run("VM rule drops ICMP from A to B only", func(t *testing.T) {
		if _, err := b.client.PutVMFirewall(ctx, bb.ID, api.VMFirewall{Department: dept,
			RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{rule(api.FirewallDrop, api.FirewallIn, api.FirewallICMP, 0, a.ip)}}}); err != nil {
			t.Fatal(err)
		}
		if b.canPing(t, a.ID, bb.ip) {
			t.Error("A still pings B")
		}
		if !b.canPing(t, c.ID, bb.ip) {
			t.Error("C no longer pings B")
		}
		eff, err := b.client.EffectiveFirewall(ctx, bb.ID)
		effJSON, _ := json.Marshal(eff)
		if err != nil || !strings.Contains(string(effJSON), a.ip) {
			t.Errorf("effective rules of B do not show the rule (%v): %s", err, effJSON)
		}
		// Rules come back from the persisted state after an agent restart.
		b.run(t, "systemctl", "restart", "infinivirt-agent.service")
		if b.canPing(t, a.ID, bb.ip) {
			t.Error("A pings B after an agent restart")
		}
		if _, err := b.client.PutVMFirewall(ctx, bb.ID, api.VMFirewall{Department: dept}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("host-bound traffic is filtered", func(t *testing.T) {
		out := api.FirewallRule{Action: api.FirewallDrop, Direction: api.FirewallOut, Protocol: api.FirewallICMP, Priority: 100,
			DstIPAddr: "10.99.0.1", DstIPMask: "32"}
		if _, err := b.client.PutVMFirewall(ctx, a.ID, api.VMFirewall{Department: dept,
			RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{out}}}); err != nil {
			t.Fatal(err)
		}
		if b.canPing(t, a.ID, "10.99.0.1") {
			t.Error("A still pings the gateway on the host")
		}
		if !b.canPing(t, c.ID, "10.99.0.1") {
			t.Error("C lost the gateway")
		}
		if _, err := b.client.PutVMFirewall(ctx, a.ID, api.VMFirewall{Department: dept}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("department change reaches every VM, override beats it for the same traffic only", func(t *testing.T) {
		put(api.Department{Policy: allowAll, RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{
			rule(api.FirewallDrop, api.FirewallIn, api.FirewallTCP, 80, ""),
			rule(api.FirewallDrop, api.FirewallIn, api.FirewallTCP, 23, ""),
		}}})
		for _, pair := range [][2]fwGuest{{a, bb}, {bb, c}, {c, a}} {
			if b.canConnect(t, pair[0].ID, pair[1].ip, 80) {
				t.Errorf("%s reaches %s:80 through the department's drop", pair[0].Name, pair[1].Name)
			}
		}
		over := rule(api.FirewallAccept, api.FirewallIn, api.FirewallTCP, 80, "")
		over.OverridesDept = true
		if _, err := b.client.PutVMFirewall(ctx, c.ID, api.VMFirewall{Department: dept,
			RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{over}}}); err != nil {
			t.Fatal(err)
		}
		if !b.canConnect(t, a.ID, c.ip, 80) {
			t.Error("C's override did not open port 80")
		}
		if b.canConnect(t, a.ID, c.ip, 23) {
			t.Error("C's override of port 80 also opened port 23")
		}
		if b.canConnect(t, a.ID, bb.ip, 80) {
			t.Error("C's override leaked to B")
		}
		if _, err := b.client.PutVMFirewall(ctx, c.ID, api.VMFirewall{Department: dept}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("BLOCK_ALL with TCP 22 accepted into B", func(t *testing.T) {
		put(api.Department{Policy: api.DepartmentPolicy{Policy: api.PolicyBlockAll, DefaultConfig: api.ConfigAllowOutbound}})
		if _, err := b.client.PutVMFirewall(ctx, bb.ID, api.VMFirewall{Department: dept,
			RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{rule(api.FirewallAccept, api.FirewallIn, api.FirewallTCP, 22, "")}}}); err != nil {
			t.Fatal(err)
		}
		if !b.canConnect(t, a.ID, bb.ip, 22) {
			t.Error("A cannot reach B:22 although it is accepted")
		}
		if b.canConnect(t, a.ID, bb.ip, 23) {
			t.Error("A reaches B:23 under BLOCK_ALL")
		}
	})

	t.Run("a forged source MAC is dropped and counted", func(t *testing.T) {
		put(api.Department{Policy: allowAll})
		if _, err := b.client.PutVMFirewall(ctx, bb.ID, api.VMFirewall{Department: dept}); err != nil {
			t.Fatal(err)
		}
		counters := func() uint64 {
			eff, err := b.client.EffectiveFirewall(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			return eff.Counters[firewall.CounterSpoofMAC]
		}
		before := counters()
		if !b.canPing(t, a.ID, bb.ip) {
			t.Fatal("A cannot ping B with its own MAC")
		}
		forge := "ip link set eth0 down && ip link set eth0 address 52:54:00:de:ad:01 && ip link set eth0 up"
		if _, rc := b.guestRun(t, a.ID, forge); rc != 0 {
			t.Fatal("could not change the guest's MAC")
		}
		if b.canPing(t, a.ID, bb.ip) {
			t.Error("frames from a forged MAC got through")
		}
		if after := counters(); after <= before {
			t.Errorf("spoof-mac counter %d → %d: drops were not counted", before, after)
		}
		b.guestRun(t, a.ID, "ip link set eth0 down && ip link set eth0 address "+a.MACAddress+" && ip link set eth0 up")
		if !b.canPing(t, a.ID, bb.ip) {
			t.Error("A cannot ping B after taking its own MAC back")
		}
	})

	t.Run("a running VM moves to another bridge", func(t *testing.T) {
		if _, err := b.client.PutBridge(ctx, "ivbr1", api.BridgeRequest{Addresses: []netip.Prefix{netip.MustParsePrefix("10.98.0.1/24")}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := b.client.DeleteBridge(context.WithoutCancel(ctx), "ivbr1", true); err != nil {
				t.Logf("delete bridge ivbr1: %v", err)
			}
		})
		moved, err := b.client.MoveVM(ctx, bb.ID, "ivbr1")
		if err != nil || moved.NetworkBridge != "ivbr1" {
			t.Fatalf("move: %v (%s)", err, moved.NetworkBridge)
		}
		if b.canPing(t, a.ID, bb.ip) {
			t.Error("A still reaches B across bridges")
		}
		if _, err := b.client.MoveVM(ctx, bb.ID, bridgeName); err != nil {
			t.Fatal(err)
		}
		if !b.canPing(t, a.ID, bb.ip) {
			t.Error("A cannot reach B once it is back, with its rules re-applied")
		}
		if _, err := b.client.MoveVM(ctx, bb.ID, "nosuchbr"); !isAPIError(err, errdefs.CodeInvalidArgument, "bridge") {
			t.Errorf("move to a missing bridge: %v", err)
		}
	})

	t.Run("a VM's rules leave the kernel with it", func(t *testing.T) {
		chain := "vm-" + c.ID[:8]
		if table := b.run(t, "nft", "list", "table", "bridge", "infinivirt"); !strings.Contains(table, chain) {
			t.Fatalf("no chain %s for a running VM:\n%s", chain, tail(table, 2000))
		}
		if _, err := b.client.Power(ctx, c.ID, api.ForcePowerOff, true, time.Minute); err != nil {
			t.Fatal(err)
		}
		b.eventually(t, time.Minute, func() error {
			if table := b.run(t, "nft", "list", "table", "bridge", "infinivirt"); strings.Contains(table, chain) {
				return fmt.Errorf("chain %s is still in the kernel", chain)
			}
			return nil
		})
	})

	t.Run("what the kernel cannot enforce is refused and changes nothing", func(t *testing.T) {
		info, _ := b.client.Firewall(ctx)
		caps := info.Capabilities
		reject := rule(api.FirewallReject, api.FirewallIn, api.FirewallTCP, 443, "")
		stateful := rule(api.FirewallAccept, api.FirewallIn, api.FirewallUDP, 53, "")
		stateful.ConnectionState = &api.ConnectionState{Established: true}
		cases := map[string]struct {
			r         api.FirewallRule
			supported bool
			reason    string
		}{
			"REJECT":               {reject, caps.Reject, "nft_reject_bridge"},
			"UDP connection state": {stateful, caps.Conntrack, "nf_conntrack_bridge"},
		}
		for name, tc := range cases {
			if tc.supported {
				t.Logf("%s: this kernel supports it, so it is enforced rather than refused", name)
				continue
			}
			before, _ := b.client.EffectiveFirewall(ctx, bb.ID)
			beforeJSON, _ := json.Marshal(before)
			_, err := b.client.PutVMFirewall(ctx, bb.ID, api.VMFirewall{Department: dept,
				RuleSet: api.FirewallRuleSet{Rules: []api.FirewallRule{tc.r}}})
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("%s: not refused with the kernel's reason: %v", name, err)
			}
			after, _ := b.client.EffectiveFirewall(ctx, bb.ID)
			if afterJSON, _ := json.Marshal(after); string(beforeJSON) != string(afterJSON) {
				t.Fatalf("%s: a refused rule changed the VM's firewall", name)
			}
		}
	})
}
