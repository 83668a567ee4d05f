// Package shim is the per-VM process that systemd runs as
// infinivirt-shim@<uuid>.service. It owns everything about one VM: the QEMU
// child (watched through a pidfd), its only QMP connection, its TAP device,
// its control socket and its event log. It never imports the agent, the
// supervisor or the store.
package shim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/shim/internal/tinyhttp"
)

// Config is how the shim's main wires one run.
type Config struct {
	VMID       string
	Layout     vmspec.Layout
	QEMUBinary string
	QEMUImg    string
	// QEMUUser runs QEMU under this account; empty keeps the shim's own.
	QEMUUser string
	// Firewall is how the VM's traffic is filtered; FirewallReject says the
	// kernel can REJECT in the bridge family.
	Firewall       shimapi.FirewallMode
	FirewallReject bool
	// StartReason is the reason recorded with "starting" (user, autostart, ...).
	StartReason api.Reason
	Logger      *slog.Logger
	// Notify sends an sd_notify state line; nil sends nothing.
	Notify func(state string)
	// PowerdownInterval is how often the shutdown ladder presses the power
	// button again: presses get lost during boot, and Windows ignores single ones.
	PowerdownInterval time.Duration
	// QuitGrace is how long QEMU gets to exit after quit before SIGKILL.
	QuitGrace time.Duration
	// BeforeStep lets tests fail or observe a named startup step.
	BeforeStep func(name string) error
	// SWTPMBinary runs a VM's TPM emulator; empty is swtpm in PATH.
	SWTPMBinary string
	// Sysfs is where managed PCI devices change drivers; the zero Tree is
	// the host's /sys.
	Sysfs sysfs.Tree
}

func (c *Config) setDefaults() {
	if c.QEMUBinary == "" {
		c.QEMUBinary = "qemu-system-x86_64"
	}
	if c.QEMUImg == "" {
		c.QEMUImg = "qemu-img"
	}
	if c.StartReason == "" {
		c.StartReason = api.ReasonUser
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Notify == nil {
		c.Notify = func(string) {}
	}
	if c.PowerdownInterval == 0 {
		c.PowerdownInterval = 5 * time.Second
	}
	if c.QuitGrace == 0 {
		c.QuitGrace = 10 * time.Second
	}
}

// intent is what an operator asked for that changes what a guest power-off means.
type intent int

const (
	intentNone intent = iota
	intentPowerOff
	intentRestart
	intentForceOff
)

// Shim runs one VM.
type Shim struct {
	cfg  Config
	log  *slog.Logger
	cred *syscall.Credential // QEMU's user, once looked up

	spec   *vmspec.Spec
	events *eventlog.Log
	// devices are this start's, prepared, until teardown releases them;
	// live changes keep them (and spec) as QEMU has them, under mu.
	devices []device.Device
	qemu    *qemuProcess
	qmp     *qmp.Client
	// qmpEvents is subscribed right after the handshake, before the CPUs run.
	qmpEvents      <-chan qmp.Event
	firewallDone   chan error // the rules' installation, started early
	qmpUnsubscribe func()
	console        *console
	server         *tinyhttp.Server
	// completed are the startup steps done so far, for teardown to undo.
	completed StepList
	// incomingDefer starts QEMU waiting for its state (restore, migration).
	incomingDefer bool
	// plat runs beside QEMU: swtpm and the unattended install's watchers.
	plat platformRun
	// guest coalesces repeated guest events; resetLoop tells a guest stuck
	// resetting outside an install.
	guest     *guestBursts
	resetLoop resetLoopWatch

	// statusMu orders status changes: the event log, systemd and the
	// control socket see them in the same order.
	statusMu sync.Mutex
	mu       sync.Mutex
	status   shimapi.Status
	recorded bool // a status of this run is in the event log
	intent   intent
	cause    *exitCause    // the first recorded reason QEMU is going away
	ladder   chan struct{} // closed to stop the running ACPI ladder; nil while none runs
	// ladderDone is closed once the last ladder started has returned, so
	// that no press of it can reach the guest after a restart's reset.
	ladderDone chan struct{}
	ioError    bool
	// mediaMu orders live device changes, of media and of disks: each
	// reads the devices and leaves the next one to find them changed;
	// teardown waits for the one under way.
	mediaMu sync.Mutex
}

// exitCause is why QEMU ends, as decided before it actually exits.
type exitCause struct {
	status api.Status
	reason api.Reason
	code   int
	msg    string
}

// New prepares a shim; nothing happens until Run.
func New(cfg Config) *Shim {
	cfg.setDefaults()
	return &Shim{
		cfg: cfg,
		log: cfg.Logger.With(logging.KeyVM, cfg.VMID),
		status: shimapi.Status{
			VMID:   cfg.VMID,
			Status: api.StatusStarting,
			Reason: cfg.StartReason,
		},
	}
}

// Run brings the VM up and supervises it until QEMU is gone. Cancelling ctx
// is SIGTERM: it runs the shutdown ladder. The result is the process exit
// code, which tells systemd how the VM ended (see shimapi).
func (s *Shim) Run(ctx context.Context) int {
	if !vmspec.ValidID(s.cfg.VMID) {
		// Teardown would remove a directory named by it.
		s.log.Error("start failed", "ERROR", fmt.Sprintf("%q is not a VM id", s.cfg.VMID))
		return shimapi.ExitStartFailed
	}
	if err := s.start(ctx); err != nil {
		return s.failStart(ctx, err)
	}
	return s.supervise(ctx)
}

// failStart records why the VM could not come up and undoes what startup did.
func (s *Shim) failStart(ctx context.Context, err error) int {
	msg := err.Error()
	if s.qemu != nil {
		if tail := s.qemu.stderrTail(); tail != "" {
			msg += ": qemu: " + tail
		}
	}
	s.log.Error("start failed", "ERROR", msg)
	if s.qemu != nil {
		s.qemu.kill()
		s.qemu.wait()
	}
	code := shimapi.ExitStartFailed
	status, reason := api.StatusError, api.ReasonStartFailed
	if s.wasForced() {
		code, status, reason = shimapi.ExitForcedOff, api.StatusOff, api.ReasonUser
	}
	s.setStatus(status, reason, msg, nil)
	s.teardown(ctx)
	return code
}

func (s *Shim) wasForced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intent == intentForceOff || s.intent == intentPowerOff
}

