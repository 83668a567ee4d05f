// Package peerconn admits the connections of a local HTTP Unix socket by
// their peer: it reads each peer's credentials (SO_PEERCRED), lets a check
// refuse the peer, and caps how many connections each peer uid holds at
// once. A refused connection gets a typed error answer and is closed before
// any server sees it. It speaks just enough HTTP for that answer, so the
// shim, which links no net/http, uses it as the agent does.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers.
package peerconn

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Cred reads the credentials of c's peer.
func Cred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, credErr
}

// Limit caps the concurrent connections of each peer uid.
//
// The cap is per uid so that one misbehaving client, a script of a member
// of the API group or a backend gone wrong, never locks out another: root
// and the backend each have their own budget. Within a uid, a connection
// counts as busy only while a request it sent in full is being served (a
// stream, a waited operation); the others are quiet: idle between
// requests, or still sending one. When a uid is at its cap, a new
// connection of that uid closes the uid's connection that has been quiet
// the longest, so stalled or forgotten connections never keep the uid's own
// next request out: an operator's command gets through beside a process of
// the same uid that holds hundreds of half-sent requests. Only when every
// one of the uid's connections is busy is the new one refused, with
// Unavailable, since closing work under way would be worse than a retry.
type Limit struct {
	max int

	mu    sync.Mutex
	peers map[uint32][]*Conn
}

// NewLimit caps each uid at perUID connections; perUID < 1 means no cap.
func NewLimit(perUID int) *Limit {
	return &Limit{max: perUID, peers: map[uint32][]*Conn{}}
}

// Admit counts c against uid's cap and returns it wrapped: the wrapper's
// Close gives the place back. At the cap it first closes uid's connection
// quiet the longest; it fails with Unavailable when every one is busy.
func (l *Limit) Admit(c net.Conn, uid uint32) (*Conn, error) {
	pc := &Conn{Conn: c, limit: l, uid: uid, quietSince: time.Now()}
	l.mu.Lock()
	conns := l.peers[uid]
	var evict *Conn
	if l.max > 0 && len(conns) >= l.max {
		for _, o := range conns {
			if !o.busy && (evict == nil || o.quietSince.Before(evict.quietSince)) {
				evict = o
			}
		}
		if evict == nil {
			l.mu.Unlock()
			return nil, errdefs.Unavailable("uid %d has %d connections serving requests, the most it may hold; retry when one ends", uid, l.max)
		}
		l.removeLocked(evict)
	}
	l.peers[uid] = append(l.peers[uid], pc)
	l.mu.Unlock()
	if evict != nil {
		_ = evict.Conn.Close() // its server sees the read fail and lets it go
	}
	return pc, nil
}

// Count is how many connections uid holds now.
func (l *Limit) Count(uid uint32) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers[uid])
}

func (l *Limit) removeLocked(c *Conn) {
	if c.gone {
		return
	}
	c.gone = true
	conns := l.peers[c.uid]
	for i, o := range conns {
		if o == c {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(l.peers, c.uid)
	} else {
		l.peers[c.uid] = conns
	}
}

// Conn is an admitted connection. Servers mark the requests it carries with
// Begin and End, which is what tells busy connections from quiet ones.
type Conn struct {
	net.Conn
	limit *Limit
	uid   uint32

	// Guarded by limit.mu.
	busy       bool
	quietSince time.Time
	gone       bool // closed, or evicted
}

// UID is the peer's uid.
func (c *Conn) UID() uint32 { return c.uid }

// Begin marks a request read in full, whose handler now runs. It reports
// false when the connection was closed to make room meanwhile: the request
// must then not be served, as nobody could hear the answer.
func (c *Conn) Begin() bool {
	c.limit.mu.Lock()
	defer c.limit.mu.Unlock()
	if c.gone {
		return false
	}
	c.busy = true
	return true
}

// End marks the handler done: the connection is quiet again.
func (c *Conn) End() {
	c.limit.mu.Lock()
	defer c.limit.mu.Unlock()
	c.busy = false
	c.quietSince = time.Now()
}

// Close closes the connection and gives its place back.
func (c *Conn) Close() error {
	c.limit.mu.Lock()
	c.limit.removeLocked(c)
	c.limit.mu.Unlock()
	return c.Conn.Close()
}

// Listener admits every connection of a Unix listener: Check, when set,
// vets the peer first, then Limit counts it. A refused connection is
// answered with the error and closed; Accept goes on to the next one.
type Listener struct {
	*net.UnixListener
	Limit *Limit
	// Check refuses a peer by returning an error, best a typed one
	// (errdefs.PermissionDenied): it is the answer.
	Check func(*unix.Ucred) error
	Log   *slog.Logger
}

// Accept returns the next admitted connection, a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		pc, err := l.admit(c)
		if err == nil {
			return pc, nil
		}
		if l.Log != nil {
			l.Log.Warn("refused a connection", "PEER", peerField(c), "ERROR", err.Error())
		}
		go Refuse(c, err)
	}
}

func (l *Listener) admit(c *net.UnixConn) (*Conn, error) {
	cred, err := Cred(c)
	if err != nil {
		return nil, errdefs.PermissionDenied("the peer's credentials cannot be read: %v", err)
	}
	if l.Check != nil {
		if err := l.Check(cred); err != nil {
			return nil, err
		}
	}
	return l.Limit.Admit(c, cred.Uid)
}

func peerField(c *net.UnixConn) string {
	cred, err := Cred(c)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return "uid " + strconv.Itoa(int(cred.Uid)) + " pid " + strconv.Itoa(int(cred.Pid))
}

// refuseTimeout bounds a refusal: a silent client would otherwise hold the
// connection, and a client that has gone leaves nobody to answer.
const refuseTimeout = 2 * time.Second

// Refuse answers err in the typed error shape, with its class's status, and
// closes c. It reads what the client sends meanwhile, so the client sees the
// answer rather than a reset.
func Refuse(c *net.UnixConn, err error) {
	defer c.Close()
	if c.SetDeadline(time.Now().Add(refuseTimeout)) != nil {
		return
	}
	e := errdefs.As(err)
	body, _ := json.Marshal(api.ErrorBody{Error: e}) // strings only: it cannot fail
	status := e.Code.HTTPStatus()
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		status, reason(status), len(body)+1, body)
	if c.CloseWrite() != nil {
		return
	}
	// Draining ends with the client's close or the deadline; either is the end.
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

func reason(status int) string {
	switch status {
	case 403:
		return "Forbidden"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
