package shim

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// fakeQMP is a QEMU that accepts every command and remembers which.
type fakeQMP struct {
	mu   sync.Mutex
	seen map[string]int
	fail map[string]bool // commands answered with an error
}

// refuse makes the fake answer cmd with an error from now on.
func (f *fakeQMP) refuse(cmd string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[cmd] = true
}

func (f *fakeQMP) count(cmd string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[cmd]
}

// newSupervisedShim is a shim past startup, with a QMP client on a fake
// QEMU that never exits on its own.
func newSupervisedShim(t *testing.T, shutdownTimeoutSec int) (*Shim, *fakeQMP) {
	t.Helper()
	ours, theirs := net.Pipe()
	fake := &fakeQMP{seen: map[string]int{}, fail: map[string]bool{}}
	go func() {
		defer theirs.Close()
		enc, dec := json.NewEncoder(theirs), json.NewDecoder(theirs)
		if enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}}) != nil {
			return
		}
		for {
			var req struct {
				Execute string          `json:"execute"`
				ID      json.RawMessage `json:"id"`
			}
			if dec.Decode(&req) != nil {
				return
			}
			fake.mu.Lock()
			fake.seen[req.Execute]++
			refused := fake.fail[req.Execute]
			fake.mu.Unlock()
			reply := map[string]any{"return": map[string]any{}, "id": req.ID}
			if refused {
				reply = map[string]any{"error": map[string]any{"class": "GenericError", "desc": "refused by the test"}, "id": req.ID}
			}
			if enc.Encode(reply) != nil {
				return
			}
		}
	}()
	c, err := qmp.New(t.Context(), ours)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{VMID: "0f8fad5b-d9cb-469f-a165-70867728950e", PowerdownInterval: time.Hour, QuitGrace: time.Hour})
	s.spec = &vmspec.Spec{ShutdownTimeoutSec: shutdownTimeoutSec}
	s.qmp = c
	s.qemu = &qemuProcess{exited: make(chan struct{})}
	s.status.Status = api.StatusRunning
	t.Cleanup(func() {
		close(s.qemu.exited)
		c.Close()
	})
	return s, fake
}

// A restart whose guest powered off in time ends its ladder: a power-off
// asked for just after runs on its own ladder, with its own deadline, not
// the restart's older one.
func TestLadderEndedByARestartStaysEnded(t *testing.T) {
	s, fake := newSupervisedShim(t, 2)
	began := time.Now()
	s.startLadder(t.Context(), intentRestart)
	time.Sleep(time.Second)
	s.onShutdown(t.Context(), qmp.ShutdownData{Guest: true, Reason: "guest-shutdown"}, time.Now()) // the guest powered off: reset, cont
	if st := s.Status(); st.Status != api.StatusRunning || st.Reason != api.ReasonRestarted {
		t.Fatalf("after the restart: %s (%s)", st.Status, st.Reason)
	}
	if fake.count("system_reset") != 1 || fake.count("cont") != 1 {
		t.Fatalf("restart sent %d system_reset, %d cont", fake.count("system_reset"), fake.count("cont"))
	}
	s.startLadder(t.Context(), intentPowerOff)
	second := time.Now()
	// The restart's deadline passes; only the power-off's may end the VM.
	time.Sleep(time.Until(began.Add(2500 * time.Millisecond)))
	if c := s.exitCauseLocked(); c != nil {
		t.Fatalf("forced off %s after the power-off was asked, at the restart's deadline: %+v", time.Since(second), c)
	}
	waitFor(t, 5*time.Second, func() bool { return s.exitCauseLocked() != nil })
	if c := s.exitCauseLocked(); c.reason != api.ReasonKilled || time.Since(second) < 2*time.Second {
		t.Fatalf("cause %+v after %s, want killed after the power-off's own 2 s", c, time.Since(second))
	}
	if n := fake.count("system_powerdown"); n != 2 {
		t.Errorf("%d presses, want one per ladder", n)
	}
}

func waitFor(t *testing.T, limit time.Duration, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met in time")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Once the VM's end is recorded, a request that raced it (a resume, a
// suspend) cannot record the VM as alive again.
func TestEndedVMStaysEnded(t *testing.T) {
	s, _ := newSupervisedShim(t, 2)
	s.onShutdown(t.Context(), qmp.ShutdownData{Guest: true, Reason: "guest-shutdown"}, time.Now())
	s.setRunning(api.ReasonUser, "")
	s.setStatus(api.StatusSuspended, api.ReasonUser, "", nil)
	if st := s.Status(); st.Status != api.StatusOff || st.Reason != api.ReasonGuestShutdown {
		t.Fatalf("after the guest powered off: %s (%s)", st.Status, st.Reason)
	}
}

// An install already past its timeout when the installer boots fails at
// once: error (install-timeout), QEMU told to quit, the boot-key presser
// stopped.
func TestInstallPastItsTimeFailsAtBoot(t *testing.T) {
	s, fake := newSupervisedShim(t, 2)
	s.spec = installingSpec(t)
	s.spec.Install.StartedAt = time.Now().Add(-3 * time.Hour)
	s.booted(t.Context())
	waitFor(t, 5*time.Second, func() bool { return fake.count("quit") == 1 })
	if st := s.Status(); st.Status != api.StatusError || st.Reason != api.ReasonInstallTimeout {
		t.Fatalf("status %s (%s), want error (install-timeout)", st.Status, st.Reason)
	}
	select {
	case <-s.plat.stopKeys:
	default:
		t.Fatal("the boot-key presser still runs")
	}
	s.stopInstallWatch()
}

// A power request that finds QEMU gone is Unavailable, not an internal
// error: the VM is going away.
func TestPowerWithQEMUGoneIsUnavailable(t *testing.T) {
	s, _ := newSupervisedShim(t, 2)
	s.qmp.Close()
	err := s.Power(context.Background(), api.Suspend)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable}) {
		t.Fatalf("suspend without QMP: %v, want Unavailable", err)
	}
}

// A paused guest that cannot be resumed never saw the button: the forced
// power-off says so instead of blaming the guest for ignoring ACPI.
func TestPausedGuestThatCannotResumeIsNotBlamed(t *testing.T) {
	s, fake := newSupervisedShim(t, 1)
	fake.refuse("cont")
	s.status.Status = api.StatusSuspended
	s.startLadder(t.Context(), intentPowerOff)
	waitFor(t, 10*time.Second, func() bool { return s.exitCauseLocked() != nil })
	c := s.exitCauseLocked()
	if c.reason != api.ReasonKilled || !strings.Contains(c.msg, "could not be resumed") || strings.Contains(c.msg, "ignored ACPI") {
		t.Fatalf("cause %+v, want killed because the guest could not be resumed", c)
	}
}

// A quit QEMU refuses is not waited for: QEMU is killed at once, not
// after QuitGrace (an hour here).
func TestRefusedQuitKillsQEMU(t *testing.T) {
	s, fake := newSupervisedShim(t, 1)
	fake.refuse("quit")
	child := exec.Command("sleep", "600")
	if err := child.Start(); err != nil {
		t.Skipf("cannot start a stand-in for QEMU: %v", err)
	}
	s.qemu.proc = child.Process
	s.quit(t.Context())
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("stand-in ended with %v, want SIGKILL", err)
		}
	case <-time.After(30 * time.Second):
		child.Process.Kill()
		t.Fatal("a refused quit left QEMU running")
	}
}
