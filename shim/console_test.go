package shim

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The console never holds its caller: typing into a guest that reads
// nothing gives up at the deadline, and closing after QEMU exits still
// keeps the guest's last lines.
func TestConsoleWriteGivesUpAndCloseKeepsTheLastLines(t *testing.T) {
	ours, theirs, err := socketpair("serial")
	if err != nil {
		t.Fatal(err)
	}
	c := newConsole(ours)
	go c.pump(slog.New(slog.NewTextHandler(io.Discard, nil)))

	old := consoleWriteTimeout
	consoleWriteTimeout = 200 * time.Millisecond
	defer func() { consoleWriteTimeout = old }()
	began := time.Now()
	err = c.Write(bytes.Repeat([]byte("x"), 16<<20)) // far more than the socket buffers
	if !os.IsTimeout(err) || time.Since(began) > 5*time.Second {
		t.Fatalf("write to a guest that reads nothing: %v after %s", err, time.Since(began))
	}

	if _, err := theirs.Write([]byte("Kernel panic - not syncing\n")); err != nil {
		t.Fatal(err)
	}
	theirs.Close() // QEMU exits
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(c.Tail()), "Kernel panic") {
		t.Fatalf("tail %q lost the last line", c.Tail())
	}
}

// lineSizes records the length of every console line the shim logs.
type lineSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (l *lineSizes) Enabled(context.Context, slog.Level) bool { return true }
func (l *lineSizes) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.sizes = append(l.sizes, len(r.Message))
	l.mu.Unlock()
	return nil
}
func (l *lineSizes) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineSizes) WithGroup(string) slog.Handler      { return l }

// A guest that never prints a newline cannot grow the shim: its output is
// logged in pieces of at most consoleLineMax, and the tail stays bounded.
func TestConsoleLineFromTheGuestIsBounded(t *testing.T) {
	ours, theirs, err := socketpair("serial")
	if err != nil {
		t.Fatal(err)
	}
	c := newConsole(ours)
	logged := &lineSizes{}
	go c.pump(slog.New(logged))
	go func() {
		if _, err := theirs.Write(bytes.Repeat([]byte("y"), 1<<20)); err != nil {
			t.Error(err)
		}
		theirs.Close()
	}()
	<-c.drained
	c.Close()
	total := 0
	for _, n := range logged.sizes {
		if n > len("console: ")+consoleLineMax {
			t.Fatalf("logged a line of %d bytes", n)
		}
		total += n - len("console: ")
	}
	if total != 1<<20 || len(c.Tail()) != consoleKeep {
		t.Fatalf("logged %d of %d bytes, tail %d", total, 1<<20, len(c.Tail()))
	}
}
