package tinyhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve starts a server on a fresh socket and returns a net/http client for it.
func serve(t *testing.T, s *Server) *http.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, s, ln, sock)
}

// serveOn serves s on ln, bound to sock, and returns a net/http client for it.
func serveOn(t *testing.T, s *Server, ln net.Listener, sock string) *http.Client {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Logf("shutdown cut requests still running: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func TestRoutesBodiesAndErrors(t *testing.T) {
	s := New()
	s.Handle("POST /v1/echo", func(_ context.Context, w *Response, r *Request) {
		if err := w.Start(201, "text/plain"); err != nil {
			return
		}
		fmt.Fprintf(w, "%s %s after=%s", r.Body, r.Header["x-test"], r.Query.Get("after"))
	})
	s.Handle("GET /v1/empty", func(context.Context, *Response, *Request) {})
	c := serve(t, s)

	req, _ := http.NewRequest("POST", "http://x/v1/echo?after=7", strings.NewReader(`{"op":"reset"}`))
	req.Header.Set("X-Test", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != `{"op":"reset"} yes after=7` {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	for path, want := range map[string]int{"/v1/empty": 204, "/v1/nope": 404} {
		resp, err := c.Get("http://x" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestStreamEndsOnShutdownAndOnClientLeaving(t *testing.T) {
	s := New()
	left := make(chan struct{})
	s.Handle("GET /v1/stream", func(ctx context.Context, w *Response, _ *Request) {
		if err := w.Start(200, "application/x-ndjson"); err != nil {
			return
		}
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "%d\n", i); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				close(left)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	c := serve(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/v1/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for i := 0; i < 3; i++ {
		if !sc.Scan() || sc.Text() != fmt.Sprint(i) {
			t.Fatalf("line %d: %q", i, sc.Text())
		}
	}
	cancel()
	resp.Body.Close()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never saw the client leave")
	}
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	for _, raw := range []string{
		"GET\r\n\r\n",
		"GET /x HTTP/2\r\n\r\n",
		"GET /x HTTP/1.1\r\nbad header\r\n\r\n",
		"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
		"GET /x HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n",
	} {
		if _, err := ReadRequest(bufio.NewReader(strings.NewReader(raw))); err == nil {
			t.Errorf("accepted %q", raw[:min(len(raw), 40)])
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add("POST /v1/power?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	f.Add("GET / HTTP/1.0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		if len(req.Body) > maxBodyBytes || req.Method == "" || !strings.HasPrefix(req.Path, "/") && req.Path != "" && req.Path != "*" {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// endless is a client that sends header bytes and never a newline.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += len(p)
	return len(p), nil
}

func TestHeaderWithoutNewlineIsBounded(t *testing.T) {
	src := &endless{}
	if _, err := ReadRequest(bufio.NewReader(src)); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err = %v, want the header refused as too large", err)
	}
	if src.n > 2*maxHeaderBytes {
		t.Fatalf("read %d bytes of one header line; the limit is %d", src.n, maxHeaderBytes)
	}
}

// A server shut down before its Serve ran (the shim's start failing right
// after it opened its socket) must not leave Serve accepting.
func TestServeAfterShutdownReturns(t *testing.T) {
	s := New()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		ln.Close()
		t.Fatal("Serve kept accepting after Shutdown")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener is still open")
	}
}

// flakyListener fails its first Accepts the way a process out of file
// descriptors sees them, then accepts for real.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", l.err)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func TestServeOutlivesPassingAcceptErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	s.Handle("GET /v1/ping", func(_ context.Context, w *Response, _ *Request) {
		_ = w.Start(200, "text/plain")
		_, _ = io.WriteString(w, "pong")
	})
	served := make(chan error, 1)
	go func() {
		served <- s.Serve(context.Background(), &flakyListener{Listener: ln, fails: 3, err: syscall.EMFILE})
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer after EMFILE: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "pong" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestServeReturnsOtherAcceptErrors(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = New().Serve(context.Background(), &flakyListener{Listener: ln, fails: 1, err: syscall.EINVAL})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Serve = %v, want EINVAL", err)
	}
}
