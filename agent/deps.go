package agent

import (
	"context"
	"syscall"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/supervisor"
)

// Units is what the agent needs from systemd. supervisor.Manager is the real
// one; unit tests of pure logic may use a fake beside them.
type Units interface {
	Start(ctx context.Context, u supervisor.UnitSpec) error
	Stop(ctx context.Context, vmID string) error
	Kill(ctx context.Context, vmID string, sig syscall.Signal) error
	ResetFailed(ctx context.Context, vmID string) error
	State(ctx context.Context, vmID string) (supervisor.UnitState, error)
	List(ctx context.Context) ([]supervisor.UnitState, error)
	Watch(ctx context.Context) <-chan supervisor.UnitEvent
}

// Store is the PostgreSQL aggregate. A nil Store is the embedded default:
// no database, everything else the same.
type Store interface {
	UpsertVM(ctx context.Context, vm api.VM) error
	ApplyEvents(ctx context.Context, vmID string, events []api.Event) error
	LastSeq(ctx context.Context, vmID string) (uint64, error)
	MarkDeleted(ctx context.Context, vmID string) error
}
