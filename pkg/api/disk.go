package api

// DiskBus is how a disk is attached to the guest.
type DiskBus string

// The disk buses. Only virtio-blk is built today; the others are refused
// by name until they are.
const (
	DiskBusVirtioBlk  DiskBus = "virtio-blk"
	DiskBusVirtioSCSI DiskBus = "virtio-scsi"
	DiskBusSATA       DiskBus = "sata"
)

// Disk is one of a VM's disks with its image as it is now: from qemu-img
// while the VM is off, from QEMU (query-block) while it runs.
type Disk struct {
	// Name is the disk's device name, its QEMU id and node name (disk0).
	Name   string  `json:"name"`
	Path   string  `json:"path"`
	Format string  `json:"format"`
	Bus    DiskBus `json:"bus"`
	// BootIndex orders the boot devices, lowest first; 0 is not bootable.
	BootIndex int `json:"bootIndex,omitempty"`
	// VirtualSizeBytes is the size the guest sees.
	VirtualSizeBytes int64 `json:"virtualSizeBytes"`
	// AllocatedBytes is what the image takes on the host.
	AllocatedBytes int64 `json:"allocatedBytes"`
	// BackingChain is the images under this one, nearest first; empty for
	// an image of its own.
	BackingChain []BackingImage `json:"backingChain"`
	// Live says the numbers come from the running QEMU, not qemu-img.
	Live bool `json:"live"`
	// Image and Clone say which store image the disk was made from, and how.
	Image string    `json:"image,omitempty"`
	Clone DiskClone `json:"clone,omitempty"`
}

// BackingImage is one image of a disk's backing chain.
type BackingImage struct {
	Path             string `json:"path"`
	Format           string `json:"format"`
	VirtualSizeBytes int64  `json:"virtualSizeBytes"`
}

// Disks is the answer of GET /v1/vms/{id}/disks.
type Disks struct {
	Disks []Disk `json:"disks"`
}

// AddDiskRequest is the body of POST /v1/vms/{id}/disks: a new, empty,
// thin qcow2 image in the VM's directory, attached at once when the VM runs.
type AddDiskRequest struct {
	// Name is the new disk's device name; empty picks the next free diskN.
	Name   string  `json:"name,omitempty"`
	SizeGB float64 `json:"sizeGB"`
	// Bus defaults to virtio-blk, the only one built so far.
	Bus DiskBus `json:"bus,omitempty"`
	// Cache and Discard are refused for now: every disk is opened with
	// QEMU's default cache and passes discards through (unmap).
	Cache   string `json:"cache,omitempty"`
	Discard string `json:"discard,omitempty"`
	// BootOrder is the disk's boot index (1 boots first); 0 is not
	// bootable. A disk plugged into a running VM boots from the next start.
	BootOrder int `json:"bootOrder,omitempty"`
	// Image makes the disk from a store image, by its name, instead of
	// empty; the disk is at least as large as the image.
	Image string `json:"image,omitempty"`
	// Clone is how, with Image: "linked" (default; a qcow2 overlay) or "full".
	Clone DiskClone `json:"clone,omitempty"`
}

// ResizeDiskRequest is the body of PATCH /v1/vms/{id}/disks/{disk}. A
// running VM's disk only grows; shrinking needs AllowShrink and the VM off,
// and loses the data past the new end.
type ResizeDiskRequest struct {
	SizeGB      float64 `json:"sizeGB"`
	AllowShrink bool    `json:"allowShrink,omitempty"`
}
