package agent

import (
	"fmt"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/hostusb"
	"github.com/infinibay/infinivirt/pkg/hwids"
)

// HostPCI lists the host's PCI devices, each with the VM it is passed
// through to.
func (a *Agent) HostPCI() (api.HostPCI, error) {
	inv, err := hostpci.List(a.cfg.Sysfs, a.ids(a.pciIDs))
	if err != nil {
		return api.HostPCI{}, errdefs.Internal("read the host's PCI devices: %v", err)
	}
	holders := a.pciHolders()
	out := api.HostPCI{IOMMU: inv.IOMMU, Devices: make([]api.HostPCIDevice, len(inv.Devices))}
	for i, d := range inv.Devices {
		members := inv.Group(d.Group)
		if members == nil {
			members = []string{}
		}
		out.Devices[i] = api.HostPCIDevice{
			Address: d.Address, VendorID: fmt.Sprintf("%04x", d.VendorID), DeviceID: fmt.Sprintf("%04x", d.DeviceID),
			Vendor: d.VendorName, Device: d.DevName,
			ClassCode: fmt.Sprintf("%06x", d.ClassCode), ClassName: d.ClassName, Class: api.PCIClass(d.Class),
			IOMMUGroup: d.Group, GroupMembers: members, Driver: d.Driver, VFIO: d.VFIO(),
		}
		if u, ok := holders[d.Address]; ok {
			out.Devices[i].UsedBy = &u
		}
	}
	return out, nil
}

// HostUSB lists the USB devices plugged into the host.
func (a *Agent) HostUSB() (api.HostUSB, error) {
	devs, err := hostusb.List(a.cfg.Sysfs, a.ids(a.usbIDs))
	if err != nil {
		return api.HostUSB{}, errdefs.Internal("read the host's USB devices: %v", err)
	}
	holders := a.usbHolders("")
	out := api.HostUSB{Devices: make([]api.HostUSBDevice, len(devs))}
	for i, d := range devs {
		out.Devices[i] = api.HostUSBDevice{
			BusPort: d.BusPort, Bus: d.Bus, Port: d.Port, DeviceNumber: d.DevNum,
			VendorID: fmt.Sprintf("%04x", d.VendorID), ProductID: fmt.Sprintf("%04x", d.ProductID),
			Vendor: d.VendorName, Product: d.ProductName, Serial: d.Serial, Hub: d.Hub,
			UsedBy: usbUser(d, holders),
		}
	}
	return out, nil
}

// ids is an id database, or none when it cannot be read: devices are then
// listed by their ids alone.
func (a *Agent) ids(f *hwids.File) *hwids.DB {
	db, err := f.DB()
	if err != nil {
		a.log.Warn("host devices are listed without names", "ERROR", err.Error())
	}
	return db
}

// pciHolders maps each host PCI address passed through (a device's
// companion functions included) to the VM entry holding it, for every VM
// the agent holds, those being created included.
func (a *Agent) pciHolders() map[string]api.DeviceUser {
	out := map[string]api.DeviceUser{}
	for _, s := range a.allSpecs() {
		for _, d := range s.PCIs() {
			for _, addr := range pciAddresses(d.PCI) {
				if _, taken := out[addr]; !taken {
					out[addr] = api.DeviceUser{VMID: s.ID, VMName: s.Name, Device: d.Name}
				}
			}
		}
	}
	return out
}
