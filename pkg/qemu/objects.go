package qemu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The JSON objects of -device, -blockdev and -netdev are the arguments QMP's
// device_add, blockdev-add and netdev_add take: a device renders both its
// command-line part and its hot-plug commands from the same value.

// Device is a JSON -device value, and device_add's arguments. The field
// order is the order in argv.
type Device struct {
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
	VendorID  int    `json:"vendorid,omitempty"`
	ProductID int    `json:"productid,omitempty"`
	// HostBus and HostPort pin usb-host to where a device is plugged.
	HostBus  int    `json:"hostbus,omitempty"`
	HostPort string `json:"hostport,omitempty"`
	// P2 and P3 are an xHCI controller's USB 2 and USB 3 port counts.
	P2 int `json:"p2,omitempty"`
	P3 int `json:"p3,omitempty"`
	// Addr and Multifunction place a function of a multifunction device
	// (vfio-pci's companions) on its slot: "00.1".
	Addr          string `json:"addr,omitempty"`
	Multifunction bool   `json:"multifunction,omitempty"`
	// ROMFile is a vfio-pci device's option ROM.
	ROMFile string `json:"romfile,omitempty"`
	// FreePageReporting and DeflateOnOOM are virtio-balloon's.
	FreePageReporting bool `json:"free-page-reporting,omitempty"`
	DeflateOnOOM      bool `json:"deflate-on-oom,omitempty"`
	// Audiodev is the backend an audio codec plays to.
	Audiodev string `json:"audiodev,omitempty"`
	// WriteCache is "on" or "off": whether the guest sees a write cache it
	// must flush. Empty is QEMU's default, on.
	WriteCache string `json:"write-cache,omitempty"`
}

// Blockdev is a JSON -blockdev value, and blockdev-add's arguments: a file
// node, or a format node on one.
type Blockdev struct {
	Driver   string `json:"driver"`
	NodeName string `json:"node-name"`
	Filename string `json:"filename,omitempty"`
	File     string `json:"file,omitempty"`
	ReadOnly bool   `json:"read-only"`
	// Discard passes the guest's TRIM through (unmap), so thin images stay
	// thin, or drops it (ignore).
	Discard string `json:"discard,omitempty"`
	// Cache is the node's part of a cache mode; nil is QEMU's default.
	Cache *BlockdevCache `json:"cache,omitempty"`
}

// BlockdevCache is a node's cache options.
type BlockdevCache struct {
	// Direct opens the file with O_DIRECT, bypassing the host's page cache.
	Direct bool `json:"direct"`
	// NoFlush ignores flushes: the data reaches the disk when the host
	// gets to it.
	NoFlush bool `json:"no-flush"`
}

// cacheSwitches are what a cache mode sets, as -drive cache= does: the
// guest's write cache, O_DIRECT, and ignored flushes.
var cacheSwitches = map[CacheMode]struct{ writeCache, direct, noFlush bool }{
	CacheWriteback:    {writeCache: true},
	CacheNone:         {writeCache: true, direct: true},
	CacheWritethrough: {},
	CacheDirectSync:   {direct: true},
	CacheUnsafe:       {writeCache: true, noFlush: true},
}

// TAPNetdev is a JSON -netdev value for a TAP the shim already opened, and
// netdev_add's arguments (with the names getfd gave the fds).
type TAPNetdev struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	FD    string `json:"fd,omitempty"`
	FDs   string `json:"fds,omitempty"`
	Vhost bool   `json:"vhost"` // always false: vhost-net is not assumed to exist
}

// Blockdevs are the disk's file node and the format node on it, named by
// FileNodeName(ID) and ID. Both carry the cache options: each node honours
// its own no-flush.
func (d Disk) Blockdevs() (file, format Blockdev) {
	discard := string(DiscardUnmap)
	switch {
	case d.ReadOnly:
		discard = ""
	case d.Discard != "":
		discard = string(d.Discard)
	}
	var cache *BlockdevCache
	if sw, ok := cacheSwitches[d.Cache]; ok {
		cache = &BlockdevCache{Direct: sw.direct, NoFlush: sw.noFlush}
	}
	file = Blockdev{Driver: "file", NodeName: FileNodeName(d.ID), Filename: d.Path, ReadOnly: d.ReadOnly, Discard: discard, Cache: cache}
	format = Blockdev{Driver: d.Format, NodeName: d.ID, File: FileNodeName(d.ID), ReadOnly: d.ReadOnly, Discard: discard, Cache: cache}
	return file, format
}

// bus is the disk's bus, BusVirtioBlk when empty.
func (d Disk) bus() DiskBus {
	if d.Bus == "" {
		return BusVirtioBlk
	}
	return d.Bus
}

