package supervisor

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestStartWaitsForReady: Start returns once the notifier sent READY=1
// (the unit is already active, not activating) and State shows STATUS=.
func TestStartWaitsForReady(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec("-ready-delay", "500ms", "-status", "booted the guest")
	mustStart(t, ctx, s, spec)
	st, err := s.State(ctx, spec.VMID)
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveState != "active" || st.SubState != "running" {
		t.Errorf("after Start: %s/%s, want active/running", st.ActiveState, st.SubState)
	}
	if st.StatusText != "booted the guest" {
		t.Errorf("StatusText = %q", st.StatusText)
	}
	if st.MainPID == 0 || st.InvocationID == "" || st.VMID != spec.VMID || st.LoadState != "loaded" {
		t.Errorf("state = %+v", st)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(u UnitState) bool { return u.VMID == spec.VMID && u.StatusText == "booted the guest" }) {
		t.Errorf("List lacks the unit: %+v", list)
	}

	if err := s.Stop(ctx, spec.VMID); err != nil {
		t.Fatal(err)
	}
	st, err = s.State(ctx, spec.VMID)
	if err == nil && st.ActiveState != "inactive" {
		t.Errorf("after Stop: %s/%s result=%s", st.ActiveState, st.SubState, st.Result)
	} else if err != nil && !isCode(err, errdefs.CodeNotFound) {
		t.Errorf("State after Stop: %v", err)
	}
	journal, err := bed.Journal(ctx, UnitNameMust(spec.VMID))
	if err != nil || !strings.Contains(journal, "notifier: SIGTERM") {
		t.Errorf("journal lacks the shim's output (%v):\n%s", err, journal)
	}
}

// UnitNameMust is UnitName for ids known to be valid.
func UnitNameMust(vmID string) string {
	u, err := UnitName(vmID)
	if err != nil {
		panic(err)
	}
	return u
}

