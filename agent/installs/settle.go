// Package installs settles unattended installs: it turns the end a shim
// recorded in a VM's log into the VM's spec.
//
// The split between agent and shim for an unattended install:
//
//   - the agent validates the request, builds the answer ISO (and extracts
//     the Ubuntu installer's kernel) into the VM's directory, and writes the
//     install into the spec;
//   - the shim boots the installer once, watches it (timeout, reset loop)
//     and records how it ended, as it records every end of a VM;
//   - the agent, the spec's only writer, then settles the install (this
//     package): detaches the media in the spec, deletes the temporary ones,
//     and boots the installed system if asked.
//
// So the shim never writes the spec and never outlives its QEMU, and a
// settle that an agent restart interrupted runs again from the event log.
package installs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// SettleWait is how long a settle waits for the shim that recorded the
// install's end to exit: the log is the shim's until then.
const SettleWait = time.Minute

// VM is one VM as settling sees it. Its caller holds the VM's operation
// lock, so nothing else changes its spec meanwhile.
type VM interface {
	ID() string
	// View is the VM as its log ends.
	View() api.VM
	// Spec is the VM's spec as last saved; read-only.
	Spec() *vmspec.Spec
	// UpdateSpec saves a changed copy of the spec and makes it current.
	UpdateSpec(change func(*vmspec.Spec) error) error
	// WaitUnitGone waits, at most limit, until no shim runs the VM.
	WaitUnitGone(ctx context.Context, limit time.Duration) error
	// AppendEvent records an entry in the VM's log; only while no shim runs.
	AppendEvent(ctx context.Context, e api.Event) error
}

// IsEnd reports whether a status reason ends an install.
func IsEnd(r api.Reason) bool {
	return r == api.ReasonInstalled || r == api.ReasonInstallTimeout || r == api.ReasonInstallResetLoop
}

// Ended reports whether log entries record an install's end.
func Ended(evs []api.Event) bool {
	for _, e := range evs {
		if e.IsStatus() && IsEnd(e.Reason) {
			return true
		}
	}
	return false
}

// Unsettled reports whether a VM's view shows an install whose end is
// recorded but not yet turned into the spec.
func Unsettled(v api.VM) bool {
	return v.Install != nil && v.Install.State == api.InstallRunning && IsEnd(v.Reason)
}

// Settler settles the installs of one host's VMs.
type Settler struct {
	Layout vmspec.Layout
	Log    *slog.Logger
	// Settled, when set, is told of each VM whose spec a settle changed.
	Settled func(vmID string)
}

// BeginRun marks an unfinished install as running from now, before its
// unit starts: every run starts the installer from its beginning, so the
// timeout counts from here. A run whose end is recorded but not yet settled
// is settled first.
func (s Settler) BeginRun(ctx context.Context, vm VM, now time.Time) error {
	s.Settle(ctx, vm)
	if !vm.Spec().Install.Active() {
		return nil
	}
	return vm.UpdateSpec(func(sp *vmspec.Spec) error { return sp.Install.Begin(now) })
}

// Settle turns the end the shim recorded into the spec: done (media
// detached, temporary media deleted) or failed (media kept). It returns the
// settled install, or nil when there was nothing to settle or settling must
// wait (the shim has not exited yet).
func (s Settler) Settle(ctx context.Context, vm VM) *vmspec.Install {
	id := vm.ID()
	v := vm.View()
	in := vm.Spec().Install
	if in == nil || in.State != api.InstallRunning || !IsEnd(v.Reason) || !v.Status.Terminal() {
		return nil
	}
	// The shim that recorded the end still holds the log until it exits.
	if err := vm.WaitUnitGone(ctx, SettleWait); err != nil {
		s.Log.Warn("install ended but its unit has not; settling later", logging.KeyVM, id, "ERROR", err.Error())
		return nil
	}
	var msg string
	err := vm.UpdateSpec(func(sp *vmspec.Spec) error {
		ended, err := sp.Install.End(v.Reason, v.UpdatedAt, v.Message)
		if err != nil || !ended {
			return fmt.Errorf("install did not end: %v", err)
		}
		if sp.Install.State == api.InstallDone {
			// Detach: the installed system boots from its disk.
			if sp.Install.BootOnce == "" {
				sp.Boot = nil
			}
			sp.DetachISO()
			sp.Install.AnswerISO, sp.Install.VirtioWinISO = "", ""
			msg = fmt.Sprintf("install done after %s: media detached, answer ISO deleted", sp.Install.Duration().Round(time.Second))
		} else {
			msg = fmt.Sprintf("install failed (%s) after %s: media kept for inspection in %s",
				v.Reason, sp.Install.Duration().Round(time.Second), s.Layout.InstallDir(sp.ID))
		}
		return nil
	})
	if err != nil {
		s.Log.Error("settling the install failed", logging.KeyVM, id, "ERROR", err.Error())
		return nil
	}
	settled := vm.Spec().Install
	if settled.State == api.InstallDone {
		// The spec no longer names them: a crash here leaves only files
		// that deleting the VM removes.
		if err := os.RemoveAll(s.Layout.InstallDir(id)); err != nil {
			s.Log.Warn("temporary install media left", logging.KeyVM, id, "ERROR", err.Error())
		}
	}
	if err := vm.AppendEvent(ctx, api.Event{Type: api.EventProgress, Message: msg}); err != nil {
		s.Log.Warn("cannot record the install's settlement", logging.KeyVM, id, "ERROR", err.Error())
	}
	if s.Settled != nil {
		s.Settled(id)
	}
	s.Log.Info("install settled", logging.KeyVM, id, "STATE", string(settled.State),
		"DURATION", settled.Duration().String())
	return settled
}
