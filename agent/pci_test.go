package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

const (
	hostGPU   = "0000:01:00.0"
	hostAudio = "0000:01:00.1"
)

// pciConfig is the bed's config on a host with the hostpci fixtures' two
// boards at once (a GPU with its audio alone in their group; a GPU whose
// group holds the host's NIC; an NVMe drive on nvme), and a ROM directory
// holding gp104.rom.
func (b *bed) pciConfig() Config {
	b.t.Helper()
	cfg := b.config()
	cfg.Sysfs = sysfstest.Build(b.t, "../pkg/hostpci/testdata/gpu-audio.tree", "../pkg/hostpci/testdata/shared-nic.tree")
	cfg.PCIIDs = "../pkg/hwids/testdata/pci.ids"
	cfg.ROMDir = filepath.Join(b.dir, "roms")
	if err := os.MkdirAll(cfg.ROMDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.ROMDir, "gp104.rom"), []byte("rom"), 0o644); err != nil {
		b.t.Fatal(err)
	}
	return cfg
}

func pciUsers(t *testing.T, a *Agent) map[string]api.DeviceUser {
	t.Helper()
	pci, err := a.HostPCI()
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]api.DeviceUser{}
	for _, d := range pci.Devices {
		if d.UsedBy != nil {
			users[d.Address] = *d.UsedBy
		}
	}
	return users
}

