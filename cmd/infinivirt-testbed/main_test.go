package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/testbed"
)

// TestUpExecStatusDown drives the built binary the way the README demo
// does: up returns while the host keeps running, later commands find it
// through the state directory, and down leaves nothing behind.
func TestUpExecStatusDown(t *testing.T) {
	if err := testbed.Prerequisites(); err != nil {
		t.Skipf("testbed host cannot run here: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "infinivirt-testbed")
	// go test puts its own GOROOT/bin first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if err != nil {
			t.Logf("%v: %v: %s", args, err, errOut.String())
		}
		return out.String(), err
	}
	conf := filepath.Join(t.TempDir(), "demo.conf")
	if err := os.WriteFile(conf, []byte("demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("up", "--state", state, "--name", "demo", "--file", conf+":/etc/demo.conf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = run("down", "--state", state) })
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("up printed %q", out)
	}
	// up has exited; its host must still run.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("systemd (pid %d) is gone after up exited: %v", pid, err)
	}
	if _, err := run("up", "--state", state); err == nil {
		t.Error("a second up on the same state succeeded")
	}
	if out, err := run("exec", "--state", state, "--", "cat", "/etc/demo.conf"); err != nil || out != "demo\n" {
		t.Errorf("exec cat = %q, %v", out, err)
	}
	if out, err := run("exec", "--state", state, "--", "hostname"); err != nil || strings.TrimSpace(out) != "demo" {
		t.Errorf("exec hostname = %q, %v", out, err)
	}
	_, err = run("exec", "--state", state, "--", "sh", "-c", "exit 7")
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exec exit code: %v, want 7", err)
	}
	out, err = run("status", "--state", state)
	if err != nil || !strings.Contains(out, "pid:     "+strconv.Itoa(pid)) || !strings.Contains(out, "state:   running") || !strings.Contains(out, "console: /") {
		t.Errorf("status = %q, %v", out, err)
	}
	h, err := testbed.Attach(filepath.Join(state, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("down", "--state", state); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("systemd (pid %d) still runs after down", pid)
	}
	if _, err := os.Stat(h.CgroupDir()); !os.IsNotExist(err) {
		t.Errorf("cgroup left after down: %v", err)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("state directory not empty after down: %v", entries)
	}
	if _, err := run("status", "--state", state); err == nil {
		t.Error("status after down succeeded")
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{}, {"bogus", "--state", "x"}, {"up"}, {"exec", "--state", "x"}, {"up", "--state", "x", "--file", "nocolon"}} {
		if code := run(args, nil, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
