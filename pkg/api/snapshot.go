package api

import "time"

// Snapshot is a point-in-time copy of a VM's disks, and with Memory of its
// RAM and device state too: internal qcow2 snapshots, one per disk, all
// tagged Name.
//
// POST /v1/vms/{id}/snapshots takes one, GET lists them, POST
// /v1/vms/{id}/snapshots/{snapshot}/revert goes back to one and DELETE
// /v1/vms/{id}/snapshots/{snapshot} deletes it.
type Snapshot struct {
	// ID is the snapshot's own UUID.
	ID   string `json:"id"`
	VMID string `json:"vmId"`
	// Name is unique within the VM: the tag in each of its disks.
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// SizeBytes is the saved RAM and device state; a disk-only snapshot's
	// is 0 (qcow2 accounts no size to the clusters a snapshot shares).
	SizeBytes int64 `json:"sizeBytes"`
	// IsCurrent marks the snapshot the VM's disks last started from: the
	// one last taken or reverted to.
	IsCurrent bool `json:"isCurrent"`
	// Memory says the snapshot holds the running guest's RAM.
	Memory bool `json:"memory"`
	// PowerState is the VM's status when the snapshot was taken.
	PowerState Status `json:"powerState"`
	// Disks are the names of the disks it covers, the VM's disks then.
	Disks []string `json:"disks"`
	// GuestPausedMs is how long taking it held the running guest paused,
	// in milliseconds, by QEMU's clock: around the disks' snapshot, or
	// with Memory while QEMU saved the RAM. 0 when the guest did not run.
	GuestPausedMs float64 `json:"guestPausedMs,omitempty"`
}

// Snapshots is the answer of GET /v1/vms/{id}/snapshots, oldest first.
type Snapshots struct {
	Snapshots []Snapshot `json:"snapshots"`
}

// CreateSnapshotRequest is the body of POST /v1/vms/{id}/snapshots.
type CreateSnapshotRequest struct {
	// Name is 1 to 64 letters, digits, '-', '_' or '.', not beginning
	// with '-' and not all digits.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Memory includes the running guest's RAM, so that a revert resumes
	// it where it was. A VM that is off has none to include.
	Memory bool `json:"memory,omitempty"`
}
