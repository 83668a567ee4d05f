package agent

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
)

// reader is a consumer of the stream of every VM: what it has of each VM,
// and the cursor it would resume from.
type reader struct {
	t      *testing.T
	got    map[string][]uint64
	cursor string
}

// take reads st, missed entries first, until done says it has enough.
func (r *reader) take(st *AllStream, epoch string, done func() bool) {
	r.t.Helper()
	see := func(e StreamEvent) {
		st.Seen[e.VMID] = e.Seq
		r.got[e.VMID] = append(r.got[e.VMID], e.Seq)
		if e.N != 0 {
			r.cursor = Cursor{Epoch: epoch, N: e.N}.String()
		}
	}
	for _, e := range st.Missed {
		see(e)
	}
	deadline := time.After(waitLimit)
	for !done() {
		select {
		case e, open := <-st.Events:
			if !open {
				r.t.Fatal("the stream ended")
			}
			if e.Seq > st.Seen[e.VMID] {
				see(e)
			}
		case <-deadline:
			r.t.Fatalf("the stream never had enough; it has %v", r.got)
		}
	}
}

// has reports whether the reader has every entry of the VM's log.
func (r *reader) has(b *bed, id string) func() bool {
	return func() bool {
		evs, err := eventlog.ReadFile(b.layout.EventsFile(id), 0)
		return err == nil && len(evs) > 0 && len(r.got[id]) >= len(evs)
	}
}

// wholeLog checks the reader has each entry of the VM's log once, in order.
func (r *reader) wholeLog(b *bed, id string) {
	r.t.Helper()
	evs, err := eventlog.ReadFile(b.layout.EventsFile(id), 0)
	if err != nil {
		r.t.Fatal(err)
	}
	if want := seqs(1, evs[len(evs)-1].Seq); !slices.Equal(r.got[id], want) {
		r.t.Errorf("the stream gave %s %v, want its whole log %v once each", id[:4], r.got[id], want)
	}
}

func both(fs ...func() bool) func() bool {
	return func() bool {
		for _, f := range fs {
			if !f() {
				return false
			}
		}
		return true
	}
}

// A reader of every VM that disconnects and resumes from its cursor misses
// nothing and gets nothing twice: from the ring while the agent runs, and
// after an agent restart, which refuses the old cursor, from each VM's last
// sequence.
func TestAllVMStreamResumesAfterADisconnect(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	r := &reader{t: t, got: map[string][]uint64{}}
	st, err := a.StreamAll("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	r.take(st, a.StreamEpoch(), r.has(b, vm1))
	st.Close()

	// While the reader is away: vm1 pauses, vm2 is made.
	if err := b.host.Shim(vm1).Record(api.StatusPaused, api.ReasonUser, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(t.Context(), createInput(vm2, false)); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "paused", status(api.StatusPaused, api.ReasonUser))
	st, err = a.StreamAll(r.cursor)
	if err != nil {
		t.Fatalf("resume from %s: %v", r.cursor, err)
	}
	r.take(st, a.StreamEpoch(), both(r.has(b, vm1), r.has(b, vm2)))
	st.Close()
	r.wholeLog(b, vm1)
	r.wholeLog(b, vm2)

	// The agent restarts, vm2 is deleted, and vm1 resumes.
	stop()
	a, _ = b.start(b.config())
	if err := b.host.Shim(vm1).Record(api.StatusRunning, api.ReasonUser, ""); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "resumed", status(api.StatusRunning, api.ReasonUser))
	if err := a.Delete(t.Context(), vm2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StreamAll(r.cursor); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) {
		t.Fatalf("a cursor of the agent's earlier run: %v, want FailedPrecondition", err)
	}
	last := func(id string) uint64 { return r.got[id][len(r.got[id])-1] }
	st, err = a.StreamAll(fmt.Sprintf("%s:%d,%s:%d", vm1, last(vm1), vm2, last(vm2)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deleted := false
	for _, e := range st.Missed {
		deleted = deleted || e.VMID == vm2 && e.Message == "deleted"
	}
	if !deleted {
		t.Errorf("no deleted entry for vm2 among %+v", st.Missed)
	}
	delete(r.got, vm2)
	r.take(st, a.StreamEpoch(), r.has(b, vm1))
	r.wholeLog(b, vm1)
	if r.cursor == "" || st.Missed[len(st.Missed)-1].N == 0 {
		t.Error("the replay's last entry carries no cursor to resume from")
	}
}
