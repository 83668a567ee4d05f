package sysfstest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Kernel does to a fixture tree what the kernel does on the PCI bus's
// writes that move a device between drivers:
//   - <device>/driver_override keeps the driver the device may bind to;
//   - drivers/<d>/unbind and drivers/<d>/bind take the device from, or
//     give it to, that driver (bind refuses a device bound elsewhere, or
//     whose override names another driver);
//   - bus/pci/drivers_probe binds an unbound device to its override.
//
// Other writes write the file. Its Write is a sysfs.Writer.
type Kernel struct {
	Root string

	mu     sync.Mutex
	writes []string
	fail   map[string]error
}

// Writes are the writes done so far, each as "<path in the tree> <value>".
func (k *Kernel) Writes() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.writes...)
}

// FailWrites makes each later write to the attribute at name (a path in
// the tree, through links as written) fail with err.
func (k *Kernel) FailWrites(name string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail == nil {
		k.fail = map[string]error{}
	}
	k.fail[name] = err
}

// Write writes data to the attribute at path, acting as the kernel would.
func (k *Kernel) Write(path string, data []byte) error {
	rel, err := filepath.Rel(k.Root, path)
	if err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("sysfstest: %s is outside the tree %s", path, k.Root)
	}
	value := strings.TrimSpace(string(data))
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes = append(k.writes, rel+" "+value)
	if err := k.fail[rel]; err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	var werr error
	switch {
	case rel == "bus/pci/drivers_probe":
		werr = k.probe(value)
	case filepath.Base(rel) == "unbind" || filepath.Base(rel) == "bind":
		dir, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return err
		}
		driver, ok := k.driverOf(dir)
		if !ok {
			return fmt.Errorf("sysfstest: %s is not a PCI driver's attribute", rel)
		}
		if filepath.Base(rel) == "unbind" {
			werr = k.unbind(driver, value)
		} else {
			werr = k.bind(driver, value)
		}
	default:
		return os.WriteFile(path, data, 0o644)
	}
	if werr != nil {
		return &fs.PathError{Op: "write", Path: path, Err: werr}
	}
	return nil
}

// driverOf names the driver whose directory dir is.
func (k *Kernel) driverOf(dir string) (string, bool) {
	drivers, err := filepath.EvalSymlinks(filepath.Join(k.Root, "bus/pci/drivers"))
	if err != nil || filepath.Dir(dir) != drivers {
		return "", false
	}
	return filepath.Base(dir), true
}

func (k *Kernel) device(addr string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(k.Root, "bus/pci/devices", addr))
	if err != nil {
		return "", syscall.ENODEV
	}
	return dir, nil
}

func (k *Kernel) boundTo(dev string) string {
	target, err := os.Readlink(filepath.Join(dev, "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

func (k *Kernel) override(dev string) string {
	b, err := os.ReadFile(filepath.Join(dev, "driver_override"))
	if s := strings.TrimSpace(string(b)); err == nil && s != "(null)" {
		return s
	}
	return ""
}

func (k *Kernel) unbind(driver, addr string) error {
	dev, err := k.device(addr)
	if err != nil {
		return err
	}
	if k.boundTo(dev) != driver {
		return syscall.ENODEV
	}
	if err := os.Remove(filepath.Join(dev, "driver")); err != nil {
		return err
	}
	return os.Remove(filepath.Join(k.Root, "bus/pci/drivers", driver, addr))
}

func (k *Kernel) bind(driver, addr string) error {
	dev, err := k.device(addr)
	if err != nil {
		return err
	}
	if k.boundTo(dev) != "" {
		return syscall.EBUSY
	}
	if o := k.override(dev); o != "" && o != driver {
		return syscall.ENODEV
	}
	drvDir := filepath.Join(k.Root, "bus/pci/drivers", driver)
	toDriver, err := filepath.Rel(dev, drvDir)
	if err != nil {
		return err
	}
	drvReal, err := filepath.EvalSymlinks(drvDir)
	if err != nil {
		return syscall.ENODEV
	}
	toDevice, err := filepath.Rel(drvReal, dev)
	if err != nil {
		return err
	}
	if err := os.Symlink(toDriver, filepath.Join(dev, "driver")); err != nil {
		return err
	}
	return os.Symlink(toDevice, filepath.Join(drvDir, addr))
}

// probe binds an unbound device to the driver its override names, when
// that driver is there; without an override it stays unbound, as no
// fixture says which driver would claim it.
func (k *Kernel) probe(addr string) error {
	dev, err := k.device(addr)
	if err != nil {
		return err
	}
	o := k.override(dev)
	if k.boundTo(dev) != "" || o == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(k.Root, "bus/pci/drivers", o)); err != nil {
		return nil
	}
	return k.bind(o, addr)
}
