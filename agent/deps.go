package agent

import (
	"context"
	"syscall"

	"github.com/infinibay/infinivirt/agent/dbsync"
	"github.com/infinibay/infinivirt/agent/netpolicy"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/supervisor"
)

// The agent's dependencies are interfaces so that its logic can be tested
// without root: agent/agenttest has fakes of each, which model behaviour
// (a started unit runs a shim that holds the VM's event log) rather than
// record calls.

// Units is what the agent needs from systemd. supervisor.Manager is the real
// one.
type Units interface {
	Start(ctx context.Context, u supervisor.UnitSpec) error
	Stop(ctx context.Context, vmID string) error
	Kill(ctx context.Context, vmID string, sig syscall.Signal) error
	ResetFailed(ctx context.Context, vmID string) error
	State(ctx context.Context, vmID string) (supervisor.UnitState, error)
	List(ctx context.Context) ([]supervisor.UnitState, error)
	Watch(ctx context.Context) <-chan supervisor.UnitEvent
}

// Store is the PostgreSQL aggregate, which agent/dbsync keeps up to date.
// A nil Store is the embedded default: no database, everything else the
// same.
type Store = dbsync.Store

// Shim is one VM's shim, spoken to over its control socket;
// shimclient.Client is the real one.
type Shim interface {
	Status(ctx context.Context) (shimapi.Status, error)
	Power(ctx context.Context, op api.PowerOp) (shimapi.Status, error)
	Console(ctx context.Context) ([]byte, error)
	Events(ctx context.Context, after uint64, fn func(api.Event) error) error
	// Exchange carries any other verb of the route table (see ShimCall).
	Exchange(ctx context.Context, method, target string, body []byte) ([]byte, error)
	Close()
}

// Network is the host's bridges and TAP devices; HostNetwork (pkg/netdev)
// is the real one.
type Network = netpolicy.Network

// HostNetwork is the host's own network, through netlink.
type HostNetwork = netpolicy.HostNetwork

// FirewallKernel is where firewall rules are enforced; netpolicy.HostKernel
// (the host's nftables) is the real one.
type FirewallKernel = netpolicy.Kernel

// dialShim is the real Config.Shims: the control socket the VM's shim
// listens on.
func dialShim(socket string) Shim { return shimclient.NewClient(socket) }
