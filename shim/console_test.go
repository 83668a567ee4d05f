package shim

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
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
