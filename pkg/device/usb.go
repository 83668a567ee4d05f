package device

import (
	"context"
	"fmt"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/hostusb"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// USB is a host USB device passed through on the xHCI controller, found
// by its IDs, by where it is plugged, or both.
type USB struct {
	name   string
	filter hostusb.Filter
	// at is where Prepare found a device with the entry's serial: QEMU is
	// pinned there, as usb-host cannot match a serial itself.
	at string
}

func newUSB(name string, u api.USBDevice) (*USB, error) {
	if err := vmspec.CheckUSB("usb.", &u); err != nil {
		return nil, err
	}
	return &USB{name: name, filter: USBFilter(u)}, nil
}

// USBFilter is the host devices a checked USB entry stands for.
func USBFilter(u api.USBDevice) hostusb.Filter {
	f := hostusb.Filter{Serial: u.Serial, BusPort: u.BusPort}
	if u.VendorID != "" {
		v, _ := strconv.ParseUint(u.VendorID, 16, 16)
		p, _ := strconv.ParseUint(u.ProductID, 16, 16)
		f.VendorID, f.ProductID = uint16(v), uint16(p)
	}
	return f
}

// Name is the device's name, also its QEMU id.
func (u *USB) Name() string { return u.name }

// Type is always api.DeviceUSB.
func (u *USB) Type() api.DeviceType { return api.DeviceUSB }

// Caps says USB plugs and unplugs at will, but does not migrate: the
// device's state is the host's.
func (u *USB) Caps() Caps { return Caps{Hotplug: true} }

// Prepare finds the device on the host and hands its node to QEMU's
// user. A device that is not plugged in is no error: QEMU waits for it.
// A device with a serial is looked for by IDs and serial alone, so that
// it is found on whichever port it is plugged into now.
func (u *USB) Prepare(_ context.Context, h *Host) error {
	devs, err := hostusb.List(h.Sysfs.Dir(), nil)
	if err != nil {
		return fmt.Errorf("read the host's USB devices: %w", err)
	}
	want := u.filter
	if want.Serial != "" {
		want.BusPort = ""
	}
	for _, d := range devs {
		if !want.Match(d) {
			continue
		}
		if want.Serial != "" {
			u.at = d.BusPort
		}
		if err := h.hand(d.Node()); err != nil {
			return err
		}
		h.progress("USB device %04x:%04x (%s) at %s passed through", d.VendorID, d.ProductID, d.ProductName, d.BusPort)
		return nil
	}
	h.progress("USB device %s is not plugged in; QEMU takes it when it is", u.describe())
	return nil
}

// describe names the device as its entry does: 046d:c52b, 1-1.2.
func (u *USB) describe() string {
	s := ""
	if f := u.filter; f.VendorID != 0 {
		s = fmt.Sprintf("%04x:%04x", f.VendorID, f.ProductID)
		if f.Serial != "" {
			s += " serial " + f.Serial
		}
	}
	if u.filter.BusPort != "" {
		if s != "" {
			s += " at "
		}
		s += u.filter.BusPort
	}
	return s
}

// Release has nothing to give back.
func (u *USB) Release(context.Context) error { return nil }

func (u *USB) qemu() qemu.USBHost {
	out := qemu.USBHost{ID: u.name, VendorID: u.filter.VendorID, ProductID: u.filter.ProductID}
	at := u.filter.BusPort
	if u.at != "" {
		at = u.at
	}
	if at != "" {
		out.HostBus, out.HostPort = vmspec.USBBusPort(at)
	}
	return out
}

// Configure adds the device on the xHCI controller; QEMU finds it on the
// host by its filters.
func (u *USB) Configure(cfg *qemu.Config, _ *FDs) { cfg.USBHosts = append(cfg.USBHosts, u.qemu()) }

// Hotplug adds it on the xHCI controller; port is not used.
func (u *USB) Hotplug(string) ([]Command, error) {
	return []Command{{Execute: "device_add", Arguments: u.qemu().Device()}}, nil
}

// Unplug removes the device from the guest; the host keeps it.
func (u *USB) Unplug() ([]Command, error) { return []Command{deviceDel(u.name)}, nil }
