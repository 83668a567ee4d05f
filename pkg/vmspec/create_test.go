package vmspec

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// A create request's devices list adds disks and CD-ROM drives beside
// disk0 and cd0 of the flat fields: given names are kept, the others take
// the lowest free ones, and each disk's image goes in the VM's directory.
func TestCreateInputDisksAndCDROMs(t *testing.T) {
	in := validInput()
	in.ISOPath = "/isos/os.iso"
	in.Devices = []api.Device{
		{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 64 << 20}},
		{Name: "data", Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 1 << 30, Format: "raw", BootIndex: 3}},
		{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: "/isos/tools.iso", BootIndex: 4}},
		{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{}},
		{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}},
		{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 2 << 30, Image: "golden"}},
		// Taken by name, so the unnamed disks before it skip it.
		{Name: "disk1", Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 32 << 20, Image: "golden", Clone: api.CloneFull, Format: "raw"}},
	}
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range s.Devices {
		got = append(got, describe(d))
	}
	want := []string{
		"disk0 disk qcow2 1", "cd0 cdrom /isos/os.iso 2", "net0 nic " + s.NICs()[0].NIC.MAC + " br0",
		"disk2 disk qcow2 0", "data disk raw 3", "cd1 cdrom /isos/tools.iso 4", "cd2 cdrom  0",
		"net1 nic " + s.Device("net1").NIC.MAC + " br1", "disk3 disk qcow2 0", "disk1 disk raw 0", "balloon0 balloon",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("devices\n got %q\nwant %q", got, want)
	}
	dir := defaults.Layout.VMDir(s.ID)
	for name, want := range map[string]Disk{
		"disk2": {Path: filepath.Join(dir, "disk2.qcow2"), Format: "qcow2", SizeBytes: 64 << 20},
		"data":  {Path: filepath.Join(dir, "data.raw"), Format: "raw", SizeBytes: 1 << 30, BootIndex: 3},
		"disk3": {Path: filepath.Join(dir, "disk3.qcow2"), Format: "qcow2", SizeBytes: 2 << 30, Image: "golden", Clone: api.CloneLinked},
		"disk1": {Path: filepath.Join(dir, "disk1.raw"), Format: "raw", SizeBytes: 32 << 20, Image: "golden", Clone: api.CloneFull},
	} {
		if d := s.Device(name); d == nil || *d.Disk != want {
			t.Errorf("%s: %+v, want %+v", name, d, want)
		}
	}
	if v := s.View(); v.ISOPath != "/isos/os.iso" || v.DiskSizeGB != 1 || len(s.Disks()) != 5 || len(s.CDROMs()) != 3 {
		t.Errorf("view: iso %s, disk %v GiB; %d disks, %d CD-ROMs", v.ISOPath, v.DiskSizeGB, len(s.Disks()), len(s.CDROMs()))
	}

	// Without isoPath the list's first drive is cd0.
	in = validInput()
	in.Devices = []api.Device{{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: "/isos/a.iso"}}}
	if s, err = FromCreateInput(in, defaults); err != nil || s.CDROMs()[0].Name != "cd0" {
		t.Fatalf("a drive without isoPath: %v %+v", err, s)
	}
}