// TestCleanExitCodes: an exit code listed in SuccessExitStatus leaves the
// unit inactive, not failed; an unlisted one fails it with its status.
func TestCleanExitCodes(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	events := s.Watch(ctx)
	waitEvent(t, events, "first reconcile marker", isMarker)

	clean := notifierSpec("-exit-after", "200ms", "-exit-code", "64")
	dirty := notifierSpec("-exit-after", "200ms", "-exit-code", "3")
	for _, spec := range []UnitSpec{clean, dirty} {
		mustStart(t, ctx, s, spec)
	}
	ends := waitEnds(t, events, clean.VMID, dirty.VMID)
	if end := ends[clean.VMID]; end.ActiveState != "inactive" || end.Result != "success" {
		t.Errorf("exit 64 with SuccessExitStatus: unit %s result %s, want inactive/success", end.ActiveState, end.Result)
	}
	end := ends[dirty.VMID]
	if end.ActiveState != "failed" || end.Result != "exit-code" {
		t.Errorf("exit 3: unit %s result %s, want failed/exit-code", end.ActiveState, end.Result)
	}
	st, err := s.State(ctx, dirty.VMID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Result != "exit-code" || st.ExecMainCode != CLDExited || st.ExecMainStatus != 3 {
		t.Errorf("failed unit: %+v", st)
	}
	if end.ExecMainStatus == nil || *end.ExecMainStatus != 3 || end.ExecMainCode == nil || *end.ExecMainCode != CLDExited {
		t.Errorf("Watch carried ExecMainCode=%v ExecMainStatus=%v, want 1 and 3", deref(end.ExecMainCode), deref(end.ExecMainStatus))
	}
}

// TestKillFailsUnitAndRunsStopPost: SIGKILL of the shim shows up in Watch
// as failed/signal/9 from the Service interface, ExecStopPost runs, and the
// caller can reset the unit and start the same VM again.
func TestKillFailsUnitAndRunsStopPost(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	events := s.Watch(ctx)
	waitEvent(t, events, "first reconcile marker", isMarker)
	spec := notifierSpec()
	spec.ExecStopPost = []string{stopPostPath}
	mustStart(t, ctx, s, spec)
	if err := s.Kill(ctx, spec.VMID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, events, spec.VMID)
	result, code, status := end.Result, end.ExecMainCode, end.ExecMainStatus
	if end.ActiveState != "failed" || result != "signal" || status == nil || *status != 9 || code == nil || *code != CLDKilled {
		t.Errorf("watched: Result=%q ExecMainCode=%v ExecMainStatus=%v; want signal, 2, 9", result, deref(code), deref(status))
	}
	data, err := os.ReadFile(bed.Path("/run/stoppost-" + spec.VMID))
	if err != nil || strings.TrimSpace(string(data)) != "signal killed KILL" {
		t.Errorf("ExecStopPost saw %q (%v), want \"signal killed KILL\"", data, err)
	}
	st, err := s.State(ctx, spec.VMID)
	if err != nil || st.ActiveState != "failed" || st.Result != "signal" {
		t.Errorf("State after kill: %+v, %v", st, err)
	}
	if err := s.ResetFailed(ctx, spec.VMID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State(ctx, spec.VMID); !isCode(err, errdefs.CodeNotFound) {
		t.Errorf("State after ResetFailed: %v, want NotFound", err)
	}
	waitEvent(t, events, "unit removed", func(ev UnitEvent) bool { return ev.VMID == spec.VMID && ev.Removed })
	if err := s.Start(ctx, spec); err != nil {
		t.Errorf("start again after reset: %v", err)
	}
}

// TestKillDuringCleanupIsNotFound: once the shim has ended and its cleanup
// still runs, there is no main process to signal; Kill says NotFound (what
// it aims at is gone) rather than failing, and Stop waits for the cleanup.
func TestKillDuringCleanupIsNotFound(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec()
	spec.ExecStopPost = []string{holdPostPath}
	mustStart(t, ctx, s, spec)
	if err := s.Kill(ctx, spec.VMID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := s.State(ctx, spec.VMID)
		if err != nil {
			t.Fatal(err)
		}
		if st.SubState == "stop-post" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unit never reached stop-post: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Kill(ctx, spec.VMID, syscall.SIGKILL); !isCode(err, errdefs.CodeNotFound) {
		t.Fatalf("Kill during cleanup = %v, want NotFound", err)
	}
	if err := os.WriteFile(bed.Path("/run/release-"+spec.VMID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx, spec.VMID); err != nil && !isCode(err, errdefs.CodeNotFound) {
		t.Fatalf("Stop after cleanup: %v", err)
	}
	if st, err := s.State(ctx, spec.VMID); err == nil && (st.ActiveState == "active" || st.ActiveState == "deactivating") {
		t.Errorf("unit still %s after Stop", st.ActiveState)
	}
}

// waitEnd follows vmID's events from the moment its unit is active until it
// is inactive or failed, and returns the merged last state: a unit's signals
// come per interface, so Result and ExecMainStatus may arrive in another
// event than ActiveState.
func waitEnd(t testing.TB, events <-chan UnitEvent, vmID string) UnitEvent {
	t.Helper()
	return waitEnds(t, events, vmID)[vmID]
}

// waitEnds is waitEnd for several units at once.
func waitEnds(t testing.TB, events <-chan UnitEvent, vmIDs ...string) map[string]UnitEvent {
	t.Helper()
	merged := map[string]UnitEvent{}
	wasActive := map[string]bool{}
	ended := map[string]bool{}
	waitEvent(t, events, "end of units "+strings.Join(vmIDs, " "), func(ev UnitEvent) bool {
		if !slices.Contains(vmIDs, ev.VMID) || ended[ev.VMID] {
			return false
		}
		merged[ev.VMID] = mergeEvent(merged[ev.VMID], ev)
		if ev.ActiveState == "active" {
			wasActive[ev.VMID] = true
		}
		if wasActive[ev.VMID] && (ev.ActiveState == "inactive" || ev.ActiveState == "failed") {
			ended[ev.VMID] = true
		}
		return len(ended) == len(vmIDs)
	})
	return merged
}

func mergeEvent(into, ev UnitEvent) UnitEvent {
	into.VMID, into.Unit = ev.VMID, ev.Unit
	if ev.ActiveState != "" {
		into.ActiveState, into.SubState = ev.ActiveState, ev.SubState
	}
	if ev.Result != "" {
		into.Result = ev.Result
	}
	if ev.ExecMainStatus != nil {
		into.ExecMainCode, into.ExecMainStatus = ev.ExecMainCode, ev.ExecMainStatus
	}
	return into
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestStartErrors: a second Start of an active VM is AlreadyExists; a shim
// that dies before READY is a typed *StartError; a failed unit left behind
// is reset by the next Start.
func TestStartErrors(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec()
	mustStart(t, ctx, s, spec)
	if err := s.Start(ctx, spec); !isCode(err, errdefs.CodeAlreadyExists) {
		t.Errorf("second Start: %v, want AlreadyExists", err)
	}

	bad := notifierSpec("-fail-before-ready", "1")
	cleanupUnit(t, ctx, s, bad.VMID)
	err := s.Start(ctx, bad)
	var se *StartError
	if !errors.As(err, &se) || !isCode(err, errdefs.CodeFailedPrecondition) {
		t.Fatalf("Start of a failing shim: %v, want a FailedPrecondition *StartError", err)
	}
	if se.JobResult != "failed" || se.State.Result != "exit-code" || se.State.ExecMainStatus != 1 {
		t.Errorf("StartError = %+v", se)
	}
	good := bad
	good.ExecStart = []string{notifierPath}
	if err := s.Start(ctx, good); err != nil {
		t.Errorf("Start over a failed unit: %v", err)
	}

	if err := s.Start(ctx, UnitSpec{VMID: "not-a-uuid", ExecStart: []string{"/bin/true"}}); !isCode(err, errdefs.CodeInvalidArgument) {
		t.Errorf("bad id: %v", err)
	}
	if err := s.Stop(ctx, uuid.NewString()); !isCode(err, errdefs.CodeNotFound) {
		t.Errorf("Stop of an unknown VM: %v, want NotFound", err)
	}
}

// TestPropertiesReadBack reads the unit's settings back from systemd.
func TestPropertiesReadBack(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec()
	// char-vfio: this host may have no vfio driver at all, which systemd
	// must take too.
	spec.DeviceAllow = []string{"/dev/kvm", "/dev/net/tun", "char-vfio"}
	spec.MemoryMax = 256 << 20
	spec.LimitMEMLOCK = 1<<30 + 256<<20
	spec.StopTimeout = 7 * time.Second
	spec.Environment = []string{"EXTRA=1"}
	mustStart(t, ctx, s, spec)
	unit := UnitNameMust(spec.VMID)
	var svc, u map[string]any
	err := s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		var err error
		if svc, err = c.GetUnitTypePropertiesContext(ctx, unit, "Service"); err != nil {
			return err
		}
		u, err = c.GetUnitPropertiesContext(ctx, unit)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed", "DevicePolicy": "closed",
		"TimeoutStopUSec": uint64(7_000_000), "MemoryMax": uint64(256 << 20), "TasksMax": uint64(DefaultTasksMax),
		"Restart": "no", "StandardOutput": "journal", "StandardError": "journal", "SyslogIdentifier": "infinivirt-shim",
		"Slice": "infinivirt.slice", "LimitMEMLOCK": uint64(1<<30 + 256<<20), "LimitMEMLOCKSoft": uint64(1<<30 + 256<<20),
	}
	for k, v := range want {
		if got := svc[k]; got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	devs, _ := svc["DeviceAllow"].([][]any)
	var gotDevs []string
	for _, d := range devs {
		if len(d) == 2 {
			gotDevs = append(gotDevs, d[0].(string)+" "+d[1].(string))
		}
	}
	slices.Sort(gotDevs) // systemd keeps them in its own order
	if !slices.Equal(gotDevs, []string{"/dev/kvm rw", "/dev/net/tun rw", "char-vfio rw"}) {
		t.Errorf("DeviceAllow = %#v", svc["DeviceAllow"])
	}
	env, _ := svc["Environment"].([]string)
	if !slices.Equal(env, []string{"VM_ID=" + spec.VMID, "EXTRA=1"}) {
		t.Errorf("Environment = %v", env)
	}
	if ses, _ := svc["SuccessExitStatus"].([]any); len(ses) != 2 || !slices.Equal(ses[0].([]int32), []int32{64, 65}) {
		t.Errorf("SuccessExitStatus = %#v", svc["SuccessExitStatus"])
	}
	if u["Transient"] != true || u["CollectMode"] != "inactive" {
		t.Errorf("Transient = %v, CollectMode = %v", u["Transient"], u["CollectMode"])
	}
	if eps, _ := svc["ExecStart"].([][]any); len(eps) != 1 || eps[0][0] != notifierPath {
		t.Errorf("ExecStart = %#v", svc["ExecStart"])
	}
}

// TestWatchReconnects: when the watcher's connection drops, it reconnects,
// lists again (a second marker) and keeps delivering signals.
func TestWatchReconnects(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	running := notifierSpec()
	mustStart(t, ctx, s, running)
	events := s.Watch(ctx)
	listed := false
	waitEvent(t, events, "first marker", func(ev UnitEvent) bool {
		listed = listed || (ev.VMID == running.VMID && ev.ActiveState == "active" && ev.ExecMainStatus != nil)
		return ev.Reconciled
	})
	if !listed {
		t.Error("the reconcile did not list the running unit")
	}
	s.dropWatchConnections()
	listed = false
	waitEvent(t, events, "marker after reconnect", func(ev UnitEvent) bool {
		listed = listed || ev.VMID == running.VMID
		return ev.Reconciled
	})
	if !listed {
		t.Error("the reconcile after reconnect did not list the running unit")
	}
	startAndSeeStatus(t, ctx, s, events, "after reconnect")
}

// TestWatchEndsWithClose: closing the supervisor closes the channel.
func TestWatchEndsWithClose(t *testing.T) {
	s := newSupervisor(t)
	events := s.Watch(context.Background())
	waitEvent(t, events, "marker", isMarker)
	done := make(chan struct{})
	go func() {
		for range events {
		}
		close(done)
	}()
	_ = s.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch channel still open after Close")
	}
}

// TestSurvivesBusRestart: when the system bus itself dies (dbus-daemon
// SIGKILLed, socket-activated again), the watcher reconnects and lists
// again, and the next method call redials.
func TestSurvivesBusRestart(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	events := s.Watch(ctx)
	waitEvent(t, events, "first marker", isMarker)
	if _, err := bed.Run(ctx, "systemctl", "kill", "-s", "KILL", "dbus.service"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "marker after the bus restarted", isMarker)
	startAndSeeStatus(t, ctx, s, events, "after bus restart")
}

// TestStartSameVMAgain: the same VM starts again right after a Stop and
// right after its shim left on its own (the unit may not be collected yet).
func TestStartSameVMAgain(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec()
	cleanupUnit(t, ctx, s, spec.VMID)
	for round := range 3 {
		if err := s.Start(ctx, spec); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.Stop(ctx, spec.VMID); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// A watch that starts now sees only the rounds below.
	events := s.Watch(ctx)
	waitEvent(t, events, "first marker", isMarker)
	spec.ExecStart = []string{notifierPath, "-exit-after", "50ms", "-exit-code", "64"}
	for round := range 3 {
		if err := s.Start(ctx, spec); err != nil {
			t.Fatalf("round %d after exit: %v", round, err)
		}
		if end := waitEnd(t, events, spec.VMID); end.ActiveState != "inactive" {
			t.Fatalf("round %d: ended %+v", round, end)
		}
	}
}

// TestUnitExistsMapsToAlreadyExists sends a raw StartTransientUnit for a
// name systemd already has, to check the D-Bus error name that
// systemd 252 answers with and its mapping.
func TestUnitExistsMapsToAlreadyExists(t *testing.T) {
	s := newSupervisor(t)
	ctx := testCtx(t)
	spec := notifierSpec()
	mustStart(t, ctx, s, spec)
	props, err := spec.properties()
	if err != nil {
		t.Fatal(err)
	}
	unit := UnitNameMust(spec.VMID)
	err = s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		_, err := c.StartTransientUnitContext(ctx, unit, "fail", props, make(chan string, 1))
		return err
	})
	if dbusErrorName(err) != errUnitExists {
		t.Fatalf("duplicate StartTransientUnit: %v (D-Bus error %q)", err, dbusErrorName(err))
	}
	if mapped := mapError(unit, "start", err); !isCode(mapped, errdefs.CodeAlreadyExists) {
		t.Errorf("mapped to %v", mapped)
	}
	if err := s.Kill(ctx, uuid.NewString(), syscall.SIGTERM); !isCode(err, errdefs.CodeNotFound) {
		t.Errorf("Kill of an unknown VM: %v, want NotFound", err)
	}
}
