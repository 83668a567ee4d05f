// Package swtpm runs swtpm, the TPM emulator, for one VM: a TPM 2.0 whose
// control channel is one end of a socketpair, the other end going to QEMU
// (qemu.TPM.CtrlFD). QEMU passes swtpm its data channel over that socket,
// so no socket path exists anywhere.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package swtpm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultBinary is swtpm, looked up in PATH (Debian package swtpm).
const DefaultBinary = "swtpm"

// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// cmdGetCapability is the control channel's CMD_GET_CAPABILITY: it needs no
// initialised TPM and answers with a 64-bit capability mask.
const cmdGetCapability = 1

// Options describe one swtpm.
type Options struct {
	// Binary defaults to DefaultBinary.
	Binary string
	// StateDir holds the TPM's persistent state; it must exist and be
	// writable by Credential. A fresh TPM is manufactured on first use.
	StateDir string
	// Credential runs swtpm under this account (QEMU's); nil keeps ours.
	Credential *syscall.Credential
	// Log receives swtpm's stderr, line by line; nil drops it.
	Log func(line string)
}

// Process is a running swtpm.
type Process struct {
	pid    int
	proc   *os.Process
	done   chan struct{}
	state  *os.ProcessState
	mu     sync.Mutex
	stderr []string // the last lines, for errors
}

// Error is a failed start, with what swtpm printed.
type Error struct {
	Op     string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("swtpm: %s: %v", e.Op, e.Err)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Start runs swtpm and checks that its control channel answers before ctx
// ends. It returns the process and QEMU's end of the control socket: pass it
// to QEMU (as TPM.CtrlFD) and close it once QEMU has started. swtpm ends by
// itself once QEMU closes the data channel (--terminate); Stop ends it in
// any case.
func Start(ctx context.Context, opts Options) (*Process, *os.File, error) {
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	if fi, err := os.Stat(opts.StateDir); err != nil || !fi.IsDir() {
		return nil, nil, &Error{Op: "state directory", Err: fmt.Errorf("%s is not a directory (%v)", opts.StateDir, err)}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &Error{Op: "socketpair", Err: err}
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, &Error{Op: "socketpair", Err: err}
	}
	qemuEnd := os.NewFile(uintptr(fds[0]), "swtpm-ctrl-qemu")
	ours := os.NewFile(uintptr(fds[1]), "swtpm-ctrl-swtpm")
	// Only swtpm keeps this end, so its exit reads as EOF on QEMU's end.
	defer ours.Close()

	// The child's fd 3 is ExtraFiles[0].
	cmd := exec.Command(opts.Binary, "socket", "--tpm2",
		"--tpmstate", "dir="+opts.StateDir+",mode=0600",
		"--ctrl", "type=unixio,clientfd=3",
		"--terminate")
	cmd.ExtraFiles = []*os.File{ours}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: opts.Credential}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		qemuEnd.Close()
		return nil, nil, &Error{Op: "pipe", Err: err}
	}
	cmd.Stderr = stderrW
	err = cmd.Start()
	stderrW.Close()
	ours.Close()
	if err != nil {
		stderr.Close()
		qemuEnd.Close()
		return nil, nil, &Error{Op: "start " + opts.Binary, Err: err}
	}
	p := &Process{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	go p.collect(stderr, opts.Log)
	go func() {
		_ = cmd.Wait() // how swtpm ended is in cmd.ProcessState
		p.state = cmd.ProcessState
		close(p.done)
	}()
	if err := p.ping(ctx, qemuEnd); err != nil {
		qemuEnd.Close()
		p.Stop()
		return nil, nil, &Error{Op: "control channel", Err: err, Stderr: p.stderrTail()}
	}
	return p, qemuEnd, nil
}

// ping asks for the capabilities over QEMU's end of the control channel and
// reads the whole answer, so the stream is clean when QEMU takes over.
func (p *Process) ping(ctx context.Context, ctrl *os.File) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := ctrl.SetDeadline(deadline); err != nil {
		return err
	}
	defer func() { _ = ctrl.SetDeadline(time.Time{}) }() // fails only on a channel already broken
	var req [4]byte
	binary.BigEndian.PutUint32(req[:], cmdGetCapability)
	if _, err := ctrl.Write(req[:]); err != nil {
		return p.explain(err)
	}
	var caps [8]byte
	if _, err := io.ReadFull(ctrl, caps[:]); err != nil {
		return p.explain(err)
	}
	if binary.BigEndian.Uint64(caps[:]) == 0 {
		return errors.New("swtpm reports no capabilities")
	}
	return nil
}

// explain turns a broken control channel into swtpm's exit, when that is
// what broke it.
func (p *Process) explain(err error) error {
	select {
	case <-p.done:
		return fmt.Errorf("swtpm exited (%s)", p.state)
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

func (p *Process) collect(r io.ReadCloser, log func(string)) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if log != nil {
			log(line)
		}
		p.mu.Lock()
		p.stderr = append(p.stderr, line)
		if len(p.stderr) > 20 {
			p.stderr = p.stderr[1:]
		}
		p.mu.Unlock()
	}
}

func (p *Process) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "; ")
}

// PID is swtpm's process ID.
func (p *Process) PID() int { return p.pid }

// Done is closed once swtpm has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop ends swtpm: SIGTERM (it saves its volatile state and exits), SIGKILL
// after StopGrace. It returns once swtpm has been reaped.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	// Both fail only once swtpm is gone, which p.done then tells.
	_ = p.proc.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopGrace):
		_ = p.proc.Kill()
		<-p.done
	}
}
