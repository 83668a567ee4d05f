package qemu_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
)

func TestValidateNamesTheField(t *testing.T) {
	disk := qemu.Disk{ID: "disk0", Path: "/vms/disk0.qcow2", Format: qemu.FormatQCOW2}
	nic := qemu.NIC{ID: "net0", MAC: "52:54:00:12:34:56", FDs: []int{5}}
	tests := []struct {
		field string
		edit  func(c *qemu.Config)
	}{
		{"UUID", func(c *qemu.Config) { c.UUID = "my-vm" }},
		{"UUID", func(c *qemu.Config) { c.UUID = strings.ToUpper(testUUID) }},
		{"Accel", func(c *qemu.Config) { c.Accel = "hvf" }},
		{"CPUs", func(c *qemu.Config) { c.CPUs = 0 }},
		{"CPUs", func(c *qemu.Config) { c.CPUs = qemu.MaxCPUs + 1 }},
		{"MemoryMiB", func(c *qemu.Config) { c.MemoryMiB = 8 }},
		{"QMPFD", func(c *qemu.Config) { c.QMPFD = 0 }},
		{"QMPFD", func(c *qemu.Config) { c.QMPFD = 2 }},
		{"SerialFD", func(c *qemu.Config) { c.SerialFD = c.QMPFD }},
		{"Disks[0].ID", func(c *qemu.Config) { d := disk; d.ID = "Disk0"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].ID", func(c *qemu.Config) { d := disk; d.ID = "video-0"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].ID", func(c *qemu.Config) { d := disk; d.ID = "a,b"; c.Disks = []qemu.Disk{d} }},
		{"Disks[1].ID", func(c *qemu.Config) { c.Disks = []qemu.Disk{disk, disk} }},
		{"Disks[0].Path", func(c *qemu.Config) { d := disk; d.Path = "disk0.qcow2"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Path", func(c *qemu.Config) { d := disk; d.Path = "/vms/../etc/shadow"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Path", func(c *qemu.Config) { d := disk; d.Path = "/vms/a\nb"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Path", func(c *qemu.Config) { d := disk; d.Path = "/vms/\xff"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Format", func(c *qemu.Config) { d := disk; d.Format = ""; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Format", func(c *qemu.Config) { d := disk; d.Format = "vmdk"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].BootIndex", func(c *qemu.Config) { d := disk; d.BootIndex = -1; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Bus", func(c *qemu.Config) { d := disk; d.Bus = "ide"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].ReadOnly", func(c *qemu.Config) { d := disk; d.Bus, d.ReadOnly = qemu.BusSATA, true; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Cache", func(c *qemu.Config) { d := disk; d.Cache = "writearound"; c.Disks = []qemu.Disk{d} }},
		{"Disks[0].Discard", func(c *qemu.Config) { d := disk; d.Discard = "on"; c.Disks = []qemu.Disk{d} }},
		{"CDROMs", func(c *qemu.Config) {
			// A sata disk takes an AHCI port a CD-ROM could have had.
			d := disk
			d.Bus = qemu.BusSATA
			c.Disks = []qemu.Disk{d}
			c.CDROMs = make([]qemu.CDROM, qemu.MaxCDROMs)
		}},
		{"CDROMs[0].BootIndex", func(c *qemu.Config) {
			d := disk
			d.BootIndex = 1
			c.Disks = []qemu.Disk{d}
			c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: "/iso/a.iso", BootIndex: 1}}
		}},
		{"CDROMs[0].ID", func(c *qemu.Config) {
			c.Disks = []qemu.Disk{disk}
			c.CDROMs = []qemu.CDROM{{ID: "disk0", Path: "/iso/a.iso"}}
		}},
		{"CDROMs", func(c *qemu.Config) { c.CDROMs = make([]qemu.CDROM, qemu.MaxCDROMs+1) }},
		{"NICs[0].MAC", func(c *qemu.Config) { n := nic; n.MAC = "01:00:5e:00:00:01"; c.NICs = []qemu.NIC{n} }},
		{"NICs[0].MAC", func(c *qemu.Config) { n := nic; n.MAC = "52:54:00:AB:CD:EF"; c.NICs = []qemu.NIC{n} }},
		{"NICs[0].MAC", func(c *qemu.Config) { n := nic; n.MAC = `52:54:00:12:34:56","x":"`; c.NICs = []qemu.NIC{n} }},
		{"NICs[0].FDs", func(c *qemu.Config) { n := nic; n.FDs = nil; c.NICs = []qemu.NIC{n} }},
		{"NICs[0].FDs[1]", func(c *qemu.Config) { n := nic; n.FDs = []int{5, 5}; c.NICs = []qemu.NIC{n} }},
		{"NICs[0].FDs[0]", func(c *qemu.Config) { n := nic; n.FDs = []int{c.QMPFD}; c.NICs = []qemu.NIC{n} }},
		{"Display.Protocol", func(c *qemu.Config) { c.Display = qemu.Display{Protocol: "rdp"} }},
		{"Display.Protocol", func(c *qemu.Config) { c.Display = qemu.Display{Listen: "127.0.0.1"} }},
		{"Display.Port", func(c *qemu.Config) {
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "127.0.0.1", Port: 5899}
		}},
		{"Display.Port", func(c *qemu.Config) {
			c.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "127.0.0.1", Port: 70000}
		}},
		{"Display.Listen", func(c *qemu.Config) {
			c.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "localhost", Port: 5930}
		}},
		{"Display.Listen", func(c *qemu.Config) {
			c.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "127.0.0.1,password=x", Port: 5930}
		}},
		{"Display.Listen", func(c *qemu.Config) {
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "fe80::1%eth0", Port: 5930}
		}},
		{"PCIs[0].Host", func(c *qemu.Config) { c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "01:00.0"}} }},
		{"PCIs[0].Host", func(c *qemu.Config) { c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.0,x-vga=on"}} }},
		{"PCIs[0].ID", func(c *qemu.Config) { c.PCIs = []qemu.HostPCI{{ID: "gpu-0", Host: "0000:01:00.0"}} }},
		{"PCIs[0].Functions[0]", func(c *qemu.Config) {
			c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.0", Functions: []string{"0000:02:00.1"}}}
		}},
		{"PCIs[0].Functions[1]", func(c *qemu.Config) {
			c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.1", Functions: []string{"0000:01:00.0", "0000:01:00.1"}}}
		}},
		{"PCIs[0].ROMFile", func(c *qemu.Config) {
			c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.0", ROMFile: "gpu.rom"}}
		}},
		{"USBHosts[0].VendorID", func(c *qemu.Config) { c.USBHosts = []qemu.USBHost{{ID: "usb0"}} }},
		{"Balloon.ID", func(c *qemu.Config) { c.Balloon = &qemu.Balloon{} }},
		{"Channels[0].FD", func(c *qemu.Config) { c.Channels = []qemu.Channel{{ID: "channel0", Port: "p", FD: c.QMPFD}} }},
		{"Channels[1].Port", func(c *qemu.Config) {
			c.Channels = []qemu.Channel{{ID: "channel0", Port: "p", FD: 7}, {ID: "channel1", Port: "p", FD: 8}}
		}},
		{"Boot.Kernel", func(c *qemu.Config) { c.Boot = &qemu.DirectBoot{} }},
		{"Boot.Kernel", func(c *qemu.Config) { c.Boot = &qemu.DirectBoot{Kernel: "/boot/vmlinuz,x"} }},
		{"Boot.Initrd", func(c *qemu.Config) { c.Boot = &qemu.DirectBoot{Kernel: "/boot/k", Initrd: "initrd"} }},
		{"Boot.Cmdline", func(c *qemu.Config) { c.Boot = &qemu.DirectBoot{Kernel: "/boot/k", Cmdline: "a\nb"} }},
		{"Boot.Cmdline", func(c *qemu.Config) {
			c.Boot = &qemu.DirectBoot{Kernel: "/boot/k", Cmdline: strings.Repeat("x", 5000)}
		}},
		{"HotplugPorts", func(c *qemu.Config) { c.HotplugPorts = -1 }},
		{"HotplugPorts", func(c *qemu.Config) { c.HotplugPorts = qemu.MaxHotplugPorts + 1 }},
		{"Firmware.Code", func(c *qemu.Config) { c.Firmware = &qemu.Firmware{Code: "OVMF_CODE.fd", Vars: "/vms/vars.fd"} }},
		{"Firmware.Vars", func(c *qemu.Config) { c.Firmware = &qemu.Firmware{Code: "/fw/code.fd"} }},
		{"Firmware.Vars", func(c *qemu.Config) { c.Firmware = &qemu.Firmware{Code: "/fw/code.fd", Vars: "/fw/code.fd"} }},
		{"TPM.CtrlFD", func(c *qemu.Config) { c.TPM = &qemu.TPM{CtrlFD: c.QMPFD} }},
		{"TPM.CtrlFD", func(c *qemu.Config) { c.TPM = &qemu.TPM{} }},
		{"BootOnce", func(c *qemu.Config) { c.BootOnce = "cd0" }},
		{"BootOnce", func(c *qemu.Config) { c.NICs = []qemu.NIC{nic}; c.BootOnce = "net0" }},
	}
	for _, tt := range tests {
		cfg := base()
		tt.edit(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted %+v", tt.field, cfg)
			continue
		}
		if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: tt.field}) {
			t.Errorf("%s: got %v, want InvalidArgument on that field", tt.field, err)
		}
		if _, err := cfg.Args(); err == nil {
			t.Errorf("%s: Args accepted an invalid configuration", tt.field)
		}
	}
}

