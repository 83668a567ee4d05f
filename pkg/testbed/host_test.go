package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

func skipUnlessHostCanRun(t testing.TB) {
	t.Helper()
	if err := Prerequisites(); err != nil {
		t.Skipf("testbed host cannot run here: %v", err)
	}
}

func runCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustRun(t testing.TB, ctx context.Context, h *Host, args ...string) string {
	t.Helper()
	out, err := h.Run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nsInode is the inode of /proc/<pid>/ns/<kind>, which names a namespace.
func nsInode(t testing.TB, pid int, kind string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// pidsInNamespace lists the machine's processes whose namespace of kind
// has inode ino.
func pidsInNamespace(kind string, ino uint64) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", kind), &st) == nil && st.Ino == ino {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func mountsMentioning(t testing.TB, needle string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.Contains(line, needle) {
			hits = append(hits, line)
		}
	}
	return hits
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("console: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestStopLeavesNothing boots a host with files, a bind and running
// processes (a transient unit and a process entered from outside), stops
// it and checks that no process, namespace, mount, cgroup or file is left.
func TestStopLeavesNothing(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	bindDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bindDir, "from-machine"), []byte("bound\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := StartHost(ctx, HostOptions{
		Name: "leak-check",
		Log:  testLog{t},
		Files: []File{
			{Path: "/etc/infinivirt/hello.conf", Data: []byte("hello\n")},
			{Path: "/usr/local/bin/copied", Source: "/bin/true"},
			{Path: "/etc/systemd/system/example.service.d/10-test.conf", Data: []byte("[Service]\nEnvironment=X=1\n"), Mode: 0o600},
		},
		Binds: []Bind{{Source: bindDir, Target: "/srv/shared"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = h.Stop()
		}
	})
	if h.BootState() != "running" && h.BootState() != "degraded" {
		t.Fatalf("BootState = %q", h.BootState())
	}
	if got := mustRun(t, ctx, h, "cat", "/etc/infinivirt/hello.conf"); got != "hello\n" {
		t.Errorf("Data file = %q", got)
	}
	mustRun(t, ctx, h, "/usr/local/bin/copied")
	if got := mustRun(t, ctx, h, "stat", "-c", "%a", "/etc/systemd/system/example.service.d/10-test.conf"); strings.TrimSpace(got) != "600" {
		t.Errorf("mode = %q, want 600", got)
	}
	if got := mustRun(t, ctx, h, "cat", "/srv/shared/from-machine"); got != "bound\n" {
		t.Errorf("bound file = %q", got)
	}
	// A write through the bind reaches the machine; nothing else does.
	mustRun(t, ctx, h, "sh", "-c", "echo back > /srv/shared/from-host && echo x > /etc/only-in-host && rm -f /tmp/* 2>/dev/null; true")
	if data, err := os.ReadFile(filepath.Join(bindDir, "from-host")); err != nil || string(data) != "back\n" {
		t.Errorf("write through bind: %q, %v", data, err)
	}
	if _, err := os.Stat("/etc/only-in-host"); !os.IsNotExist(err) {
		t.Errorf("a write to the host's /etc reached the machine: %v", err)
	}
	if data, err := os.ReadFile(h.Path("/etc/only-in-host")); err != nil || string(data) != "x\n" {
		t.Errorf("Path() read = %q, %v", data, err)
	}
	// Leave work running: a unit and a process entered from outside.
	mustRun(t, ctx, h, "systemd-run", "--unit=leak-sleeper", "sleep", "1000")
	outside := h.Command(ctx, "sleep", "1000")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	waitedOutside := make(chan error, 1)
	go func() { waitedOutside <- outside.Wait() }()

	n, err := cgroupProcs(h.CgroupDir())
	if err != nil || n < 4 { // unshare, systemd, journald, the sleeper
		t.Errorf("processes in the host's cgroup = %d, %v; want at least 4", n, err)
	}
	netns, pidns := nsInode(t, h.PID(), "net"), nsInode(t, h.PID(), "pid")
	workDir := h.workDir
	if len(mountsMentioning(t, h.ID())) != 0 {
		t.Errorf("the host's mounts are visible to the machine")
	}

	// One more that enters while the host powers off.
	late := h.Command(ctx, "sleep", "1000")
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	waitedLate := make(chan error, 1)
	go func() { waitedLate <- late.Wait() }()

	t0 := time.Now()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(t0))
	stopped = true
	for _, waited := range []chan error{waitedOutside, waitedLate} {
		select {
		case err := <-waited:
			t.Logf("process entered from outside ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Error("a process entered from outside survived the host")
		}
	}
	if _, err := os.Stat(h.CgroupDir()); !os.IsNotExist(err) {
		t.Errorf("cgroup dir left: %v", err)
	}
	if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Errorf("work dir left: %v", err)
	}
	if p := pidsInNamespace("net", netns); len(p) > 0 {
		t.Errorf("processes left in the host's netns: %v", p)
	}
	if p := pidsInNamespace("pid", pidns); len(p) > 0 {
		t.Errorf("processes left in the host's pid namespace: %v", p)
	}
	if m := mountsMentioning(t, h.ID()); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(h.Path("/")); err == nil {
		t.Errorf("systemd (pid %d) still runs", h.PID())
	}
}

