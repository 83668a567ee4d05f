package api

// AttachUSBRequest is the body of POST /v1/vms/{id}/usb: a host USB
// device passed through to a VM, running or off, by its IDs (optionally
// with its serial), by where it is plugged (busPort), or by both. A
// running VM gets it at once on its xHCI controller, which it has when it
// booted with a display or a USB device; either way the spec keeps it,
// so each start has it. A device that is not plugged in is taken when it
// is, and again after each unplug. DELETE /v1/vms/{id}/usb/{dev} takes it
// off. The answer is the VM's new device entry.
type AttachUSBRequest struct {
	// VendorID and ProductID are four lower-case hex digits each (046d,
	// c52b), as GET /v1/host/usb lists them.
	VendorID  string `json:"vendorId,omitempty"`
	ProductID string `json:"productId,omitempty"`
	// Serial picks the one device of that model with this serial number;
	// it must be plugged in at the attach.
	Serial string `json:"serial,omitempty"`
	// BusPort is where the device is plugged (1-1.2): whatever is plugged
	// there, or with the IDs, that model there.
	BusPort string `json:"busPort,omitempty"`
	// Name is the device's name; empty takes the lowest free usbN.
	Name string `json:"name,omitempty"`
}
