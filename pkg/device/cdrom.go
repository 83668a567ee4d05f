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

// WithMedium is the same drive holding the ISO at path instead ("" for
// none), as a medium change leaves it.
func (c *CDROM) WithMedium(path string) *CDROM {
	next := *c
	next.spec.Path = path
	return &next
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
	cfg.CDROMs = append(cfg.CDROMs, c.qemuCDROM())
}

// Hotplug refuses: the drive is there from boot or not at all.
func (c *CDROM) Hotplug(string) ([]Command, error) { return nil, notHotpluggable(api.DeviceCDROM) }

// Unplug refuses, as Hotplug does.
func (c *CDROM) Unplug() ([]Command, error) { return nil, notHotpluggable(api.DeviceCDROM) }

// RemoveMedium is the QMP commands that take the drive's medium out of a
// running VM: the tray opens (forced, as a guest may have locked it), the
// medium goes, and its nodes are deleted, so that the next medium can
// take the same node names a cold boot gives it. The tray stays open:
// InsertMedium closes it.
func (c *CDROM) RemoveMedium() []Command { return c.removeMedium(c.spec.Path != "") }

// ClearMedium is RemoveMedium whatever the drive holds, for recovering from
// a change that failed part-way: its node deletions may find no node.
func (c *CDROM) ClearMedium() []Command { return c.removeMedium(true) }

func (c *CDROM) removeMedium(nodes bool) []Command {
	cmds := []Command{
		{Execute: "blockdev-open-tray", Arguments: map[string]any{"id": c.name, "force": true}},
		{Execute: "blockdev-remove-medium", Arguments: map[string]any{"id": c.name}},
	}
	if nodes {
		cmds = append(cmds, blockdevDel(c.name), blockdevDel(qemu.FileNodeName(c.name)))
	}
	return cmds
}

// InsertMedium is the QMP commands that put the drive's ISO into the open
// tray of a running VM's drive, with the nodes a cold boot has (the file
// node and the raw node named as the drive), and close the tray, which
// the guest sees as a media change. A drive without an ISO only closes.
func (c *CDROM) InsertMedium() []Command {
	var cmds []Command
	if c.spec.Path != "" {
		file, format := c.qemuCDROM().Blockdevs()
		cmds = append(cmds,
			Command{Execute: "blockdev-add", Arguments: file},
			Command{Execute: "blockdev-add", Arguments: format},
			Command{Execute: "blockdev-insert-medium", Arguments: map[string]any{"id": c.name, "node-name": c.name}})
	}
	return append(cmds, Command{Execute: "blockdev-close-tray", Arguments: map[string]any{"id": c.name}})
}

func (c *CDROM) qemuCDROM() qemu.CDROM {
	return qemu.CDROM{ID: c.name, Path: c.spec.Path, BootIndex: c.spec.BootIndex}
}
