// Package agenttest has fakes of what package agent depends on: systemd's
// units and the shims they run, the database, the host's network and its
// firewall. They model behaviour rather than record calls: a unit started on
// a Host runs a fake shim that holds the VM's real event log, records its
// start and end there and streams it, as the real shim does. Pure logic: no
// root, no systemd, no QEMU.
package agenttest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/supervisor"
)

// Host is systemd with the transient units of one host, each running a fake
// shim. It implements agent.Units; Dial gives the agent a client of a
// unit's shim.
type Host struct {
	layout vmspec.Layout

	mu        sync.Mutex
	units     map[string]*unit
	starts    []supervisor.UnitSpec
	watchers  map[*watcher]struct{}
	nextPID   int
	failStart func(supervisor.UnitSpec) error
	boot      func(*Shim) error
	exchange  ExchangeFunc
}

type unit struct {
	state supervisor.UnitState
	shim  *Shim // nil once its shim exited
}

// NewHost is a host with no units, whose shims keep their event logs where
// layout says.
func NewHost(layout vmspec.Layout) *Host {
	return &Host{layout: layout, units: map[string]*unit{}, watchers: map[*watcher]struct{}{}, nextPID: 1000}
}

// FailStart makes each later start ask fn first: an error fails the start
// before any shim runs.
func (h *Host) FailStart(fn func(supervisor.UnitSpec) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failStart = fn
}

// OnBoot replaces what a started shim does once it recorded "starting":
// by default it records running (booted), or building (installing) when
// its spec has an install to run. An error is a failed start: the shim
// records it and exits, and Start fails.
func (h *Host) OnBoot(fn func(*Shim) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boot = fn
}

// ExchangeFunc answers a verb of the shim's route table that has no method
// of its own, as the running shim s would: the request's method, target
// and body in, the answer's body out.
type ExchangeFunc func(s *Shim, method, target string, body []byte) ([]byte, error)

// OnExchange makes running shims answer such verbs with fn; nil, the
// default, answers none of them.
func (h *Host) OnExchange(fn ExchangeFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.exchange = fn
}

// Starts lists every unit the host was asked to start, in order.
func (h *Host) Starts() []supervisor.UnitSpec {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.starts)
}

// Shim is the running shim of the VM, or nil.
func (h *Host) Shim(vmID string) *Shim {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.units[vmID]; u != nil {
		return u.shim
	}
	return nil
}

// Loaded reports whether systemd knows the VM's unit (running or failed).
func (h *Host) Loaded(vmID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.units[vmID] != nil
}

func unitName(vmID string) string { return "infinivirt-shim@" + vmID + ".service" }

func isActive(state string) bool {
	switch state {
	case "active", "activating", "deactivating", "reloading":
		return true
	}
	return false
}

func notLoaded(vmID string) error {
	return errdefs.NotFound("unit %s is not loaded", unitName(vmID))
}

