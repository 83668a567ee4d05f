package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/supervisor"
)

// Budget around the shim's own shutdown ladder, so that systemd never kills
// a shim that is still shutting its guest down.
const (
	quitGrace      = 10 * time.Second
	stopMargin     = 30 * time.Second
	unitStartLimit = 3 * time.Minute
)

// unitSpec is the transient unit that runs a VM's shim.
func (a *Agent) unitSpec(spec *vmspec.Spec, reason api.Reason) supervisor.UnitSpec {
	common := []string{
		"--id", spec.ID,
		"--state-dir", a.cfg.Layout.StateDir,
		"--run-dir", a.cfg.Layout.RunDir,
		"--firewall", string(a.net.Mode()),
	}
	if a.net.Reject() {
		common = append(common, "--firewall-reject")
	}
	run := append([]string{a.cfg.ShimBinary, "run"}, common...)
	run = append(run, "--qemu", a.cfg.QEMUBinary, "--qemu-img", a.cfg.QEMUImg)
	if a.cfg.QEMUUser != "" {
		run = append(run, "--qemu-user", a.cfg.QEMUUser)
	}
	env := []string{"INFINIVIRT_START_REASON=" + string(reason)}
	if v := os.Getenv("GORACE"); v != "" {
		env = append(env, "GORACE="+v) // a race-built agent runs race-built shims the same way
	}
	return supervisor.UnitSpec{
		VMID:              spec.ID,
		Description:       fmt.Sprintf("Infinivirt VM %s (%s)", spec.Name, spec.ID),
		ExecStart:         run,
		ExecStopPost:      append([]string{a.cfg.ShimBinary, "cleanup"}, common...),
		MemoryMax:         memoryMax(spec),
		LimitMEMLOCK:      memlockLimit(spec),
		StopTimeout:       time.Duration(spec.ShutdownTimeoutSec)*time.Second + quitGrace + stopMargin,
		DeviceAllow:       deviceAllow(spec, a.cfg.Sysfs),
		SuccessExitStatus: shimapi.CleanExitCodes,
		Environment:       env,
	}
}

// memoryMax is the unit's memory ceiling: the guest's RAM plus QEMU's own
// overhead, which is larger under TCG (translated code).
func memoryMax(spec *vmspec.Spec) uint64 {
	mib := uint64(spec.MemoryMiB)
	overhead := max(uint64(256), mib/8)
	if spec.Accel == "tcg" {
		overhead += 1024
	}
	return (mib + overhead) << 20
}

// pciMemlockMargin is what vfio locks beside the guest's memory: ROM and
// BAR mappings, QEMU's own DMA buffers. libvirt allows the same.
const pciMemlockMargin = 1 << 30

// memlockLimit is the unit's LimitMEMLOCK: a passed-through PCI device
// pins all of the guest's memory for DMA, and QEMU, unprivileged and
// sandboxed (no setrlimit), can only inherit the limit. Without one the
// default applies.
func memlockLimit(spec *vmspec.Spec) uint64 {
	if len(spec.PCIs()) == 0 {
		return 0
	}
	return uint64(spec.MemoryMiB)<<20 + pciMemlockMargin
}

// usbDeviceClass is systemd's DeviceAllow name for the nodes under
// /dev/bus/usb.
const usbDeviceClass = "char-usb_device"

// deviceAllow lists the device nodes the VM's QEMU opens; the vfio ones
// of each passed-through PCI device come from the host's sysfs at root.
func deviceAllow(spec *vmspec.Spec, root string) []string {
	devs := []string{"/dev/kvm", "/dev/net/tun"}
	if _, err := os.Stat("/dev/vhost-net"); err == nil {
		devs = append(devs, "/dev/vhost-net")
	}
	// Every USB device node, as systemd fixes DeviceAllow at the start: a
	// device attached live, or plugged in later, has a node that did not
	// exist then. Only a VM with a USB controller can take one.
	if spec.HasUSBController() {
		devs = append(devs, usbDeviceClass)
	}
	// The vfio nodes of each passed-through PCI device (the container once).
	all, _ := device.FromSpec(spec) // a loaded spec is valid, and so is each entry
	for _, p := range device.Of[*device.PCI](all) {
		for _, n := range p.DeviceAllow(root) {
			if !slices.Contains(devs, n) {
				devs = append(devs, n)
			}
		}
	}
	return devs
}

// startUnit starts the VM's unit and waits until the guest CPUs run (the
// shim's READY=1), then follows its events.
func (a *Agent) startUnit(ctx context.Context, rec *record, reason api.Reason) error {
	if err := rec.specReadable(); err != nil {
		return err
	}
	// Before anything changes: a start the host has no room for leaves
	// the VM as it was.
	release, err := a.admit(rec)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, unitStartLimit)
	defer cancel()
	if err := a.beginInstallRun(ctx, rec); err != nil {
		return err
	}
	// Start resets a failed unit left from the last run by itself.
	before := rec.lastSeq()
	err = a.cfg.Units.Start(ctx, a.unitSpec(rec.currentSpec(), reason))
	a.catchUp(rec)
	if err != nil {
		// A shim that ran and failed recorded why: that is the useful message.
		if v := rec.view(); v.Seq > before && v.Status == api.StatusError && v.Message != "" {
			return &errdefs.Error{Code: errdefs.CodeFailedPrecondition, Message: fmt.Sprintf("VM %s did not start: %s", rec.id, v.Message)}
		}
		return err
	}
	a.follow(rec)
	return nil
}

// unitActive reports whether a shim runs (or is starting or stopping) the VM.
func (a *Agent) unitActive(ctx context.Context, id string) (bool, error) {
	state, err := a.unitActiveState(ctx, id)
	return isActive(state), err
}

// unitActiveState is the ActiveState of the VM's unit, "" when it has none.
func (a *Agent) unitActiveState(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := a.cfg.Units.State(ctx, id)
	if isNotFound(err) {
		return "", nil // transient units are unloaded once they stop cleanly
	}
	if err != nil {
		return "", err
	}
	return st.ActiveState, nil
}

func isNotFound(err error) bool { return errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) }

func isActive(activeState string) bool {
	switch activeState {
	case "active", "activating", "deactivating", "reloading":
		return true
	}
	return false
}
