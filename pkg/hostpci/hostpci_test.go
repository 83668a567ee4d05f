package hostpci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/hwids"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
)

// testIDs is the excerpt of pci.ids the fixtures' devices are named from.
func testIDs(t *testing.T) *hwids.DB {
	t.Helper()
	db, err := hwids.Load("../hwids/testdata/pci.ids")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func list(t *testing.T, root string, ids *hwids.DB) Inventory {
	t.Helper()
	inv, err := List(root, ids)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	return sysfstest.Build(t, filepath.Join("testdata", name+".tree"))
}

func addresses(ds []Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Address)
	}
	return out
}

func TestListOneGPUWithItsAudio(t *testing.T) {
	inv := list(t, fixture(t, "gpu-audio"), testIDs(t))
	if !inv.IOMMU {
		t.Error("IOMMU reported off")
	}
	want := []string{"0000:00:00.0", "0000:00:01.0", "0000:00:14.0", "0000:01:00.0", "0000:01:00.1"}
	if got := addresses(inv.Devices); !reflect.DeepEqual(got, want) {
		t.Fatalf("devices %v, want %v", got, want)
	}
	gpu, _ := inv.Device("0000:01:00.0")
	wantGPU := Device{Address: "0000:01:00.0", VendorID: 0x10de, DeviceID: 0x1b80,
		VendorName: "NVIDIA Corporation", DevName: "GP104 [GeForce GTX 1080]",
		ClassCode: 0x030000, ClassName: "VGA compatible controller", Class: ClassGPU,
		Group: "1", Driver: "vfio-pci"}
	if gpu != wantGPU {
		t.Errorf("GPU\n got %+v\nwant %+v", gpu, wantGPU)
	}
	if !gpu.VFIO() || gpu.Slot() != "0000:01:00" {
		t.Errorf("GPU: vfio %v, slot %s", gpu.VFIO(), gpu.Slot())
	}
	if got := inv.Group("1"); !reflect.DeepEqual(got, []string{"0000:00:01.0", "0000:01:00.0", "0000:01:00.1"}) {
		t.Errorf("group 1 is %v", got)
	}
	for addr, want := range map[string]struct {
		class  Class
		driver string
		group  string
	}{
		"0000:00:00.0": {ClassBridge, "", "0"},
		"0000:00:01.0": {ClassBridge, "pcieport", "1"},
		"0000:00:14.0": {ClassUSB, "xhci_hcd", "2"},
		"0000:01:00.1": {ClassAudio, "vfio-pci", "1"},
	} {
		d, ok := inv.Device(addr)
		if !ok || d.Class != want.class || d.Driver != want.driver || d.Group != want.group {
			t.Errorf("%s: %+v, want %+v", addr, d, want)
		}
	}
	if _, ok := inv.Device("0000:02:00.0"); ok {
		t.Error("found a device that is not there")
	}
}

func TestListSharedGroup(t *testing.T) {
	inv := list(t, fixture(t, "shared-nic"), testIDs(t))
	if got, want := inv.Group("8"), []string{"0000:00:1c.0", "0000:00:1c.2", "0000:02:00.0", "0000:02:00.1", "0000:03:00.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("group 8 is %v, want %v", got, want)
	}
	nic, _ := inv.Device("0000:03:00.0")
	if nic.Class != ClassNIC || nic.Driver != "r8169" || nic.VFIO() || nic.ClassName != "Ethernet controller" {
		t.Errorf("NIC %+v", nic)
	}
	nvme, _ := inv.Device("0000:04:00.0")
	if nvme.Class != ClassStorage || nvme.ClassCode != 0x010802 || nvme.ClassName != "Non-Volatile memory controller" {
		t.Errorf("NVMe %+v", nvme)
	}
	// A device pci.ids lacks keeps its vendor's name.
	port, _ := inv.Device("0000:00:1d.0")
	if port.VendorName != "Intel Corporation" || port.DevName != "" || port.DeviceID != 0xa118 {
		t.Errorf("root port %+v", port)
	}
}

// TestListIOMMUOff: with no groups, the IOMMU is off and no device has a
// group, rather than the groups being an empty list.
func TestListIOMMUOff(t *testing.T) {
	inv := list(t, fixture(t, "iommu-off"), testIDs(t))
	if inv.IOMMU {
		t.Error("IOMMU reported on")
	}
	if len(inv.Devices) != 4 {
		t.Fatalf("devices %v", addresses(inv.Devices))
	}
	for _, d := range inv.Devices {
		if d.Group != "" || inv.Group(d.Group) != nil {
			t.Errorf("%s has group %q", d.Address, d.Group)
		}
	}
	if gpu, _ := inv.Device("0000:01:00.0"); gpu.Driver != "nouveau" || gpu.VFIO() {
		t.Errorf("GPU %+v", gpu)
	}
}

