package firewall

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestRuleJSONUsesInfinibayNames(t *testing.T) {
	in := `{"id":"r1","name":"Web","action":"ACCEPT","direction":"IN","protocol":"tcp",
		"srcPortStart":1024,"srcPortEnd":2048,"dstPortStart":443,"srcIpAddr":"10.0.0.0","srcIpMask":"255.0.0.0",
		"dstIpAddr":"10.0.0.1","dstIpMask":"32","connectionState":{"new":true,"established":true},"overridesDept":true}`
	var r Rule
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Priority != DefaultPriority {
		t.Errorf("absent priority became %d, want %d", r.Priority, DefaultPriority)
	}
	if !r.OverridesDept || r.SrcPortEnd != 2048 || r.DstIPMask != "32" || !r.ConnectionState.New || r.ConnectionState.Related {
		t.Errorf("fields lost: %+v", r)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r)
	for _, k := range []string{`"srcPortStart"`, `"dstIpMask"`, `"connectionState"`, `"overridesDept"`, `"priority":500`} {
		if !strings.Contains(string(out), k) {
			t.Errorf("marshalled rule lacks %s: %s", k, out)
		}
	}
	var zero Rule
	if err := json.Unmarshal([]byte(`{"priority":0}`), &zero); err != nil || zero.Priority != 0 {
		t.Errorf("explicit priority 0 became %d (%v)", zero.Priority, err)
	}
}

func TestRuleSetValidationNamesTheField(t *testing.T) {
	ok := Rule{Action: Accept, Direction: In, Priority: 500, Protocol: TCP, DstPortStart: 22}
	with := func(mod func(*Rule)) RuleSet {
		r := ok
		mod(&r)
		return RuleSet{Rules: []Rule{ok, ok, r}}
	}
	cases := []struct {
		set   RuleSet
		field string
	}{
		{with(func(r *Rule) { r.DstPortEnd = 21 }), "rules[2].dstPortEnd"},
		{with(func(r *Rule) { r.DstPortStart = 70000 }), "rules[2].dstPortStart"},
		{with(func(r *Rule) { r.DstPortStart, r.DstPortEnd = 0, 80 }), "rules[2].dstPortStart"},
		{with(func(r *Rule) { r.SrcPortStart = -1 }), "rules[2].srcPortStart"},
		{with(func(r *Rule) { r.Protocol = ICMP }), "rules[2].dstPortStart"},
		{with(func(r *Rule) { r.Protocol, r.DstPortStart = All, 0; r.SrcPortEnd = 9 }), "rules[2].srcPortEnd"},
		{with(func(r *Rule) { r.Protocol = "sctp" }), "rules[2].protocol"},
		{with(func(r *Rule) { r.Action = "ALLOW" }), "rules[2].action"},
		{with(func(r *Rule) { r.Direction = "BOTH" }), "rules[2].direction"},
		{with(func(r *Rule) { r.Priority = -1 }), "rules[2].priority"},
		{with(func(r *Rule) { r.Priority = 70000 }), "rules[2].priority"},
		{with(func(r *Rule) { r.SrcIPAddr = "10.0.0.300" }), "rules[2].srcIpAddr"},
		{with(func(r *Rule) { r.SrcIPAddr = "fe80::1" }), "rules[2].srcIpAddr"},
		{with(func(r *Rule) { r.DstIPAddr, r.DstIPMask = "10.0.0.0", "255.0.255.0" }), "rules[2].dstIpMask"},
		{with(func(r *Rule) { r.DstIPAddr, r.DstIPMask = "10.0.0.0", "33" }), "rules[2].dstIpMask"},
		{with(func(r *Rule) { r.DstIPMask = "24" }), "rules[2].dstIpMask"},
		{with(func(r *Rule) { r.DstIPAddr, r.DstIPMask = "10.0.0.0/8", "8" }), "rules[2].dstIpMask"},
		{with(func(r *Rule) { r.ID = "has space" }), "rules[2].id"},
		{with(func(r *Rule) { r.ID = "preset:ssh" }), "rules[2].id"},
		{with(func(r *Rule) { r.Name = "bad\nname" }), "rules[2].name"},
		{with(func(r *Rule) { r.Description = strings.Repeat("x", 2000) }), "rules[2].description"},
		{RuleSet{Rules: []Rule{{ID: "x", Action: Drop, Direction: In, Protocol: All}, {ID: "x", Action: Drop, Direction: In, Protocol: All}}}, "rules[1].id"},
		{RuleSet{Presets: []Preset{"ssh", "telnet"}}, "presets[1]"},
		{RuleSet{Presets: []Preset{"ssh", "ssh"}}, "presets[1]"},
	}
	for _, c := range cases {
		err := c.set.Validate()
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != c.field {
			t.Errorf("want InvalidArgument on %s, got %v", c.field, err)
		}
	}
	good := RuleSet{Rules: []Rule{ok,
		{Action: Drop, Direction: Out, Protocol: All, DstIPAddr: "10.0.0.5", DstIPMask: "255.255.255.0"},
		{Action: Drop, Direction: InOut, Protocol: UDP, SrcPortStart: 1, SrcPortEnd: 65535, SrcIPAddr: "192.168.0.0/16"},
		{Action: Accept, Direction: In, Protocol: ICMP, SrcIPAddr: "0.0.0.0", SrcIPMask: "0"},
	}, Presets: []Preset{"vnc", "ssh"}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid set refused: %v", err)
	}
}

