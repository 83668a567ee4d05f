package qemu_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// TestQEMUPassesAHostDeviceThrough starts the real QEMU with a device of
// this host that is ready for passthrough (on vfio-pci, its IOMMU group
// free), with its slot's companions: vfio-pci opens the group and the
// device when QEMU sets the machine up, so a machine that comes up
// stopped (-S) has it.
func TestQEMUPassesAHostDeviceThrough(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if os.Geteuid() != 0 {
		t.Skip("QEMU opens /dev/vfio as root here, in a network namespace of its own")
	}
	inv, err := hostpci.List(sysfs.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !inv.IOMMU {
		t.Skip("this machine has no IOMMU (no groups under /sys/kernel/iommu_groups): nothing can be passed through with vfio-pci")
	}
	var dev *qemu.HostPCI
	for _, d := range inv.Devices {
		if !d.VFIO() {
			continue
		}
		want := []hostpci.Want{{Field: "host", Address: d.Address}}
		p := qemu.HostPCI{ID: "pci0", Host: d.Address}
		for _, c := range inv.Companions(d.Address) {
			want = append(want, hostpci.Want{Field: "host", Address: c.Address})
			p.Functions = append(p.Functions, c.Address)
		}
		if inv.CheckPassthrough(want, nil) == nil {
			dev = &p
			break
		}
	}
	if dev == nil {
		t.Skip("no device of this host is bound to vfio-pci with the rest of its IOMMU group free")
	}
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	cfg := base()
	cfg.PCIs = []qemu.HostPCI{*dev}
	replies := startAndQuery(t, ctx, &cfg, guest.NewNetwork(t, "qtap0", 0, "10.99.0.1/24"), "")
	var st struct{ Status string }
	if err := json.Unmarshal(replies["query-status"], &st); err != nil || st.Status != "prelaunch" {
		t.Errorf("query-status = %s, want prelaunch", replies["query-status"])
	}
}
