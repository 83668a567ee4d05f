// Package tinyhttp is a minimal HTTP/1.1 server for a local control socket:
// one request per connection, bodies sized by Content-Length, responses that
// end when the connection closes (so a response can also be a stream).
//
// It exists so that the per-VM shim, which runs once per VM on every host,
// speaks HTTP to curl and to Go's client without linking net/http and the
// TLS stack it brings; see the README's design notes for the numbers.
package tinyhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/peerconn"
)

// Limits on what a client may send.
const (
	maxHeaderBytes = 16 << 10
	maxBodyBytes   = 1 << 20
)

// Limits bound the time a client has to send its request. There is no idle
// timeout apart from them: a connection carries one request, and the time
// before its first byte counts against HeaderTimeout. Nothing bounds the
// answer, so a stream lasts as long as its handler.
type Limits struct {
	HeaderTimeout time.Duration // from the connection's start to the end of the headers
	BodyTimeout   time.Duration // from the end of the headers to the end of the body
}

// DefaultLimits are a new server's.
var DefaultLimits = Limits{HeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second}

// Request is a parsed request.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header map[string]string // keys in lower case
	Body   []byte
}

// Response writes one answer. The status line and headers go out with the
// first Write (or Start); the body ends when the handler returns.
type Response struct {
	w       *bufio.Writer
	started bool
	status  int
	ctype   string
}

// Start sends the status line and headers now.
func (w *Response) Start(status int, contentType string) error {
	if w.started {
		return nil
	}
	w.status, w.ctype, w.started = status, contentType, true
	_, err := fmt.Fprintf(w.w, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
		status, statusText(status), contentType)
	return err
}

// Write sends body bytes, starting a 200 with a JSON content type if nothing
// was started yet.
func (w *Response) Write(b []byte) (int, error) {
	if !w.started {
		if err := w.Start(200, "application/json"); err != nil {
			return 0, err
		}
	}
	return w.w.Write(b)
}

// Flush pushes buffered bytes to the client (for streams).
func (w *Response) Flush() error { return w.w.Flush() }

// HandlerFunc serves one request. ctx ends when the client goes away or
// the server shuts down.
type HandlerFunc func(ctx context.Context, w *Response, r *Request)

// Server routes "METHOD /path" patterns (exact paths) to handlers.
//
// When its listener hands out *peerconn.Conn, it marks each request on its
// connection as served from the moment it is read in full, so that the
// listener's cap tells stalled connections from working ones.
type Server struct {
	// Limits may be changed before Serve.
	Limits Limits
	routes map[string]HandlerFunc

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]context.CancelFunc
	closed bool
	wg     sync.WaitGroup
}

// New returns a server with no routes.
func New() *Server {
	return &Server{Limits: DefaultLimits, routes: map[string]HandlerFunc{}, conns: map[net.Conn]context.CancelFunc{}}
}

// Handle registers h for a pattern like "GET /v1/status".
func (s *Server) Handle(pattern string, h HandlerFunc) { s.routes[pattern] = h }

// Patterns lists the registered patterns, sorted.
func (s *Server) Patterns() []string {
	return slices.Sorted(maps.Keys(s.routes))
}

// Serve accepts connections until Shutdown. Called after Shutdown, it
// closes ln and returns at once. Every request's context derives from ctx:
// its values reach the handlers and its end cancels them, but only
// Shutdown stops the serving.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			if !retryableAccept(err) {
				return err
			}
			// Out of descriptors or an aborted handshake: the socket is
			// still good, so wait and accept again, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		cctx, cancel := context.WithCancel(ctx)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			cancel()
			c.Close()
			continue
		}
		s.conns[c] = cancel
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(cctx, c)
	}
}