func TestAddressesAreNormalised(t *testing.T) {
	for _, c := range []struct{ addr, mask, want string }{
		{"10.0.0.5", "255.255.255.0", "10.0.0.0/24"},
		{"10.0.0.5", "24", "10.0.0.0/24"},
		{"10.0.0.5/24", "", "10.0.0.0/24"},
		{"10.0.0.5", "", "10.0.0.5/32"},
		{"10.9.9.9", "0", "0.0.0.0/0"},
	} {
		p, err := parseAddrMask(c.addr, c.mask)
		if err != nil || p.String() != c.want {
			t.Errorf("%s mask %q: got %v, %v; want %s", c.addr, c.mask, p, err, c.want)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, c := range []struct {
		p     DepartmentPolicy
		field string
	}{
		{DepartmentPolicy{"DENY", AllowInternet}, "policy"},
		{DepartmentPolicy{BlockAll, BlockSSH}, "defaultConfig"},
		{DepartmentPolicy{AllowAll, AllowOutbound}, "defaultConfig"},
		{DepartmentPolicy{AllowAll, ""}, "defaultConfig"},
	} {
		var e *errdefs.Error
		if err := c.p.Validate(); !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("%+v: want error on %s, got %v", c.p, c.field, err)
		}
	}
	d := Department{ID: "eng", Policy: DepartmentPolicy{BlockAll, AllowInternet},
		RuleSet: RuleSet{Rules: []Rule{{Action: Accept, Direction: In, Protocol: TCP, DstPortStart: 99999}}}}
	var e *errdefs.Error
	if err := d.Validate(); !errors.As(err, &e) || e.Field != "ruleSet.rules[0].dstPortStart" {
		t.Errorf("want ruleSet.rules[0].dstPortStart, got %v", err)
	}
}

func TestVMValidation(t *testing.T) {
	good := testVM("0f8fad5b-d9cb-469f-a165-70867728950e", "ivt0f8fad5bd9cb", "52:54:00:12:34:56", "10.0.0.7")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod   func(*VM)
		field string
	}{
		{func(v *VM) { v.ID = "../x" }, "id"},
		{func(v *VM) { v.NICs[0].TAP = "a-name-longer-than-15" }, "nics[0].tap"},
		{func(v *VM) { v.NICs[0].TAP = "" }, "nics[0].tap"},
		{func(v *VM) { v.NICs[0].MAC = "01:00:5e:00:00:01" }, "nics[0].mac"},
		{func(v *VM) { v.NICs[0].MAC = "00:00:00:00:00:00" }, "nics[0].mac"},
		{func(v *VM) { v.NICs[0].MAC = "52-54-00-12-34-56" }, "nics[0].mac"},
		{func(v *VM) { v.NICs[0].IPs = []netip.Addr{netip.MustParseAddr("fe80::1")} }, "nics[0].ips[0]"},
		{func(v *VM) {
			v.NICs[0].IPs = []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("10.0.0.7")}
		}, "nics[0].ips[1]"},
		{func(v *VM) { v.NICs[0].Name = "" }, "nics[0].name"},
		{func(v *VM) { v.NICs[0].Name = "net.1" }, "nics[0].name"},
		{func(v *VM) { v.NICs = append(v.NICs, testNIC("net0", "ivtother", "52:54:00:12:34:57")) }, "nics[1].name"},
		{func(v *VM) { v.NICs = append(v.NICs, testNIC("net1", "ivt0f8fad5bd9cb", "52:54:00:12:34:57")) }, "nics[1].tap"},
		{func(v *VM) { v.RuleSet.Presets = []Preset{"ftp"} }, "ruleSet.presets[0]"},
	} {
		v := good
		v.NICs = slices.Clone(good.NICs)
		c.mod(&v)
		var e *errdefs.Error
		if err := v.Validate(); !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("want error on %s, got %v", c.field, err)
		}
	}
}

