package qemu

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
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
	tabletDevice   = "tablet-0"
	vdagentDevice  = "vdagent-0"
	// USBController is the xHCI controller's device ID; USB devices sit on
	// its bus USBController+".0".
	USBController = "usb-0"
	// VirtioSerialController is the virtio-serial controller's device ID;
	// ports sit on its bus VirtioSerialController+".0".
	VirtioSerialController = "vioserial-0"
	// SCSIController is the virtio-scsi controller's device ID; its disks
	// sit on its bus SCSIBus.
	SCSIController = "scsi-0"
	SCSIBus        = SCSIController + ".0"
)

// HotplugPortID is the device ID of the i-th spare pcie-root-port, the bus
// to give device_add when hotplugging.
func HotplugPortID(i int) string { return "hotplug-" + strconv.Itoa(i) }

// FileNodeName is the node name of a disk's or CD-ROM's file node; the
// format node on top of it is named by the drive's ID.
func FileNodeName(id string) string { return id + "-file" }

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
		a.device(Device{Driver: "pcie-root-port", ID: HotplugPortID(i), Bus: "pcie.0", Chassis: chassis})
	}
	// Every virtio-blk disk but the first sits behind a root port of its
	// own, as a hot-plugged one does, so that it can be unplugged live; the
	// system disk stays on the root bus, where it always was.
	for i, d := range c.Disks {
		if i > 0 && d.bus() == BusVirtioBlk {
			chassis++
			a.device(d.RootPort(chassis))
		}
	}
	c.diskArgs(&a)
	c.nicArgs(&a)
	c.displayArgs(&a)
	c.extraArgs(&a)
	for _, p := range c.PCIs {
		// A passed-through device (a GPU) sits behind its own root port, as
		// on real hardware; drivers expect a PCIe endpoint there.
		chassis++
		a.device(p.RootPort(chassis))
		for _, d := range p.Devices(PCIRootPortID(p.ID)) {
			a.device(d)
		}
	}
	c.audioArgs(&a)
	c.scsiArgs(&a, &chassis)
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
	a.add("-cpu", c.cpuOption())
	// One socket with N cores: Windows client editions use at most two
	// sockets, and QEMU's default topology would give N sockets.
	a.add("-smp", fmt.Sprintf("%d,sockets=1,cores=%d,threads=1", c.CPUs, c.CPUs))
	a.add("-m", strconv.Itoa(c.MemoryMiB)+"M")
	if c.Windows {
		a.add("-rtc", WindowsRTC)
	}
}

func (c *Config) controlArgs(a *argv) {
	a.add("-S") // the shim sets passwords and resumes with cont
	a.add("-nodefaults", "-no-user-config")
	a.add("-sandbox", SandboxOptions)
	a.add("-msg", "timestamp=on")
	if c.NoShutdown {
		a.add("-no-shutdown")
	}
	if c.IncomingDefer {
		a.add("-incoming", "defer")
	}
	a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", QMPChardev, c.QMPFD))
	a.add("-mon", "chardev="+QMPChardev+",mode=control")
	a.add("-display", "none")
	if c.SerialFD != 0 {
		a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", SerialChardev, c.SerialFD))
		a.device(Device{Driver: "isa-serial", ID: serialDevice, Chardev: SerialChardev})
	}
	// pvpanic turns a guest kernel panic into a GUEST_PANICKED event.
	a.device(Device{Driver: "pvpanic", ID: pvpanicDevice})
}

// diskArgs adds the virtio-blk and sata disks, then the CD-ROM drives.
// q35's built-in AHCI controller has one bus per port: the sata disks take
// the first ports, so that the drives an install adds and removes after
// them never move a disk.
func (c *Config) diskArgs(a *argv) {
	ahci := 0
	for i, d := range c.Disks {
		var bus string
		switch d.bus() {
		case BusVirtioSCSI:
			continue // after their controller: scsiArgs
		case BusSATA:
			bus = fmt.Sprintf("ide.%d", ahci)
			ahci++
		default:
			if i > 0 {
				bus = DiskRootPortID(d.ID)
			}
		}
		c.disk(a, d, bus)
	}
	for _, cd := range c.CDROMs {
		if cd.Path != "" {
			file, format := cd.Blockdevs()
			a.blockdev(file)
			a.blockdev(format)
		}
		a.device(cd.Device(fmt.Sprintf("ide.%d", ahci), c.bootIndexOf(cd.ID, cd.BootIndex)))
		ahci++
	}
}

