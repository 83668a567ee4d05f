// Package stalltest is for tests of servers that must not be held by
// stalled clients: it opens connections that send half a request, and
// waits for the server to close them.
package stalltest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Halves are the two ways to send half a request: headers cut short, and a
// body cut short.
var Halves = []string{
	"GET /v1/vms HTTP/1.1\r\nHost: local\r\nX-Half: ",
	"POST /v1/vms HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":",
}

// Stall opens n connections to the Unix socket sock, each sending one of
// Halves in turn. The connections it opened are returned even on error.
func Stall(sock string, n int) ([]net.Conn, error) {
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, Halves[i%len(Halves)]); err != nil {
			return conns, err
		}
	}
	return conns, nil
}

// WaitClosed waits until the server has closed each of conns: a read ends
// (EOF, or a reset after an answer) other than by the limit, a deadline
// for a hung test rather than a measure of speed. It closes them all.
func WaitClosed(conns []net.Conn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var firstErr error
	for i, c := range conns {
		err := c.SetReadDeadline(deadline)
		if err == nil {
			_, err = io.Copy(io.Discard, c)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && firstErr == nil {
			firstErr = fmt.Errorf("stalled connection %d of %d is still open after %s", i+1, len(conns), limit)
		}
		c.Close()
	}
	return firstErr
}
