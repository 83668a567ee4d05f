package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/agent/netpolicy"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

var _ netpolicy.Engine = (*agenttest.Firewall)(nil)

// fakeKernel hands the agent a fake firewall, as probing and opening the
// host's nftables would.
type fakeKernel struct{ fw *agenttest.Firewall }

func (k fakeKernel) Probe(context.Context) (firewall.Capabilities, error) { return k.fw.Caps(), nil }

func (k fakeKernel) Open(_ context.Context, opts firewall.Options) (netpolicy.Engine, error) {
	k.fw.SetStateless(opts.Stateless)
	return k.fw, nil
}

const vm4 = "44444444-4444-4444-8444-444444444444"

// appliedSince is what the batches after the first skip installed for the VM.
func appliedSince(fw *agenttest.Firewall, id string, skip int) []agenttest.Applied {
	return fw.Applied(id)[skip:]
}

// A department change is one batch that applies to each of the
// department's running VMs once, and to nothing else; an agent restart
// re-applies each department with running VMs.
func TestDepartmentChangeAppliesToEachRunningVMOnce(t *testing.T) {
	b := newBed(t)
	fw := agenttest.NewFirewall(firewall.Capabilities{Conntrack: true, Reject: true})
	cfg := b.config()
	cfg.Firewall, cfg.FirewallKernel = "auto", fakeKernel{fw}
	a, stop := b.start(cfg)
	if m := a.Firewall().Mode; m != shimapi.FirewallConntrack {
		t.Fatalf("mode %s on a kernel with conntrack", m)
	}

	eng := firewall.Department{ID: "eng", Policy: firewall.DepartmentPolicy{Policy: firewall.AllowAll, DefaultConfig: firewall.NoDefaults}}
	if _, err := a.PutDepartment(t.Context(), eng); err != nil {
		t.Fatal(err)
	}
	if n := len(fw.Batches()); n != 0 {
		t.Errorf("a department without VMs sent %d batches", n)
	}
	for _, vm := range []struct {
		id, dept string
		start    bool
	}{{vm1, "eng", true}, {vm2, "eng", true}, {vm3, "eng", false}, {vm4, "", true}} {
		in := createInput(vm.id, vm.start)
		in.DepartmentID = vm.dept
		if _, err := a.Create(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}

	// The department's change reaches its two running VMs, in one batch.
	eng.RuleSet.Presets = []firewall.Preset{firewall.Presets()[0]}
	if _, err := a.PutDepartment(t.Context(), eng); err != nil {
		t.Fatal(err)
	}
	if got := fw.Batches(); !slices.Equal(got, []string{"apply-department"}) {
		t.Fatalf("batches %v, want one apply-department", got)
	}
	for _, id := range []string{vm1, vm2} {
		got := fw.Applied(id)
		if len(got) != 1 || got[0].Department.ID != "eng" || len(got[0].Department.RuleSet.Presets) != 1 {
			t.Errorf("VM %s got %+v, want the new rules once", id, got)
		}
	}
	for _, id := range []string{vm3, vm4} {
		if got := fw.Applied(id); len(got) != 0 {
			t.Errorf("VM %s (off, or in another department) got %+v", id, got)
		}
	}

	// A preset toggled the same way; a VM powered off drops out.
	if _, err := a.Power(t.Context(), vm2, api.PowerOff, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetDepartmentPreset(t.Context(), "eng", firewall.Presets()[0], false); err != nil {
		t.Fatal(err)
	}
	if got := appliedSince(fw, vm1, 1); len(got) != 1 || len(got[0].Department.RuleSet.Presets) != 0 {
		t.Errorf("vm1 after the preset went off: %+v", got)
	}
	if got := appliedSince(fw, vm2, 1); len(got) != 0 {
		t.Errorf("vm2, off, got %+v", got)
	}

	// Members keep a department.
	err := a.DeleteDepartment(t.Context(), "eng")
	if e := errdefs.As(err); e.Code != errdefs.CodeFailedPrecondition {
		t.Errorf("deleting a department with VMs: %v", err)
	}

	// A VM's own change is one batch for that VM alone.
	st, err := a.VMFirewall(vm1)
	if err != nil {
		t.Fatal(err)
	}
	before := len(fw.Batches())
	if _, err := a.PutVMFirewall(t.Context(), vm1, st); err != nil {
		t.Fatal(err)
	}
	if got := fw.Batches()[before:]; !slices.Equal(got, []string{"apply-vm"}) {
		t.Errorf("a VM's change sent %v", got)
	}
	if eff, err := a.EffectiveFirewall(t.Context(), vm1); err != nil || eff.Department != "eng" || eff.Kernel == "" {
		t.Errorf("effective firewall of a running VM: %+v, %v", eff, err)
	}

	// After a restart each department with running VMs is re-applied once.
	stop()
	fw2 := agenttest.NewFirewall(fw.Caps())
	cfg.FirewallKernel = fakeKernel{fw2}
	b.start(cfg)
	if got := fw2.Batches(); !slices.Equal(got, []string{"resync", "resync"}) {
		t.Errorf("batches after restart %v, want one resync per department with running VMs", got)
	}
	for id, dept := range map[string]string{vm1: "eng", vm4: "default"} {
		if got := fw2.Applied(id); len(got) != 1 || got[0].Department.ID != dept {
			t.Errorf("VM %s after restart: %+v", id, got)
		}
	}
	for _, id := range []string{vm2, vm3} {
		if got := fw2.Applied(id); len(got) != 0 {
			t.Errorf("VM %s, off, re-applied: %+v", id, got)
		}
	}
}

// Moving a running VM to another bridge moves its TAP and applies its
// rules again; the spec follows.
func TestMoveRunningVM(t *testing.T) {
	b := newBed(t)
	fw := agenttest.NewFirewall(firewall.Capabilities{Conntrack: true})
	cfg := b.config()
	cfg.Firewall, cfg.FirewallKernel = "auto", fakeKernel{fw}
	a, _ := b.start(cfg)
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	tap := netdev.TapName(vm1, netdev.PrimaryNIC)
	b.net.PlugTAP(tap, "br0") // as the shim does at its start

	if _, err := a.MoveVM(t.Context(), vm1, "", "nope"); errdefs.As(err).Field != "bridge" {
		t.Errorf("a move to a missing bridge: %v", err)
	}
	vm, err := a.MoveVM(t.Context(), vm1, "", "br1")
	if err != nil {
		t.Fatal(err)
	}
	if vm.NetworkBridge != "br1" || b.net.TAPBridge(tap) != "br1" {
		t.Errorf("after the move: spec on %s, TAP on %s", vm.NetworkBridge, b.net.TAPBridge(tap))
	}
	if got := fw.Batches(); !slices.Equal(got, []string{"apply-vm"}) {
		t.Errorf("batches %v, want the VM's rules applied again", got)
	}
	if err := a.DeleteBridge(t.Context(), "br1", false); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("deleting the bridge a VM is on: %v", err)
	}
}

// twoNICInput is a VM with net1 on br1 beside net0 on br0.
func twoNICInput(id string, start bool) api.CreateVMInput {
	in := createInput(id, start)
	in.Devices = []api.Device{{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}}}
	return in
}

