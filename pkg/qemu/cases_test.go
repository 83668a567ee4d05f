package qemu_test

import (
	"github.com/infinibay/infinivirt/pkg/qemu"
)

const testUUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

// files are the host paths a configuration refers to. The golden files use
// fixed paths; the tests that run QEMU create real files in a temp dir.
type files struct {
	QCOW2, Raw, ISO, AnswerISO, Kernel, Initrd string
}

var goldenFiles = files{
	QCOW2:     "/var/lib/infinivirt/vms/" + testUUID + "/disk0.qcow2",
	Raw:       "/var/lib/infinivirt/vms/" + testUUID + "/data,1.raw", // a comma is harmless in JSON
	ISO:       "/var/lib/infinivirt/iso/debian-12.iso",
	AnswerISO: "/var/lib/infinivirt/vms/" + testUUID + "/answers.iso",
	Kernel:    "/var/lib/infinivirt/boot/vmlinuz",
	Initrd:    "/var/lib/infinivirt/boot/initramfs.gz",
}

// Child fd numbers: ExtraFiles[0] is fd 3.
const (
	qmpFD    = 3
	serialFD = 4
	tapFD0   = 5
)

// goldenCase is one feature: its golden file name and its configuration.
type goldenCase struct {
	name string
	cfg  func(f files) qemu.Config
	// queues is how many TAP fds the configuration takes, from tapFD0 on.
	queues int
	// noRun names why QEMU cannot run this configuration here.
	noRun string
}

func base() qemu.Config {
	return qemu.Config{UUID: testUUID, Accel: qemu.AccelTCG, CPUs: 1, MemoryMiB: 128, QMPFD: qmpFD}
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{name: "minimal", cfg: func(files) qemu.Config { return base() }},
		{name: "kvm", noRun: "KVM on this machine kind cannot run guests (-cpu host aborts); CI uses TCG",
			cfg: func(files) qemu.Config { c := base(); c.Accel = qemu.AccelKVM; c.CPUs = 4; return c }},
		{name: "tcg", cfg: func(files) qemu.Config { c := base(); c.CPUs = 2; c.MemoryMiB = 256; return c }},
		{name: "serial", cfg: func(files) qemu.Config { c := base(); c.SerialFD = serialFD; return c }},
		{name: "disk-qcow2", cfg: func(f files) qemu.Config {
			c := base()
			c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1}}
			return c
		}},
		{name: "disk-raw", cfg: func(f files) qemu.Config {
			c := base()
			c.Disks = []qemu.Disk{{ID: "data1", Path: f.Raw, Format: qemu.FormatRaw, ReadOnly: true}}
			return c
		}},
		{name: "cdrom", cfg: func(f files) qemu.Config {
			c := base()
			c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 2}}
			c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: f.ISO, BootIndex: 1}, {ID: "cd1", Path: f.AnswerISO}}
			return c
		}},
		{name: "nic-single-queue", queues: 1, cfg: func(files) qemu.Config {
			c := base()
			c.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:12:34:56", FDs: []int{tapFD0}}}
			return c
		}},
		{name: "nic-multiqueue", queues: 4, cfg: func(files) qemu.Config {
			c := base()
			c.CPUs = 4
			c.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:12:34:56", FDs: []int{tapFD0, tapFD0 + 1, tapFD0 + 2, tapFD0 + 3}, BootIndex: 3}}
			return c
		}},
		{name: "vnc", cfg: func(files) qemu.Config {
			c := base()
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "127.0.0.1", Port: 5901}
			return c
		}},
		{name: "vnc-ipv6", cfg: func(files) qemu.Config {
			c := base()
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "::1", Port: 5977}
			return c
		}},
		{name: "spice", cfg: func(files) qemu.Config {
			c := base()
			c.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "127.0.0.1", Port: 5930}
			return c
		}},
		{name: "gpu", noRun: "no GPU bound to vfio-pci on this machine",
			cfg: func(files) qemu.Config { c := base(); c.GPU = "0000:01:00.0"; return c }},
		{name: "direct-boot", cfg: func(f files) qemu.Config {
			c := base()
			c.Boot = &qemu.DirectBoot{Kernel: f.Kernel, Initrd: f.Initrd, Cmdline: "console=ttyS0,115200 panic=-1 tg.ip=10.0.0.2/24"}
			return c
		}},
		{name: "no-shutdown", cfg: func(files) qemu.Config { c := base(); c.NoShutdown = true; return c }},
		{name: "hotplug-ports", cfg: func(files) qemu.Config { c := base(); c.HotplugPorts = 3; return c }},
		{name: "desktop", queues: 2, cfg: func(f files) qemu.Config {
			// A VDI desktop being installed: everything at once.
			return qemu.Config{
				UUID: testUUID, Accel: qemu.AccelTCG, CPUs: 2, MemoryMiB: 512,
				Disks:        []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 2}},
				CDROMs:       []qemu.CDROM{{ID: "cd0", Path: f.ISO, BootIndex: 1}, {ID: "cd1", Path: f.AnswerISO}},
				NICs:         []qemu.NIC{{ID: "net0", MAC: "52:54:00:ab:cd:ef", FDs: []int{tapFD0, tapFD0 + 1}}},
				Display:      qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "0.0.0.0", Port: 5931},
				QMPFD:        qmpFD,
				SerialFD:     serialFD,
				NoShutdown:   true,
				HotplugPorts: 2,
			}
		}},
	}
}
