package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/qmp"
)

func TestHandshakeAndQueryStatus(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	g := vm.Greeting()
	if g.Version.QEMU.Major < 7 {
		t.Errorf("greeting version = %s, want a real QEMU version (>= 7)", g.Version)
	}
	st, err := vm.QueryStatus(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "prelaunch" || st.Running {
		t.Errorf("status of a -S QEMU = %+v, want prelaunch and not running", st)
	}
	if vm.Err() != nil {
		t.Errorf("Err() of a live client = %v, want nil", vm.Err())
	}
}

func TestReplyOver64KiB(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	var raw json.RawMessage
	if err := vm.Execute(testCtx(t), "query-qmp-schema", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) <= 64<<10 {
		t.Fatalf("query-qmp-schema reply is %d bytes; the test needs one over 64 KiB", len(raw))
	}
	var schema []struct {
		Name     string `json:"name"`
		MetaType string `json:"meta-type"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range schema {
		found = found || (e.MetaType == "command" && e.Name == "query-status")
	}
	if !found {
		t.Errorf("schema of %d entries has no query-status command", len(schema))
	}
	// The reader survives the big reply.
	if _, err := vm.QueryStatus(testCtx(t)); err != nil {
		t.Fatalf("command after the big reply: %v", err)
	}
}

func TestErrorReplyIsTyped(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	err := vm.Execute(testCtx(t), "no-such-command", nil, nil)
	var qe *qmp.Error
	if !errors.As(err, &qe) {
		t.Fatalf("error = %v (%T), want *qmp.Error", err, err)
	}
	if qe.Class != "CommandNotFound" || qe.Command != "no-such-command" || !strings.Contains(qe.Desc, "no-such-command") {
		t.Errorf("error = %+v, want class CommandNotFound naming the command", qe)
	}
	// Bad arguments map the same way, with QEMU's class.
	err = vm.Execute(testCtx(t), "query-status", map[string]any{"bogus": 1}, nil)
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("bad arguments: error = %v, want a GenericError *qmp.Error", err)
	}
	if _, err := vm.QueryStatus(testCtx(t)); err != nil {
		t.Fatalf("the client must keep working after error replies: %v", err)
	}
}

func TestConcurrentExecutesGetTheirOwnReplies(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	const workers, rounds = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds+1)
	// One worker keeps pulling the big schema through the same reader.
	stopBig := make(chan struct{})
	var bigWG sync.WaitGroup
	bigWG.Go(func() {
		for {
			select {
			case <-stopBig:
				return
			default:
			}
			var schema []json.RawMessage
			if err := vm.Execute(testCtx(t), "query-qmp-schema", nil, &schema); err != nil || len(schema) < 100 {
				errs <- fmt.Errorf("schema: %d entries, err %v", len(schema), err)
				return
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				// Each unknown command has a unique name that QEMU echoes
				// in its error, so a mixed-up reply shows.
				name := fmt.Sprintf("no-such-command-%d-%d", w, r)
				var qe *qmp.Error
				err := vm.Execute(testCtx(t), name, nil, nil)
				if !errors.As(err, &qe) || !strings.Contains(qe.Desc, name+" ") {
					errs <- fmt.Errorf("%s: got %v", name, err)
				}
				st, err := vm.QueryStatus(testCtx(t))
				if err != nil || st.Status != "prelaunch" {
					errs <- fmt.Errorf("query-status: %+v, %v", st, err)
				}
			}
		})
	}
	wg.Wait()
	close(stopBig)
	bigWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFullSubscriberNeverBlocksReplies(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	stuck, unsubscribeStuck := vm.Subscribe(1) // never read until the end
	defer unsubscribeStuck()
	const cycles = 50
	reader, unsubscribe := vm.Subscribe(2 * cycles)
	defer unsubscribe()

	for i := range cycles {
		if err := vm.Cont(testCtx(t)); err != nil {
			t.Fatalf("cycle %d: cont: %v", i, err)
		}
		if err := vm.Stop(testCtx(t)); err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
	}
	// The reading subscriber sees every event, in order.
	for i := range 2 * cycles {
		want := qmp.EventResume
		if i%2 == 1 {
			want = qmp.EventStop
		}
		select {
		case ev := <-reader:
			if ev.Name != want {
				t.Fatalf("event %d = %s, want %s", i, ev.Name, want)
			}
			if ev.Time.IsZero() || ev.Time.Year() < 2020 {
				t.Errorf("event %d has timestamp %v, want QEMU's clock", i, ev.Time)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d events arrived", i, 2*cycles)
		}
	}
	// The stuck one kept the first event and lost all the others.
	if got, want := vm.DroppedEvents(), uint64(2*cycles-1); got != want {
		t.Errorf("DroppedEvents() = %d, want %d", got, want)
	}
	if ev := <-stuck; ev.Name != qmp.EventResume {
		t.Errorf("stuck subscriber's event = %s, want the first one (RESUME)", ev.Name)
	}
	unsubscribeStuck()
	if _, ok := <-stuck; ok {
		t.Error("channel still open after unsubscribe")
	}
}

func TestDeadlineAndCancelWhileQEMUHangs(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone, clientOpt: []qmp.Option{qmp.WithCommandTimeout(300 * time.Millisecond)}})
	vm.signal(t, syscall.SIGSTOP) // QEMU stops reading and answering
	stopped := true
	defer func() {
		if stopped {
			vm.signal(t, syscall.SIGCONT)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := vm.QueryStatus(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with a deadline: err = %v, want DeadlineExceeded", err)
	}
	// No deadline in ctx: the client's command timeout applies.
	if _, err := vm.QueryStatus(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("without a deadline: err = %v, want DeadlineExceeded from the command timeout", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := vm.QueryStatus(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want Canceled", err)
	}

	// QEMU wakes up and answers the abandoned commands; those replies are
	// dropped and a new command gets its own reply.
	vm.signal(t, syscall.SIGCONT)
	stopped = false
	var qe *qmp.Error
	if err := vm.Execute(testCtx(t), "after-the-hang", nil, nil); !errors.As(err, &qe) || !strings.Contains(qe.Desc, "after-the-hang") {
		t.Fatalf("first command after the hang got %v, want its own CommandNotFound", err)
	}
	if st, err := vm.QueryStatus(testCtx(t)); err != nil || st.Status != "prelaunch" {
		t.Fatalf("query-status after the hang: %+v, %v", st, err)
	}
	if vm.Err() != nil {
		t.Fatalf("client ended: %v", vm.Err())
	}
}

func TestQEMUKilledMidCommand(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	events, unsubscribe := vm.Subscribe(4)
	defer unsubscribe()
	vm.signal(t, syscall.SIGSTOP)
	result := make(chan error, 1)
	go func() {
		_, err := vm.QueryStatus(context.Background()) // default timeout: 30 s
		result <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the command reach the socket; the test holds either way
	vm.signal(t, syscall.SIGKILL)

	select {
	case err := <-result:
		if !errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("pending command: err = %v, want ErrDisconnected", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pending command did not fail after QEMU died")
	}
	<-vm.Done()
	// A peer that dies with our command unread in its buffer resets the
	// connection instead of closing it cleanly.
	if err := vm.Err(); !errors.Is(err, qmp.ErrDisconnected) || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("Err() = %v, want ErrDisconnected wrapping EOF or ECONNRESET", err)
	}
	if _, ok := <-events; ok {
		t.Error("subscriber channel still open after the connection ended")
	}
	if err := vm.Stop(testCtx(t)); !errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("command after the end: err = %v, want ErrDisconnected", err)
	}
	late, _ := vm.Subscribe(1)
	if _, ok := <-late; ok {
		t.Error("subscribing to an ended client must give a closed channel")
	}
}

func TestCloseFailsPendingAndIsIdempotent(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	vm.signal(t, syscall.SIGSTOP)
	defer vm.signal(t, syscall.SIGCONT)
	result := make(chan error, 1)
	go func() { result <- vm.Execute(context.Background(), "query-status", nil, nil) }()
	time.Sleep(100 * time.Millisecond)
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-result; !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("pending command: err = %v, want ErrClosed", err)
	}
	if err := vm.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !errors.Is(vm.Err(), qmp.ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", vm.Err())
	}
}

func TestQuitSendsShutdownAndEnds(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	events, unsubscribe := vm.Subscribe(8)
	defer unsubscribe()
	if err := vm.Quit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	<-vm.Done()
	<-vm.exited
	var got []string
	var shutdown *qmp.ShutdownData
	for ev := range events { // closed once the client ended
		got = append(got, ev.Name)
		if ev.Name == qmp.EventShutdown {
			d, err := ev.Shutdown()
			if err != nil {
				t.Fatal(err)
			}
			shutdown = &d
		}
	}
	if shutdown == nil {
		t.Fatalf("no SHUTDOWN event before the end; got %v", got)
	}
	if shutdown.Guest || shutdown.Reason != "host-qmp-quit" {
		t.Errorf("SHUTDOWN data = %+v, want guest=false reason=host-qmp-quit", *shutdown)
	}
	if vm.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("QEMU exit code = %d after quit", vm.cmd.ProcessState.ExitCode())
	}
}

func TestHandshakeFailures(t *testing.T) {
	pair := func() (net.Conn, *os.File) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		ours := os.NewFile(uintptr(fds[0]), "ours")
		defer ours.Close()
		conn, err := net.FileConn(ours)
		if err != nil {
			t.Fatal(err)
		}
		return conn, os.NewFile(uintptr(fds[1]), "peer")
	}

	// A peer that never greets: the handshake's deadline ends the wait.
	conn, peer := pair()
	defer peer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := qmp.New(ctx, conn); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent peer: err = %v, want DeadlineExceeded", err)
	}

	// A peer that hangs up first, as QEMU does when it fails to start.
	conn, peer = pair()
	peer.Close()
	if _, err := qmp.New(testCtx(t), conn); !errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("peer gone: err = %v, want ErrDisconnected", err)
	}

	// A peer that speaks something else.
	conn, peer = pair()
	defer peer.Close()
	if _, err := peer.Write([]byte("SSH-2.0-OpenSSH\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := qmp.New(testCtx(t), conn); !errors.Is(err, qmp.ErrProtocol) {
		t.Errorf("non-QMP peer: err = %v, want ErrProtocol", err)
	}
}

func TestDial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	startQEMU(t, qemuSetup{args: append(slices.Clone(machineNone), "-qmp", "unix:"+path+",server=on,wait=off")})
	c, err := qmp.Dial(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.QueryStatus(testCtx(t)); err != nil || st.Status != "prelaunch" {
		t.Errorf("query-status over Dial: %+v, %v", st, err)
	}
	if _, err := qmp.Dial(testCtx(t), filepath.Join(t.TempDir(), "absent.sock")); err == nil {
		t.Error("Dial of a missing socket must fail")
	}
}
