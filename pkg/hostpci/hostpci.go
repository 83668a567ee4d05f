// Package hostpci lists the host's PCI devices from sysfs, with their
// IOMMU groups and drivers, and checks whether devices can be passed
// through to a VM with vfio-pci. The sysfs root is a parameter, so tests
// read fixture trees.
package hostpci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/infinibay/infinivirt/pkg/hwids"
	"github.com/infinibay/infinivirt/pkg/sysfs"
)

// VFIODriver is the driver a device must be bound to for QEMU to pass it
// through.
const VFIODriver = "vfio-pci"

// Class is what a device is, from its class code.
type Class string

// The classes a device is sorted into.
const (
	ClassGPU     Class = "gpu"     // display controller (0x03)
	ClassAudio   Class = "audio"   // multimedia audio or HD audio (0x0401, 0x0403)
	ClassNIC     Class = "nic"     // network controller (0x02)
	ClassUSB     Class = "usb"     // USB controller (0x0c03)
	ClassBridge  Class = "bridge"  // host, ISA, PCI and other bridges (0x06)
	ClassStorage Class = "storage" // mass storage controller (0x01)
	ClassOther   Class = "other"
)

// Device is one PCI function of the host.
type Device struct {
	// Address is the function's full address, 0000:01:00.0.
	Address             string
	VendorID, DeviceID  uint16
	VendorName, DevName string // from pci.ids; "" when unknown
	ClassCode           uint32 // class, subclass and programming interface: 0x030000
	ClassName           string // the subclass's name from pci.ids
	Class               Class
	Group               string // the IOMMU group; "" when the IOMMU is off
	Driver              string // the bound driver; "" when none is
}

// VFIO says whether the device is bound to vfio-pci.
func (d Device) VFIO() bool { return d.Driver == VFIODriver }

// Slot is the address without its function: 0000:01:00.
func (d Device) Slot() string { return slot(d.Address) }

func slot(addr string) string { s, _, _ := strings.Cut(addr, "."); return s }

// pciToPCIBridge says whether the device is a bridge with a type 1 or 2
// header (PCI-to-PCI, semi-transparent or CardBus), which the kernel lets
// stay with its driver in a group passed through.
func (d Device) pciToPCIBridge() bool {
	class, sub := uint8(d.ClassCode>>16), uint8(d.ClassCode>>8)
	return class == 0x06 && (sub == 0x04 || sub == 0x07 || sub == 0x09)
}

// Inventory is the host's PCI devices at one moment.
type Inventory struct {
	// IOMMU says whether the IOMMU is on: the kernel made IOMMU groups.
	IOMMU bool
	// Devices are sorted by address.
	Devices []Device
	// groups are each group's members, sorted.
	groups map[string][]string
}

// Device returns the device at addr.
func (inv Inventory) Device(addr string) (Device, bool) {
	i, ok := slices.BinarySearchFunc(inv.Devices, addr, func(d Device, a string) int { return strings.Compare(d.Address, a) })
	if !ok {
		return Device{}, false
	}
	return inv.Devices[i], true
}

// Group returns the addresses of every member of the IOMMU group, the
// device itself included, sorted; nil when the IOMMU is off.
func (inv Inventory) Group(group string) []string {
	if group == "" {
		return nil
	}
	return inv.groups[group]
}

// Companions returns the other functions on the device's slot that share
// its IOMMU group (a GPU's HDMI audio function): they cannot go to
// another VM, so they go with it as one multifunction device. Functions
// in groups of their own (SR-IOV virtual functions, or a slot with ACS)
// are devices of their own.
func (inv Inventory) Companions(addr string) []Device {
	self, ok := inv.Device(addr)
	if !ok {
		return nil
	}
	var out []Device
	for _, d := range inv.Devices {
		if d.Address != addr && d.Slot() == self.Slot() && d.Group == self.Group {
			out = append(out, d)
		}
	}
	return out
}

var addressRE = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// ValidAddress says whether addr is a full PCI address as sysfs spells
// it: 0000:01:00.0.
func ValidAddress(addr string) bool { return addressRE.MatchString(addr) }

// List reads the PCI devices under the sysfs root, naming them from ids
// (nil: ids only). A root without a PCI bus lists none.
func List(root string, ids *hwids.DB) (Inventory, error) {
	inv := Inventory{groups: map[string][]string{}}
	groupsDir := filepath.Join(root, "kernel", "iommu_groups")
	groups, err := os.ReadDir(groupsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Inventory{}, err
	}
	for _, g := range groups {
		members, err := os.ReadDir(filepath.Join(groupsDir, g.Name(), "devices"))
		if err != nil {
			return Inventory{}, err
		}
		for _, m := range members {
			inv.groups[g.Name()] = append(inv.groups[g.Name()], m.Name())
		}
		slices.Sort(inv.groups[g.Name()])
	}
	inv.IOMMU = len(groups) > 0

	inv.Devices, err = sysfs.BusDevices(root, "pci", addressRE, func(dir, addr string) (Device, error) {
		return readDevice(dir, addr, ids)
	})
	if err != nil {
		return Inventory{}, err
	}
	slices.SortFunc(inv.Devices, func(a, b Device) int { return strings.Compare(a.Address, b.Address) })
	return inv, nil
}

func readDevice(dir, addr string, ids *hwids.DB) (Device, error) {
	d := Device{Address: addr}
	vendor, err := sysfs.Uint(dir, "vendor", 16, 16)
	if err != nil {
		return d, err
	}
	device, err := sysfs.Uint(dir, "device", 16, 16)
	if err != nil {
		return d, err
	}
	class, err := sysfs.Uint(dir, "class", 16, 24)
	if err != nil {
		return d, err
	}
	d.VendorID, d.DeviceID, d.ClassCode = uint16(vendor), uint16(device), uint32(class)
	d.VendorName, d.DevName = ids.Vendor(d.VendorID), ids.Device(d.VendorID, d.DeviceID)
	d.ClassName = ids.Class(uint8(class>>16), uint8(class>>8))
	d.Class = classOf(uint8(class>>16), uint8(class>>8))
	if d.Driver, err = sysfs.LinkBase(dir, "driver"); err != nil {
		return d, err
	}
	if d.Group, err = sysfs.LinkBase(dir, "iommu_group"); err != nil {
		return d, err
	}
	return d, nil
}

func classOf(class, sub uint8) Class {
	switch {
	case class == 0x03:
		return ClassGPU
	case class == 0x04 && (sub == 0x01 || sub == 0x03):
		return ClassAudio
	case class == 0x02:
		return ClassNIC
	case class == 0x0c && sub == 0x03:
		return ClassUSB
	case class == 0x06:
		return ClassBridge
	case class == 0x01:
		return ClassStorage
	}
	return ClassOther
}
