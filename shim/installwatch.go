package shim

import (
	"time"

	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Reset-loop detection. A Windows install reboots the guest three or four
// times, minutes apart; Ubuntu and Fedora once or never. An installer that
// cannot boot (a missing driver, a bad ISO, a triple fault) resets every few
// seconds. So resetLoopCount guest resets within resetLoopWindow is a loop:
// the install fails at once instead of running out its timeout.
const (
	resetLoopCount  = 5
	resetLoopWindow = 5 * time.Minute
)

// resetWindow counts guest resets within a sliding window.
type resetWindow struct {
	count  int
	window time.Duration
	times  []time.Time // the resets still within the window, oldest first
	total  int
}

func newResetWindow() *resetWindow {
	return &resetWindow{count: resetLoopCount, window: resetLoopWindow}
}

// add records a guest reset at t and reports whether count of them now fall
// within the window. Times come from QEMU's events, so they only grow; a
// zero time (QEMU sent none) counts as the previous one.
func (w *resetWindow) add(t time.Time) bool {
	w.total++
	if n := len(w.times); n > 0 && t.Before(w.times[n-1]) {
		t = w.times[n-1]
	}
	w.times = append(w.times, t)
	for len(w.times) > 0 && t.Sub(w.times[0]) >= w.window {
		w.times = w.times[1:]
	}
	return len(w.times) >= w.count
}

// installDeadline is how long the installer run may still take at now: its
// timeout counted from when the agent started the run, or from now when the
// spec has no start time.
func installDeadline(i *vmspec.Install, now time.Time) time.Duration {
	start := i.StartedAt
	if start.IsZero() || start.After(now) {
		start = now
	}
	return max(0, start.Add(i.Timeout()).Sub(now))
}
