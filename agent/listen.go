package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/peerconn"
)

// ServerLimits bound what an API client may hold: the time to send a
// request, an idle connection's life, and connections per peer uid. They
// bound reading requests only: an answer may take as long as it needs, so
// event streams and waited operations are not cut.
type ServerLimits struct {
	HeaderTimeout time.Duration // the request line and headers
	BodyTimeout   time.Duration // the body, beyond HeaderTimeout
	IdleTimeout   time.Duration // a kept-alive connection between requests
	// ConnsPerUID caps each peer uid's connections (see peerconn.Limit for
	// who gets closed or refused at the cap); 0 is no cap.
	ConnsPerUID int
}

// DefaultServerLimits are the agent's. The idle timeout outlasts the usual
// clients' own (Go's transport keeps idle connections 90 s), so that it is
// the client that lets an idle connection go, not the server under it. The
// cap is well above what a backend holds (one all-VM event stream, the VMs'
// own streams, requests in flight).
var DefaultServerLimits = ServerLimits{
	HeaderTimeout: 10 * time.Second,
	BodyTimeout:   10 * time.Second,
	IdleTimeout:   2 * time.Minute,
	ConnsPerUID:   256,
}

// Listen opens the API socket: mode 0660, group group (when it exists), and
// a listener that checks each peer's credentials (SO_PEERCRED) before any
// handler sees the connection, and counts its connections against
// connsPerUID. Root, the agent's own user and members of group are let in;
// everyone else gets a 403 and the door.
func Listen(path, group string, connsPerUID int, log *slog.Logger) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	gid := -1
	if g, err := user.LookupGroup(group); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	} else {
		log.Warn("API socket group not found: only root and the agent's user may connect", "GROUP", group, "ERROR", err.Error())
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return &peerconn.Listener{
		UnixListener: ln.(*net.UnixListener),
		Limit:        peerconn.NewLimit(connsPerUID),
		Check:        func(c *unix.Ucred) error { return checkPeer(c, gid) },
		Log:          log,
	}, nil
}

func checkPeer(c *unix.Ucred, gid int) error {
	if c.Uid == 0 || int(c.Uid) == os.Getuid() {
		return nil
	}
	if gid >= 0 && int(c.Gid) == gid {
		return nil
	}
	if gid >= 0 {
		if groups, err := processGroups(int(c.Pid)); err == nil {
			for _, g := range groups {
				if g == gid {
					return nil
				}
			}
		}
	}
	return errdefs.PermissionDenied("peer is not root, the agent's user, or in the API group")
}

// processGroups reads a process's supplementary groups.
func processGroups(pid int) ([]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			var out []int
			for _, f := range strings.Fields(rest) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
			return out, nil
		}
	}
	return nil, errors.New("no Groups line")
}

// NewServer is the API's HTTP server for h, within limits. Requests end
// with ctx.
//
// net/http's ReadTimeout bounds the headers and the body together; it ends
// as soon as the body has been read to its end (net/http then lifts the
// deadline to watch for the client leaving), so a stream or a waited
// operation is not cut by it.
func NewServer(ctx context.Context, h http.Handler, limits ServerLimits) *http.Server {
	return &http.Server{
		Handler:           markServed(h),
		ReadHeaderTimeout: limits.HeaderTimeout,
		ReadTimeout:       limits.HeaderTimeout + limits.BodyTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
}

type connKey struct{}

// markServed marks each request on its connection (a peerconn.Conn) as
// served from the moment it has been read in full, its body included,
// until its handler returns. A connection still sending its body is not
// working yet: it is one the cap may close to make room.
func markServed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pc, _ := r.Context().Value(connKey{}).(*peerconn.Conn)
		if pc == nil {
			h.ServeHTTP(w, r)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			body := &markedBody{ReadCloser: r.Body, conn: pc}
			defer body.end()
			r.Body = body
			h.ServeHTTP(w, r)
			return
		}
		if !pc.Begin() {
			return // closed to make room: nobody would hear the answer
		}
		defer pc.End()
		h.ServeHTTP(w, r)
	})
}

// markedBody begins the request on its connection when it is read to its end.
type markedBody struct {
	io.ReadCloser
	conn        *peerconn.Conn
	read, begun bool
}

func (b *markedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.read {
		b.read = true
		if !b.conn.Begin() {
			return n, errors.New("the connection was closed to make room for a newer one of the same peer")
		}
		b.begun = true
	}
	return n, err
}

func (b *markedBody) end() {
	if b.begun {
		b.conn.End()
	}
}
