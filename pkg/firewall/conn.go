package firewall

import (
	"context"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// DefaultTimeout bounds a kernel conversation when the context sets no
// deadline.
const DefaultTimeout = 10 * time.Second

// conn is one netlink socket for one operation, bounded by its context:
// the deadline is the socket's, and cancelling the context unblocks it.
type conn struct {
	*nftables.Conn
	nl   *netlink.Conn
	stop func() bool
}

func dial(ctx context.Context, netnsFd int) (*conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	c := &conn{}
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(nl *netlink.Conn) error {
			c.nl = nl
			return nl.SetDeadline(deadline)
		}),
	}
	if netnsFd > 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	nc, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("netlink (nftables): %w", err)
	}
	c.Conn = nc
	c.stop = context.AfterFunc(ctx, func() {
		// A deadline in the past wakes whatever waits on the socket.
		_ = c.nl.SetDeadline(time.Unix(1, 0))
	})
	return c, nil
}

func (c *conn) close() {
	c.stop()
	_ = c.CloseLasting()
}

// flush sends the queued batch, returning the context's error when it
// ended the conversation.
func (c *conn) flush(ctx context.Context) error {
	err := c.Flush()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
