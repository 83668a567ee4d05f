package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// bridgePorts are the links the kernel has attached to bridge.
func (b *bed) bridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	var ports []string
	for _, line := range strings.Split(b.run(t, "ip", "-br", "link", "show", "master", bridge), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			ports = append(ports, strings.SplitN(f[0], "@", 2)[0])
		}
	}
	return ports
}

// ifaceLine is how guestIface's command names an interface; the kernel's
// own messages may share the console with it.
var ifaceLine = regexp.MustCompile(`(?m)^IFACE=(\S+)\s*$`)

// guestIface is the guest's name for the interface with this MAC.
func (b *bed) guestIface(t testing.TB, id, mac string) string {
	t.Helper()
	out, _ := b.guestRun(t, id, `for i in /sys/class/net/*; do [ "$(cat $i/address)" = "`+mac+`" ] && echo "IFACE=${i##*/}"; done; true`)
	m := ifaceLine.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("the guest has no single interface with MAC %s: %q", mac, out)
	}
	return m[0][1]
}

// guestMust runs cmd on the guest and fails the test unless it succeeds.
func (b *bed) guestMust(t testing.TB, id, cmd string) {
	t.Helper()
	if out, rc := b.guestRun(t, id, cmd); rc != 0 {
		t.Fatalf("guest: %q exited %d: %s", cmd, rc, out)
	}
}

func nicDevice(vm api.VM, name string) *api.NICDevice {
	for _, d := range vm.Devices {
		if d.Name == name && d.Type == api.DeviceNIC {
			return d.NIC
		}
	}
	return nil
}

func sumCounters(c map[string]uint64, kinds ...string) uint64 {
	var n uint64
	for _, k := range kinds {
		n += c[k]
	}
	return n
}