// TestStopKillsAStuckHost: a host whose systemd ignores the power-off
// request (stopped with SIGSTOP) is still removed, through cgroup.kill.
func TestStopKillsAStuckHost(t *testing.T) {
	skipUnlessHostCanRun(t)
	h := NewHost(t, HostOptions{Name: "stuck"})
	if err := syscall.Kill(h.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	saved := stopGraceForTest(t, 500*time.Millisecond)
	defer saved()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.CgroupDir()); !os.IsNotExist(err) {
		t.Errorf("cgroup dir left: %v", err)
	}
}

func stopGraceForTest(t testing.TB, d time.Duration) func() {
	old := stopGrace
	stopGrace = d
	return func() { stopGrace = old }
}

// TestTransientShimUnit checks what the supervisor relies on inside a host:
// an '@' transient unit without a template, its journal, the device
// policy, /dev/kvm and /dev/net/tun.
func TestTransientShimUnit(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	h := NewHost(t, HostOptions{Name: "shim-unit"})
	unit := "infinivirt-shim@" + uuid.NewString() + ".service"
	mustRun(t, ctx, h, "systemd-run", "--unit="+unit, "-p", "KillMode=mixed",
		"sh", "-c", "echo hello-from-shim; exec sleep 1000")
	var journal string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		journal, _ = h.Journal(ctx, unit)
		if strings.Contains(journal, "hello-from-shim") {
			break
		}
	}
	if !strings.Contains(journal, "hello-from-shim") {
		t.Fatalf("journal of %s lacks the unit's output:\n%s", unit, journal)
	}
	// journald may still be adding fields to what it stored: poll too.
	var entries []JournalEntry
	found := false
	for deadline := time.Now().Add(20 * time.Second); !found && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if entries, err = h.JournalJSON(ctx, unit); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Field("MESSAGE") == "hello-from-shim" && e.Field("_SYSTEMD_UNIT") == unit {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no JSON journal entry with the unit's output among %d", len(entries))
	}
	if got := mustRun(t, ctx, h, "systemctl", "show", "-P", "Transient", unit); strings.TrimSpace(got) != "yes" {
		t.Errorf("Transient = %q", got)
	}
	mustRun(t, ctx, h, "systemctl", "stop", unit)

	// The device nodes work inside; DevicePolicy=closed lets through only
	// what DeviceAllow names.
	probe := `for d in /dev/kvm /dev/net/tun; do if (exec 3<>$d) 2>/dev/null; then echo "$d open"; else echo "$d denied"; fi; done`
	open := mustRun(t, ctx, h, "sh", "-c", probe)
	if !strings.Contains(open, "/dev/kvm open") || !strings.Contains(open, "/dev/net/tun open") {
		t.Fatalf("devices inside the host: %q", open)
	}
	policed := mustRun(t, ctx, h, "systemd-run", "--wait", "--pipe", "--quiet",
		"-p", "DevicePolicy=closed", "-p", "DeviceAllow=/dev/kvm rw", "sh", "-c", probe)
	if !strings.Contains(policed, "/dev/kvm open") || !strings.Contains(policed, "/dev/net/tun denied") {
		t.Errorf("DevicePolicy=closed + DeviceAllow=/dev/kvm: %q", policed)
	}
}

