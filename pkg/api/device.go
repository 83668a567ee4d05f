package api

// DeviceType is the kind of one of a VM's devices.
type DeviceType string

// The device types a VM can have.
const (
	DeviceDisk    DeviceType = "disk"    // a disk (virtio-blk, virtio-scsi or sata) on an image file in the VM's directory
	DeviceCDROM   DeviceType = "cdrom"   // an AHCI CD-ROM drive, with an ISO or empty
	DeviceNIC     DeviceType = "nic"     // a virtio-net interface on a TAP in a bridge
	DevicePCI     DeviceType = "pci"     // a host PCI device passed through with vfio-pci (a GPU)
	DeviceUSB     DeviceType = "usb"     // a host USB device passed through
	DeviceTPM     DeviceType = "tpm"     // an emulated TPM 2.0 (swtpm)
	DeviceBalloon DeviceType = "balloon" // a virtio memory balloon
	DeviceChannel DeviceType = "channel" // a virtio-serial port to a host socket (the guest agent's)
)

// DeviceTypes lists every device type.
var DeviceTypes = []DeviceType{
	DeviceDisk, DeviceCDROM, DeviceNIC, DevicePCI, DeviceUSB, DeviceTPM, DeviceBalloon, DeviceChannel,
}

// Device is one of a VM's devices: a stable name, which is also its QEMU
// id and block node name (disk0, cd0, net0, pci0, ...), its type, and the
// section of that type; the other sections are empty.
type Device struct {
	Name    string         `json:"name,omitempty"`
	Type    DeviceType     `json:"type"`
	Disk    *DiskDevice    `json:"disk,omitempty"`
	CDROM   *CDROMDevice   `json:"cdrom,omitempty"`
	NIC     *NICDevice     `json:"nic,omitempty"`
	PCI     *PCIDevice     `json:"pci,omitempty"`
	USB     *USBDevice     `json:"usb,omitempty"`
	TPM     *TPMDevice     `json:"tpm,omitempty"`
	Balloon *BalloonDevice `json:"balloon,omitempty"`
	Channel *ChannelDevice `json:"channel,omitempty"`
}

// DiskDevice is a disk image.
type DiskDevice struct {
	Path      string `json:"path"`
	Format    string `json:"format"` // qcow2 or raw, never probed
	SizeBytes int64  `json:"sizeBytes"`
	// BootIndex orders the boot devices, lowest first; 0 is not bootable.
	BootIndex int `json:"bootIndex,omitempty"`
	// Bus is how the guest sees the disk; empty is virtio-blk, as every
	// disk was before a bus could be chosen.
	Bus DiskBus `json:"bus,omitempty"`
	// Cache is how QEMU caches the image; empty is writeback.
	Cache DiskCache `json:"cache,omitempty"`
	// Discard is what becomes of the guest's discards; empty is unmap.
	Discard DiskDiscard `json:"discard,omitempty"`
	// Image is the store image (GET /v1/images) the disk was made from, by
	// its name; empty for a disk made empty.
	Image string `json:"image,omitempty"`
	// Clone says how it was made from Image: "linked" (a qcow2 overlay
	// backed by the image, which must stay) or "full" (a copy).
	Clone DiskClone `json:"clone,omitempty"`
}

// DiskClone is how a disk is made from a store image.
type DiskClone string

// The ways a disk is made from a store image.
const (
	CloneLinked DiskClone = "linked" // a thin qcow2 overlay backed by the image
	CloneFull   DiskClone = "full"   // an independent copy
)

// CDROMDevice is a CD-ROM drive; an empty Path is a drive without a disc.
type CDROMDevice struct {
	Path      string `json:"path,omitempty"`
	BootIndex int    `json:"bootIndex,omitempty"`
}

// NICDevice is a network interface on a bridge.
type NICDevice struct {
	MAC    string `json:"mac"`
	Bridge string `json:"bridge"`
}

// PCIDevice is a host PCI device, by its full address like 0000:01:00.0.
type PCIDevice struct {
	Host string `json:"host"`
	// Functions are the other functions of the device's slot in its IOMMU
	// group (a GPU's HDMI audio), passed through with it as one
	// multifunction device, each at its own function number. The agent
	// finds them on the host when the device is attached.
	Functions []string `json:"functions,omitempty"`
	// Managed binds the device and its functions to vfio-pci at each start
	// (driver_override) and gives them back to their drivers when the VM
	// stops, crashed or not. Otherwise they must be on vfio-pci already.
	Managed bool `json:"managed,omitempty"`
	// ROMFile is the option ROM QEMU shows the guest in place of the
	// device's own, a file of the host's ROM directory.
	ROMFile string `json:"romFile,omitempty"`
}

// USBDevice is a host USB device: by its vendor and product IDs (four
// hex digits each), any device of that model; by BusPort, whatever is
// plugged there; by both, that model there. A serial pins the model to
// the one device with that serial number, wherever it is plugged at the
// VM's start (BusPort records where it was found).
type USBDevice struct {
	VendorID  string `json:"vendorId,omitempty"`
	ProductID string `json:"productId,omitempty"`
	Serial    string `json:"serial,omitempty"`
	// BusPort is where the device is plugged, as GET /v1/host/usb names
	// it: 1-1.2.
	BusPort string `json:"busPort,omitempty"`
}

// TPMDevice is an emulated TPM 2.0 whose state lives in StateDir, inside
// the VM's directory.
type TPMDevice struct {
	StateDir string `json:"stateDir"`
}

// BalloonDevice is a virtio memory balloon.
type BalloonDevice struct {
	// FreePageReporting lets the guest hand free pages back to the host.
	FreePageReporting bool `json:"freePageReporting,omitempty"`
	// DeflateOnOOM gives the guest memory back before its OOM killer runs.
	// The guest then keeps counting the balloon's pages as its own, so
	// its MemTotal does not shrink.
	DeflateOnOOM bool `json:"deflateOnOOM,omitempty"`
	// TargetMiB is the memory the guest is asked to keep (PUT
	// /v1/vms/{id}/balloon); 0 is all of the VM's memory.
	TargetMiB int `json:"targetMiB,omitempty"`
}

// ChannelDevice is a virtio-serial port the guest sees by Port's name
// (org.qemu.guest_agent.0 for the QEMU guest agent); the shim holds the
// host end.
type ChannelDevice struct {
	Port string `json:"port"`
}
