// Package dbsync carries the agent's VM inventory, events and snapshots
// into the database. The VMs' event logs are the truth; the database
// follows them, so an outage delays rows but never loses or reorders them.
package dbsync

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Store is the PostgreSQL aggregate (pkg/store). Its writes are idempotent
// per (vm, seq).
type Store interface {
	UpsertVM(ctx context.Context, vm api.VM) error
	ApplyEvents(ctx context.Context, vmID string, events []api.Event) error
	LastSeq(ctx context.Context, vmID string) (uint64, error)
	MarkDeleted(ctx context.Context, vmID string) error
	// SyncSnapshots makes the VM's snapshot rows the set given.
	SyncSnapshots(ctx context.Context, vmID string, snaps []api.Snapshot) error
}

// Views are the agent's current view of its VMs, which a resync writes.
type Views struct {
	// VM is the VM's view, false once it is deleted.
	VM func(id string) (api.VM, bool)
	// Snapshots lists the VM's snapshots as its disks hold them; nil
	// writes none.
	Snapshots func(ctx context.Context, id string) ([]api.Snapshot, error)
}

// Syncer carries VM inventory and events into the database. Writes are
// idempotent per (vm, seq), so whenever one fails the VM is marked for a
// resync: read the database's last seq, replay the log after it.
type Syncer struct {
	store  Store
	layout vmspec.Layout
	log    *slog.Logger
	views  Views

	mu      sync.Mutex
	pending map[string][]api.Event
	dirty   map[string]bool // replay from the log
	deleted map[string]bool
	wake    chan struct{}
	down    bool // the last write failed; log the outage once
	// behind is when the database fell behind the logs: the first failed
	// write of an outage; zero while it keeps up.
	behind time.Time

	// written is the newest seq of each VM this syncer wrote, touched only
	// by drain: a push of entries a replay already read from the log is
	// not written twice.
	written map[string]uint64
}

const (
	storeCallTimeout  = 10 * time.Second
	storeRetryInitial = 500 * time.Millisecond
	// storeRetryMax keeps the catch-up prompt: a database back from an
	// outage is written within this of its return, however long it was
	// away. A retry of a database that refuses connections costs little.
	storeRetryMax = 2 * time.Second
	// snapshotListTimeout bounds reading a VM's snapshots from its disks.
	snapshotListTimeout = time.Minute
)

// New is a syncer into store (nil: no database, every call a no-op) of
// what views show; the VMs' logs are read where layout says.
func New(store Store, layout vmspec.Layout, log *slog.Logger, views Views) *Syncer {
	return &Syncer{
		store: store, layout: layout, log: log, views: views,
		pending: map[string][]api.Event{},
		dirty:   map[string]bool{},
		deleted: map[string]bool{},
		written: map[string]uint64{},
		wake:    make(chan struct{}, 1),
	}
}

// Enabled reports whether a database is configured.
func (s *Syncer) Enabled() bool { return s.store != nil }

// State reports how the database fares: none configured, ok, or
// unavailable since the last write failed.
func (s *Syncer) State() api.DatabaseState {
	if !s.Enabled() {
		return api.DatabaseNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return api.DatabaseUnavailable
	}
	return api.DatabaseOK
}

// Lag says how far the database is behind the VMs' logs; nil without one.
func (s *Syncer) Lag() *api.DatabaseLag {
	if !s.Enabled() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vms := map[string]bool{}
	for _, m := range []map[string]bool{s.dirty, s.deleted} {
		for id := range m {
			vms[id] = true
		}
	}
	for id := range s.pending {
		vms[id] = true
	}
	lag := &api.DatabaseLag{PendingVMs: len(vms)}
	if !s.behind.IsZero() {
		since := s.behind.UTC()
		lag.Since, lag.Seconds = &since, time.Since(s.behind).Seconds()
	}
	return lag
}

func (s *Syncer) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Push queues a VM's new log entries, in sequence order.
func (s *Syncer) Push(id string, evs []api.Event) {
	if !s.Enabled() {
		return
	}
	s.mu.Lock()
	s.pending[id] = append(s.pending[id], evs...)
	s.mu.Unlock()
	s.kick()
}

// Resync writes the VM's inventory, replays its log after the database's
// last seq and writes its snapshots: after any change of them, and for
// every VM when the agent starts, which removes rows of snapshots that went
// while the agent or the database was away.
func (s *Syncer) Resync(id string) {
	if !s.Enabled() {
		return
	}
	s.mu.Lock()
	s.dirty[id] = true
	delete(s.pending, id)
	s.mu.Unlock()
	s.kick()
}

// MarkDeleted marks a deleted VM's row.
func (s *Syncer) MarkDeleted(id string) {
	if !s.Enabled() {
		return
	}
	s.mu.Lock()
	s.deleted[id] = true
	delete(s.dirty, id)
	delete(s.pending, id)
	s.mu.Unlock()
	s.kick()
}