func nicOf(v api.VM, name string) *api.NICDevice {
	for _, d := range v.Devices {
		if d.Name == name {
			return d.NIC
		}
	}
	return nil
}

// One NIC of a running VM moves on its own: its TAP goes to the new
// bridge, the other NIC's stays, the rules are applied again and the spec
// follows. A NIC the VM does not have is the request's fault, and a failed
// move leaves everything where it was.
func TestMoveOneNICOfARunningVM(t *testing.T) {
	b := newBed(t)
	fw := agenttest.NewFirewall(firewall.Capabilities{Conntrack: true})
	cfg := b.config()
	cfg.Firewall, cfg.FirewallKernel = "auto", fakeKernel{fw}
	a, _ := b.start(cfg)
	if _, err := b.net.EnsureBridge(t.Context(), netdev.BridgeConfig{Name: "br2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(t.Context(), twoNICInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	tap0, tap1 := netdev.TapName(vm1, "net0"), netdev.TapName(vm1, "net1")
	b.net.PlugTAP(tap0, "br0")
	b.net.PlugTAP(tap1, "br1")

	for _, nic := range []string{"net7", "disk0"} {
		if _, err := a.MoveVM(t.Context(), vm1, nic, "br2"); errdefs.As(err).Code != errdefs.CodeInvalidArgument || errdefs.As(err).Field != "nic" {
			t.Errorf("moving %s: %v, want InvalidArgument on nic", nic, err)
		}
	}
	if n := len(fw.Batches()); n != 0 {
		t.Errorf("%d batches for refused moves", n)
	}

	vm, err := a.MoveVM(t.Context(), vm1, "net1", "br2")
	if err != nil {
		t.Fatal(err)
	}
	if b.net.TAPBridge(tap1) != "br2" || b.net.TAPBridge(tap0) != "br0" {
		t.Errorf("TAPs: net0 on %s, net1 on %s; want br0 and br2", b.net.TAPBridge(tap0), b.net.TAPBridge(tap1))
	}
	if vm.NetworkBridge != "br0" || nicOf(vm, "net1").Bridge != "br2" {
		t.Errorf("spec: net0 on %s, net1 on %s", vm.NetworkBridge, nicOf(vm, "net1").Bridge)
	}
	got := fw.Applied(vm1)
	if len(got) != 1 || len(got[0].VM.NICs) != 2 || got[0].VM.NICs[1].TAP != tap1 {
		t.Errorf("rules applied again: %+v, want once with both NICs", got)
	}

	// The TAP cannot go: nothing changes.
	b.net.FailMoveTo("br1", errors.New("injected"))
	if _, err := a.MoveVM(t.Context(), vm1, "net1", "br1"); err == nil {
		t.Error("a failed TAP move succeeded")
	}
	if v, _ := a.Get(vm1); b.net.TAPBridge(tap1) != "br2" || nicOf(v, "net1").Bridge != "br2" {
		t.Errorf("after a failed move: TAP on %s, spec %s", b.net.TAPBridge(tap1), nicOf(v, "net1").Bridge)
	}
	b.net.FailMoveTo("br1", nil)

	// A VM that is off changes its spec only.
	if _, err := a.Create(t.Context(), twoNICInput(vm2, false)); err != nil {
		t.Fatal(err)
	}
	before := len(fw.Batches())
	if vm, err := a.MoveVM(t.Context(), vm2, "net1", "br2"); err != nil || nicOf(vm, "net1").Bridge != "br2" {
		t.Errorf("moving an off VM's NIC: %v, %+v", err, vm.Devices)
	}
	if n := len(fw.Batches()) - before; n != 0 {
		t.Errorf("an off VM's move sent %d batches", n)
	}
}

// Each NIC's known addresses reach that NIC's rules; addresses for a NIC
// the VM does not have are refused, naming the field, and change nothing.
func TestPerNICAddresses(t *testing.T) {
	b := newBed(t)
	fw := agenttest.NewFirewall(firewall.Capabilities{Conntrack: true})
	cfg := b.config()
	cfg.Firewall, cfg.FirewallKernel = "auto", fakeKernel{fw}
	a, _ := b.start(cfg)
	if _, err := a.Create(t.Context(), twoNICInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	ip0, ip1 := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.1.0.5")
	st, err := a.PutVMFirewall(t.Context(), vm1, vmspec.VMFirewall{Department: vmspec.DefaultDepartment,
		IPs: []netip.Addr{ip0}, NICIPs: map[string][]netip.Addr{"net1": {ip1}}})
	if err != nil {
		t.Fatal(err)
	}
	applied := fw.Applied(vm1)
	if len(applied) != 1 {
		t.Fatalf("applied %+v", applied)
	}
	nics := applied[0].VM.NICs
	if len(nics) != 2 || !slices.Equal(nics[0].IPs, []netip.Addr{ip0}) || !slices.Equal(nics[1].IPs, []netip.Addr{ip1}) {
		t.Errorf("NICs %+v, want net0 with %s and net1 with %s", nics, ip0, ip1)
	}

	for field, bad := range map[string]map[string][]netip.Addr{
		"nicIps.net7":    {"net7": {ip1}},
		"nicIps.net1[0]": {"net1": {netip.MustParseAddr("fe80::1")}},
		"nicIps.net0":    {"net0": {ip0}}, // ips holds net0's already
	} {
		_, err := a.PutVMFirewall(t.Context(), vm1, vmspec.VMFirewall{Department: vmspec.DefaultDepartment, IPs: []netip.Addr{ip0}, NICIPs: bad})
		if e := errdefs.As(err); e.Code != errdefs.CodeInvalidArgument || e.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	if n := len(fw.Applied(vm1)); n != 1 {
		t.Errorf("refused changes sent %d more batches", n-1)
	}
	if got, _ := a.VMFirewall(vm1); !slices.Equal(got.NICIPs["net1"], st.NICIPs["net1"]) || len(got.NICIPs) != 1 {
		t.Errorf("state after refusals: %+v", got)
	}

	eff, err := a.EffectiveFirewall(t.Context(), vm1)
	if err != nil || len(eff.NICCounters) != 2 || eff.NICCounters["net1"] == nil {
		t.Errorf("effective firewall counts %v, want both NICs (%v)", eff.NICCounters, err)
	}
}
