package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// A running VM's block devices, from QEMU through the shim and the agent:
// its disk, and the CD-ROM with the ISO it was created with; the CLI shows
// the same.
func TestBlockDevicesOfARunningVM(t *testing.T) {
	b := setup(t)
	in, _ := b.vmInput("block")
	in.ISOPath = b.installISOs(t).plain
	vm := b.createVMFrom(t, in)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := b.client.Block(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.BlockDevice{}
	for _, d := range got.Devices {
		byName[d.Name] = d
	}
	disk, cd := byName["disk0"], byName["cd0"]
	if disk.Format != "qcow2" || disk.ReadOnly || disk.Removable || !disk.MediumInserted ||
		!strings.Contains(disk.File, vm.ID) {
		t.Errorf("disk0: %+v", disk)
	}
	if cd.File != in.ISOPath || cd.Format != "raw" || !cd.ReadOnly || !cd.Removable || !cd.MediumInserted || cd.TrayOpen {
		t.Errorf("cd0: %+v, want %s inserted, tray closed", cd, in.ISOPath)
	}
	if len(got.Devices) != 2 {
		t.Errorf("block devices %+v, want disk0 and cd0", got.Devices)
	}

	var cli api.BlockDevices
	out := b.run(t, "infinivirtctl", "vm", "block", vm.ID, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cli); err != nil || len(cli.Devices) != len(got.Devices) {
		t.Fatalf("vm block -o json: %v\n%s", err, out)
	}
	if table := b.run(t, "infinivirtctl", "vm", "block", vm.ID); !strings.Contains(table, "cd0") || !strings.Contains(table, "inserted") {
		t.Fatalf("vm block table:\n%s", table)
	}
}