// Bad entries of the devices list are refused naming the request's field,
// whatever in the spec they would have clashed with.
func TestCreateInputDeviceErrorsNameTheField(t *testing.T) {
	disk := func(d api.DiskDevice) api.Device { return api.Device{Type: api.DeviceDisk, Disk: &d} }
	cd := func(c api.CDROMDevice) api.Device { return api.Device{Type: api.DeviceCDROM, CDROM: &c} }
	named := func(name string, d api.Device) api.Device { d.Name = name; return d }
	ok := disk(api.DiskDevice{SizeBytes: 64 << 20})
	manyCDs := make([]api.Device, 6)
	for i := range manyCDs {
		manyCDs[i] = cd(api.CDROMDevice{})
	}
	for _, tc := range []struct {
		field   string
		devices []api.Device
		want    string // in the message
	}{
		{"devices[0].disk.sizeBytes", []api.Device{disk(api.DiskDevice{SizeBytes: 1000})}, "whole number of MiB"},
		{"devices[0].disk.sizeBytes", []api.Device{disk(api.DiskDevice{})}, "got 0 bytes"},
		{"devices[1].disk.format", []api.Device{ok, disk(api.DiskDevice{SizeBytes: 1 << 20, Format: "vmdk"})}, "qcow2 or raw"},
		{"devices[0].disk.path", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Path: "/srv/mine.qcow2"})}, "chosen by the agent"},
		{"devices[0].disk.bootIndex", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, BootIndex: 1})}, "already disk0's"},
		{"devices[0].disk.bootIndex", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, BootIndex: 100})}, "between 1 and 99"},
		{"devices[1].cdrom.bootIndex", []api.Device{cd(api.CDROMDevice{BootIndex: 3}), cd(api.CDROMDevice{BootIndex: 2})}, "already cd0's"},
		{"devices[1].disk.bootIndex", []api.Device{named("tools", cd(api.CDROMDevice{BootIndex: 3})), disk(api.DiskDevice{SizeBytes: 1 << 20, BootIndex: 3})}, "already tools's"},
		{"devices[0].disk.image", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Image: "../etc/shadow"})}, ""},
		{"devices[0].disk.bus", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Bus: "ide"})}, "virtio-blk"},
		{"devices[0].disk.cache", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Cache: "fast"})}, "writeback"},
		{"devices[0].disk.discard", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Discard: "on"})}, "unmap"},
		{"devices", append([]api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Bus: api.DiskBusSATA})}, manyCDs[1:]...), "sata disks"},
		{"devices[0].disk.clone", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Image: "golden", Clone: "deep"})}, "linked"},
		{"devices[0].disk.clone", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Clone: api.CloneFull})}, "only with image"},
		{"devices[0].disk.format", []api.Device{disk(api.DiskDevice{SizeBytes: 1 << 20, Image: "golden", Format: "raw"})}, "linked clone"},
		{"devices[0].cdrom.path", []api.Device{cd(api.CDROMDevice{Path: "tools.iso"})}, "absolute"},
		{"devices[1].cdrom.path", []api.Device{ok, cd(api.CDROMDevice{Path: "/isos/../etc/shadow"})}, "clean"},
		{"devices[0].cdrom.path", []api.Device{cd(api.CDROMDevice{Path: "/isos/a,b.iso"})}, "commas"},
		{"devices[2].name", []api.Device{named("data", ok), ok, named("data", cd(api.CDROMDevice{}))}, "already the name of devices[0]"},
		{"devices[0].name", []api.Device{named("cd0", cd(api.CDROMDevice{}))}, "isoPath"},
		{"devices[1].name", []api.Device{ok, named("disk0", ok)}, "diskSizeGB"},
		{"devices[0].name", []api.Device{named("Data", ok)}, "lower-case"},
		{"devices[0].cdrom", []api.Device{{Type: api.DeviceCDROM}}, "required"},
		{"devices[0].nic", []api.Device{{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 1 << 20}, NIC: &api.NICDevice{}}}, "must be empty"},
		{"devices[0].type", []api.Device{{Type: "floppy"}}, "only nic, disk and cdrom"},
		{"devices[0].type", []api.Device{{Type: api.DevicePCI, PCI: &api.PCIDevice{Host: "0000:01:00.0"}}}, "only nic, disk and cdrom"},
		{"devices[0].type", []api.Device{{Type: api.DeviceUSB, USB: &api.USBDevice{VendorID: "046d", ProductID: "c52b"}}}, "only nic, disk and cdrom"},
		{"devices[1].type", []api.Device{ok, {Type: api.DeviceTPM, TPM: &api.TPMDevice{}}}, "only nic, disk and cdrom"},
		{"devices[0].type", []api.Device{{Type: api.DeviceBalloon, Balloon: &api.BalloonDevice{}}}, "only nic, disk and cdrom"},
		{"devices[0].type", []api.Device{{Type: api.DeviceChannel, Channel: &api.ChannelDevice{Port: "org.qemu.guest_agent.0"}}}, "only nic, disk and cdrom"},
		// cd0 and six more do not fit the six AHCI ports.
		{"devices", manyCDs, "at most 6 CD-ROM drives"},
	} {
		in := validInput()
		in.ISOPath = "/isos/os.iso"
		in.Devices = tc.devices
		_, err := FromCreateInput(in, defaults)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != tc.field || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s (%s): got %v", tc.field, tc.want, err)
		}
	}
}

// FuzzCreateInputDevices: whatever devices list a client sends, validation
// neither panics nor accepts what a stored spec would refuse, and every
// refusal names a field.
func FuzzCreateInputDevices(f *testing.F) {
	f.Add(`[{"type":"disk","disk":{"sizeBytes":67108864}},{"type":"cdrom","cdrom":{"path":"/isos/a.iso","bootIndex":3}}]`)
	f.Add(`[{"name":"data","type":"disk","disk":{"sizeBytes":1048576,"format":"raw","image":"golden","clone":"full"}}]`)
	f.Add(`[{"type":"nic","nic":{"bridge":"br1"}},{"name":"disk1","type":"disk","disk":{"sizeBytes":1048576}},{"type":"disk","disk":{"sizeBytes":1048576}}]`)
	f.Fuzz(func(t *testing.T, devices string) {
		in := validInput()
		in.ISOPath = "/isos/os.iso"
		if err := json.Unmarshal([]byte(devices), &in.Devices); err != nil {
			return
		}
		checkCreate(t, in)
	})
}
