package qemu_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

const testUUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

// files are the host paths a configuration refers to. The golden files use
// fixed paths; the tests that run QEMU create real files in a temp dir.
type files struct {
	QCOW2, Raw, ISO, AnswerISO, Kernel, Initrd string
	// Data are more disk images, qcow2.
	Data [3]string
	// OVMF's code (plain and Secure Boot builds) and the VM's vars copy.
	OVMFCode, OVMFSecureCode, UEFIVars string
	VirtioWinISO                       string
}

var goldenFiles = files{
	QCOW2:     "/var/lib/infinivirt/vms/" + testUUID + "/disk0.qcow2",
	Raw:       "/var/lib/infinivirt/vms/" + testUUID + "/data,1.raw", // a comma is harmless in JSON
	ISO:       "/var/lib/infinivirt/iso/debian-12.iso",
	AnswerISO: "/var/lib/infinivirt/vms/" + testUUID + "/answers.iso",
	Kernel:    "/var/lib/infinivirt/boot/vmlinuz",
	Initrd:    "/var/lib/infinivirt/boot/initramfs.gz",

	OVMFCode:       ovmfCode,
	OVMFSecureCode: ovmfSecureCode,
	UEFIVars:       "/var/lib/infinivirt/vms/" + testUUID + "/uefi-vars.fd",
	VirtioWinISO:   "/usr/share/virtio-win/virtio-win.iso",

	Data: [3]string{
		"/var/lib/infinivirt/vms/" + testUUID + "/disk2.qcow2",
		"/var/lib/infinivirt/vms/" + testUUID + "/disk3.qcow2",
		"/var/lib/infinivirt/vms/" + testUUID + "/disk4.qcow2",
	},
}

// Debian's ovmf package.
const (
	ovmfCode       = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfMSVars     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Child fd numbers: ExtraFiles[0] is fd 3.
const (
	qmpFD    = 3
	serialFD = 4
	tapFD0   = 5
)

// noVFIO is why the passthrough goldens do not run: they name a host
// device at a fixed address. TestQEMUPassesAHostDeviceThrough runs one of
// this host's own, where it has any.
const noVFIO = "the golden's 0000:01:00.0 is no device of this host; TestQEMUPassesAHostDeviceThrough passes through one that is"

// goldenCase is one feature: its golden file name and its configuration.
type goldenCase struct {
	name string
	cfg  func(f files) qemu.Config
	// queues is how many TAP fds the configuration takes, from tapFD0 on.
	queues int
	// noRun names why QEMU cannot run this configuration here.
	noRun string
	// query, a QMP command without arguments, and check prove on the
	// running QEMU what the argv meant.
	query string
	check func(t *testing.T, reply json.RawMessage)
}

// blockCache is query-block's view of each disk's cache, by node name.
func blockCache(t *testing.T, reply json.RawMessage) map[string]string {
	t.Helper()
	var blocks []struct {
		QDev     string
		Inserted *struct {
			NodeName string `json:"node-name"`
			Cache    struct {
				Writeback bool
				Direct    bool
				NoFlush   bool `json:"no-flush"`
			}
		}
	}
	if err := json.Unmarshal(reply, &blocks); err != nil {
		t.Fatalf("query-block: %v", err)
	}
	out := map[string]string{}
	for _, b := range blocks {
		if in := b.Inserted; in != nil && b.QDev != "" {
			c := in.Cache
			out[in.NodeName] = fmt.Sprintf("writeback=%t direct=%t no-flush=%t", c.Writeback, c.Direct, c.NoFlush)
		}
	}
	return out
}

// wantCache checks the disks' caches as query-block shows them.
func wantCache(want map[string]string) func(t *testing.T, reply json.RawMessage) {
	return func(t *testing.T, reply json.RawMessage) {
		got := blockCache(t, reply)
		for node, w := range want {
			if got[node] != w {
				t.Errorf("%s: cache %q, want %q (all: %v)", node, got[node], w, got)
			}
		}
	}
}

// qemuDefaultCache is what QEMU opens a disk with when no mode is set:
// writeback's switches.
const qemuDefaultCache = "writeback=true direct=false no-flush=false"

// windows11Install is a Windows 11 VM being installed: UEFI with Secure
// Boot, a TPM on fd 5, the OS ISO booted once, the answer and virtio-win
// ISOs beside it.
func windows11Install(f files) qemu.Config {
	c := base()
	c.MemoryMiB = 256
	c.Firmware = &qemu.Firmware{Code: f.OVMFSecureCode, Vars: f.UEFIVars, SecureBoot: true}
	c.TPM = &qemu.TPM{CtrlFD: tapFD0}
	c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1}}
	c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: f.ISO, BootIndex: 2}, {ID: "cd1", Path: f.AnswerISO}, {ID: "cd2", Path: f.VirtioWinISO}}
	c.BootOnce = "cd0"
	c.Windows, c.Audio = true, true
	return c
}

