package agent

import (
	"sync"

	"github.com/infinibay/infinivirt/pkg/api"
)

// broker fans applied events out to API streams and waiters. A subscriber
// that falls behind is cut off (its channel closes) rather than slowing the
// agent; streams then resume from the VM's log.
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	vmID string // empty: every VM
	ch   chan api.Event
}

const subscriberBuffer = 512

func newBroker() *broker { return &broker{subs: map[*subscriber]struct{}{}} }

func (b *broker) subscribe(vmID string) *subscriber {
	s := &subscriber{vmID: vmID, ch: make(chan api.Event, subscriberBuffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

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
	for s := range b.subs {
		for _, e := range evs {
			if s.vmID != "" && s.vmID != e.VMID {
				continue
			}
			select {
			case s.ch <- e:
			default:
				delete(b.subs, s)
				close(s.ch)
			}
			if _, ok := b.subs[s]; !ok {
				break
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
