package shim

import (
	"bufio"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// consoleKeep is how much of the serial console the shim remembers, and
// consoleLineMax the longest line it logs in one piece.
const (
	consoleKeep    = 64 << 10
	consoleLineMax = 4 << 10
)

// Bounds on the console's two ends: typing into a guest that reads nothing
// gives up, and the last output is read before the shim exits. Variables,
// so tests can shorten them.
var (
	consoleWriteTimeout = 10 * time.Second
	consoleDrainTimeout = 2 * time.Second
)

// console is the guest's serial port: the shim's end of a socketpair whose
// other end QEMU holds. Output goes to the journal line by line and into a
// ring the control socket serves.
type console struct {
	f       *os.File
	drained chan struct{} // closed when pump has read everything QEMU wrote

	mu   sync.Mutex
	tail []byte
	wmu  sync.Mutex // one writer at a time, so inputs do not interleave
}

func newConsole(f *os.File) *console { return &console{f: f, drained: make(chan struct{})} }

// pump reads the guest's output until QEMU's end closes. The guest is not
// trusted: a line longer than consoleLineMax goes to the journal in pieces
// rather than growing in memory until its newline comes.
func (c *console) pump(log *slog.Logger) {
	defer close(c.drained)
	r := bufio.NewReaderSize(c.f, consoleLineMax)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			c.mu.Lock()
			c.tail = append(c.tail, line...)
			if over := len(c.tail) - consoleKeep; over > 0 {
				c.tail = append(c.tail[:0], c.tail[over:]...)
			}
			c.mu.Unlock()
			if text := strings.TrimRight(string(line), "\r\n"); text != "" {
				log.Info("console: "+text, "SOURCE", "serial")
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Tail returns what the guest printed most recently.
func (c *console) Tail() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.tail...)
}

// Write types b into the guest's serial port. A guest that does not read
// leaves QEMU's buffer full; the write then ends at consoleWriteTimeout
// rather than holding the control socket's handler, and with it the shim's
// exit.
func (c *console) Write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.f.SetWriteDeadline(time.Now().Add(consoleWriteTimeout)); err != nil {
		return err
	}
	_, err := c.f.Write(b)
	return err
}

// Close waits a little for the output QEMU wrote before it exited, so that
// the guest's last lines (a panic, say) reach the journal, then closes.
func (c *console) Close() error {
	select {
	case <-c.drained:
	case <-time.After(consoleDrainTimeout):
	}
	return c.f.Close()
}