// TestListWithoutTheDatabase: without pci.ids, devices have their ids
// and no names.
func TestListWithoutTheDatabase(t *testing.T) {
	inv := list(t, fixture(t, "gpu-audio"), nil)
	gpu, _ := inv.Device("0000:01:00.0")
	if gpu.VendorID != 0x10de || gpu.DeviceID != 0x1b80 || gpu.Class != ClassGPU ||
		gpu.VendorName != "" || gpu.DevName != "" || gpu.ClassName != "" {
		t.Errorf("GPU %+v", gpu)
	}
}

func TestListWithoutAPCIBus(t *testing.T) {
	inv := list(t, t.TempDir(), nil)
	if inv.IOMMU || len(inv.Devices) != 0 {
		t.Errorf("an empty sysfs listed %+v", inv)
	}
}

func TestListRefusesABrokenAttribute(t *testing.T) {
	root := fixture(t, "gpu-audio")
	if err := os.WriteFile(filepath.Join(root, "bus/pci/devices/0000:01:00.0/class"), []byte("VGA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := List(root, nil); err == nil || !strings.Contains(err.Error(), "0000:01:00.0") {
		t.Errorf("got %v, want an error naming the device", err)
	}
}

func TestCompanions(t *testing.T) {
	inv := list(t, fixture(t, "gpu-audio"), nil)
	if got := addresses(inv.Companions("0000:01:00.0")); !reflect.DeepEqual(got, []string{"0000:01:00.1"}) {
		t.Errorf("companions of the GPU: %v", got)
	}
	if got := inv.Companions("0000:00:14.0"); got != nil {
		t.Errorf("companions of the USB controller: %v", addresses(got))
	}
	if got := inv.Companions("0000:09:00.0"); got != nil {
		t.Errorf("companions of no device: %v", addresses(got))
	}
	shared := list(t, fixture(t, "shared-nic"), nil)
	if got := addresses(shared.Companions("0000:02:00.1")); !reflect.DeepEqual(got, []string{"0000:02:00.0"}) {
		t.Errorf("companions of the audio function: %v", got)
	}
}

// TestCompanionsShareTheGroup: a function of the slot in an IOMMU group
// of its own (ACS, SR-IOV) is a device of its own, not a companion.
func TestCompanionsShareTheGroup(t *testing.T) {
	root := fixture(t, "gpu-audio")
	link := filepath.Join(root, "bus/pci/devices", audio, "iommu_group")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../kernel/iommu_groups/3", link); err != nil {
		t.Fatal(err)
	}
	if got := list(t, root, nil).Companions(gpu); got != nil {
		t.Errorf("companions across groups: %v", addresses(got))
	}
}

// rebind moves a fixture device to another driver, as writing to its
// driver's unbind and the new one's bind does.
func rebind(t *testing.T, root, addr, driver string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(filepath.Join(root, "bus/pci/devices", addr))
	if err != nil {
		t.Fatal(err)
	}
	target, err := filepath.Rel(dir, filepath.Join(root, "bus/pci/drivers", driver))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "driver")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "driver")); err != nil {
		t.Fatal(err)
	}
}

