package shim

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/qmp"
)

// bareQEMU runs a QEMU with no devices under TCG, stopped, and returns its
// QMP client and its process as the shim keeps it.
func bareQEMU(t *testing.T, ctx context.Context, extra ...string) (*qmp.Client, *qemuProcess) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	ours, theirs, err := socketpair("qmp")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-S", "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg",
		"-m", "32", "-display", "none", "-chardev", "socket,id=qmp,fd=3", "-mon", "chardev=qmp,mode=control"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	p := &qemuProcess{pid: cmd.Process.Pid, proc: cmd.Process, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the kill at cleanup ends it; how is not the test's
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		<-p.exited
	})
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := qmp.New(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p
}

// The restore steps' own work, on real QEMU: a stopped machine's state is
// migrated to a file, and a second QEMU started with -incoming defer loads
// it and runs on.
func TestLoadMemorySnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, _ := bareQEMU(t, ctx)
	path := filepath.Join(t.TempDir(), "vm.state")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.GetFD(ctx, "out", f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := src.Execute(ctx, "migrate", map[string]string{"uri": "fd:out"}, nil); err != nil {
		t.Fatal(err)
	}
	source := New(Config{})
	source.qmp, source.qemu = src, &qemuProcess{exited: make(chan struct{})}
	if err := source.awaitIncoming(ctx); err != nil { // query-migrate reads the same on both ends
		t.Fatalf("saving the snapshot: %v", err)
	}

	dst, p := bareQEMU(t, ctx, "-incoming", "defer")
	s := New(Config{})
	s.qmp, s.qemu = dst, p
	if err := s.loadMemorySnapshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	if st, err := dst.QueryStatus(ctx); err != nil || st.Running {
		t.Fatalf("after the load, before cont: %+v %v; the CPUs must wait for start-cpus", st, err)
	}
	if err := dst.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := dst.QueryStatus(ctx); err != nil || st.Status != "running" {
		t.Fatalf("after cont: %+v %v", st, err)
	}

	// A snapshot that is not one fails the step, and the CPUs never start.
	bad := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(bad, []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst2, p2 := bareQEMU(t, ctx, "-incoming", "defer")
	s2 := New(Config{})
	s2.qmp, s2.qemu = dst2, p2
	if err := s2.loadMemorySnapshot(ctx, bad); err == nil {
		t.Fatal("a file that is no migration stream loaded")
	}
}
