package agent

import (
	"context"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
)

// Health reports how many VMs the agent holds, whether its database is in
// use and reachable, and the host's accelerator.
func (a *Agent) Health() api.Health {
	return api.Health{VMs: len(a.records()), Database: a.sync.State(), Accel: a.cfg.Accel}
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
// EventBacklog); cancel ends the subscription.
func (a *Agent) Subscribe(id string) (events <-chan api.Event, cancel func()) {
	sub := a.broker.subscribe(id)
	return sub.ch, func() { a.broker.unsubscribe(sub) }
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
