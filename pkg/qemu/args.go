package qemu

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SandboxOptions confine QEMU with seccomp: no obsolete syscalls, no setuid,
// no fork/exec, no changes to scheduling or resource limits.
const SandboxOptions = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// IDs of the chardevs and devices this package adds itself. Device IDs
// contain a '-', which Validate refuses in the caller's IDs.
const (
	QMPChardev     = "qmp"
	SerialChardev  = "serial0"
	VDAgentChardev = "vdagent"
	serialDevice   = "serial-0"
	pvpanicDevice  = "pvpanic-0"
	videoDevice    = "video-0"
	usbDevice      = "usb-0"
	tabletDevice   = "tablet-0"
	vioSerialDev   = "vioserial-0"
	vdagentDevice  = "vdagent-0"
	gpuPort        = "gpu-port"
	gpuDevice      = "gpu-0"
)

// HotplugPortID is the device ID of the i-th spare pcie-root-port, the bus
// to give device_add when hotplugging.
func HotplugPortID(i int) string { return "hotplug-" + strconv.Itoa(i) }

// FileNodeName is the node name of a disk's or CD-ROM's file node; the
// format node on top of it is named by the drive's ID.
func FileNodeName(id string) string { return id + "-file" }

// device is a JSON -device value. The field order is the order in argv.
type device struct {
	Driver    string `json:"driver"`
	ID        string `json:"id,omitempty"`
	Bus       string `json:"bus,omitempty"`
	Chassis   int    `json:"chassis,omitempty"`
	Drive     string `json:"drive,omitempty"`
	Netdev    string `json:"netdev,omitempty"`
	Chardev   string `json:"chardev,omitempty"`
	Name      string `json:"name,omitempty"`
	Host      string `json:"host,omitempty"`
	MAC       string `json:"mac,omitempty"`
	MQ        bool   `json:"mq,omitempty"`
	Vectors   int    `json:"vectors,omitempty"`
	BootIndex *int   `json:"bootindex,omitempty"` // nil: not bootable; 0 is QEMU's first
	TPMDev    string `json:"tpmdev,omitempty"`
}

// blockdev is a JSON -blockdev value: a file node, or a format node on one.
type blockdev struct {
	Driver   string `json:"driver"`
	NodeName string `json:"node-name"`
	Filename string `json:"filename,omitempty"`
	File     string `json:"file,omitempty"`
	ReadOnly bool   `json:"read-only"`
	// Discard passes the guest's TRIM through, so thin images stay thin.
	Discard string `json:"discard,omitempty"`
}

// tapNetdev is a JSON -netdev value for a TAP the shim already opened.
type tapNetdev struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	FD    string `json:"fd,omitempty"`
	FDs   string `json:"fds,omitempty"`
	Vhost bool   `json:"vhost"` // always false: vhost-net is not assumed to exist
}

// Args validates the configuration and returns QEMU's argv, without the
// binary. The order is stable, so golden files can pin it.
func (c *Config) Args() ([]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var a argv
	c.machineArgs(&a)
	c.firmwareArgs(&a)
	c.controlArgs(&a)
	c.tpmArgs(&a)
	chassis := 0
	for i := 0; i < c.HotplugPorts; i++ {
		chassis++
		a.device(device{Driver: "pcie-root-port", ID: HotplugPortID(i), Bus: "pcie.0", Chassis: chassis})
	}
	c.diskArgs(&a)
	c.nicArgs(&a)
	c.displayArgs(&a)
	if c.GPU != "" {
		// A passed-through GPU sits behind its own root port, as on real
		// hardware; drivers expect a PCIe endpoint there.
		chassis++
		a.device(device{Driver: "pcie-root-port", ID: gpuPort, Bus: "pcie.0", Chassis: chassis})
		a.device(device{Driver: "vfio-pci", ID: gpuDevice, Bus: gpuPort, Host: c.GPU})
	}
	if b := c.Boot; b != nil {
		a.add("-kernel", b.Kernel)
		if b.Initrd != "" {
			a.add("-initrd", b.Initrd)
		}
		if b.Cmdline != "" {
			a.add("-append", b.Cmdline)
		}
	}
	return a.list, a.err
}

func (c *Config) machineArgs(a *argv) {
	a.add("-name", "guest="+c.UUID)
	a.add("-uuid", c.UUID)
	a.add("-machine", c.machineOption())
	a.add("-accel", string(c.accel()))
	if c.accel() == AccelKVM {
		a.add("-cpu", "host")
	} else {
		a.add("-cpu", "max")
	}
	// One socket with N cores: Windows client editions use at most two
	// sockets, and QEMU's default topology would give N sockets.
	a.add("-smp", fmt.Sprintf("%d,sockets=1,cores=%d,threads=1", c.CPUs, c.CPUs))
	a.add("-m", strconv.Itoa(c.MemoryMiB)+"M")
}

