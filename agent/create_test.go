package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/supervisor"
)

// scriptedUnits answers State with a fixed state (nil: NotFound), fails
// the calls named in fail, and records the calls made.
type scriptedUnits struct {
	state *supervisor.UnitState
	fail  map[string]error

	mu    sync.Mutex
	calls []string
}

func (u *scriptedUnits) call(name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = append(u.calls, name)
	return u.fail[name]
}

func (u *scriptedUnits) Start(context.Context, supervisor.UnitSpec) error { return u.call("start") }
func (u *scriptedUnits) Stop(context.Context, string) error               { return u.call("stop") }
func (u *scriptedUnits) Kill(context.Context, string, syscall.Signal) error {
	return u.call("kill")
}
func (u *scriptedUnits) ResetFailed(context.Context, string) error { return u.call("reset-failed") }
func (u *scriptedUnits) State(_ context.Context, id string) (supervisor.UnitState, error) {
	if err := u.call("state"); err != nil {
		return supervisor.UnitState{}, err
	}
	if u.state == nil {
		return supervisor.UnitState{}, errdefs.NotFound("unit of %s not loaded", id)
	}
	return *u.state, nil
}
func (u *scriptedUnits) List(context.Context) ([]supervisor.UnitState, error) { return nil, nil }
func (u *scriptedUnits) Watch(context.Context) <-chan supervisor.UnitEvent    { return nil }

func (u *scriptedUnits) seen() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.calls, " ")
}

func TestRemoveUnit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state *supervisor.UnitState
		fail  map[string]error
		calls string
		ok    bool
	}{
		{name: "gone", calls: "state", ok: true},
		{name: "failed", state: &supervisor.UnitState{ActiveState: "failed"}, calls: "state reset-failed", ok: true},
		{name: "running", state: &supervisor.UnitState{ActiveState: "active"}, calls: "state kill stop reset-failed", ok: true},
		{name: "unloaded while stopping", state: &supervisor.UnitState{ActiveState: "active"},
			fail:  map[string]error{"stop": errdefs.NotFound("gone"), "reset-failed": errdefs.NotFound("gone")},
			calls: "state kill stop reset-failed", ok: true},
		{name: "kill fails", state: &supervisor.UnitState{ActiveState: "active"},
			fail: map[string]error{"kill": errdefs.Unavailable("systemd unreachable")}, calls: "state kill"},
		{name: "state fails", fail: map[string]error{"state": errdefs.Unavailable("systemd unreachable")}, calls: "state"},
		{name: "reset fails", state: &supervisor.UnitState{ActiveState: "failed"},
			fail: map[string]error{"reset-failed": errdefs.Unavailable("systemd unreachable")}, calls: "state reset-failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			units := &scriptedUnits{state: tc.state, fail: tc.fail}
			a := New(Config{Units: units})
			err := a.removeUnit(t.Context(), "0f8fad5b-d9cb-469f-a165-70867728950e")
			if (err == nil) != tc.ok {
				t.Errorf("error %v, want ok=%v", err, tc.ok)
			}
			if got := units.seen(); got != tc.calls {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
		})
	}
}

// A delete whose unit cannot be forgotten says so and leaves the VM as it
// was: its files stay, and it is still listed.
func TestDeleteKeepsTheVMWhenItsUnitCannotBeRemoved(t *testing.T) {
	root := t.TempDir()
	layout := vmspec.Layout{StateDir: filepath.Join(root, "state"), RunDir: filepath.Join(root, "run")}
	units := &scriptedUnits{
		state: &supervisor.UnitState{ActiveState: "failed"},
		fail:  map[string]error{"reset-failed": errdefs.Unavailable("systemd unreachable")},
	}
	a := New(Config{Layout: layout, Units: units})
	spec := &vmspec.Spec{ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Name: "keep"}
	rec := newRecord(spec)
	if err := a.reserve(rec); err != nil {
		t.Fatal(err)
	}
	rec.setCommitted(true)
	if err := os.MkdirAll(layout.VMDir(spec.ID), 0o711); err != nil {
		t.Fatal(err)
	}
	err := a.Delete(t.Context(), spec.ID, false)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable}) {
		t.Fatalf("delete: %v, want Unavailable", err)
	}
	if _, err := os.Stat(layout.VMDir(spec.ID)); err != nil {
		t.Errorf("VM directory after the refused delete: %v", err)
	}
	if _, err := a.Get(spec.ID); err != nil {
		t.Errorf("VM after the refused delete: %v", err)
	}
}

