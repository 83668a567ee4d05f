package shim

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// qmpTimeout bounds every QMP command the shim sends on its own.
const qmpTimeout = 10 * time.Second

// supervise reacts to QMP events, SIGTERM and QEMU's exit, then records how
// the VM ended and returns the exit code that says so.
func (s *Shim) supervise(ctx context.Context) int {
	events := s.qmpEvents
	defer s.qmpUnsubscribe()
	sigterm := ctx.Done()
	// SIGTERM only starts the shutdown ladder: what the shim does after it,
	// teardown included, must not end with ctx.
	ctx = context.WithoutCancel(ctx)
	for {
		select {
		case <-s.qemu.exited:
			return s.finish(ctx)
		case ev, ok := <-events:
			if !ok {
				events = nil // QMP closed: QEMU is going away; its exit follows.
				continue
			}
			s.handleEvent(ctx, ev)
		case <-sigterm:
			sigterm = nil
			s.cfg.Notify("STOPPING=1")
			s.progress("stop requested by systemd")
			s.startLadder(ctx, intentPowerOff)
		}
	}
}

func (s *Shim) handleEvent(ctx context.Context, ev qmp.Event) {
	switch ev.Name {
	case qmp.EventShutdown:
		d, _ := ev.Shutdown()
		s.onShutdown(ctx, d, ev.Time)
	case qmp.EventReset:
		s.guestEvent("RESET", ev)
		s.onGuestReset(ctx, ev)
	case qmp.EventStop:
		// Only a disk error pauses the guest behind the shim's back. Every
		// other STOP is one the shim caused (suspend records itself; a guest
		// power-off under -no-shutdown stops the CPUs before quit or restart).
		s.mu.Lock()
		ioErr, going := s.ioError, s.cause != nil
		s.mu.Unlock()
		if ioErr && !going {
			s.setStatus(api.StatusPaused, api.ReasonIOError, "a disk error paused the guest", nil)
		}
	case qmp.EventResume:
		s.mu.Lock()
		s.ioError = false
		going := s.cause != nil
		s.mu.Unlock()
		if !going && s.Status().Status != s.upStatus() {
			s.setRunning(api.ReasonUser, "")
		}
	case qmp.EventBlockIOError:
		s.mu.Lock()
		s.ioError = true
		s.mu.Unlock()
		s.guestEvent("BLOCK_IO_ERROR "+string(ev.Data), ev)
	case qmp.EventGuestPanicked:
		s.setCause(exitCause{api.StatusError, api.ReasonPanicked, shimapi.ExitPanicked, "the guest kernel panicked"})
		s.quit(ctx)
	case qmp.EventWatchdog:
		s.guestEvent("WATCHDOG "+string(ev.Data), ev)
	case qmp.EventPowerdown, qmp.EventSuspend, qmp.EventWakeup:
		s.guestEvent(ev.Name, ev)
	case qmp.EventDeviceTrayMoved:
		s.onTrayMoved(ev)
	}
}

// guestEvent records a guest event, coalesced with its repeats.
func (s *Shim) guestEvent(msg string, ev qmp.Event) {
	if s.guest == nil {
		s.record(api.Event{Type: api.EventGuest, Time: ev.Time, Message: msg})
		return
	}
	s.guest.add(msg, ev.Time)
}

// onShutdown runs when the guest has powered off (QEMU stays up under
// -no-shutdown, so the shim decides what happens next) or QEMU is quitting.
// A guest that powered off is off from this moment: the status is recorded
// now, stamped with QEMU's own time, and QEMU is told to quit.
func (s *Shim) onShutdown(ctx context.Context, d qmp.ShutdownData, at time.Time) {
	s.mu.Lock()
	in := s.intent
	s.mu.Unlock()
	if !d.Guest {
		return // quit or a signal to QEMU: the cause is already set or exit tells
	}
	switch {
	case d.Reason == "guest-panic":
		s.setCause(exitCause{api.StatusError, api.ReasonPanicked, shimapi.ExitPanicked, "the guest kernel panicked"})
	case in == intentRestart:
		s.restartGuest(ctx, "the guest powered off", false)
		return
	case in == intentPowerOff:
		s.setCause(exitCause{api.StatusOff, api.ReasonUser, shimapi.ExitUserPowerOff, "the guest powered off at an ACPI request"})
	default:
		s.setCause(s.guestOffCause(at))
	}
	if c := s.exitCauseLocked(); c != nil {
		s.setStatus(c.status, c.reason, c.msg, &api.Event{Time: at})
	}
	s.quit(ctx)
}

// restartGuest turns a finished ACPI power-off into a fresh boot in the same
// QEMU: a hardware reset, then the CPUs run again.
//
// fromLadder is true when the ladder itself calls, at its deadline.
func (s *Shim) restartGuest(ctx context.Context, why string, fromLadder bool) {
	qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	s.mu.Lock()
	s.intent = intentNone
	s.stopLadderLocked()
	done := s.ladderDone
	s.mu.Unlock()
	if done != nil && !fromLadder {
		// A press in flight must land before the reset, which clears it,
		// never on the freshly booting guest.
		select {
		case <-done:
		case <-qctx.Done():
		}
	}
	if err := s.qmp.SystemReset(qctx); err != nil {
		s.forceOff(ctx, "restart failed: "+err.Error())
		return
	}
	if err := s.qmp.Cont(qctx); err != nil {
		s.forceOff(ctx, "restart failed: "+err.Error())
		return
	}
	s.setRunning(api.ReasonRestarted, why)
}

