package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Fixed fd numbers in QEMU: os/exec numbers ExtraFiles from 3. The
// devices' files follow (each NIC's TAP queues, in the spec's order), then
// the TPM's control channel.
const (
	qmpFD         = 3
	serialFD      = 4
	firstDeviceFD = 5
)

// qemuProcess is the QEMU child. os.Process holds a pidfd for it on Linux,
// so that neither a signal nor the wait can reach a recycled PID, and a
// signal after the wait is refused.
type qemuProcess struct {
	pid     int
	started time.Time
	proc    *os.Process
	qmpFile *os.File // our end of the QMP socketpair, until QMP takes it

	exited chan struct{} // closed once QEMU has been reaped
	state  *os.ProcessState

	mu     sync.Mutex
	stderr []byte // the last few KiB, for error messages
}

// qemuConfig is the devices' QEMU configuration with the shim's own
// channels and the platform; the files QEMU must inherit go through fds.
func qemuConfig(spec *vmspec.Spec, devs []device.Device, fds *device.FDs) *qemu.Config {
	cfg := device.QEMUConfig(spec, devs, fds)
	cfg.QMPFD, cfg.SerialFD, cfg.NoShutdown = qmpFD, serialFD, true
	addPlatform(cfg, spec)
	return cfg
}

func startQEMU(ctx context.Context, s *Shim) (*qemuProcess, error) {
	qmpOurs, qmpTheirs, err := socketpair("qmp")
	if err != nil {
		return nil, err
	}
	serialOurs, serialTheirs, err := socketpair("serial")
	if err != nil {
		qmpOurs.Close()
		qmpTheirs.Close()
		return nil, err
	}
	// QEMU keeps its own copies; ours of its ends close once it started.
	defer qmpTheirs.Close()
	defer serialTheirs.Close()
	defer s.releaseTPMCtrl()

	extra := []*os.File{qmpTheirs, serialTheirs}
	fds := device.NewFDs(firstDeviceFD)
	cfg := qemuConfig(s.spec, s.devices, fds)
	cfg.IncomingDefer = s.incomingDefer
	extra = s.attachTPM(cfg, append(extra, fds.Files()...))
	cmd, err := qemu.Command(context.WithoutCancel(ctx), s.cfg.QEMUBinary, cfg)
	if err != nil {
		qmpOurs.Close()
		serialOurs.Close()
		return nil, err
	}
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.SysProcAttr.Credential, err = s.qemuCredential(); err != nil {
		qmpOurs.Close()
		serialOurs.Close()
		return nil, err
	}
	p := &qemuProcess{qmpFile: qmpOurs, exited: make(chan struct{})}
	// A plain pipe rather than StderrPipe: the reader drains it to EOF on its
	// own time, independent of when the process is reaped.
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		qmpOurs.Close()
		serialOurs.Close()
		return nil, err
	}
	cmd.Stderr = stderrW
	p.started = time.Now()
	if err = ctx.Err(); err == nil {
		err = cmd.Start()
	}
	stderrW.Close()
	if err != nil {
		stderr.Close()
		qmpOurs.Close()
		serialOurs.Close()
		return nil, fmt.Errorf("start %s: %w", s.cfg.QEMUBinary, err)
	}
	p.pid, p.proc = cmd.Process.Pid, cmd.Process
	s.console = newConsole(serialOurs)
	go p.collectStderr(stderr, s)
	go func() {
		// How QEMU ended is in ProcessState; an error that is not an exit
		// status is the wait's own, and leaves no ProcessState.
		var exit *exec.ExitError
		if err := cmd.Wait(); err != nil && !errors.As(err, &exit) {
			s.log.Error("waiting for qemu failed", "ERROR", err.Error())
		}
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

func (p *qemuProcess) collectStderr(r io.ReadCloser, s *Shim) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		s.log.Warn("qemu: " + line)
		p.mu.Lock()
		p.stderr = append(p.stderr, line...)
		p.stderr = append(p.stderr, '\n')
		if len(p.stderr) > 4096 {
			p.stderr = p.stderr[len(p.stderr)-4096:]
		}
		p.mu.Unlock()
	}
}

func (p *qemuProcess) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(string(p.stderr))
}

func (p *qemuProcess) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL; once QEMU has been reaped it does nothing.
func (p *qemuProcess) kill() { p.proc.Kill() }

func (p *qemuProcess) wait() *os.ProcessState {
	<-p.exited
	return p.state
}

// socketpair returns a connected pair. Our end is non-blocking, so Go's
// poller serves it: deadlines work, and Close interrupts a blocked read.
func socketpair(name string) (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		if err = unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s socketpair: %w", name, err)
	}
	return os.NewFile(uintptr(fds[0]), name+"-shim"), os.NewFile(uintptr(fds[1]), name+"-qemu"), nil
}

// qemuCredential is the account QEMU and swtpm run as, looked up once per
// run; nil runs them as the shim.
func (s *Shim) qemuCredential() (*syscall.Credential, error) {
	if s.cfg.QEMUUser == "" || s.cred != nil {
		return s.cred, nil
	}
	cred, err := lookupCredential(s.cfg.QEMUUser)
	if err != nil {
		return nil, err
	}
	s.cred = cred
	return cred, nil
}

// handToQEMU gives paths to QEMU's user, which must open or write them. It
// never follows a symlink: the TPM's state directory belongs to that user,
// who could otherwise plant a link there and have the shim, as root, give
// away any file on the host.
func (s *Shim) handToQEMU(paths ...string) error {
	cred, err := s.qemuCredential()
	if err != nil || cred == nil {
		return err
	}
	for _, p := range paths {
		if err := os.Lchown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("hand %s to %s: %w", p, s.cfg.QEMUUser, err)
		}
	}
	return nil
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("qemu user: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	groups, _ := u.GroupIds()
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred, nil
}
