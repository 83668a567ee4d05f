package supervisor

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkStartToReady measures Start of a Type=notify transient unit up to
// the shim's READY=1 (the start job's "done"), on the test bed's systemd.
func BenchmarkStartToReady(b *testing.B) {
	s := newSupervisor(b)
	ctx := testCtx(b)
	var total time.Duration
	for b.Loop() {
		spec := notifierSpec()
		t0 := time.Now()
		if err := s.Start(ctx, spec); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		if err := s.Stop(ctx, spec.VMID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
}

// BenchmarkWatchLatency measures the time from KillUnit (SIGKILL of the
// shim) to the watcher's event that shows the unit failed.
func BenchmarkWatchLatency(b *testing.B) {
	s := newSupervisor(b)
	ctx := testCtx(b)
	events := s.Watch(ctx)
	waitEvent(b, events, "marker", isMarker)
	var total time.Duration
	for b.Loop() {
		spec := notifierSpec()
		if err := s.Start(ctx, spec); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := s.Kill(ctx, spec.VMID, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		waitEvent(b, events, "failed", func(ev UnitEvent) bool { return ev.VMID == spec.VMID && ev.ActiveState == "failed" })
		total += time.Since(t0)
		if err := s.ResetFailed(ctx, spec.VMID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/event")
}
