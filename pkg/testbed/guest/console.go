package guest

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Console reads a guest's serial console and scripts the shell on it. It
// keeps the whole transcript; WaitFor and Run consume it in order, so a
// line that came before the current position is never matched twice.
type Console struct {
	w io.Writer

	mu      sync.Mutex
	out     strings.Builder
	pos     int           // start of the unconsumed output
	changed chan struct{} // closed and replaced on every read
	err     error         // why reading stopped
	seq     int           // numbers Run's markers
}

// NewConsole starts reading rw (the host end of the serial socket) until
// it fails, usually because QEMU exited.
func NewConsole(rw io.ReadWriter) *Console {
	c := &Console{w: rw, changed: make(chan struct{})}
	go c.read(rw)
	return c
}

func (c *Console) read(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		c.mu.Lock()
		// The tty turns "\n" into "\r\n"; keep the lines plain.
		c.out.WriteString(strings.ReplaceAll(string(buf[:n]), "\r", ""))
		if err != nil {
			c.err = err
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Transcript is everything the guest printed so far.
func (c *Console) Transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// WaitFor waits until s appears after the current position and moves the
// position past it. It returns the output up to and including s.
func (c *Console) WaitFor(ctx context.Context, s string) (string, error) {
	return c.waitMatch(ctx, s, func(text string) []int {
		if i := strings.Index(text, s); i >= 0 {
			return []int{i, i + len(s)}
		}
		return nil
	})
}

// waitMatch waits until find locates something in the unconsumed output,
// consumes up to its end and returns that text with the match's indexes.
func (c *Console) waitMatch(ctx context.Context, what string, find func(string) []int) (string, error) {
	for {
		c.mu.Lock()
		text := c.out.String()[c.pos:]
		if loc := find(text); loc != nil {
			c.pos += loc[1]
			c.mu.Unlock()
			return text[:loc[1]], nil
		}
		changed, err := c.changed, c.err
		c.mu.Unlock()
		if err != nil {
			return text, fmt.Errorf("console ended (%v) before %q appeared", err, what)
		}
		select {
		case <-ctx.Done():
			return text, fmt.Errorf("waiting for %q on the console: %w", what, ctx.Err())
		case <-changed:
		}
	}
}

// Run runs a shell command line on the guest's console and returns what
// it printed and its exit status. Markers printed with printf around the
// command tell its output apart from anything before or after; a command
// may end in '&'.
func (c *Console) Run(ctx context.Context, cmd string) (string, int, error) {
	c.mu.Lock()
	c.seq++
	n := c.seq
	c.mu.Unlock()
	begin := fmt.Sprintf("__TGB%d__\n", n)
	// The written text never contains the printed markers, so a console
	// that echoes input still cannot match early.
	script := fmt.Sprintf("printf '__TGB%%s__\\n' %d\n%s\nprintf '__TGE%%s=%%s__\\n' %d $?\n", n, cmd, n)
	if _, err := io.WriteString(c.w, script); err != nil {
		return "", -1, fmt.Errorf("writing to the console: %w", err)
	}
	if _, err := c.WaitFor(ctx, begin); err != nil {
		return "", -1, err
	}
	end := regexp.MustCompile(fmt.Sprintf(`__TGE%d=(\d+)__\n`, n))
	text, err := c.waitMatch(ctx, end.String(), end.FindStringIndex)
	if err != nil {
		return text, -1, err
	}
	m := end.FindStringSubmatchIndex(text)
	rc, _ := strconv.Atoi(text[m[2]:m[3]])
	return text[:m[0]], rc, nil
}
