package firewall

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// These tests send real packets between stand-in guests (network
// namespaces on veth pairs) across a bridge whose ports are filtered.

var (
	allowAll = DepartmentPolicy{AllowAll, NoDefaults}
	blockAll = DepartmentPolicy{BlockAll, BlockAllTraffic}
)

func TestTrafficVMRuleDropsICMPFromOneGuest(t *testing.T) {
	l := newLab(t, Options{})
	d := Department{ID: "eng", Policy: allowAll}
	l.applyDept(d, l.vm(l.a), l.vm(l.b), l.vm(l.c))
	l.wantPing(l.a.NS, l.b.IP, true)

	dropFromA := Rule{ID: "no-ping-from-a", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP, SrcIPAddr: l.a.IP}
	l.applyVM(d, l.vm(l.b, dropFromA))
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantPing(l.c.NS, l.b.IP, true)
	l.wantPing(l.a.NS, l.c.IP, true)
}

func TestTrafficBlockAllAcceptsTCP22Only(t *testing.T) {
	l := newLab(t, Options{})
	listen(t, l.b.NS, 22)
	listen(t, l.b.NS, 23)
	listen(t, l.a.NS, 22)
	// allow_outbound lets A's SYN out; B accepts only port 22 in.
	d := Department{ID: "eng", Policy: DepartmentPolicy{BlockAll, AllowOutbound}}
	ssh := Rule{ID: "ssh-in", Action: Accept, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 22}
	l.applyDept(d, l.vm(l.a), l.vm(l.b, ssh), l.vm(l.c))
	l.wantConnect(l.a.NS, l.b.IP+":22", true)
	l.wantConnect(l.a.NS, l.b.IP+":23", false)
	l.wantConnect(l.c.NS, l.b.IP+":22", true)
	l.wantConnect(l.b.NS, l.a.IP+":22", false) // A accepts nothing new
	l.wantPing(l.a.NS, l.b.IP, false)
}

// Under BLOCK_ALL with no default rules, only the replies stateless mode
// derives from the two accepts carry the answers.
func TestTrafficStatelessRepliesUnderStrictBlockAll(t *testing.T) {
	l := newLab(t, Options{})
	listen(t, l.b.NS, 22)
	listen(t, l.a.NS, 22)
	d := Department{ID: "eng", Policy: blockAll}
	out22 := Rule{ID: "ssh-out", Action: Accept, Direction: Out, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 22}
	in22 := Rule{ID: "ssh-in", Action: Accept, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 22}
	l.applyDept(d, l.vm(l.a, out22), l.vm(l.b, in22))
	l.wantConnect(l.a.NS, l.b.IP+":22", true)
	// B's reply rule (tcp sport 22, ACK or RST) opens nothing new towards A.
	l.wantConnect(l.b.NS, l.a.IP+":22", false)
	l.wantPing(l.a.NS, l.b.IP, false)
}

func TestTrafficHostBoundIsFiltered(t *testing.T) {
	l := newLab(t, Options{})
	d := Department{ID: "eng", Policy: allowAll}
	noGateway := Rule{ID: "no-gw-ping", Action: Drop, Direction: Out, Priority: DefaultPriority, Protocol: ICMP,
		DstIPAddr: gatewayIP}
	l.applyDept(d, l.vm(l.a, noGateway), l.vm(l.b))
	l.wantPing(l.a.NS, gatewayIP, false) // input hook
	l.wantPing(l.a.NS, l.b.IP, true)
	l.wantPing(l.b.NS, gatewayIP, true)

	// The output hook: the host's own echo request into B.
	noHost := Rule{ID: "no-host-ping", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP,
		SrcIPAddr: gatewayIP, SrcIPMask: "32"}
	l.resync(d, l.vm(l.a), l.vm(l.b, noHost))
	l.wantPing(l.host, l.b.IP, false)
	l.wantPing(l.host, l.a.IP, true)
}

