package unixhttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
)

// StreamEvents GETs path and hands each event of the streamed answer to fn,
// in order, until the stream ends, ctx ends or fn fails. prefix is what
// precedes an event's JSON on its line ("data: " for server-sent events,
// "" for JSON lines); other lines are skipped. fn also gets the last id a
// server-sent "id: " line gave, as an event source keeps it.
func (c *Client) StreamEvents(ctx context.Context, path, prefix string, fn func(id string, e api.Event) error) error {
	resp, err := c.Send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	id := ""
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			id = string(v)
			continue
		}
		if len(line) < len(prefix) || string(line[:len(prefix)]) != prefix {
			continue
		}
		var e api.Event
		if err := json.Unmarshal(line[len(prefix):], &e); err != nil {
			return fmt.Errorf("%s: event stream: %w", c.Socket, err)
		}
		if err := fn(id, e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return c.Unavailable(err)
	}
	return nil
}
