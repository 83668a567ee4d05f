package agenttest

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Store is the database as pkg/store keeps it: a VM row created with the
// VM's view and later moved only by newer status events, and events stored
// once per (vm, seq), so a replay adds nothing twice. It implements
// agent.Store.
type Store struct {
	mu        sync.Mutex
	vms       map[string]api.VM
	events    map[string]map[uint64]api.Event
	snapshots map[string][]api.Snapshot
	deleted   map[string]bool
	handed    int // events passed to ApplyEvents, repeats included
	down      bool
}

// NewStore is an empty, reachable database.
func NewStore() *Store {
	return &Store{
		vms: map[string]api.VM{}, events: map[string]map[uint64]api.Event{},
		snapshots: map[string][]api.Snapshot{}, deleted: map[string]bool{},
	}
}

// SetDown makes every call fail Unavailable, as during an outage, or
// ends the outage.
func (s *Store) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *Store) check() error {
	if s.down {
		return errdefs.Unavailable("database unreachable")
	}
	return nil
}

// UpsertVM creates the VM's row from vm, or updates an existing row but
// for its status, which only events move.
func (s *Store) UpsertVM(ctx context.Context, vm api.VM) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	if old, ok := s.vms[vm.ID]; ok {
		// Only events move an existing row's status.
		vm.Status, vm.Reason, vm.Message, vm.Seq, vm.QEMUPID = old.Status, old.Reason, old.Message, old.Seq, old.QEMUPID
	}
	s.vms[vm.ID] = vm
	return nil
}

// ApplyEvents stores evs once per seq and moves the row's status to the
// newest status event past it. A VM without a row is NotFound.
func (s *Store) ApplyEvents(ctx context.Context, vmID string, evs []api.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	vm, ok := s.vms[vmID]
	if !ok {
		return errdefs.NotFound("VM %s has no row", vmID)
	}
	if s.events[vmID] == nil {
		s.events[vmID] = map[uint64]api.Event{}
	}
	for _, e := range evs {
		s.handed++
		s.events[vmID][e.Seq] = e
		if e.IsStatus() && e.Seq > vm.Seq {
			vm.Status, vm.Reason, vm.Message, vm.Seq, vm.QEMUPID = e.Status, e.Reason, e.Message, e.Seq, e.RunningPID()
		}
	}
	s.vms[vmID] = vm
	return nil
}

// LastSeq is the highest seq of the VM's stored events; the row's seq does
// not count, as in the real store.
func (s *Store) LastSeq(ctx context.Context, vmID string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return 0, err
	}
	var last uint64
	for seq := range s.events[vmID] {
		last = max(last, seq)
	}
	return last, nil
}

// MarkDeleted soft-deletes the VM: its row and events stay.
func (s *Store) MarkDeleted(ctx context.Context, vmID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	s.deleted[vmID] = true
	return nil
}

// SyncSnapshots makes the VM's snapshots the set given. A VM without a
// row is NotFound.
func (s *Store) SyncSnapshots(ctx context.Context, vmID string, snaps []api.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	if _, ok := s.vms[vmID]; !ok {
		return errdefs.NotFound("VM %s has no row", vmID)
	}
	s.snapshots[vmID] = slices.Clone(snaps)
	return nil
}

// SetSnapshots puts rows in place as an earlier agent left them.
func (s *Store) SetSnapshots(vmID string, snaps []api.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots[vmID] = slices.Clone(snaps)
}

// Snapshots are the VM's stored snapshots.
func (s *Store) Snapshots(vmID string) []api.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.snapshots[vmID])
}

// Events are the VM's stored events, by seq.
func (s *Store) Events(vmID string) []api.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Event, 0, len(s.events[vmID]))
	for _, e := range s.events[vmID] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Seqs are the sequence numbers of the VM's stored events, in order.
func (s *Store) Seqs(vmID string) []uint64 {
	var out []uint64
	for _, e := range s.Events(vmID) {
		out = append(out, e.Seq)
	}
	return slices.Clip(out)
}

// VM is the VM's row.
func (s *Store) VM(vmID string) (api.VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vm, ok := s.vms[vmID]
	return vm, ok
}

// Deleted reports whether the VM's row is marked deleted.
func (s *Store) Deleted(vmID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleted[vmID]
}

// Handed counts every event ever passed to ApplyEvents, repeats included.
func (s *Store) Handed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handed
}
