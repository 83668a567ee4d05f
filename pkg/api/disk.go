package api

// DiskBus is how a disk is attached to the guest.
type DiskBus string

// The disk buses.
const (
	DiskBusVirtioBlk  DiskBus = "virtio-blk"  // a virtio-blk PCIe device of its own, the default
	DiskBusVirtioSCSI DiskBus = "virtio-scsi" // a scsi-hd on the VM's virtio-scsi controller
	DiskBusSATA       DiskBus = "sata"        // an ide-hd on q35's AHCI controller, for guests without virtio drivers; no hot-plug
)

// DiskBuses lists every disk bus.
var DiskBuses = []DiskBus{DiskBusVirtioBlk, DiskBusVirtioSCSI, DiskBusSATA}

// OrDefault is the bus, or virtio-blk when it is empty.
func (b DiskBus) OrDefault() DiskBus { return orDefault(b, DiskBusVirtioBlk) }

// DiskCache is how QEMU caches a disk's image, with QEMU's meanings: the
// guest sees a write cache it must flush (all but writethrough and
// directsync), the host's page cache is bypassed (none, directsync), and
// flushes are ignored (unsafe: only for disks whose data may be lost).
type DiskCache string

// The cache modes.
const (
	DiskCacheWriteback    DiskCache = "writeback"    // QEMU's default: the host's page cache, flushed when the guest flushes
	DiskCacheNone         DiskCache = "none"         // bypasses the host's page cache (O_DIRECT); the guest still flushes its write cache
	DiskCacheWritethrough DiskCache = "writethrough" // each write is on stable storage when it completes; the guest sees no write cache
	DiskCacheDirectSync   DiskCache = "directsync"   // writethrough, bypassing the host's page cache
	DiskCacheUnsafe       DiskCache = "unsafe"       // the guest's flushes are ignored: fast, and a host crash loses data
)

// DiskCaches lists every cache mode.
var DiskCaches = []DiskCache{DiskCacheWriteback, DiskCacheNone, DiskCacheWritethrough, DiskCacheDirectSync, DiskCacheUnsafe}

// OrDefault is the cache mode, or writeback when it is empty.
func (c DiskCache) OrDefault() DiskCache { return orDefault(c, DiskCacheWriteback) }

// DiskDiscard is what becomes of the guest's discard (TRIM, UNMAP) requests.
type DiskDiscard string

// The discard modes.
const (
	DiskDiscardUnmap  DiskDiscard = "unmap"  // passed to the image, so a thin image stays thin; the default
	DiskDiscardIgnore DiskDiscard = "ignore" // dropped: the image keeps what it once allocated
)

// DiskDiscards lists every discard mode.
var DiskDiscards = []DiskDiscard{DiskDiscardUnmap, DiskDiscardIgnore}

// OrDefault is the discard mode, or unmap when it is empty.
func (d DiskDiscard) OrDefault() DiskDiscard { return orDefault(d, DiskDiscardUnmap) }

func orDefault[T ~string](v, def T) T {
	if v == "" {
		return def
	}
	return v
}

// Disk is one of a VM's disks with its image as it is now: from qemu-img
// while the VM is off, from QEMU (query-block) while it runs.
type Disk struct {
	// Name is the disk's device name, its QEMU id and node name (disk0).
	Name   string  `json:"name"`
	Path   string  `json:"path"`
	Format string  `json:"format"`
	Bus    DiskBus `json:"bus"`
	// Cache is the cache mode QEMU opens the image with.
	Cache DiskCache `json:"cache"`
	// Discard is what becomes of the guest's discard requests.
	Discard DiskDiscard `json:"discard"`
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

// WithModes is the view with the bus, cache and discard modes of its spec
// entry, each one's default where the entry leaves it empty.
func (d Disk) WithModes(dev DiskDevice) Disk {
	d.Bus, d.Cache, d.Discard = dev.Bus.OrDefault(), dev.Cache.OrDefault(), dev.Discard.OrDefault()
	return d
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
	// Bus defaults to virtio-blk. A running VM takes a virtio-scsi disk
	// live (and its controller, on a free hot-plug port, when it has
	// none yet), but not a sata one: AHCI cannot hot-plug.
	Bus DiskBus `json:"bus,omitempty"`
	// Cache defaults to writeback.
	Cache DiskCache `json:"cache,omitempty"`
	// Discard defaults to unmap.
	Discard DiskDiscard `json:"discard,omitempty"`
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
