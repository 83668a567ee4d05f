// Package shimclient is the typed client of a shim's control socket (the
// protocol is the route table in pkg/shimapi). It lives apart from the
// protocol so that the shim itself never links an HTTP client.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package shimclient

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// Client talks to one shim's control socket.
type Client struct{ c *unixhttp.Client }

// NewClient returns a client for the shim listening on socket.
func NewClient(socket string) *Client { return &Client{c: unixhttp.New(socket)} }

// Close drops idle connections.
func (c *Client) Close() { c.c.Close() }

// Exchanger carries one request and its whole answer: a *Client, or
// whatever a caller puts in front of one (a fake in tests).
type Exchanger interface {
	Exchange(ctx context.Context, method, target string, body []byte) ([]byte, error)
}

// Call makes one request of route and decodes its answer. Each verb's
// method below is a Call; a new verb needs none of its own.
func Call[Req, Resp any](ctx context.Context, c Exchanger, route shimapi.Route[Req, Resp], req Req) (Resp, error) {
	var zero Resp
	if route.Stream {
		return zero, fmt.Errorf("shim %s is a stream; use Stream", route.Verb)
	}
	target, body, err := route.EncodeRequest(req)
	if err != nil {
		return zero, err
	}
	b, err := c.Exchange(ctx, route.Method, target, body)
	if err != nil {
		return zero, err
	}
	out, err := route.DecodeResponse(b)
	if err != nil {
		return zero, fmt.Errorf("shim %s: decode the answer: %w", route.Verb, err)
	}
	return out, nil
}

// Exchange makes one request of the control socket and returns the whole
// answer's body, or the typed error it carries: the transport under every
// verb that is not a stream. Call puts the route's types on it.
func (c *Client) Exchange(ctx context.Context, method, target string, body []byte) ([]byte, error) {
	resp, err := c.c.Send(ctx, method, target, sendable(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.c.Unavailable(err)
	}
	return b, nil
}

// Stream makes a request of a streaming route and hands each item of the
// answer to fn, in order, until the shim ends the stream, ctx ends or fn
// fails.
func Stream[Req, Resp any](ctx context.Context, c *Client, route shimapi.Route[Req, Resp], req Req, fn func(Resp) error) error {
	if !route.Stream {
		return fmt.Errorf("shim %s is not a stream; use Call", route.Verb)
	}
	target, body, err := route.EncodeRequest(req)
	if err != nil {
		return err
	}
	resp, err := c.c.Send(ctx, route.Method, target, sendable(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		item, err := route.DecodeResponse(sc.Bytes())
		if err != nil {
			return fmt.Errorf("%s: shim %s stream: %w", c.c.Socket, route.Verb, err)
		}
		if err := fn(item); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return c.c.Unavailable(err)
	}
	return nil
}

// sendable keeps "no body" a nil interface for unixhttp, which would
// otherwise send an empty one.
func sendable(body []byte) any {
	if body == nil {
		return nil
	}
	return body
}

// Status asks the shim for its view of the VM.
func (c *Client) Status(ctx context.Context) (shimapi.Status, error) {
	return Call(ctx, c, shimapi.RouteStatus, shimapi.StatusRequest{})
}

// Power asks the shim to carry out op. It returns once the shim accepted it;
// the outcome arrives as events.
func (c *Client) Power(ctx context.Context, op api.PowerOp) (shimapi.Status, error) {
	return Call(ctx, c, shimapi.RoutePower, shimapi.PowerRequest{Op: op})
}

// Console returns the tail of the guest's serial console.
func (c *Client) Console(ctx context.Context) ([]byte, error) {
	t, err := Call(ctx, c, shimapi.RouteConsole, shimapi.ConsoleRequest{})
	return t.Data, err
}

// ConsoleInput types bytes into the guest's serial console.
func (c *Client) ConsoleInput(ctx context.Context, input []byte) error {
	_, err := Call(ctx, c, shimapi.RouteConsoleInput, shimapi.ConsoleInput{Data: input})
	return err
}

// Events streams the log entries after seq to fn, oldest first, and keeps
// streaming live ones until ctx ends, fn fails, or the shim closes the
// stream (it exits, or this reader fell too far behind). Callers resume by
// calling again with the last sequence number they saw.
func (c *Client) Events(ctx context.Context, after uint64, fn func(api.Event) error) error {
	return Stream(ctx, c, shimapi.RouteEvents, shimapi.EventsRequest{After: after}, fn)
}
