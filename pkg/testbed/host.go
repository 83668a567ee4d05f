// Package testbed boots a real systemd as PID 1 of private namespaces, so
// that tests and demos can create transient units, talk to the system bus
// and build bridges and TAPs without touching the machine's own state.
//
// Each host gets private PID, mount, network, UTS, IPC and cgroup
// namespaces, an overlay root (the machine's root file system read-only
// below, a fresh tmpfs above), a fresh /dev, /run and /tmp, and its own
// cgroup2 subtree. Nothing it writes reaches the machine's files.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// File is written into the host's root before it boots.
type File struct {
	Path   string      // absolute path inside the host
	Data   []byte      // content; ignored when Source is set
	Source string      // a file of the machine to copy instead of Data
	Mode   fs.FileMode // permission bits; 0 means 0644 for Data and the source's own bits for Source
}

// Bind is a directory or file of the machine bind-mounted into the host
// before it boots.
type Bind struct {
	Source string // path on the machine
	Target string // absolute path inside the host
}

// HostOptions describe a host to boot.
type HostOptions struct {
	// Name is the host's hostname and the stem of its cgroup and work
	// directory names; a random suffix keeps concurrent hosts apart.
	// Lower-case letters, digits and '-', at most 32; default "testbed".
	Name  string
	Files []File
	Binds []Bind
	// Log receives systemd's own console output. When nil it goes to a
	// file in the work directory, which is what a host that outlives its
	// creator (SaveState) needs.
	Log io.Writer
	// WorkDir is where the host-side work directory is created; default
	// os.TempDir().
	WorkDir string
	// BootTimeout bounds the boot when ctx has no deadline; default 60 s.
	BootTimeout time.Duration
	// DieWithCaller kills the host when the process that started it dies
	// without stopping it (a test binary that panics or times out): its
	// systemd is SIGKILLed, which ends every process of its PID namespace.
	// Only an empty cgroup directory and the work directory stay behind.
	// Not for hosts that must outlive their creator (SaveState).
	DieWithCaller bool
}

// Host is a running test-bed host.
type Host struct {
	name        string
	id          string // name plus random suffix: unique per machine
	pid         int    // the machine's PID of the host's systemd
	startTime   uint64 // start time of pid, to tell a reused PID apart
	launcherPID int    // unshare, the parent of systemd
	cgroup      string // the host's cgroup2 directory on the machine
	workDir     string

	bootState   string
	failedUnits []string

	launcher *exec.Cmd     // nil when attached
	waited   chan struct{} // closed once launcher was reaped; nil when attached
	logDone  chan struct{} // closed when the console copier ends; nil without Log
	console  *tailBuffer   // last console output when Log is set

	stopOnce sync.Once
	stopErr  error
}

// BootError reports a host that did not come up. Console has the end of
// systemd's console output and the setup script's errors.
type BootError struct {
	Name    string
	Stage   string
	Err     error
	Console string
}

func (e *BootError) Error() string {
	msg := fmt.Sprintf("testbed host %s: %s: %v", e.Name, e.Stage, e.Err)
	if c := strings.TrimSpace(e.Console); c != "" {
		msg += "\nconsole:\n" + c
	}
	return msg
}

func (e *BootError) Unwrap() error { return e.Err }

const (
	unshareBin = "unshare"
	nsenterBin = "nsenter"
	// systemdPath is systemd's path inside the host, which is the machine's
	// own path since the machine's root is the overlay's lower layer.
	systemdPath = "/lib/systemd/systemd"

	defaultBootTimeout = 60 * time.Second
	killGrace          = 10 * time.Second
)

// stopGrace is how long systemd gets to power off before cgroup.kill.
var stopGrace = 30 * time.Second

// sigRTMIN is the first real-time signal as glibc numbers it; systemd powers
// off on SIGRTMIN+4.
const sigRTMIN = 34

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Prerequisites reports why a host cannot boot on this machine, or nil.
func Prerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("testbed needs root (namespaces, mounts, cgroups)")
	}
	for _, bin := range []string{unshareBin, nsenterBin, "systemctl", "journalctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("testbed needs %s: %w", bin, err)
		}
	}
	// The setup script runs with its own PATH, which has the sbin directories.
	if _, err := os.Stat("/usr/sbin/pivot_root"); err != nil {
		if _, err := exec.LookPath("pivot_root"); err != nil {
			return fmt.Errorf("testbed needs pivot_root: %w", err)
		}
	}
	if _, err := os.Stat(systemdPath); err != nil {
		return fmt.Errorf("testbed needs systemd: %w", err)
	}
	if _, err := cgroup2Dir(); err != nil {
		return fmt.Errorf("testbed needs a cgroup2 hierarchy: %w", err)
	}
	return nil
}