func TestCheckPassthrough(t *testing.T) {
	held := map[string]string{"0000:02:00.0": "VM 5b1c (cad)"}
	for _, c := range []struct {
		name    string
		tree    string
		setup   func(root string)
		want    []Want
		held    map[string]string
		field   string
		message []string // each in the error; none: no error
	}{
		{name: "GPU with its audio", tree: "gpu-audio",
			want: []Want{{Field: "gpuPciAddress", Address: gpu}, {Field: "devices[1].pci.host", Address: audio}}, held: held},
		{name: "GPU alone, the rest of its group on vfio-pci or a bridge", tree: "gpu-audio",
			want: []Want{{Field: "gpuPciAddress", Address: gpu}}},
		{name: "IOMMU off", tree: "iommu-off", want: []Want{{Field: "gpuPciAddress", Address: gpu}},
			field: "gpuPciAddress", message: []string{"IOMMU is off", gpu}},
		{name: "no such device", tree: "gpu-audio", want: []Want{{Field: "devices[2].pci.host", Address: "0000:05:00.0"}},
			field: "devices[2].pci.host", message: []string{"no PCI device 0000:05:00.0"}},
		{name: "not on vfio-pci", tree: "shared-nic", want: []Want{{Field: "gpuPciAddress", Address: "0000:04:00.0"}},
			field: "gpuPciAddress", message: []string{"0000:04:00.0", "storage", "bound to nvme, not vfio-pci"}},
		{name: "group shared with the host's NIC", tree: "shared-nic", want: []Want{{Field: "gpuPciAddress", Address: "0000:02:00.0"}},
			field: "gpuPciAddress", message: []string{"shares IOMMU group 8 with 0000:03:00.0", "nic Realtek", "bound to r8169"}},
		{name: "the device itself held", tree: "gpu-audio", want: []Want{{Field: "gpuPciAddress", Address: gpu}},
			held: map[string]string{gpu: "VM 5b1c (cad)"}, field: "gpuPciAddress",
			message: []string{gpu + " is already passed through to VM 5b1c (cad)"}},
		{name: "group held", tree: "gpu-audio", want: []Want{{Field: "gpuPciAddress", Address: gpu}},
			held: map[string]string{audio: "VM 5b1c (cad)"}, field: "gpuPciAddress",
			message: []string{"shares IOMMU group 1 with " + audio + ", which is passed through to VM 5b1c (cad)"}},
		{name: "audio left on the host", tree: "gpu-audio", setup: func(root string) { rebind(t, root, audio, "snd_hda_intel") },
			want: []Want{{Field: "gpuPciAddress", Address: gpu}}, field: "gpuPciAddress",
			message: []string{"shares IOMMU group 1 with " + audio, "audio NVIDIA Corporation", "bound to snd_hda_intel"}},
		// Passed through together, the audio function's own check speaks.
		{name: "audio asked for but on the host", tree: "gpu-audio", setup: func(root string) { rebind(t, root, audio, "snd_hda_intel") },
			want: []Want{{Field: "gpuPciAddress", Address: gpu}, {Field: "devices[1].pci.host", Address: audio}}, field: "devices[1].pci.host",
			message: []string{audio, "bound to snd_hda_intel, not vfio-pci"}},
		{name: "unbound members are safe", tree: "gpu-audio", setup: func(root string) {
			if err := os.Remove(filepath.Join(root, "bus/pci/devices", audio, "driver")); err != nil {
				t.Fatal(err)
			}
		}, want: []Want{{Field: "gpuPciAddress", Address: gpu}}},
		{name: "unbound is not vfio-pci", tree: "gpu-audio", setup: func(root string) {
			if err := os.Remove(filepath.Join(root, "bus/pci/devices", gpu, "driver")); err != nil {
				t.Fatal(err)
			}
		}, want: []Want{{Field: "gpuPciAddress", Address: gpu}}, field: "gpuPciAddress", message: []string{"bound to no driver"}},
		// Managed devices are bound at the start: any driver may hold them now.
		{name: "managed, on the host's drivers", tree: "gpu-audio-host",
			want: []Want{{Field: "address", Address: gpu, Managed: true}, {Field: "address", Address: audio, Managed: true}}},
		{name: "managed, the audio function left out", tree: "gpu-audio-host",
			want: []Want{{Field: "address", Address: gpu, Managed: true}}, field: "address",
			message: []string{"shares IOMMU group 1 with " + audio, "bound to snd_hda_intel"}},
		{name: "managed never takes the host's NIC", tree: "shared-nic",
			want:  []Want{{Field: "address", Address: "0000:02:00.0", Managed: true}, {Field: "address", Address: "0000:02:00.1", Managed: true}},
			field: "address", message: []string{"shares IOMMU group 8 with 0000:03:00.0", "bound to r8169"}},
		{name: "not managed, on the host's driver", tree: "gpu-audio-host",
			want: []Want{{Field: "address", Address: gpu}}, field: "address",
			message: []string{"bound to nouveau, not vfio-pci", "managed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := fixture(t, c.tree)
			if c.setup != nil {
				c.setup(root)
			}
			err := list(t, root, testIDs(t)).CheckPassthrough(c.want, c.held)
			if len(c.message) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != c.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, c.field)
			}
			for _, m := range c.message {
				if !strings.Contains(e.Message, m) {
					t.Errorf("%q lacks %q", e.Message, m)
				}
			}
		})
	}
}

// TestThisHost lists this machine's own PCI devices. Without an IOMMU
// (virtual machines often have none) it must say so.
func TestThisHost(t *testing.T) {
	if _, err := os.Stat(filepath.Join(sysfs.Root, "bus/pci")); err != nil {
		t.Skipf("this machine shows no PCI bus in sysfs: %v", err)
	}
	ids, err := (&hwids.File{Path: hwids.DefaultPCIIDs}).DB()
	if err != nil {
		t.Fatal(err)
	}
	inv := list(t, sysfs.Root, ids)
	if len(inv.Devices) == 0 {
		t.Fatal("no PCI devices listed")
	}
	groups, _ := os.ReadDir(filepath.Join(sysfs.Root, "kernel/iommu_groups"))
	if inv.IOMMU != (len(groups) > 0) {
		t.Errorf("IOMMU %v with %d groups", inv.IOMMU, len(groups))
	}
	for _, d := range inv.Devices {
		if inv.IOMMU == (d.Group == "") {
			t.Errorf("%s: group %q with IOMMU %v", d.Address, d.Group, inv.IOMMU)
		}
		t.Logf("%s %04x:%04x %s %s [%s] driver %q group %q", d.Address, d.VendorID, d.DeviceID, d.VendorName, d.DevName, d.Class, d.Driver, d.Group)
	}
	if !inv.IOMMU {
		err := inv.CheckPassthrough([]Want{{Field: "gpuPciAddress", Address: inv.Devices[0].Address}}, nil)
		if err == nil || !strings.Contains(err.Error(), "IOMMU is off") {
			t.Errorf("a check without an IOMMU answered %v", err)
		}
	}
}
