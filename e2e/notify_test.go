package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/store"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

type dbRow = store.Row

// notification is one NOTIFY infinivirt_vm and when it arrived.
type notification struct {
	vmID string
	at   time.Time
}

// listen subscribes to the agent's NOTIFY channel for the rest of the test.
func (bd *bed) listen(tb testing.TB) <-chan notification {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan notification, 1024)
	ready := make(chan struct{}, 1)
	// Listen runs until the cleanup cancels it; what it heard is in ch.
	go func() {
		_ = bd.db.Listen(ctx, func(id string) {
			if id == store.ResyncAll {
				select {
				case ready <- struct{}{}:
				default:
				}
				return
			}
			select {
			case ch <- notification{vmID: id, at: time.Now()}:
			default:
			}
		})
	}()
	tb.Cleanup(cancel)
	select {
	case <-ready:
	case <-time.After(time.Minute):
		tb.Fatal("LISTEN never connected")
	}
	return ch
}

func drain(ch <-chan notification) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// awaitNotify returns when the first NOTIFY arrived after which the VM's row
// satisfies ok.
func awaitNotify(tb testing.TB, ch <-chan notification, id string, ok func(dbRow) bool) time.Time {
	return awaitNotifyOf(tb, ch, id, shared.db.GetVM, ok)
}

// awaitSnapshotRows returns when the first NOTIFY arrived after which the
// VM's snapshot rows satisfy ok.
func awaitSnapshotRows(tb testing.TB, ch <-chan notification, id string, ok func([]api.Snapshot) bool) time.Time {
	return awaitNotifyOf(tb, ch, id, shared.db.Snapshots, ok)
}

// awaitNotifyOf returns when the first NOTIFY arrived after which what
// read gives of the VM satisfies ok.
func awaitNotifyOf[T any](tb testing.TB, ch <-chan notification, id string, read func(context.Context, string) (T, error), ok func(T) bool) time.Time {
	deadline := time.After(guestTimeout)
	for {
		select {
		case n := <-ch:
			if n.vmID != id {
				continue
			}
			v, err := read(context.Background(), id)
			if err == nil && ok(v) {
				return n.at
			}
		case <-deadline:
			tb.Fatalf("no NOTIFY for %s reached the expected rows", id)
		}
	}
}

// readEvents reads a VM's event log inside the host, from the machine's side.
func readEvents(bd *bed, id string, after uint64) ([]api.Event, error) {
	return eventlog.ReadFile(bd.host.Path(vmspec.DefaultLayout.EventsFile(id)), after)
}
