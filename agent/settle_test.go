package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/unattended"
)

// installCreate is a create of a Fedora VM with an unattended install,
// booting from disk once it is done.
func installCreate(t *testing.T, b *bed, id string) api.CreateVMInput {
	t.Helper()
	iso := filepath.Join(b.dir, "fedora.iso")
	if err := os.WriteFile(iso, []byte("an installer"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := createInput(id, true)
	in.OS, in.ISOPath = unattended.OSFedora, iso
	in.Install = &api.InstallRequest{Config: &api.InstallConfig{Username: "alice", Password: "Secr3t-pass", Locale: "en_US", Timezone: "UTC", Hostname: "desk"}}
	return in
}

func installState(st api.InstallState) func(api.VM) bool {
	return func(v api.VM) bool { return v.Install != nil && v.Install.State == st }
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func lastStartReason(b *bed) api.Reason {
	starts := b.host.Starts()
	for _, kv := range starts[len(starts)-1].Environment {
		if r, ok := strings.CutPrefix(kv, "INFINIVIRT_START_REASON="); ok {
			return api.Reason(r)
		}
	}
	return ""
}

// An install the shim records as done is settled: media detached in the
// spec, temporary media deleted, and the installed system booted from disk.
func TestInstallDoneDetachesMediaAndBootsFromDisk(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	vm, err := a.Create(t.Context(), installCreate(t, b, vm1))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Status != api.StatusBuilding || vm.Install.State != api.InstallRunning {
		t.Fatalf("installing VM is %s, install %s", vm.Status, vm.Install.State)
	}
	if !exists(t, b.layout.InstallDir(vm1)) {
		t.Fatal("no install media were prepared")
	}
	if err := b.host.Shim(vm1).End(api.StatusOff, api.ReasonInstalled, ""); err != nil {
		t.Fatal(err)
	}

	v := waitVM(t, a, vm1, "booted after its install", func(v api.VM) bool {
		return installState(api.InstallDone)(v) && v.Status == api.StatusRunning
	})
	if v.ISOPath != "" {
		t.Errorf("the OS ISO is still attached: %s", v.ISOPath)
	}
	if exists(t, b.layout.InstallDir(vm1)) {
		t.Error("temporary install media left")
	}
	if r := lastStartReason(b); r != api.ReasonInstalled {
		t.Errorf("the installed system started for %q, want %q", r, api.ReasonInstalled)
	}
	if n := len(b.host.Starts()); n != 2 {
		t.Errorf("%d starts, want the installer's and the installed system's", n)
	}
}

// A failed install keeps its media for inspection and boots nothing.
func TestInstallFailedKeepsMedia(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	in := installCreate(t, b, vm1)
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	if err := b.host.Shim(vm1).End(api.StatusError, api.ReasonInstallTimeout, "the fedora install did not finish within 1h0m0s"); err != nil {
		t.Fatal(err)
	}

	v := waitVM(t, a, vm1, "failed install", installState(api.InstallFailed))
	if v.ISOPath != in.ISOPath {
		t.Errorf("the OS ISO was detached from a failed install: %q", v.ISOPath)
	}
	if !exists(t, b.layout.InstallDir(vm1)) {
		t.Error("a failed install's media were deleted")
	}
	if v.Status != api.StatusError || v.Reason != api.ReasonInstallTimeout {
		t.Errorf("VM is %s (%s)", v.Status, v.Reason)
	}
	if n := len(b.host.Starts()); n != 1 {
		t.Errorf("%d starts after a failed install, want only the installer's", n)
	}
}

// An install that ended while no agent ran is settled by the next one.
func TestInstallSettledAfterRestart(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	if _, err := a.Create(t.Context(), installCreate(t, b, vm1)); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := b.host.Shim(vm1).End(api.StatusOff, api.ReasonInstalled, ""); err != nil {
		t.Fatal(err)
	}
	if !agenttest.WaitFor(waitLimit, func() bool { return !b.host.Loaded(vm1) }) {
		t.Fatal("the installer's unit never ended")
	}

	a, _ = b.start(b.config())
	v := waitVM(t, a, vm1, "booted after its install", func(v api.VM) bool {
		return installState(api.InstallDone)(v) && v.Status == api.StatusRunning
	})
	if v.ISOPath != "" || exists(t, b.layout.InstallDir(vm1)) {
		t.Errorf("media not detached: iso %q", v.ISOPath)
	}
}
