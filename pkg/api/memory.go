package api

import "time"

// BalloonRequest is the body of PUT /v1/vms/{id}/balloon: the memory the
// guest is asked to keep, in exactly one of two units. targetMiB is there
// because GiB is too coarse for a small guest; a targetGB must also come
// to a whole number of MiB. The target is part of the VM's definition: a
// running VM's guest gets it at once, and every later start applies it
// again, as libvirt's currentMemory.
type BalloonRequest struct {
	TargetGB  float64 `json:"targetGB,omitempty"`
	TargetMiB int     `json:"targetMiB,omitempty"`
}

// VMMemory is a VM's memory as its balloon sees it, in GET /v1/vms/{id}
// and the answer of PUT /v1/vms/{id}/balloon.
type VMMemory struct {
	// TotalBytes is the VM's memory (ramGB), the balloon deflated.
	TotalBytes int64 `json:"totalBytes"`
	// TargetBytes is what the guest is asked to keep: TotalBytes until a
	// target is set.
	TargetBytes int64 `json:"targetBytes"`
	// ActualBytes is what the guest has now, as the running QEMU reports
	// it; it moves towards TargetBytes as the guest's driver inflates or
	// deflates the balloon. Absent when the VM does not run or its shim
	// did not answer in time.
	ActualBytes int64 `json:"actualBytes,omitempty"`
	// Stats are the guest's own figures, absent until its balloon driver
	// first reported them.
	Stats *MemoryStats `json:"stats,omitempty"`
}

// MemoryStats are the figures a guest's balloon driver reports (virtio's
// memory statistics), polled every few seconds. A figure the guest does
// not report is absent.
type MemoryStats struct {
	// LastUpdate is when the guest last reported.
	LastUpdate time.Time `json:"lastUpdate"`
	// TotalBytes is the memory the guest's kernel has (Linux: MemTotal),
	// which the balloon takes from.
	TotalBytes *int64 `json:"totalBytes,omitempty"`
	// FreeBytes is memory the guest uses for nothing (MemFree).
	FreeBytes *int64 `json:"freeBytes,omitempty"`
	// AvailableBytes is what the guest could use without swapping (MemAvailable).
	AvailableBytes *int64 `json:"availableBytes,omitempty"`
	// DiskCachesBytes is the guest's file cache, which it can drop.
	DiskCachesBytes *int64 `json:"diskCachesBytes,omitempty"`
	SwapInBytes     *int64 `json:"swapInBytes,omitempty"`
	SwapOutBytes    *int64 `json:"swapOutBytes,omitempty"`
	MajorFaults     *int64 `json:"majorFaults,omitempty"`
	MinorFaults     *int64 `json:"minorFaults,omitempty"`
	// HugetlbAllocations and HugetlbFailures count huge page allocations.
	HugetlbAllocations *int64 `json:"hugetlbAllocations,omitempty"`
	HugetlbFailures    *int64 `json:"hugetlbFailures,omitempty"`
}
