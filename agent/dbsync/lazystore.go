package dbsync

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// LazyStore opens the database in the background, retrying until it
// succeeds, so that an agent started while PostgreSQL is down still serves
// its VMs. Until then every call is Unavailable and the agent replays later.
type LazyStore struct {
	mu    sync.Mutex
	store Store
	ready chan struct{}
}

// NewLazyStore keeps calling open, with backoff, until it returns a store or ctx ends.
func NewLazyStore(ctx context.Context, open func(context.Context) (Store, error), log *slog.Logger) *LazyStore {
	l := &LazyStore{ready: make(chan struct{})}
	go func() {
		delay := storeRetryInitial
		for attempt := 0; ; attempt++ {
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			s, err := open(octx)
			cancel()
			if err == nil {
				l.mu.Lock()
				l.store = s
				l.mu.Unlock()
				close(l.ready)
				log.Info("database connected")
				return
			}
			if attempt == 0 {
				log.Warn("database unavailable; VMs keep running and rows will catch up", "ERROR", err.Error())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, storeRetryMax)
		}
	}()
	return l
}

// Ready is closed once the database is open.
func (l *LazyStore) Ready() <-chan struct{} { return l.ready }

func (l *LazyStore) get() (Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store == nil {
		return nil, errdefs.Unavailable("database not connected yet")
	}
	return l.store, nil
}

// UpsertVM writes the VM's row once the database is open; until then it
// is Unavailable.
func (l *LazyStore) UpsertVM(ctx context.Context, vm api.VM) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.UpsertVM(ctx, vm)
}

// ApplyEvents stores the VM's events once the database is open; until then
// it is Unavailable.
func (l *LazyStore) ApplyEvents(ctx context.Context, id string, evs []api.Event) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.ApplyEvents(ctx, id, evs)
}

// LastSeq reads the VM's last stored seq once the database is open; until
// then it is Unavailable.
func (l *LazyStore) LastSeq(ctx context.Context, id string) (uint64, error) {
	s, err := l.get()
	if err != nil {
		return 0, err
	}
	return s.LastSeq(ctx, id)
}

// MarkDeleted soft-deletes the VM once the database is open; until then it
// is Unavailable.
func (l *LazyStore) MarkDeleted(ctx context.Context, id string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.MarkDeleted(ctx, id)
}

// SyncSnapshots writes the VM's snapshots once the database is open; until
// then it is Unavailable.
func (l *LazyStore) SyncSnapshots(ctx context.Context, id string, snaps []api.Snapshot) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.SyncSnapshots(ctx, id, snaps)
}