// Run writes what is queued until ctx ends, retrying with backoff.
func (s *Syncer) Run(ctx context.Context) {
	if !s.Enabled() {
		return
	}
	retry := storeRetryInitial
	var timer <-chan time.Time
	// A store opened in the background (LazyStore) says when it connects:
	// replay then, rather than at the end of a backoff grown while it was away.
	var connected <-chan struct{}
	if l, ok := s.store.(interface{ Ready() <-chan struct{} }); ok {
		connected = l.Ready()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer:
		case <-connected:
			connected = nil
		}
		if s.drain(ctx) {
			retry, timer = storeRetryInitial, nil
			continue
		}
		timer = time.After(retry)
		retry = min(retry*2, storeRetryMax)
	}
}

// drain writes everything queued; it reports false if something must be retried.
func (s *Syncer) drain(ctx context.Context) bool {
	s.mu.Lock()
	pending, dirty, deleted := s.pending, s.dirty, s.deleted
	s.pending, s.dirty, s.deleted = map[string][]api.Event{}, map[string]bool{}, map[string]bool{}
	s.mu.Unlock()

	ok := true
	// failed queues the VM again: its deletion, or a replay from its log
	// (unless it was deleted meanwhile).
	failed := func(id string, err error) {
		ok = false
		s.mu.Lock()
		if !s.down {
			s.log.Warn("database write failed; will replay from the event logs", logging.KeyVM, id, "ERROR", err.Error())
		}
		s.down = true
		if s.behind.IsZero() {
			s.behind = time.Now()
		}
		switch {
		case deleted[id]:
			s.deleted[id] = true
		case !s.deleted[id]:
			s.dirty[id] = true
		}
		s.mu.Unlock()
	}
	for id := range deleted {
		delete(s.written, id)
		if err := s.call(ctx, func(c context.Context) error { return s.store.MarkDeleted(c, id) }); err != nil {
			failed(id, err)
		}
	}
	for _, id := range sortedKeys(dirty) {
		if err := s.replay(ctx, id); err != nil {
			failed(id, err)
		}
	}
	for id, evs := range pending {
		if dirty[id] || deleted[id] {
			continue
		}
		evs = s.unwritten(id, evs)
		if len(evs) == 0 {
			continue
		}
		if err := s.call(ctx, func(c context.Context) error { return s.store.ApplyEvents(c, id, evs) }); err != nil {
			failed(id, err)
			continue
		}
		s.noteWritten(id, evs)
	}
	if ok {
		s.mu.Lock()
		if s.down {
			s.log.Info("database writes caught up", "BEHIND_SECONDS", time.Since(s.behind).Seconds())
		}
		s.down = false
		s.behind = time.Time{}
		s.mu.Unlock()
	}
	return ok
}

func (s *Syncer) replay(ctx context.Context, id string) error {
	vm, ok := s.views.VM(id)
	if !ok {
		return nil // deleted meanwhile
	}
	if err := s.call(ctx, func(c context.Context) error { return s.store.UpsertVM(c, vm) }); err != nil {
		return err
	}
	var last uint64
	if err := s.call(ctx, func(c context.Context) (err error) { last, err = s.store.LastSeq(c, id); return }); err != nil {
		return err
	}
	evs, err := eventlog.ReadFile(s.layout.EventsFile(id), last)
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		if err := s.call(ctx, func(c context.Context) error { return s.store.ApplyEvents(c, id, evs) }); err != nil {
			return err
		}
	}
	s.written[id] = last
	s.noteWritten(id, evs)
	// Last, so that a snapshot the database refuses never holds back status.
	return s.syncSnapshots(ctx, id)
}

// unwritten drops the entries of evs this syncer already wrote.
func (s *Syncer) unwritten(id string, evs []api.Event) []api.Event {
	w := s.written[id]
	i := 0
	for i < len(evs) && evs[i].Seq <= w {
		i++
	}
	return evs[i:]
}

// noteWritten records the newest of evs, written in sequence order.
func (s *Syncer) noteWritten(id string, evs []api.Event) {
	if n := len(evs); n > 0 && evs[n-1].Seq > s.written[id] {
		s.written[id] = evs[n-1].Seq
	}
}

// syncSnapshots writes the VM's snapshots. When its disks cannot be read
// the rows stay as they are until the next resync: that is no database
// failure to retry.
func (s *Syncer) syncSnapshots(ctx context.Context, id string) error {
	if s.views.Snapshots == nil {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, snapshotListTimeout)
	snaps, err := s.views.Snapshots(lctx, id)
	cancel()
	if err != nil {
		// A VM deleted meanwhile has no snapshots to write.
		if ctx.Err() == nil && errdefs.As(err).Code != errdefs.CodeNotFound {
			s.log.Warn("cannot read the snapshots to write to the database", logging.KeyVM, id, "ERROR", err.Error())
		}
		return nil
	}
	return s.call(ctx, func(c context.Context) error { return s.store.SyncSnapshots(c, id, snaps) })
}

func (s *Syncer) call(ctx context.Context, fn func(context.Context) error) error {
	c, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	return fn(c)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
