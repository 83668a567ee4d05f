package agent

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// storeSync carries VM inventory and events into the database. Writes are
// idempotent per (vm, seq), so whenever one fails the VM is marked for a
// resync: read the database's last seq, replay the log after it. A database
// outage therefore delays rows but never loses or reorders them.
type storeSync struct {
	store  Store
	layout vmspec.Layout
	log    *slog.Logger
	view   func(id string) (api.VM, bool)

	mu      sync.Mutex
	pending map[string][]api.Event
	dirty   map[string]bool // replay from the log
	deleted map[string]bool
	wake    chan struct{}
	down    bool // the last write failed; log the outage once
}

const (
	storeCallTimeout = 10 * time.Second
	storeRetryMin    = 500 * time.Millisecond
	storeRetryMax    = 30 * time.Second
)

func newStoreSync(store Store, layout vmspec.Layout, log *slog.Logger) *storeSync {
	return &storeSync{
		store: store, layout: layout, log: log,
		pending: map[string][]api.Event{},
		dirty:   map[string]bool{},
		deleted: map[string]bool{},
		wake:    make(chan struct{}, 1),
	}
}

func (s *storeSync) enabled() bool { return s.store != nil }

func (s *storeSync) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *storeSync) push(id string, evs []api.Event) {
	if !s.enabled() {
		return
	}
	s.mu.Lock()
	s.pending[id] = append(s.pending[id], evs...)
	s.mu.Unlock()
	s.kick()
}

// resync writes the VM's inventory and replays its log after the
// database's last seq.
func (s *storeSync) resync(id string) {
	if !s.enabled() {
		return
	}
	s.mu.Lock()
	s.dirty[id] = true
	delete(s.pending, id)
	s.mu.Unlock()
	s.kick()
}

func (s *storeSync) markDeleted(id string) {
	if !s.enabled() {
		return
	}
	s.mu.Lock()
	s.deleted[id] = true
	delete(s.dirty, id)
	delete(s.pending, id)
	s.mu.Unlock()
	s.kick()
}

func (s *storeSync) run(ctx context.Context) {
	if !s.enabled() {
		return
	}
	retry := storeRetryMin
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
			retry, timer = storeRetryMin, nil
			continue
		}
		timer = time.After(retry)
		retry = min(retry*2, storeRetryMax)
	}
}

// drain writes everything queued; it reports false if something must be retried.
func (s *storeSync) drain(ctx context.Context) bool {
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
		switch {
		case deleted[id]:
			s.deleted[id] = true
		case !s.deleted[id]:
			s.dirty[id] = true
		}
		s.mu.Unlock()
	}
	for id := range deleted {
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
		if err := s.call(ctx, func(c context.Context) error { return s.store.ApplyEvents(c, id, evs) }); err != nil {
			failed(id, err)
		}
	}
	if ok {
		s.mu.Lock()
		if s.down {
			s.log.Info("database writes caught up")
		}
		s.down = false
		s.mu.Unlock()
	}
	return ok
}

func (s *storeSync) replay(ctx context.Context, id string) error {
	vm, ok := s.view(id)
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
	if err != nil || len(evs) == 0 {
		return err
	}
	return s.call(ctx, func(c context.Context) error { return s.store.ApplyEvents(c, id, evs) })
}

func (s *storeSync) call(ctx context.Context, fn func(context.Context) error) error {
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
