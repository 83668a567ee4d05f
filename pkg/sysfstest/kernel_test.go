package sysfstest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKernelMovesADevice: unbind, bind and drivers_probe move a fixture
// device between drivers as the kernel would, and refuse what it would.
func TestKernelMovesADevice(t *testing.T) {
	desc := filepath.Join(t.TempDir(), "host.tree")
	if err := os.WriteFile(desc, []byte(strings.Join([]string{
		"file devices/pci0000:00/0000:01:00.0/vendor 0x10de",
		"link bus/pci/devices/0000:01:00.0 ../../../devices/pci0000:00/0000:01:00.0",
		"link devices/pci0000:00/0000:01:00.0/driver ../../../bus/pci/drivers/nouveau",
		"link bus/pci/drivers/nouveau/0000:01:00.0 ../../../../devices/pci0000:00/0000:01:00.0",
		"dir bus/pci/drivers/vfio-pci",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	root := Build(t, desc)
	k := &Kernel{Root: root}
	dev := filepath.Join(root, "bus/pci/devices/0000:01:00.0")
	driver := func() string {
		target, _ := os.Readlink(filepath.Join(dev, "driver"))
		return filepath.Base(target)
	}
	write := func(name, value string) error { return k.Write(filepath.Join(root, name), []byte(value+"\n")) }

	if err := write("bus/pci/drivers/vfio-pci/bind", "0000:01:00.0"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("bind of a bound device: %v, want EBUSY", err)
	}
	if err := write("bus/pci/drivers/vfio-pci/unbind", "0000:01:00.0"); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("unbind from a driver that does not hold it: %v, want ENODEV", err)
	}
	for _, w := range [][2]string{
		{"bus/pci/devices/0000:01:00.0/driver_override", "vfio-pci"},
		{"bus/pci/devices/0000:01:00.0/driver/unbind", "0000:01:00.0"},
	} {
		if err := write(w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	if d := driver(); d != "." {
		t.Fatalf("unbound device has driver %q", d)
	}
	if _, err := os.Lstat(filepath.Join(root, "bus/pci/drivers/nouveau/0000:01:00.0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old driver still lists the device: %v", err)
	}
	if err := write("bus/pci/drivers/nouveau/bind", "0000:01:00.0"); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("bind against the override: %v, want ENODEV", err)
	}
	if err := write("bus/pci/drivers_probe", "0000:01:00.0"); err != nil || driver() != "vfio-pci" {
		t.Fatalf("probe: %v, driver %q", err, driver())
	}
	if _, err := os.Stat(filepath.Join(root, "bus/pci/drivers/vfio-pci/0000:01:00.0/vendor")); err != nil {
		t.Errorf("the new driver's link: %v", err)
	}
	if got := k.Writes(); len(got) != 6 || got[2] != "bus/pci/devices/0000:01:00.0/driver_override vfio-pci" {
		t.Errorf("writes %q", got)
	}
	if err := k.Write("/etc/passwd", nil); err == nil {
		t.Error("a write outside the tree was done")
	}
}
