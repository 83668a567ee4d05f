// Package agentclient is a typed client for the agent's REST API on its
// Unix socket, used by infinivirtctl and the end-to-end tests. With pkg/api
// it is the public Go surface a backend may import and rely on.
package agentclient

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// DefaultSocket is where a packaged agent listens.
const DefaultSocket = "/run/infinivirt/agent.sock"

// Client talks to one agent.
type Client struct{ c *unixhttp.Client }

// New returns a client for the agent listening on socket.
func New(socket string) *Client { return &Client{c: unixhttp.New(socket)} }

// Health returns the agent's health.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var out api.Health
	err := c.c.Do(ctx, http.MethodGet, "/v1/health", nil, &out)
	return out, err
}

// Create creates (and by default boots) a VM.
func (c *Client) Create(ctx context.Context, in api.CreateVMInput) (api.VM, error) {
	var vm api.VM
	err := c.c.Do(ctx, http.MethodPost, "/v1/vms", in, &vm)
	return vm, err
}

// CreateRaw posts a JSON body as is.
func (c *Client) CreateRaw(ctx context.Context, body []byte) (api.VM, error) {
	var vm api.VM
	err := c.c.Do(ctx, http.MethodPost, "/v1/vms", body, &vm)
	return vm, err
}

// List returns every VM.
func (c *Client) List(ctx context.Context) ([]api.VM, error) {
	var vms []api.VM
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms", nil, &vms)
	return vms, err
}

// Get returns one VM.
func (c *Client) Get(ctx context.Context, id string) (api.VM, error) {
	var vm api.VM
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id), nil, &vm)
	return vm, err
}

// Delete removes a VM; force powers it off first.
func (c *Client) Delete(ctx context.Context, id string, force bool) error {
	return c.c.Do(ctx, http.MethodDelete, "/v1/vms/"+url.PathEscape(id)+"?force="+strconv.FormatBool(force), nil, nil)
}

// Power runs a power verb; with wait, it returns once the VM got there.
func (c *Client) Power(ctx context.Context, id string, op api.PowerOp, wait bool, timeout time.Duration) (api.VM, error) {
	q := url.Values{"wait": {strconv.FormatBool(wait)}}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	var vm api.VM
	err := c.c.Do(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(id)+"/"+string(op)+"?"+q.Encode(), nil, &vm)
	return vm, err
}

// Console returns the tail of a VM's serial console.
func (c *Client) Console(ctx context.Context, id string) (string, error) {
	var b bytes.Buffer
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/console", nil, &b)
	return b.String(), err
}

// Block lists a running VM's block devices as QEMU has them.
func (c *Client) Block(ctx context.Context, id string) (api.BlockDevices, error) {
	var b api.BlockDevices
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/block", nil, &b)
	return b, err
}

// Events streams events to fn until ctx ends, fn fails, or the agent ends
// the stream: of one VM when id is set (replaying its log after `after`
// when after > 0), else of all. A stream the agent ended returns nil: the
// VM was deleted, or this reader fell behind and should call again with
// the last sequence it saw.
func (c *Client) Events(ctx context.Context, id string, after uint64, fn func(api.Event) error) error {
	if id == "" {
		return c.AllEvents(ctx, "", func(_ string, e api.Event) error { return fn(e) })
	}
	path := "/v1/vms/" + url.PathEscape(id) + "/events"
	if after > 0 {
		path += "?after=" + strconv.FormatUint(after, 10)
	}
	return c.c.StreamEvents(ctx, path, "data: ", func(_ string, e api.Event) error { return fn(e) })
}

// AllEvents streams every VM's events to fn, with the cursor to resume
// from once fn has taken each, first replaying what followed after (a
// cursor; empty: from now on). A stream the agent ended returns nil; call
// again with the last cursor.
func (c *Client) AllEvents(ctx context.Context, after string, fn func(cursor string, e api.Event) error) error {
	path := "/v1/events"
	if after != "" {
		path += "?after=" + url.QueryEscape(after)
	}
	return c.c.StreamEvents(ctx, path, "data: ", func(id string, e api.Event) error {
		if id == "" {
			id = after
		}
		return fn(id, e)
	})
}

// RawRequest sends a raw body and returns the status code and body, whatever
// they are. Tests use it to send what the typed client never would.
func (c *Client) RawRequest(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.c.HTTP.Do(req)
	if err != nil {
		return 0, nil, c.c.Unavailable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
