package netdev

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// BridgeConfig is the state EnsureBridge brings a bridge to.
type BridgeConfig struct {
	Name string
	// MAC is fixed on the bridge, so it never follows its ports' addresses.
	// Empty means BridgeMAC(Name), which is stable across re-creations.
	MAC net.HardwareAddr
	// MTU 0 keeps the current MTU (1500 for a new bridge).
	MTU int
	// Addresses the bridge must carry, host bits included (10.0.0.1/24).
	// Addresses it has beyond these are left alone.
	Addresses []netip.Prefix
}

// BridgeInfo is what ListBridges and EnsureBridge report about a bridge.
type BridgeInfo struct {
	Name      string           `json:"name"`
	Index     int              `json:"index"`
	MAC       net.HardwareAddr `json:"-"` // written as "mac" in its colon form
	MTU       int              `json:"mtu"`
	Up        bool             `json:"up"`    // administratively up
	Ports     []string         `json:"ports"` // attached links, sorted
	Addresses []netip.Prefix   `json:"addresses"`
}

// MarshalJSON writes MAC in its colon form, 52:54:00:12:34:56:
// net.HardwareAddr has no text form, so encoding/json would write base64.
func (b BridgeInfo) MarshalJSON() ([]byte, error) {
	type plain BridgeInfo
	return json.Marshal(struct {
		plain
		MAC string `json:"mac"`
	}{plain(b), b.MAC.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (b *BridgeInfo) UnmarshalJSON(data []byte) error {
	type plain BridgeInfo
	var v struct {
		plain
		MAC string `json:"mac"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = BridgeInfo(v.plain)
	if v.MAC != "" {
		mac, err := net.ParseMAC(v.MAC)
		if err != nil {
			return fmt.Errorf("netdev: bridge MAC: %w", err)
		}
		b.MAC = mac
	}
	return nil
}

// DeleteBridgeOptions changes how DeleteBridge treats a bridge in use.
type DeleteBridgeOptions struct {
	// Force deletes the bridge even with ports attached; they are detached,
	// not deleted.
	Force bool
}

// BridgeMAC derives a bridge's address from its name: locally administered,
// unicast, and the same every time.
func BridgeMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("infinivirt bridge " + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfc | 0x02
	return mac
}

// BridgeExists returns nil when name is a bridge, and otherwise a LinkError
// with ErrBridgeNotFound or ErrNotBridge.
func BridgeExists(ctx context.Context, name string) error {
	c, err := dialFor(ctx, "name", name)
	if err != nil {
		return err
	}
	defer c.close()
	_, err = c.bridge(name)
	return err
}

// EnsureBridge creates the bridge, or adopts the existing one, and brings
// it to cfg: fixed MAC, MTU, addresses, up. Running it again changes
// nothing. A link of another kind under that name is refused.
func EnsureBridge(ctx context.Context, cfg BridgeConfig) (BridgeInfo, error) {
	mac, err := cfg.check()
	if err != nil {
		return BridgeInfo{}, err
	}
	c, err := dial(ctx)
	if err != nil {
		return BridgeInfo{}, err
	}
	defer c.close()

	br, err := c.bridge(cfg.Name)
	created := false
	if errors.Is(err, ErrBridgeNotFound) {
		br, created, err = c.createBridge(cfg.Name, mac, cfg.MTU)
	}
	var info BridgeInfo
	if err == nil {
		info, err = c.configureBridge(br, cfg, mac)
	}
	if err != nil && created && br != nil {
		// A bridge this call made is not left half configured.
		c.armCleanup()
		_ = c.h.LinkDel(br)
	}
	return info, err
}

// configureBridge brings an existing bridge to cfg and reports it.
func (c *conn) configureBridge(br *netlink.Bridge, cfg BridgeConfig, mac net.HardwareAddr) (BridgeInfo, error) {
	// Setting the address, even on a bridge made elsewhere, marks it as
	// chosen by the user, and from then on the kernel keeps it.
	if !bytes.Equal(br.HardwareAddr, mac) {
		if err := c.step(cfg.Name, "set address "+mac.String(), func() error { return c.h.LinkSetHardwareAddr(br, mac) }); err != nil {
			return BridgeInfo{}, err
		}
	}
	if cfg.MTU != 0 && br.MTU != cfg.MTU {
		if err := c.step(cfg.Name, fmt.Sprintf("set MTU %d", cfg.MTU), func() error { return c.h.LinkSetMTU(br, cfg.MTU) }); err != nil {
			return BridgeInfo{}, err
		}
	}
	if br.Flags&net.FlagUp == 0 {
		if err := c.step(cfg.Name, "set up", func() error { return c.h.LinkSetUp(br) }); err != nil {
			return BridgeInfo{}, err
		}
	}
	if err := c.ensureAddrs(br, cfg.Addresses); err != nil {
		return BridgeInfo{}, err
	}
	return c.bridgeInfo(cfg.Name)
}

func (cfg BridgeConfig) check() (net.HardwareAddr, error) {
	if err := validLinkName(cfg.Name); err != nil {
		return nil, errdefs.Invalid("name", "%v", err)
	}
	mac := cfg.MAC
	if len(mac) == 0 {
		mac = BridgeMAC(cfg.Name)
	} else if err := validUnicastMAC(mac); err != nil {
		return nil, errdefs.Invalid("mac", "%v", err)
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > maxMTU) {
		return nil, errdefs.Invalid("mtu", "must be 0 (keep) or between %d and %d, got %d", minMTU, maxMTU, cfg.MTU)
	}
	for _, p := range cfg.Addresses {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
			return nil, errdefs.Invalid("addresses", "%v is not a usable interface address", p)
		}
	}
	return mac, nil
}

// step arms the socket and runs one request, wrapping its error.
func (c *conn) step(link, op string, run func() error) error {
	if err := c.arm(); err != nil {
		return c.fail(link, op, err)
	}
	if err := run(); err != nil {
		return c.fail(link, op, err)
	}
	return nil
}

// createBridge makes a bridge with its address fixed from the start. When a
// concurrent caller created it first, that bridge is adopted: created is
// then false.
func (c *conn) createBridge(name string, mac net.HardwareAddr, mtu int) (br *netlink.Bridge, created bool, err error) {
	attrs := netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: mtu}
	err = c.step(name, "create bridge", func() error { return c.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}) })
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, false, err
	}
	created = err == nil
	br, err = c.bridge(name)
	return br, created, err
}

// ensureAddrs adds the prefixes the bridge lacks.
func (c *conn) ensureAddrs(br *netlink.Bridge, want []netip.Prefix) error {
	if len(want) == 0 {
		return nil
	}
	have, err := c.addrs(br)
	if err != nil {
		return c.fail(br.Name, "list addresses", err)
	}
	for _, p := range want {
		if slices.ContainsFunc(have, func(a netlink.Addr) bool { return toPrefix(a) == p }) {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		err := c.step(br.Name, "add address "+p.String(), func() error { return c.h.AddrAdd(br, addr) })
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return nil
}

// DeleteBridge deletes the bridge. While ports are attached it refuses with
// ErrBridgeBusy unless forced. A missing bridge is success; a link of
// another kind is refused.
func DeleteBridge(ctx context.Context, name string, opts DeleteBridgeOptions) error {
	c, err := dialFor(ctx, "name", name)
	if err != nil {
		return err
	}
	defer c.close()
	br, err := c.bridge(name)
	if errors.Is(err, ErrBridgeNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !opts.Force {
		links, err := c.links()
		if err != nil {
			return c.fail(name, "list links", err)
		}
		if ports := portsOf(br.Index, links); len(ports) > 0 {
			return &LinkError{Link: name, Ports: ports, Err: ErrBridgeBusy}
		}
	}
	err = c.step(name, "delete bridge", func() error { return c.h.LinkDel(br) })
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// ListBridges reports every bridge in the current network namespace, by name.
func ListBridges(ctx context.Context) ([]BridgeInfo, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.listBridges()
}

func (c *conn) listBridges() ([]BridgeInfo, error) {
	links, err := c.links()
	if err != nil {
		return nil, c.fail("bridges", "list links", err)
	}
	addrs, err := c.addrs(nil)
	if err != nil {
		return nil, c.fail("bridges", "list addresses", err)
	}
	var out []BridgeInfo
	for _, l := range links {
		if _, ok := l.(*netlink.Bridge); !ok {
			continue
		}
		a := l.Attrs()
		info := BridgeInfo{
			Name: a.Name, Index: a.Index, MAC: a.HardwareAddr, MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Ports: portsOf(a.Index, links),
		}
		for _, ad := range addrs {
			if ad.LinkIndex == a.Index {
				if p := toPrefix(ad); p.IsValid() {
					info.Addresses = append(info.Addresses, p)
				}
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y BridgeInfo) int { return cmp.Compare(x.Name, y.Name) })
	return out, nil
}

// bridgeInfo reports one bridge; it reuses the full listing, whose dumps are
// retried, rather than a second way of reading the same data.
func (c *conn) bridgeInfo(name string) (BridgeInfo, error) {
	all, err := c.listBridges()
	if err != nil {
		return BridgeInfo{}, err
	}
	for _, b := range all {
		if b.Name == name {
			return b, nil
		}
	}
	return BridgeInfo{}, &LinkError{Link: name, Err: ErrBridgeNotFound}
}

func portsOf(master int, links []netlink.Link) []string {
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == master {
			ports = append(ports, l.Attrs().Name)
		}
	}
	slices.Sort(ports)
	return ports
}

// toPrefix converts a kernel address to a netip.Prefix, host bits kept; it
// is invalid when the kernel sent something unusable.
func toPrefix(a netlink.Addr) netip.Prefix {
	if a.IPNet == nil {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	ones, bits := a.Mask.Size()
	if bits != ip.BitLen() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(ip, ones)
}
