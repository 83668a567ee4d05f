package device

import (
	"context"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// CDROM is a CD-ROM drive on q35's AHCI controller, with an ISO or empty.
type CDROM struct {
	name string
	spec vmspec.CDROM
}

// NewCDROM is a drive that is not in the spec: an install's own media.
func NewCDROM(name, path string) *CDROM {
	return &CDROM{name: name, spec: vmspec.CDROM{Path: path}}
}

// Name is the drive's name, also its QEMU id.
func (c *CDROM) Name() string { return c.name }

// Type is always api.DeviceCDROM.
func (c *CDROM) Type() api.DeviceType { return api.DeviceCDROM }

// Path is the drive's ISO, or "" for an empty drive.
func (c *CDROM) Path() string { return c.spec.Path }

// Caps says a drive cannot be hot-plugged (AHCI has no hot-plug), but its
// disc changes live and it migrates.
func (c *CDROM) Caps() Caps { return Caps{LiveUpdate: true, Migrate: true} }

// Prepare checks the ISO is there and hands it to QEMU's user when it is
// the VM's own (an answer ISO); shared media, such as an OS ISO, must
// already be readable by that user.
func (c *CDROM) Prepare(_ context.Context, h *Host) error {
	p := c.spec.Path
	if p == "" {
		return nil
	}
	if err := statFile("CD-ROM "+c.name, p); err != nil {
		return err
	}
	if h.inVMDir(p) {
		return h.hand(p)
	}
	return nil
}

// Release has nothing to give back.
func (c *CDROM) Release(context.Context) error { return nil }

// Configure adds the drive, with its disc if it has one.
func (c *CDROM) Configure(cfg *qemu.Config, _ *FDs) {
	cfg.CDROMs = append(cfg.CDROMs, qemu.CDROM{ID: c.name, Path: c.spec.Path, BootIndex: c.spec.BootIndex})
}

// Hotplug refuses: the drive is there from boot or not at all.
func (c *CDROM) Hotplug(string) ([]Command, error) { return nil, notHotpluggable(api.DeviceCDROM) }

// Unplug refuses, as Hotplug does.
func (c *CDROM) Unplug() ([]Command, error) { return nil, notHotpluggable(api.DeviceCDROM) }
