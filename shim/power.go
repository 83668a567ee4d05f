package shim

import (
	"context"
	"errors"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
)

// Power carries out one of the seven power verbs on the running VM, as the
// transition table allows it from the VM's state. It returns once QEMU
// accepted the request; how it ends arrives as events.
func (s *Shim) Power(ctx context.Context, op api.PowerOp) error {
	if !op.Valid() {
		return errdefs.Invalid("op", "must be one of %v, got %q", api.PowerOps, op)
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	from := s.lifecycleState()
	t, ok := transitions[from][op]
	if !ok {
		return refusal(op, from)
	}
	if t.run == nil {
		return nil
	}
	return t.run(s, ctx, from)
}

func (s *Shim) resumeCPUs(ctx context.Context, _ vmState) error {
	if err := s.qmp.Cont(ctx); err != nil {
		return qmpFailed(err)
	}
	s.mu.Lock()
	s.ioError = false
	s.mu.Unlock()
	s.setRunning(api.ReasonUser, "")
	return nil
}

func (s *Shim) suspendCPUs(ctx context.Context, _ vmState) error {
	if err := s.qmp.Stop(ctx); err != nil {
		return qmpFailed(err)
	}
	s.setStatus(api.StatusSuspended, api.ReasonUser, "", nil)
	return nil
}

// resetMachine presses the reset button; stopped CPUs stay stopped.
func (s *Shim) resetMachine(ctx context.Context, from vmState) error {
	if err := s.qmp.SystemReset(ctx); err != nil {
		return qmpFailed(err)
	}
	if from == stateRunning {
		s.setRunning(api.ReasonReset, "")
	}
	return nil
}

func (s *Shim) requestPowerOff(ctx context.Context, _ vmState) error {
	s.progress("power-off requested")
	s.startLadder(ctx, intentPowerOff)
	return nil
}

func (s *Shim) requestRestart(ctx context.Context, _ vmState) error {
	s.progress("restart requested")
	s.startLadder(ctx, intentRestart)
	return nil
}

func (s *Shim) requestForceOff(ctx context.Context, _ vmState) error {
	s.progress("forced power-off requested")
	s.forceOff(ctx, "forced off by an operator")
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
