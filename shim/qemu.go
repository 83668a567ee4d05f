package shim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Fixed fd numbers in QEMU: os/exec numbers ExtraFiles from 3.
const (
	qmpFD      = 3
	serialFD   = 4
	firstTAPFD = 5
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

// qemuConfig maps the VM spec to QEMU's typed configuration. tapFDs are
// each NIC's TAP queue fds as numbered in the child, by device name.
func qemuConfig(spec *vmspec.Spec, tapFDs map[string][]int) *qemu.Config {
	cfg := &qemu.Config{
		UUID:      spec.ID,
		Accel:     qemu.Accel(spec.Accel),
		CPUs:      spec.CPUs,
		MemoryMiB: spec.MemoryMiB,
		Display: qemu.Display{
			Protocol: qemu.DisplayProtocol(spec.Display.Protocol), Listen: spec.Display.Listen, Port: spec.Display.Port,
		},
		QMPFD:        qmpFD,
		SerialFD:     serialFD,
		NoShutdown:   true,
		HotplugPorts: 4,
	}
	for _, d := range spec.Devices {
		switch d.Type {
		case api.DeviceDisk:
			cfg.Disks = append(cfg.Disks, qemu.Disk{ID: d.Name, Path: d.Disk.Path, Format: d.Disk.Format, BootIndex: d.Disk.BootIndex})
		case api.DeviceCDROM:
			cfg.CDROMs = append(cfg.CDROMs, qemu.CDROM{ID: d.Name, Path: d.CDROM.Path, BootIndex: d.CDROM.BootIndex})
		case api.DeviceNIC:
			cfg.NICs = append(cfg.NICs, qemu.NIC{ID: d.Name, MAC: d.NIC.MAC, FDs: tapFDs[d.Name]})
		case api.DevicePCI:
			cfg.PCIs = append(cfg.PCIs, qemu.HostPCI{ID: d.Name, Host: d.PCI.Host})
		}
	}
	if b := spec.Boot; b != nil {
		cfg.Boot = &qemu.DirectBoot{Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	addPlatform(cfg, spec)
	return cfg
}

// startQEMU starts QEMU unless ctx, the step's, has ended first. QEMU
// itself outlives the step: the shim ends it by quit or SIGKILL.
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
	tapFDs := map[string][]int{}
	nic := s.spec.NICs()[0].Name
	for i, f := range s.tap.Files {
		extra = append(extra, f)
		tapFDs[nic] = append(tapFDs[nic], firstTAPFD+i)
	}
	cfg := qemuConfig(s.spec, tapFDs)
	cfg.IncomingDefer = s.incomingDefer
	extra = s.attachTPM(cfg, extra)
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
		cmd.Wait()
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
