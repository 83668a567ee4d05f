package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// cleanupStepTimeout bounds each step of Cleanup that talks to the kernel.
const cleanupStepTimeout = 15 * time.Second

// CleanupConfig is what `infinivirt-shim cleanup` needs. systemd runs it as
// the unit's ExecStopPost, after the shim and QEMU are gone however they
// ended, and passes how the main process ended in the environment.
type CleanupConfig struct {
	VMID           string
	Layout         vmspec.Layout
	Logger         *slog.Logger
	Firewall       shimapi.FirewallMode
	FirewallReject bool
	// ServiceResult, ExitCode and ExitStatus are systemd's $SERVICE_RESULT,
	// $EXIT_CODE and $EXIT_STATUS.
	ServiceResult, ExitCode, ExitStatus string
	// Sysfs is where managed PCI devices go back to their drivers; the
	// zero Tree is the host's /sys.
	Sysfs sysfs.Tree
}

// Cleanup removes what a shim may have left: its VM's firewall rules, the
// TAP of each of its NICs, managed PCI devices on vfio-pci (given back to
// their drivers), its runtime directory.
// If the shim itself died before recording how the VM ended, it records
// that the shim was lost. It is idempotent and safe to run at any time.
func Cleanup(ctx context.Context, c CleanupConfig) error {
	if !vmspec.ValidID(c.VMID) {
		// It names the directory removed below.
		return fmt.Errorf("cleanup: %q is not a VM id", c.VMID)
	}
	log := c.Logger.With(logging.KeyVM, c.VMID)
	var errs []error
	// systemd waits for ExecStopPost: each kernel round trip gets a deadline.
	kctx, cancel := context.WithTimeout(ctx, cleanupStepTimeout)
	err := removeFirewall(kctx, c.Firewall, c.FirewallReject, c.VMID)
	cancel()
	if err != nil {
		errs = append(errs, fmt.Errorf("remove firewall rules: %w", err))
	}
	for _, tap := range c.taps(log) {
		kctx, cancel = context.WithTimeout(ctx, cleanupStepTimeout)
		err = netdev.RemoveTAP(kctx, tap)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove tap %s: %w", tap, err))
		}
	}
	// After the TAPs: a device that will not leave vfio-pci must not keep
	// the rest from going.
	kctx, cancel = context.WithTimeout(ctx, cleanupStepTimeout)
	err = device.RestorePCIDrivers(kctx, c.Sysfs, c.Layout.RuntimeDir(c.VMID))
	cancel()
	if err != nil {
		errs = append(errs, fmt.Errorf("give PCI devices back to their drivers: %w", err))
	}
	if err := removeRuntimeDir(c.Layout.RuntimeDir(c.VMID)); err != nil {
		errs = append(errs, fmt.Errorf("remove runtime dir: %w", err))
	}
	if err := recordShimLost(ctx, c); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("cleanup incomplete", "ERROR", err.Error())
		return err
	}
	log.Info("cleanup done", "SERVICE_RESULT", c.ServiceResult, "EXIT_CODE", c.ExitCode, "EXIT_STATUS", c.ExitStatus)
	return nil
}

// removeRuntimeDir removes a VM's runtime directory, unless managed PCI
// devices are still to be given back to their drivers: their records
// then stay, alone, for the next cleanup (and the next start keeps them,
// as they name the host's own drivers).
func removeRuntimeDir(dir string) error {
	records, err := device.PCIDriverRecords(dir)
	if err != nil || len(records) == 0 {
		return errors.Join(err, os.RemoveAll(dir))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !slices.Contains(records, p) {
			errs = append(errs, os.RemoveAll(p))
		}
	}
	return errors.Join(append(errs, fmt.Errorf("kept %s: the drivers of %d PCI devices are still to be given back", dir, len(records)))...)
}

// taps are the TAP names of every NIC the spec names. The primary NIC's is
// always there: a spec that cannot be read still leaves the one TAP every
// VM has to remove.
func (c CleanupConfig) taps(log *slog.Logger) []string {
	names := []string{netdev.TapName(c.VMID, netdev.PrimaryNIC)}
	spec, err := vmspec.Load(c.Layout.SpecFile(c.VMID))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the spec; removing the primary NIC's TAP only", "ERROR", err.Error())
		}
		return names
	}
	for _, nic := range spec.NICNames() {
		if tap := netdev.TapName(c.VMID, nic); !slices.Contains(names, tap) {
			names = append(names, tap)
		}
	}
	return names
}

// recordShimLost appends an error entry when the log's last status still
// says the VM is up: the shim died without writing its final status.
func recordShimLost(ctx context.Context, c CleanupConfig) error {
	path := c.Layout.EventsFile(c.VMID)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // the VM was deleted, or never started
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, path, c.VMID)
	if err != nil {
		return fmt.Errorf("record shim exit: %w", err)
	}
	defer l.Close()
	last, ok, err := eventlog.Last(path, api.Event.IsStatus)
	if err != nil || !ok || last.Status.Terminal() {
		return err
	}
	msg := fmt.Sprintf("the shim ended without recording the VM's end (systemd: result %s, %s %s)",
		c.ServiceResult, c.ExitCode, c.ExitStatus)
	_, err = l.Append(api.Event{Type: api.EventStatus, Status: api.StatusError, Reason: api.ReasonShimLost, Message: msg})
	return err
}
