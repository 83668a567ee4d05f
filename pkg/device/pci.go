package device

import (
	"context"
	"os"
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// PCI is a host PCI device (a GPU) passed through with vfio-pci, behind a
// root port of its own.
type PCI struct {
	name string
	spec vmspec.PCI
}

// Name is the device's name, also its QEMU id.
func (p *PCI) Name() string { return p.name }

// Type is always api.DevicePCI.
func (p *PCI) Type() api.DeviceType { return api.DevicePCI }

// Host is the device's PCI address.
func (p *PCI) Host() string { return p.spec.Host }

// Caps says a vfio device plugs into a free root port but does not
// migrate: its state is the hardware's.
func (p *PCI) Caps() Caps { return Caps{Hotplug: true} }

// sysfsPCI is where the kernel lists PCI devices.
const sysfsPCI = "/sys/bus/pci/devices"

// DeviceNodes are the device nodes QEMU opens for it: the vfio container
// and the device's IOMMU group, for the unit's DeviceAllow. A device whose
// group cannot be read (not bound, no IOMMU) gets the container only, and
// QEMU says why it fails.
func (p *PCI) DeviceNodes() []string {
	nodes := []string{"/dev/vfio/vfio"}
	if group, err := os.Readlink(filepath.Join(sysfsPCI, p.spec.Host, "iommu_group")); err == nil {
		nodes = append(nodes, filepath.Join("/dev/vfio", filepath.Base(group)))
	}
	return nodes
}

// Prepare has nothing to do: the host binds the device to vfio-pci, and
// the unit's DeviceAllow lets QEMU open it.
func (p *PCI) Prepare(context.Context, *Host) error { return nil }

// Release has nothing to give back: the device stays bound to vfio-pci.
func (p *PCI) Release(context.Context) error { return nil }

func (p *PCI) qemu() qemu.HostPCI { return qemu.HostPCI{ID: p.name, Host: p.spec.Host} }

// Configure adds the device behind a root port of its own.
func (p *PCI) Configure(cfg *qemu.Config, _ *FDs) { cfg.PCIs = append(cfg.PCIs, p.qemu()) }

// Hotplug adds the device straight on port.
func (p *PCI) Hotplug(port string) ([]Command, error) {
	return []Command{{Execute: "device_add", Arguments: p.qemu().Device(port)}}, nil
}

// Unplug removes the device; the host keeps it bound to vfio-pci.
func (p *PCI) Unplug() ([]Command, error) { return []Command{deviceDel(p.name)}, nil }