func TestCheckRule(t *testing.T) {
	cs := func(est, nw, rel, inv bool) *ConnectionState {
		return &ConnectionState{Established: est, New: nw, Related: rel, Invalid: inv}
	}
	cases := []struct {
		mode Mode
		r    Rule
		ok   bool
	}{
		{stateless, Rule{Action: Accept, Protocol: TCP, ConnectionState: cs(true, true, true, false)}, true},
		{stateless, Rule{Action: Accept, Protocol: TCP, ConnectionState: cs(false, false, true, false)}, false},
		{stateless, Rule{Action: Drop, Protocol: TCP, ConnectionState: cs(true, false, false, true)}, true},
		{stateless, Rule{Action: Drop, Protocol: TCP, ConnectionState: cs(true, false, true, false)}, false},
		{stateless, Rule{Action: Drop, Protocol: TCP, ConnectionState: cs(true, true, true, true)}, true}, // every state: no match on state
		{stateless, Rule{Action: Accept, Protocol: ICMP, ConnectionState: cs(false, false, true, false)}, true},
		{stateless, Rule{Action: Drop, Protocol: ICMP, ConnectionState: cs(false, true, false, true)}, false},
		{stateless, Rule{Action: Accept, Protocol: UDP, ConnectionState: cs(true, false, false, false)}, false},
		{stateless, Rule{Action: Accept, Protocol: UDP, ConnectionState: cs(false, false, false, false)}, true},
		{stateless, Rule{Action: Reject, Protocol: TCP}, false},
		{Mode{}, Rule{Action: Accept, Protocol: UDP, ConnectionState: cs(true, false, false, false)}, false},
		{everything, Rule{Action: Accept, Protocol: UDP, ConnectionState: cs(true, false, false, false)}, true},
		{everything, Rule{Action: Reject, Protocol: All}, true},
	}
	for i, c := range cases {
		err := c.mode.CheckRule(c.r)
		if (err == nil) != c.ok {
			t.Errorf("case %d (%s %s %s): err %v, want ok %v", i, c.r.Action, c.r.Protocol, c.r.ConnectionState, err, c.ok)
		}
		var e *errdefs.Error
		if err != nil && (!errors.As(err, &e) || e.Code != errdefs.CodeFailedPrecondition) {
			t.Errorf("case %d: want FailedPrecondition, got %v", i, err)
		}
	}
}
