package shim

import (
	"fmt"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// A guest stuck in a loop (resetting several times a second, a disk that
// errors on every request) would write an entry, and a database row, per
// event. So repeats are coalesced: the first event of a kind is recorded at
// once; the repeats that follow within guestBurstWindow are counted and
// recorded as one entry when the window ends ("RESET repeated 57 times in
// 9.8s"). A kind then writes at most two entries per window.
const guestBurstWindow = 10 * time.Second

// guestBursts coalesces repeated guest events. record writes one entry.
type guestBursts struct {
	window time.Duration
	record func(api.Event)

	mu     sync.Mutex
	open   map[string]*guestBurst // by message
	closed bool
}

type guestBurst struct {
	repeats     int
	first, last time.Time
	timer       *time.Timer
}

func newGuestBursts(window time.Duration, record func(api.Event)) *guestBursts {
	return &guestBursts{window: window, record: record, open: map[string]*guestBurst{}}
}

// add takes a guest event of the given message at time at (QEMU's).
func (g *guestBursts) add(msg string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if b, ok := g.open[msg]; ok {
		b.repeats++
		b.last = at
		return
	}
	b := &guestBurst{first: at, last: at}
	g.open[msg] = b
	g.record(api.Event{Type: api.EventGuest, Time: at, Message: msg})
	b.timer = time.AfterFunc(g.window, func() { g.flush(msg, b) })
}

// flush ends a burst, recording its repeats, if any.
func (g *guestBursts) flush(msg string, b *guestBurst) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[msg] != b {
		return // flushed already
	}
	delete(g.open, msg)
	g.recordRepeats(msg, b)
}

// recordRepeats writes the one entry that counts a burst's repeats.
func (g *guestBursts) recordRepeats(msg string, b *guestBurst) {
	if b.repeats > 0 {
		g.record(api.Event{Type: api.EventGuest, Time: b.last,
			Message: fmt.Sprintf("%s repeated %d times in %s", msg, b.repeats, b.last.Sub(b.first).Round(time.Millisecond))})
	}
}

// close records every open burst's repeats now, before the VM's last
// entries, and takes no more events.
func (g *guestBursts) close() {
	g.mu.Lock()
	g.closed = true
	bursts := g.open
	g.open = map[string]*guestBurst{}
	g.mu.Unlock()
	for msg, b := range bursts {
		b.timer.Stop()
		g.recordRepeats(msg, b)
	}
}

// Outside installs, guestResetLoopCount resets by the guest within
// guestResetLoopWindow are a reset loop. The VM then reads running with
// reason reset-loop, until it has gone guestResetQuiet without a reset.
// (An install's loop fails the install instead: see onGuestReset.)
const (
	guestResetLoopCount  = 10
	guestResetLoopWindow = time.Minute
	guestResetQuiet      = time.Minute
)

// resetLoopWatch tells a guest's reset loop, outside installs.
type resetLoopWatch struct {
	quietFor time.Duration // 0: guestResetQuiet

	mu      sync.Mutex
	resets  *resetWindow
	looping bool
	quiet   *time.Timer
	stopped bool
}

// add takes a guest reset at at. It calls started when a loop begins, and
// ended once the guest has gone quiet after one.
func (w *resetLoopWatch) add(at time.Time, started func(), ended func()) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	if w.resets == nil {
		w.resets = &resetWindow{count: guestResetLoopCount, window: guestResetLoopWindow}
	}
	loop := w.resets.add(at)
	begins := loop && !w.looping
	if w.quiet != nil {
		w.quiet.Stop()
	}
	if loop || w.looping {
		w.looping = true
		quiet := w.quietFor
		if quiet == 0 {
			quiet = guestResetQuiet
		}
		w.quiet = time.AfterFunc(quiet, func() {
			w.mu.Lock()
			was := w.looping && !w.stopped
			w.looping, w.resets = false, nil
			w.mu.Unlock()
			if was {
				ended()
			}
		})
	}
	w.mu.Unlock()
	if begins {
		started()
	}
}

// stop ends the watch: no loop is reported after it.
func (w *resetLoopWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.quiet != nil {
		w.quiet.Stop()
	}
}
