package dbsync

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

var _ Store = (*agenttest.Store)(nil)

const (
	vmID      = "11111111-1111-4111-8111-111111111111"
	waitLimit = 30 * time.Second // a deadline for a hung test, not a measure of speed
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testLayout(t *testing.T) vmspec.Layout {
	t.Helper()
	dir := t.TempDir()
	l := vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}
	if err := os.MkdirAll(l.VMDir(vmID), 0o711); err != nil {
		t.Fatal(err)
	}
	return l
}

// logEntries appends n progress entries to the VM's log and returns them.
func logEntries(t *testing.T, l vmspec.Layout, n int) []api.Event {
	t.Helper()
	log, err := eventlog.Open(t.Context(), l.EventsFile(vmID), vmID)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var out []api.Event
	for range n {
		e, err := log.Append(api.Event{Type: api.EventProgress, Message: "step"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func view(id string) (api.VM, bool) {
	return api.VM{ID: id, Name: "vm", Status: api.StatusOff}, id == vmID
}

// An outage delays rows; once the database answers again, the log is
// replayed after what it holds, in order, nothing lost.
func TestOutageDelaysButLosesNothing(t *testing.T) {
	l := testLayout(t)
	store := agenttest.NewStore()
	store.SetDown(true)
	s := New(store, l, quiet, Views{VM: view})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	if got := s.State(); got != api.DatabaseOK {
		t.Errorf("state before any write: %s", got)
	}

	logEntries(t, l, 4)
	s.Resync(vmID)
	if !agenttest.WaitFor(waitLimit, func() bool { return s.State() == api.DatabaseUnavailable }) {
		t.Fatal("a failed write never showed as unavailable")
	}
	// Entries pushed during the outage are not lost either.
	s.Push(vmID, logEntries(t, l, 3))

	store.SetDown(false)
	s.Resync(vmID) // as the agent does on its next change; the backoff would get there too
	if !agenttest.WaitFor(waitLimit, func() bool { return len(store.Events(vmID)) == 7 && s.State() == api.DatabaseOK }) {
		t.Fatalf("after the outage: stored %v, state %s", store.Seqs(vmID), s.State())
	}
	if got := store.Seqs(vmID); !slices.Equal(got, seqRange(1, 7)) {
		t.Errorf("stored %v, want 1..7", got)
	}

	// A deleted VM's row is marked, and nothing more is replayed for it.
	s.MarkDeleted(vmID)
	if !agenttest.WaitFor(waitLimit, func() bool { return store.Deleted(vmID) }) {
		t.Error("the deletion never reached the database")
	}
}

func TestNoDatabase(t *testing.T) {
	s := New(nil, testLayout(t), quiet, Views{VM: view})
	if s.Enabled() || s.State() != api.DatabaseNone {
		t.Errorf("without a store: enabled %v, state %s", s.Enabled(), s.State())
	}
	s.Push(vmID, []api.Event{{Seq: 1}})
	s.Resync(vmID)
	s.MarkDeleted(vmID)
	s.Run(t.Context()) // returns at once
}

// A LazyStore answers Unavailable until its database opens, then passes
// every call on, and says when it connected.
func TestLazyStore(t *testing.T) {
	release := make(chan struct{})
	inner := agenttest.NewStore()
	lazy := NewLazyStore(t.Context(), func(ctx context.Context) (Store, error) {
		select {
		case <-release:
			return inner, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, quiet)
	err := lazy.UpsertVM(t.Context(), api.VM{ID: vmID})
	if e := errdefs.As(err); e.Code != errdefs.CodeUnavailable {
		t.Fatalf("before connecting: %v, want Unavailable", err)
	}
	close(release)
	select {
	case <-lazy.Ready():
	case <-time.After(waitLimit):
		t.Fatal("never connected")
	}
	if err := lazy.UpsertVM(t.Context(), api.VM{ID: vmID, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if err := lazy.ApplyEvents(t.Context(), vmID, []api.Event{{Seq: 3, Type: api.EventProgress}}); err != nil {
		t.Fatal(err)
	}
	if seq, err := lazy.LastSeq(t.Context(), vmID); err != nil || seq != 3 {
		t.Errorf("LastSeq through the lazy store: %d, %v", seq, err)
	}
}

// The lag shows an outage from its first failed write, with the VMs it
// holds back, and clears once the retries alone have caught up.
func TestLagShowsAnOutage(t *testing.T) {
	l := testLayout(t)
	store := agenttest.NewStore()
	s := New(store, l, quiet, Views{VM: view})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	if lag := s.Lag(); lag == nil || lag.Since != nil || lag.PendingVMs != 0 || lag.Seconds != 0 {
		t.Fatalf("lag before any write: %+v", lag)
	}
	store.SetDown(true)
	before := time.Now()
	logEntries(t, l, 2)
	s.Resync(vmID)
	var lag *api.DatabaseLag
	if !agenttest.WaitFor(waitLimit, func() bool { lag = s.Lag(); return lag.Since != nil && lag.PendingVMs == 1 }) {
		t.Fatalf("the outage never showed in the lag: %+v", lag)
	}
	if lag.Since.Before(before.Add(-time.Second)) || lag.Seconds < 0 {
		t.Errorf("lag %+v: since before the outage began at %s", lag, before)
	}
	store.SetDown(false) // no new change: the retry writes it
	if !agenttest.WaitFor(waitLimit, func() bool { lag = s.Lag(); return lag.Since == nil && lag.PendingVMs == 0 }) {
		t.Fatalf("the lag never cleared: %+v", lag)
	}
	if got := store.Seqs(vmID); !slices.Equal(got, seqRange(1, 2)) {
		t.Errorf("stored %v, want 1..2", got)
	}
	if storeRetryMax > 2*time.Second {
		t.Errorf("a database back from an outage waits up to %s for its catch-up", storeRetryMax)
	}
}

func TestNoDatabaseHasNoLag(t *testing.T) {
	if lag := New(nil, testLayout(t), quiet, Views{VM: view}).Lag(); lag != nil {
		t.Errorf("lag without a database: %+v", lag)
	}
}