// Status returns the shim's current view.
func (s *Shim) Status() shimapi.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// setStatus records a status change in the event log, tells systemd, and
// updates the control socket's view. Repeats of the current status and
// reason are not recorded, and neither is a live status once the VM's end
// is: a request that raced the guest's power-off must not revive it.
// extra, when set, carries how QEMU ended and the time the change happened
// (a QMP event's own timestamp).
func (s *Shim) setStatus(st api.Status, reason api.Reason, msg string, extra *api.Event) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.mu.Lock()
	same := s.status.Status == st && s.status.Reason == reason && extra == nil
	if s.status.Status.Terminal() && !st.Terminal() || same && s.recorded {
		s.mu.Unlock()
		return
	}
	s.status.Status, s.status.Reason, s.status.Message = st, reason, msg
	s.recorded = s.events != nil
	pid := s.status.QEMUPID
	s.mu.Unlock()

	e := api.Event{Type: api.EventStatus, Status: st, Reason: reason, Message: msg, QEMUPID: pid}
	if extra != nil {
		e.ExitCode, e.Signal, e.Time = extra.ExitCode, extra.Signal, extra.Time
	}
	s.record(e)
	line := fmt.Sprintf("STATUS=%s (%s)", st, reason)
	if pid != 0 && st != api.StatusOff && st != api.StatusError {
		line += fmt.Sprintf(", qemu pid %d", pid)
	}
	s.cfg.Notify(line)
	s.log.Info("status", logging.KeyStatus, string(st), logging.KeyReason, string(reason), "MESSAGE_DETAIL", msg)
}

// progress records a step of a long operation.
func (s *Shim) progress(format string, args ...any) {
	s.record(api.Event{Type: api.EventProgress, Message: fmt.Sprintf(format, args...)})
}

func (s *Shim) record(e api.Event) {
	if s.events == nil {
		return
	}
	saved, err := s.events.Append(e)
	if err != nil {
		s.log.Error("event log append failed", "ERROR", err.Error())
		return
	}
	s.mu.Lock()
	s.status.Seq = max(s.status.Seq, saved.Seq) // appends from other goroutines may land first
	s.mu.Unlock()
}

// setCause keeps the first recorded reason QEMU is going away.
func (s *Shim) setCause(c exitCause) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause == nil {
		s.cause = &c
	}
}

func (s *Shim) exitCauseLocked() *exitCause {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}
