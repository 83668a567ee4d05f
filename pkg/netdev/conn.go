package netdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/infinibay/infinivirt/pkg/errdefs"

	"golang.org/x/sys/unix"
)

const (
	// callTimeout bounds one netlink request when ctx has no deadline, so a
	// call never blocks forever.
	callTimeout = 10 * time.Second
	// cleanupTimeout bounds each rollback request, which must run even when
	// ctx has already expired.
	cleanupTimeout = 2 * time.Second
	// dumpAttempts is how often a dump interrupted by a concurrent change is
	// tried before giving up.
	dumpAttempts = 5
)

// conn is one rtnetlink socket in the calling thread's network namespace.
// Before each request, arm gives the socket a send and receive timeout equal
// to what is left of ctx, so the kernel, not a goroutine, enforces deadlines.
type conn struct {
	ctx context.Context
	h   *netlink.Handle
}

func dial(ctx context.Context) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netdev: open rtnetlink socket: %w", err)
	}
	return &conn{ctx: ctx, h: h}, nil
}

// dialFor checks a link name a caller passed, naming field when it is bad,
// and only then opens the socket.
func dialFor(ctx context.Context, field, name string) (*conn, error) {
	if err := validLinkName(name); err != nil {
		return nil, errdefs.Invalid(field, "%v", err)
	}
	return dial(ctx)
}

func (c *conn) close() { c.h.Close() }

// arm checks ctx and sets the socket timeouts for the next request.
func (c *conn) arm() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	timeout := callTimeout
	if dl, ok := c.ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
		if timeout < time.Millisecond {
			return context.DeadlineExceeded
		}
	}
	return c.h.SetSocketTimeout(timeout)
}

// armCleanup sets a short timeout that ignores ctx, for rollback.
func (c *conn) armCleanup() { _ = c.h.SetSocketTimeout(cleanupTimeout) }

// fail wraps err as an OpError. A socket timeout that coincides with an
// expired ctx is reported as the ctx error, so callers can test for it.
func (c *conn) fail(link, op string, err error) error {
	if ctxErr := c.ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return &OpError{Op: op, Link: link, Err: err}
}

// link looks a link up by name; a missing link is (nil, nil).
func (c *conn) link(name string) (netlink.Link, error) {
	if err := c.arm(); err != nil {
		return nil, c.fail(name, "look up", err)
	}
	l, err := c.h.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, c.fail(name, "look up", err)
	}
	return l, nil
}

// bridge returns the named bridge, or a LinkError when it is missing or is
// some other kind of link.
func (c *conn) bridge(name string) (*netlink.Bridge, error) {
	l, err := c.link(name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, &LinkError{Link: name, Err: ErrBridgeNotFound}
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, &LinkError{Link: name, Kind: l.Type(), Err: ErrNotBridge}
	}
	return br, nil
}

// links dumps every link, retrying when the dump was interrupted.
func (c *conn) links() ([]netlink.Link, error) {
	return retryInterrupted(func() ([]netlink.Link, error) {
		if err := c.arm(); err != nil {
			return nil, err
		}
		return c.h.LinkList()
	})
}

// addrs dumps the addresses of one link, or of all links when l is nil.
func (c *conn) addrs(l netlink.Link) ([]netlink.Addr, error) {
	return retryInterrupted(func() ([]netlink.Addr, error) {
		if err := c.arm(); err != nil {
			return nil, err
		}
		return c.h.AddrList(l, netlink.FAMILY_ALL)
	})
}

// retryInterrupted runs a dump again while the kernel reports that a
// concurrent change interrupted it, since its data may then be partial.
func retryInterrupted[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("dump still interrupted after %d attempts: %w", dumpAttempts, err)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// validLinkName applies the kernel's rules for interface names (dev_valid_name)
// and also refuses '%', which TUNSETIFF would expand to a number.
func validLinkName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("%q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%q is not a usable name", name)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == '/' || r == ':' || r == '%' {
			return fmt.Errorf("%q contains %q, which an interface name cannot", name, r)
		}
	}
	return nil
}

// validUnicastMAC accepts a 48-bit unicast address that is not all zeros.
func validUnicastMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("%q is not a 48-bit MAC address", mac.String())
	}
	if mac[0]&1 == 1 {
		return fmt.Errorf("%s is multicast; a NIC needs a unicast address", mac)
	}
	for _, b := range mac {
		if b != 0 {
			return nil
		}
	}
	return fmt.Errorf("%s is all zeros", mac)
}
