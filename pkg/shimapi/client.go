package shimapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// Client talks to one shim's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the shim listening on socket. Nothing is
// dialled until the first call.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Status asks the shim for its view of the VM.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Power asks the shim to carry out op. It returns once the shim accepted it;
// the outcome arrives as events.
func (c *Client) Power(ctx context.Context, op api.PowerOp) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodPost, "/v1/power", api.PowerRequest{Op: op}, &st)
	return st, err
}

// Console returns the tail of the guest's serial console.
func (c *Client) Console(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/v1/console", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, unavailable(c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, api.DecodeError(resp)
	}
	return io.ReadAll(resp.Body)
}

// ConsoleInput writes bytes to the guest's serial console.
func (c *Client) ConsoleInput(ctx context.Context, input []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://shim/v1/console", bytes.NewReader(input))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return unavailable(c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return api.DecodeError(resp)
	}
	return nil
}

// Events streams the log entries after seq to fn, oldest first, and keeps
// streaming live ones until ctx ends, fn fails, or the shim closes the
// stream (it exits, or this reader fell too far behind). Callers resume by
// calling again with the last sequence number they saw.
func (c *Client) Events(ctx context.Context, after uint64, fn func(api.Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/v1/events?after="+strconv.FormatUint(after, 10), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return unavailable(c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.DecodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("shim event stream: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return unavailable(c.socket, err)
	}
	return ctx.Err()
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return api.AsError(ctx.Err())
		}
		return unavailable(c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return api.DecodeError(resp)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func unavailable(socket string, err error) error {
	return &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("shim at %s: %v", socket, err)}
}
