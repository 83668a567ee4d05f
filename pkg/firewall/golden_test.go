package firewall

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/<name>.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("rendering differs from %s (-update rewrites it):\n%s", path, lineDiff(string(want), got))
	}
}

var (
	stateless = Mode{Stateless: true}
	// everything is a kernel with conntrack and reject in the bridge family.
	everything = Mode{Caps: Capabilities{Conntrack: true, Reject: true, BridgeMeta: true}}
)

// testVM is a VM with one NIC, its primary.
func testVM(id, tap, mac string, ips ...string) VM {
	return VM{ID: id, NICs: []NIC{testNIC(PrimaryNIC, tap, mac, ips...)}}
}

func testNIC(name, tap, mac string, ips ...string) NIC {
	n := NIC{Name: name, TAP: tap, MAC: mac}
	for _, ip := range ips {
		n.IPs = append(n.IPs, netip.MustParseAddr(ip))
	}
	return n
}

func vmA(rules ...Rule) VM {
	v := testVM("a", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1")
	v.RuleSet.Rules = rules
	return v
}

func rule(id string, a Action, d Direction, p Protocol) Rule {
	return Rule{ID: id, Action: a, Direction: d, Priority: DefaultPriority, Protocol: p}
}

// TestGoldenRendering renders one feature per golden file. The files are
// the reviewable form of what goes to the kernel; -update rewrites them.
func TestGoldenRendering(t *testing.T) {
	ssh := rule("ssh-in", Accept, In, TCP)
	ssh.DstPortStart = 22
	cases := []struct {
		name string
		mode Mode
		dept Department
		vms  []VM
	}{
		{"policy-block-all-allow-internet", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowInternet}}, []VM{vmA()}},
		{"policy-block-all-allow-outbound", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowOutbound}}, []VM{vmA()}},
		{"policy-block-all-block-all", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, BlockAllTraffic}}, []VM{vmA()}},
		{"policy-allow-all-block-ssh", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockSSH}}, []VM{vmA()}},
		{"policy-allow-all-block-smb", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockSMB}}, []VM{vmA()}},
		{"policy-allow-all-block-databases", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockDatabases}}, []VM{vmA()}},
		{"policy-allow-all-none", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, NoDefaults}}, []VM{vmA()}},
		{"presets", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, BlockAllTraffic},
			RuleSet: RuleSet{Presets: []Preset{PresetRDP}}}, []VM{func() VM {
			v := vmA()
			v.RuleSet.Presets = []Preset{PresetVNC, PresetSSH, PresetHTTP, PresetHTTPS}
			return v
		}()}},
		{"override", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockSSH}, RuleSet: RuleSet{Rules: []Rule{
			rule("no-ping", Drop, In, ICMP), func() Rule { r := rule("web-out", Accept, Out, TCP); r.DstPortStart = 80; return r }(),
		}}}, []VM{
			vmA(func() Rule {
				r := rule("my-ssh", Accept, In, TCP)
				r.DstPortStart, r.Priority, r.OverridesDept = 22, 700, true
				return r
			}()),
			testVM("b", "ivtbbbb", "52:54:00:00:00:0b", "10.0.0.2"),
		}},
		{"anti-spoof-addresses-unknown", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, NoDefaults}},
			[]VM{testVM("a", "ivtaaaa", "52:54:00:00:00:0a")}},
		{"anti-spoof-two-addresses", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, NoDefaults}},
			[]VM{testVM("a", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1", "192.168.7.9")}},
		{"stateless-tcp-icmp-states", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, BlockAllTraffic}}, []VM{vmA(
			Rule{ID: "new", Action: Accept, Direction: In, Priority: 500, Protocol: TCP, DstPortStart: 22, ConnectionState: &ConnectionState{New: true}},
			Rule{ID: "est", Action: Drop, Direction: In, Priority: 501, Protocol: TCP, ConnectionState: &ConnectionState{Established: true}},
			Rule{ID: "inv", Action: Drop, Direction: In, Priority: 502, Protocol: TCP, ConnectionState: &ConnectionState{Invalid: true}},
			Rule{ID: "new-est-rel", Action: Accept, Direction: In, Priority: 503, Protocol: TCP, DstPortStart: 80,
				ConnectionState: &ConnectionState{New: true, Established: true, Related: true}},
			Rule{ID: "ping-in", Action: Accept, Direction: In, Priority: 504, Protocol: ICMP, ConnectionState: &ConnectionState{New: true, Related: true}},
		)}},
		{"stateful-conntrack", everything, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowInternet}}, []VM{vmA(
			ssh, Rule{ID: "est-only", Action: Accept, Direction: In, Priority: 500, Protocol: UDP, DstPortStart: 5000,
				ConnectionState: &ConnectionState{Established: true}},
		)}},
		{"reject-supported", everything, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, NoDefaults}}, []VM{vmA(
			func() Rule { r := rule("rej-tcp", Reject, In, TCP); r.DstPortStart = 23; return r }(),
			rule("rej-udp", Reject, Out, UDP),
		)}},
		{"addresses-and-ports", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, BlockAllTraffic}}, []VM{vmA(
			Rule{ID: "range", Action: Accept, Direction: InOut, Priority: 300, Protocol: UDP, SrcPortStart: 1024, SrcPortEnd: 65535,
				DstPortStart: 5000, DstPortEnd: 5100, SrcIPAddr: "10.1.2.77", SrcIPMask: "255.255.255.0", DstIPAddr: "10.0.0.1"},
			Rule{ID: "cidr", Action: Drop, Direction: Out, Priority: 400, Protocol: All, DstIPAddr: "172.16.0.0/12"},
		)}},
		{"two-nics", stateless, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockSSH}}, []VM{
			{ID: "a", NICs: []NIC{
				testNIC(PrimaryNIC, "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1"),
				testNIC("net1", "iva.1", "52:54:00:00:01:0a", "10.1.0.1"),
			}, RuleSet: RuleSet{Rules: []Rule{rule("no-ping", Drop, In, ICMP)}}},
			testVM("b", "ivtbbbb", "52:54:00:00:00:0b", "10.0.0.2"),
		}},
		{"department-shared-by-three-vms", stateless, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowInternet},
			RuleSet: RuleSet{Rules: []Rule{ssh}}}, []VM{
			vmA(), testVM("b", "ivtbbbb", "52:54:00:00:00:0b", "10.0.0.2"), testVM("c", "ivtcccc", "52:54:00:00:00:0c"),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Render(c.mode, c.dept, c.vms...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, p.Text())
		})
	}
}

