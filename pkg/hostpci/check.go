package hostpci

import (
	"fmt"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Want is one device a request passes through, with the request's field
// that names it (gpuPciAddress, devices[2].pci.host).
type Want struct {
	Field   string
	Address string
	// Managed: the VM's start binds the device to vfio-pci (and its stop
	// gives it back), so any driver may hold it until then.
	Managed bool
}

// CheckPassthrough checks that the devices of want, given to one VM
// together, can be passed through:
//   - the IOMMU is on;
//   - each address is a device of the host, bound to vfio-pci unless it
//     is managed;
//   - every other member of its IOMMU group is passed through with it, is
//     bound to vfio-pci (or to pci-stub, or to no driver at all: nothing
//     on the host then uses it, as the kernel sees it too), or is a
//     PCI-to-PCI bridge, which keeps its pcieport driver;
//   - no member of the group is held by another VM.
//
// held maps the addresses other VMs pass through to a description of the
// VM (its id and name); the VM's own devices must not be in it. Each
// failure is an InvalidArgument naming the field and the device at fault.
func (inv Inventory) CheckPassthrough(want []Want, held map[string]string) error {
	together := map[string]bool{}
	for _, w := range want {
		together[w.Address] = true
	}
	for _, w := range want {
		if err := inv.check(w, together, held); err != nil {
			return err
		}
	}
	return nil
}

func (inv Inventory) check(w Want, together map[string]bool, held map[string]string) error {
	if !inv.IOMMU {
		return errdefs.Invalid(w.Field, "cannot pass %s through: this host's IOMMU is off "+
			"(turn VT-d or AMD-Vi on in the firmware, and boot Intel hosts with intel_iommu=on)", w.Address)
	}
	d, ok := inv.Device(w.Address)
	if !ok {
		return errdefs.Invalid(w.Field, "this host has no PCI device %s", w.Address)
	}
	if !d.VFIO() && !w.Managed {
		return errdefs.Invalid(w.Field, "%s (%s) is bound to %s, not %s: bind it to %s first, or pass it through managed (bound at each start)",
			d.Address, d.describe(), driverText(d.Driver), VFIODriver, VFIODriver)
	}
	if vm, ok := held[d.Address]; ok {
		return errdefs.Invalid(w.Field, "%s is already passed through to %s", d.Address, vm)
	}
	for _, addr := range inv.Group(d.Group) {
		if addr == d.Address {
			continue
		}
		if vm, ok := held[addr]; ok {
			return errdefs.Invalid(w.Field, "%s shares IOMMU group %s with %s, which is passed through to %s: "+
				"a group goes to one VM only", d.Address, d.Group, addr, vm)
		}
		m, ok := inv.Device(addr)
		if !ok || together[addr] {
			// Unplugged since the group was read, or passed through
			// too: its own check tells what is wrong with it.
			continue
		}
		if !m.safeInGroup() {
			return errdefs.Invalid(w.Field, "%s shares IOMMU group %s with %s (%s), which is bound to %s: "+
				"every device of the group must be bound to %s or be a PCI bridge", d.Address, d.Group,
				m.Address, m.describe(), driverText(m.Driver), VFIODriver)
		}
	}
	return nil
}

// safeInGroup says whether the device may share a group passed through
// to a guest while it stays where it is: no host driver but vfio-pci or
// pci-stub drives it, or it is a bridge the kernel allows.
func (d Device) safeInGroup() bool {
	return d.Driver == VFIODriver || d.Driver == "pci-stub" || d.Driver == "" || d.pciToPCIBridge()
}

// describe says what the device is, for errors: "gpu NVIDIA Corporation
// GP104 [GeForce GTX 1080]", or its ids without names.
func (d Device) describe() string {
	if d.VendorName == "" || d.DevName == "" {
		return fmt.Sprintf("%s %04x:%04x", d.Class, d.VendorID, d.DeviceID)
	}
	return fmt.Sprintf("%s %s %s", d.Class, d.VendorName, d.DevName)
}

func driverText(driver string) string {
	if driver == "" {
		return "no driver"
	}
	return driver
}