// StartHost boots a host and returns once its systemd reports running or
// degraded and the system bus socket exists. On error nothing is left behind.
func StartHost(ctx context.Context, opts HostOptions) (*Host, error) {
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "testbed"
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("testbed: Name %q: want lower-case letters, digits and '-', at most 32", name)
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := opts.BootTimeout
		if timeout <= 0 {
			timeout = defaultBootTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	h := &Host{name: name, id: name + "-" + suffix}

	ok := false
	defer func() {
		if !ok {
			_ = h.Stop()
		}
	}()
	if err := h.prepare(opts); err != nil {
		return nil, err
	}
	if err := h.launch(opts); err != nil {
		return nil, h.bootError("launch", err)
	}
	if err := h.waitBooted(ctx); err != nil {
		return nil, h.bootError("boot", err)
	}
	ok = true
	// The staged files were copied into the overlay; only the console log
	// (when there is no Log writer) is still needed.
	_ = os.RemoveAll(filepath.Join(h.workDir, "files"))
	return h, nil
}

// prepare creates the work directory and the cgroup.
func (h *Host) prepare(opts HostOptions) error {
	parent := opts.WorkDir
	if parent == "" {
		parent = os.TempDir()
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(parent, "infinivirt-testbed-"+h.id+"-")
	if err != nil {
		return err
	}
	h.workDir = dir
	for _, sub := range []string{"fs", "files"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	base, err := cgroup2Dir()
	if err != nil {
		return err
	}
	cg := filepath.Join(base, "infinivirt-testbed-"+h.id)
	if err := os.Mkdir(cg, 0o755); err != nil {
		return fmt.Errorf("testbed: create cgroup: %w", err)
	}
	h.cgroup = cg
	return nil
}

// plan validates the options and stages Data files in the work directory.
func (h *Host) plan(opts HostOptions) (setupPlan, error) {
	mid, err := randomHex(16)
	if err != nil {
		return setupPlan{}, err
	}
	p := setupPlan{workDir: h.workDir, hostname: h.name, machineID: mid, systemd: systemdPath}
	for i, f := range opts.Files {
		field := fmt.Sprintf("Files[%d]", i)
		if !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path {
			return p, fmt.Errorf("testbed: %s.Path %q: want a clean absolute path", field, f.Path)
		}
		sf := stagedFile{target: f.Path, mode: uint32(f.Mode.Perm())}
		if f.Source != "" {
			st, err := os.Stat(f.Source)
			if err != nil {
				return p, fmt.Errorf("testbed: %s.Source: %w", field, err)
			}
			if !st.Mode().IsRegular() {
				return p, fmt.Errorf("testbed: %s.Source %q: not a regular file", field, f.Source)
			}
			sf.source, _ = filepath.Abs(f.Source)
			if sf.mode == 0 {
				sf.mode = uint32(st.Mode().Perm())
			}
		} else {
			staged := filepath.Join(h.workDir, "files", strconv.Itoa(i))
			if err := os.WriteFile(staged, f.Data, 0o600); err != nil {
				return p, err
			}
			sf.source = staged
			if sf.mode == 0 {
				sf.mode = 0o644
			}
		}
		p.files = append(p.files, sf)
	}
	for i, b := range opts.Binds {
		field := fmt.Sprintf("Binds[%d]", i)
		if !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) != b.Target || b.Target == "/" {
			return p, fmt.Errorf("testbed: %s.Target %q: want a clean absolute path below /", field, b.Target)
		}
		src, err := filepath.Abs(b.Source)
		if err != nil {
			return p, err
		}
		if _, err := os.Stat(src); err != nil {
			return p, fmt.Errorf("testbed: %s.Source: %w", field, err)
		}
		p.binds = append(p.binds, Bind{Source: src, Target: b.Target})
	}
	return p, nil
}

// launch starts unshare in the host's cgroup, in its own session so that
// the host outlives the caller, with the setup script as the new PID 1.
func (h *Host) launch(opts HostOptions) error {
	p, err := h.plan(opts)
	if err != nil {
		return err
	}
	unshare, err := exec.LookPath(unshareBin)
	if err != nil {
		return err
	}
	cgfd, err := syscall.Open(h.cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer syscall.Close(cgfd)

	args := []string{"--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup", "--propagation", "private"}
	if opts.DieWithCaller {
		args = append(args, "--kill-child")
	}
	cmd := exec.Command(unshare, append(args, "--", "/bin/sh", "-c", p.script())...)
	cmd.Env = []string{"container=other", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: cgfd}
	if opts.DieWithCaller {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}

	var pipeR *os.File
	if opts.Log != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		pipeR = r
		cmd.Stdout, cmd.Stderr = w, w
		defer w.Close()
	} else {
		f, err := os.OpenFile(h.consolePath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if pipeR != nil {
			pipeR.Close()
		}
		return err
	}
	h.launcher = cmd
	h.launcherPID = cmd.Process.Pid
	h.waited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(h.waited)
	}()
	if pipeR != nil {
		h.console = &tailBuffer{max: 16 << 10}
		h.logDone = make(chan struct{})
		go func() {
			defer close(h.logDone)
			defer pipeR.Close()
			_, _ = io.Copy(io.MultiWriter(opts.Log, h.console), pipeR)
		}()
	}
	return nil
}

// waitBooted finds systemd below unshare and waits until it is up.
func (h *Host) waitBooted(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	wait := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.waited:
			return fmt.Errorf("the setup script or systemd exited (%v)", h.launcher.ProcessState)
		case <-tick.C:
			return nil
		}
	}
	for h.pid == 0 {
		if child := firstChild(h.launcherPID); child > 0 {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child)); strings.TrimSpace(string(comm)) == "systemd" {
				st, err := processStartTime(child)
				if err != nil {
					return err
				}
				h.pid, h.startTime = child, st
				break
			}
		}
		if err := wait(); err != nil {
			return err
		}
	}
	for {
		state, err := h.systemState(ctx)
		if err == nil {
			switch state {
			case "running", "degraded":
				if _, err := os.Stat(h.Path("/run/dbus/system_bus_socket")); err == nil {
					h.bootState = state
					if state == "degraded" {
						h.failedUnits, _ = h.listFailed(ctx)
					}
					return nil
				}
			case "maintenance", "stopping":
				failed, _ := h.listFailed(ctx)
				return fmt.Errorf("systemd is %s; failed units: %s", state, strings.Join(failed, " "))
			}
			// initializing, starting, or offline while systemd is not
			// answering yet: keep waiting.
		}
		if err := wait(); err != nil {
			return fmt.Errorf("%w (last system state %q)", err, state)
		}
	}
}

