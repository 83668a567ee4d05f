package api

// BlockDevice is one of a running VM's block devices, as QEMU reports it
// (QMP query-block).
type BlockDevice struct {
	// Name is the device's name: its QEMU id and node name (disk0, cd0).
	Name string `json:"name"`
	// File is the image QEMU has open; empty for a CD-ROM without a medium.
	File string `json:"file,omitempty"`
	// Format is the image's format (qcow2, raw); empty without a medium.
	Format   string `json:"format,omitempty"`
	ReadOnly bool   `json:"readOnly"`
	// Removable is true for a CD-ROM. MediumInserted says whether it holds
	// a medium (a disk always does), TrayOpen whether its tray is open.
	Removable      bool `json:"removable"`
	MediumInserted bool `json:"mediumInserted"`
	TrayOpen       bool `json:"trayOpen"`
}

// BlockDevices is the answer of GET /v1/vms/{id}/block.
type BlockDevices struct {
	Devices []BlockDevice `json:"devices"`
}
