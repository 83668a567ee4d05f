package peerconn

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// pipe is one admitted connection and the client's end of it.
type pipe struct {
	*Conn
	client net.Conn
}

func admit(t *testing.T, l *Limit, uid uint32) (pipe, error) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	c, err := l.Admit(server, uid)
	return pipe{c, client}, err
}

func mustAdmit(t *testing.T, l *Limit, uid uint32) pipe {
	t.Helper()
	p, err := admit(t, l, uid)
	if err != nil {
		t.Fatalf("admit uid %d: %v", uid, err)
	}
	return p
}

// closedByServer reports whether the client's end sees its connection gone.
func closedByServer(p pipe) bool {
	// A pipe refuses deadlines once either end is closed; a live one times
	// the read out, which is the answer "still open".
	err := p.client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err == nil {
		_, err = p.client.Read(make([]byte, 1))
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}

// TestTheCapClosesTheLongestQuietFirst: at the cap, the uid's connection
// quiet the longest makes room; busy ones are never closed, and when every
// one is busy the newcomer is refused. Another uid is not affected.
func TestTheCapClosesTheLongestQuietFirst(t *testing.T) {
	l := NewLimit(3)
	busy := mustAdmit(t, l, 1000)
	old := mustAdmit(t, l, 1000)
	if !busy.Begin() {
		t.Fatal("Begin on a live connection reported it closed")
	}
	recent := mustAdmit(t, l, 1000)
	// old was admitted before recent, but has just ended a request.
	if !old.Begin() {
		t.Fatal("Begin")
	}
	old.End()

	third := mustAdmit(t, l, 1000)
	if !closedByServer(recent) || closedByServer(old) || closedByServer(busy) {
		t.Fatal("the cap did not close the connection quiet the longest, and only it")
	}
	if recent.Begin() {
		t.Fatal("a request was let in on a connection closed to make room")
	}
	if n := l.Count(1000); n != 3 {
		t.Fatalf("uid 1000 holds %d connections, want 3", n)
	}

	for _, p := range []pipe{old, third} {
		if !p.Begin() {
			t.Fatal("Begin")
		}
	}
	_, err := admit(t, l, 1000)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable}) {
		t.Fatalf("a fourth connection beside three busy ones: %v, want Unavailable", err)
	}
	other := mustAdmit(t, l, 0)
	if closedByServer(other) {
		t.Fatal("another uid's connection was closed")
	}

	// Closing gives the place back, once however often it is called.
	busy.Close()
	busy.Close()
	if n := l.Count(1000); n != 2 {
		t.Fatalf("after a close uid 1000 holds %d connections, want 2", n)
	}
	if !mustAdmit(t, l, 1000).Begin() {
		t.Fatal("Begin")
	}
	if _, err := admit(t, l, 1000); err == nil {
		t.Fatal("a double close gave two places back")
	}
}

func TestNoCap(t *testing.T) {
	l := NewLimit(0)
	for range 100 {
		mustAdmit(t, l, 7)
	}
	if n := l.Count(7); n != 100 {
		t.Fatalf("holds %d", n)
	}
}
