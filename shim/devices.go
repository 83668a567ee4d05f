package shim

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// maxQueues caps TAP queues: past a few, more queues cost memory and gain little.
const maxQueues = 8

// runDevices are the devices of one start: the spec's, and while an
// install is unfinished its own media after them, under the next free
// names (cd1 and cd2 beside the OS ISO's cd0).
func runDevices(spec *vmspec.Spec) ([]device.Device, error) {
	devs, err := device.FromSpec(spec)
	if err != nil {
		return nil, err
	}
	if in := spec.Install; in.Active() {
		answers := spec.FreeName(api.DeviceCDROM)
		devs = append(devs, device.NewCDROM(answers, in.AnswerISO))
		if in.VirtioWinISO != "" {
			devs = append(devs, device.NewCDROM(spec.FreeName(api.DeviceCDROM, answers), in.VirtioWinISO))
		}
	}
	return devs, nil
}

// deviceHost is what the devices need of the shim.
func (s *Shim) deviceHost() *device.Host {
	return &device.Host{
		VMID:       s.cfg.VMID,
		VMDir:      s.cfg.Layout.VMDir(s.cfg.VMID),
		RuntimeDir: s.cfg.Layout.RuntimeDir(s.cfg.VMID),
		Sysfs:      s.cfg.Sysfs,
		ImagesDir:  s.cfg.Layout.ImagesDir(),
		QEMUImg:    s.cfg.QEMUImg,
		HandToQEMU: s.handToQEMU,
		Queues:     min(s.spec.CPUs, maxQueues),
		Progress:   s.progress,
	}
}

// prepareDevices prepares every device of this start in the spec's order
// (the disk checks, each NIC's TAP, the media, the TPM's state), then the
// platform's files. On failure it releases what it prepared.
func (s *Shim) prepareDevices(ctx context.Context) error {
	devs, err := runDevices(s.spec)
	if err != nil {
		return err
	}
	h := s.deviceHost()
	for i, d := range devs {
		began := time.Now()
		if err := d.Prepare(ctx, h); err != nil {
			s.release(ctx, devs[:i+1])
			return fmt.Errorf("%s: %w", d.Name(), err)
		}
		s.log.Debug("device prepared", "DEVICE", d.Name(), "DEVICE_TYPE", string(d.Type()), "DURATION", time.Since(began).String())
	}
	if err := s.preparePlatform(); err != nil {
		s.release(ctx, devs)
		return err
	}
	s.devices = devs
	return nil
}

// releaseDevices gives back what the devices of this start took: the
// shim's TAP queue fds (the kernel removes a TAP with its last one), the
// channels' sockets.
func (s *Shim) releaseDevices(ctx context.Context) error {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	s.mu.Lock()
	devs := s.devices
	s.devices = nil
	s.mu.Unlock()
	s.release(ctx, devs)
	return nil
}

// release releases devs newest first; a failure is logged and the rest
// still go. It has its own deadline, not ctx's: a step that failed may
// have failed because its ctx ended.
func (s *Shim) release(ctx context.Context, devs []device.Device) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupStepTimeout)
	defer cancel()
	for i := len(devs) - 1; i >= 0; i-- {
		if err := devs[i].Release(ctx); err != nil {
			s.log.Warn("releasing a device failed", "DEVICE", devs[i].Name(), "ERROR", err.Error())
		}
	}
}

// preparePlatform checks the files QEMU reads beside the devices (the
// kernel it boots, the firmware) and hands the VM's own ones to QEMU's
// user: the UEFI variable store, an installer kernel in the VM's directory.
func (s *Shim) preparePlatform() error {
	h := s.deviceHost()
	var own []string
	if b := s.spec.Boot; b != nil {
		files := map[string]string{"boot.kernel": b.Kernel}
		if b.Initrd != "" {
			files["boot.initrd"] = b.Initrd
		}
		for field, p := range files {
			if _, err := os.Stat(p); err != nil {
				return errdefs.Invalid(field, "%v", err)
			}
			if strings.HasPrefix(p, h.VMDir+"/") {
				own = append(own, p)
			}
		}
	}
	if f := s.spec.Firmware; f != nil {
		for _, p := range []string{f.Code, f.Vars} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("firmware: %w", err)
			}
		}
		own = append(own, f.Vars)
	}
	return s.handToQEMU(own...)
}
