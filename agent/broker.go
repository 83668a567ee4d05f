package agent

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// broker fans applied events out to API streams and waiters. A subscriber
// that falls behind is cut off (its channel closes) rather than slowing the
// agent; streams then resume from the VM's log, or from the broker's ring.
//
// Every publication gets a host-wide number, counted from the agent's
// start. The last ringSize of them are kept, so that the stream of every VM
// resumes from a cursor without reading a single log.
type broker struct {
	mu    sync.Mutex
	subs  map[*subscriber]struct{}
	epoch string // names this run of the agent in its cursors
	n     uint64 // publications so far
	ring  [ringSize]StreamEvent
}

// ringSize is how many publications the stream of every VM can resume
// from: minutes of a busy host's events at a few hundred bytes each.
const ringSize = 4096

// StreamEvent is an event as the broker published it. N is its host-wide
// number, the position a cursor names; zero on events replayed from a log.
type StreamEvent struct {
	N uint64
	api.Event
}

type subscriber struct {
	vmID string // empty: every VM
	ch   chan StreamEvent
}

const subscriberBuffer = 512

func newBroker() *broker {
	return &broker{subs: map[*subscriber]struct{}{}, epoch: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

func (b *broker) subscribe(vmID string) *subscriber {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subscribeLocked(vmID)
}

func (b *broker) subscribeLocked(vmID string) *subscriber {
	s := &subscriber{vmID: vmID, ch: make(chan StreamEvent, subscriberBuffer)}
	b.subs[s] = struct{}{}
	return s
}

// subscribeAfter follows every VM from cursor on: it returns what was
// published after the cursor and a subscription for everything later, with
// nothing between them. A cursor of another run of the agent, or older than
// the ring, cannot be honoured and is refused.
func (b *broker) subscribeAfter(c Cursor) ([]StreamEvent, *subscriber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case c.Epoch != b.epoch:
		return nil, nil, cursorLost("cursor %s is from an earlier run of the agent", c)
	case c.N > b.n:
		return nil, nil, errdefs.Invalid("after", "cursor %s is ahead of the stream, which is at %s", c, b.cursorLocked())
	case b.n-c.N > ringSize:
		return nil, nil, cursorLost("cursor %s is %d events behind, and the agent keeps the last %d", c, b.n-c.N, ringSize)
	}
	missed := make([]StreamEvent, 0, b.n-c.N)
	for n := c.N + 1; n <= b.n; n++ {
		missed = append(missed, b.ring[n%ringSize])
	}
	return missed, b.subscribeLocked(""), nil
}

// cursorLost refuses a cursor whose events the broker no longer has.
func cursorLost(format string, args ...any) error {
	return &errdefs.Error{Code: errdefs.CodeFailedPrecondition, Field: "after",
		Message: fmt.Sprintf(format, args...) + "; resume with each VM's last sequence (id:seq,...) or list the VMs again"}
}

// subscribeHead follows every VM from now on, and says where now is.
func (b *broker) subscribeHead() (*subscriber, Cursor) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subscribeLocked(""), b.cursorLocked()
}

func (b *broker) cursorLocked() Cursor { return Cursor{Epoch: b.epoch, N: b.n} }

func (b *broker) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

func (b *broker) publish(evs []api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range evs {
		b.n++
		se := StreamEvent{N: b.n, Event: e}
		b.ring[b.n%ringSize] = se
		for s := range b.subs {
			if s.vmID != "" && s.vmID != e.VMID {
				continue
			}
			select {
			case s.ch <- se:
			default:
				delete(b.subs, s)
				close(s.ch)
			}
		}
	}
}

// closeVM ends every stream of a deleted VM.
func (b *broker) closeVM(vmID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.vmID == vmID {
			delete(b.subs, s)
			close(s.ch)
		}
	}
}