// windowsDesktop is an installed Windows desktop seen over SPICE, with its
// enlightenments, local-time RTC and sound through the SPICE client.
func windowsDesktop(f files) qemu.Config {
	c := base()
	c.CPUs, c.MemoryMiB = 2, 512
	c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1}}
	c.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:ab:cd:01", FDs: []int{tapFD0}}}
	c.Display = qemu.Display{Protocol: qemu.DisplaySPICE, Listen: "127.0.0.1", Port: 5932}
	c.Windows, c.Audio = true, true
	return c
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
		{name: "disks", cfg: func(f files) qemu.Config {
			c := base()
			c.HotplugPorts = 1
			c.Disks = []qemu.Disk{
				{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1},
				{ID: "disk1", Path: f.Raw, Format: qemu.FormatRaw},
			}
			return c
		}},
		{name: "disk-virtio-scsi", query: "query-block", check: wantCache(map[string]string{"disk0": qemuDefaultCache, "disk1": qemuDefaultCache}),
			cfg: func(f files) qemu.Config {
				// Both on the one controller, which is on a root port of
				// its own, not on the reserved hot-plug one.
				c := base()
				c.HotplugPorts = 1
				c.Disks = []qemu.Disk{
					{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1, Bus: qemu.BusVirtioSCSI},
					{ID: "disk1", Path: f.Raw, Format: qemu.FormatRaw, Bus: qemu.BusVirtioSCSI},
				}
				return c
			}},
		{name: "disk-sata", query: "query-block", check: wantCache(map[string]string{"disk0": qemuDefaultCache, "disk1": qemuDefaultCache}),
			cfg: func(f files) qemu.Config {
				// The disks take the first AHCI ports, the CD-ROM the next.
				c := base()
				c.Disks = []qemu.Disk{
					{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1, Bus: qemu.BusSATA},
					{ID: "disk1", Path: f.Raw, Format: qemu.FormatRaw, Bus: qemu.BusSATA},
				}
				c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: f.ISO, BootIndex: 2}}
				return c
			}},
		{name: "disk-buses", queues: 1, cfg: func(f files) qemu.Config {
			// Every bus at once: the system disk on the root bus, a
			// virtio-blk disk behind its own port, a sata disk before the
			// CD-ROM, and the SCSI controller last of the root bus.
			c := base()
			c.HotplugPorts = 2
			c.Disks = []qemu.Disk{
				{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1},
				{ID: "disk1", Path: f.Raw, Format: qemu.FormatRaw, Bus: qemu.BusVirtioSCSI, BootIndex: 3},
				{ID: "disk2", Path: f.Data[0], Format: qemu.FormatQCOW2},
				{ID: "disk3", Path: f.Data[1], Format: qemu.FormatQCOW2, Bus: qemu.BusSATA},
			}
			c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: f.ISO, BootIndex: 2}}
			c.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:12:34:56", FDs: []int{tapFD0}}}
			return c
		}},
		{name: "disk-cache", query: "query-block", check: wantCache(map[string]string{
			"disk0": "writeback=true direct=true no-flush=false",   // none
			"disk1": "writeback=false direct=false no-flush=false", // writethrough
			"disk2": "writeback=false direct=true no-flush=false",  // directsync
			"disk3": "writeback=true direct=false no-flush=true",   // unsafe
			"disk4": "writeback=true direct=false no-flush=false",  // writeback
		}), cfg: func(f files) qemu.Config {
			// Each cache mode once, on each bus; disk3 drops discards.
			c := base()
			c.Disks = []qemu.Disk{
				{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1, Cache: qemu.CacheNone},
				{ID: "disk1", Path: f.Raw, Format: qemu.FormatRaw, Bus: qemu.BusVirtioSCSI, Cache: qemu.CacheWritethrough},
				{ID: "disk2", Path: f.Data[0], Format: qemu.FormatQCOW2, Bus: qemu.BusSATA, Cache: qemu.CacheDirectSync},
				{ID: "disk3", Path: f.Data[1], Format: qemu.FormatQCOW2, Cache: qemu.CacheUnsafe, Discard: qemu.DiscardIgnore},
				{ID: "disk4", Path: f.Data[2], Format: qemu.FormatQCOW2, Bus: qemu.BusVirtioSCSI, Cache: qemu.CacheWriteback},
			}
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
		{name: "gpu", noRun: noVFIO,
			cfg: func(files) qemu.Config {
				c := base()
				c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.0"}}
				return c
			}},
		// A GPU and its HDMI audio function as one multifunction device.
		{name: "gpu-audio", noRun: noVFIO,
			cfg: func(files) qemu.Config {
				c := base()
				c.PCIs = []qemu.HostPCI{{ID: "pci0", Host: "0000:01:00.0", Functions: []string{"0000:01:00.1"}}}
				return c
			}},
		{name: "gpu-rom", noRun: noVFIO,
			cfg: func(files) qemu.Config {
				c := base()
				c.PCIs = []qemu.HostPCI{{ID: "gpu", Host: "0000:01:00.0", ROMFile: "/var/lib/infinivirt/roms/gp104.rom"}}
				return c
			}},
		{name: "direct-boot", cfg: func(f files) qemu.Config {
			c := base()
			c.Boot = &qemu.DirectBoot{Kernel: f.Kernel, Initrd: f.Initrd, Cmdline: "console=ttyS0,115200 panic=-1 tg.ip=10.0.0.2/24"}
			return c
		}},
		{name: "no-shutdown", cfg: func(files) qemu.Config { c := base(); c.NoShutdown = true; return c }},
		{name: "uefi", cfg: func(f files) qemu.Config {
			c := base()
			c.Firmware = &qemu.Firmware{Code: f.OVMFCode, Vars: f.UEFIVars}
			return c
		}},
		{name: "secure-boot", cfg: func(f files) qemu.Config {
			c := base()
			c.Firmware = &qemu.Firmware{Code: f.OVMFSecureCode, Vars: f.UEFIVars, SecureBoot: true}
			return c
		}},
		{name: "tpm", noRun: "needs a running swtpm; TestQEMUWithSWTPM runs it",
			cfg: func(files) qemu.Config { c := base(); c.TPM = &qemu.TPM{CtrlFD: tapFD0}; return c }},
		{name: "boot-once", cfg: func(f files) qemu.Config {
			c := base()
			c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1}}
			c.CDROMs = []qemu.CDROM{{ID: "cd0", Path: f.ISO}}
			c.BootOnce = "cd0"
			return c
		}},
		{name: "windows11-install", noRun: "needs a running swtpm; TestQEMUWithSWTPM runs it", cfg: windows11Install},
		{name: "cdrom-empty", cfg: func(files) qemu.Config {
			c := base()
			c.CDROMs = []qemu.CDROM{{ID: "cd0"}}
			return c
		}},
		{name: "balloon", cfg: func(files) qemu.Config {
			c := base()
			c.Balloon = &qemu.Balloon{ID: "balloon0", FreePageReporting: true, DeflateOnOOM: true}
			return c
		}},
		// QEMU accepts a usb-host whose device is not plugged in and waits
		// for it, so these run on a host with no USB device too.
		{name: "usb-host", cfg: func(files) qemu.Config {
			c := base()
			c.USBHosts = []qemu.USBHost{
				{ID: "usb0", VendorID: 0x046d, ProductID: 0xc52b},
				{ID: "usb1", VendorID: 0x0781, ProductID: 0x5583, HostBus: 1, HostPort: "1.2"},
				{ID: "usb2", HostBus: 2, HostPort: "3"},
			}
			return c
		}},
		{name: "channel", noRun: "needs the host end of a socket on fd 5; the shim's tests pass one",
			cfg: func(files) qemu.Config {
				c := base()
				c.Channels = []qemu.Channel{{ID: "channel0", Port: "org.qemu.guest_agent.0", FD: tapFD0}}
				return c
			}},
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
				Audio:        true,
			}
		}},
		{name: "windows-desktop", queues: 1, cfg: windowsDesktop},
		{name: "windows-desktop-kvm", queues: 1, noRun: "KVM on this machine kind cannot run guests (-cpu host aborts); CI uses TCG",
			cfg: func(f files) qemu.Config { c := windowsDesktop(f); c.Accel = qemu.AccelKVM; return c }},
		{name: "windows-desktop-vnc", queues: 1, cfg: func(f files) qemu.Config {
			c := windowsDesktop(f)
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "127.0.0.1", Port: 5933}
			return c
		}},
		{name: "linux-desktop", queues: 1, cfg: func(f files) qemu.Config {
			c := windowsDesktop(f)
			c.Windows = false
			return c
		}},
		{name: "server", queues: 1, cfg: func(f files) qemu.Config {
			// A server: no sound card, no Windows platform, whatever the display.
			c := windowsDesktop(f)
			c.Windows, c.Audio = false, false
			c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "127.0.0.1", Port: 5934}
			return c
		}},
	}
}
