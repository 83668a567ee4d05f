package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestV1SpecBootsAndIsRewritten: a VM directory as the version 1 code left
// it (spec.json in format 1, its disk, its event log) is loaded by a
// restarted agent, rewritten as the current version, and boots.
func TestV1SpecBootsAndIsRewritten(t *testing.T) {
	b := setup(t)
	raw, err := os.ReadFile(filepath.Join(moduleRoot(), "pkg/vmspec/testdata/v1/bios.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v1 map[string]any
	if err := json.Unmarshal(raw, &v1); err != nil || v1["version"] != 1.0 {
		t.Fatalf("not a v1 spec: %v %v", err, v1["version"])
	}
	// The file is the v1 code's; only what ties it to this test bed changes.
	in, _ := b.vmInput("v1-spec")
	id := uuid.NewString()
	l := vmspec.DefaultLayout
	v1["id"], v1["name"], v1["accel"] = id, in.Name, "tcg"
	v1["disk"].(map[string]any)["path"] = filepath.Join(l.VMDir(id), "disk0.raw")
	v1["disk"].(map[string]any)["sizeBytes"] = 64 << 20
	v1["nic"] = map[string]any{"mac": "52:54:00:7e:57:01", "bridge": bridgeName}
	v1["display"].(map[string]any)["password"] = vncPassword
	v1["display"].(map[string]any)["port"] = 6543 // above what the other tests' VMs are given
	v1["boot"] = in.Boot
	spec, err := json.MarshalIndent(v1, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	created, err := json.Marshal(api.Event{Seq: 1, VMID: id, Time: time.Now().UTC(), Type: api.EventStatus, Status: api.StatusOff, Reason: api.ReasonCreated})
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, "mkdir", "-m", "0711", l.VMDir(id))
	t.Cleanup(func() { b.deleteVM(id) })
	b.run(t, "qemu-img", "create", "-q", "-f", "raw", filepath.Join(l.VMDir(id), "disk0.raw"), "64M")
	if err := os.WriteFile(b.host.Path(l.SpecFile(id)), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.host.Path(l.EventsFile(id)), append(created, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	b.eventually(t, time.Minute, func() error {
		_, err := b.client.Health(ctx)
		return err
	})
	vm, err := b.client.Get(ctx, id)
	if err != nil {
		t.Fatalf("the agent did not load the v1 VM: %v", err)
	}
	if vm.Status != api.StatusOff || vm.MACAddress != "52:54:00:7e:57:01" || vm.NetworkBridge != bridgeName || vm.DiskFormat != "raw" {
		t.Fatalf("loaded %+v", vm)
	}
	var names []string
	for _, d := range vm.Devices {
		names = append(names, d.Name+":"+string(d.Type))
	}
	if fmt.Sprint(names) != "[disk0:disk net0:nic]" {
		t.Errorf("devices %v", names)
	}
	var onDisk struct {
		Version int               `json:"version"`
		Devices []json.RawMessage `json:"devices"`
		Disk    json.RawMessage   `json:"disk"`
	}
	b2, err := os.ReadFile(b.host.Path(l.SpecFile(id)))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b2, &onDisk); err != nil || onDisk.Version != vmspec.CurrentVersion || len(onDisk.Devices) != 2 || onDisk.Disk != nil {
		t.Fatalf("the spec was not rewritten as version %d (%v):\n%s", vmspec.CurrentVersion, err, b2)
	}

	if _, err := b.client.Power(ctx, id, api.PowerOn, true, guestTimeout); err != nil {
		t.Fatalf("power on: %v", err)
	}
	b.waitConsole(t, id, "TESTGUEST READY", 1)
	b.waitStatus(t, id, api.StatusRunning, "")
}