// Start runs the unit's shim: it takes the VM's event log, records
// "starting" with the unit's start reason, then boots (see OnBoot).
func (h *Host) Start(ctx context.Context, spec supervisor.UnitSpec) error {
	h.mu.Lock()
	if u := h.units[spec.VMID]; u != nil && isActive(u.state.ActiveState) {
		h.mu.Unlock()
		return errdefs.AlreadyExists("vmId", "start: unit %s is already loaded", unitName(spec.VMID))
	}
	h.starts = append(h.starts, spec)
	fail, boot := h.failStart, h.boot
	h.mu.Unlock()
	if fail != nil {
		if err := fail(spec); err != nil {
			return err
		}
	}
	log, err := eventlog.Open(ctx, h.layout.EventsFile(spec.VMID), spec.VMID)
	if err != nil {
		return fmt.Errorf("start %s: %w", unitName(spec.VMID), err)
	}
	s := &Shim{host: h, id: spec.VMID, unit: spec, log: log}
	h.mu.Lock()
	h.nextPID++
	s.qemuPID = h.nextPID
	// Start resets a failed unit left from the last run, as systemd's does.
	h.units[spec.VMID] = &unit{shim: s, state: supervisor.UnitState{
		VMID: spec.VMID, Unit: unitName(spec.VMID), LoadState: "loaded", ActiveState: "activating", SubState: "start",
	}}
	h.mu.Unlock()
	if err := s.Record(api.StatusStarting, s.StartReason(), ""); err != nil {
		s.exit(false, "exit-code")
		return err
	}
	if boot == nil {
		boot = defaultBoot
	}
	if err := boot(s); err != nil {
		rerr := s.Record(api.StatusError, api.ReasonStartFailed, err.Error())
		s.exit(false, "exit-code")
		if rerr != nil {
			return rerr
		}
		return errdefs.FailedPrecondition("unit %s failed to start", unitName(spec.VMID))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.units[spec.VMID]; u != nil && u.shim == s {
		u.state.ActiveState, u.state.SubState, u.state.MainPID = "active", "running", uint32(s.qemuPID-1)
		h.emitLocked(supervisor.UnitEvent{VMID: spec.VMID, Unit: u.state.Unit, ActiveState: "active", SubState: "running", MainPID: u.state.MainPID})
	}
	return nil
}

// defaultBoot is the shim's startup as the VM's spec asks: an install to
// run boots the installer.
func defaultBoot(s *Shim) error {
	spec, err := vmspec.Load(s.host.layout.SpecFile(s.id))
	if err != nil {
		return err
	}
	if spec.Install.Active() {
		return s.Record(api.StatusBuilding, api.ReasonInstalling, "")
	}
	return s.Record(api.StatusRunning, api.ReasonBooted, "")
}

// Stop is SIGTERM: the shim powers its VM off, records it, and exits.
func (h *Host) Stop(ctx context.Context, vmID string) error {
	s, loaded := h.shimOf(vmID)
	if !loaded {
		return notLoaded(vmID)
	}
	if s != nil {
		// A shim that exited meanwhile has closed its log; one still alive
		// that cannot record its end fails its unit, and the test hears why.
		if err := s.Record(api.StatusOff, api.ReasonUser, "stopped by its unit"); err != nil && s.alive() {
			s.exit(false, "exit-code")
			return err
		}
		s.exit(true, "success")
	}
	return nil
}

// shimOf is a loaded unit's shim, nil once it has exited; read under the
// lock, since the shim's exit clears it.
func (h *Host) shimOf(vmID string) (*Shim, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.units[vmID]
	if u == nil {
		return nil, false
	}
	return u.shim, true
}

// Kill is SIGKILL: the shim dies without recording anything and its unit
// fails.
func (h *Host) Kill(ctx context.Context, vmID string, sig syscall.Signal) error {
	s, loaded := h.shimOf(vmID)
	if !loaded {
		return notLoaded(vmID)
	}
	if s != nil {
		s.exit(false, "signal")
	}
	return nil
}

// ResetFailed unloads a failed unit.
func (h *Host) ResetFailed(ctx context.Context, vmID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.units[vmID]
	if u == nil {
		return notLoaded(vmID)
	}
	if u.state.ActiveState == "failed" {
		delete(h.units, vmID)
		h.emitLocked(supervisor.UnitEvent{VMID: vmID, Unit: u.state.Unit, ActiveState: "inactive", SubState: "dead", Removed: true})
	}
	return nil
}

// State reads the VM's unit; NotFound once it is unloaded.
func (h *Host) State(ctx context.Context, vmID string) (supervisor.UnitState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.units[vmID]
	if u == nil {
		return supervisor.UnitState{}, notLoaded(vmID)
	}
	return u.state, nil
}

// List returns every loaded unit, by VM id.
func (h *Host) List(ctx context.Context) ([]supervisor.UnitState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]supervisor.UnitState, 0, len(h.units))
	for _, u := range h.units {
		out = append(out, u.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out, nil
}

type watcher struct {
	mu    sync.Mutex
	queue []supervisor.UnitEvent
	wake  chan struct{}
}

// Watch streams unit changes until ctx ends. Like the real watcher, it
// starts with a listing of every loaded unit and then a Reconciled marker;
// it never drops an event.
func (h *Host) Watch(ctx context.Context) <-chan supervisor.UnitEvent {
	w := &watcher{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	for _, u := range h.units {
		st := u.state
		w.queue = append(w.queue, supervisor.UnitEvent{VMID: st.VMID, Unit: st.Unit, ActiveState: st.ActiveState, SubState: st.SubState, Result: st.Result, MainPID: st.MainPID})
	}
	w.queue = append(w.queue, supervisor.UnitEvent{Reconciled: true})
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	out := make(chan supervisor.UnitEvent)
	go func() {
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.watchers, w)
			h.mu.Unlock()
		}()
		for {
			w.mu.Lock()
			q := w.queue
			w.queue = nil
			w.mu.Unlock()
			for _, ev := range q {
				if ctx.Err() != nil {
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (h *Host) emitLocked(ev supervisor.UnitEvent) {
	for w := range h.watchers {
		w.mu.Lock()
		w.queue = append(w.queue, ev)
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Shim is the fake shim of one unit's run. It holds the VM's event log
// from its start until it exits, so nobody else may append meanwhile.
type Shim struct {
	host    *Host
	id      string
	unit    supervisor.UnitSpec
	log     *eventlog.Log
	qemuPID int

	mu       sync.Mutex
	last     api.Event
	exited   bool
	hung     chan struct{} // closed when a hang ends; nil while the shim answers
	qmpError string
}

// Hang makes the shim's status calls wait, as a stopped process's do,
// until their caller gives up or the returned function ends the hang.
func (s *Shim) Hang() (resume func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hung := make(chan struct{})
	s.hung = hung
	return sync.OnceFunc(func() {
		s.mu.Lock()
		s.hung = nil
		s.mu.Unlock()
		close(hung)
	})
}

// StallQEMU makes the shim report that its QEMU does not answer QMP, with
// err as the reason; "" makes QEMU answer again.
func (s *Shim) StallQEMU(err string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmpError = err
}

// wait blocks while the shim hangs, until ctx ends.
func (s *Shim) wait(ctx context.Context) error {
	s.mu.Lock()
	hung := s.hung
	s.mu.Unlock()
	if hung == nil {
		return nil
	}
	select {
	case <-hung:
		return nil
	case <-ctx.Done():
		return errdefs.DeadlineExceeded("shim of VM %s: %v", s.id, ctx.Err())
	}
}

// ID is the VM the shim runs.
func (s *Shim) ID() string { return s.id }

// StartReason is the reason the agent gave the unit for this start.
func (s *Shim) StartReason() api.Reason {
	for _, kv := range s.unit.Environment {
		if v, ok := strings.CutPrefix(kv, "INFINIVIRT_START_REASON="); ok {
			return api.Reason(v)
		}
	}
	return api.ReasonUser
}

// Record appends a status entry to the VM's log, with QEMU's pid while
// QEMU runs.
func (s *Shim) Record(st api.Status, reason api.Reason, msg string) error {
	e := api.Event{Type: api.EventStatus, Status: st, Reason: reason, Message: msg}
	if !st.Terminal() && st != api.StatusStarting {
		e.QEMUPID = s.qemuPID
	}
	e, err := s.log.Append(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.last = e
	s.mu.Unlock()
	return nil
}

// Progress appends a progress entry to the VM's log.
func (s *Shim) Progress(msg string) error {
	_, err := s.log.Append(api.Event{Type: api.EventProgress, Message: msg})
	return err
}

// End records how the VM ended and exits, as the shim does when its guest
// stops: a clean end unloads the unit, any other fails it.
func (s *Shim) End(st api.Status, reason api.Reason, msg string) error {
	if err := s.Record(st, reason, msg); err != nil {
		return err
	}
	result := "success"
	if st == api.StatusError {
		result = "exit-code"
	}
	s.exit(result == "success", result)
	return nil
}

// Crash is the shim dying without a word (SIGKILL, OOM): its unit fails.
func (s *Shim) Crash() { s.exit(false, "signal") }

func (s *Shim) exit(clean bool, result string) {
	s.mu.Lock()
	if s.exited {
		s.mu.Unlock()
		return
	}
	s.exited = true
	s.mu.Unlock()
	s.log.Close()
	h := s.host
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.units[s.id]
	if u == nil || u.shim != s {
		return
	}
	u.shim = nil
	if clean {
		delete(h.units, s.id)
		h.emitLocked(supervisor.UnitEvent{VMID: s.id, Unit: u.state.Unit, ActiveState: "inactive", SubState: "dead", Result: result, Removed: true})
		return
	}
	u.state.ActiveState, u.state.SubState, u.state.Result, u.state.MainPID = "failed", "failed", result, 0
	h.emitLocked(supervisor.UnitEvent{VMID: s.id, Unit: u.state.Unit, ActiveState: "failed", SubState: "failed", Result: result})
}

func (s *Shim) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.exited
}

func (s *Shim) status() shimapi.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := shimapi.Status{
		VMID: s.id, Status: s.last.Status, Reason: s.last.Reason, Message: s.last.Message,
		QMPStatus: "running", QEMUPID: s.last.QEMUPID, Seq: s.last.Seq, StartedAt: s.last.Time,
	}
	if s.qmpError != "" {
		st.QMPStatus, st.QMPError = "unknown", s.qmpError
	}
	return st
}

// power is the shim's answer to a power verb, simplified: each verb takes
// effect at once.
func (s *Shim) power(op api.PowerOp) error {
	switch op {
	case api.PowerOff, api.ForcePowerOff:
		return s.End(api.StatusOff, api.ReasonUser, "")
	case api.Suspend:
		return s.Record(api.StatusSuspended, api.ReasonUser, "")
	case api.Resume, api.PowerOn:
		return s.Record(api.StatusRunning, api.ReasonUser, "")
	case api.Reset:
		return s.Record(api.StatusRunning, api.ReasonReset, "")
	case api.Restart:
		return s.Record(api.StatusRunning, api.ReasonRestarted, "")
	}
	return errdefs.Invalid("op", "unknown power operation %q", op)
}

// Dial is a client of the VM's shim, whether or not one runs: calls to a
// shim that is not running fail Unavailable, as on a dead socket.
func (h *Host) Dial(vmID string) *ShimClient { return &ShimClient{host: h, id: vmID} }

// ShimClient implements agent.Shim against the host's fake shims.
type ShimClient struct {
	host *Host
	id   string
}

func (c *ShimClient) shim() (*Shim, error) {
	if s := c.host.Shim(c.id); s != nil && s.alive() {
		return s, nil
	}
	return nil, errdefs.Unavailable("shim of VM %s: connection refused", c.id)
}

// Status is the shim's view of the VM: its last status entry.
func (c *ShimClient) Status(ctx context.Context) (shimapi.Status, error) {
	s, err := c.shim()
	if err != nil {
		return shimapi.Status{}, err
	}
	if err := s.wait(ctx); err != nil {
		return shimapi.Status{}, err
	}
	return s.status(), nil
}

// Power carries out op at once.
func (c *ShimClient) Power(ctx context.Context, op api.PowerOp) (shimapi.Status, error) {
	s, err := c.shim()
	if err != nil {
		return shimapi.Status{}, err
	}
	if err := s.power(op); err != nil {
		return shimapi.Status{}, err
	}
	return s.status(), nil
}

// Console is a fixed line naming the VM.
func (c *ShimClient) Console(ctx context.Context) ([]byte, error) {
	if _, err := c.shim(); err != nil {
		return nil, err
	}
	return []byte("console of " + c.id + "\n"), nil
}

// Exchange answers the verbs that have no method of their own with the
// host's OnExchange function; without one the fake shim knows none.
func (c *ShimClient) Exchange(ctx context.Context, method, target string, body []byte) ([]byte, error) {
	s, err := c.shim()
	if err != nil {
		return nil, err
	}
	c.host.mu.Lock()
	fn := c.host.exchange
	c.host.mu.Unlock()
	if fn == nil {
		return nil, errdefs.Unavailable("shim of VM %s: the fake shim does not answer %s %s", c.id, method, target)
	}
	return fn(s, method, target, body)
}

// Events streams the log after seq, then live entries until ctx ends or the
// shim exits.
func (c *ShimClient) Events(ctx context.Context, after uint64, fn func(api.Event) error) error {
	s, err := c.shim()
	if err != nil {
		return err
	}
	backlog, sub, err := s.log.Subscribe(after)
	if err != nil {
		return errdefs.Unavailable("shim of VM %s: %v", c.id, err)
	}
	defer sub.Cancel()
	for _, e := range backlog {
		if err := fn(e); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, open := <-sub.C():
			if !open {
				return errdefs.Unavailable("shim of VM %s closed the stream", c.id)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// Close does nothing: there is no connection to drop.
func (c *ShimClient) Close() {}

// WaitFor polls cond until it holds or the deadline passes, for tests that
// wait on the agent's background work. It reports whether cond held.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
