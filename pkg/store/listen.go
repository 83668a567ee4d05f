package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ResyncAll is the id Listen passes after each (re)connect: notifications
// may have been missed while no LISTEN was active, so re-read everything.
const ResyncAll = ""

// Listen calls fn with the id of each VM whose row changes, as announced on
// NotifyChannel. It holds a dedicated connection, not a pooled one (a pooled
// connection goes back to the pool and its notifications are lost). After
// every (re)connect, once LISTEN is active, it calls fn(ResyncAll). When the
// connection drops it reconnects after Options.ReconnectDelay. fn runs on
// Listen's goroutine; a slow fn delays later notifications, which queue.
// Listen returns ctx's error when ctx ends.
//
// This is also the reference for the backend: LISTEN infinivirt_vm, then
// resync, then re-read the row of each id received.
func (s *Store) Listen(ctx context.Context, fn func(vmID string)) error {
	for {
		err := s.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("store: listener disconnected; reconnecting", "ERR", s.wrap("Listen", "", err), "DELAY", s.opts.ReconnectDelay)
		t := time.NewTimer(s.opts.ReconnectDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, fn func(vmID string)) error {
	setupCtx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(setupCtx, s.pool.Config().ConnConfig)
	if err != nil {
		return err
	}
	defer func() {
		// Close even when ctx has ended, but not for longer than a second.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(setupCtx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return err
	}
	s.log.Debug("store: listening", "CHANNEL", NotifyChannel)
	fn(ResyncAll)

	for {
		waitCtx, cancel := context.WithTimeout(ctx, s.listenPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			fn(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			// Quiet for a while: make sure the connection is alive, as a
			// half-open TCP connection would otherwise wait forever.
			pingCtx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
