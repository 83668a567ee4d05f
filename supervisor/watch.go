package supervisor

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// UnitEvent is one state change of a VM's unit, decoded from systemd's
// signals, or one unit of a reconcile listing. Fields a signal did not
// carry are empty or nil.
type UnitEvent struct {
	VMID        string
	Unit        string
	ActiveState string
	SubState    string
	Result      string
	// ExecMainCode and ExecMainStatus come from the Service interface: how
	// the shim ended (see UnitState).
	ExecMainCode   *int32
	ExecMainStatus *int32
	MainPID        uint32
	StatusText     string
	// Removed: systemd unloaded the unit.
	Removed bool
	// Reconciled marks the end of a listing: after every (re)connect, and
	// after events had to be dropped, the watcher lists all units (one
	// event each, with every field set) and then sends this marker, which
	// names no unit. A VM that had no event since the connection was made
	// and is not in the listing has no unit.
	Reconciled bool
}

const (
	unitPathRoot = dbus.ObjectPath("/org/freedesktop/systemd1/unit")
	// watchQueueMax bounds the events held for a slow consumer; beyond it
	// events are dropped, counted, and replaced by a reconcile.
	watchQueueMax = 4096
	maxBackoff    = 5 * time.Second
)

// unitPathPrefix is the object-path prefix of every infinivirt-shim@ unit.
var unitPathPrefix = string(unitPathRoot) + "/" + sddbus.PathBusEscape(unitPrefix)

// DroppedEvents counts the watch events dropped because a consumer fell
// behind. Each drop is followed by a reconcile.
func (s *Supervisor) DroppedEvents() uint64 { return s.drops.n.Load() }

type dropCounter struct{ n atomic.Uint64 }

// Watch streams the state changes of every infinivirt-shim@ unit until ctx
// ends or the supervisor is closed; then the channel is closed. It uses a
// connection of its own and reconnects with backoff when the bus drops.
// A slow consumer never stalls signal dispatch: events wait in a bounded
// queue, and on overflow they are dropped, counted (DroppedEvents) and
// made up for with a reconcile.
func (s *Supervisor) Watch(ctx context.Context) <-chan UnitEvent {
	wctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(s.life, cancel) //nolint:contextcheck // a watcher ends with ctx or with the supervisor, whichever is first
	out := make(chan UnitEvent)
	q := &eventQueue{
		max: watchQueueMax, drops: &s.drops,
		ready: make(chan struct{}, 1), reconcile: make(chan struct{}, 1),
	}
	w := &watcher{s: s, q: q}
	s.wmu.Lock()
	s.active[w] = struct{}{}
	s.wmu.Unlock()
	s.watchers.Add(2)
	go func() {
		defer s.watchers.Done()
		defer func() {
			s.wmu.Lock()
			delete(s.active, w)
			s.wmu.Unlock()
		}()
		defer stopOnClose()
		defer cancel()
		w.run(wctx)
	}()
	go func() {
		defer s.watchers.Done()
		defer close(out)
		q.pump(wctx, out)
	}()
	return out
}

type watcher struct {
	s *Supervisor
	q *eventQueue

	mu   sync.Mutex
	conn *dbus.Conn // the current signal connection
}

// run connects, subscribes, reconciles and forwards signals, reconnecting
// until ctx ends.
func (w *watcher) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		sigs, err := w.connect(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		w.forward(ctx, sigs)
		w.closeConn()
	}
	w.closeConn()
}

// connect dials a connection of the watcher's own, adds the matches and
// subscribes to systemd's unit signals.
func (w *watcher) connect(ctx context.Context) (chan *dbus.Signal, error) {
	cctx, cancel := context.WithTimeout(ctx, w.s.opts.CallTimeout)
	defer cancel()
	conn, err := w.s.dialBus(cctx)
	if err != nil {
		return nil, err
	}
	// Large, so that godbus rarely has to fall back to its per-signal
	// goroutines (which would lose ordering); godbus closes it on a drop.
	sigs := make(chan *dbus.Signal, 1024)
	conn.Signal(sigs)
	matches := [][]dbus.MatchOption{
		{dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(unitPathRoot), dbus.WithMatchArg(0, unitIfc)},
		{dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(unitPathRoot), dbus.WithMatchArg(0, serviceIfc)},
		{dbus.WithMatchInterface(managerIfc), dbus.WithMatchMember("UnitRemoved"), dbus.WithMatchObjectPath(systemdPath)},
	}
	for _, m := range matches {
		if err := conn.AddMatchSignalContext(cctx, m...); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if err := conn.Object(systemdDest, systemdPath).CallWithContext(cctx, managerIfc+".Subscribe", 0).Err; err != nil {
		conn.Close()
		return nil, err
	}
	w.mu.Lock()
	w.conn = conn
	w.mu.Unlock()
	return sigs, nil
}

// forward reconciles, then moves signals into the queue until the
// connection drops or ctx ends.
func (w *watcher) forward(ctx context.Context, sigs chan *dbus.Signal) {
	if !w.reconcile(ctx) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case sig, ok := <-sigs:
			if !ok {
				return // godbus closed the channel: the connection dropped
			}
			if ev, ok := decodeSignal(sig); ok {
				w.q.push(ev)
			}
		case <-w.q.reconcile:
			if !w.reconcile(ctx) {
				return
			}
		}
	}
}