// startLadder presses the ACPI power button now and every interval until
// the guest is gone; after the VM's timeout it quits QEMU, then kills it.
// The ladder runs on after the request that started it.
func (s *Shim) startLadder(ctx context.Context, in intent) {
	s.mu.Lock()
	if s.intent == intentForceOff || s.cause != nil {
		s.mu.Unlock()
		return
	}
	if in == intentPowerOff || s.intent != intentPowerOff {
		s.intent = in
	}
	if s.ladder != nil {
		s.mu.Unlock()
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.ladder, s.ladderDone = stop, done
	st := s.stateLocked()
	paused := st == stateSuspended || st == statePaused
	s.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(done)
		s.runLadder(ctx, stop, paused)
	}()
}

// runLadder is one ladder, until stop closes or QEMU goes. Each ladder has
// its own stop channel, so one that a restart ended never runs on beside
// the next, with its older deadline.
func (s *Shim) runLadder(ctx context.Context, stop chan struct{}, paused bool) {
	timeout := time.Duration(s.spec.ShutdownTimeoutSec) * time.Second
	ignored := fmt.Sprintf("the guest ignored ACPI for %s", timeout)
	if paused {
		// A paused guest cannot see the button. If it stays paused, the
		// deadline must not blame the guest for presses it never saw.
		qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
		err := s.qmp.Cont(qctx)
		cancel()
		if err != nil {
			s.log.Warn("cannot resume the paused guest for ACPI", "ERROR", err.Error())
			ignored = fmt.Sprintf("the paused guest could not be resumed to see ACPI (%v); gave up after %s", err, timeout)
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(s.cfg.PowerdownInterval)
	defer tick.Stop()
	for presses := 1; ; presses++ {
		s.pressPowerButton(ctx, presses)
		select {
		case <-s.qemu.exited:
			return
		case <-stop:
			return
		case <-deadline.C:
			s.mu.Lock()
			if s.ladder != stop {
				s.mu.Unlock()
				return // stopped just now
			}
			s.stopLadderLocked()
			in := s.intent
			s.mu.Unlock()
			if in == intentRestart {
				s.restartGuest(ctx, ignored+"; reset", true)
				return
			}
			s.forceOff(ctx, ignored)
			return
		case <-tick.C:
			select {
			case <-stop:
				return
			default:
			}
		}
	}
}

func (s *Shim) stopLadderLocked() {
	if s.ladder != nil {
		close(s.ladder)
		s.ladder = nil
	}
}

func (s *Shim) pressPowerButton(ctx context.Context, n int) {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	if err := s.qmp.SystemPowerdown(ctx); err != nil {
		s.log.Warn("system_powerdown failed", "ERROR", err.Error())
		return
	}
	s.progress("acpi power button pressed (%d)", n)
}

// forceOff ends QEMU now: quit, then SIGKILL if it lingers.
func (s *Shim) forceOff(ctx context.Context, why string) {
	s.mu.Lock()
	s.intent = intentForceOff
	s.mu.Unlock()
	s.setCause(exitCause{api.StatusOff, api.ReasonKilled, shimapi.ExitForcedOff, why})
	s.quit(ctx)
}

// quit asks QEMU to exit and kills it if it has not after QuitGrace. It
// returns at once; the quit runs on after its caller.
func (s *Shim) quit(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	go func() {
		qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
		err := s.qmp.Quit(qctx)
		cancel()
		if err != nil && !errors.Is(err, qmp.ErrClosed) && !s.qemu.hasExited() {
			// Not a QEMU going away (Quit takes that for done, and teardown
			// closes QMP only after it): QEMU never got the quit, so
			// waiting QuitGrace for it is pointless.
			s.log.Warn("quit failed; killing qemu", "ERROR", err.Error())
			s.qemu.kill()
			return
		}
		select {
		case <-s.qemu.exited:
		case <-time.After(s.cfg.QuitGrace):
			s.log.Warn("qemu ignored quit; killing it")
			s.qemu.kill()
		}
	}()
}

// finish records how QEMU ended and returns the shim's exit code.
func (s *Shim) finish(ctx context.Context) int {
	ps := s.qemu.wait()
	// Before the last entries: the repeats of the guest's last bursts.
	s.resetLoop.stop()
	if s.guest != nil {
		s.guest.close()
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	cause := s.exitCauseLocked()
	exit := &api.Event{}
	if ws.Signaled() {
		exit.Signal = unix.SignalName(ws.Signal())
	} else {
		code := ws.ExitStatus()
		exit.ExitCode = &code
	}
	if cause == nil {
		switch {
		case ws.Signaled():
			cause = &exitCause{api.StatusError, api.ReasonCrashed, shimapi.ExitCrashed,
				fmt.Sprintf("qemu was killed by %s", exit.Signal)}
		case ws.ExitStatus() != 0:
			cause = &exitCause{api.StatusError, api.ReasonCrashed, shimapi.ExitQEMUFailed,
				fmt.Sprintf("qemu exited with status %d: %s", ws.ExitStatus(), s.qemu.stderrTail())}
		default:
			cause = &exitCause{api.StatusError, api.ReasonCrashed, shimapi.ExitQEMUFailed,
				"qemu exited without a shutdown event"}
		}
	}
	if s.Status().Status.Terminal() {
		// Recorded when the guest powered off; add how QEMU ended.
		s.record(api.Event{Type: api.EventProgress, Message: "qemu exited: " + describeExit(exit),
			ExitCode: exit.ExitCode, Signal: exit.Signal})
	} else {
		s.setStatus(cause.status, cause.reason, cause.msg, exit)
	}
	s.teardown(ctx)
	return cause.code
}

func describeExit(e *api.Event) string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return fmt.Sprintf("status %d", *e.ExitCode)
}

// teardown undoes startup in reverse: the Undo of every completed step.
// The unit's ExecStopPost (cleanup) repeats the parts that matter in case
// the shim never gets here.
func (s *Shim) teardown(ctx context.Context) { s.undoCompleted(ctx) }
