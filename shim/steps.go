package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Steps lists cold-boot startup in order, firecracker-style, so that tests
// and logs can name each one and other kinds of start can edit it (see
// variants.go). Each step's Undo, where it has one, reverses what its Run
// made; teardown runs them for every completed step, in reverse.
func (s *Shim) Steps() StepList {
	return StepList{
		{"load-spec", 5 * time.Second, s.loadSpec, nil},
		{"open-event-log", 15 * time.Second, s.openEventLog, s.closeEventLog},
		{"prepare-runtime-dir", 5 * time.Second, s.prepareRuntimeDir, s.removeRuntimeDir},
		// The rules stay until the unit's cleanup removes them with the TAPs.
		{"install-firewall", 10 * time.Second, s.installFirewall, nil},
		{"prepare-devices", 45 * time.Second, s.prepareDevices, s.releaseDevices},
		{"start-swtpm", 10 * time.Second, s.startSWTPM, s.undoSWTPM},
		{"start-qemu", 10 * time.Second, s.startQEMU, s.stopQEMU},
		{"qmp-handshake", 60 * time.Second, s.connectQMP, s.closeQMP},
		{"check-tpm", 10 * time.Second, s.checkTPM, nil},
		{"arm-boot-once", 10 * time.Second, s.armBootOnce, nil},
		{"arm-balloon", 10 * time.Second, s.armBalloon, nil},
		{"set-display-password", 10 * time.Second, s.setDisplayPassword, nil},
		{"serve-control-socket", 5 * time.Second, s.serveControl, s.stopControl},
		{"await-firewall", firewallTimeout, s.awaitFirewall, nil},
		{"start-cpus", 30 * time.Second, s.startCPUs, s.undoStartCPUs},
	}
}

// start runs the cold-boot steps.
func (s *Shim) start(ctx context.Context) error { return s.runSteps(ctx, s.Steps()) }

// runSteps runs steps in order and stops at the first failure; the steps
// completed until then are remembered for teardown to undo.
func (s *Shim) runSteps(ctx context.Context, steps StepList) error {
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			s.mu.Lock()
			s.intent = intentPowerOff
			s.mu.Unlock()
			return fmt.Errorf("stopped during startup, before %s", st.Name)
		}
		if s.cfg.BeforeStep != nil {
			if err := s.cfg.BeforeStep(st.Name); err != nil {
				return fmt.Errorf("%s: %w", st.Name, err)
			}
		}
		began := time.Now()
		sctx, cancel := context.WithTimeout(ctx, st.Timeout)
		err := st.Run(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", st.Name, err)
		}
		s.completed = append(s.completed, st)
		s.log.Debug("startup step done", logging.KeyStep, st.Name, "DURATION", time.Since(began).String())
	}
	return nil
}

// undoTimeout bounds one step's Undo.
const undoTimeout = 15 * time.Second

// undoCompleted runs the Undo of every completed step, newest first, once.
// A failing Undo is logged and the rest still run: teardown must get as
// far as it can, and the unit's cleanup repeats what matters. Each Undo
// has its own deadline, not ctx's: teardown runs after SIGTERM too.
func (s *Shim) undoCompleted(ctx context.Context) {
	for i := len(s.completed) - 1; i >= 0; i-- {
		st := s.completed[i]
		if st.Undo == nil {
			continue
		}
		began := time.Now()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		err := st.Undo(uctx)
		cancel()
		if err != nil {
			s.log.Warn("undo of a startup step failed", logging.KeyStep, st.Name, "ERROR", err.Error())
			continue
		}
		s.log.Debug("startup step undone", logging.KeyStep, st.Name, "DURATION", time.Since(began).String())
	}
	s.completed = nil
}

func (s *Shim) loadSpec(ctx context.Context) error {
	spec, err := vmspec.Load(s.cfg.Layout.SpecFile(s.cfg.VMID))
	if err != nil {
		return err
	}
	if spec.ID != s.cfg.VMID {
		return fmt.Errorf("spec belongs to VM %s, not %s", spec.ID, s.cfg.VMID)
	}
	s.spec = spec
	return nil
}

