package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// streamConn is a connection whose peer sends fixed bytes and then hangs up.
// Writes are accepted and discarded. It stands in for QEMU only where QEMU
// cannot be made to misbehave: garbage on the wire.
type streamConn struct {
	r *bytes.Reader
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix"} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

const transcript = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}
{"return": {}, "id": "iv1"}
{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "STOP"}
{"return": {"status": "paused", "singlestep": false, "running": false}, "id": "iv2"}
{"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}, "id": "iv3"}
{"timestamp": {"seconds": 1700000001, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}
`

// FuzzDecode feeds arbitrary bytes to the reader and to the handshake. They
// must end (the input is finite) without panicking, and whatever they
// deliver must be well-formed.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		transcript,
		transcript[:len(transcript)/2],
		`{"QMP": {}}`,
		`{"QMP": 5}`,
		`[1, 2, 3] "x" 4 null true {}`,
		`{"id": "iv1"}`,
		`{"return": 1, "error": 5, "id": "iv1"}`,
		`{"error": {"class": 1}, "id": "iv1"}`,
		`{"return": null, "id": "iv1"}`,
		`{"return": {}, "id": 1}`,
		`{"event": "SHUTDOWN", "data": [], "timestamp": {"seconds": -1, "microseconds": -1}}`,
		`{"event": "X", "timestamp": {"seconds": 9223372036854775807, "microseconds": 999999}}`,
		`{"event": 7}`,
		strings.Repeat("[", 20000),
		"{\"return\": \"\xff\xfe\", \"id\": \"iv1\"}",
		"}{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The reader on its own, with a waiting command and two subscribers.
		c := newClient(&streamConn{r: bytes.NewReader(data)}, options{commandTimeout: time.Second})
		waiting := make(chan reply, 1)
		if err := c.register("iv1", "fuzz", waiting); err != nil {
			t.Fatal(err)
		}
		small, _ := c.Subscribe(1)
		large, _ := c.Subscribe(64)
		go c.readLoop(json.NewDecoder(c.conn))
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("reader did not end on finite input")
		}
		if !errors.Is(c.Err(), ErrDisconnected) {
			t.Fatalf("Err() = %v, want ErrDisconnected", c.Err())
		}
		for _, ch := range []<-chan Event{small, large} {
			for ev := range ch { // closed by the end of the client
				if ev.Name == "" {
					t.Fatalf("event without a name: %+v", ev)
				}
				_, _ = ev.Shutdown() // must not panic on any event
			}
		}
		select {
		case r := <-waiting:
			var qe *Error
			if r.err == nil && r.ret == nil {
				t.Fatal("reply with neither a result nor an error")
			}
			if errors.As(r.err, &qe) && qe.Command != "fuzz" {
				t.Fatalf("error reply names command %q", qe.Command)
			}
		default:
		}
		c.Close()

		// The handshake must also give up cleanly.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hc, err := New(ctx, &streamConn{r: bytes.NewReader(data)})
		if ctx.Err() != nil {
			t.Fatal("handshake hung on finite input")
		}
		if err == nil {
			hc.Close()
		}
	})
}

func TestExecuteWithFileNeedsUnixSocket(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newClient(a, options{commandTimeout: time.Second})
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.ExecuteWithFile(context.Background(), "getfd", nil, nil, f); !errors.Is(err, ErrNoFDPassing) {
		t.Errorf("err = %v, want ErrNoFDPassing", err)
	}
	a.Close()
}