// systemState is `systemctl is-system-running` inside the host.
func (h *Host) systemState(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := h.Command(cctx, "systemctl", "is-system-running").Output()
	state := strings.TrimSpace(string(out))
	if state != "" {
		// is-system-running exits non-zero for every state but running.
		return state, nil
	}
	return "", err
}

func (h *Host) listFailed(ctx context.Context) ([]string, error) {
	out, err := h.Run(ctx, "systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager")
	if err != nil {
		return nil, err
	}
	var units []string
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units, nil
}

func (h *Host) bootError(stage string, err error) error {
	return &BootError{Name: h.id, Stage: stage, Err: err, Console: h.consoleTail()}
}

func (h *Host) consolePath() string { return filepath.Join(h.workDir, "console.log") }

// consoleTail is the end of systemd's console output.
func (h *Host) consoleTail() string {
	if h.console != nil {
		return h.console.String()
	}
	data, err := os.ReadFile(h.consolePath())
	if err != nil {
		return ""
	}
	if len(data) > 16<<10 {
		data = data[len(data)-16<<10:]
	}
	return string(data)
}

// ConsoleLog is the file that holds systemd's console output when the host
// was started without a Log writer, or "".
func (h *Host) ConsoleLog() string {
	if h.workDir == "" {
		return ""
	}
	if _, err := os.Stat(h.consolePath()); err != nil {
		return ""
	}
	return h.consolePath()
}

// Name is the host's hostname.
func (h *Host) Name() string { return h.name }

// ID is the host's unique name on this machine (Name plus a random suffix).
func (h *Host) ID() string { return h.id }

