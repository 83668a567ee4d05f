package shim

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// newTestVM writes a spec and a real qcow2 disk under a temp layout.
func newTestVM(t *testing.T) (vmspec.Layout, *vmspec.Spec) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed")
	}
	root := t.TempDir()
	layout := vmspec.Layout{StateDir: filepath.Join(root, "state"), RunDir: filepath.Join(root, "run")}
	spec, err := vmspec.FromCreateInput(api.CreateVMInput{
		Name: "steps", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: "linux",
		CPUCores: 1, RAMGB: 0.125, DiskSizeGB: 0.0625, NetworkBridge: "br0",
		GraphicProtocol: "vnc", GraphicPort: 5999, GraphicPassword: "pw",
	}, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(layout.VMDir(spec.ID), 0o711); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", spec.SystemDisk().Path, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	if err := spec.Save(layout.SpecFile(spec.ID)); err != nil {
		t.Fatal(err)
	}
	return layout, spec
}

func TestStartupStepsAreNamedAndOrdered(t *testing.T) {
	var names []string
	for _, st := range New(Config{}).Steps() {
		names = append(names, st.Name)
	}
	want := []string{"load-spec", "open-event-log", "prepare-runtime-dir", "install-firewall", "prepare-devices", "start-swtpm", "start-qemu", "qmp-handshake", "check-tpm", "arm-boot-once", "arm-balloon", "set-display-password", "serve-control-socket", "await-firewall", "start-cpus"}
	if len(names) != len(want) {
		t.Fatalf("steps %v", names)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("step %d is %s, want %s (all: %v)", i, names[i], want[i], names)
		}
	}
}

