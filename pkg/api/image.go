package api

import "time"

// ImageState is where a store image is in its life.
type ImageState string

// The states of a store image.
const (
	ImageImporting ImageState = "importing" // being converted into the store
	ImageReady     ImageState = "ready"     // in the store, usable by disks
	ImageFailed    ImageState = "failed"    // the import failed and left nothing; Error says why
)

// ImportImageRequest is the body of POST /v1/images: an existing image
// file to convert into the store as qcow2.
type ImportImageRequest struct {
	// Name is the image's name in the store: 1 to 64 letters, digits, '.',
	// '_' or '-', starting with a letter or digit.
	Name string `json:"name"`
	// SourcePath is the absolute path of a regular file on the host.
	SourcePath string `json:"sourcePath"`
	// Format is the source's format: raw, qcow2, vmdk or vhdx; empty
	// takes it from the file's header (raw when it has none of the others').
	Format string `json:"format,omitempty"`
}

// CaptureImageRequest is the body of POST /v1/vms/{id}/disks/{disk}/image:
// the name the disk's flattened copy gets in the store.
type CaptureImageRequest struct {
	Name string `json:"name"`
}

// Image is an image of the store, or one being imported.
type Image struct {
	Name   string     `json:"name"`
	State  ImageState `json:"state"`
	Format string     `json:"format"` // always qcow2 in the store
	// Progress is the import's progress in percent while importing.
	Progress float64 `json:"progress"`
	// Error says why an import failed.
	Error string `json:"error,omitempty"`
	// Source is the file or VM disk the image was made from.
	Source           string    `json:"source,omitempty"`
	VirtualSizeBytes int64     `json:"virtualSizeBytes"`
	AllocatedBytes   int64     `json:"allocatedBytes"`
	CreatedAt        time.Time `json:"createdAt"`
	// UsedBy are the disks backed by the image (linked clones); while
	// there are any, the image cannot be deleted.
	UsedBy []ImageUser `json:"usedBy"`
}

// ImageUser is a VM's disk backed by a store image.
type ImageUser struct {
	VMID   string `json:"vmId"`
	VMName string `json:"vmName"`
	Disk   string `json:"disk"`
}

// Images is the answer of GET /v1/images.
type Images struct {
	Images []Image `json:"images"`
}
