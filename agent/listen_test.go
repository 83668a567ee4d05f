package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/peerconn/stalltest"
)

// quickLimits end stalled requests soon, so that the tests wait little;
// the tests wait for the ends themselves, with waitLimit as the deadline.
var quickLimits = ServerLimits{
	HeaderTimeout: 300 * time.Millisecond,
	BodyTimeout:   300 * time.Millisecond,
	IdleTimeout:   300 * time.Millisecond,
	ConnsPerUID:   8,
}

// The uid and gid another peer runs as in these tests.
const nobody, nogroup = 65534, 65534

// apiSocket serves h on a fresh API socket, as the agent does: group
// nogroup may connect, so that a process of nobody's is a peer too.
func apiSocket(t *testing.T, h http.Handler, limits ServerLimits) string {
	t.Helper()
	dir := sharedTempDir(t)
	sock := filepath.Join(dir, "agent.sock")
	ln, err := Listen(sock, "nogroup", limits.ConnsPerUID, logging.New("agent-test", os.Stderr, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(context.Background(), h, limits)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // streams still open are cut: the test is over
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return sock
}

// sharedTempDir is a directory that another user may enter.
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "infinivirt-listen-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// TestHelperStalledPeer is not a test: run as another user by
// TestStalledConnectionsBesideANormalRequest, it is that user's client
// that stalls.
func TestHelperStalledPeer(t *testing.T) {
	sock := os.Getenv("INFINIVIRT_TEST_STALL_SOCKET")
	if sock == "" {
		t.Skip("only run as a helper process")
	}
	n, _ := strconv.Atoi(os.Getenv("INFINIVIRT_TEST_STALL_COUNT"))
	conns, err := stalltest.Stall(sock, n)
	if err != nil {
		fmt.Println("stall failed:", err)
		os.Exit(1)
	}
	fmt.Println("stalled", len(conns))
	if err := stalltest.WaitClosed(conns, waitLimit); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("all closed")
	os.Exit(0)
}

// runAsNobody starts this test binary as nobody, stalling n connections on
// sock, and waits until they are all open.
func runAsNobody(t *testing.T, sock string, n int) (wait func() string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is root's alone.
	bin := filepath.Join(sharedTempDir(t), "helper.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperStalledPeer$")
	cmd.Env = append(os.Environ(), "INFINIVIRT_TEST_STALL_SOCKET="+sock, "INFINIVIRT_TEST_STALL_COUNT="+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nogroup}}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "stalled ") {
		t.Fatalf("the helper as nobody did not stall: %q", lines.Text())
	}
	return func() string {
		var rest []string
		for lines.Scan() {
			rest = append(rest, lines.Text())
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Sprintf("helper: %v: %s", err, strings.Join(rest, "; "))
		}
		return ""
	}
}

func get(c *http.Client, path string) (int, string, error) {
	resp, err := c.Get("http://local" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestStalledConnectionsBesideANormalRequest: hundreds of connections that
// send half a request, from root and from another uid, each past the cap,
// do not keep root's normal requests out, and are all closed: the oldest
// to make room, the rest once their header or body deadline passes.
func TestStalledConnectionsBesideANormalRequest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a peer as another user")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "served")
	})
	sock := apiSocket(t, h, quickLimits)
	waitNobody := runAsNobody(t, sock, 150)
	mine, err := stalltest.Stall(sock, 150)
	if err != nil {
		t.Fatal(err)
	}
	c := unixClient(sock)
	for i := range 3 {
		code, body, err := get(c, "/v1/vms")
		if err != nil || code != http.StatusOK || body != "served" {
			t.Fatalf("normal request %d beside stalled ones: %d %q %v", i, code, body, err)
		}
	}
	if err := stalltest.WaitClosed(mine, waitLimit); err != nil {
		t.Fatal(err)
	}
	if msg := waitNobody(); msg != "" {
		t.Fatalf("nobody's stalled connections: %s", msg)
	}
}

// blocking answers "started" once it has read the request's body, then
// waits for release and ends with the state of the request's context.
func blocking(started chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "started\n")
		_ = http.NewResponseController(w).Flush()
		started <- struct{}{}
		<-release
		fmt.Fprintf(w, "done, context %v\n", r.Context().Err())
	})
}

type answer struct {
	code  int
	lines []string
	err   error
}

// send runs req on c and hands over its whole answer.
func send(c *http.Client, req *http.Request, answers chan<- answer) {
	resp, err := c.Do(req)
	if err != nil {
		answers <- answer{err: err}
		return
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		a.lines = append(a.lines, sc.Text())
	}
	a.err = sc.Err()
	answers <- a
}

// TestDeadlinesDoNotCutAnswers: a stream, and an answer that waits long
// after its body was read, both outlive every read deadline with their
// requests' contexts intact. Stalled connections opened after them being
// closed is what shows that the deadlines have passed.
func TestDeadlinesDoNotCutAnswers(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	sock := apiSocket(t, blocking(started, release), quickLimits)
	c := unixClient(sock)
	answers := make(chan answer, 2)
	stream, _ := http.NewRequest(http.MethodGet, "http://local/v1/events", nil)
	waited, _ := http.NewRequest(http.MethodPost, "http://local/v1/vms/x/powerOff?wait=true", strings.NewReader(`{"a":1}`))
	go send(c, stream, answers)
	go send(c, waited, answers)
	<-started
	<-started
	late, err := stalltest.Stall(sock, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := stalltest.WaitClosed(late, waitLimit); err != nil {
		t.Fatal(err)
	}
	close(release)
	for range 2 {
		a := <-answers
		if a.err != nil || a.code != http.StatusOK || len(a.lines) != 2 || a.lines[1] != "done, context <nil>" {
			t.Fatalf("answer cut: %d %q %v", a.code, a.lines, a.err)
		}
	}
}

// TestAtTheCapBusyConnectionsStay: when every connection of a uid serves a
// request, a new one is refused with Unavailable, and none of the busy ones
// is closed; once one ends, the uid is served again.
func TestAtTheCapBusyConnectionsStay(t *testing.T) {
	limits := quickLimits
	limits.ConnsPerUID = 2
	// Room for the last request's start too, which nobody waits for.
	started, release := make(chan struct{}, 3), make(chan struct{})
	sock := apiSocket(t, blocking(started, release), limits)
	c := unixClient(sock)
	answers := make(chan answer, 2)
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://local/v1/events", nil)
		go send(c, req, answers)
		<-started
	}
	resp, err := unixClient(sock).Get("http://local/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var body api.ErrorBody
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || body.Error == nil || body.Error.Code != errdefs.CodeUnavailable {
		t.Fatalf("a third connection beside two busy ones: %d %+v %v", resp.StatusCode, body.Error, err)
	}
	close(release)
	for range 2 {
		if a := <-answers; a.err != nil || len(a.lines) != 2 || a.lines[1] != "done, context <nil>" {
			t.Fatalf("a busy connection was cut: %q %v", a.lines, a.err)
		}
	}
	if code, _, err := get(c, "/v1/health"); err != nil || code != http.StatusOK {
		t.Fatalf("after the busy ones ended: %d %v", code, err)
	}
}
