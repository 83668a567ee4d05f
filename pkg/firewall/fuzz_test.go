package firewall

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// FuzzRuleSetJSON feeds rule sets as the API would receive them. Whatever
// comes in, validation answers with a typed error or the set renders in
// both modes without panicking.
func FuzzRuleSetJSON(f *testing.F) {
	for _, s := range []string{
		`{"rules":[{"action":"ACCEPT","direction":"IN","protocol":"tcp","dstPortStart":22}],"presets":["ssh"]}`,
		`{"rules":[{"action":"DROP","direction":"INOUT","protocol":"udp","srcPortStart":1,"srcPortEnd":65535,"srcIpAddr":"10.0.0.0","srcIpMask":"255.0.0.0","overridesDept":true}]}`,
		`{"rules":[{"action":"ACCEPT","direction":"OUT","protocol":"icmp","dstIpAddr":"192.168.1.0/24","connectionState":{"new":true,"related":true}}]}`,
		`{"rules":[{"action":"REJECT","direction":"IN","protocol":"all","priority":0}]}`,
		`{"rules":[{"id":"x","action":"ACCEPT","direction":"IN","protocol":"tcp","connectionState":{"established":true,"invalid":true}}]}`,
		`{"rules":null,"presets":["vnc","rdp","http","https"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s RuleSet
		if json.Unmarshal(b, &s) != nil {
			return
		}
		if err := s.Validate(); err != nil {
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field == "" {
				t.Fatalf("validation error is not a field-naming InvalidArgument: %v", err)
			}
			return
		}
		for _, m := range []Mode{stateless, everything} {
			v := vmA()
			v.RuleSet = s
			d := Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowInternet}, RuleSet: s}
			p, err := Render(m, d, v)
			if err != nil {
				var e *errdefs.Error
				if !errors.As(err, &e) || e.Code != errdefs.CodeFailedPrecondition {
					t.Fatalf("a valid set was refused with %v", err)
				}
				continue
			}
			if p.Text() == "" {
				t.Fatal("empty rendering")
			}
		}
	})
}

// FuzzAddrMask checks that any address and mask either fail with an
// addrError or give a masked IPv4 prefix that parses back the same.
func FuzzAddrMask(f *testing.F) {
	for _, s := range [][2]string{{"10.0.0.1", ""}, {"10.0.0.0", "255.255.255.0"}, {"10.0.0.0", "24"}, {"10.0.0.0/8", ""},
		{"::1", ""}, {"", "24"}, {"1.2.3.4", "255.0.255.0"}, {"1.2.3.4", "024"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, addr, mask string) {
		p, err := parseAddrMask(addr, mask)
		if err != nil {
			var ae *addrError
			if !errors.As(err, &ae) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if addr == "" {
			if p.IsValid() {
				t.Fatalf("empty address gave %v", p)
			}
			return
		}
		if !p.Addr().Is4() || p != p.Masked() {
			t.Fatalf("%q/%q gave %v", addr, mask, p)
		}
		again, err := parseAddrMask(p.String(), "")
		if err != nil || again != p {
			t.Fatalf("%v does not parse back (%v, %v)", p, again, err)
		}
		if _, err := netip.ParsePrefix(p.String()); err != nil {
			t.Fatal(err)
		}
	})
}