// TestNetworkInHost builds a bridge and a TAP in the host's network
// namespace and checks that the machine's namespace does not see them.
func TestNetworkInHost(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	h := NewHost(t, HostOptions{Name: "net"})
	mustRun(t, ctx, h, "ip", "link", "add", "ivtb-br0", "type", "bridge")
	mustRun(t, ctx, h, "ip", "tuntap", "add", "dev", "ivtb-tap0", "mode", "tap")
	mustRun(t, ctx, h, "ip", "link", "set", "ivtb-tap0", "master", "ivtb-br0")
	mustRun(t, ctx, h, "ip", "link", "set", "ivtb-br0", "up")
	mustRun(t, ctx, h, "ip", "addr", "add", "10.213.0.1/24", "dev", "ivtb-br0")
	out := mustRun(t, ctx, h, "ip", "-o", "link", "show", "master", "ivtb-br0")
	if !strings.Contains(out, "ivtb-tap0") {
		t.Errorf("TAP is not a bridge port: %q", out)
	}
	mustRun(t, ctx, h, "busybox", "ping", "-c1", "-W2", "10.213.0.1")
	if _, err := os.Stat("/sys/class/net/ivtb-br0"); !os.IsNotExist(err) {
		t.Errorf("the bridge is visible on the machine: %v", err)
	}
}

// TestSaveStateAttach: a host saved to a file is found again, runs
// commands and stops through the attached handle.
func TestSaveStateAttach(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	h := NewHost(t, HostOptions{Name: "saved"})
	state := filepath.Join(t.TempDir(), "host.json")
	if err := h.SaveState(state); err != nil {
		t.Fatal(err)
	}
	a, err := Attach(state)
	if err != nil {
		t.Fatal(err)
	}
	if a.PID() != h.PID() || a.SystemBusAddress() != h.SystemBusAddress() {
		t.Errorf("attached host differs: pid %d/%d", a.PID(), h.PID())
	}
	if got := mustRun(t, ctx, a, "hostname"); strings.TrimSpace(got) != "saved" {
		t.Errorf("hostname = %q", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.CgroupDir()); !os.IsNotExist(err) {
		t.Errorf("cgroup dir left: %v", err)
	}
	if _, err := Attach(state); !errors.Is(err, ErrHostGone) {
		t.Errorf("Attach after Stop: %v, want ErrHostGone", err)
	}
}

// TestParallelHosts runs two hosts at once: distinct ids, cgroups and
// network namespaces.
func TestParallelHosts(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	a := NewHost(t, HostOptions{Name: "twin"})
	b := NewHost(t, HostOptions{Name: "twin"})
	if a.ID() == b.ID() || a.CgroupDir() == b.CgroupDir() {
		t.Fatalf("hosts share names: %s %s", a.ID(), b.ID())
	}
	if nsInode(t, a.PID(), "net") == nsInode(t, b.PID(), "net") {
		t.Fatal("hosts share a network namespace")
	}
	mustRun(t, ctx, a, "ip", "link", "add", "only-a", "type", "veth", "peer", "name", "only-a-peer")
	if _, err := b.Run(ctx, "ip", "link", "show", "only-a"); err == nil {
		t.Error("host b sees host a's link")
	}
}

func TestStartHostRejectsBadOptions(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	for _, opts := range []HostOptions{
		{Name: "Bad Name"},
		{Files: []File{{Path: "relative/path", Data: []byte("x")}}},
		{Files: []File{{Path: "/x", Source: "/does/not/exist"}}},
		{Binds: []Bind{{Source: t.TempDir(), Target: "/"}}},
	} {
		h, err := StartHost(ctx, opts)
		if err == nil {
			_ = h.Stop()
			t.Errorf("StartHost(%+v) succeeded", opts)
		}
	}
}

// TestCleanupAfterPanic runs a test that boots a host and panics, in a
// child test binary, and checks that the host's cleanup still ran.
func TestCleanupAfterPanic(t *testing.T) {
	skipUnlessHostCanRun(t)
	if report := os.Getenv("TESTBED_PANIC_REPORT"); report != "" {
		h := NewHost(t, HostOptions{Name: "panicky"})
		if err := os.WriteFile(report, []byte(h.CgroupDir()+"\n"+h.workDir), 0o600); err != nil {
			t.Fatal(err)
		}
		panic("panicking on purpose with a host running")
	}
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.CommandContext(runCtx(t), os.Args[0], "-test.run=^TestCleanupAfterPanic$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TESTBED_PANIC_REPORT="+report)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "panicking on purpose") {
		t.Fatalf("child test did not panic: %v\n%s", err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("child wrote no report: %v\n%s", err, out)
	}
	cg, workDir, _ := strings.Cut(string(data), "\n")
	for _, p := range []string{cg, workDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after the panic: %v", p, err)
		}
	}
}