// TestCreateHandsOnEveryEntry subscribes to every VM's events before a
// create: the stream and the database get the create's entries from seq 1,
// each once and in order, the ones recorded before it committed included.
func TestCreateHandsOnEveryEntry(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	sub := a.broker.subscribe("")
	defer a.broker.unsubscribe(sub)
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, a, vm1, "running", status(api.StatusRunning, api.ReasonBooted))
	var got []uint64
	timeout := time.After(waitLimit)
	for len(got) < int(v.Seq) {
		select {
		case e := <-sub.ch:
			got = append(got, e.Seq)
		case <-timeout:
			t.Fatalf("the all-VM stream got only %v of 1..%d", got, v.Seq)
		}
	}
	if !slices.Equal(got, seqs(1, v.Seq)) {
		t.Errorf("the all-VM stream got %v, want 1..%d", got, v.Seq)
	}
	waitStored(t, b.store, vm1, func(evs []api.Event) bool { return uint64(len(evs)) == v.Seq })
	if stored := b.store.Seqs(vm1); !slices.Equal(stored, seqs(1, v.Seq)) {
		t.Errorf("the database holds %v, want 1..%d", stored, v.Seq)
	}
}

// An agent that ends inside a create, at any point from the VM's first
// file to its commit, leaves what the next start rolls back: the unit if
// it got one, the directory. The retry of the same create then works. A
// directory without a spec from before the marker existed goes too, unless
// its unit runs; anything that is not a VM's directory is never touched.
func TestCreateCutShortIsRolledBackAtStart(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	// Cut after the unit started: a whole create whose marker is put back.
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := os.WriteFile(b.layout.CreatingMarker(vm1), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Cut after the first disk: a marker, an image, no spec.
	if err := os.MkdirAll(b.layout.VMDir(vm2), 0o711); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{b.layout.CreatingMarker(vm2), filepath.Join(b.layout.VMDir(vm2), "disk0.qcow2")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An older agent's leftover: an image, no spec, no marker, no unit.
	if err := os.MkdirAll(b.layout.VMDir(vm3), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.layout.VMDir(vm3), "disk0.qcow2"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(b.layout.VMsDir(), "not-a-vm")
	if err := os.MkdirAll(foreign, 0o700); err != nil {
		t.Fatal(err)
	}

	a, _ = b.start(b.config())
	for _, id := range []string{vm1, vm2, vm3} {
		requireNothingLeft(t, a, b, id)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("a directory that is no VM's went: %v", err)
	}
	for _, id := range []string{vm1, vm2, vm3} {
		vm, err := a.Create(t.Context(), createInput(id, id == vm1))
		if err != nil {
			t.Fatalf("the retried create of %s: %v", id[:4], err)
		}
		if _, err := os.Stat(b.layout.CreatingMarker(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a committed create keeps its marker: %v", err)
		}
		if id == vm1 && vm.Status != api.StatusRunning {
			t.Errorf("the retried create of vm1 is %s", vm.Status)
		}
	}
}

// A VM directory without a spec whose unit runs is a live VM, not a
// leftover: it stays.
func TestSpeclessDirectoryOfARunningUnitStays(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := os.Remove(b.layout.SpecFile(vm1)); err != nil {
		t.Fatal(err)
	}
	b.start(b.config())
	if _, err := os.Stat(b.layout.EventsFile(vm1)); err != nil {
		t.Errorf("the running VM's files went: %v", err)
	}
	if !b.host.Loaded(vm1) {
		t.Error("the running VM's unit went")
	}
}

// A create on a full state directory answers ResourceExhausted saying what
// is full, leaves nothing, and works once space is freed.
func TestCreateOnAFullStateDirectory(t *testing.T) {
	b := newBed(t)
	if err := os.MkdirAll(b.layout.StateDir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", b.layout.StateDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs as the state directory (%v): needs root", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(b.layout.StateDir, syscall.MNT_DETACH) })
	a, _ := b.start(b.config())
	filler := filepath.Join(b.layout.StateDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for err == nil {
		_, err = f.Write(block)
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the state directory: %v", err)
	}
	in := createInput(vm1, false)
	in.DiskFormat = "qcow2"
	_, err = a.Create(t.Context(), in)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeResourceExhausted}) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("a create on a full state directory: %v, want ResourceExhausted saying it is full", err)
	}
	requireNothingLeft(t, a, b, vm1)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatalf("the create once space is freed: %v", err)
	}
}
