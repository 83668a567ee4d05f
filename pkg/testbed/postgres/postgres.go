// Package postgres runs throwaway PostgreSQL clusters for tests: one fresh
// directory per cluster, reachable only through a unix socket in that
// directory, with durability switched off because nothing in it must outlive
// the test.
//
// initdb and pg_ctl refuse to run as root, so the server runs as the
// `postgres` system user while the test itself stays root.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Reasons a cluster cannot run on this machine. New skips the test on them.
var (
	ErrNotRoot        = errors.New("postgres testbed: needs root, to run the server as the postgres user")
	ErrNoPostgresUser = errors.New("postgres testbed: no postgres system user (install postgresql)")
	ErrNoBinaries     = errors.New("postgres testbed: no PostgreSQL server binaries (install postgresql)")
)

// maxSocketPath is the room a unix socket path has (sun_path, 108 bytes with its NUL).
const maxSocketPath = 107

// Options shape a cluster. The zero value is what tests want.
type Options struct {
	// Database is created empty for the test. Default "infinivirt_test".
	Database string
	// User is the superuser role initdb creates; the DSN logs in as it. Default "infinivirt".
	User string
	// RunAs is the system account that owns the files and runs the server. Default "postgres".
	RunAs string
	// BinDir holds initdb, pg_ctl and postgres. Default: FindBinDir.
	BinDir string
	// BaseDir is where the cluster's directory is made. Default /var/tmp: a
	// namespaced systemd booted the naive way empties /tmp, and the socket path must stay short.
	BaseDir string
	// Settings are extra postgresql.conf parameters, for example {"max_connections": "20"}.
	Settings map[string]string
	// Timeout bounds each call of initdb, pg_ctl or createdb. Default 60 s.
	Timeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Database == "" {
		o.Database = "infinivirt_test"
	}
	if o.User == "" {
		o.User = "infinivirt"
	}
	if o.RunAs == "" {
		o.RunAs = "postgres"
	}
	if o.BaseDir == "" {
		o.BaseDir = "/var/tmp"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
}

// CommandError is a failed PostgreSQL program, with what it printed and,
// for server start failures, the end of the server log.
type CommandError struct {
	Command string // program and verb, e.g. "pg_ctl start"
	Output  string
	Log     string
	Err     error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("postgres testbed: %s: %v", e.Command, e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	if e.Log != "" {
		msg += "\nserver log:\n" + e.Log
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// Cluster is one running (or stopped) throwaway PostgreSQL server.
type Cluster struct {
	opts   Options
	dir    string // socket directory; parent of data/ and server.log
	binDir string
	cred   *syscall.Credential

	mu      sync.Mutex
	running bool
	removed bool
}

// Start creates, configures and starts a cluster, and creates Options.Database in it.
// On error nothing is left behind.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.setDefaults()
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	cred, err := lookupCredential(opts.RunAs)
	if err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = FindBinDir(ctx); err != nil {
			return nil, err
		}
	} else if !hasServerBinaries(opts.BinDir) {
		return nil, fmt.Errorf("%w in %s", ErrNoBinaries, opts.BinDir)
	}

	if err := stopOrphans(opts, cred); err != nil {
		return nil, err
	}
	me, err := selfOwner()
	if err != nil {
		return nil, fmt.Errorf("postgres testbed: %w", err)
	}
	dir, err := os.MkdirTemp(opts.BaseDir, "ivpg-")
	if err != nil {
		return nil, fmt.Errorf("postgres testbed: %w", err)
	}
	c := &Cluster{opts: opts, dir: dir, binDir: opts.BinDir, cred: cred}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(me.String()), 0o644); err != nil {
		return nil, errors.Join(fmt.Errorf("postgres testbed: %w", err), c.Stop())
	}
	if err := c.create(ctx); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPostgresUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres testbed: user %s: %w", name, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("postgres testbed: user %s is root; initdb refuses that", name)
	}
	// An empty group list drops root's supplementary groups in the child.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func (c *Cluster) create(ctx context.Context) error {
	if n := len(c.socketPath()); n > maxSocketPath {
		return fmt.Errorf("postgres testbed: socket path %s is %d bytes, over the %d a unix socket allows",
			c.socketPath(), n, maxSocketPath)
	}
	// 0755 so that root, and a process in another mount namespace that
	// bind-mounts the directory, can reach the socket.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return fmt.Errorf("postgres testbed: %w", err)
	}
	if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return fmt.Errorf("postgres testbed: %w", err)
	}
	if _, err := c.run(ctx, "initdb",
		"-D", c.dataDir(), "-U", c.opts.User, "--auth=trust",
		"-E", "UTF8", "--locale=C.UTF-8", "-N"); err != nil {
		return err
	}
	if err := c.writeSettings(); err != nil {
		return err
	}
	if err := c.startServer(ctx); err != nil {
		return err
	}
	_, err := c.run(ctx, "createdb", "-h", c.dir, "-U", c.opts.User, c.opts.Database)
	return err
}

