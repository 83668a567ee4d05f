package agent

import (
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
)

// TestHostPCIShowsTheVMUsingIt: a device passed through to a VM, and the
// audio function that went with it, say which VM and entry hold them; the
// others say nothing.
func TestHostPCIShowsTheVMUsingIt(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	cfg.Sysfs = sysfstest.Build(t, "../pkg/hostpci/testdata/gpu-audio.tree")
	cfg.PCIIDs = "../pkg/hwids/testdata/pci.ids"
	a, _ := b.start(cfg)
	in := createInput(vm1, false)
	in.GPUPCIAddress = "0000:01:00.0"
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	users := pciUsers(t, a)
	want := api.DeviceUser{VMID: vm1, VMName: in.Name, Device: "pci0"}
	if len(users) != 2 || users["0000:01:00.0"] != want || users["0000:01:00.1"] != want {
		t.Errorf("users %+v, want only 0000:01:00.0 and 0000:01:00.1 used by %+v", users, want)
	}
}
