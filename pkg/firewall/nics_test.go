package firewall

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/firewall/internal/nettest"
)

// nicsLab is a host with two bridges, ivbr0 (10.0.0.0/24) and ivbr1
// (10.1.0.0/24), a guest A with eth0 on the first and eth1 on the second,
// and a peer on each: B on ivbr0, C on ivbr1.
type nicsLab struct {
	*lab
	aNet1 nettest.Guest // A's second NIC: its port, MAC and address
}

func newNICsLab(t *testing.T, opts Options) *nicsLab {
	t.Helper()
	fw, host := liveFirewall(t, opts)
	host.Bridge(t, "ivbr0", "02:00:00:00:00:fe", gatewayIP+"/24")
	host.Bridge(t, "ivbr1", "02:00:00:00:01:fe", "10.1.0.254/24")
	l := &nicsLab{lab: &lab{t: t, host: host, fw: fw}}
	l.a = nettest.AddGuest(t, host, "ivbr0", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1/24")
	l.a.AddNIC(t, host, "ivbr1", "iva.1", "eth1", "52:54:00:00:01:0a", "10.1.0.1/24")
	l.aNet1 = nettest.Guest{Port: "iva.1", MAC: "52:54:00:00:01:0a", IP: "10.1.0.1"}
	l.b = nettest.AddGuest(t, host, "ivbr0", "ivtbbbb", "52:54:00:00:00:0b", "10.0.0.2/24")
	l.c = nettest.AddGuest(t, host, "ivbr1", "ivtcccc", "52:54:00:00:01:0c", "10.1.0.3/24")
	return l
}

// vmA is A with both NICs and its addresses known.
func (l *nicsLab) vmA(rules ...Rule) VM {
	v := l.vm(l.a, rules...)
	v.NICs = append(v.NICs, NIC{Name: "net1", TAP: l.aNet1.Port, MAC: l.aNet1.MAC, IPs: []netip.Addr{netip.MustParseAddr(l.aNet1.IP)}})
	return v
}

func (l *nicsLab) counters(nic string) map[string]uint64 {
	l.t.Helper()
	c, err := l.fw.Counters(testCtx(l.t), "a", nic)
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

// TestTrafficTwoNICs: each NIC of a VM meets chains of its own, keyed by
// its TAP, with its own MAC and addresses, and the VM's rules in both.
func TestTrafficTwoNICs(t *testing.T) {
	l := newNICsLab(t, Options{})
	d := Department{ID: "eng", Policy: allowAll}
	l.applyDept(d, l.vmA(), l.vm(l.b), l.vm(l.c))
	// Each NIC passes its own anti-spoofing checks: a NIC checked against
	// the other's MAC or addresses would drop here.
	l.wantPing(l.a.NS, l.b.IP, true)
	l.wantPing(l.a.NS, l.c.IP, true)

	table := l.host.Run(t, "nft", "list", "table", "bridge", TableName)
	for _, want := range []string{`"ivtaaaa" : jump vm-a-out`, `"iva.1" : jump vm-a.net1-out`, "chain vm-a.net1-in {"} {
		if !strings.Contains(table, want) {
			t.Errorf("no %q in the kernel:\n%s", want, table)
		}
	}

	// The VM's rules apply to each NIC: C's pings, which reach A on eth1,
	// are dropped by a rule naming C, and B's on eth0 are not.
	noPingFromC := Rule{ID: "no-ping-c", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP,
		SrcIPAddr: l.c.IP, SrcIPMask: "32"}
	l.applyVM(d, l.vmA(noPingFromC))
	l.wantPing(l.c.NS, l.aNet1.IP, false)
	l.wantPing(l.b.NS, l.a.IP, true)
	l.applyVM(d, l.vmA())
	l.wantPing(l.c.NS, l.aNet1.IP, true)

	// A forged MAC on eth1 is dropped and counted on net1 only; eth0 works on.
	before0, before1 := l.counters(PrimaryNIC), l.counters("net1")
	l.a.Run(t, "ip", "link", "set", "eth1", "address", "52:54:00:00:01:99")
	l.wantPing(l.a.NS, l.c.IP, false)
	l.wantPing(l.a.NS, l.b.IP, true)
	after0, after1 := l.counters(PrimaryNIC), l.counters("net1")
	if after1[CounterSpoofMAC] <= before1[CounterSpoofMAC] {
		t.Errorf("net1's spoof-mac counter did not move: %v -> %v", before1, after1)
	}
	if after0[CounterSpoofMAC] != before0[CounterSpoofMAC] {
		t.Errorf("net0's spoof-mac counter moved for eth1's frames: %v -> %v", before0, after0)
	}
	l.a.Run(t, "ip", "link", "set", "eth1", "address", l.aNet1.MAC)
	l.wantPing(l.a.NS, l.c.IP, true)

	// eth1's address given to net0 only: net1 then drops eth1's IPv4 as
	// spoofed, and net0 is unaffected.
	wrong := l.vmA()
	wrong.NICs[1].IPs = []netip.Addr{netip.MustParseAddr("10.1.0.77")}
	l.applyVM(d, wrong)
	l.a.Run(t, "ip", "neigh", "replace", l.c.IP, "lladdr", l.c.MAC, "dev", "eth1")
	l.wantPing(l.a.NS, l.c.IP, false)
	l.wantPing(l.a.NS, l.b.IP, true)
	if c := l.counters("net1"); c[CounterSpoofIP] == 0 {
		t.Errorf("net1's spoof-ip counter did not move: %v", c)
	}
	if c := l.counters(PrimaryNIC); c[CounterSpoofIP] != 0 {
		t.Errorf("net0's spoof-ip counter moved: %v", c)
	}
	l.applyVM(d, l.vmA())
	l.wantPing(l.a.NS, l.c.IP, true)

	// The read-back shows both NICs' chains, the primary NIC's first.
	rs, err := l.fw.VMRuleset(testCtx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if i, j := strings.Index(rs, "chain vm-a-out\n"), strings.Index(rs, "chain vm-a.net1-out\n"); i < 0 || j < i {
		t.Errorf("want net0's chains, then net1's:\n%s", rs)
	}
}

func TestLiveFailClosedCoversEveryNIC(t *testing.T) {
	fail := false
	l := newNICsLab(t, Options{FailBatch: func(op string) bool { return fail && op == "apply-vm" }})
	d := Department{ID: "eng", Policy: allowAll}
	l.applyDept(d, l.vmA(), l.vm(l.b), l.vm(l.c))
	fail = true
	err := l.fw.ApplyVM(testCtx(t), d, l.vmA())
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.FailClosed != nil {
		t.Fatalf("want *ApplyError with the drop in place, got %v", err)
	}
	if len(ae.VMs) != 1 || ae.VMs[0] != "a" {
		t.Errorf("ApplyError names VMs %v, want [a]", ae.VMs)
	}
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantPing(l.a.NS, l.c.IP, false)
	l.wantPing(l.b.NS, gatewayIP, true) // other VMs keep working
}

func TestLiveRemoveVMRemovesEveryNIC(t *testing.T) {
	f, ns := liveFirewall(t, Options{})
	ctx := testCtx(t)
	d := Department{ID: "eng", Policy: allowAll}
	a := VM{ID: "a", NICs: []NIC{
		testNIC(PrimaryNIC, "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1"),
		testNIC("net1", "iva.1", "52:54:00:00:01:0a"),
		testNIC("net2", "iva.2", "52:54:00:00:02:0a"),
	}}
	// "ab" shares A's prefix: its objects must stay.
	ab := VM{ID: "ab", NICs: []NIC{testNIC("net1", "ivab.1", "52:54:00:00:01:ab")}}
	if err := f.ApplyDepartment(ctx, d, []VM{a, ab}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := f.RemoveVM(ctx, "a"); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	table := ns.Run(t, "nft", "list", "table", "bridge", TableName)
	if strings.Contains(table, "vm-a-") || strings.Contains(table, "vm-a.") || strings.Contains(table, `"iva.`) {
		t.Errorf("want every NIC of A gone:\n%s", table)
	}
	if !strings.Contains(table, "chain vm-ab.net1-in") || !strings.Contains(table, `"ivab.1"`) {
		t.Errorf("want AB kept:\n%s", table)
	}
	if objs := ns.Run(t, "nft", "list", "counters", "table", "bridge", TableName); strings.Contains(objs, "vm-a.") ||
		strings.Contains(objs, "vm-a-") {
		t.Errorf("A's counters are left:\n%s", objs)
	}
}