// A failing step ends the run with the start-failure code, records why in
// the event log, and undoes what the earlier steps made.
func TestFailedStepIsRecordedAndUndone(t *testing.T) {
	layout, spec := newTestVM(t)
	var ran []string
	s := New(Config{
		VMID: spec.ID, Layout: layout,
		BeforeStep: func(name string) error {
			ran = append(ran, name)
			if name == "prepare-devices" {
				return errors.New("injected failure")
			}
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code := s.Run(ctx); code != shimapi.ExitStartFailed {
		t.Fatalf("exit code %d, want %d", code, shimapi.ExitStartFailed)
	}
	if ran[len(ran)-1] != "prepare-devices" || len(ran) != 5 {
		t.Fatalf("steps run: %v", ran)
	}
	last, ok, err := eventlog.Last(layout.EventsFile(spec.ID), api.Event.IsStatus)
	if err != nil || !ok {
		t.Fatalf("no status recorded: %v", err)
	}
	if last.Status != api.StatusError || last.Reason != api.ReasonStartFailed || last.Message == "" {
		t.Fatalf("recorded %+v", last)
	}
	if _, err := os.Stat(layout.RuntimeDir(spec.ID)); !os.IsNotExist(err) {
		t.Fatalf("runtime dir left behind: %v", err)
	}
	// The log is released: the next writer gets it at once.
	l, err := eventlog.Open(ctx, layout.EventsFile(spec.ID), spec.ID)
	if err != nil {
		t.Fatalf("log still held: %v", err)
	}
	l.Close()
}

func TestCleanupRecordsALostShim(t *testing.T) {
	layout, spec := newTestVM(t)
	ctx := context.Background()
	l, err := eventlog.Open(ctx, layout.EventsFile(spec.ID), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(api.Event{Type: api.EventStatus, Status: api.StatusRunning, Reason: api.ReasonBooted}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := os.MkdirAll(layout.RuntimeDir(spec.ID), 0o700); err != nil {
		t.Fatal(err)
	}

	cfg := CleanupConfig{VMID: spec.ID, Layout: layout, Logger: New(Config{}).log,
		ServiceResult: "signal", ExitCode: "killed", ExitStatus: "KILL"}
	if err := Cleanup(ctx, cfg); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	last, _, _ := eventlog.Last(layout.EventsFile(spec.ID), api.Event.IsStatus)
	if last.Status != api.StatusError || last.Reason != api.ReasonShimLost {
		t.Fatalf("last status %+v, want error/shim-lost", last)
	}
	if _, err := os.Stat(layout.RuntimeDir(spec.ID)); !os.IsNotExist(err) {
		t.Fatal("runtime dir left behind")
	}
	// Idempotent: a second cleanup records nothing more.
	if err := Cleanup(ctx, cfg); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	evs, _ := eventlog.ReadFile(layout.EventsFile(spec.ID), 0)
	if len(evs) != 2 {
		t.Fatalf("%d entries after two cleanups, want 2", len(evs))
	}
}

// Files go to QEMU's user without following links: the TPM's state
// directory is that user's, and a link planted there must not make the
// shim, as root, give away the file it points to.
func TestHandToQEMUNeverFollowsLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	nobody, err := lookupCredential("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	dir := t.TempDir()
	target, link, own := filepath.Join(dir, "host-file"), filepath.Join(dir, "link"), filepath.Join(dir, "state")
	for _, p := range []string{target, own} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	s := New(Config{QEMUUser: "nobody"})
	if err := s.handToQEMU(own, link); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) uint32 {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid
	}
	if owner(own) != nobody.Uid || owner(link) != nobody.Uid {
		t.Errorf("the file or the link itself was not handed over")
	}
	if owner(target) != 0 {
		t.Errorf("the link's target went to QEMU's user")
	}
}

// A disk that is a link is refused before anything reads it: where it
// leads is checked nowhere on the fast path.
func TestCheckDiskRefusesALink(t *testing.T) {
	layout, spec := newTestVM(t)
	s := New(Config{VMID: spec.ID, Layout: layout})
	ctx := context.Background()
	if err := s.loadSpec(ctx); err != nil {
		t.Fatal(err)
	}
	disk, err := device.New(*s.spec.Device("disk0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.Prepare(ctx, s.deviceHost()); err != nil {
		t.Fatalf("a plain qcow2 disk: %v", err)
	}
	elsewhere := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.Rename(spec.SystemDisk().Path, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, spec.SystemDisk().Path); err != nil {
		t.Fatal(err)
	}
	if err := disk.Prepare(ctx, s.deviceHost()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a disk that links outside the VM's directory: %v", err)
	}
}

// The VM id names directories the shim and its cleanup remove: one that is
// not a VM's UUID is refused before anything is touched.
func TestNotAVMIDTouchesNothing(t *testing.T) {
	root := t.TempDir()
	layout := vmspec.Layout{StateDir: filepath.Join(root, "state"), RunDir: filepath.Join(root, "run")}
	keep := filepath.Join(root, "keep")
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := "../.."
	if code := New(Config{VMID: bad, Layout: layout}).Run(context.Background()); code != shimapi.ExitStartFailed {
		t.Errorf("run: exit %d", code)
	}
	if err := Cleanup(context.Background(), CleanupConfig{VMID: bad, Layout: layout, Logger: New(Config{}).log}); err == nil {
		t.Error("cleanup accepted a path as a VM id")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a file outside the VM's directories is gone: %v", err)
	}
}

// start-qemu honours its step's context: once the step is over (startup
// stopped, or its time ran out), no QEMU is started.
func TestStartQEMUAfterItsStepEndedStartsNothing(t *testing.T) {
	layout, spec := newTestVM(t)
	marker := filepath.Join(t.TempDir(), "started")
	fakeQEMU := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(fakeQEMU, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(Config{VMID: spec.ID, Layout: layout, QEMUBinary: fakeQEMU})
	if err := s.loadSpec(t.Context()); err != nil {
		t.Fatal(err)
	}
	queue, err := os.Open(os.DevNull) // a stand-in for the TAP's queue fd
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	if s.devices, err = runDevices(s.spec); err != nil {
		t.Fatal(err)
	}
	device.Of[*device.NIC](s.devices)[0].TAP = &netdev.TAP{Files: []*os.File{queue}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.startQEMU(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("start-qemu after its step ended: %v, want context.Canceled", err)
	}
	if s.qemu != nil {
		t.Fatal("a QEMU process was recorded")
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the QEMU binary ran: %v", err)
	}
}

func TestStepListEdits(t *testing.T) {
	nop := func(context.Context) error { return nil }
	step := func(name string) Step { return Step{Name: name, Timeout: time.Second, Run: nop} }
	base := StepList{step("a"), step("b"), step("c")}
	names := func(l StepList) string { return strings.Join(l.Names(), " ") }
	must := func(l StepList, err error) StepList {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, c := range []struct {
		got  StepList
		want string
	}{
		{base.Append(step("d"), step("e")), "a b c d e"},
		{must(base.InsertAfter("a", step("x"), step("y"))), "a x y b c"},
		{must(base.InsertAfter("c", step("x"))), "a b c x"},
		{must(base.InsertBefore("a", step("x"))), "x a b c"},
		{must(base.Remove("b")), "a c"},
		{must(base.Replace("b", step("x"))), "a x c"},
	} {
		if names(c.got) != c.want {
			t.Errorf("got %q, want %q", names(c.got), c.want)
		}
	}
	if names(base) != "a b c" || base.Index("c") != 2 || base.Index("x") != -1 {
		t.Fatalf("the edits changed the list they started from: %q", names(base))
	}
	if _, err := base.InsertAfter("nope", step("x")); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("insert after a missing step: %v", err)
	}
	if _, err := base.Append(step("a")).Remove("a"); err == nil {
		t.Error("an edit by a name two steps have went through")
	}
}

// The other kinds of start are the cold boot edited where they must
// differ, and nowhere else.
func TestStartVariants(t *testing.T) {
	s := New(Config{})
	cold := s.Steps().Names()
	restore, err := s.RestoreSteps("/snapshots/vm.state")
	if err != nil {
		t.Fatal(err)
	}
	migrate, err := s.MigrationSteps("tcp:[::]:49152")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(names []string, replace map[string]string, before, after map[string]string) []string {
		var out []string
		for _, n := range names {
			if b, ok := before[n]; ok {
				out = append(out, b)
			}
			if r, ok := replace[n]; ok {
				n = r
			}
			out = append(out, n)
			if a, ok := after[n]; ok {
				out = append(out, a)
			}
		}
		return out
	}
	incoming := map[string]string{"start-qemu": "start-qemu-incoming"}
	for _, c := range []struct {
		name string
		got  StepList
		want []string
	}{
		{"restore", restore, edit(cold, incoming, map[string]string{"start-cpus": "load-memory-snapshot"}, nil)},
		{"migration", migrate, edit(cold, incoming, map[string]string{"start-cpus": "await-migration"},
			map[string]string{"set-display-password": "accept-migration"})},
	} {
		if got := c.got.Names(); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, c.want)
		}
		// The CPUs start last, once the whole state is in.
		if c.got[len(c.got)-1].Name != "start-cpus" {
			t.Errorf("%s: the CPUs do not start last", c.name)
		}
		for _, st := range c.got {
			if st.Run == nil || st.Timeout <= 0 {
				t.Errorf("%s: step %s has no Run or no timeout", c.name, st.Name)
			}
		}
		if st := c.got[c.got.Index("start-qemu-incoming")]; st.Undo == nil {
			t.Errorf("%s: QEMU started for the incoming state is never stopped", c.name)
		}
	}
	if got := s.Steps().Names(); strings.Join(got, " ") != strings.Join(cold, " ") {
		t.Errorf("building the variants changed the cold boot: %v", got)
	}
}

// A failing step undoes the completed ones, newest first; its own Undo
// does not run (it cleans up its own half), and a failing Undo does not
// stop the others.
func TestFailedStepUndoesCompletedStepsInReverse(t *testing.T) {
	var log []string
	step := func(name string, fail, undo, undoFails bool) Step {
		st := Step{Name: name, Timeout: time.Second, Run: func(context.Context) error {
			log = append(log, "run "+name)
			if fail {
				return errors.New("injected failure")
			}
			return nil
		}}
		if undo {
			st.Undo = func(ctx context.Context) error {
				if _, ok := ctx.Deadline(); !ok {
					t.Errorf("undo of %s has no deadline", name)
				}
				log = append(log, "undo "+name)
				if undoFails {
					return errors.New("injected undo failure")
				}
				return nil
			}
		}
		return st
	}
	s := New(Config{})
	steps := StepList{
		step("a", false, true, false),
		step("b", false, false, false),
		step("c", false, true, true),
		step("d", false, true, false),
		step("e", true, true, false),
		step("f", false, true, false),
	}
	err := s.runSteps(context.Background(), steps)
	if err == nil || !strings.HasPrefix(err.Error(), "e: ") {
		t.Fatalf("runSteps: %v, want the failure of e", err)
	}
	s.teardown(t.Context())
	want := "run a, run b, run c, run d, run e, undo d, undo c, undo a"
	if got := strings.Join(log, ", "); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	s.teardown(t.Context()) // once only
	if got := strings.Join(log, ", "); got != want {
		t.Fatalf("a second teardown undid again: %s", got)
	}
}