// TestPCIAttachAndDetach: a GPU attached to a VM that is off takes its
// audio function along and a ROM file from the ROM directory; every
// refusal of §"What bad input gets" names its field and changes neither
// VM; once detached, the GPU can go to the other VM.
func TestPCIAttachAndDetach(t *testing.T) {
	b := newBed(t)
	cfg := b.pciConfig()
	a, _ := b.start(cfg)
	for _, id := range []string{vm1, vm2} {
		if _, err := a.Create(t.Context(), createInput(id, false)); err != nil {
			t.Fatal(err)
		}
	}

	dev, err := a.AttachPCI(t.Context(), vm1, api.AttachPCIRequest{Address: "01:00.0", ROMFile: "gp104.rom"})
	if err != nil {
		t.Fatal(err)
	}
	rom := filepath.Join(cfg.ROMDir, "gp104.rom")
	if dev.Name != "pci0" || dev.PCI.Host != hostGPU || !slices.Equal(dev.PCI.Functions, []string{hostAudio}) || dev.PCI.ROMFile != rom || dev.PCI.Managed {
		t.Fatalf("attached %+v %+v", dev, dev.PCI)
	}
	if got := lastMessage(t, b, vm1); got != "pci0: PCI device "+hostGPU+" with "+hostAudio+" attached" {
		t.Errorf("event %q", got)
	}
	stored, err := vmspec.Load(b.layout.SpecFile(vm1))
	if err != nil || stored.Device("pci0") == nil || !slices.Equal(stored.Device("pci0").PCI.Functions, []string{hostAudio}) {
		t.Fatalf("stored spec: %v", err)
	}
	want := api.DeviceUser{VMID: vm1, VMName: "vm-1111", Device: "pci0"}
	if users := pciUsers(t, a); len(users) != 2 || users[hostGPU] != want || users[hostAudio] != want {
		t.Errorf("host PCI users %+v", users)
	}

	outside := filepath.Join(b.dir, "outside.rom")
	if err := os.WriteFile(outside, []byte("rom"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(cfg.ROMDir, "link.rom")); err != nil {
		t.Fatal(err)
	}
	before := b.footprintOf(vm1) + b.footprintOf(vm2)
	attach := func(id string, req api.AttachPCIRequest) func() error {
		return func() error { _, err := a.AttachPCI(t.Context(), id, req); return err }
	}
	for _, bad := range []struct {
		name    string
		call    func() error
		code    errdefs.Code
		field   string
		message string
	}{
		{"no such device", attach(vm2, api.AttachPCIRequest{Address: "0000:05:00.0"}), errdefs.CodeInvalidArgument, "address", "no PCI device 0000:05:00.0"},
		{"not on vfio-pci", attach(vm2, api.AttachPCIRequest{Address: "0000:04:00.0"}), errdefs.CodeInvalidArgument, "address", "bound to nvme, not vfio-pci"},
		{"group shared with the host's NIC", attach(vm2, api.AttachPCIRequest{Address: "0000:02:00.0"}), errdefs.CodeInvalidArgument, "address",
			"shares IOMMU group 8 with 0000:03:00.0"},
		{"held by another VM", attach(vm2, api.AttachPCIRequest{Address: hostGPU}), errdefs.CodeInvalidArgument, "address",
			hostGPU + " is already passed through to VM " + vm1},
		{"companion held by another VM", attach(vm2, api.AttachPCIRequest{Address: hostAudio}), errdefs.CodeInvalidArgument, "address",
			"already passed through to VM " + vm1},
		{"ROM file outside its directory", attach(vm2, api.AttachPCIRequest{Address: "0000:02:00.1", ROMFile: outside}), errdefs.CodeInvalidArgument, "romFile",
			"outside the ROM directory"},
		{"ROM file linked outside", attach(vm2, api.AttachPCIRequest{Address: "0000:02:00.1", ROMFile: "link.rom"}), errdefs.CodeInvalidArgument, "romFile",
			"outside the ROM directory"},
		{"ROM file above its directory", attach(vm2, api.AttachPCIRequest{Address: "0000:02:00.1", ROMFile: "../outside.rom"}), errdefs.CodeInvalidArgument, "romFile",
			"outside the ROM directory"},
		{"no ROM file", attach(vm2, api.AttachPCIRequest{Address: "0000:02:00.1", ROMFile: "gone.rom"}), errdefs.CodeInvalidArgument, "romFile", "gone.rom"},
		{"not an address", attach(vm2, api.AttachPCIRequest{Address: "01:00"}), errdefs.CodeInvalidArgument, "address", "PCI address"},
		{"already this VM's", attach(vm1, api.AttachPCIRequest{Address: hostAudio}), errdefs.CodeInvalidArgument, "address", "already passed through as pci0"},
		{"a taken name", attach(vm2, api.AttachPCIRequest{Address: hostGPU, Name: "net0"}), errdefs.CodeAlreadyExists, "name", "net0"},
		{"a bad name", attach(vm2, api.AttachPCIRequest{Address: "0000:04:00.0", Managed: true, Name: "GPU-1"}), errdefs.CodeInvalidArgument, "name", "GPU-1"},
		{"detach an unknown device", func() error { return a.DetachPCI(t.Context(), vm1, "net0") }, errdefs.CodeNotFound, "dev", "no PCI device \"net0\""},
		{"unknown VM", attach(vm3, api.AttachPCIRequest{Address: hostGPU}), errdefs.CodeNotFound, "", vm3},
	} {
		err := bad.call()
		if e := errdefs.As(err); e == nil || e.Code != bad.code || e.Field != bad.field || !strings.Contains(e.Message, bad.message) {
			t.Errorf("%s: %v, want %s naming %q and saying %q", bad.name, err, bad.code, bad.field, bad.message)
		}
		if after := b.footprintOf(vm1) + b.footprintOf(vm2); after != before {
			t.Fatalf("%s changed a spec or a log:\n%s\n---- was ----\n%s", bad.name, after, before)
		}
	}

	if err := a.DetachPCI(t.Context(), vm1, "pci0"); err != nil {
		t.Fatal(err)
	}
	if got := lastMessage(t, b, vm1); got != "pci0: PCI device "+hostGPU+" with "+hostAudio+" detached" {
		t.Errorf("event %q", got)
	}
	if users := pciUsers(t, a); len(users) != 0 {
		t.Errorf("users after the detach: %+v", users)
	}
	// Named by its audio function, the slot goes to vm2, GPU included.
	dev, err = a.AttachPCI(t.Context(), vm2, api.AttachPCIRequest{Address: hostAudio, Name: "gpu", Managed: true})
	if err != nil || dev.PCI.Host != hostAudio || !slices.Equal(dev.PCI.Functions, []string{hostGPU}) || !dev.PCI.Managed {
		t.Fatalf("attach to vm2: %+v %v", dev, err)
	}
	if got := lastMessage(t, b, vm2); !strings.HasSuffix(got, "attached, managed") {
		t.Errorf("event %q", got)
	}
}

// TestPCIRefusedWhileRunning: a running VM's PCI devices change only
// after it is off.
func TestPCIRefusedWhileRunning(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.pciConfig())
	in := createInput(vm1, true)
	in.GPUPCIAddress = hostGPU
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	before := b.footprintOf(vm1)
	_, err := a.AttachPCI(t.Context(), vm1, api.AttachPCIRequest{Address: "0000:02:00.1"})
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "only while it is off") {
		t.Errorf("attach: %v", err)
	}
	err = a.DetachPCI(t.Context(), vm1, "pci0")
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition {
		t.Errorf("detach: %v", err)
	}
	if after := b.footprintOf(vm1); after != before {
		t.Errorf("a refusal changed the VM:\n%s\n---- was ----\n%s", after, before)
	}
}