func TestValidateAcceptsGoldenConfigs(t *testing.T) {
	for _, gc := range goldenCases() {
		cfg := gc.cfg(goldenFiles)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", gc.name, err)
		}
	}
}

// FuzzArgsNoInjection feeds arbitrary names and paths through Args: when
// they are accepted, every value in QEMU's comma syntax must still hold
// exactly the options this package wrote, and every JSON value must decode
// back to the same path.
func FuzzArgsNoInjection(f *testing.F) {
	f.Add("disk0", "/vms/disk0.qcow2", "52:54:00:12:34:56", "127.0.0.1", "/boot/vmlinuz", "console=ttyS0")
	f.Add("cd0", `/vms/a,b"c\d.iso`, "52:54:00:12:34:5", "::1", "/boot/k,x", "a,b=c")
	f.Add("x", "/vms/a\",\"driver\":\"nbd", "52:54:00:12:34:56", "0.0.0.0,password=on", "/", "")
	f.Fuzz(func(t *testing.T, id, path, mac, listen, kernel, cmdline string) {
		cfg := base()
		cfg.SerialFD = serialFD
		cfg.Disks = []qemu.Disk{{ID: id, Path: path, Format: qemu.FormatQCOW2}}
		cfg.CDROMs = []qemu.CDROM{{ID: "cd0", Path: path}}
		cfg.NICs = []qemu.NIC{{ID: "net0", MAC: mac, FDs: []int{tapFD0}}}
		cfg.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: listen, Port: 5930}
		cfg.Boot = &qemu.DirectBoot{Kernel: kernel, Cmdline: cmdline}
		args, err := cfg.Args()
		if err != nil {
			return
		}
		checkArgsShape(t, args, path)
	})
}

