// Package hostusb lists the host's USB devices from sysfs. The sysfs root
// is a parameter, so tests read fixture trees.
package hostusb

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/infinibay/infinivirt/pkg/hwids"
	"github.com/infinibay/infinivirt/pkg/sysfs"
)

// Device is one USB device plugged into the host.
type Device struct {
	// BusPort is the kernel's name for where it is plugged: bus 1, port
	// 2 of the hub on port 1 is 1-1.2.
	BusPort string
	// Bus is the bus number and Port the port path on it (1.2); DevNum is
	// the device's number on the bus, which changes at each plug.
	Bus, DevNum         int
	Port                string
	VendorID, ProductID uint16
	// VendorName and ProductName come from usb.ids, or else from the
	// device's own manufacturer and product strings.
	VendorName, ProductName string
	Serial                  string
	// Hub says it is a hub, whose own ports list their devices.
	Hub bool
}

// devNameRE matches devices (1-1, 1-1.2); root hubs are usbN and
// interfaces have a ':' (1-1.2:1.0).
var devNameRE = regexp.MustCompile(`^[0-9]+-[0-9]+(\.[0-9]+)*$`)

// hubClass is bDeviceClass of hubs.
const hubClass = 0x09

// List reads the USB devices under the sysfs root, naming them from ids
// (nil: from the devices' strings only), sorted by bus and port. Root hubs
// and interfaces are not devices to pass through and are left out. A
// root without a USB bus lists none.
func List(root string, ids *hwids.DB) ([]Device, error) {
	out, err := sysfs.BusDevices(root, "usb", devNameRE, func(dir, name string) (Device, error) {
		return readDevice(dir, name, ids)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Device) int {
		if a.Bus != b.Bus {
			return a.Bus - b.Bus
		}
		return slices.Compare(portNumbers(a.Port), portNumbers(b.Port))
	})
	return out, nil
}

func readDevice(dir, name string, ids *hwids.DB) (Device, error) {
	d := Device{BusPort: name}
	vendor, err := sysfs.Uint(dir, "idVendor", 16, 16)
	if err != nil {
		return d, err
	}
	product, err := sysfs.Uint(dir, "idProduct", 16, 16)
	if err != nil {
		return d, err
	}
	bus, err := sysfs.Uint(dir, "busnum", 10, 16)
	if err != nil {
		return d, err
	}
	devnum, err := sysfs.Uint(dir, "devnum", 10, 16)
	if err != nil {
		return d, err
	}
	class, err := sysfs.Uint(dir, "bDeviceClass", 16, 8)
	if err != nil {
		return d, err
	}
	if d.Port, err = sysfs.Attr(dir, "devpath"); err != nil {
		return d, err
	}
	d.VendorID, d.ProductID, d.Bus, d.DevNum = uint16(vendor), uint16(product), int(bus), int(devnum)
	d.Hub = class == hubClass
	// The strings are optional: many devices have no serial.
	for attr, to := range map[string]*string{"manufacturer": &d.VendorName, "product": &d.ProductName, "serial": &d.Serial} {
		if *to, err = sysfs.OptionalAttr(dir, attr); err != nil {
			return d, err
		}
	}
	if n := ids.Vendor(d.VendorID); n != "" {
		d.VendorName = n
	}
	if n := ids.Device(d.VendorID, d.ProductID); n != "" {
		d.ProductName = n
	}
	return d, nil
}

// portNumbers orders port paths by number: 1.2 before 1.10.
func portNumbers(port string) []int {
	var out []int
	for _, p := range strings.Split(port, ".") {
		n, _ := strconv.Atoi(p)
		out = append(out, n)
	}
	return out
}

// Filter picks host devices the way a USB passthrough entry does: each
// field set must match; VendorID 0 and empty strings match anything.
type Filter struct {
	VendorID, ProductID uint16
	Serial, BusPort     string
}

// Match reports whether d passes the filter.
func (f Filter) Match(d Device) bool {
	return (f.VendorID == 0 || f.VendorID == d.VendorID && f.ProductID == d.ProductID) &&
		(f.Serial == "" || f.Serial == d.Serial) && (f.BusPort == "" || f.BusPort == d.BusPort)
}

// Overlaps reports whether some device could pass both filters: the two
// entries would fight over it.
func (f Filter) Overlaps(g Filter) bool {
	idsMeet := f.VendorID == 0 || g.VendorID == 0 || f.VendorID == g.VendorID && f.ProductID == g.ProductID
	serialsMeet := f.Serial == "" || g.Serial == "" || f.Serial == g.Serial
	portsMeet := f.BusPort == "" || g.BusPort == "" || f.BusPort == g.BusPort
	return idsMeet && serialsMeet && portsMeet
}

// NodeDir holds the host's USB device nodes, one per device.
const NodeDir = "/dev/bus/usb"

// Node is the device node QEMU opens for d: /dev/bus/usb/001/004.
func (d Device) Node() string { return fmt.Sprintf("%s/%03d/%03d", NodeDir, d.Bus, d.DevNum) }