// reconcile lists every unit into the queue and ends with the marker. It
// reports false when the listing failed, which forces a reconnect.
func (w *watcher) reconcile(ctx context.Context) bool {
	units, err := w.s.List(ctx)
	if err != nil {
		return false
	}
	for _, u := range units {
		code, status := u.ExecMainCode, u.ExecMainStatus
		w.q.push(UnitEvent{
			VMID: u.VMID, Unit: u.Unit, ActiveState: u.ActiveState, SubState: u.SubState, Result: u.Result,
			ExecMainCode: &code, ExecMainStatus: &status, MainPID: u.MainPID, StatusText: u.StatusText,
		})
	}
	w.q.push(UnitEvent{Reconciled: true})
	return true
}

func (w *watcher) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// decodeSignal turns a systemd signal about an infinivirt-shim@ unit into
// an event; other signals, and changes that carry none of our fields, are
// skipped. The input comes from the bus, so every type is checked.
func decodeSignal(sig *dbus.Signal) (UnitEvent, bool) {
	if sig == nil {
		return UnitEvent{}, false
	}
	switch sig.Name {
	case managerIfc + ".UnitRemoved":
		if len(sig.Body) < 1 {
			return UnitEvent{}, false
		}
		unit, _ := sig.Body[0].(string)
		id, ok := VMIDFromUnit(unit)
		if !ok {
			return UnitEvent{}, false
		}
		return UnitEvent{VMID: id, Unit: unit, Removed: true}, true
	case "org.freedesktop.DBus.Properties.PropertiesChanged":
		path := string(sig.Path)
		if !strings.HasPrefix(path, unitPathPrefix) || len(sig.Body) < 2 {
			return UnitEvent{}, false
		}
		unit := pathBusUnescape(path[len(unitPathRoot)+1:])
		id, ok := VMIDFromUnit(unit)
		if !ok {
			return UnitEvent{}, false
		}
		iface, _ := sig.Body[0].(string)
		changed, _ := sig.Body[1].(map[string]dbus.Variant)
		if iface != unitIfc && iface != serviceIfc {
			return UnitEvent{}, false
		}
		p := variantValues(changed)
		ev := UnitEvent{VMID: id, Unit: unit}
		setString(&ev.ActiveState, p["ActiveState"])
		setString(&ev.SubState, p["SubState"])
		if iface == serviceIfc {
			setString(&ev.Result, p["Result"])
			setString(&ev.StatusText, p["StatusText"])
			if v, ok := p["ExecMainCode"].(int32); ok {
				ev.ExecMainCode = &v
			}
			if v, ok := p["ExecMainStatus"].(int32); ok {
				ev.ExecMainStatus = &v
			}
			if v, ok := p["MainPID"].(uint32); ok {
				ev.MainPID = v
			}
		}
		if ev.ActiveState == "" && ev.SubState == "" && ev.Result == "" && ev.StatusText == "" &&
			ev.ExecMainCode == nil && ev.ExecMainStatus == nil && ev.MainPID == 0 {
			return UnitEvent{}, false
		}
		return ev, true
	}
	return UnitEvent{}, false
}

// pathBusUnescape undoes sd_bus_path_encode's "_xx" hex escapes.
func pathBusUnescape(s string) string {
	if s == "_" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if hi, ok := unhex(s[i+1]); ok {
				if lo, ok := unhex(s[i+2]); ok {
					b.WriteByte(hi<<4 | lo)
					i += 2
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// eventQueue decouples signal reading from the consumer.
type eventQueue struct {
	mu      sync.Mutex
	buf     []UnitEvent
	max     int
	dropped bool
	drops   *dropCounter

	ready     chan struct{} // something was pushed
	reconcile chan struct{} // the queue drained after drops: list again
}

// push never blocks.
func (q *eventQueue) push(ev UnitEvent) {
	q.mu.Lock()
	if len(q.buf) >= q.max {
		q.dropped = true
		q.drops.n.Add(1)
		q.mu.Unlock()
		return
	}
	q.buf = append(q.buf, ev)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pump hands queued events to out in order until ctx ends.
func (q *eventQueue) pump(ctx context.Context, out chan<- UnitEvent) {
	for {
		q.mu.Lock()
		batch := q.buf
		q.buf = nil
		redo := len(batch) == 0 && q.dropped
		if redo {
			q.dropped = false
		}
		q.mu.Unlock()
		if redo {
			select {
			case q.reconcile <- struct{}{}:
			default:
			}
		}
		for _, ev := range batch {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return
		}
	}
}
