package shim

import (
	"context"
	"fmt"
	"os"

	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/swtpm"
)

// startSWTPM runs the VM's TPM emulator as the shim's own child, under
// QEMU's user, with its state in the VM's directory. It ends with QEMU
// (--terminate), and teardown stops it in any case; if the shim itself is
// killed, the unit's KillMode=mixed takes it with the rest of the cgroup.
func (s *Shim) startSWTPM(ctx context.Context) error {
	t := s.spec.TPM()
	if t == nil {
		return nil
	}
	opts := swtpm.Options{Binary: s.cfg.SWTPMBinary, StateDir: t.StateDir, Log: func(line string) {
		s.log.Warn("swtpm: " + line)
	}}
	cred, err := s.qemuCredential()
	if err != nil {
		return err
	}
	opts.Credential = cred
	p, ctrl, err := swtpm.Start(ctx, opts)
	if err != nil {
		return err
	}
	s.plat.swtpm, s.plat.tpmCtrl = p, ctrl
	return nil
}

// attachTPM gives QEMU swtpm's control channel as the fd after the TAP
// queues, and returns the extra files with it.
func (s *Shim) attachTPM(cfg *qemu.Config, extra []*os.File) []*os.File {
	if s.plat.tpmCtrl == nil {
		return extra
	}
	cfg.TPM = &qemu.TPM{CtrlFD: 3 + len(extra)}
	return append(extra, s.plat.tpmCtrl)
}

// releaseTPMCtrl closes the shim's copy of QEMU's end once QEMU has its own
// (or failed to start): swtpm must see only QEMU on the channel.
func (s *Shim) releaseTPMCtrl() {
	if s.plat.tpmCtrl != nil {
		s.plat.tpmCtrl.Close()
		s.plat.tpmCtrl = nil
	}
}

// checkTPM proves QEMU has the TPM before any guest code runs: Windows 11
// refuses to install without one, and a missing TPM should fail the start,
// not the install an hour later.
func (s *Shim) checkTPM(ctx context.Context) error {
	if s.plat.swtpm == nil {
		return nil
	}
	devs, err := s.qmp.QueryTPM(ctx)
	if err != nil {
		return fmt.Errorf("query-tpm: %w", err)
	}
	if len(devs) != 1 || devs[0].Model != "tpm-crb" || devs[0].Type != "emulator" {
		return fmt.Errorf("query-tpm shows %+v, want one tpm-crb on swtpm", devs)
	}
	s.progress("tpm 2.0 present: %s on swtpm (pid %d)", devs[0].Model, s.plat.swtpm.PID())
	return nil
}

func (s *Shim) undoSWTPM(context.Context) error {
	s.stopSWTPM()
	return nil
}

// stopSWTPM ends the TPM emulator once QEMU is gone.
func (s *Shim) stopSWTPM() {
	s.releaseTPMCtrl()
	if s.plat.swtpm != nil {
		s.plat.swtpm.Stop()
	}
}
