// Package qmp is a client for the QEMU Machine Protocol.
//
// One reader goroutine decodes the stream with a json.Decoder, so a reply of
// any size (query-qmp-schema is several hundred KiB) is fine. Every command
// carries its own id and waits only for the reply with that id, so callers on
// many goroutines never see each other's replies. Events go to subscribers
// through their own buffered channels; a full channel drops the event for that
// subscriber instead of stalling the reader, because a stalled reader would
// stall every reply behind it.
//
// The package never logs: arguments such as display passwords stay out of
// logs and out of error messages.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultCommandTimeout bounds a command whose context has no deadline.
const DefaultCommandTimeout = 30 * time.Second

// Option configures a Client.
type Option func(*options)

type options struct {
	commandTimeout time.Duration
}

// WithCommandTimeout sets the deadline applied to a command (and to the
// handshake) when the caller's context has none. Values <= 0 are ignored.
func WithCommandTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.commandTimeout = d
		}
	}
}

// Greeting is what QEMU announces when the connection opens.
type Greeting struct {
	Version      VersionInfo `json:"version"`
	Capabilities []string    `json:"capabilities"`
}

// VersionInfo is QEMU's version as the greeting reports it.
type VersionInfo struct {
	QEMU struct {
		Major int `json:"major"`
		Minor int `json:"minor"`
		Micro int `json:"micro"`
	} `json:"qemu"`
	Package string `json:"package"` // the distribution's build string, may be empty
}

func (v VersionInfo) String() string {
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro)
}

// Client is one QMP connection. It is safe for concurrent use.
type Client struct {
	conn           net.Conn
	unix           *net.UnixConn // nil when the connection cannot pass fds
	commandTimeout time.Duration
	greeting       Greeting

	nextID   atomic.Uint64
	writeSem chan struct{} // one writer at a time, acquirable under a context
	dropped  atomic.Uint64

	mu      sync.Mutex
	pending map[string]pendingCall
	subs    map[*subscriber]struct{}
	err     error // why the client ended; set once, before done closes

	done       chan struct{}
	readerDone chan struct{}
}

type pendingCall struct {
	cmd string
	ch  chan reply // buffered (1) and sent to at most once, so the reader never blocks on it
}

type reply struct {
	ret json.RawMessage
	err error
}

// request is the wire form of a command.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

// message is any message QEMU sends: greeting, reply or event.
type message struct {
	QMP       json.RawMessage `json:"QMP"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *timestamp      `json:"timestamp"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	ID        json.RawMessage `json:"id"`
}

// New takes over conn, reads QEMU's greeting, negotiates capabilities and
// starts the reader. ctx bounds only this handshake; if it has no deadline the
// command timeout applies. On error conn is closed.
func New(ctx context.Context, conn net.Conn, opts ...Option) (*Client, error) {
	o := options{commandTimeout: DefaultCommandTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	c := newClient(conn, o)
	ctx, cancel := c.withDefaultDeadline(ctx)
	defer cancel()
	// The same decoder goes on to the reader: it may already hold buffered
	// bytes that follow the greeting.
	dec := json.NewDecoder(conn)
	if err := c.readGreeting(ctx, dec); err != nil {
		conn.Close()
		return nil, err
	}
	go c.readLoop(dec)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err // names qmp_capabilities already
	}
	return c, nil
}

func newClient(conn net.Conn, o options) *Client {
	c := &Client{
		conn:           conn,
		commandTimeout: o.commandTimeout,
		writeSem:       make(chan struct{}, 1),
		pending:        make(map[string]pendingCall),
		subs:           make(map[*subscriber]struct{}),
		done:           make(chan struct{}),
		readerDone:     make(chan struct{}),
	}
	c.unix, _ = conn.(*net.UnixConn)
	return c
}

// Dial connects to a QMP unix socket at path (for tests and debugging; the
// shim hands New a socketpair instead).
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	return New(ctx, conn, opts...)
}

