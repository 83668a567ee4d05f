package shim

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// recorder keeps what a shim would write to its log.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) record(e api.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e.Message)
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// A burst of one guest event is two entries: the first at once, its repeats
// counted in one when the window ends. Other kinds are apart, and closing
// records what is still open.
func TestGuestBurstsCoalesceRepeats(t *testing.T) {
	r := &recorder{}
	g := newGuestBursts(time.Hour, r.record)
	t0 := time.Now()
	for i := range 57 {
		g.add("RESET", t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	g.add("POWERDOWN", t0)
	if got := r.messages(); !slices.Equal(got, []string{"RESET", "POWERDOWN"}) {
		t.Fatalf("during the burst: %q", got)
	}
	g.flush("RESET", g.open["RESET"])
	g.add("RESET", t0.Add(time.Minute))
	g.add("RESET", t0.Add(time.Minute+time.Second))
	g.close()
	g.add("RESET", t0.Add(2*time.Minute))
	want := []string{"RESET", "POWERDOWN", "RESET repeated 56 times in 5.6s", "RESET", "RESET repeated 1 times in 1s"}
	if got := r.messages(); !slices.Equal(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
}

// The window's end records the repeats by itself.
func TestGuestBurstEndsWithItsWindow(t *testing.T) {
	r := &recorder{}
	g := newGuestBursts(10*time.Millisecond, r.record)
	for range 3 {
		g.add("RESET", time.Now())
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.messages()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.messages(); len(got) != 2 || !strings.HasPrefix(got[1], "RESET repeated 2 times") {
		t.Errorf("recorded %q, want RESET and its 2 repeats", got)
	}
}

// Ten guest resets within a minute begin a loop, reported once; a quiet
// spell ends it; a stopped watch reports nothing.
func TestResetLoopWatch(t *testing.T) {
	w := &resetLoopWatch{quietFor: 20 * time.Millisecond}
	var started, ended atomic.Int32
	t0 := time.Now()
	add := func(i int) {
		w.add(t0.Add(time.Duration(i)*time.Second), func() { started.Add(1) }, func() { ended.Add(1) })
	}
	for i := range guestResetLoopCount - 1 {
		add(i)
	}
	if started.Load() != 0 {
		t.Fatal("a loop began before its tenth reset")
	}
	add(guestResetLoopCount)
	add(guestResetLoopCount + 1)
	if started.Load() != 1 {
		t.Fatalf("the loop began %d times, want once", started.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for ended.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if ended.Load() != 1 {
		t.Fatalf("the loop ended %d times, want once", ended.Load())
	}
	w.stop()
	for i := range 2 * guestResetLoopCount {
		add(100 + i)
	}
	if started.Load() != 1 {
		t.Error("a stopped watch reported a loop")
	}
}
