// Package netpolicy is the agent's side of the host's network: the firewall
// mode every shim gets, department and VM firewalls applied to the kernel
// and persisted, and the bridges VMs sit on. One lock serialises every
// rule change on the host.
package netpolicy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// callTimeout bounds one firewall batch, probe or read-back.
const callTimeout = 20 * time.Second

// Engine programs the kernel's rules; *firewall.Firewall is the real one.
type Engine interface {
	Mode() firewall.Mode
	ApplyVM(ctx context.Context, d firewall.Department, v firewall.VM) error
	ApplyDepartment(ctx context.Context, d firewall.Department, vms []firewall.VM) error
	Resync(ctx context.Context, d firewall.Department, vms []firewall.VM) error
	Prune(ctx context.Context) error
	VMRuleset(ctx context.Context, vmID string) (string, error)
	Counters(ctx context.Context, vmID, nic string) (map[string]uint64, error)
}

// Kernel is where the rules are enforced; HostKernel is the host's
// nftables.
type Kernel interface {
	Probe(ctx context.Context) (firewall.Capabilities, error)
	Open(ctx context.Context, opts firewall.Options) (Engine, error)
}

// HostKernel is the host's own nftables.
type HostKernel struct{}

// Probe finds what the host's kernel offers the bridge family.
func (HostKernel) Probe(ctx context.Context) (firewall.Capabilities, error) {
	return firewall.Probe(ctx)
}

// Open returns the host's firewall, probing the kernel unless opts.Caps is
// set.
func (HostKernel) Open(ctx context.Context, opts firewall.Options) (Engine, error) {
	f, err := firewall.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Network is the host's bridges and TAP devices; HostNetwork is the real
// one.
type Network interface {
	BridgeExists(ctx context.Context, name string) error
	ListBridges(ctx context.Context) ([]netdev.BridgeInfo, error)
	EnsureBridge(ctx context.Context, cfg netdev.BridgeConfig) (netdev.BridgeInfo, error)
	DeleteBridge(ctx context.Context, name string, opts netdev.DeleteBridgeOptions) error
	MoveTAP(ctx context.Context, tap, bridge string) error
}

// HostNetwork is the host's own network, through netlink.
type HostNetwork struct{}

// BridgeExists is nil for a bridge, and otherwise wraps
// netdev.ErrBridgeNotFound or netdev.ErrNotBridge.
func (HostNetwork) BridgeExists(ctx context.Context, name string) error {
	return netdev.BridgeExists(ctx, name)
}

// ListBridges reports the host's bridges, by name.
func (HostNetwork) ListBridges(ctx context.Context) ([]netdev.BridgeInfo, error) {
	return netdev.ListBridges(ctx)
}

// EnsureBridge creates or adopts the bridge and brings it to cfg.
func (HostNetwork) EnsureBridge(ctx context.Context, cfg netdev.BridgeConfig) (netdev.BridgeInfo, error) {
	return netdev.EnsureBridge(ctx, cfg)
}

// DeleteBridge deletes the bridge, refusing one with ports unless forced.
// A missing bridge is success.
func (HostNetwork) DeleteBridge(ctx context.Context, name string, opts netdev.DeleteBridgeOptions) error {
	return netdev.DeleteBridge(ctx, name, opts)
}

// MoveTAP attaches a running VM's TAP to another bridge.
func (HostNetwork) MoveTAP(ctx context.Context, tap, bridge string) error {
	return netdev.MoveTAP(ctx, tap, bridge)
}

// VM is one VM as the network policy sees it.
type VM struct {
	ID   string
	Spec *vmspec.Spec // read-only
	// Running: a shim runs the VM, so its rules are in the kernel.
	Running bool
}

// Registry is the agent's VMs.
type Registry interface {
	// VMs are the VMs the API shows, by id.
	VMs() []VM
	// IDs are every VM the agent holds, those being created included.
	IDs() []string
}

// Options wire a Policy.
type Options struct {
	Layout  vmspec.Layout
	Log     *slog.Logger
	Kernel  Kernel  // nil: HostKernel
	Network Network // nil: HostNetwork
	VMs     Registry
}

// Policy is the host's firewall and bridges as the agent manages them.
type Policy struct {
	layout vmspec.Layout
	log    *slog.Logger
	kernel Kernel
	net    Network
	vms    Registry

	// mu serialises every rule change on the host, and a department's
	// deletion with VMs joining it.
	mu     sync.Mutex
	engine Engine // nil when off
	mode   shimapi.FirewallMode
	caps   firewall.Capabilities
	reject bool
}

// New builds a policy; Start settles the firewall mode.
func New(o Options) *Policy {
	if o.Kernel == nil {
		o.Kernel = HostKernel{}
	}
	if o.Network == nil {
		o.Network = HostNetwork{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Policy{layout: o.Layout, log: o.Log, kernel: o.Kernel, net: o.Network, vms: o.VMs}
}

// Mode is the firewall mode every shim gets.
func (p *Policy) Mode() shimapi.FirewallMode { return p.mode }

// Reject reports whether the kernel can answer REJECT rules.
func (p *Policy) Reject() bool { return p.reject }
