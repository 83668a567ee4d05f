package device

import (
	"context"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
)

// USB is a host USB device passed through, found by vendor and product ID,
// on the xHCI controller.
type USB struct {
	name            string
	vendor, product uint16
}

func newUSB(name string, u api.USBDevice) (*USB, error) {
	v, err := strconv.ParseUint(u.VendorID, 16, 16)
	if err != nil {
		return nil, errdefs.Invalid("usb.vendorId", "device %s: %q is not four hex digits", name, u.VendorID)
	}
	p, err := strconv.ParseUint(u.ProductID, 16, 16)
	if err != nil {
		return nil, errdefs.Invalid("usb.productId", "device %s: %q is not four hex digits", name, u.ProductID)
	}
	return &USB{name: name, vendor: uint16(v), product: uint16(p)}, nil
}

// Name is the device's name, also its QEMU id.
func (u *USB) Name() string { return u.name }

// Type is always api.DeviceUSB.
func (u *USB) Type() api.DeviceType { return api.DeviceUSB }

// Caps says USB plugs and unplugs at will, but does not migrate: the
// device's state is the host's.
func (u *USB) Caps() Caps { return Caps{Hotplug: true} }

// Prepare has nothing to do yet: which /dev/bus/usb node QEMU opens is
// known only once the host has the device.
func (u *USB) Prepare(context.Context, *Host) error { return nil }

// Release has nothing to give back.
func (u *USB) Release(context.Context) error { return nil }

func (u *USB) qemu() qemu.USBHost {
	return qemu.USBHost{ID: u.name, VendorID: u.vendor, ProductID: u.product}
}

// Configure adds the device on the xHCI controller; QEMU finds it on the
// host by its IDs.
func (u *USB) Configure(cfg *qemu.Config, _ *FDs) { cfg.USBHosts = append(cfg.USBHosts, u.qemu()) }

// Hotplug adds it on the xHCI controller; port is not used.
func (u *USB) Hotplug(string) ([]Command, error) {
	return []Command{{Execute: "device_add", Arguments: u.qemu().Device()}}, nil
}

// Unplug removes the device from the guest; the host keeps it.
func (u *USB) Unplug() ([]Command, error) { return []Command{deviceDel(u.name)}, nil }
