package shim

import (
	"context"
	"errors"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
)

// Power carries out one of the seven power verbs on the running VM. It
// returns once QEMU accepted the request; how it ends arrives as events.
func (s *Shim) Power(ctx context.Context, op api.PowerOp) error {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	st := s.powerStatus()
	if s.exitCauseLocked() != nil {
		return errdefs.FailedPrecondition("VM is shutting down")
	}
	switch op {
	case api.PowerOn, api.Resume:
		if st == api.StatusRunning {
			if op == api.PowerOn {
				return errdefs.FailedPrecondition("VM is already running")
			}
			return nil
		}
		if st != api.StatusSuspended && st != api.StatusPaused {
			return errdefs.FailedPrecondition("VM is %s; only a suspended or paused VM can resume", st)
		}
		if err := s.qmp.Cont(ctx); err != nil {
			return qmpFailed(err)
		}
		s.mu.Lock()
		s.ioError = false
		s.mu.Unlock()
		s.setRunning(api.ReasonUser, "")
	case api.Suspend:
		if st == api.StatusSuspended {
			return nil
		}
		if st != api.StatusRunning {
			return errdefs.FailedPrecondition("VM is %s; only a running VM can be suspended", st)
		}
		if err := s.qmp.Stop(ctx); err != nil {
			return qmpFailed(err)
		}
		s.setStatus(api.StatusSuspended, api.ReasonUser, "", nil)
	case api.Reset:
		if st != api.StatusRunning && st != api.StatusSuspended && st != api.StatusPaused {
			return errdefs.FailedPrecondition("VM is %s; it cannot be reset", st)
		}
		if err := s.qmp.SystemReset(ctx); err != nil {
			return qmpFailed(err)
		}
		if st == api.StatusRunning {
			s.setRunning(api.ReasonReset, "")
		}
	case api.PowerOff:
		s.progress("power-off requested")
		s.startLadder(intentPowerOff)
	case api.Restart:
		s.progress("restart requested")
		s.startLadder(intentRestart)
	case api.ForcePowerOff:
		s.progress("forced power-off requested")
		s.forceOff("forced off by an operator")
	default:
		return errdefs.Invalid("op", "must be one of %v, got %q", api.PowerOps, op)
	}
	return nil
}

// qmpFailed classes a failed QMP command for the API: QEMU gone (it is
// exiting) is Unavailable, no answer in time DeadlineExceeded, and QEMU
// refusing the command Internal. QMP's errors already name the command.
func qmpFailed(err error) error {
	switch {
	case errors.Is(err, qmp.ErrDisconnected), errors.Is(err, qmp.ErrClosed):
		return errdefs.Unavailable("%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return &errdefs.Error{Code: errdefs.CodeDeadlineExceeded, Message: err.Error()}
	}
	return errdefs.Internal("%v", err)
}
