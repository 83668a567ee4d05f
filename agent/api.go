package agent

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
)

// Health reports how many VMs the agent holds, whether its database is in
// use and reachable, and the host's accelerator.
func (a *Agent) Health() api.Health {
	return api.Health{VMs: len(a.records()), Database: a.sync.State(), DatabaseLag: a.sync.Lag(), Accel: a.cfg.Accel}
}

// Console returns the tail of a VM's serial console, as its shim keeps it.
func (a *Agent) Console(ctx context.Context, id string) ([]byte, error) {
	rec, err := a.get(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	return a.shim(rec.id).Console(ctx)
}

// Subscribe follows the events the agent applies from now on: one VM's, or
// every VM's when id is empty. The channel closes when the VM is deleted or
// the reader falls behind (it should then resume from the VM's log with
// EventBacklog, or with StreamAll's cursor); cancel ends the subscription.
func (a *Agent) Subscribe(id string) (events <-chan StreamEvent, cancel func()) {
	sub := a.broker.subscribe(id)
	return sub.ch, func() { a.broker.unsubscribe(sub) }
}

// AllStream is the stream of every VM's events from a cursor: what the
// reader missed, then what follows, with no gap between.
type AllStream struct {
	Missed []StreamEvent
	Events <-chan StreamEvent
	// Seen is each VM's last sequence the reader had before Missed: an
	// event at or below it, or below one of Missed, is one it already has.
	Seen  map[string]uint64
	Close func()
}

// StreamAll follows every VM's events after a cursor (see Cursor; empty:
// from now on). A cursor it cannot honour is refused, never ignored.
func (a *Agent) StreamAll(after string) (*AllStream, error) {
	if after == "" {
		sub := a.broker.subscribe("")
		return a.allStream(nil, sub, nil), nil
	}
	c, err := ParseCursor(after)
	if err != nil {
		return nil, err
	}
	if c.Seqs == nil {
		missed, sub, err := a.broker.subscribeAfter(c)
		if err != nil {
			return nil, err
		}
		return a.allStream(missed, sub, nil), nil
	}
	// Subscribed before the logs are read: an entry in both is dropped from
	// the channel as seen.
	sub, head := a.broker.subscribeHead()
	missed, err := a.missedSince(c.Seqs)
	if err != nil {
		a.broker.unsubscribe(sub)
		return nil, err
	}
	// Every publication up to head is in the logs read: the last of them
	// carries head, so that a reader resumes from the ring afterwards.
	if len(missed) > 0 {
		missed[len(missed)-1].N = head.N
	}
	return a.allStream(missed, sub, c.Seqs), nil
}

func (a *Agent) allStream(missed []StreamEvent, sub *subscriber, seen map[string]uint64) *AllStream {
	st := &AllStream{Missed: missed, Events: sub.ch, Seen: map[string]uint64{}, Close: func() { a.broker.unsubscribe(sub) }}
	maps.Copy(st.Seen, seen)
	return st
}

// missedSince reads what each VM's log holds after the cursor's sequence
// for it, every VM the cursor does not name from its first entry, merged in
// time order and each VM's in sequence order. A VM the cursor names that no
// longer exists gets a deleted entry.
func (a *Agent) missedSince(seqs map[string]uint64) ([]StreamEvent, error) {
	var logs [][]api.Event
	for _, rec := range a.records() {
		evs, err := eventlog.ReadFile(a.cfg.Layout.EventsFile(rec.id), seqs[rec.id])
		if err != nil {
			return nil, errdefs.Internal("read VM %s's event log: %v", rec.id, err)
		}
		logs = append(logs, evs)
	}
	for _, id := range slices.Sorted(maps.Keys(seqs)) {
		if _, err := a.get(id); err != nil {
			logs = append(logs, []api.Event{{VMID: id, Seq: seqs[id] + 1, Time: time.Now().UTC(), Type: api.EventProgress, Message: "deleted"}})
		}
	}
	return mergeByTime(logs), nil
}

// mergeByTime interleaves logs by time, keeping each one's order.
func mergeByTime(logs [][]api.Event) []StreamEvent {
	var out []StreamEvent
	for {
		best := -1
		for i, l := range logs {
			if len(l) > 0 && (best < 0 || l[0].Time.Before(logs[best][0].Time)) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, StreamEvent{Event: logs[best][0]})
		logs[best] = logs[best][1:]
	}
}

// EventBacklog reads a VM's event log after sequence number after.
func (a *Agent) EventBacklog(id string, after uint64) ([]api.Event, error) {
	if _, err := a.get(id); err != nil {
		return nil, err
	}
	evs, err := eventlog.ReadFile(a.cfg.Layout.EventsFile(id), after)
	if err != nil {
		return nil, errdefs.Internal("read the VM's event log: %v", err)
	}
	return evs, nil
}

// StreamEpoch names this run of the agent in the stream's cursors.
func (a *Agent) StreamEpoch() string { return a.broker.epoch }
