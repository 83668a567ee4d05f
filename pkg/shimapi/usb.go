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

// USBRequest asks for the running VM's USB devices as QEMU has them.
type USBRequest struct{}

// USBState is the running VM's passed-through USB devices as QEMU has
// them, and QEMU's own listing of its USB bus (HMP info usb), as text.
type USBState struct {
	Devices []USBDeviceState `json:"devices"`
	InfoUSB string           `json:"infoUsb"`
}

// USBDeviceState is one usb-host device of the running QEMU.
type USBDeviceState struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
	// Attached says a host device is attached to it, so the guest sees it;
	// false while no matching device is plugged into the host.
	Attached bool `json:"attached"`
}
