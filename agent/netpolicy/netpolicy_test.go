package netpolicy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

var (
	_ Engine  = (*firewall.Firewall)(nil)
	_ Engine  = (*agenttest.Firewall)(nil)
	_ Network = (*agenttest.Network)(nil)
)

type kernel struct{ fw *agenttest.Firewall }

func (k kernel) Probe(context.Context) (firewall.Capabilities, error) { return k.fw.Caps(), nil }

func (k kernel) Open(_ context.Context, opts firewall.Options) (Engine, error) {
	k.fw.SetStateless(opts.Stateless)
	return k.fw, nil
}

type noVMs struct{}

func (noVMs) VMs() []VM     { return nil }
func (noVMs) IDs() []string { return nil }

func policy(t *testing.T, caps firewall.Capabilities) (*Policy, *agenttest.Firewall) {
	fw := agenttest.NewFirewall(caps)
	dir := t.TempDir()
	return New(Options{
		Layout: vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")},
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kernel: kernel{fw}, Network: agenttest.NewNetwork("br0"), VMs: noVMs{},
	}), fw
}

// The mode is what the operator asked for, where the kernel can enforce it.
func TestStartSettlesTheMode(t *testing.T) {
	full := firewall.Capabilities{Conntrack: true, Reject: true}
	for _, tc := range []struct {
		want      string
		caps      firewall.Capabilities
		mode      shimapi.FirewallMode
		stateless bool
		fails     bool
	}{
		{"", full, shimapi.FirewallConntrack, false, false},
		{"auto", firewall.Capabilities{}, shimapi.FirewallStateless, true, false},
		{"conntrack", full, shimapi.FirewallConntrack, false, false},
		{"conntrack", firewall.Capabilities{}, "", false, true},
		{"stateless", full, shimapi.FirewallStateless, true, false},
		{"off", full, shimapi.FirewallOff, false, false},
		{"loose", full, "", false, true},
	} {
		p, fw := policy(t, tc.caps)
		err := p.Start(t.Context(), tc.want)
		if tc.fails {
			if err == nil {
				t.Errorf("%q on %+v: no error", tc.want, tc.caps)
			}
			continue
		}
		if err != nil || p.Mode() != tc.mode || p.Reject() != (tc.caps.Reject && tc.mode != shimapi.FirewallOff) {
			t.Errorf("%q on %+v: mode %s reject %v, %v", tc.want, tc.caps, p.Mode(), p.Reject(), err)
		}
		if tc.mode != shimapi.FirewallOff && fw.Mode().Stateless != tc.stateless {
			t.Errorf("%q: the firewall renders stateless=%v", tc.want, fw.Mode().Stateless)
		}
	}
}

// What the kernel cannot enforce is refused before anything changes.
func TestRefusesWhatTheKernelCannotEnforce(t *testing.T) {
	p, fw := policy(t, firewall.Capabilities{Conntrack: true}) // no REJECT
	if err := p.Start(t.Context(), "auto"); err != nil {
		t.Fatal(err)
	}
	d := firewall.Department{ID: "eng", Policy: firewall.DepartmentPolicy{Policy: firewall.AllowAll, DefaultConfig: firewall.NoDefaults},
		RuleSet: firewall.RuleSet{Rules: []firewall.Rule{{Name: "no-telnet", Direction: firewall.In, Action: firewall.Reject, Protocol: firewall.TCP, Priority: firewall.DefaultPriority, DstPortStart: 23, DstPortEnd: 23}}}}
	if _, err := p.PutDepartment(t.Context(), d); err == nil {
		t.Fatal("a REJECT rule was accepted on a kernel without nft_reject_bridge")
	}
	if _, err := p.Department("eng"); err == nil {
		t.Error("the refused department was saved")
	}
	if n := len(fw.Batches()); n != 0 {
		t.Errorf("%d batches sent for a refused change", n)
	}
}

// Per-NIC addresses are checked against the VM's NICs before anything
// changes.
func TestCheckVMFirewallKnowsTheNICs(t *testing.T) {
	p, fw := policy(t, firewall.Capabilities{Conntrack: true})
	if err := p.Start(t.Context(), "auto"); err != nil {
		t.Fatal(err)
	}
	spec, err := vmspec.FromCreateInput(api.CreateVMInput{
		Name: "nics", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: "linux",
		CPUCores: 1, RAMGB: 1, DiskSizeGB: 1, NetworkBridge: "br0", GraphicProtocol: "vnc", GraphicPassword: "pw",
		Devices: []api.Device{{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br0"}}},
	}, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: p.layout})
	if err != nil {
		t.Fatal(err)
	}
	ip := []netip.Addr{netip.MustParseAddr("10.1.0.5")}
	ok := vmspec.VMFirewall{Department: vmspec.DefaultDepartment, NICIPs: map[string][]netip.Addr{"net1": ip}}
	if err := p.CheckVMFirewall(spec, ok); err != nil {
		t.Errorf("addresses for net1: %v", err)
	}
	bad := vmspec.VMFirewall{Department: vmspec.DefaultDepartment, NICIPs: map[string][]netip.Addr{"net2": ip}}
	if e := errdefs.As(p.CheckVMFirewall(spec, bad)); e.Code != errdefs.CodeInvalidArgument || e.Field != "nicIps.net2" {
		t.Errorf("addresses for a NIC the VM lacks: %v", e)
	}
	if n := len(fw.Batches()); n != 0 {
		t.Errorf("checks sent %d batches", n)
	}
}
