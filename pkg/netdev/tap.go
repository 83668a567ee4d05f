package netdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

const (
	// MaxQueues is the kernel's limit of queues on one TAP (MAX_TAP_QUEUES).
	MaxQueues = 256
	minMTU    = 68
	maxMTU    = 65535
)

// tapFlags are the TAP's flags, always given explicitly: multi-queue so
// QEMU can spread queues over vCPUs, no packet-information header, and the
// virtio-net header that QEMU expects on a TAP.
const tapFlags = netlink.TUNTAP_MULTI_QUEUE | netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR

// TAPConfig describes a VM's TAP device.
type TAPConfig struct {
	Name     string           // the device name, usually TapName(vmID, nic)
	Bridge   string           // the bridge it joins; it must already exist
	GuestMAC net.HardwareAddr // the guest NIC's address; the TAP takes HostMAC of it
	Queues   int              // queue fds to open, 1..MaxQueues; 0 means 1
	// MTU 0 takes the bridge's MTU, and more is refused. Less is allowed,
	// but the kernel then lowers a bridge whose own MTU was never set
	// explicitly (EnsureBridge sets it when asked for one).
	MTU int
}

// TAP is a created, attached and up TAP device. It is not persistent: the
// kernel removes it once the last of its queue fds is closed, both the ones
// here and any copies handed to QEMU.
type TAP struct {
	Name    string
	Index   int
	Bridge  string
	HostMAC net.HardwareAddr // the TAP's own address on the bridge
	MTU     int
	// Files are the queue fds, in order, for QEMU's -netdev tap,fds=...
	// They are close-on-exec and non-blocking; os/exec's ExtraFiles passes
	// them on.
	Files []*os.File

	mu sync.Mutex
}

// HostMAC is the address the TAP itself carries, derived from the guest's
// as libvirt does: the first byte becomes 0xfe (0xfa if it already is 0xfe).
// It differs from the guest's, so the bridge never learns the guest's
// address on the host side, and it sorts high, so a bridge without a fixed
// address never adopts it.
func HostMAC(guest net.HardwareAddr) net.HardwareAddr {
	mac := append(net.HardwareAddr(nil), guest...)
	if len(mac) == 0 {
		return mac
	}
	if mac[0] == 0xfe {
		mac[0] = 0xfa
	} else {
		mac[0] = 0xfe
	}
	return mac
}

// testHookCreated, when set by a test, runs right after the device exists,
// to make a later step fail for real.
var testHookCreated func()

// CreateTAP creates a non-persistent multi-queue TAP in the calling thread's
// network namespace, gives it HostMAC(GuestMAC) and its MTU, attaches it to
// the bridge and sets it up. On any failure the device is removed again.
func CreateTAP(ctx context.Context, cfg TAPConfig) (*TAP, error) {
	queues, err := cfg.check()
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()

	br, err := c.bridge(cfg.Bridge)
	if err != nil {
		return nil, err
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = br.MTU
	}
	if mtu > br.MTU {
		return nil, errdefs.Invalid("mtu", "%d is above the MTU of bridge %q (%d)", mtu, cfg.Bridge, br.MTU)
	}
	// TUN_EXCL below refuses an existing name too; this check only makes
	// the error say what is there.
	if l, err := c.link(cfg.Name); err != nil {
		return nil, err
	} else if l != nil {
		return nil, &LinkError{Link: cfg.Name, Kind: l.Type(), Err: ErrLinkExists}
	}

	// The first queue creates the device, exclusively, so an existing
	// device is never joined; the other queues attach to it.
	tun := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: cfg.Name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      tapFlags | netlink.TUNTAP_TUN_EXCL,
		NonPersist: true,
		Queues:     1,
	}
	if err := c.step(cfg.Name, "create TAP", func() error { return c.h.LinkAdd(tun) }); err != nil {
		return nil, err
	}
	t := &TAP{Name: cfg.Name, Bridge: cfg.Bridge, HostMAC: HostMAC(cfg.GuestMAC), MTU: mtu, Files: tun.Fds}
	if err := t.configure(c, tun, br, queues); err != nil {
		t.destroy(c)
		return nil, err
	}
	return t, nil
}

func (cfg TAPConfig) check() (queues int, err error) {
	if err := validLinkName(cfg.Name); err != nil {
		return 0, errdefs.Invalid("name", "%v", err)
	}
	if err := validLinkName(cfg.Bridge); err != nil {
		return 0, errdefs.Invalid("bridge", "%v", err)
	}
	if err := validUnicastMAC(cfg.GuestMAC); err != nil {
		return 0, errdefs.Invalid("guestMAC", "%v", err)
	}
	queues = cfg.Queues
	if queues == 0 {
		queues = 1
	}
	if queues < 1 || queues > MaxQueues {
		return 0, errdefs.Invalid("queues", "must be between 1 and %d, got %d", MaxQueues, cfg.Queues)
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > maxMTU) {
		return 0, errdefs.Invalid("mtu", "must be 0 (the bridge's) or between %d and %d, got %d", minMTU, maxMTU, cfg.MTU)
	}
	return queues, nil
}