// TestDieWithCaller boots a host in a child process that then exits
// without stopping it, as a test binary killed by its timeout would: the
// host's systemd and everything below it must be gone.
func TestDieWithCaller(t *testing.T) {
	skipUnlessHostCanRun(t)
	if report := os.Getenv("TESTBED_ORPHAN_REPORT"); report != "" {
		h, err := StartHost(runCtx(t), HostOptions{Name: "orphan", DieWithCaller: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(report, []byte(strconv.Itoa(h.PID())+"\n"+h.CgroupDir()), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Exit(3) // no cleanup, no Stop
	}
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.CommandContext(runCtx(t), os.Args[0], "-test.run=^TestDieWithCaller$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TESTBED_ORPHAN_REPORT="+report)
	out, _ := cmd.CombinedOutput()
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("child wrote no report: %v\n%s", err, out)
	}
	pidText, cg, _ := strings.Cut(string(data), "\n")
	pid, _ := strconv.Atoi(pidText)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errPID := os.Stat(fmt.Sprintf("/proc/%d", pid))
		procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		if os.IsNotExist(errPID) && strings.TrimSpace(string(procs)) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned host's systemd %d or its processes outlived the caller: %q", pid, procs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What a dead caller cannot clean up: the empty cgroup directories.
	if err := removeCgroup(cg); err != nil {
		t.Errorf("remove the orphan's cgroup: %v", err)
	}
}

// BenchmarkBootStop measures a host's boot (to running, bus socket up) and
// its stop (SIGRTMIN+4 until its cgroup is empty and removed).
func BenchmarkBootStop(b *testing.B) {
	skipUnlessHostCanRun(b)
	ctx := runCtx(b)
	var boot, stop time.Duration
	for b.Loop() {
		t0 := time.Now()
		h, err := StartHost(ctx, HostOptions{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := h.Stop(); err != nil {
			b.Fatal(err)
		}
		boot += t1.Sub(t0)
		stop += time.Since(t1)
	}
	b.ReportMetric(float64(boot.Milliseconds())/float64(b.N), "ms/boot")
	b.ReportMetric(float64(stop.Milliseconds())/float64(b.N), "ms/stop")
}

// TestRunDeadlineKillsInside: when Run's context ends, the command inside
// the host dies too, not only nsenter outside it.
func TestRunDeadlineKillsInside(t *testing.T) {
	skipUnlessHostCanRun(t)
	ctx := runCtx(t)
	h := NewHost(t, HostOptions{Name: "deadline"})
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := h.Run(short, "sh", "-c", "sleep 1000 & exec sleep 1001")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its deadline: %v", err)
	}
	var left string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left, _ = h.Run(ctx, "sh", "-c", "ps -eo args | grep '^sleep 100' || true")
		if strings.TrimSpace(left) == "" {
			return
		}
	}
	t.Errorf("processes left inside the host after the deadline: %q", left)
}
