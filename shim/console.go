package shim

import (
	"bufio"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// consoleKeep is how much of the serial console the shim remembers.
const consoleKeep = 64 << 10

// console is the guest's serial port: the shim's end of a socketpair whose
// other end QEMU holds. Output goes to the journal line by line and into a
// ring the control socket serves.
type console struct {
	f *os.File

	mu   sync.Mutex
	tail []byte
}

func newConsole(f *os.File) *console { return &console{f: f} }

func (c *console) pump(log *slog.Logger) {
	r := bufio.NewReaderSize(c.f, 4096)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			c.mu.Lock()
			c.tail = append(c.tail, line...)
			if over := len(c.tail) - consoleKeep; over > 0 {
				c.tail = append(c.tail[:0], c.tail[over:]...)
			}
			c.mu.Unlock()
			if text := strings.TrimRight(line, "\r\n"); text != "" {
				log.Info("console: "+text, "SOURCE", "serial")
			}
		}
		if err != nil {
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

// Write types into the guest's serial port.
func (c *console) Write(b []byte) (int, error) { return c.f.Write(b) }

func (c *console) Close() error { return c.f.Close() }
