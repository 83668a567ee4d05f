// Package shimclient is the typed client of a shim's control socket (the
// protocol is in pkg/shimapi). It lives apart from the protocol so that the
// shim itself never links an HTTP client.
package shimclient

import (
	"bytes"
	"context"
	"net/http"
	"strconv"

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

// Status asks the shim for its view of the VM.
func (c *Client) Status(ctx context.Context) (shimapi.Status, error) {
	var st shimapi.Status
	err := c.c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Power asks the shim to carry out op. It returns once the shim accepted it;
// the outcome arrives as events.
func (c *Client) Power(ctx context.Context, op api.PowerOp) (shimapi.Status, error) {
	var st shimapi.Status
	err := c.c.Do(ctx, http.MethodPost, "/v1/power", api.PowerRequest{Op: op}, &st)
	return st, err
}

// Console returns the tail of the guest's serial console.
func (c *Client) Console(ctx context.Context) ([]byte, error) {
	var b bytes.Buffer
	err := c.c.Do(ctx, http.MethodGet, "/v1/console", nil, &b)
	return b.Bytes(), err
}

// ConsoleInput types bytes into the guest's serial console.
func (c *Client) ConsoleInput(ctx context.Context, input []byte) error {
	return c.c.Do(ctx, http.MethodPost, "/v1/console", input, nil)
}

// Events streams the log entries after seq to fn, oldest first, and keeps
// streaming live ones until ctx ends, fn fails, or the shim closes the
// stream (it exits, or this reader fell too far behind). Callers resume by
// calling again with the last sequence number they saw.
func (c *Client) Events(ctx context.Context, after uint64, fn func(api.Event) error) error {
	return c.c.StreamEvents(ctx, "/v1/events?after="+strconv.FormatUint(after, 10), "", fn)
}
