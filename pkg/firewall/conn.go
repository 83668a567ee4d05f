package firewall

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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

// dial opens the socket. msgs, when not 0, is about how many messages one
// batch on it will carry: the kernel answers each with an ack (and each
// rule with an echo) before anything is read, so both socket buffers are
// sized for the whole batch.
func dial(ctx context.Context, netnsFd int, msgs int) (*conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	c := &conn{}
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(nl *netlink.Conn) error {
			c.nl = nl
			if msgs > 0 {
				if err := sizeBuffers(nl, msgs*batchBytesPerMsg+minBuffer, msgs*ackBytesPerMsg+minBuffer); err != nil {
					return err
				}
			}
			return nl.SetDeadline(deadline)
		}),
	}
	if netnsFd > 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	nc, err := nftables.New(opts...)
	if err != nil {
		if c.nl != nil {
			// The library does not close a socket whose options failed.
			_ = c.nl.Close()
		}
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

// Buffer sizing for a batch: what one message takes to send, what its
// ack and echo take in the receive queue (kernel accounting, not payload),
// and a floor.
const (
	batchBytesPerMsg = 1024
	ackBytesPerMsg   = 4096
	minBuffer        = 1 << 20
)

// sizeBuffers raises the socket's buffers past the system's default
// limits (CAP_NET_ADMIN, which programming nftables needs anyway), or
// within them when that is refused.
func sizeBuffers(nl *netlink.Conn, send, recv int) error {
	rc, err := nl.SyscallConn()
	if err != nil {
		return err
	}
	var forced error
	if err := rc.Control(func(fd uintptr) {
		forced = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, send),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recv))
	}); err != nil {
		return err
	}
	if forced != nil {
		return errors.Join(nl.SetWriteBuffer(send), nl.SetReadBuffer(recv))
	}
	return nil
}
