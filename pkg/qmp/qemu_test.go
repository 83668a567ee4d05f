package qmp_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/qmp"
)

// qemuVM is a real QEMU whose QMP monitor runs over a socketpair, as in the shim.
type qemuVM struct {
	*qmp.Client
	cmd    *exec.Cmd
	exited chan struct{} // closed once QEMU has been reaped
	stderr *lockedBuffer
}

// machineNone is the cheapest QEMU: no board, no guest, no KVM.
var machineNone = []string{"-machine", "none"}

// machineQ35 is a real board for commands that need one; -S keeps the
// vCPUs stopped, so no firmware runs.
var machineQ35 = []string{"-machine", "q35", "-accel", "tcg", "-m", "64"}

type qemuSetup struct {
	args      []string     // extra QEMU arguments, including the machine
	files     []*os.File   // passed to QEMU as fd 4, 5, ... (fd 3 is QMP)
	clientOpt []qmp.Option // options for the QMP client
}

// startQEMU launches QEMU stopped (-S) and connects the client. Everything is
// torn down in t.Cleanup, also when the test fails.
func startQEMU(t testing.TB, s qemuSetup) *qemuVM {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "qmp")
	theirs := os.NewFile(uintptr(fds[1]), "qmp-qemu")
	defer theirs.Close()

	args := []string{"-nodefaults", "-display", "none", "-S",
		"-chardev", "socket,id=qmp,fd=3", "-mon", "chardev=qmp,mode=control"}
	args = append(args, s.args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = withoutNotifySocket(os.Environ())
	cmd.ExtraFiles = append([]*os.File{theirs}, s.files...)
	vm := &qemuVM{cmd: cmd, exited: make(chan struct{}), stderr: &lockedBuffer{}}
	cmd.Stderr = vm.stderr
	if err := cmd.Start(); err != nil {
		ours.Close()
		t.Fatalf("starting QEMU: %v", err)
	}
	go func() {
		_ = cmd.Wait() // killed at cleanup: how it ended is not under test
		close(vm.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
		cmd.Process.Kill()
		<-vm.exited
	})

	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatalf("socketpair conn: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm.Client, err = qmp.New(ctx, conn, s.clientOpt...)
	if err != nil {
		t.Fatalf("QMP handshake: %v; QEMU stderr: %s", err, vm.stderr)
	}
	t.Cleanup(func() { vm.Client.Close() })
	return vm
}

// signal sends sig to this test's own QEMU.
func (vm *qemuVM) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := vm.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to QEMU: %v", sig, err)
	}
}

func withoutNotifySocket(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return out
}

// lockedBuffer collects QEMU's stderr, which exec writes from its own goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testCtx is a context for one command in a test: generous, so a slow shared
// machine does not fail the test, but a hang still ends.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