// TestGoldenRefusals holds the exact errors for what a kernel cannot do,
// one per line.
func TestGoldenRefusals(t *testing.T) {
	noCT := Mode{} // this kernel, not stateless
	cases := []struct {
		name string
		mode Mode
		r    Rule
	}{
		{"REJECT without nft_reject_bridge", stateless, rule("r", Reject, In, TCP)},
		{"REJECT without nft_reject_bridge, stateful", noCT, rule("r", Reject, Out, All)},
		{"connectionState without conntrack", noCT,
			Rule{Action: Accept, Direction: In, Protocol: TCP, ConnectionState: &ConnectionState{New: true}}},
		{"stateless UDP state", stateless,
			Rule{Action: Accept, Direction: In, Protocol: UDP, ConnectionState: &ConnectionState{Established: true}}},
		{"stateless protocol all state", stateless,
			Rule{Action: Drop, Direction: In, Protocol: All, ConnectionState: &ConnectionState{Invalid: true}}},
		{"stateless DROP related TCP", stateless,
			Rule{Action: Drop, Direction: In, Protocol: TCP, ConnectionState: &ConnectionState{New: true, Related: true}}},
		{"stateless ACCEPT related TCP only", stateless,
			Rule{Action: Accept, Direction: In, Protocol: TCP, ConnectionState: &ConnectionState{Related: true}}},
		{"stateless DROP invalid ICMP", stateless,
			Rule{Action: Drop, Direction: In, Protocol: ICMP, ConnectionState: &ConnectionState{Invalid: true}}},
	}
	var b strings.Builder
	for _, c := range cases {
		v := vmA(c.r)
		_, err := Render(c.mode, Department{ID: "d", Policy: DepartmentPolicy{AllowAll, NoDefaults}}, v)
		if c.name == "connectionState without conntrack" || c.name == "REJECT without nft_reject_bridge, stateful" {
			// The department is refused first on such a kernel; check the rule alone.
			err = c.mode.CheckRuleSet(v.RuleSet)
		}
		if err == nil {
			t.Errorf("%s: rendered, want refused", c.name)
			continue
		}
		b.WriteString(c.name + ": " + err.Error() + "\n")
	}
	_, err := Render(Mode{}, Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowOutbound}}, vmA())
	b.WriteString("department without conntrack, not stateless: " + err.Error() + "\n")
	golden(t, "refusals", b.String())
}
