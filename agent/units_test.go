package agent

import (
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/sysfstest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestDeviceAllowHasEachPCIDevicesVFIO(t *testing.T) {
	s := &vmspec.Spec{}
	if got := deviceAllow(s, t.TempDir()); slices.Contains(got, "/dev/vfio/vfio") || !slices.Contains(got, "/dev/kvm") {
		t.Errorf("no PCI device: %v", got)
	}
	s.AddDevice(vmspec.NewDevice("pci0", vmspec.PCI{Host: "0000:01:00.0"}))
	s.AddDevice(vmspec.NewDevice("pci1", vmspec.PCI{Host: "0000:02:00.0"}))
	got := deviceAllow(s, t.TempDir())
	if n := len(slices.DeleteFunc(slices.Clone(got), func(p string) bool { return p != "/dev/vfio/vfio" })); n != 1 {
		t.Errorf("two PCI devices: the vfio container %d times in %v", n, got)
	}
}

// TestUnitOfAPassthroughVM: the unit of a VM with a GPU and its audio
// function lets QEMU open the vfio container and the group's node, once
// each, and lock the guest's memory plus a margin; a managed device's
// group, whose node appears only at the start, is allowed as vfio's class.
// A VM without passthrough keeps systemd's default memlock limit.
func TestUnitOfAPassthroughVM(t *testing.T) {
	a := New(Config{Sysfs: sysfstest.Build(t, "../pkg/hostpci/testdata/gpu-audio.tree"), ShimBinary: "/usr/bin/infinivirt-shim"})
	s := &vmspec.Spec{ID: vm1, Name: "gpu", MemoryMiB: 2048, Accel: "kvm"}
	plain := a.unitSpec(s, "user")
	if plain.LimitMEMLOCK != 0 || slices.ContainsFunc(plain.DeviceAllow, func(d string) bool { return d != "/dev/kvm" && d != "/dev/net/tun" && d != "/dev/vhost-net" }) {
		t.Errorf("without passthrough: LimitMEMLOCK %d, DeviceAllow %v", plain.LimitMEMLOCK, plain.DeviceAllow)
	}

	s.AddDevice(vmspec.NewDevice("pci0", vmspec.PCI{Host: "0000:01:00.0", Functions: []string{"0000:01:00.1"}}))
	u := a.unitSpec(s, "user")
	if want := uint64(2048<<20 + 1<<30); u.LimitMEMLOCK != want {
		t.Errorf("LimitMEMLOCK %d, want %d", u.LimitMEMLOCK, want)
	}
	vfio := slices.DeleteFunc(slices.Clone(u.DeviceAllow), func(d string) bool { return d == "/dev/kvm" || d == "/dev/net/tun" || d == "/dev/vhost-net" })
	if want := []string{"/dev/vfio/vfio", "/dev/vfio/1"}; !slices.Equal(vfio, want) {
		t.Errorf("vfio entries %v, want %v", vfio, want)
	}

	s.Device("pci0").PCI.Managed = true
	if got := a.unitSpec(s, "user").DeviceAllow; !slices.Contains(got, "char-vfio") || slices.Contains(got, "/dev/vfio/1") {
		t.Errorf("managed: DeviceAllow %v", got)
	}
}

// TestDeviceAllowUSBNodes: a VM with a USB controller (a display, or a
// USB device) may open every USB device node, as a device attached live
// has a node the unit's start could not list; a headless VM without USB
// devices may open none.
func TestDeviceAllowUSBNodes(t *testing.T) {
	s := &vmspec.Spec{}
	if got := deviceAllow(s, t.TempDir()); slices.Contains(got, usbDeviceClass) {
		t.Errorf("headless, no USB: %v", got)
	}
	s.AddDevice(vmspec.NewDevice("usb0", vmspec.USB{BusPort: "1-2"}))
	if got := deviceAllow(s, t.TempDir()); !slices.Contains(got, usbDeviceClass) {
		t.Errorf("a USB device: %v", got)
	}
	s = &vmspec.Spec{Display: vmspec.Display{Protocol: "vnc"}}
	if got := deviceAllow(s, t.TempDir()); !slices.Contains(got, usbDeviceClass) {
		t.Errorf("a display: %v", got)
	}
}