func TestTrafficDepartmentChangeAndOverride(t *testing.T) {
	l := newLab(t, Options{})
	listen(t, l.c.NS, 80)
	listen(t, l.c.NS, 81)
	d := Department{ID: "eng", Policy: allowAll}
	vms := []VM{l.vm(l.a), l.vm(l.b), l.vm(l.c)}
	l.applyDept(d, vms...)
	l.wantPing(l.a.NS, l.b.IP, true)

	d.RuleSet.Rules = []Rule{
		{ID: "no-ping", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP},
		{ID: "no-web", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 80},
	}
	before := l.fw.changes.Load()
	l.applyDept(d, vms...)
	if n := l.fw.changes.Load() - before; n != 1 {
		t.Errorf("department change took %d batches, want 1", n)
	}
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantPing(l.b.NS, l.c.IP, false)
	l.wantPing(l.c.NS, l.a.IP, false)
	l.wantConnect(l.a.NS, l.c.IP+":80", false)
	l.wantConnect(l.a.NS, l.c.IP+":81", true)

	// C overrides the ICMP rule only; the port-80 rule still holds for C.
	allowPing := Rule{ID: "ping-ok", Action: Accept, Direction: In, Priority: 900, Protocol: ICMP, OverridesDept: true}
	vms[2] = l.vm(l.c, allowPing)
	l.applyDept(d, vms...)
	l.wantPing(l.a.NS, l.c.IP, true)
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantConnect(l.a.NS, l.c.IP+":80", false)
	l.wantConnect(l.a.NS, l.c.IP+":81", true)

	l.wantPing(l.host, l.c.IP, true)
	l.wantPing(l.host, l.b.IP, false)

	// The department's rules exist once, in a chain A and B jump to.
	table := l.host.Run(t, "nft", "list", "table", "bridge", TableName)
	if n := strings.Count(table, "chain dept-eng-in-p500 {"); n != 1 {
		t.Errorf("want one shared chain for the department's rules at 500, found %d:\n%s", n, table)
	}
	for _, vm := range []string{"a", "b"} {
		chain := table[strings.Index(table, "chain vm-"+vm+"-in {"):]
		if chain = chain[:strings.Index(chain, "}")]; !strings.Contains(chain, "jump dept-eng-in-p500") {
			t.Errorf("vm-%s-in does not jump to the department chain:\n%s", vm, chain)
		}
	}
}

func TestTrafficAntiSpoofing(t *testing.T) {
	l := newLab(t, Options{})
	d := Department{ID: "eng", Policy: allowAll}
	l.applyDept(d, l.vm(l.a), l.vm(l.b))
	l.wantPing(l.a.NS, l.b.IP, true)
	ctx := testCtx(t)
	counters := func() map[string]uint64 {
		t.Helper()
		c, err := l.fw.Counters(ctx, "a", PrimaryNIC)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := counters(); c[CounterSpoofMAC]+c[CounterSpoofARP]+c[CounterSpoofIP] != 0 {
		t.Fatalf("counters moved without spoofing: %v", c)
	}

	// A forged source MAC.
	l.a.Run(t, "ip", "link", "set", "eth0", "address", "52:54:00:00:00:99")
	l.wantPing(l.a.NS, l.b.IP, false)
	if c := counters(); c[CounterSpoofMAC] == 0 {
		t.Errorf("spoof-mac counter did not move: %v", c)
	}
	l.a.Run(t, "ip", "link", "set", "eth0", "address", l.a.MAC)
	l.wantPing(l.a.NS, l.b.IP, true)

	// ARP for an address that is not A's.
	l.a.Run(t, "ip", "addr", "add", "10.0.0.9/24", "dev", "eth0")
	arpBefore := counters()[CounterSpoofARP]
	_ = l.a.Try("busybox", "arping", "-c", "1", "-w", "1", "-I", "eth0", "-s", "10.0.0.9", l.b.IP)
	if got := counters()[CounterSpoofARP]; got <= arpBefore {
		t.Errorf("spoof-arp counter did not move (%d -> %d)", arpBefore, got)
	}

	// IPv4 from an address that is not A's (B's MAC known, so no ARP).
	l.a.Run(t, "ip", "neigh", "replace", l.b.IP, "lladdr", l.b.MAC, "dev", "eth0")
	if l.a.Try("busybox", "ping", "-c", "1", "-W", "1", "-I", "10.0.0.9", l.b.IP) == nil {
		t.Error("ping from a forged source address got through")
	}
	if c := counters(); c[CounterSpoofIP] == 0 {
		t.Errorf("spoof-ip counter did not move: %v", c)
	}

	// A DHCP server answer from a guest.
	err := l.a.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(l.a.IP), Port: 67}, &net.UDPAddr{IP: net.ParseIP(l.b.IP), Port: 68})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("offer"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := counters(); c[CounterRogueDHCP] == 0 {
		t.Errorf("rogue-dhcp counter did not move: %v", c)
	}
}

