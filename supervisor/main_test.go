package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/testbed"
)

// Every test shares one test-bed host: a real systemd 252 as PID 1 of
// private namespaces. The notifier test program stands in for the shim.
var (
	bed        *testbed.Host
	skipReason string
)

const (
	notifierPath = "/usr/local/bin/infinivirt-test-notifier"
	stopPostPath = "/usr/local/bin/infinivirt-test-stoppost"
	holdPostPath = "/usr/local/bin/infinivirt-test-holdpost"
)

// holdPostScript is a cleanup that runs until the test releases it (or a
// minute passes), so the unit stays deactivating with no main process.
const holdPostScript = `#!/bin/sh
for i in $(seq 600); do [ -e "/run/release-$VM_ID" ] && exit 0; sleep 0.1; done
`

// stopPostScript records how the main process ended, as systemd tells
// ExecStopPost through its environment.
const stopPostScript = `#!/bin/sh
echo "$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS" > "/run/stoppost-$VM_ID"
`

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if err := testbed.Prerequisites(); err != nil {
		skipReason = err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }() // a temp dir; os.Exit follows
	bin := filepath.Join(dir, "notifier")
	if err := buildNotifier(bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := testbed.StartHost(ctx, testbed.HostOptions{
		Name: "supervisor",
		Files: []testbed.File{
			{Path: notifierPath, Source: bin, Mode: 0o755},
			{Path: stopPostPath, Data: []byte(stopPostScript), Mode: 0o755},
			{Path: holdPostPath, Data: []byte(holdPostScript), Mode: 0o755},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bed = h
	code := m.Run()
	if err := h.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func buildNotifier(out string) error {
	// go test puts its own GOROOT/bin first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, "build", "-o", out, "./testdata/notifier")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the notifier: %v: %s", err, b)
	}
	return nil
}

func needBed(t testing.TB) {
	t.Helper()
	if bed == nil {
		t.Skipf("no test-bed host: %s", skipReason)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newSupervisor connects to the test bed's system bus.
func newSupervisor(t testing.TB) *Supervisor {
	t.Helper()
	needBed(t)
	s, err := New(testCtx(t), Options{BusAddress: bed.SystemBusAddress(), CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// notifierSpec is a unit spec whose shim is the notifier with args.
func notifierSpec(args ...string) UnitSpec {
	return UnitSpec{
		VMID:              uuid.NewString(),
		ExecStart:         append([]string{notifierPath}, args...),
		StopTimeout:       10 * time.Second,
		SuccessExitStatus: []int{64, 65},
	}
}

// cleanupUnit stops and resets the spec's unit at the end of the test.
func cleanupUnit(t testing.TB, ctx context.Context, s *Supervisor, vmID string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = s.Stop(ctx, vmID)
		_ = s.ResetFailed(ctx, vmID)
	})
}

// mustStart starts spec's unit, which the end of the test stops and resets.
func mustStart(t testing.TB, ctx context.Context, s *Supervisor, spec UnitSpec) {
	t.Helper()
	cleanupUnit(t, ctx, s, spec.VMID)
	if err := s.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
}

// startAndSeeStatus starts a unit whose shim reports status, and waits
// until events delivers that status: signals reach the watcher.
func startAndSeeStatus(t testing.TB, ctx context.Context, s *Supervisor, events <-chan UnitEvent, status string) {
	t.Helper()
	spec := notifierSpec("-status", status)
	mustStart(t, ctx, s, spec)
	waitEvent(t, events, "signal "+status, func(ev UnitEvent) bool {
		return ev.VMID == spec.VMID && ev.StatusText == status
	})
}

func isCode(err error, code errdefs.Code) bool {
	return errors.Is(err, &errdefs.Error{Code: code})
}

// waitEvent reads events until match accepts one.
func waitEvent(t testing.TB, events <-chan UnitEvent, what string, match func(UnitEvent) bool) UnitEvent {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("watch channel closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event: %s", what)
		}
	}
}

func isMarker(ev UnitEvent) bool { return ev.Reconciled }
