package agent

import (
	"context"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// record is the agent's view of one VM: its spec and the status its event
// log ends with.
type record struct {
	id string
	// op serialises lifecycle operations (create, start, power, delete) on
	// one VM; it is a channel so that waiting honours a context.
	op chan struct{}

	mu          sync.Mutex
	spec        *vmspec.Spec // replaced whole by updateSpec; read it with currentSpec
	committed   bool         // visible through the API and the database
	status      api.Status
	reason      api.Reason
	message     string
	seq         uint64
	qemuPID     int
	updatedAt   time.Time
	following   bool // a goroutine follows the shim's event stream
	followAgain bool // follow was called while it did: look again when done
	health      health
	probing     bool // a health check is under way
	// specProblem says why the VM's spec could not be read; its spec is
	// then a stand-in with only the id, and the view says spec-unreadable.
	specProblem string
}

func newRecord(spec *vmspec.Spec) *record {
	return &record{
		id:        spec.ID,
		spec:      spec,
		op:        make(chan struct{}, 1),
		status:    api.StatusOff,
		reason:    api.ReasonCreated,
		updatedAt: spec.CreatedAt,
	}
}

// lock takes the VM's operation lock or gives up when ctx ends.
func (r *record) lock(ctx context.Context) (unlock func(), err error) {
	// A select would pick at random between a free lock and an ended ctx.
	if err := ctx.Err(); err != nil {
		return nil, errdefs.FailedPrecondition("VM %s: %v", r.id, err)
	}
	select {
	case r.op <- struct{}{}:
		return func() { <-r.op }, nil
	case <-ctx.Done():
		return nil, errdefs.FailedPrecondition("VM %s is busy with another operation", r.id)
	}
}

// applyLocked folds entries into the view and returns those it had not seen.
func (r *record) applyLocked(evs []api.Event) []api.Event {
	var fresh []api.Event
	for _, e := range evs {
		if e.Seq <= r.seq {
			continue
		}
		r.seq = e.Seq
		fresh = append(fresh, e)
		if !e.IsStatus() {
			continue
		}
		r.status, r.reason, r.message, r.updatedAt = e.Status, e.Reason, e.Message, e.Time
		r.qemuPID = e.RunningPID()
	}
	return fresh
}

// currentSpec is the VM's spec as last saved; treat it as read-only. The
// pointer is replaced (never the spec changed in place) by updateSpec.
func (r *record) currentSpec() *vmspec.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec
}

// specReadable refuses what needs the VM's spec when it could not be read.
func (r *record) specReadable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.specProblem != "" {
		return errdefs.FailedPrecondition("VM %s: %s; it can be powered off and deleted, nothing else", r.id, r.specProblem)
	}
	return nil
}

func (r *record) isCommitted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed
}

func (r *record) setCommitted(c bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed = c
}

func (r *record) lastSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

func (r *record) currentStatus() api.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *record) view() api.VM {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.spec.View()
	v.Status, v.Reason, v.Message = r.status, r.reason, r.message
	v.Seq, v.QEMUPID, v.UpdatedAt = r.seq, r.qemuPID, r.updatedAt
	if r.specProblem != "" {
		v.Status, v.Reason, v.Message = api.StatusError, api.ReasonSpecUnreadable, r.specProblem
	}
	r.respondingLocked(&v)
	return v
}