// Stateless mode tells "established" TCP by its flags. This shows both
// what that gives (a SYN from a reply port is dropped) and what it costs
// (an ACK from a reply port reaches any port), as STATELESS.md says.
func TestTrafficStatelessTCPFlags(t *testing.T) {
	l := newLab(t, Options{})
	d := Department{ID: "eng", Policy: blockAll}
	outAll := Rule{ID: "a-out", Action: Accept, Direction: Out, Priority: DefaultPriority, Protocol: TCP}
	web := Rule{ID: "b-web-out", Action: Accept, Direction: Out, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 80}
	l.applyDept(d, l.vm(l.a, outAll), l.vm(l.b, web))

	capt, err := l.b.Capture("eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	amac, _ := net.ParseMAC(l.a.MAC)
	bmac, _ := net.ParseMAC(l.b.MAC)
	for _, c := range []struct {
		name   string
		sport  uint16
		flags  byte
		passes bool
	}{
		{"SYN from port 80 (a new connection)", 80, tcpSYN, false},
		{"SYN-ACK from port 80 (a reply)", 80, tcpSYN | tcpACK, true},
		{"ACK from port 80 to a closed port (the stateless weakness)", 80, tcpACK, true},
		{"RST from port 80", 80, tcpRST, true},
		{"ACK from port 81 (no accepted flow)", 81, tcpACK, false},
		{"FIN alone from port 80 (neither new nor established)", 80, tcpFIN, false},
	} {
		seg := tcpSegment{srcMAC: amac, dstMAC: bmac, src: netip.MustParseAddr(l.a.IP), dst: netip.MustParseAddr(l.b.IP),
			sport: c.sport, dport: 23, flags: c.flags}
		if err := l.a.SendFrame("eth0", seg.frame()); err != nil {
			t.Fatal(err)
		}
		if got := capt.Wait(seg.matches, time.Second); got != c.passes {
			t.Errorf("%s: reached B %v, want %v", c.name, got, c.passes)
		}
	}
}

func TestLiveFailClosedKeepsOldRulesReadable(t *testing.T) {
	fail := false
	l := newLab(t, Options{FailBatch: func(op string) bool { return fail && op == "apply-vm" }})
	d := Department{ID: "eng", Policy: allowAll}
	marker := Rule{ID: "old-rule", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 9}
	l.applyDept(d, l.vm(l.a, marker), l.vm(l.b))
	l.wantPing(l.a.NS, l.b.IP, true)

	fail = true
	newRule := Rule{ID: "new-rule", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 10}
	err := l.fw.ApplyVM(testCtx(t), d, l.vm(l.a, newRule))
	var ae *ApplyError
	if !errors.As(err, &ae) {
		t.Fatalf("want *ApplyError, got %v", err)
	}
	if ae.FailClosed != nil {
		t.Fatalf("fail-closed drop failed: %v", ae.FailClosed)
	}
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantPing(l.b.NS, l.a.IP, false)
	l.wantPing(l.a.NS, gatewayIP, false)
	l.wantPing(l.b.NS, l.c.IP, true) // other VMs keep working

	table := l.host.Run(t, "nft", "list", "table", "bridge", TableName)
	chainA := table[strings.Index(table, "chain vm-a-in {"):]
	chainA = chainA[:strings.Index(chainA, "}")]
	drop, old := strings.Index(chainA, failClosedComment), strings.Index(chainA, "vm:old-rule")
	if drop < 0 || old < 0 || drop > old || strings.Contains(chainA, "new-rule") {
		t.Errorf("want the fail-closed drop above the old rules, and no new rule:\n%s", chainA)
	}

	fail = false
	l.applyVM(d, l.vm(l.a, newRule))
	l.wantPing(l.a.NS, l.b.IP, true)
}

func TestLiveFailClosedForANewVM(t *testing.T) {
	l := newLab(t, Options{FailBatch: func(op string) bool { return op == "apply-vm" }})
	d := Department{ID: "eng", Policy: allowAll}
	l.wantPing(l.a.NS, l.b.IP, true) // no table yet: nothing filters
	err := l.fw.ApplyVM(testCtx(t), d, l.vm(l.a))
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.FailClosed != nil {
		t.Fatalf("want *ApplyError with the drop in place, got %v", err)
	}
	l.wantPing(l.a.NS, l.b.IP, false)
	l.wantPing(l.b.NS, l.c.IP, true)
}

func TestLiveRefusedInputChangesNothing(t *testing.T) {
	f, ns := liveFirewall(t, Options{})
	ctx := testCtx(t)
	d := Department{ID: "eng", Policy: allowAll}
	v := testVM("a", "ivtaaaa", "52:54:00:00:00:0a")
	if err := f.ApplyVM(ctx, d, v); err != nil {
		t.Fatal(err)
	}
	before := ns.Run(t, "nft", "list", "ruleset")
	for _, c := range []struct {
		rule  Rule
		code  errdefs.Code
		field string
	}{
		{Rule{Action: Reject, Direction: In, Protocol: TCP, DstPortStart: 22}, errdefs.CodeFailedPrecondition, "vm.ruleSet.rules[0].action"},
		{Rule{Action: Accept, Direction: In, Protocol: UDP, ConnectionState: &ConnectionState{Established: true}},
			errdefs.CodeFailedPrecondition, "vm.ruleSet.rules[0].connectionState"},
		{Rule{Action: Accept, Direction: In, Protocol: TCP, DstPortStart: 80, DstPortEnd: 79}, errdefs.CodeInvalidArgument,
			"vm.ruleSet.rules[0].dstPortEnd"},
	} {
		bad := v
		bad.RuleSet.Rules = []Rule{c.rule}
		err := f.ApplyVM(ctx, d, bad)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != c.code || e.Field != c.field {
			t.Errorf("want %s on %s, got %v", c.code, c.field, err)
		}
	}
	if after := ns.Run(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("refused input changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestLiveRemoveVMIsIdempotent(t *testing.T) {
	f, ns := liveFirewall(t, Options{})
	ctx := testCtx(t)
	d := Department{ID: "eng", Policy: blockAll}
	a, b := testVM("a", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1"), testVM("b", "ivtbbbb", "52:54:00:00:00:0b")
	if err := f.ApplyDepartment(ctx, d, []VM{a, b}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := f.RemoveVM(ctx, "a"); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	table := ns.Run(t, "nft", "list", "table", "bridge", TableName)
	if strings.Contains(table, "vm-a-") || strings.Contains(table, "ivtaaaa") || !strings.Contains(table, "vm-b-in") {
		t.Errorf("want A gone and B kept:\n%s", table)
	}
	if err := f.RemoveVM(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := f.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if table := ns.Run(t, "nft", "list", "table", "bridge", TableName); strings.Contains(table, "dept-") {
		t.Errorf("prune left department chains no VM uses:\n%s", table)
	}
}