func (c *Config) controlArgs(a *argv) {
	a.add("-S") // the shim sets passwords and resumes with cont
	a.add("-nodefaults", "-no-user-config")
	a.add("-sandbox", SandboxOptions)
	a.add("-msg", "timestamp=on")
	if c.NoShutdown {
		a.add("-no-shutdown")
	}
	a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", QMPChardev, c.QMPFD))
	a.add("-mon", "chardev="+QMPChardev+",mode=control")
	a.add("-display", "none")
	if c.SerialFD != 0 {
		a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", SerialChardev, c.SerialFD))
		a.device(device{Driver: "isa-serial", ID: serialDevice, Chardev: SerialChardev})
	}
	// pvpanic turns a guest kernel panic into a GUEST_PANICKED event.
	a.device(device{Driver: "pvpanic", ID: pvpanicDevice})
}

func (c *Config) diskArgs(a *argv) {
	for _, d := range c.Disks {
		discard := "unmap"
		if d.ReadOnly {
			discard = ""
		}
		a.blockdev(blockdev{Driver: "file", NodeName: FileNodeName(d.ID), Filename: d.Path, ReadOnly: d.ReadOnly, Discard: discard})
		a.blockdev(blockdev{Driver: d.Format, NodeName: d.ID, File: FileNodeName(d.ID), ReadOnly: d.ReadOnly, Discard: discard})
		a.device(device{Driver: "virtio-blk-pci", ID: d.ID, Drive: d.ID, BootIndex: c.bootIndexOf(d.ID, d.BootIndex)})
	}
	for i, cd := range c.CDROMs {
		a.blockdev(blockdev{Driver: "file", NodeName: FileNodeName(cd.ID), Filename: cd.Path, ReadOnly: true})
		a.blockdev(blockdev{Driver: FormatRaw, NodeName: cd.ID, File: FileNodeName(cd.ID), ReadOnly: true})
		// q35's built-in AHCI controller has one bus per port.
		a.device(device{Driver: "ide-cd", ID: cd.ID, Bus: fmt.Sprintf("ide.%d", i), Drive: cd.ID, BootIndex: c.bootIndexOf(cd.ID, cd.BootIndex)})
	}
}

func (c *Config) nicArgs(a *argv) {
	for _, n := range c.NICs {
		nd := tapNetdev{Type: "tap", ID: n.ID}
		dev := device{Driver: "virtio-net-pci", ID: n.ID, Netdev: n.ID, MAC: n.MAC, BootIndex: c.bootIndexOf(n.ID, n.BootIndex)}
		if len(n.FDs) == 1 {
			nd.FD = strconv.Itoa(n.FDs[0])
		} else {
			fds := make([]string, len(n.FDs))
			for i, fd := range n.FDs {
				fds[i] = strconv.Itoa(fd)
			}
			nd.FDs = strings.Join(fds, ":")
			// One vector per RX and TX queue, plus config and control.
			dev.MQ, dev.Vectors = true, 2*len(n.FDs)+2
		}
		a.netdev(nd)
		a.device(dev)
	}
}

func (c *Config) displayArgs(a *argv) {
	d := c.Display
	switch d.protocol() {
	case DisplayVNC:
		host := d.Listen
		if netip.MustParseAddr(d.Listen).Is6() {
			host = "[" + host + "]"
		}
		// password=on with no password set yet: every login fails until
		// the shim's set_password.
		a.add("-vnc", fmt.Sprintf("%s:%d,password=on", host, d.Port-VNCBasePort))
		a.device(device{Driver: "VGA", ID: videoDevice})
	case DisplaySPICE:
		// Neither password nor disable-ticketing: ticketing is on with no
		// ticket, so logins fail until the shim's set_password.
		a.add("-spice", fmt.Sprintf("port=%d,addr=%s", d.Port, d.Listen))
		a.device(device{Driver: "qxl-vga", ID: videoDevice})
		a.device(device{Driver: "virtio-serial-pci", ID: vioSerialDev})
		a.add("-chardev", "spicevmc,id="+VDAgentChardev+",name=vdagent")
		a.device(device{Driver: "virtserialport", ID: vdagentDevice, Bus: vioSerialDev + ".0", Chardev: VDAgentChardev, Name: "com.redhat.spice.0"})
	default:
		return
	}
	// An absolute pointer keeps the remote mouse in step with the guest's.
	a.device(device{Driver: "qemu-xhci", ID: usbDevice})
	a.device(device{Driver: "usb-tablet", ID: tabletDevice, Bus: usbDevice + ".0"})
}

// argv collects arguments and the first JSON encoding error.
type argv struct {
	list []string
	err  error
}

func (a *argv) add(args ...string) { a.list = append(a.list, args...) }

func (a *argv) json(opt string, v any) {
	b, err := json.Marshal(v)
	if err != nil && a.err == nil {
		a.err = fmt.Errorf("qemu: encoding %s: %w", opt, err)
	}
	a.add(opt, string(b))
}

func (a *argv) device(d device)     { a.json("-device", d) }
func (a *argv) blockdev(b blockdev) { a.json("-blockdev", b) }
func (a *argv) netdev(n tapNetdev)  { a.json("-netdev", n) }
