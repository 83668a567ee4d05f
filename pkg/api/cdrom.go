package api

// CDROM is one of a VM's CD-ROM drives: what its spec holds, and while the
// VM runs what QEMU has in it.
//
// A drive is a resource of its own (POST /v1/vms/{id}/cdroms adds one,
// DELETE /v1/vms/{id}/cdroms/{cd} removes it, both only while the VM is
// off: q35's AHCI drives cannot be hot-plugged); its medium is a
// sub-resource (PUT /v1/vms/{id}/cdroms/{cd}/medium inserts or changes it,
// DELETE /v1/vms/{id}/cdroms/{cd}/medium ejects it, live while the VM runs).
type CDROM struct {
	// Name is the drive's name: its QEMU id and node name (cd0).
	Name string `json:"name"`
	// ISOPath is the ISO the spec puts in the drive; empty for an empty drive.
	ISOPath   string `json:"isoPath,omitempty"`
	BootIndex int    `json:"bootIndex,omitempty"`
	// Live is the drive as the running QEMU has it (query-block); absent
	// while the VM is off.
	Live *CDROMLive `json:"live,omitempty"`
}

// CDROMLive is a running drive's state in QEMU. A guest that opened the
// tray (eject in the guest) leaves the medium in QEMU with TrayOpen set.
type CDROMLive struct {
	MediumInserted bool `json:"mediumInserted"`
	// File is the image QEMU has open; empty without a medium.
	File     string `json:"file,omitempty"`
	TrayOpen bool   `json:"trayOpen"`
}

// CDROMs is the answer of GET /v1/vms/{id}/cdroms, in the spec's order.
type CDROMs struct {
	CDROMs []CDROM `json:"cdroms"`
}

// CDROMMedium is the body of PUT /v1/vms/{id}/cdroms/{cd}/medium.
type CDROMMedium struct {
	// ISOPath is an absolute path to an ISO the VM's QEMU user can read.
	ISOPath string `json:"isoPath"`
}

// AddCDROMRequest is the body of POST /v1/vms/{id}/cdroms.
type AddCDROMRequest struct {
	// Name is the new drive's name; empty takes the lowest free cdN.
	Name string `json:"name,omitempty"`
	// ISOPath is the medium the drive starts with; empty for an empty drive.
	ISOPath string `json:"isoPath,omitempty"`
	// BootIndex makes the drive bootable (1 to 99); 0 is not bootable.
	BootIndex int `json:"bootIndex,omitempty"`
}
