// Package unixhttp is HTTP/JSON over a Unix socket, as the agent's API and
// each shim's control socket speak it: one transport, typed errors both ways.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package unixhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Client is an HTTP client bound to one socket.
type Client struct {
	Socket string
	HTTP   *http.Client
}

// New returns a client for socket. Nothing is dialled until the first call.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 4,
	}
	return &Client{Socket: socket, HTTP: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// Send makes a request with an optional JSON body and returns the response
// when it is 2xx; any other answer becomes the typed error it carries.
func (c *Client) Send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, r)
	if err != nil {
		return nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errdefs.As(ctx.Err())
		}
		return nil, c.Unavailable(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, DecodeError(resp)
	}
	return resp, nil
}

// Do is Send that decodes a JSON answer into out (nil discards it; a
// *bytes.Buffer takes the raw body).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch o := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case *bytes.Buffer:
		_, err = io.Copy(o, resp.Body)
	default:
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	return err
}

// Unavailable is the typed error for a peer that does not answer.
func (c *Client) Unavailable(err error) error {
	return &errdefs.Error{Code: errdefs.CodeUnavailable, Message: fmt.Sprintf("%s: %v", c.Socket, err)}
}