func (c *Client) readGreeting(ctx context.Context, dec *json.Decoder) error {
	release := bindDeadline(ctx, c.conn.SetReadDeadline)
	var raw json.RawMessage
	err := dec.Decode(&raw)
	release()
	var syntax *json.SyntaxError
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("qmp: waiting for the greeting: %w", ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("qmp: waiting for the greeting: %w", context.DeadlineExceeded)
	case errors.As(err, &syntax):
		return fmt.Errorf("%w: greeting: %w", ErrProtocol, err)
	case err != nil: // QEMU exited before greeting, or the socket broke
		return fmt.Errorf("%w: reading the greeting: %w", ErrDisconnected, err)
	}
	var m message
	if err := json.Unmarshal(raw, &m); err != nil || m.QMP == nil {
		return fmt.Errorf("%w: first message is not a greeting", ErrProtocol)
	}
	if err := json.Unmarshal(m.QMP, &c.greeting); err != nil {
		return fmt.Errorf("%w: greeting: %w", ErrProtocol, err)
	}
	return nil
}

// Greeting returns what QEMU announced (its version and capabilities).
func (c *Client) Greeting() Greeting { return c.greeting }

// Execute runs cmd with args (nil for none, otherwise anything that encodes
// to a JSON object) and decodes the reply's "return" into out (nil to
// ignore it). A QMP error reply comes back as *Error. When ctx has no
// deadline, the client's command timeout applies.
func (c *Client) Execute(ctx context.Context, cmd string, args, out any) error {
	return c.execute(ctx, cmd, args, out, nil)
}

// ExecuteWithFile is Execute with f's descriptor attached to the command as
// SCM_RIGHTS, as getfd and add-fd expect. It needs a Unix socket connection.
// The caller keeps ownership of f; QEMU receives its own copy.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args, out any, f *os.File) error {
	if c.unix == nil {
		return fmt.Errorf("qmp %s: %w", cmd, ErrNoFDPassing)
	}
	if f == nil {
		return fmt.Errorf("qmp %s: no file to pass", cmd)
	}
	return c.execute(ctx, cmd, args, out, f)
}

func (c *Client) execute(ctx context.Context, cmd string, args, out any, f *os.File) error {
	ctx, cancel := c.withDefaultDeadline(ctx)
	defer cancel()

	id := "iv" + strconv.FormatUint(c.nextID.Add(1), 10)
	msg, err := json.Marshal(request{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		return fmt.Errorf("qmp %s: encoding arguments: %w", cmd, err)
	}
	ch := make(chan reply, 1)
	if err := c.register(id, cmd, ch); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	// Once unregistered, a late reply finds no entry and is dropped.
	defer c.unregister(id)
	if err := c.send(ctx, msg, f); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}

	var r reply
	select {
	case r = <-ch:
	case <-ctx.Done():
		select {
		case r = <-ch: // the reply won the race; use it
		default:
			return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
		}
	case <-c.done:
		select {
		case r = <-ch:
		default:
			return fmt.Errorf("qmp %s: %w", cmd, c.Err())
		}
	}
	if r.err != nil {
		return r.err
	}
	if out != nil {
		if err := json.Unmarshal(r.ret, out); err != nil {
			return fmt.Errorf("qmp %s: decoding the reply: %w", cmd, err)
		}
	}
	return nil
}

func (c *Client) withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.commandTimeout)
}

func (c *Client) register(id, cmd string, ch chan reply) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.pending[id] = pendingCall{cmd: cmd, ch: ch}
	return nil
}

