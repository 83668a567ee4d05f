package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// PCI is a host PCI device (a GPU, with its audio function) passed through
// with vfio-pci, behind a root port of its own. A managed one is bound to
// vfio-pci by Prepare and given back to its drivers by Release, or by the
// unit's cleanup (RestorePCIDrivers) when the shim could not.
type PCI struct {
	name string
	spec vmspec.PCI
	// prepared is the host Prepare ran on; nil until then.
	prepared *Host
}

// Name is the device's name, also its QEMU id.
func (p *PCI) Name() string { return p.name }

// Type is always api.DevicePCI.
func (p *PCI) Type() api.DeviceType { return api.DevicePCI }

// Host is the device's PCI address.
func (p *PCI) Host() string { return p.spec.Host }

// Addresses are the host functions passed through: the device's, then its
// companions'.
func (p *PCI) Addresses() []string { return append([]string{p.spec.Host}, p.spec.Functions...) }

// Caps says a vfio device plugs into a free root port but does not
// migrate: its state is the hardware's.
func (p *PCI) Caps() Caps { return Caps{Hotplug: true} }

// VFIODir holds the vfio container and one node per IOMMU group bound to
// vfio-pci.
const VFIODir = "/dev/vfio"

// vfioGroupClass is systemd's DeviceAllow name for every vfio group node.
const vfioGroupClass = "char-vfio"

// DeviceAllow is what the unit's DeviceAllow needs for QEMU to open the
// device, with the host's sysfs at root: the vfio container and the node
// of each function's IOMMU group. A managed device's group has no node
// until its start binds it to vfio-pci, and systemd allows only nodes it
// finds when the unit starts, so it gets vfio's whole class instead. A
// group that cannot be read (no IOMMU) is left out: the start says why.
func (p *PCI) DeviceAllow(root string) []string {
	out := []string{filepath.Join(VFIODir, "vfio")}
	if p.spec.Managed {
		return append(out, vfioGroupClass)
	}
	for _, g := range p.groups(root) {
		out = append(out, filepath.Join(VFIODir, g))
	}
	return out
}

// groups are the IOMMU groups of the device's functions, each once.
func (p *PCI) groups(root string) []string {
	var out []string
	for _, addr := range p.Addresses() {
		g, err := sysfs.LinkBase(filepath.Join(root, "bus/pci/devices", addr), "iommu_group")
		if err == nil && g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// Prepare checks the ROM file, binds a managed device's functions to
// vfio-pci (its drivers recorded first, in the VM's runtime directory),
// and hands the vfio nodes to QEMU's user.
func (p *PCI) Prepare(ctx context.Context, h *Host) error {
	if f := p.spec.ROMFile; f != "" {
		if err := statFile("romFile", f); err != nil {
			return err
		}
	}
	p.prepared = h
	if p.spec.Managed {
		if err := p.bind(ctx, h); err != nil {
			return err
		}
	}
	groups := p.groups(h.Sysfs.Dir())
	if len(groups) == 0 {
		return fmt.Errorf("%s has no IOMMU group: the host's IOMMU is off, or the device is gone", p.spec.Host)
	}
	nodes := []string{filepath.Join(VFIODir, "vfio")}
	for _, g := range groups {
		nodes = append(nodes, filepath.Join(VFIODir, g))
	}
	if err := h.hand(nodes...); err != nil {
		return err
	}
	h.progress("%s passed through from IOMMU group %s", strings.Join(p.Addresses(), " and "), strings.Join(groups, ", "))
	return nil
}

// bind records the functions' drivers, unless a record of an earlier
// start is still there (its drivers are the host's own), then binds them.
func (p *PCI) bind(ctx context.Context, h *Host) error {
	record := pciDriversFile(h.RuntimeDir, p.name)
	if _, err := os.Stat(record); errors.Is(err, fs.ErrNotExist) {
		bs, err := hostpci.Drivers(h.Sysfs, p.Addresses())
		if err != nil {
			return err
		}
		b, err := json.Marshal(bs)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(record, b, 0o600); err != nil {
			return fmt.Errorf("record the drivers of %s: %w", p.spec.Host, err)
		}
	} else if err != nil {
		return err
	}
	if err := hostpci.BindVFIO(ctx, h.Sysfs, p.Addresses()); err != nil {
		return err
	}
	h.progress("%s bound to %s", strings.Join(p.Addresses(), " and "), hostpci.VFIODriver)
	return nil
}

// Release gives a managed device's functions back to the drivers they had.
func (p *PCI) Release(ctx context.Context) error {
	h := p.prepared
	if h == nil || !p.spec.Managed {
		return nil
	}
	if err := restoreDrivers(ctx, h.Sysfs, pciDriversFile(h.RuntimeDir, p.name)); err != nil {
		return err
	}
	p.prepared = nil
	return nil
}

// pciDriversPattern names the records of managed devices' drivers in a
// VM's runtime directory.
const pciDriversPattern = "pci-drivers-*.json"

func pciDriversFile(runtimeDir, name string) string {
	return filepath.Join(runtimeDir, strings.Replace(pciDriversPattern, "*", name, 1))
}

// PCIDriverRecords are the records of managed devices' drivers in a VM's
// runtime directory that are still to be given back. Whoever removes the
// directory keeps them while there are any.
func PCIDriverRecords(runtimeDir string) ([]string, error) {
	return filepath.Glob(filepath.Join(runtimeDir, pciDriversPattern))
}

// RestorePCIDrivers gives every managed device recorded in a VM's runtime
// directory back to its drivers: the unit's cleanup runs it after a shim
// that could not (it crashed, or was killed). Each record goes once its
// devices are back; the errors are joined.
func RestorePCIDrivers(ctx context.Context, t sysfs.Tree, runtimeDir string) error {
	records, err := PCIDriverRecords(runtimeDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range records {
		errs = append(errs, restoreDrivers(ctx, t, r))
	}
	return errors.Join(errs...)
}

// restoreDrivers restores the drivers one record holds and removes it; a
// missing record has nothing to restore.
func restoreDrivers(ctx context.Context, t sysfs.Tree, record string) error {
	b, err := os.ReadFile(record)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var bs []hostpci.Binding
	if err := json.Unmarshal(b, &bs); err != nil {
		return fmt.Errorf("%s: %w", record, err)
	}
	if err := hostpci.RestoreDrivers(ctx, t, bs); err != nil {
		return err
	}
	return os.Remove(record)
}

func (p *PCI) qemu() qemu.HostPCI {
	return qemu.HostPCI{ID: p.name, Host: p.spec.Host, Functions: p.spec.Functions, ROMFile: p.spec.ROMFile}
}

// Configure adds the device behind a root port of its own.
func (p *PCI) Configure(cfg *qemu.Config, _ *FDs) { cfg.PCIs = append(cfg.PCIs, p.qemu()) }

// Hotplug adds the device's functions straight on port, function 0 last.
func (p *PCI) Hotplug(port string) ([]Command, error) {
	var cmds []Command
	for _, d := range p.qemu().Devices(port) {
		cmds = append(cmds, Command{Execute: "device_add", Arguments: d})
	}
	return cmds, nil
}

// Unplug removes the device with its slot's function 0, which takes the
// other functions with it.
func (p *PCI) Unplug() ([]Command, error) { return []Command{deviceDel(p.qemu().SlotID())}, nil }
