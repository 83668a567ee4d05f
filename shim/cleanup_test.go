package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// addPersistentTAP leaves a TAP behind as a shim killed with its QEMU
// might: persistent, so it outlives every fd.
func addPersistentTAP(name string) error {
	return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI})
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Cleanup removes the TAP of every NIC the spec names, passes over one
// that is already gone, and, when the spec cannot be read, still removes
// the primary NIC's.
func TestCleanupRemovesEveryNICsTAP(t *testing.T) {
	n := guest.NewNetwork(t, "", 0, "") // skips without root
	root := t.TempDir()
	layout := vmspec.Layout{StateDir: filepath.Join(root, "state"), RunDir: filepath.Join(root, "run")}
	spec, err := vmspec.FromCreateInput(api.CreateVMInput{
		Name: "nics", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: "linux",
		CPUCores: 1, RAMGB: 0.125, DiskSizeGB: 0.0625, NetworkBridge: "br0",
		GraphicProtocol: "vnc", GraphicPort: 5999, GraphicPassword: "pw",
		Devices: []api.Device{
			{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}},
			{Name: "lan", Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br2"}},
		},
	}, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(layout.VMDir(spec.ID), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := spec.Save(layout.SpecFile(spec.ID)); err != nil {
		t.Fatal(err)
	}
	net0, net1, lan := netdev.TapName(spec.ID, "net0"), netdev.TapName(spec.ID, "net1"), netdev.TapName(spec.ID, "lan")
	cfg := CleanupConfig{VMID: spec.ID, Layout: layout, Logger: New(Config{}).log}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	err = n.Do(func() error {
		// lan's TAP is gone already, as after a clean stop.
		for _, tap := range []string{net0, net1} {
			if err := addPersistentTAP(tap); err != nil {
				return fmt.Errorf("add %s: %w", tap, err)
			}
		}
		if err := Cleanup(ctx, cfg); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		for _, tap := range []string{net0, net1, lan} {
			if linkExists(tap) {
				return fmt.Errorf("TAP %s is left after cleanup", tap)
			}
		}

		// A spec that cannot be read: the primary NIC's TAP still goes.
		if err := os.WriteFile(layout.SpecFile(spec.ID), []byte("{"), 0o600); err != nil {
			return err
		}
		if err := addPersistentTAP(net0); err != nil {
			return fmt.Errorf("add %s: %w", net0, err)
		}
		if err := Cleanup(ctx, cfg); err != nil {
			return fmt.Errorf("cleanup with an unreadable spec: %w", err)
		}
		if linkExists(net0) {
			return fmt.Errorf("the primary TAP %s is left when the spec cannot be read", net0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
