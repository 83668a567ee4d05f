package device

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A spec's disks fit while the root bus has a slot for each beside the
// hot-plug ports and the other devices; the next one is refused.
func TestCheckRootBus(t *testing.T) {
	s := everyType("/vms/x")
	s.Display.Protocol = "spice"
	if err := CheckRootBus(s); err != nil {
		t.Fatalf("one device of each type: %v", err)
	}
	// 4 hot-plug ports, net0, pci0, SPICE's three and the balloon: 20 disks fit.
	for i := 1; i < 20; i++ {
		name := fmt.Sprintf("disk%d", i)
		s.AddDevice(vmspec.NewDevice(name, vmspec.Disk{Path: filepath.Join("/vms/x", name+".qcow2"), Format: "qcow2", SizeBytes: 1 << 20}))
	}
	if err := CheckRootBus(s); err != nil {
		t.Fatalf("20 disks: %v", err)
	}
	s.AddDevice(vmspec.NewDevice("disk20", vmspec.Disk{Path: "/vms/x/disk20.qcow2", Format: "qcow2", SizeBytes: 1 << 20}))
	err := CheckRootBus(s)
	var e *errdefs.Error
	if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || !strings.Contains(e.Message, "21 disks") {
		t.Fatalf("21 disks: %v", err)
	}
}