// disk adds a disk's block nodes and its device; a non-empty bus replaces
// the device's own.
func (c *Config) disk(a *argv, d Disk, bus string) {
	file, format := d.Blockdevs()
	a.blockdev(file)
	a.blockdev(format)
	dev := d.Device(c.bootIndexOf(d.ID, d.BootIndex))
	if bus != "" {
		dev.Bus = bus
	}
	a.device(dev)
}

// scsiArgs adds the virtio-scsi controller, when a disk needs it, and its
// disks. Its root port comes after every other device of the root bus, so
// that gaining the controller moves no other device's PCI address.
func (c *Config) scsiArgs(a *argv, chassis *int) {
	first := true
	for _, d := range c.Disks {
		if d.bus() != BusVirtioSCSI {
			continue
		}
		if first {
			*chassis++
			a.device(Device{Driver: "pcie-root-port", ID: SCSIControllerPortID, Bus: "pcie.0", Chassis: *chassis})
			a.device(SCSIControllerDevice(SCSIControllerPortID))
			first = false
		}
		c.disk(a, d, "")
	}
}

func (c *Config) nicArgs(a *argv) {
	for _, n := range c.NICs {
		fds := make([]string, len(n.FDs))
		for i, fd := range n.FDs {
			fds[i] = strconv.Itoa(fd)
		}
		a.netdev(n.Netdev(fds))
		a.device(n.Device(c.bootIndexOf(n.ID, n.BootIndex)))
	}
}

// extraArgs adds the USB host devices, the balloon and the channels, with
// the controllers they need when the display did not add them.
func (c *Config) extraArgs(a *argv) {
	if len(c.USBHosts) > 0 && c.Display.protocol() == DisplayNone {
		a.device(c.xhciController())
	}
	for _, u := range c.USBHosts {
		a.device(u.Device())
	}
	if b := c.Balloon; b != nil {
		a.device(b.Device())
	}
	if len(c.Channels) > 0 && c.Display.protocol() != DisplaySPICE {
		a.device(Device{Driver: "virtio-serial-pci", ID: VirtioSerialController})
	}
	for _, ch := range c.Channels {
		a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", ChannelChardev(ch.ID), ch.FD))
		a.device(ch.Device())
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
		a.device(Device{Driver: "VGA", ID: videoDevice})
	case DisplaySPICE:
		// Neither password nor disable-ticketing: ticketing is on with no
		// ticket, so logins fail until the shim's set_password.
		a.add("-spice", fmt.Sprintf("port=%d,addr=%s,%s", d.Port, d.Listen, SpiceCompression))
		a.device(Device{Driver: "qxl-vga", ID: videoDevice})
		a.device(Device{Driver: "virtio-serial-pci", ID: VirtioSerialController})
		a.add("-chardev", "spicevmc,id="+VDAgentChardev+",name=vdagent")
		a.device(Device{Driver: "virtserialport", ID: vdagentDevice, Bus: VirtioSerialController + ".0", Chardev: VDAgentChardev, Name: "com.redhat.spice.0"})
	default:
		return
	}
	// An absolute pointer keeps the remote mouse in step with the guest's.
	a.device(c.xhciController())
	a.device(Device{Driver: "usb-tablet", ID: tabletDevice, Bus: USBController + ".0"})
	if d.protocol() == DisplaySPICE {
		// The client's USB devices reach the guest through these.
		for i := range USBRedirChannels {
			id := fmt.Sprintf("usbredir%d", i)
			a.add("-chardev", "spicevmc,id="+id+",name=usbredir")
			a.device(Device{Driver: "usb-redir", ID: id + "-dev", Bus: USBController + ".0", Chardev: id})
		}
	}
}

// USBRedirChannels is how many of a SPICE client's USB devices can be
// redirected at once, as many as Proxmox offers.
const USBRedirChannels = 2

// xhciPorts is the xHCI controller's USB 2 and USB 3 port count each
// when the VM has USB devices of its own: the tablet and the redirection
// channels take USB 2 ports too, and QEMU's default of 4 leaves room for
// one or two. Without any the controller keeps QEMU's default, as VMs
// made before USB passthrough have it.
const xhciPorts = 15

// xhciController is the one USB controller; every USB device sits on its
// bus USBController+".0".
func (c *Config) xhciController() Device {
	d := Device{Driver: "qemu-xhci", ID: USBController}
	if len(c.USBHosts) > 0 {
		d.P2, d.P3 = xhciPorts, xhciPorts
	}
	return d
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

func (a *argv) device(d Device)     { a.json("-device", d) }
func (a *argv) blockdev(b Blockdev) { a.json("-blockdev", b) }
func (a *argv) netdev(n TAPNetdev)  { a.json("-netdev", n) }
