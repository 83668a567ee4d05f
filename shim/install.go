package shim

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/swtpm"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// An unattended install, as the shim runs it. The agent prepares the media
// and writes the spec; the shim boots the installer once, watches it, and
// records how it ended:
//
//   - the guest powering itself off is the installer's end: off (installed);
//   - past the install's timeout, or resetting in a loop: error
//     (install-timeout, install-reset-loop), and the VM is stopped.
//
// The agent then updates the spec (media detached, or kept after a failure),
// deletes the answer ISO, and boots the installed system if asked.

// keyPresses answer the "Press any key to boot from CD or DVD" prompt that
// the Windows ISO shows under UEFI: without a key it falls through to the
// empty disk. The shim presses Enter every keyInterval during keyWindow of
// the installer's first boot, before any reset.
const (
	keyInterval = time.Second
	keyWindow   = 20 * time.Second
)

// platformRun is what the shim runs beside QEMU for one start: the TPM
// emulator and the install's watchers.
type platformRun struct {
	swtpm   *swtpm.Process
	tpmCtrl *os.File // QEMU's end of swtpm's control channel, until QEMU started

	resets   *resetWindow
	timer    *time.Timer
	stopKeys chan struct{}
	keysOnce sync.Once
}

// installing reports whether this run boots the installer.
func (s *Shim) installing() bool { return s.spec != nil && s.spec.Install.Active() }

// addPlatform adds what the spec asks beyond its devices: UEFI firmware
// and, while an install is unfinished, the boot-once (its media are
// devices of the start: runDevices).
func addPlatform(cfg *qemu.Config, spec *vmspec.Spec) {
	if f := spec.Firmware; f != nil {
		cfg.Firmware = &qemu.Firmware{Code: f.Code, Vars: f.Vars, SecureBoot: f.SecureBoot}
	}
	in := spec.Install
	if !in.Active() {
		return
	}
	if cds := spec.CDROMs(); in.BootOnce == vmspec.BootOnceISO && len(cds) > 0 {
		cfg.BootOnce = cds[0].Name // the OS ISO
	}
}

// installMedia names the install's media, for events and checks.
func (s *Shim) installMedia() map[string]string {
	in := s.spec.Install
	media := map[string]string{"OS ISO": s.spec.ISOPath(), "answer ISO": in.AnswerISO}
	if in.VirtioWinISO != "" {
		media["virtio-win ISO"] = in.VirtioWinISO
	}
	if b := s.spec.Boot; b != nil && in.BootOnce == "" {
		media["installer kernel"] = b.Kernel
		if b.Initrd != "" {
			media["installer initrd"] = b.Initrd
		}
	}
	return media
}

// armBootOnce runs while QEMU is still stopped by -S: the OS ISO, first for
// the firmware at this boot, goes back behind the disk for every later one
// (QEMU hands the firmware a new boot order only at a reset).
func (s *Shim) armBootOnce(ctx context.Context) error {
	if !s.installing() {
		return nil
	}
	media := s.installMedia()
	parts := make([]string, 0, len(media))
	for _, what := range []string{"OS ISO", "answer ISO", "virtio-win ISO", "installer kernel", "installer initrd"} {
		if p, ok := media[what]; ok {
			parts = append(parts, what+" "+p)
		}
	}
	s.progress("install media attached: %s", strings.Join(parts, ", "))
	cfg := qemuConfig(s.spec, s.devices, device.NewFDs(firstDeviceFD))
	id, idx, ok := cfg.BootOnceRestore()
	if !ok {
		return nil
	}
	args := map[string]any{"path": qemu.PeripheralPath(id), "property": "bootindex", "value": idx}
	if err := s.qmp.Execute(ctx, "qom-set", args, nil); err != nil {
		return fmt.Errorf("boot once from %s: %w", id, err)
	}
	return nil
}

// upStatus is the status of a VM whose CPUs run: building while the
// installer runs.
func (s *Shim) upStatus() api.Status {
	if s.installing() {
		return api.StatusBuilding
	}
	return api.StatusRunning
}

// setRunning records that the guest runs, for reason; during an install it
// is building (installing) whatever brought it there.
func (s *Shim) setRunning(reason api.Reason, msg string) {
	if s.installing() {
		in := s.spec.Install
		s.setStatus(api.StatusBuilding, api.ReasonInstalling,
			fmt.Sprintf("the %s installer runs (timeout %s)", in.OS, in.Timeout()), nil)
		return
	}
	s.setStatus(api.StatusRunning, reason, msg, nil)
}