func checkArgsShape(t *testing.T, args []string, path string) {
	t.Helper()
	for i := 0; i < len(args); i++ {
		opt := args[i]
		if !strings.HasPrefix(opt, "-") {
			t.Fatalf("argument %d %q is not an option", i, opt)
		}
		switch opt {
		case "-S", "-nodefaults", "-no-user-config", "-no-shutdown":
			continue
		}
		i++
		if i == len(args) {
			t.Fatalf("%s has no value", opt)
		}
		val := args[i]
		switch opt {
		case "-device", "-blockdev", "-netdev":
			var m map[string]any
			if err := json.Unmarshal([]byte(val), &m); err != nil {
				t.Fatalf("%s value %q is not JSON: %v", opt, val, err)
			}
			if fn, ok := m["filename"]; ok && fn != path {
				t.Fatalf("blockdev filename %q, want %q", fn, path)
			}
		case "-spice":
			where, ok := strings.CutSuffix(val, ","+qemu.SpiceCompression)
			if n := strings.Count(where, ","); !ok || n != 1 {
				t.Fatalf("-spice %q is not port,addr with the compression settings after them", val)
			}
		case "-chardev":
			if n := strings.Count(val, ","); n != 2 {
				t.Fatalf("-chardev %q has %d commas, want 2", val, n)
			}
		case "-kernel", "-initrd":
			if strings.Contains(val, ",") {
				t.Fatalf("%s %q holds a comma", opt, val)
			}
		}
	}
}