// retryableAccept tells a passing Accept failure from a closed listener.
func retryableAccept(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, lets running handlers finish until ctx ends,
// then cancels the ones still running (streams) and closes their connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c, cancel := range s.conns {
		cancel()
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer func() {
		s.mu.Lock()
		if cancel, ok := s.conns[c]; ok {
			cancel()
			delete(s.conns, c)
		}
		s.mu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	// Writes below fail only once the client has gone: nobody is left to
	// tell, and the connection closes on return.
	if err := c.SetReadDeadline(time.Now().Add(s.Limits.HeaderTimeout)); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	defer func() { _ = bw.Flush() }()
	resp := &Response{w: bw}
	req, n, err := readHead(br)
	if err == nil && n > 0 {
		if err = c.SetReadDeadline(time.Now().Add(s.Limits.BodyTimeout)); err != nil {
			return
		}
		err = readBody(br, req, n)
	}
	if err != nil {
		_ = resp.Start(400, "text/plain; charset=utf-8")
		_, _ = resp.Write([]byte(err.Error() + "\n"))
		return
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return
	}
	if pc, ok := c.(*peerconn.Conn); ok {
		if !pc.Begin() {
			return // closed to make room: nobody would hear the answer
		}
		defer pc.End()
	}
	// The client half-closing or resetting ends the request's context.
	go func() {
		var one [1]byte
		if _, err := c.Read(one[:]); err != nil {
			s.mu.Lock()
			if cancel, ok := s.conns[c]; ok {
				cancel()
			}
			s.mu.Unlock()
		}
	}()
	h, ok := s.routes[req.Method+" "+req.Path]
	if !ok {
		_ = resp.Start(404, "application/json")
		fmt.Fprintf(resp, `{"error":{"code":"NotFound","message":"no route %s %s"}}`+"\n", req.Method, strconv.Quote(req.Path))
		return
	}
	h(ctx, resp, req)
	if !resp.started {
		_ = resp.Start(204, "text/plain")
	}
}

// ReadRequest parses one HTTP/1.x request from r.
func ReadRequest(r *bufio.Reader) (*Request, error) {
	req, n, err := readHead(r)
	if err == nil && n > 0 {
		err = readBody(r, req, n)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// readHead parses a request's line and headers, and returns the length of
// the body that follows.
func readHead(r *bufio.Reader) (*Request, int, error) {
	total := 0
	// Lines are read a buffer at a time, so a client that never sends a
	// newline is refused at maxHeaderBytes instead of filling memory.
	readLine := func() (string, error) {
		var line []byte
		for {
			frag, err := r.ReadSlice('\n')
			total += len(frag)
			if total > maxHeaderBytes {
				return "", errors.New("request header too large")
			}
			line = append(line, frag...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("incomplete request: %w", err)
			}
			return strings.TrimRight(string(line), "\r\n"), nil
		}
	}
	line, err := readLine()
	if err != nil {
		return nil, 0, err
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || parts[0] == "" {
		return nil, 0, fmt.Errorf("malformed request line %q", line)
	}
	u, err := url.ParseRequestURI(parts[1])
	if err != nil {
		return nil, 0, fmt.Errorf("malformed target: %w", err)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, 0, fmt.Errorf("malformed query: %w", err)
	}
	req := &Request{Method: parts[0], Path: u.Path, Query: query, Header: map[string]string{}}
	for {
		line, err := readLine()
		if err != nil {
			return nil, 0, err
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, 0, fmt.Errorf("malformed header %q", line)
		}
		req.Header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	if te := req.Header["transfer-encoding"]; te != "" {
		return nil, 0, fmt.Errorf("transfer-encoding %q is not supported; send Content-Length", te)
	}
	n := 0
	if cl := req.Header["content-length"]; cl != "" {
		n, err = strconv.Atoi(cl)
		if err != nil || n < 0 || n > maxBodyBytes {
			return nil, 0, fmt.Errorf("bad content-length %q", cl)
		}
	}
	return req, n, nil
}

func readBody(r *bufio.Reader, req *Request, n int) error {
	req.Body = make([]byte, n)
	if _, err := io.ReadFull(r, req.Body); err != nil {
		return fmt.Errorf("short body: %w", err)
	}
	return nil
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 204:
		return "No Content"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 409:
		return "Conflict"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Status"
}