func (c *Client) unregister(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// send writes one command. A write that fails part-way leaves half a message
// on the stream, which would garble the next command, so any write error
// other than a clean timeout ends the connection.
func (c *Client) send(ctx context.Context, msg []byte, f *os.File) error {
	select {
	case c.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
	defer func() { <-c.writeSem }()

	release := bindDeadline(ctx, c.conn.SetWriteDeadline)
	n, err := c.write(msg, f)
	release()
	if err == nil {
		return nil
	}
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return context.DeadlineExceeded
	}
	c.terminate(fmt.Errorf("%w: writing a command: %w", ErrDisconnected, err))
	return c.Err()
}

func (c *Client) write(msg []byte, f *os.File) (int, error) {
	if f == nil {
		return c.conn.Write(msg)
	}
	// SyscallConn keeps f's descriptor valid during the call without
	// switching it to blocking mode, as f.Fd() would.
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	cerr := raw.Control(func(fd uintptr) {
		n, _, werr = c.unix.WriteMsgUnix(msg, syscall.UnixRights(int(fd)), nil)
	})
	if cerr != nil {
		return 0, cerr
	}
	if werr == nil && n < len(msg) {
		// The descriptor travelled with the first bytes; the rest is plain data.
		var m int
		m, werr = c.conn.Write(msg[n:])
		n += m
	}
	return n, werr
}

// longAgo is a deadline in the past: setting it interrupts blocked I/O.
var longAgo = time.Unix(1, 0)

// bindDeadline applies ctx's deadline to one direction of the connection and
// interrupts it if ctx is cancelled earlier. release clears the deadline and
// guarantees the cancellation hook no longer touches the connection.
func bindDeadline(ctx context.Context, set func(time.Time) error) (release func()) {
	// set fails only on a closed connection, whose next I/O fails anyway.
	deadline, _ := ctx.Deadline()
	_ = set(deadline)
	var mu sync.Mutex
	active := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if active {
			_ = set(longAgo)
		}
	})
	return func() {
		stop()
		mu.Lock()
		active = false
		mu.Unlock()
		_ = set(time.Time{})
	}
}

// readLoop is the only reader of the connection. It runs until the stream
// ends or stops being JSON; a stream that is not JSON cannot be resynchronised.
func (c *Client) readLoop(dec *json.Decoder) {
	defer close(c.readerDone)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) {
				err = fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			c.terminate(fmt.Errorf("%w: %w", ErrDisconnected, err))
			return
		}
		c.dispatch(raw)
	}
}

// dispatch routes one complete JSON value. Anything it cannot route (a value
// that is not an object, a reply without a usable id, a second greeting) is
// ignored: one odd message must not end the connection.
func (c *Client) dispatch(raw []byte) {
	var m message
	decodeErr := json.Unmarshal(raw, &m)
	if m.Event != "" && decodeErr == nil {
		c.publish(Event{Name: m.Event, Data: m.Data, Time: m.Timestamp.time()})
		return
	}
	var id string
	if m.ID == nil || json.Unmarshal(m.ID, &id) != nil {
		return
	}
	c.mu.Lock()
	call, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !ok {
		return // its caller gave up already
	}
	var r reply
	switch {
	case decodeErr != nil:
		r.err = fmt.Errorf("qmp %s: %w: malformed reply: %w", call.cmd, ErrProtocol, decodeErr)
	case m.Error != nil:
		m.Error.Command = call.cmd
		r.err = m.Error
	case m.Return != nil:
		r.ret = m.Return
	default:
		r.err = fmt.Errorf("qmp %s: %w: reply has neither return nor error", call.cmd, ErrProtocol)
	}
	call.ch <- r
}

// terminate ends the client once: it records why, wakes every waiting
// command, closes subscriber channels and the connection.
func (c *Client) terminate(reason error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = reason
	for s := range c.subs {
		close(s.ch)
	}
	c.subs = nil
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
	c.conn.Close()
}

// Close ends the connection and waits for the reader to stop. Pending
// commands fail with ErrClosed. Calling it again does nothing.
func (c *Client) Close() error {
	c.terminate(ErrClosed)
	<-c.readerDone
	return nil
}

// Done is closed when the client has ended: QEMU closed the connection (it
// exited), the stream broke, or Close was called.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client ended, or nil while it runs. It wraps
// ErrDisconnected when the connection was lost and is ErrClosed after Close.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