// PID is the machine's PID of the host's systemd.
func (h *Host) PID() int { return h.pid }

// CgroupDir is the host's cgroup2 directory on the machine.
func (h *Host) CgroupDir() string { return h.cgroup }

// BootState is what `systemctl is-system-running` said when the boot ended:
// "running" or "degraded".
func (h *Host) BootState() string { return h.bootState }

// FailedUnits are the units that had failed when the boot ended.
func (h *Host) FailedUnits() []string { return append([]string(nil), h.failedUnits...) }

// SystemBusAddress is a D-Bus address of the host's system bus that works
// from the machine (through /proc/<pid>/root).
func (h *Host) SystemBusAddress() string {
	return "unix:path=" + h.Path("/run/dbus/system_bus_socket")
}

// alive reports whether the host's systemd is still the process we started.
func (h *Host) alive() bool {
	if h.pid <= 0 {
		return false
	}
	st, err := processStartTime(h.pid)
	return err == nil && st == h.startTime
}

// Stop powers the host off (SIGRTMIN+4 to its systemd), kills whatever is
// left after a grace period through cgroup.kill, and removes its cgroups
// and work directory. Its mounts and namespaces die with its last process.
// Stop is idempotent and safe on a partly started host.
func (h *Host) Stop() error {
	h.stopOnce.Do(func() { h.stopErr = h.stop() })
	return h.stopErr
}

//nolint:contextcheck // stopping runs on its own deadlines, also after the caller's context has ended
func (h *Host) stop() error {
	var errs []error
	// Processes entered from outside (Command) have a parent outside the
	// host. systemd-shutdown's SIGSTOP would stop that parent too (nsenter
	// mirrors its child's stop) and leave an unreapable zombie that holds
	// the shutdown for its whole timeout. So they are killed before and,
	// for those that enter while it powers off, during the shutdown.
	strays := func() {}
	if h.alive() {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.pid)); err == nil {
			strays = func() { killStrays(ns, h.pid) }
		}
		strays()
		if err := syscall.Kill(h.pid, syscall.Signal(sigRTMIN+4)); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal systemd: %w", err))
		}
	}
	if h.cgroup != "" {
		ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		err := waitUnpopulated(ctx, h.cgroup, strays)
		cancel()
		if err != nil {
			if err := killCgroup(h.cgroup); err != nil {
				errs = append(errs, fmt.Errorf("cgroup.kill: %w", err))
			}
			ctx, cancel := context.WithTimeout(context.Background(), killGrace)
			if err := waitUnpopulated(ctx, h.cgroup, strays); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
	} else if h.launcher != nil && h.launcher.Process != nil {
		_ = h.launcher.Process.Kill()
	}
	if h.waited != nil {
		select {
		case <-h.waited:
		case <-time.After(killGrace):
			errs = append(errs, fmt.Errorf("unshare (pid %d) was not reaped", h.launcherPID))
		}
	}
	if h.logDone != nil {
		// Processes that entered the host's namespaces from outside its
		// cgroup die with its PID namespace; they may hold the pipe a bit longer.
		select {
		case <-h.logDone:
		case <-time.After(killGrace):
			errs = append(errs, errors.New("console output did not end"))
		}
	}
	if h.cgroup != "" {
		if err := removeCgroup(h.cgroup); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	if h.workDir != "" {
		if err := os.RemoveAll(h.workDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testbed host %s: stop: %w", h.id, err)
	}
	return nil
}

// killStrays SIGKILLs the processes in PID namespace ns (a
// /proc/<pid>/ns/pid link) whose parent lives outside it, except init, and
// wakes their parent in case it was stopped, so that it can reap them.
func killStrays(ns string, init int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == init {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); l != ns {
			continue
		}
		ppid := parentPID(pid)
		if pl, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", ppid)); pl != ns {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if ppid > 1 {
				_ = syscall.Kill(ppid, syscall.SIGCONT)
			}
		}
	}
}

// parentPID is the PPid of pid, or 0.
func parentPID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// firstChild returns a child of pid, or 0.
func firstChild(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// processStartTime is field 22 of /proc/<pid>/stat: the start time in
// clock ticks since boot, which tells a reused PID apart.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatStartTime(data)
}

// parseStatStartTime reads the start time out of a /proc/<pid>/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatStartTime(data []byte) (uint64, error) {
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
