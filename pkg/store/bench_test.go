package store

import (
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// BenchmarkApplyEventsStatus is the agent's common write: one status event.
func BenchmarkApplyEventsStatus(b *testing.B) {
	s := newStore(b)
	vm := testVM()
	if err := s.UpsertVM(ctxT(b), vm); err != nil {
		b.Fatal(err)
	}
	statuses := []api.Status{api.StatusRunning, api.StatusPaused}
	ctx := ctxT(b)
	seq := uint64(0)
	for b.Loop() {
		seq++
		ev := []api.Event{statusEvent(vm.ID, seq, statuses[seq%2], api.ReasonUser)}
		if err := s.ApplyEvents(ctx, vm.ID, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNotifyLatency measures from the moment ApplyEvents sends COMMIT
// to the moment Listen's callback sees the VM id.
func BenchmarkNotifyLatency(b *testing.B) {
	s := newStore(b)
	vm := testVM()
	if err := s.UpsertVM(ctxT(b), vm); err != nil {
		b.Fatal(err)
	}
	var committing time.Time
	s.beforeCommit = func() { committing = time.Now() }
	arrived := make(chan time.Time, 1)
	ch := listen(b, s)
	expectNext(b, ch, ResyncAll)
	go func() {
		for id := range ch {
			if id == vm.ID {
				arrived <- time.Now()
			}
		}
	}()

	ctx := ctxT(b)
	var lat []time.Duration
	seq := uint64(0)
	for b.Loop() {
		seq++
		st := api.StatusRunning
		if seq%2 == 0 {
			st = api.StatusPaused
		}
		if err := s.ApplyEvents(ctx, vm.ID, []api.Event{statusEvent(vm.ID, seq, st, api.ReasonUser)}); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-arrived:
			lat = append(lat, at.Sub(committing))
		case <-time.After(30 * time.Second):
			b.Fatal("no notification within 30 s")
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-p50/notify")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "µs-p99/notify")
}
