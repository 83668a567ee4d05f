package agent

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
)

// shimCallTimeout bounds one request to a shim's control socket.
const shimCallTimeout = 15 * time.Second

// Power carries out a power verb. With wait, it returns once the VM reached
// the state the verb aims at and, when that is off, its unit has finished
// too (or ctx ended); without, once it was accepted.
func (a *Agent) Power(ctx context.Context, id string, op api.PowerOp, wait bool) (api.VM, error) {
	if !op.Valid() {
		return api.VM{}, errdefs.Invalid("op", "must be one of %v, got %q", api.PowerOps, op)
	}
	rec, err := a.get(id)
	if err != nil {
		return api.VM{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.VM{}, err
	}
	since := rec.lastSeq()
	err = a.power(ctx, rec, op)
	unlock()
	if err != nil {
		return rec.view(), err
	}
	a.log.Info("power operation accepted", logging.KeyVM, id, logging.KeyOp, string(op))
	if !wait {
		return rec.view(), nil
	}
	return a.settle(ctx, rec, goal(op, since))
}

// settle waits for the VM to reach ok. A VM that ended is settled only once
// its unit has finished as well (the shim's cleanup runs after the off
// entry), so that what the caller does next (a delete, a power-on) finds no
// unit still stopping.
func (a *Agent) settle(ctx context.Context, rec *record, ok func(api.VM) bool) (api.VM, error) {
	v, err := a.waitFor(ctx, rec, ok)
	if err != nil || !v.Status.Terminal() {
		return v, err
	}
	if err := a.waitUnitGone(ctx, rec.id, unitGoneWait); err != nil {
		return rec.view(), err
	}
	return rec.view(), nil
}

// forceOffWait bounds a forced delete's power-off before it kills the unit.
const forceOffWait = 30 * time.Second

// forceOff powers a VM off by force for the user, as forcePowerOff does, so
// that it is recorded as off/killed, and waits until its unit finished.
// The caller holds the record's lock.
func (a *Agent) forceOff(ctx context.Context, rec *record) error {
	if err := a.power(ctx, rec, api.ForcePowerOff); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, forceOffWait)
	defer cancel()
	_, err := a.settle(ctx, rec, goal(api.ForcePowerOff, 0))
	return err
}

func (a *Agent) power(ctx context.Context, rec *record, op api.PowerOp) error {
	if st := rec.currentStatus(); st.Terminal() {
		// The VM is off (or ended in error); its shim may still be winding
		// down, which a power-on waits out.
		if op != api.PowerOn {
			return errdefs.FailedPrecondition("VM %s is %s", rec.id, st)
		}
		err := a.startUnit(ctx, rec, api.ReasonUser)
		if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
			return err
		}
		if err := a.waitUnitGone(ctx, rec.id, unitGoneWait); err != nil {
			return err
		}
		return a.startUnit(ctx, rec, api.ReasonUser)
	}
	active, err := a.unitActive(ctx, rec.id)
	if err != nil {
		return err
	}
	if !active {
		if op == api.PowerOn {
			return a.startUnit(ctx, rec, api.ReasonUser)
		}
		return errdefs.FailedPrecondition("VM %s has no running unit", rec.id)
	}
	cctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	_, err = a.shim(rec.id).Power(cctx, op)
	if err != nil && op == api.ForcePowerOff && errdefs.As(err).Code == errdefs.CodeUnavailable {
		// The shim does not answer: take the whole unit down. Its cleanup
		// records that the shim was lost.
		a.log.Warn("shim unreachable; killing its unit", logging.KeyVM, rec.id, "ERROR", err.Error())
		return a.cfg.Units.Kill(ctx, rec.id, syscall.SIGKILL)
	}
	return err
}

// unitGoneWait is how long a power-on waits for the unit of a VM that is
// already off to end.
const unitGoneWait = 30 * time.Second

// waitUnitGone waits, at most limit, for the unit of a VM whose end is
// recorded to end too (the shim exits, ExecStopPost runs).
func (a *Agent) waitUnitGone(ctx context.Context, id string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		active, err := a.unitActive(ctx, id)
		if err != nil || !active {
			return err
		}
		select {
		case <-ctx.Done():
			return errdefs.FailedPrecondition("VM %s has ended but its unit is still stopping", id)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (a *Agent) shim(id string) Shim { return a.cfg.Shims(id) }

// goal is the state a power verb is done in. since is the VM's last
// sequence number before the verb: a restart is done only by an entry
// after it, as the VM may still say running (restarted) from the last one.
func goal(op api.PowerOp, since uint64) func(api.VM) bool {
	switch op {
	case api.PowerOff, api.ForcePowerOff:
		return func(v api.VM) bool { return v.Status.Terminal() }
	case api.Suspend:
		return func(v api.VM) bool { return v.Status == api.StatusSuspended || v.Status.Terminal() }
	case api.Restart:
		return func(v api.VM) bool {
			return (v.Status == api.StatusRunning && v.Reason == api.ReasonRestarted && v.Seq > since) || v.Status.Terminal()
		}
	default:
		return func(v api.VM) bool {
			return v.Status == api.StatusRunning || v.Status == api.StatusBuilding || v.Status.Terminal()
		}
	}
}