// booted runs once the CPUs run: it records the status and, during an
// install, starts the watchers.
func (s *Shim) booted(ctx context.Context) {
	s.setRunning(api.ReasonBooted, "")
	if !s.installing() {
		return
	}
	in := s.spec.Install
	how := "booting its kernel directly"
	if in.BootOnce == vmspec.BootOnceISO {
		how = "booting the OS ISO once"
	}
	s.progress("installer booted (%s); timeout %s", how, in.Timeout())
	s.plat.resets = newResetWindow()
	// The watchers run on after the step that starts them.
	ctx = context.WithoutCancel(ctx)
	if in.BootOnce == vmspec.BootOnceISO && vmspec.IsWindows(in.OS) {
		s.plat.stopKeys = make(chan struct{})
		go s.pressBootKey(ctx, s.plat.stopKeys)
	}
	// Last: an install already past its time fails at once, on the timer's
	// goroutine, and failInstall reads the key presser's channel.
	left := installDeadline(in, time.Now())
	s.plat.timer = time.AfterFunc(left, func() {
		s.failInstall(ctx, api.ReasonInstallTimeout, fmt.Sprintf("the %s install did not finish within %s", in.OS, in.Timeout()))
	})
}

// pressBootKey presses Enter for the Windows ISO's boot prompt until the
// window ends, the guest resets or QEMU goes.
func (s *Shim) pressBootKey(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(keyInterval)
	defer tick.Stop()
	end := time.After(keyWindow)
	keys := map[string]any{"keys": []map[string]string{{"type": "qcode", "data": "ret"}}}
	for {
		select {
		case <-stop:
			return
		case <-s.qemu.exited:
			return
		case <-end:
			return
		case <-tick.C:
			kctx, cancel := context.WithTimeout(ctx, qmpTimeout)
			if err := s.qmp.Execute(kctx, "send-key", keys, nil); err != nil {
				s.log.Debug("send-key for the boot prompt failed", "ERROR", err.Error())
			}
			cancel()
		}
	}
}

func (s *Shim) stopBootKey() {
	if s.plat.stopKeys != nil {
		s.plat.keysOnce.Do(func() { close(s.plat.stopKeys) })
	}
}

// onGuestReset counts the installer's reboots: each is a progress event,
// and too many too fast fail the install.
func (s *Shim) onGuestReset(ctx context.Context, ev qmp.Event) {
	if d, err := ev.Shutdown(); err != nil || !d.Guest {
		return // an operator's reset is not the guest's, nor the installer's
	}
	if !s.installing() {
		s.resetLoop.add(ev.Time, func() {
			msg := fmt.Sprintf("the guest reset %d times within %s", guestResetLoopCount, guestResetLoopWindow)
			s.log.Warn("reset loop: " + msg)
			s.setRunning(api.ReasonResetLoop, msg)
		}, func() {
			if st := s.Status(); st.Status == api.StatusRunning && st.Reason == api.ReasonResetLoop {
				s.setRunning(api.ReasonBooted, fmt.Sprintf("the guest stopped resetting: none for %s", guestResetQuiet))
			}
		})
		return
	}
	if s.plat.resets == nil {
		return
	}
	s.stopBootKey()
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	loop := s.plat.resets.add(at)
	s.progress("installer rebooted the guest (reset %d)", s.plat.resets.total)
	if loop {
		s.failInstall(ctx, api.ReasonInstallResetLoop,
			fmt.Sprintf("the %s installer reset the guest %d times within %s", s.spec.Install.OS, resetLoopCount, resetLoopWindow))
	}
}

// guestOffCause is what a guest that powered itself off means: during an
// install, that the installer finished.
func (s *Shim) guestOffCause(at time.Time) exitCause {
	if !s.installing() {
		return exitCause{api.StatusOff, api.ReasonGuestShutdown, shimapi.ExitGuestShutdown, "the guest powered itself off"}
	}
	in := s.spec.Install
	if at.IsZero() {
		at = time.Now()
	}
	took := "?"
	if !in.StartedAt.IsZero() {
		took = at.Sub(in.StartedAt).Round(time.Second).String()
	}
	if s.exitCauseLocked() == nil {
		s.progress("install complete: the installer powered the guest off after %s", took)
	}
	return exitCause{api.StatusOff, api.ReasonInstalled, shimapi.ExitGuestShutdown,
		fmt.Sprintf("the %s install finished after %s", in.OS, took)}
}

// failInstall stops a failed install: the status says why at once, then
// QEMU quits. The media stay for inspection; the agent marks the install
// failed.
func (s *Shim) failInstall(ctx context.Context, reason api.Reason, msg string) {
	s.mu.Lock()
	if s.cause != nil || s.status.Status.Terminal() || s.qemu.hasExited() {
		s.mu.Unlock()
		return // already going away, or gone, for another reason
	}
	s.cause = &exitCause{api.StatusError, reason, shimapi.ExitInstallFailed, msg}
	s.intent = intentForceOff
	s.mu.Unlock()
	s.stopBootKey()
	s.log.Warn("install failed", "REASON", string(reason), "MESSAGE_DETAIL", msg)
	s.setStatus(api.StatusError, reason, msg, nil)
	s.quit(ctx)
}

// stopInstallWatch ends the watchers when QEMU is gone.
func (s *Shim) stopInstallWatch() {
	if s.plat.timer != nil {
		s.plat.timer.Stop()
	}
	s.stopBootKey()
}
