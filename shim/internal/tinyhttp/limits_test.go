package tinyhttp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/peerconn"
	"github.com/infinibay/infinivirt/pkg/peerconn/stalltest"
)

// waitLimit bounds the waits for the server to act; it is a deadline for a
// hung test, not a measure of speed.
const waitLimit = 30 * time.Second

// quickLimits end stalled requests soon, so that the tests wait little.
var quickLimits = Limits{HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 300 * time.Millisecond}

// serveCapped serves s behind the per-uid cap, as the shim does.
func serveCapped(t *testing.T, s *Server, perUID int) (*http.Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	capped := &peerconn.Listener{UnixListener: ln.(*net.UnixListener), Limit: peerconn.NewLimit(perUID)}
	return serveOn(t, s, capped, sock), sock
}

// stall opens n connections that each send half a request.
func stall(t *testing.T, sock string, n int) []net.Conn {
	t.Helper()
	conns, err := stalltest.Stall(sock, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

func waitClosed(t *testing.T, conns []net.Conn) {
	t.Helper()
	if err := stalltest.WaitClosed(conns, waitLimit); err != nil {
		t.Fatal(err)
	}
}

// TestStalledRequestsBesideANormalOne: connections that send half a request,
// past the cap, do not keep a normal request out, and are all closed, the
// oldest to make room and the rest once their header or body deadline
// passes.
func TestStalledRequestsBesideANormalOne(t *testing.T) {
	s := New()
	s.Limits = quickLimits
	s.Handle("GET /v1/vms", func(_ context.Context, w *Response, _ *Request) {
		_, _ = io.WriteString(w, `"ok"`)
	})
	c, sock := serveCapped(t, s, 4)
	conns := stall(t, sock, 40)
	for i := range 3 {
		resp, err := c.Get("http://x/v1/vms")
		if err != nil {
			t.Fatalf("normal request %d beside stalled ones: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `"ok"` {
			t.Fatalf("normal request %d beside stalled ones: %d %q", i, resp.StatusCode, b)
		}
	}
	waitClosed(t, conns)
}

// TestDeadlinesDoNotCutStreams: a stream whose request had a body outlives
// both read deadlines with its context intact; stalled connections opened
// after it being closed is what shows that the deadlines have passed.
func TestDeadlinesDoNotCutStreams(t *testing.T) {
	s := New()
	s.Limits = quickLimits
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("POST /v1/events", func(ctx context.Context, w *Response, r *Request) {
		if w.Start(200, "application/x-ndjson") != nil {
			return
		}
		fmt.Fprintf(w, "started %s\n", r.Body)
		if w.Flush() != nil {
			return
		}
		close(started)
		<-release
		fmt.Fprintf(w, "done, context %v\n", ctx.Err())
	})
	c, sock := serveCapped(t, s, 4)
	answer := make(chan string, 1)
	go func() {
		resp, err := c.Post("http://x/v1/events", "application/json", strings.NewReader(`{"after":0}`))
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answer <- fmt.Sprintf("%s%v", b, err)
	}()
	<-started
	waitClosed(t, stall(t, sock, 2))
	close(release)
	if got, want := <-answer, "started {\"after\":0}\ndone, context <nil>\n<nil>"; got != want {
		t.Fatalf("stream answered %q, want %q", got, want)
	}
}
