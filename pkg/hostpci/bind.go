package hostpci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/sysfs"
)

// Binding is the driver a device had before a managed start bound it to
// vfio-pci, which RestoreDrivers gives it back to.
type Binding struct {
	Address string `json:"address"`
	// Driver is "" when no driver had the device.
	Driver string `json:"driver"`
}

// Drivers reads the driver each device at addrs is bound to now.
func Drivers(t sysfs.Tree, addrs []string) ([]Binding, error) {
	out := make([]Binding, 0, len(addrs))
	for _, addr := range addrs {
		if !addressRE.MatchString(addr) {
			return nil, fmt.Errorf("%q is not a PCI address", addr)
		}
		dir := devDir(t, addr)
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("PCI device %s: %w", addr, err)
		}
		driver, err := sysfs.LinkBase(dir, "driver")
		if err != nil {
			return nil, fmt.Errorf("PCI device %s: %w", addr, err)
		}
		out = append(out, Binding{Address: addr, Driver: driver})
	}
	return out, nil
}

// BindVFIO binds each device at addrs to vfio-pci, as libvirt's managed
// devices are: driver_override names vfio-pci, the device leaves its
// driver, and the bus probes it again. A device already on vfio-pci stays.
func BindVFIO(ctx context.Context, t sysfs.Tree, addrs []string) error {
	if _, err := os.Stat(t.Path(filepath.Join("bus/pci/drivers", VFIODriver))); err != nil {
		return fmt.Errorf("the %s driver is not loaded (modprobe %s): %w", VFIODriver, VFIODriver, err)
	}
	for _, addr := range addrs {
		if err := bindVFIO(ctx, t, addr); err != nil {
			return fmt.Errorf("bind %s to %s: %w", addr, VFIODriver, err)
		}
	}
	return nil
}

func bindVFIO(ctx context.Context, t sysfs.Tree, addr string) error {
	if !addressRE.MatchString(addr) {
		return fmt.Errorf("%q is not a PCI address", addr)
	}
	dir := devDir(t, addr)
	driver, err := sysfs.LinkBase(dir, "driver")
	if err != nil || driver == VFIODriver {
		return err
	}
	if err := t.WriteAttr(ctx, filepath.Join(dir, "driver_override"), VFIODriver); err != nil {
		return err
	}
	if driver != "" {
		if err := t.WriteAttr(ctx, filepath.Join(dir, "driver", "unbind"), addr); err != nil {
			return fmt.Errorf("take it from %s: %w", driver, err)
		}
	}
	if err := t.WriteAttr(ctx, t.Path("bus/pci/drivers_probe"), addr); err != nil {
		return err
	}
	if now, err := sysfs.LinkBase(dir, "driver"); err != nil || now != VFIODriver {
		return errors.Join(err, fmt.Errorf("the device is bound to %s after the probe", driverText(now)))
	}
	return nil
}

// RestoreDrivers gives each device back to the driver it had, newest
// first: driver_override is cleared, vfio-pci lets go of the device, and
// the old driver binds it (the bus probes it when that driver is gone).
// A device that was on vfio-pci to begin with, or is no longer on it
// (the host rebooted, someone moved it), keeps its driver. Every device
// is tried; the errors are joined.
func RestoreDrivers(ctx context.Context, t sysfs.Tree, bs []Binding) error {
	var errs []error
	for i := len(bs) - 1; i >= 0; i-- {
		if err := restoreDriver(ctx, t, bs[i]); err != nil {
			errs = append(errs, fmt.Errorf("give %s back to %s: %w", bs[i].Address, driverText(bs[i].Driver), err))
		}
	}
	return errors.Join(errs...)
}

func restoreDriver(ctx context.Context, t sysfs.Tree, b Binding) error {
	if b.Driver == VFIODriver {
		return nil
	}
	if !addressRE.MatchString(b.Address) {
		return fmt.Errorf("%q is not a PCI address", b.Address)
	}
	if b.Driver != "" && (filepath.Base(b.Driver) != b.Driver || b.Driver == "." || b.Driver == "..") {
		return fmt.Errorf("%q is not a driver's name", b.Driver)
	}
	dir := devDir(t, b.Address)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil // unplugged
	}
	driver, err := sysfs.LinkBase(dir, "driver")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "driver_override")); err == nil {
		if err := t.WriteAttr(ctx, filepath.Join(dir, "driver_override"), "\n"); err != nil {
			return err
		}
	}
	if driver != VFIODriver {
		return nil
	}
	if err := t.WriteAttr(ctx, filepath.Join(dir, "driver", "unbind"), b.Address); err != nil {
		return fmt.Errorf("take it from %s: %w", VFIODriver, err)
	}
	if b.Driver == "" {
		return nil
	}
	bind := t.Path(filepath.Join("bus/pci/drivers", b.Driver, "bind"))
	if _, err := os.Stat(filepath.Dir(bind)); err != nil {
		bind = t.Path("bus/pci/drivers_probe")
	}
	if err := t.WriteAttr(ctx, bind, b.Address); err != nil {
		return err
	}
	if now, err := sysfs.LinkBase(dir, "driver"); err != nil || now != b.Driver {
		return errors.Join(err, fmt.Errorf("the device is bound to %s", driverText(now)))
	}
	return nil
}

func devDir(t sysfs.Tree, addr string) string { return t.Path(filepath.Join("bus/pci/devices", addr)) }