// writeSettings appends our parameters to postgresql.conf. Settings in the
// file rather than on pg_ctl's -o line avoid a second level of shell quoting.
func (c *Cluster) writeSettings() error {
	var b strings.Builder
	b.WriteString("\n# throwaway test cluster\n")
	set := func(name, value string) {
		fmt.Fprintf(&b, "%s = '%s'\n", name, strings.ReplaceAll(value, "'", "''"))
	}
	set("listen_addresses", "") // unix socket only: parallel clusters never fight over a port
	set("unix_socket_directories", c.dir)
	set("fsync", "off")
	set("synchronous_commit", "off")
	set("full_page_writes", "off")
	set("shared_buffers", "32MB")
	for name, value := range c.opts.Settings {
		set(name, value)
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("postgres testbed: %w", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("postgres testbed: postgresql.conf: %w", err)
	}
	return nil
}

// DSN is the connection string for pgx and libpq: the superuser, the test
// database, the socket directory as host, no TLS.
func (c *Cluster) DSN() string { return c.DatabaseDSN(c.opts.Database) }

// DatabaseDSN is DSN for another database of the cluster.
func (c *Cluster) DatabaseDSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(c.opts.User),
		Path:     "/" + database,
		RawQuery: url.Values{"host": {c.dir}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// CreateDatabase adds an empty database and returns its DSN, so that tests
// can share one server and still start from a clean schema.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	if _, err := c.run(ctx, "createdb", "-h", c.dir, "-U", c.opts.User, name); err != nil {
		return "", err
	}
	return c.DatabaseDSN(name), nil
}

// SocketDir is the directory holding the server's unix socket (.s.PGSQL.5432).
func (c *Cluster) SocketDir() string { return c.dir }

// User is the superuser role the DSN logs in as.
func (c *Cluster) User() string { return c.opts.User }

// Database is the database made for the test.
func (c *Cluster) Database() string { return c.opts.Database }

// LogPath is the server log, useful in a failing test's output.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "server.log") }

func (c *Cluster) dataDir() string    { return filepath.Join(c.dir, "data") }
func (c *Cluster) socketPath() string { return filepath.Join(c.dir, ".s.PGSQL.5432") }

// StopServer stops the server and keeps its files, to test "database down".
func (c *Cluster) StopServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("postgres testbed: cluster already removed")
	}
	return c.stopServer()
}

// StartServer starts a server stopped with StopServer.
func (c *Cluster) StartServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("postgres testbed: cluster already removed")
	}
	if c.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	return c.startServer(ctx)
}

// Restart stops and starts the server: every client connection is cut.
func (c *Cluster) Restart() error {
	if err := c.StopServer(); err != nil {
		return err
	}
	return c.StartServer()
}

// Stop stops the server (fast shutdown, then by PID if that fails) and
// removes the cluster's directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	stopErr := c.stopServer()
	if stopErr != nil && c.serverPID() != 0 {
		// The server may still hold files; leave them for a post-mortem rather than rip them away.
		return stopErr
	}
	c.removed = true
	if err := os.RemoveAll(c.dir); err != nil {
		return errors.Join(stopErr, fmt.Errorf("postgres testbed: %w", err))
	}
	return stopErr
}

func (c *Cluster) startServer(ctx context.Context) error {
	secs := strconv.Itoa(int(c.opts.Timeout / time.Second))
	if _, err := c.run(ctx, "pg_ctl", "start", "-D", c.dataDir(), "-l", c.LogPath(), "-w", "-t", secs, "-s"); err != nil {
		var ce *CommandError
		if errors.As(err, &ce) {
			ce.Log = tail(c.LogPath(), 4096)
		}
		return err
	}
	c.running = true
	return nil
}

// stopServer tries pg_ctl's fast shutdown under a deadline, then signals the
// postmaster by PID: SIGQUIT (immediate shutdown), then SIGKILL.
//
//nolint:contextcheck // stopping runs on its own deadlines, also after the caller's context has ended
func (c *Cluster) stopServer() error {
	pid := c.serverPID()
	if pid == 0 {
		c.running = false
		return nil
	}
	timeout := min(c.opts.Timeout, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(timeout / time.Second))
	_, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir(), "-m", "fast", "-w", "-t", secs, "-s")
	if err == nil {
		c.running = false
		return nil
	}
	if !c.isOurPostmaster(pid) {
		c.running = false
		return nil // it went away while pg_ctl was failing
	}
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL} {
		_ = syscall.Kill(pid, sig)
		if waitGone(pid, 5*time.Second) {
			c.running = false
			_ = os.Remove(filepath.Join(c.dataDir(), "postmaster.pid"))
			return nil
		}
	}
	return fmt.Errorf("postgres testbed: postmaster %d survived SIGKILL: %w", pid, err)
}

// serverPID reads the postmaster's PID from postmaster.pid; 0 when no
// server of ours runs.
func (c *Cluster) serverPID() int {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !c.isOurPostmaster(pid) {
		return 0
	}
	return pid
}

// isOurPostmaster guards against a stale pid file whose PID was reused.
func (c *Cluster) isOurPostmaster(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(filepath.Join(c.binDir, "postgres"))
	if err != nil {
		return false
	}
	return exe == want
}

func waitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && isZombie(st) {
			return true // exited; its parent (not us) reaps it
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// run executes a PostgreSQL program as the cluster's owner with a clean
// environment, under the options' timeout.
func (c *Cluster) run(ctx context.Context, program string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, program), args...)
	cmd.Dir = c.dir
	// No PG* variables from the caller: they would redirect createdb or pg_ctl.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + c.dir, "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		verb := program
		if program == "pg_ctl" && len(args) > 0 {
			verb += " " + args[0]
		}
		return text, &CommandError{Command: verb, Output: text, Err: err}
	}
	return text, nil
}

// tail returns up to limit bytes from the end of a file, for error messages.
func tail(path string, limit int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return strings.TrimSpace(string(b))
}
