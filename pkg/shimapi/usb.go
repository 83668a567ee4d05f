package shimapi

import "github.com/infinibay/infinivirt/pkg/api"

// USBAddRequest plugs a host USB device entry into the running VM's xHCI
// controller: the shim hands the device's node to QEMU, if it is plugged
// into the host, and adds usb-host, which QEMU keeps waiting for the
// device if it is not.
type USBAddRequest struct {
	Device api.Device `json:"device"`
}

// USBRemoveRequest unplugs a USB device entry (device_del until
// DEVICE_DELETED, within a deadline); the host keeps the device.
type USBRemoveRequest struct {
	Name string `json:"name"`
}
