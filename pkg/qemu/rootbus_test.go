package qemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// notOnRootBus are the drivers Args adds without a bus that are not PCI
// devices, so take no slot of the root bus.
var notOnRootBus = map[string]bool{"isa-serial": true, "pvpanic": true, "tpm-crb": true}

// rootBusDevicesOf counts the devices an argv puts on the PCIe root bus.
func rootBusDevicesOf(t *testing.T, args []string) int {
	t.Helper()
	n := 0
	for i, a := range args {
		if a != "-device" {
			continue
		}
		var d struct{ Driver, Bus string }
		if err := json.Unmarshal([]byte(args[i+1]), &d); err != nil {
			t.Fatalf("-device %s: %v", args[i+1], err)
		}
		if d.Bus == "pcie.0" || (d.Bus == "" && !notOnRootBus[d.Driver]) {
			n++
		}
	}
	return n
}

// RootBusDevices counts what Args puts on the root bus, for every golden
// configuration: a device Args adds there that the count misses fails here.
func TestRootBusDevicesCountsTheArgv(t *testing.T) {
	cases := append(goldenCases(), goldenCase{name: "full root bus", cfg: fullRootBus})
	for _, gc := range cases {
		cfg := gc.cfg(goldenFiles)
		args, err := cfg.Args()
		if err != nil {
			t.Fatalf("%s: %v", gc.name, err)
		}
		if got, want := cfg.RootBusDevices(), rootBusDevicesOf(t, args); got != want {
			t.Errorf("%s: RootBusDevices is %d, the argv puts %d devices on the root bus", gc.name, got, want)
		}
	}
}

// fullRootBus is a VM whose devices take every slot of the root bus: the
// hot-plug ports, VNC, one NIC and as many disks as fit.
func fullRootBus(f files) qemu.Config {
	c := base()
	c.HotplugPorts = 4
	c.Display = qemu.Display{Protocol: qemu.DisplayVNC, Listen: "127.0.0.1", Port: 5901}
	c.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:12:34:56", FDs: []int{tapFD0}}}
	c.Disks = []qemu.Disk{{ID: "disk0", Path: f.QCOW2, Format: qemu.FormatQCOW2, BootIndex: 1}}
	for i := 1; c.RootBusDevices() < qemu.RootBusSlots; i++ {
		// One image read-only under all of them: QEMU shares its lock.
		c.Disks = append(c.Disks, qemu.Disk{ID: fmt.Sprintf("disk%d", i), Path: f.Raw, Format: qemu.FormatRaw, ReadOnly: true})
	}
	return c
}

// A full root bus validates; one disk more is refused, naming what takes
// the slots.
func TestCheckRootBus(t *testing.T) {
	c := fullRootBus(goldenFiles)
	if err := c.Validate(); err != nil {
		t.Fatalf("a full root bus: %v", err)
	}
	if len(c.Disks) != 23 {
		t.Errorf("%d disks fill the root bus beside 4 hot-plug ports, VNC and a NIC, want 23", len(c.Disks))
	}
	c.Disks = append(c.Disks, qemu.Disk{ID: "one_more", Path: goldenFiles.Raw, Format: qemu.FormatRaw, ReadOnly: true})
	err := c.Validate()
	var e *errdefs.Error
	if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || !strings.Contains(e.Message, "need 31 slots") ||
		!strings.Contains(e.Message, "24 disks") || !strings.Contains(e.Message, "4 reserved hot-plug ports") {
		t.Fatalf("one disk too many: %v", err)
	}
}

// QEMU itself takes the full root bus CheckRootBus accepts, so the limit
// is QEMU's and not lower.
func TestQEMUTakesAFullRootBus(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if os.Geteuid() != 0 {
		t.Skip("QEMU runs in its own network namespace, which needs root")
	}
	cfg := fullRootBus(realFiles(t))
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	network := guest.NewNetwork(t, "qtap0", 1, "10.99.0.1/24")
	replies := startAndQuery(t, ctx, &cfg, network, "")
	var st struct{ Status string }
	if err := json.Unmarshal(replies["query-status"], &st); err != nil || st.Status != "prelaunch" {
		t.Errorf("query-status = %s, want prelaunch", replies["query-status"])
	}
}
