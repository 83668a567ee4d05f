package vmspec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// v1Devices is what each v1 file in testdata/v1 (written by the version 1
// code) must convert to: names, types and the values they held.
var v1Devices = map[string][]string{
	"bios.json":              {"disk0 disk raw 1", "net0 nic 52:54:00:12:34:56 br0"},
	"iso.json":               {"disk0 disk qcow2 1", "cd0 cdrom /var/lib/isos/ubuntu-24.04-desktop-amd64.iso 2", "net0 nic 52:54:00:12:34:56 br0"},
	"windows11-install.json": {"disk0 disk qcow2 1", "cd0 cdrom /var/lib/isos/Win11_24H2_English_x64.iso 2", "net0 nic 52:54:00:ab:cd:ef br0", "tpm0 tpm /var/lib/infinivirt/vms/33333333-3333-4333-8333-333333333333/tpm"},
	"gpu.json":               {"disk0 disk qcow2 1", "net0 nic 52:54:00:12:34:56 br0", "pci0 pci 0000:01:00.0"},
}

func describe(d Device) string {
	switch d.Type {
	case api.DeviceDisk:
		return strings.Join([]string{d.Name, "disk", d.Disk.Format, itoa(d.Disk.BootIndex)}, " ")
	case api.DeviceCDROM:
		return strings.Join([]string{d.Name, "cdrom", d.CDROM.Path, itoa(d.CDROM.BootIndex)}, " ")
	case api.DeviceNIC:
		return strings.Join([]string{d.Name, "nic", d.NIC.MAC, d.NIC.Bridge}, " ")
	case api.DevicePCI:
		return d.Name + " pci " + d.PCI.Host
	case api.DeviceTPM:
		return d.Name + " tpm " + d.TPM.StateDir
	}
	return d.Name + " " + string(d.Type)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestLoadConvertsV1Specs(t *testing.T) {
	files, _ := filepath.Glob("testdata/v1/*.json")
	if len(files) != len(v1Devices) {
		t.Fatalf("testdata/v1 holds %d files, the test knows %d", len(files), len(v1Devices))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v1 map[string]any
			if err := json.Unmarshal(raw, &v1); err != nil || v1["version"] != 1.0 {
				t.Fatalf("not a v1 file: %v %v", err, v1["version"])
			}
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Upgraded() || s.Version != CurrentVersion {
				t.Errorf("version %d, upgraded %v", s.Version, s.Upgraded())
			}
			var got []string
			for _, d := range s.Devices {
				got = append(got, describe(d))
			}
			if want := v1Devices[filepath.Base(f)]; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("devices\n got %q\nwant %q", got, want)
			}
			disk := v1["disk"].(map[string]any)
			if d := s.SystemDisk(); d.Path != disk["path"] || float64(d.SizeBytes) != disk["sizeBytes"] {
				t.Errorf("disk %+v, v1 %v", d, disk)
			}
			// The view a v1 spec gave is the view its conversion gives.
			v := s.View()
			if v.MACAddress != v1["nic"].(map[string]any)["mac"] || v.NetworkBridge != "br0" ||
				v.ISOPath != str(v1["isoPath"]) || v.GPUPCIAddress != str(v1["gpuPciAddress"]) ||
				v.TPM != (v1["tpm"] != nil) || v.DiskFormat != disk["format"] || len(v.Devices) != len(s.Devices) {
				t.Errorf("view %+v from v1 %v", v, v1)
			}
			// Saved, it is a v2 file that loads as the same spec.
			p := filepath.Join(t.TempDir(), "spec.json")
			if err := s.Save(p); err != nil {
				t.Fatal(err)
			}
			again, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if again.Upgraded() || again.Version != CurrentVersion {
				t.Errorf("rewritten spec: version %d, upgraded %v", again.Version, again.Upgraded())
			}
			a, _ := json.Marshal(s)
			b, _ := json.Marshal(again)
			if string(a) != string(b) {
				t.Errorf("rewritten spec differs:\n%s\n%s", a, b)
			}
			var onDisk map[string]any
			rb, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(rb, &onDisk); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"disk", "nic", "isoPath", "gpuPciAddress", "tpm"} {
				if _, ok := onDisk[k]; ok {
					t.Errorf("the v2 file still has the v1 field %q", k)
				}
			}
		})
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func TestLoadRefusesAnUnknownVersion(t *testing.T) {
	p := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(p, []byte(`{"version": 3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Fatalf("got %v", err)
	}
}

// storedSpec is a valid stored spec with one device of every type.
func storedSpec(t *testing.T) *Spec {
	t.Helper()
	in := validInput()
	in.ISOPath = "/isos/os.iso"
	in.GPUPCIAddress = "01:00.0"
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	s.Display.Port = 5901
	dir := defaults.Layout.VMDir(s.ID)
	s.AddDevice(NewDevice("", USB{VendorID: "046d", ProductID: "c52b"}))
	s.AddDevice(NewDevice("", TPM{StateDir: filepath.Join(dir, "tpm")}))
	s.Balloon().FreePageReporting = true // create gave it one
	s.AddDevice(NewDevice("", Channel{Port: "org.qemu.guest_agent.0"}))
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEveryDeviceTypeValidates(t *testing.T) {
	s := storedSpec(t)
	var names []string
	for _, d := range s.Devices {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, " "); got != "disk0 cd0 net0 pci0 balloon0 usb0 tpm0 channel0" {
		t.Errorf("names %s", got)
	}
	if s.Device("usb0").USB.VendorID != "046d" || s.Balloon() == nil || len(s.Channels()) != 1 || s.PCIs()[0].PCI.Host != "0000:01:00.0" {
		t.Errorf("accessors: %+v", s.Devices)
	}
	c := s.Clone()
	c.NICs()[0].NIC.Bridge = "br1"
	c.RemoveDevice("cd0")
	if s.NICs()[0].NIC.Bridge != "br0" || s.Device("cd0") == nil {
		t.Error("changing a clone changed the original")
	}
}

// TestMultifunctionPCI: a device with the other functions of its slot and
// a ROM file is valid, and a clone's functions are its own.
func TestMultifunctionPCI(t *testing.T) {
	s := storedSpec(t)
	p := s.Device("pci0").PCI
	p.Functions, p.Managed, p.ROMFile = []string{"0000:01:00.1"}, true, "/var/lib/infinivirt/roms/gpu.rom"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	c := s.Clone()
	c.Device("pci0").PCI.Functions[0] = "0000:01:00.2"
	if p.Functions[0] != "0000:01:00.1" {
		t.Error("a clone shares its functions with the original")
	}
	for in, want := range map[string]string{"01:00.0": "0000:01:00.0", "0000:0A:00.1": "0000:0a:00.1", "1:0.0": "1:0.0"} {
		if got := NormalPCIAddress(in); got != want {
			t.Errorf("NormalPCIAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeviceValidationNamesTheSpecField(t *testing.T) {
	cases := map[string]func(*Spec){
		"devices[0].disk.path":        func(s *Spec) { s.SystemDisk().Path = "disk.qcow2" },
		"devices[0].disk.format":      func(s *Spec) { s.SystemDisk().Format = "vmdk" },
		"devices[0].disk.sizeBytes":   func(s *Spec) { s.SystemDisk().SizeBytes = 1000 },
		"devices[0].disk.bus":         func(s *Spec) { s.SystemDisk().Bus = "ide" },
		"devices[0].disk.cache":       func(s *Spec) { s.SystemDisk().Cache = "write-back" },
		"devices[0].disk.discard":     func(s *Spec) { s.SystemDisk().Discard = "on" },
		"devices[1].cdrom.path":       func(s *Spec) { s.Device("cd0").CDROM.Path = "/isos/../os.iso" },
		"devices[1].cdrom.bootIndex":  func(s *Spec) { s.Device("cd0").CDROM.BootIndex = 1 },
		"devices[2].nic.mac":          func(s *Spec) { s.Device("net0").NIC.MAC = "52:54:00:AA:BB:CC" },
		"devices[2].nic.bridge":       func(s *Spec) { s.Device("net0").NIC.Bridge = "" },
		"devices[3].pci.host":         func(s *Spec) { s.Device("pci0").PCI.Host = "01:00.0" },
		"devices[3].pci.functions[0]": func(s *Spec) { s.Device("pci0").PCI.Functions = []string{"0000:02:00.1"} },
		"devices[3].pci.functions[1]": func(s *Spec) {
			s.Device("pci0").PCI.Functions = []string{"0000:01:00.1", "0000:01:00.1"}
		},
		"devices[3].pci.romFile":       func(s *Spec) { s.Device("pci0").PCI.ROMFile = "gpu.rom" },
		"devices[5].usb.vendorId":      func(s *Spec) { s.Device("usb0").USB.VendorID = "46d" },
		"devices[5].usb.productId":     func(s *Spec) { s.Device("usb0").USB.ProductID = "C52B" },
		"devices[6].tpm.stateDir":      func(s *Spec) { s.TPM().StateDir = "/var/lib/swtpm" },
		"devices[7].channel.port":      func(s *Spec) { s.Device("channel0").Channel.Port = "a,b" },
		"devices[1].name":              func(s *Spec) { s.Devices[1].Name = "disk0" },
		"devices[2].name":              func(s *Spec) { s.Devices[2].Name = "Net-0" },
		"devices[3].type":              func(s *Spec) { s.Devices[3].Type = "gpu" },
		"devices[4].balloon":           func(s *Spec) { s.Devices[4].Balloon = nil },
		"devices[4].usb":               func(s *Spec) { s.Devices[4].USB = &USB{} },
		"devices[4].balloon.targetMiB": func(s *Spec) { s.Balloon().TargetMiB = s.MemoryMiB + 1 },
		"devices":                      func(s *Spec) { s.RemoveDevice("net0") },
		"devices[5].usb.busPort":       func(s *Spec) { s.Device("usb0").USB.BusPort = "1-1." },
		"devices[5].usb.serial":        func(s *Spec) { s.Device("usb0").USB.Serial = "a\nb" },
	}
	for field, mutate := range cases {
		s := storedSpec(t)
		mutate(s)
		var e *errdefs.Error
		if err := s.Validate(); !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	s := storedSpec(t)
	s.AddDevice(NewDevice("", Balloon{}))
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "at most one balloon") {
		t.Errorf("a second balloon: %v", err)
	}
	s = storedSpec(t)
	s.AddDevice(NewDevice("", NIC{MAC: s.NICs()[0].NIC.MAC, Bridge: "br1"}))
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "devices[8].nic.mac") {
		t.Errorf("a second NIC with the same MAC: %v", err)
	}
}

// A disk's bus, cache and discard modes are optional: a spec written
// before they existed holds none and loads as virtio-blk, writeback and
// unmap; one that names them keeps them. The AHCI controller's six ports
// hold the CD-ROM drives and the sata disks together.
func TestDiskModes(t *testing.T) {
	s := storedSpec(t)
	p := filepath.Join(t.TempDir(), "spec.json")
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"bus"`, `"cache"`, `"discard"`} {
		if strings.Contains(string(raw), k) {
			t.Errorf("a spec without disk modes writes %s:\n%s", k, raw)
		}
	}
	loaded, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := loaded.SystemDisk(); d.Bus.OrDefault() != api.DiskBusVirtioBlk || d.Cache.OrDefault() != api.DiskCacheWriteback || d.Discard.OrDefault() != api.DiskDiscardUnmap {
		t.Errorf("an old disk loads as %+v", d)
	}

	for _, bus := range api.DiskBuses {
		for _, cache := range api.DiskCaches {
			for _, discard := range api.DiskDiscards {
				d := s.SystemDisk()
				d.Bus, d.Cache, d.Discard = bus, cache, discard
				if err := s.Validate(); err != nil {
					t.Errorf("%s %s %s: %v", bus, cache, discard, err)
				}
			}
		}
	}
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	if loaded, err = Load(p); err != nil || *loaded.SystemDisk() != *s.SystemDisk() {
		t.Fatalf("modes after a save and a load: %+v (%v), want %+v", loaded.SystemDisk(), err, s.SystemDisk())
	}

	dir := defaults.Layout.VMDir(s.ID)
	for i := len(s.CDROMs()); i < MaxCDROMs; i++ {
		s.AddDevice(NewDevice("", CDROM{}))
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "sata disks") || s.SATADisks() != 1 {
		t.Errorf("six CD-ROM drives beside a sata disk: %v", err)
	}
	s.SystemDisk().Bus = api.DiskBusVirtioSCSI
	s.AddDevice(NewDevice("", Disk{Path: filepath.Join(dir, "disk1.qcow2"), Format: "qcow2", SizeBytes: 1 << 20, Bus: api.DiskBusVirtioSCSI}))
	if err := s.Validate(); err != nil {
		t.Errorf("six CD-ROM drives beside virtio-scsi disks: %v", err)
	}
}

func TestCreateInputDevices(t *testing.T) {
	in := validInput()
	in.ISOPath = "/isos/os.iso"
	in.Devices = []api.Device{
		{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}},
		{Name: "lan", Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br2", MAC: "52:54:00:AA:00:01"}},
	}
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range s.NICs() {
		got = append(got, d.Name+"@"+d.NIC.Bridge)
	}
	if strings.Join(got, " ") != "net0@br0 net1@br1 lan@br2" || s.Device("lan").NIC.MAC != "52:54:00:aa:00:01" {
		t.Errorf("NICs %v, lan %+v", got, s.Device("lan").NIC)
	}
	if v := s.View(); v.NetworkBridge != "br0" || len(v.Devices) != 6 {
		t.Errorf("view: bridge %s, %d devices", v.NetworkBridge, len(v.Devices))
	}

	// Errors name the request's fields, its devices list's included.
	cases := map[string]func(*api.CreateVMInput){
		"devices[1].nic.bridge": func(in *api.CreateVMInput) { in.Devices[1].NIC.Bridge = "br 2" },
		"devices[1].nic.mac":    func(in *api.CreateVMInput) { in.Devices[1].NIC.MAC = "01:00:5e:00:00:01" },
		"devices[1].name":       func(in *api.CreateVMInput) { in.Devices[1].Name = "net0" },
		"devices[0].type":       func(in *api.CreateVMInput) { in.Devices[0] = api.Device{Type: api.DeviceUSB, USB: &api.USBDevice{}} },
		// The later of two NICs with one MAC address is at fault.
		"devices[0].nic.mac": func(in *api.CreateVMInput) {
			in.MACAddress = "52:54:00:aa:00:01"
			in.Devices[0].NIC.MAC = "52:54:00:AA:00:01"
		},
	}
	for field, mutate := range cases {
		in := validInput()
		in.ISOPath = "/isos/os.iso"
		in.Devices = []api.Device{
			{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}},
			{Name: "lan", Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br2"}},
		}
		mutate(&in)
		_, err := FromCreateInput(in, defaults)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// TestUSBEntries: a USB entry is both IDs, a bus-port, or both; a serial
// goes with the IDs.
func TestUSBEntries(t *testing.T) {
	for _, u := range []USB{
		{VendorID: "046d", ProductID: "c52b"},
		{VendorID: "046d", ProductID: "c52b", Serial: "4C53 0001"},
		{BusPort: "1-1.2"},
		{BusPort: "12-3.4.5", VendorID: "0781", ProductID: "5567"},
	} {
		if err := CheckUSB("", &u); err != nil {
			t.Errorf("%+v: %v", u, err)
		}
	}
	for field, u := range map[string]USB{
		"vendorId":  {},
		"productId": {VendorID: "046d", BusPort: "1-2"},
		"busPort":   {BusPort: "1-0"},
		"serial":    {VendorID: "046d", ProductID: "c52b", Serial: strings.Repeat("x", 127)},
	} {
		if e := errdefs.As(CheckUSB("", &u)); e == nil || e.Field != field {
			t.Errorf("%+v: %v, want %s refused", u, e, field)
		}
	}
	if bus, port := USBBusPort("3-1.4"); bus != 3 || port != "1.4" {
		t.Errorf("USBBusPort: %d %q", bus, port)
	}
}