func (s *Shim) openEventLog(ctx context.Context) error {
	l, err := eventlog.Open(ctx, s.cfg.Layout.EventsFile(s.cfg.VMID), s.cfg.VMID)
	if err != nil {
		return err
	}
	s.events = l
	s.guest = newGuestBursts(guestBurstWindow, s.record)
	s.mu.Lock()
	s.status.Seq = l.LastSeq()
	s.status.StartedAt = time.Now().UTC()
	s.mu.Unlock()
	s.setStatus(api.StatusStarting, s.cfg.StartReason, "", nil)
	return nil
}

// closeEventLog ends every event stream after its last entry and releases
// the log for the unit's cleanup.
func (s *Shim) closeEventLog(context.Context) error { return s.events.Close() }

func (s *Shim) prepareRuntimeDir(ctx context.Context) error {
	dir := s.cfg.Layout.RuntimeDir(s.cfg.VMID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// A socket left by a shim that was SIGKILLed before cleanup ran.
	if err := os.Remove(s.cfg.Layout.ShimSocket(s.cfg.VMID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Shim) removeRuntimeDir(context.Context) error {
	return removeRuntimeDir(s.cfg.Layout.RuntimeDir(s.cfg.VMID))
}

func (s *Shim) startQEMU(ctx context.Context) error {
	p, err := startQEMU(ctx, s)
	if err != nil {
		return err
	}
	s.qemu = p
	s.mu.Lock()
	s.status.QEMUPID = p.pid
	s.mu.Unlock()
	go s.console.pump(s.log)
	s.progress("qemu started, pid %d", p.pid)
	return nil
}

// stopQEMU kills QEMU if it still runs (a later step failed) and waits for
// it, then reads the console's last lines.
func (s *Shim) stopQEMU(ctx context.Context) error {
	s.qemu.kill()
	select {
	case <-s.qemu.exited:
	case <-ctx.Done():
		return fmt.Errorf("qemu %d did not exit after SIGKILL: %w", s.qemu.pid, ctx.Err())
	}
	return s.console.Close()
}

func (s *Shim) connectQMP(ctx context.Context) error {
	conn, err := net.FileConn(s.qemu.qmpFile)
	s.qemu.qmpFile.Close()
	if err != nil {
		return err
	}
	// The handshake also waits for QEMU to finish initialising; if QEMU dies
	// first, stop waiting at once.
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.qemu.exited:
			cancel()
		case <-hctx.Done():
		}
	}()
	c, err := qmp.New(hctx, conn)
	if err != nil {
		conn.Close()
		if s.qemu.hasExited() {
			return errors.New("qemu exited during startup")
		}
		return err
	}
	s.qmp = c
	s.progress("qmp ready %.1f ms after qemu started", float64(time.Since(s.qemu.started).Microseconds())/1000)
	// Subscribe before the CPUs run: events sent before Subscribe are lost.
	s.qmpEvents, s.qmpUnsubscribe = c.Subscribe(256)
	return nil
}

func (s *Shim) closeQMP(context.Context) error { return s.qmp.Close() }

func (s *Shim) setDisplayPassword(ctx context.Context) error {
	d := s.spec.Display
	display := ""
	if d.Protocol == "vnc" {
		display = "default"
	}
	if err := s.qmp.SetPassword(ctx, d.Protocol, d.Password, display); err != nil {
		return fmt.Errorf("set %s password: %w", d.Protocol, err)
	}
	return nil
}

func (s *Shim) startCPUs(ctx context.Context) error {
	if err := s.qmp.Cont(ctx); err != nil {
		return err
	}
	s.booted(ctx)
	s.cfg.Notify("READY=1")
	return nil
}

// undoStartCPUs ends the install's watchers, which run once the CPUs do.
func (s *Shim) undoStartCPUs(context.Context) error {
	s.stopInstallWatch()
	return nil
}
