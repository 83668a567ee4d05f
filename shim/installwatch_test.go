package shim

import (
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestResetWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	// A Windows install: a reset every few minutes is never a loop.
	w := newResetWindow()
	for i := range 10 {
		if w.add(t0.Add(time.Duration(i) * 2 * time.Minute)) {
			t.Fatalf("reset %d, two minutes apart, counted as a loop", i+1)
		}
	}
	// A boot loop: the fifth reset within five minutes is one.
	w = newResetWindow()
	for i := range resetLoopCount {
		loop := w.add(t0.Add(time.Duration(i) * 10 * time.Second))
		if loop != (i == resetLoopCount-1) {
			t.Fatalf("reset %d: loop=%v", i+1, loop)
		}
	}
	if w.total != resetLoopCount {
		t.Fatalf("total %d", w.total)
	}
	// Resets that age out of the window no longer count.
	w = newResetWindow()
	for i := range resetLoopCount - 1 {
		w.add(t0.Add(time.Duration(i) * time.Second))
	}
	if w.add(t0.Add(resetLoopWindow + time.Second)) {
		t.Fatal("a reset after the window counted the old ones")
	}
	// Missing or out-of-order timestamps never shrink the window.
	w = newResetWindow()
	w.add(t0.Add(time.Minute))
	for range resetLoopCount - 2 {
		w.add(time.Time{})
	}
	if !w.add(t0) {
		t.Fatal("resets without usable timestamps escaped the count")
	}
}

func TestInstallDeadline(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	i := &vmspec.Install{State: api.InstallRunning, TimeoutSec: 600, StartedAt: now.Add(-4 * time.Minute)}
	if d := installDeadline(i, now); d != 6*time.Minute {
		t.Errorf("4 of 10 minutes gone: %s left", d)
	}
	i.StartedAt = now.Add(-time.Hour)
	if d := installDeadline(i, now); d != 0 {
		t.Errorf("long past: %s left", d)
	}
	i.StartedAt = time.Time{}
	if d := installDeadline(i, now); d != 10*time.Minute {
		t.Errorf("no start time: %s left", d)
	}
	i.StartedAt = now.Add(time.Hour) // a clock that went backwards
	if d := installDeadline(i, now); d != 10*time.Minute {
		t.Errorf("start in the future: %s left", d)
	}
}