// configure runs the steps after the device exists, in an order where a
// port never shows up on the bridge with the wrong address or MTU.
func (t *TAP) configure(c *conn, tun *netlink.Tuntap, br *netlink.Bridge, queues int) error {
	t.Index = tun.Index
	if t.Index == 0 { // the library's own lookup failed; the steps below need it
		var l netlink.Link
		if err := c.step(t.Name, "look up", func() (err error) { l, err = c.h.LinkByName(t.Name); return err }); err != nil {
			return err
		}
		t.Index, tun.Index = l.Attrs().Index, l.Attrs().Index
	}
	if testHookCreated != nil {
		testHookCreated()
	}
	if queues > 1 {
		tun.Flags &^= netlink.TUNTAP_TUN_EXCL
		if _, err := tun.AddQueues(queues - 1); err != nil {
			t.Files = tun.Fds
			return c.fail(t.Name, "open queues", err)
		}
		t.Files = tun.Fds
	}
	steps := []struct {
		op  string
		run func() error
	}{
		{"set address " + t.HostMAC.String(), func() error { return c.h.LinkSetHardwareAddr(tun, t.HostMAC) }},
		{fmt.Sprintf("set MTU %d", t.MTU), func() error { return c.h.LinkSetMTU(tun, t.MTU) }},
		{"attach to bridge " + t.Bridge, func() error { return c.h.LinkSetMasterByIndex(tun, br.Index) }},
		{"set up", func() error { return c.h.LinkSetUp(tun) }},
	}
	for _, s := range steps {
		if err := c.step(t.Name, s.op, s.run); err != nil {
			return err
		}
	}
	return nil
}

// destroy undoes a half-made TAP: closing the fds removes a non-persistent
// device, and the delete catches the case where something still holds one.
func (t *TAP) destroy(c *conn) {
	_ = t.Close()
	c.armCleanup()
	if l, err := c.h.LinkByIndex(t.Index); err == nil && l.Attrs().Name == t.Name {
		_ = c.h.LinkDel(l)
	}
}

// Close closes the TAP's queue fds. The device goes away with the last fd,
// so once QEMU's copies are closed too. Calling it again does nothing.
func (t *TAP) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, f := range t.Files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.Files = nil
	if err := errors.Join(errs...); err != nil {
		return &OpError{Op: "close queue fds", Link: t.Name, Err: err}
	}
	return nil
}

// RemoveTAP deletes the named TAP, even while a (possibly dead) QEMU still
// holds its fds. A missing device is success, so cleanup can run any number
// of times; a link of another kind under that name is refused.
func RemoveTAP(ctx context.Context, name string) error {
	c, err := dialFor(ctx, "name", name)
	if err != nil {
		return err
	}
	defer c.close()
	l, err := c.tap(name)
	if err != nil || l == nil {
		return err
	}
	err = c.step(name, "delete", func() error { return c.h.LinkDel(l) })
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// MoveTAP attaches an existing TAP to another bridge (a running VM changing
// networks). The device, its fds and QEMU's view of the NIC stay the same.
func MoveTAP(ctx context.Context, name, bridge string) error {
	if err := validLinkName(name); err != nil {
		return errdefs.Invalid("name", "%v", err)
	}
	c, err := dialFor(ctx, "bridge", bridge)
	if err != nil {
		return err
	}
	defer c.close()
	br, err := c.bridge(bridge)
	if err != nil {
		return err
	}
	l, err := c.tap(name)
	if err != nil {
		return err
	}
	if l == nil {
		return c.fail(name, "look up", errors.New("no such link"))
	}
	return c.step(name, "attach to bridge "+bridge, func() error { return c.h.LinkSetMasterByIndex(l, br.Index) })
}

// tap looks up a TAP by name: nil when missing, a LinkError with ErrNotTAP
// when the name belongs to another kind of link (a TUN included).
func (c *conn) tap(name string) (*netlink.Tuntap, error) {
	l, err := c.link(name)
	if err != nil || l == nil {
		return nil, err
	}
	tun, ok := l.(*netlink.Tuntap)
	if !ok {
		return nil, &LinkError{Link: name, Kind: l.Type(), Err: ErrNotTAP}
	}
	if tun.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, &LinkError{Link: name, Kind: "tun", Err: ErrNotTAP}
	}
	return tun, nil
}
