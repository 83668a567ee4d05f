package dbsync

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/store"
	"github.com/infinibay/infinivirt/pkg/testbed/postgres"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

var _ Store = (*store.Store)(nil)

// snapshotSet is the agent's list of one VM's snapshots, as a test moves it.
type snapshotSet struct {
	mu    sync.Mutex
	snaps []api.Snapshot
	err   error
}

func (s *snapshotSet) set(snaps ...api.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snaps = snaps
}

func (s *snapshotSet) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *snapshotSet) list(_ context.Context, id string) ([]api.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != vmID {
		return nil, errdefs.NotFound("no VM %s", id)
	}
	return append([]api.Snapshot(nil), s.snaps...), s.err
}

func snapshotOf(name string, current bool) api.Snapshot {
	return api.Snapshot{
		ID: uuid.NewString(), VMID: vmID, Name: name, CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
		PowerState: api.StatusOff, Disks: []string{"disk0"}, IsCurrent: current,
	}
}

// startSyncer runs a syncer of the set into st for the rest of the test,
// or until stop.
func startSyncer(t *testing.T, st Store, l vmspec.Layout, set *snapshotSet) (s *Syncer, stop func()) {
	t.Helper()
	s = New(st, l, quiet, Views{VM: view, Snapshots: set.list})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

// notifications LISTENs for the rest of the test; it returns once LISTEN
// is active.
func notifications(t *testing.T, st *store.Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan string, 256)
	ready := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Listen(ctx, func(id string) {
			if id == store.ResyncAll {
				select {
				case ready <- struct{}{}:
				default:
				}
				return
			}
			ch <- id
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(waitLimit):
		t.Fatal("LISTEN never became active")
	}
	return ch
}

// expectNotify waits for the VM's next NOTIFY, after which its rows must
// be want.
func expectNotify(t *testing.T, st *store.Store, ch <-chan string, what string, want []api.Snapshot) {
	t.Helper()
	select {
	case id := <-ch:
		if id != vmID {
			t.Fatalf("%s: NOTIFY for %q, want %s", what, id, vmID)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s: no NOTIFY", what)
	}
	if got := storedSnapshots(t, st); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: rows\n%+v\nwant\n%+v", what, got, want)
	}
}

func storedSnapshots(t *testing.T, st *store.Store) []api.Snapshot {
	t.Helper()
	got, err := st.Snapshots(t.Context(), vmID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		return nil
	}
	for i := range got {
		got[i].CreatedAt = got[i].CreatedAt.UTC()
	}
	return got
}

func openStore(t *testing.T, c *postgres.Cluster) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), c.DSN(), store.Options{Host: "host-a", ReconnectDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// Against PostgreSQL: each snapshot change the agent resyncs is the rows
// and one NOTIFY; while the database is down the agent's calls return at
// once and the rows catch up when it is back; an agent that starts
// removes the rows of snapshots that went while it was away.
func TestSnapshotsReachPostgreSQL(t *testing.T) {
	c := postgres.New(t)
	st := openStore(t, c)
	ch := notifications(t, st)
	set := &snapshotSet{}
	l := testLayout(t)
	logEntries(t, l, 1)
	s, stop := startSyncer(t, st, l, set)

	s.Resync(vmID)
	expectNotify(t, st, ch, "the VM's first row", nil)

	first := snapshotOf("first", true)
	set.set(first)
	s.Resync(vmID)
	expectNotify(t, st, ch, "take", []api.Snapshot{first})

	second := snapshotOf("second", true)
	first.IsCurrent = false
	set.set(first, second)
	s.Resync(vmID)
	expectNotify(t, st, ch, "take another", []api.Snapshot{first, second})

	first.IsCurrent, second.IsCurrent = true, false
	set.set(first, second)
	s.Resync(vmID)
	expectNotify(t, st, ch, "revert", []api.Snapshot{first, second})

	set.set(first)
	s.Resync(vmID)
	expectNotify(t, st, ch, "delete", []api.Snapshot{first})

	// An outage: the change waits, the syncer says the database is away.
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	third := snapshotOf("third", true)
	first.IsCurrent = false
	set.set(first, third)
	s.Resync(vmID) // never waits for the database
	if !agenttest.WaitFor(waitLimit, func() bool { return s.State() == api.DatabaseUnavailable }) {
		t.Fatal("the outage never showed")
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	want := []api.Snapshot{first, third}
	if !agenttest.WaitFor(time.Minute, func() bool {
		got, err := st.Snapshots(t.Context(), vmID)
		return err == nil && len(got) == 2 && s.State() == api.DatabaseOK
	}) {
		t.Fatalf("the rows never caught up: state %s", s.State())
	}
	if got := storedSnapshots(t, st); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the outage: rows\n%+v\nwant\n%+v", got, want)
	}

	// The agent stops; snapshot third goes while it is away. The next
	// agent's resync at start removes its row.
	stop()
	ch = notifications(t, st)
	first.IsCurrent = true
	set.set(first)
	s, _ = startSyncer(t, st, l, set)
	s.Resync(vmID)
	expectNotify(t, st, ch, "reconcile at start", []api.Snapshot{first})
}

// Disks that cannot be read are no database failure: the rows stay, the
// database is not reported away, and the VM's log still goes in.
func TestUnreadableSnapshotsAreNoOutage(t *testing.T) {
	db := agenttest.NewStore()
	set := &snapshotSet{}
	first := snapshotOf("first", true)
	set.set(first)
	l := testLayout(t)
	logEntries(t, l, 1)
	s, _ := startSyncer(t, db, l, set)
	s.Resync(vmID)
	if !agenttest.WaitFor(waitLimit, func() bool { return len(db.Snapshots(vmID)) == 1 }) {
		t.Fatal("the snapshots never reached the database")
	}

	set.fail(errors.New("qemu-img: Could not open disk0.qcow2"))
	set.set()
	logEntries(t, l, 2)
	s.Resync(vmID)
	if !agenttest.WaitFor(waitLimit, func() bool { return len(db.Events(vmID)) == 3 }) {
		t.Fatalf("the log never reached the database: %v", db.Seqs(vmID))
	}
	if got := db.Snapshots(vmID); !reflect.DeepEqual(got, []api.Snapshot{first}) || s.State() != api.DatabaseOK {
		t.Errorf("after a failed read: rows %+v, state %s", got, s.State())
	}
}