// TestCreateWithAGPUChecksIt: gpuPciAddress goes through the attach's
// check: refused naming gpuPciAddress with nothing left behind when
// another VM holds the group, and taking the audio function along when
// it is free.
func TestCreateWithAGPUChecksIt(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.pciConfig())
	in := createInput(vm1, false)
	in.GPUPCIAddress = "01:00.1"
	vm, err := a.Create(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(vm.Devices, func(d api.Device) bool { return d.Name == "pci0" }); i < 0 || !slices.Equal(vm.Devices[i].PCI.Functions, []string{hostGPU}) {
		t.Errorf("devices %+v", vm.Devices)
	}
	for _, c := range []struct{ gpu, message string }{
		{hostGPU, "already passed through to VM " + vm1},
		{"0000:02:00.0", "shares IOMMU group 8 with 0000:03:00.0"},
		{"0000:09:00.0", "no PCI device"},
	} {
		in := createInput(vm2, false)
		in.GPUPCIAddress = c.gpu
		_, err := a.Create(t.Context(), in)
		if e := errdefs.As(err); e == nil || e.Field != "gpuPciAddress" || !strings.Contains(e.Message, c.message) {
			t.Errorf("create with %s: %v, want gpuPciAddress saying %q", c.gpu, err, c.message)
		}
		if _, err := os.Stat(b.layout.VMDir(vm2)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("create with %s left its directory: %v", c.gpu, err)
		}
		if _, err := a.Get(vm2); err == nil {
			t.Errorf("create with %s left the VM", c.gpu)
		}
	}
}

// TestPCIClaimsDoNotRace: two VMs asking at once for the two functions of
// one IOMMU group get it once between them.
func TestPCIClaimsDoNotRace(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.pciConfig())
	for _, id := range []string{vm1, vm2} {
		if _, err := a.Create(t.Context(), createInput(id, false)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []struct{ id, addr string }{{vm1, hostGPU}, {vm2, hostAudio}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.AttachPCI(t.Context(), c.id, api.AttachPCIRequest{Address: c.addr})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("both or neither attached: %v, %v", errs[0], errs[1])
	}
	lost := errs[0]
	if lost == nil {
		lost = errs[1]
	}
	if !strings.Contains(lost.Error(), "already passed through to VM") {
		t.Errorf("the loser got %v", lost)
	}
	if users := pciUsers(t, a); len(users) != 2 || users[hostGPU].VMID != users[hostAudio].VMID {
		t.Errorf("users %+v", users)
	}
}