// Device is the disk's device for its bus: a virtio-blk-pci (a hot-plug
// sets Bus to a free HotplugPortID), a scsi-hd on the SCSI controller's
// bus, or an ide-hd (the caller sets Bus to its AHCI port, "ide.0").
func (d Disk) Device(bootIndex *int) Device {
	dev := Device{Driver: "virtio-blk-pci", ID: d.ID, Drive: d.ID, BootIndex: bootIndex}
	switch d.bus() {
	case BusVirtioSCSI:
		dev.Driver, dev.Bus = "scsi-hd", SCSIBus
	case BusSATA:
		dev.Driver = "ide-hd"
	}
	if sw, ok := cacheSwitches[d.Cache]; ok {
		dev.WriteCache = onOff(sw.writeCache)
	}
	return dev
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// SCSIControllerPortID is the root port the SCSI controller sits behind
// at boot; hot-plugged, it takes a free HotplugPortID.
const SCSIControllerPortID = SCSIController + "-port"

// SCSIControllerDevice is the virtio-scsi controller on bus.
func SCSIControllerDevice(bus string) Device {
	return Device{Driver: "virtio-scsi-pci", ID: SCSIController, Bus: bus}
}

// DiskRootPortID is the root port a disk other than the first sits behind
// at boot.
func DiskRootPortID(id string) string { return id + "-port" }

// RootPort is the disk's own pcie-root-port, at chassis.
func (d Disk) RootPort(chassis int) Device {
	return Device{Driver: "pcie-root-port", ID: DiskRootPortID(d.ID), Bus: "pcie.0", Chassis: chassis}
}

// Blockdevs are the ISO's file node and the raw node on it.
func (cd CDROM) Blockdevs() (file, format Blockdev) {
	file = Blockdev{Driver: "file", NodeName: FileNodeName(cd.ID), Filename: cd.Path, ReadOnly: true}
	format = Blockdev{Driver: FormatRaw, NodeName: cd.ID, File: FileNodeName(cd.ID), ReadOnly: true}
	return file, format
}

// Device is the drive on an AHCI bus ("ide.0"); a drive without an ISO
// has no block node.
func (cd CDROM) Device(bus string, bootIndex *int) Device {
	dev := Device{Driver: "ide-cd", ID: cd.ID, Bus: bus, BootIndex: bootIndex}
	if cd.Path != "" {
		dev.Drive = cd.ID
	}
	return dev
}

// Netdev is the NIC's TAP backend; fds are the queue fds as QEMU knows
// them (numbers in argv, getfd names over QMP).
func (n NIC) Netdev(fds []string) TAPNetdev {
	nd := TAPNetdev{Type: "tap", ID: n.ID}
	if len(fds) == 1 {
		nd.FD = fds[0]
	} else {
		nd.FDs = strings.Join(fds, ":")
	}
	return nd
}

// Device is the NIC's virtio-net device, multi-queue when it has several
// queue fds.
func (n NIC) Device(bootIndex *int) Device {
	dev := Device{Driver: "virtio-net-pci", ID: n.ID, Netdev: n.ID, MAC: n.MAC, BootIndex: bootIndex}
	if len(n.FDs) > 1 {
		// One vector per RX and TX queue, plus config and control.
		dev.MQ, dev.Vectors = true, 2*len(n.FDs)+2
	}
	return dev
}

// PCIRootPortID is the root port a passed-through PCI device sits behind
// at boot.
func PCIRootPortID(id string) string { return id + "-port" }

// RootPort is the device's own pcie-root-port, at chassis.
func (p HostPCI) RootPort(chassis int) Device {
	return Device{Driver: "pcie-root-port", ID: PCIRootPortID(p.ID), Bus: "pcie.0", Chassis: chassis}
}

// PCIFunctionID is the device ID of host function fn (0 to 7) of a
// multifunction passed-through device whose own ID is id.
func PCIFunctionID(id string, fn int) string { return id + "-fn" + strconv.Itoa(fn) }

// Devices are the vfio-pci devices on bus (its root port, or a free
// HotplugPortID for a hot-plug), function 0 last: QEMU sees a hot-plugged
// slot when its function 0 arrives, and takes a cold one's functions in
// any order. Host's device has the ID, each companion PCIFunctionID of
// its host function; function 0 of a multifunction device says
// multifunction=on.
func (p HostPCI) Devices(bus string) []Device {
	main := Device{Driver: "vfio-pci", ID: p.ID, Bus: bus, Host: p.Host, ROMFile: p.ROMFile}
	if len(p.Functions) == 0 {
		return []Device{main}
	}
	all := []Device{main}
	for _, fn := range p.Functions {
		all = append(all, Device{Driver: "vfio-pci", ID: PCIFunctionID(p.ID, pciFunction(fn)), Bus: bus, Host: fn})
	}
	slices.SortFunc(all, func(a, b Device) int { return pciFunction(a.Host) - pciFunction(b.Host) })
	for i := range all {
		all[i].Addr, all[i].Multifunction = fmt.Sprintf("00.%d", i), i == 0
	}
	slices.Reverse(all)
	return all
}

// SlotID is the ID of the device at the guest's function 0, whose
// device_del unplugs the whole slot.
func (p HostPCI) SlotID() string {
	devs := p.Devices("")
	return devs[len(devs)-1].ID
}

// pciFunction is a full PCI address's function number; Validate checked
// the address.
func pciFunction(addr string) int { return int(addr[len(addr)-1] - '0') }

// Device is the usb-host device on the xHCI controller. QEMU takes the
// first host device that matches every filter set, and takes it again
// when it comes back after an unplug.
func (u USBHost) Device() Device {
	return Device{Driver: "usb-host", ID: u.ID, Bus: USBController + ".0", VendorID: int(u.VendorID), ProductID: int(u.ProductID),
		HostBus: u.HostBus, HostPort: u.HostPort}
}

// Device is the virtio balloon.
func (b Balloon) Device() Device {
	return Device{Driver: "virtio-balloon-pci", ID: b.ID, FreePageReporting: b.FreePageReporting, DeflateOnOOM: b.DeflateOnOOM}
}

// ChannelChardev is the chardev behind a channel's port.
func ChannelChardev(id string) string { return id + "-chardev" }

// Device is the channel's port on the virtio-serial controller.
func (ch Channel) Device() Device {
	return Device{Driver: "virtserialport", ID: ch.ID, Bus: VirtioSerialController + ".0", Chardev: ChannelChardev(ch.ID), Name: ch.Port}
}
