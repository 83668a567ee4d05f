package vmspec

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

func twoNICSpec(t *testing.T) *Spec {
	t.Helper()
	in := validInput()
	in.MACAddress = "52:54:00:00:00:0a"
	in.Devices = []api.Device{{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1", MAC: "52:54:00:00:01:0a"}}}
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// Every NIC of the spec reaches the firewall with its own TAP, MAC and
// addresses; ips stays the primary NIC's.
func TestFirewallVMListsEveryNIC(t *testing.T) {
	s := twoNICSpec(t)
	f := VMFirewall{Department: DefaultDepartment, IPs: addrs("10.0.0.1"), NICIPs: map[string][]netip.Addr{"net1": addrs("10.1.0.1", "10.1.0.2")}}
	if err := f.ValidateFor(s); err != nil {
		t.Fatal(err)
	}
	v := f.FirewallVM(s)
	want := []firewall.NIC{
		{Name: "net0", TAP: netdev.TapName(s.ID, "net0"), MAC: "52:54:00:00:00:0a", IPs: addrs("10.0.0.1")},
		{Name: "net1", TAP: netdev.TapName(s.ID, "net1"), MAC: "52:54:00:00:01:0a", IPs: addrs("10.1.0.1", "10.1.0.2")},
	}
	if v.ID != s.ID || !slices.EqualFunc(v.NICs, want, func(a, b firewall.NIC) bool {
		return a.Name == b.Name && a.TAP == b.TAP && a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs)
	}) {
		t.Fatalf("firewall VM %+v, want NICs %+v", v, want)
	}
	if err := v.Validate(); err != nil {
		t.Errorf("the firewall refuses the VM: %v", err)
	}

	// The primary NIC's addresses may come under its name instead.
	f = VMFirewall{Department: DefaultDepartment, NICIPs: map[string][]netip.Addr{"net0": addrs("10.0.0.9")}}
	if got := f.FirewallVM(s).NICs; !slices.Equal(got[0].IPs, addrs("10.0.0.9")) || got[1].IPs != nil {
		t.Errorf("nicIps.net0 only: NICs %+v", got)
	}
}

func TestVMFirewallValidationNamesTheField(t *testing.T) {
	s := twoNICSpec(t)
	cases := map[string]VMFirewall{
		"ips[1]":         {IPs: addrs("10.0.0.1", "fe80::1")},
		"nicIps.net1[0]": {NICIPs: map[string][]netip.Addr{"net1": addrs("fe80::1")}},
		"nicIps.Net1":    {NICIPs: map[string][]netip.Addr{"Net1": addrs("10.0.0.1")}},
		"nicIps.net0":    {IPs: addrs("10.0.0.1"), NICIPs: map[string][]netip.Addr{"net0": addrs("10.0.0.2")}},
		"department":     {Department: "Bad Dept"},
	}
	for field, f := range cases {
		if f.Department == "" {
			f.Department = DefaultDepartment
		}
		var e *errdefs.Error
		if err := f.Validate(); !errors.As(err, &e) || e.Field != field || e.Code != errdefs.CodeInvalidArgument {
			t.Errorf("%s: got %v", field, err)
		}
	}
	// A NIC the VM lacks is refused only where the spec is known.
	f := VMFirewall{Department: DefaultDepartment, NICIPs: map[string][]netip.Addr{"net1": addrs("10.1.0.1"), "net7": addrs("10.7.0.1")}}
	if err := f.Validate(); err != nil {
		t.Errorf("without a spec: %v", err)
	}
	var e *errdefs.Error
	if err := f.ValidateFor(s); !errors.As(err, &e) || e.Field != "nicIps.net7" {
		t.Errorf("a NIC the VM lacks: %v", err)
	}
	// disk0 is a device, but no NIC.
	f.NICIPs = map[string][]netip.Addr{"disk0": addrs("10.7.0.1")}
	if err := f.ValidateFor(s); !errors.As(err, &e) || e.Field != "nicIps.disk0" {
		t.Errorf("a device that is no NIC: %v", err)
	}
}