// TestFirewallTwoNICs boots a VM with two NICs on two bridges and shows,
// with real packets, that each NIC is filtered on its own: its own TAP on
// its own bridge, its own chains, addresses and counters, and its own
// anti-spoofing (net0's MAC is the VM's, yet forged on net1 it is dropped
// there). net1 then moves to a third bridge while the VM runs, and a stop
// takes both TAPs and both NICs' chains away.
func TestFirewallTwoNICs(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const (
		br1, gw1 = "ivnic1", "10.97.0.1"
		br2, gw2 = "ivnic2", "10.96.0.1"
		gw0      = "10.99.0.1" // on ivbr0
	)
	// Cleanups run last first: the VM goes before its bridges and department.
	for name, gw := range map[string]string{br1: gw1, br2: gw2} {
		if _, err := b.client.PutBridge(ctx, name, api.BridgeRequest{Addresses: []netip.Prefix{netip.MustParsePrefix(gw + "/24")}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := b.client.DeleteBridge(context.WithoutCancel(ctx), name, true); err != nil {
				t.Logf("delete bridge %s: %v", name, err)
			}
		})
	}
	dept := "nics-e2e"
	if _, err := b.client.PutDepartment(ctx, api.Department{ID: dept,
		Policy: api.DepartmentPolicy{Policy: api.PolicyAllowAll, DefaultConfig: api.ConfigNone}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.client.DeleteDepartment(context.Background(), dept); err != nil {
			t.Logf("delete department %s: %v", dept, err)
		}
	})

	in, ip0 := b.vmInput("two-nics")
	in.DepartmentID = dept
	in.Devices = []api.Device{{Name: "net1", Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: br1}}}
	vm := b.createVMFrom(t, in)
	if nicDevice(vm, "net1") == nil {
		t.Fatalf("the VM has no net1: %+v", vm.Devices)
	}
	host := ip0[strings.LastIndex(ip0, ".")+1:]
	ip1, ip2 := "10.97.0."+host, "10.96.0."+host
	mac0, mac1 := vm.MACAddress, nicDevice(vm, "net1").MAC
	tap0, tap1 := netdev.TapName(vm.ID, "net0"), netdev.TapName(vm.ID, "net1")
	prefix0, prefix1 := "vm-"+vm.ID, "vm-"+vm.ID+".net1"

	// The test guest configures eth0 only; net1 gets its address here.
	eth1 := b.guestIface(t, vm.ID, mac1)
	b.guestMust(t, vm.ID, fmt.Sprintf("ip link set %s up && ip addr add %s/24 dev %s", eth1, ip1, eth1))
	if _, err := b.client.PutVMFirewall(ctx, vm.ID, api.VMFirewall{Department: dept,
		IPs: []netip.Addr{netip.MustParseAddr(ip0)}, NICIPs: map[string][]netip.Addr{"net1": {netip.MustParseAddr(ip1)}}}); err != nil {
		t.Fatal(err)
	}
	counters := func() map[string]map[string]uint64 {
		t.Helper()
		eff, err := b.client.EffectiveFirewall(ctx, vm.ID)
		if err != nil {
			t.Fatal(err)
		}
		return eff.NICCounters
	}

	t.Run("each NIC's TAP is on its own bridge", func(t *testing.T) {
		p0, p1 := b.bridgePorts(t, bridgeName), b.bridgePorts(t, br1)
		if !slices.Contains(p0, tap0) || slices.Contains(p0, tap1) {
			t.Errorf("%s has ports %v; want %s and not %s", bridgeName, p0, tap0, tap1)
		}
		if !slices.Contains(p1, tap1) || slices.Contains(p1, tap0) {
			t.Errorf("%s has ports %v; want %s and not %s", br1, p1, tap1, tap0)
		}
	})

	t.Run("each NIC has its own chains, MAC and addresses", func(t *testing.T) {
		table := b.run(t, "nft", "list", "table", "bridge", firewall.TableName)
		for _, chain := range []string{prefix0 + "-out", prefix0 + "-in", prefix1 + "-out", prefix1 + "-in"} {
			if !strings.Contains(table, "chain "+chain+" {") {
				t.Errorf("no chain %s in the kernel:\n%s", chain, tail(table, 3000))
			}
		}
		for _, m := range []struct{ tap, chain string }{{tap0, prefix0 + "-out"}, {tap1, prefix1 + "-out"}} {
			vmap := b.run(t, "nft", "list", "map", "bridge", firewall.TableName, "vm-out")
			if !strings.Contains(vmap, `"`+m.tap+`" : jump `+m.chain) {
				t.Errorf("traffic from %s is not dispatched to %s:\n%s", m.tap, m.chain, vmap)
			}
		}
		for _, c := range []struct{ chain, mac string }{{prefix0 + "-out", mac0}, {prefix1 + "-out", mac1}} {
			rules := b.run(t, "nft", "list", "chain", "bridge", firewall.TableName, c.chain)
			if !strings.Contains(rules, "ether saddr != "+c.mac) {
				t.Errorf("chain %s does not hold its NIC to MAC %s:\n%s", c.chain, c.mac, rules)
			}
		}
		for _, s := range []struct{ set, own, other string }{{prefix0 + "-ips", ip0, ip1}, {prefix1 + "-ips", ip1, ip0}} {
			elems := b.run(t, "nft", "list", "set", "bridge", firewall.TableName, s.set)
			if !strings.Contains(elems, s.own) || strings.Contains(elems, s.other) {
				t.Errorf("set %s should hold %s and not %s:\n%s", s.set, s.own, s.other, elems)
			}
		}
		if !b.canPing(t, vm.ID, gw0) || !b.canPing(t, vm.ID, gw1) {
			t.Fatal("the guest cannot reach the host through both NICs with their own addresses")
		}
	})

	t.Run("net0's MAC forged on net1 is dropped and counted on net1 only", func(t *testing.T) {
		before := counters()
		b.guestMust(t, vm.ID, fmt.Sprintf("ip link set %s down && ip link set %s address %s && ip link set %s up", eth1, eth1, mac0, eth1))
		if b.canPing(t, vm.ID, gw1) {
			t.Error("frames from net0's MAC got through net1")
		}
		if !b.canPing(t, vm.ID, gw0) {
			t.Error("net0 lost its traffic while net1 was forging")
		}
		after := counters()
		if after["net1"][firewall.CounterSpoofMAC] <= before["net1"][firewall.CounterSpoofMAC] {
			t.Errorf("net1's spoof-mac counter %d → %d: the drops were not counted on net1",
				before["net1"][firewall.CounterSpoofMAC], after["net1"][firewall.CounterSpoofMAC])
		}
		for k, v := range after["net0"] {
			if v != before["net0"][k] {
				t.Errorf("net0's %s counter moved %d → %d although net0 sent nothing forged", k, before["net0"][k], v)
			}
		}
		b.guestMust(t, vm.ID, fmt.Sprintf("ip link set %s down && ip link set %s address %s && ip link set %s up", eth1, eth1, mac1, eth1))
		if !b.canPing(t, vm.ID, gw1) {
			t.Error("net1 cannot reach the host after taking its own MAC back")
		}
	})

	t.Run("an address net1 does not own is dropped and counted on net1", func(t *testing.T) {
		before := counters()
		forged := "10.97.0.200"
		b.guestMust(t, vm.ID, fmt.Sprintf("ip addr flush dev %s && ip addr add %s/24 dev %s", eth1, forged, eth1))
		if b.canPing(t, vm.ID, gw1) {
			t.Errorf("packets from %s, not an address of net1, got through", forged)
		}
		if !b.canPing(t, vm.ID, gw0) {
			t.Error("net0 lost its traffic while net1 was forging")
		}
		after := counters()
		kinds := []string{firewall.CounterSpoofARP, firewall.CounterSpoofIP}
		if sumCounters(after["net1"], kinds...) <= sumCounters(before["net1"], kinds...) {
			t.Errorf("net1's ARP and IP spoof counters %v → %v: the drops were not counted", before["net1"], after["net1"])
		}
		for k, v := range after["net0"] {
			if v != before["net0"][k] {
				t.Errorf("net0's %s counter moved %d → %d although net0 sent nothing forged", k, before["net0"][k], v)
			}
		}
		b.guestMust(t, vm.ID, fmt.Sprintf("ip addr flush dev %s && ip addr add %s/24 dev %s", eth1, ip1, eth1))
		if !b.canPing(t, vm.ID, gw1) {
			t.Error("net1 cannot reach the host with its own address back")
		}
	})

	t.Run("net1 moves to another bridge while the VM runs", func(t *testing.T) {
		if _, err := b.client.MoveNIC(ctx, vm.ID, "net7", br2); !isAPIError(err, errdefs.CodeInvalidArgument, "nic") {
			t.Errorf("moving a NIC the VM lacks: %v", err)
		}
		// net1's address on its new network, known before it moves there.
		if _, err := b.client.PutVMFirewall(ctx, vm.ID, api.VMFirewall{Department: dept,
			IPs: []netip.Addr{netip.MustParseAddr(ip0)}, NICIPs: map[string][]netip.Addr{"net1": {netip.MustParseAddr(ip2)}}}); err != nil {
			t.Fatal(err)
		}
		moved, err := b.client.MoveNIC(ctx, vm.ID, "net1", br2)
		if err != nil {
			t.Fatal(err)
		}
		if n := nicDevice(moved, "net1"); n == nil || n.Bridge != br2 || moved.NetworkBridge != bridgeName {
			t.Errorf("after the move the VM says net0 on %s, net1 %+v", moved.NetworkBridge, n)
		}
		if p := b.bridgePorts(t, br2); !slices.Contains(p, tap1) {
			t.Errorf("%s has ports %v, not %s", br2, p, tap1)
		}
		if p := b.bridgePorts(t, br1); slices.Contains(p, tap1) {
			t.Errorf("%s still has %s: %v", br1, tap1, p)
		}
		if p := b.bridgePorts(t, bridgeName); !slices.Contains(p, tap0) {
			t.Errorf("net0's TAP left %s: %v", bridgeName, p)
		}
		b.guestMust(t, vm.ID, fmt.Sprintf("ip addr flush dev %s && ip addr add %s/24 dev %s", eth1, ip2, eth1))
		if !b.canPing(t, vm.ID, gw2) {
			t.Error("net1 cannot reach the host on its new bridge")
		}
		if !b.canPing(t, vm.ID, gw0) {
			t.Error("net0 lost its traffic when net1 moved")
		}
		// The rules were applied again: net1's anti-spoofing still holds there.
		b.guestMust(t, vm.ID, fmt.Sprintf("ip addr flush dev %s && ip addr add 10.96.0.200/24 dev %s", eth1, eth1))
		if b.canPing(t, vm.ID, gw2) {
			t.Error("a forged address got through net1 on its new bridge")
		}
	})

	t.Run("a stop removes both TAPs and both NICs' chains", func(t *testing.T) {
		if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, guestTimeout); err != nil {
			t.Fatal(err)
		}
		// The unit ends once its cleanup (ExecStopPost) is done.
		b.eventually(t, time.Minute, func() error {
			if st := b.unitProperty(t, vm.ID, "ActiveState"); st != "inactive" && st != "failed" {
				return fmt.Errorf("unit is %s", st)
			}
			return nil
		})
		for _, tap := range []string{tap0, tap1} {
			if _, err := b.try("ip", "link", "show", "dev", tap); err == nil {
				t.Errorf("TAP %s is still there", tap)
			}
		}
		if table := b.run(t, "nft", "list", "table", "bridge", firewall.TableName); strings.Contains(table, prefix0) {
			t.Errorf("objects of the VM are still in the kernel:\n%s", tail(table, 3000))
		}
	})
}
