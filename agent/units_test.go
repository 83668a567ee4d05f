package agent

import (
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestDeviceAllowHasEachPCIDevicesVFIO(t *testing.T) {
	s := &vmspec.Spec{}
	if got := deviceAllow(s); slices.Contains(got, "/dev/vfio/vfio") || !slices.Contains(got, "/dev/kvm") {
		t.Errorf("no PCI device: %v", got)
	}
	s.AddDevice(vmspec.NewDevice("pci0", vmspec.PCI{Host: "0000:01:00.0"}))
	s.AddDevice(vmspec.NewDevice("pci1", vmspec.PCI{Host: "0000:02:00.0"}))
	got := deviceAllow(s)
	if n := len(slices.DeleteFunc(slices.Clone(got), func(p string) bool { return p != "/dev/vfio/vfio" })); n != 1 {
		t.Errorf("two PCI devices: the vfio container %d times in %v", n, got)
	}
}
