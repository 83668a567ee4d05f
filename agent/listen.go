package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Listen opens the API socket: mode 0660, group group (when it exists), and
// a listener that checks each peer's credentials (SO_PEERCRED) before any
// handler sees the connection. Root, the agent's own user and members of
// group are let in; everyone else gets a 403 and the door.
func Listen(path, group string, log *slog.Logger) (net.Listener, error) {
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
	return &peerCheckListener{UnixListener: ln.(*net.UnixListener), gid: gid, log: log}, nil
}

type peerCheckListener struct {
	*net.UnixListener
	gid int
	log *slog.Logger
}

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && l.allowed(cred) {
			return c, nil
		}
		l.log.Warn("refused an API connection", "PEER_UID", credField(cred, err))
		go refuse(c)
	}
}

// refuse answers 403 without ever passing the connection to a handler. It
// reads what the client sends meanwhile, so the client sees the answer
// rather than a reset.
func refuse(c *net.UnixConn) {
	defer c.Close()
	// Without a deadline a silent client would hold the connection; a
	// client that has gone leaves nobody to answer.
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return
	}
	body := `{"error":{"code":"PermissionDenied","message":"peer is not root, the agent's user, or in the API group"}}` + "\n"
	fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	if err := c.CloseWrite(); err != nil {
		return
	}
	// Draining ends with the client's close or the deadline; either is the end.
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
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

func (l *peerCheckListener) allowed(c *unix.Ucred) bool {
	if c.Uid == 0 || int(c.Uid) == os.Getuid() {
		return true
	}
	if l.gid < 0 {
		return false
	}
	if int(c.Gid) == l.gid {
		return true
	}
	groups, err := processGroups(int(c.Pid))
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g == l.gid {
			return true
		}
	}
	return false
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

func credField(c *unix.Ucred, err error) string {
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strconv.Itoa(int(c.Uid))
}
