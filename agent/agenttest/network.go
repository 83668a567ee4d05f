package agenttest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// Network is the host's bridges and TAP devices in memory. It implements
// agent.Network.
type Network struct {
	mu      sync.Mutex
	bridges map[string]netdev.BridgeInfo
	taps    map[string]string // TAP -> bridge
	failTAP map[string]error  // MoveTAP to this bridge fails
}

// NewNetwork is a host with these bridges.
func NewNetwork(bridges ...string) *Network {
	n := &Network{bridges: map[string]netdev.BridgeInfo{}, taps: map[string]string{}, failTAP: map[string]error{}}
	for i, b := range bridges {
		n.bridges[b] = netdev.BridgeInfo{Name: b, Index: i + 2, MAC: netdev.BridgeMAC(b), MTU: 1500, Up: true}
	}
	return n
}

// PlugTAP attaches a TAP to a bridge, as a starting shim does.
func (n *Network) PlugTAP(tap, bridge string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.taps[tap] = bridge
}

// TAPBridge is the bridge a TAP is attached to, or "".
func (n *Network) TAPBridge(tap string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.taps[tap]
}

// FailMoveTo makes moving a TAP to bridge fail with err (nil: succeed again).
func (n *Network) FailMoveTo(bridge string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failTAP[bridge] = err
}

// BridgeExists fails with netdev.ErrBridgeNotFound, wrapped as netdev
// does, for a bridge the host lacks.
func (n *Network) BridgeExists(ctx context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.bridges[name]; !ok {
		return fmt.Errorf("link %q: %w", name, netdev.ErrBridgeNotFound)
	}
	return nil
}

// ListBridges reports every bridge by name, each with its attached TAPs.
func (n *Network) ListBridges(ctx context.Context) ([]netdev.BridgeInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]netdev.BridgeInfo, 0, len(n.bridges))
	for _, b := range n.bridges {
		b.Ports = n.portsLocked(b.Name)
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (n *Network) portsLocked(bridge string) []string {
	var ports []string
	for _, tap := range slices.Sorted(maps.Keys(n.taps)) {
		if n.taps[tap] == bridge {
			ports = append(ports, tap)
		}
	}
	return ports
}

// EnsureBridge creates the bridge, or brings an existing one to cfg: MAC,
// MTU, addresses added. Running it again changes nothing.
func (n *Network) EnsureBridge(ctx context.Context, cfg netdev.BridgeConfig) (netdev.BridgeInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, ok := n.bridges[cfg.Name]
	if !ok {
		b = netdev.BridgeInfo{Name: cfg.Name, Index: len(n.bridges) + 2, MTU: 1500, Up: true}
	}
	b.MAC = cfg.MAC
	if b.MAC == nil {
		b.MAC = netdev.BridgeMAC(cfg.Name)
	}
	if cfg.MTU != 0 {
		b.MTU = cfg.MTU
	}
	for _, a := range cfg.Addresses {
		if !slices.Contains(b.Addresses, a) {
			b.Addresses = append(b.Addresses, a)
		}
	}
	n.bridges[cfg.Name] = b
	b.Ports = n.portsLocked(cfg.Name)
	return b, nil
}

// DeleteBridge removes the bridge and, forced, the TAPs attached to it;
// with TAPs attached and no force it is FailedPrecondition. A missing bridge
// is already what was asked, as on the host.
func (n *Network) DeleteBridge(ctx context.Context, name string, opts netdev.DeleteBridgeOptions) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.bridges[name]; !ok {
		return nil
	}
	ports := n.portsLocked(name)
	if len(ports) > 0 && !opts.Force {
		return errdefs.FailedPrecondition("bridge %s has ports %v", name, ports)
	}
	for _, p := range ports {
		delete(n.taps, p)
	}
	delete(n.bridges, name)
	return nil
}

// MoveTAP attaches a plugged TAP to another bridge, or fails as FailMoveTo
// set for that bridge.
func (n *Network) MoveTAP(ctx context.Context, tap, bridge string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.failTAP[bridge]; err != nil {
		return err
	}
	if _, ok := n.bridges[bridge]; !ok {
		return fmt.Errorf("link %q: %w", bridge, netdev.ErrBridgeNotFound)
	}
	if _, ok := n.taps[tap]; !ok {
		return fmt.Errorf("link %q: no such TAP", tap)
	}
	n.taps[tap] = bridge
	return nil
}
