package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CommandError is a command inside a host that failed; Stderr is what it
// printed there.
type CommandError struct {
	Host     string
	Args     []string
	ExitCode int // -1 when it did not exit normally
	Stderr   string
	Err      error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("testbed host %s: %s: %v", e.Host, strings.Join(e.Args, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// hostEnv is the environment of commands run inside a host: nothing of the
// caller's (NOTIFY_SOCKET, DBUS_* and the like would point outside).
var hostEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"SYSTEMD_PAGER=",
	"SYSTEMD_COLORS=0",
}

// Command prepares name with args to run inside all the host's namespaces
// (nsenter -t <pid> -a): it sees the overlay root, the host's /run and its
// network. The process stays in the caller's cgroup; it dies with the host.
// Env is minimal; callers may replace or extend cmd.Env.
//
// nsenter runs the command as its child and does not pass signals on, so
// the command gets a process group of its own and ending ctx kills that
// whole group, inside the host too. A caller that needs the terminal's
// process group (an interactive shell) may clear SysProcAttr; ctx then
// kills nsenter only.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"-t", strconv.Itoa(h.pid), "-a", "--", name}, args...)
	cmd := exec.CommandContext(ctx, nsenterBin, argv...)
	cmd.Env = append([]string(nil), hostEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid && cmd.SysProcAttr.Pgid == 0 {
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs args inside the host and returns its standard output. A failure
// is a *CommandError carrying standard error.
func (h *Host) Run(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("testbed: Run needs a command")
	}
	cmd := h.Command(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return stdout.String(), &CommandError{Host: h.id, Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// WriteFile writes data to path inside the host, creating parent
// directories. It runs inside the host, so symlinks resolve there.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("testbed: WriteFile: path %q is not absolute", path)
	}
	cmd := h.Command(ctx, "/bin/sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"`,
		"sh", path, fmt.Sprintf("%04o", mode.Perm()))
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &CommandError{Host: h.id, Args: []string{"write", path}, ExitCode: -1, Stderr: stderr.String(), Err: err}
	}
	return nil
}

// Path is the machine-side path of path inside the host, through
// /proc/<pid>/root. Symlinks inside the host are resolved inside it (an
// absolute link such as /var/run -> /run must not escape to the machine).
// The result is good for reading files and for connecting to Unix sockets.
func (h *Host) Path(path string) string {
	root := fmt.Sprintf("/proc/%d/root", h.pid)
	return filepath.Join(root, resolveInRoot(root, path))
}

// resolveInRoot resolves the symlinks of the components of p that exist
// below root, as if root were "/", and returns the resolved absolute path.
func resolveInRoot(root, p string) string {
	pending := strings.Split(filepath.Clean("/"+p), "/")
	resolved := "/"
	for links := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil || links >= 40 {
			// Not a link, or missing: keep the name as it is.
			resolved = next
			continue
		}
		links++
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return resolved
}

// Journal returns journalctl's output for unit inside the host (short-iso
// lines, all boots).
func (h *Host) Journal(ctx context.Context, unit string) (string, error) {
	return h.Run(ctx, "journalctl", "--no-pager", "-q", "-o", "short-iso", "-u", unit)
}

// JournalEntry is one journal entry as `journalctl -o json` prints it:
// field names to values. Binary fields come as arrays of numbers and are
// kept as raw JSON.
type JournalEntry map[string]json.RawMessage

// Field returns a text field, or "" when it is absent or binary.
func (e JournalEntry) Field(name string) string {
	var s string
	if err := json.Unmarshal(e[name], &s); err != nil {
		return ""
	}
	return s
}

// JournalJSON returns the journal entries of unit inside the host.
func (h *Host) JournalJSON(ctx context.Context, unit string) ([]JournalEntry, error) {
	out, err := h.Run(ctx, "journalctl", "--no-pager", "-q", "-o", "json", "-u", unit)
	if err != nil {
		return nil, err
	}
	return parseJournalJSON([]byte(out))
}

// parseJournalJSON decodes journalctl's JSON lines.
func parseJournalJSON(data []byte) ([]JournalEntry, error) {
	var entries []JournalEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e JournalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return entries, fmt.Errorf("journal line %d: %w", n, err)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}
