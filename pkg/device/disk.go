package device

import (
	"context"
	"fmt"
	"os"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Disk is a disk on an image in the VM's directory, on its bus: a
// virtio-blk device of its own, a scsi-hd on the VM's virtio-scsi
// controller, or an ide-hd on q35's AHCI controller (sata).
type Disk struct {
	name string
	spec vmspec.Disk
}

// Name is the disk's name, also its QEMU id and block node name.
func (d *Disk) Name() string { return d.name }

// Type is always api.DeviceDisk.
func (d *Disk) Type() api.DeviceType { return api.DeviceDisk }

// Bus is the disk's bus, virtio-blk when the spec names none.
func (d *Disk) Bus() api.DiskBus { return d.spec.Bus.OrDefault() }

// Caps says a virtio-blk disk plugs into a free root port and a
// virtio-scsi one onto the controller, but a sata disk cannot: q35's AHCI
// controller has no hot-plug. Each migrates when its image is on the other
// host too (shared storage or a block copy).
func (d *Disk) Caps() Caps { return Caps{Hotplug: d.Bus() != api.DiskBusSATA, Migrate: true} }

// Prepare checks the image before QEMU opens it: inside the VM's
// directory, a plain file of the format the spec names, and a backing
// chain (if any) that stays inside the directory. It then hands the image
// to QEMU's user.
func (d *Disk) Prepare(ctx context.Context, h *Host) error {
	p := d.spec.Path
	if !h.inVMDir(p) {
		return fmt.Errorf("disk %s is outside the VM's directory", p)
	}
	// A link could lead anywhere, and only qemu-img's slow path below
	// would notice: the disk is a plain file.
	if fi, err := os.Lstat(p); err != nil {
		return fmt.Errorf("disk: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("disk %s is not a regular file", p)
	}
	hdr, err := qemuimg.ReadHeader(p, d.spec.Format)
	if err != nil {
		return fmt.Errorf("disk %s: %w", p, err)
	}
	if hdr.References {
		// Only an image that names another file needs qemu-img to prove the
		// whole chain stays inside the VM's directory, or, for a linked
		// clone, inside the image store.
		img := qemuimg.Tool{Binary: h.QEMUImg}
		if _, err := img.CheckChainIn(ctx, p, d.spec.Format, ChainRoots(h.VMDir, h.ImagesDir, d.spec)); err != nil {
			return fmt.Errorf("disk %s: %w", p, err)
		}
	}
	// Only the disk's own image is QEMU's to write: a store image it is
	// backed by stays the agent's, readable by all.
	return h.hand(p)
}

// ChainRoots are the directories a disk's backing chain may use: the VM's
// own, and the image store for a linked clone of a store image. Nothing
// else may back a disk.
func ChainRoots(vmDir, imagesDir string, d vmspec.Disk) []string {
	roots := []string{vmDir}
	if d.Image != "" && d.Clone == api.CloneLinked && imagesDir != "" {
		roots = append(roots, imagesDir)
	}
	return roots
}

// Release has nothing to give back: the image stays the VM's.
func (d *Disk) Release(context.Context) error { return nil }

func (d *Disk) qemu() qemu.Disk {
	return qemu.Disk{ID: d.name, Path: d.spec.Path, Format: d.spec.Format, BootIndex: d.spec.BootIndex,
		Bus: qemu.DiskBus(d.spec.Bus), Cache: qemu.CacheMode(d.spec.Cache), Discard: qemu.DiscardMode(d.spec.Discard)}
}

// Configure adds the disk; QEMU opens the image by its path.
func (d *Disk) Configure(cfg *qemu.Config, _ *FDs) { cfg.Disks = append(cfg.Disks, d.qemu()) }

// Hotplug adds the file and format nodes, then the device: a virtio-blk
// one on port, a scsi-hd on the SCSI controller. For a virtio-scsi disk a
// port means the VM has no controller yet, and it is plugged there first.
// A hot-plugged disk is not bootable until the next start.
func (d *Disk) Hotplug(port string) ([]Command, error) {
	if err := d.refuseSATA(); err != nil {
		return nil, err
	}
	q := d.qemu()
	file, format := q.Blockdevs()
	dev := q.Device(nil)
	var cmds []Command
	switch d.Bus() {
	case api.DiskBusVirtioSCSI:
		if port != "" {
			cmds = append(cmds, Command{Execute: "device_add", Arguments: qemu.SCSIControllerDevice(port)})
		}
	default:
		dev.Bus = port
	}
	return append(cmds,
		Command{Execute: "blockdev-add", Arguments: file},
		Command{Execute: "blockdev-add", Arguments: format},
		Command{Execute: "device_add", Arguments: dev},
	), nil
}

// Unplug removes the device, then its nodes (once DEVICE_DELETED came). A
// virtio-scsi disk leaves its controller, empty, for the next one.
func (d *Disk) Unplug() ([]Command, error) {
	if err := d.refuseSATA(); err != nil {
		return nil, err
	}
	return []Command{deviceDel(d.name), blockdevDel(d.name), blockdevDel(qemu.FileNodeName(d.name))}, nil
}

// refuseSATA is the error of a live change of a sata disk.
func (d *Disk) refuseSATA() error {
	if d.Bus() != api.DiskBusSATA {
		return nil
	}
	return errdefs.FailedPrecondition("disk %s is a sata disk, and q35's AHCI controller cannot hot-plug: add or remove it while the VM is off", d.name)
}
