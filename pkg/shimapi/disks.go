package shimapi

import "github.com/infinibay/infinivirt/pkg/api"

// DisksRequest asks for the running VM's disks with their images as QEMU
// has them open (virtual size, allocation, backing chain).
type DisksRequest struct{}

// DiskAddRequest hot-plugs a disk whose image the agent has created: the
// shim checks and hands the image to QEMU, adds its block nodes and plugs
// it into a free hot-plug port, undoing what it did when a step fails.
type DiskAddRequest struct {
	Device api.Device `json:"device"`
}

// DiskRemoveRequest unplugs a disk: device_del until the guest releases
// it (DEVICE_DELETED, within a deadline), then its block nodes go.
type DiskRemoveRequest struct {
	Name string `json:"name"`
}

// DiskResizeRequest grows a disk live (block_resize); a running VM's disk
// never shrinks.
type DiskResizeRequest struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
}
