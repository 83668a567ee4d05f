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
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A VM's disks after create: list, add, remove, grow. While the VM runs
// each change is live, through its shim (which records the event); while
// it is off the spec changes and qemu-img does the image's part (and the
// agent records the event). Either way the spec is saved last and a
// failure undoes what was done before it.

const (
	// diskImageTimeout bounds one qemu-img call on a disk's metadata.
	diskImageTimeout = time.Minute
	// diskShimTimeout bounds a live disk change: the shim's own steps
	// (the image check, QMP, an unplug's 10 s wait) fit well inside.
	diskShimTimeout = 45 * time.Second
)

// diskShimCall asks the VM's shim for a live disk change, with a deadline
// that leaves room for the guest to release a disk.
func diskShimCall[Req any](ctx context.Context, a *Agent, id string, route shimapi.Route[Req, shimapi.Empty], req Req) error {
	ctx, cancel := context.WithTimeout(ctx, diskShimTimeout)
	defer cancel()
	sh := a.shim(id)
	defer sh.Close()
	_, err := shimclient.Call(ctx, sh, route, req)
	return err
}

// errNoDisk is the error of a disk name the VM does not have.
func errNoDisk(s *vmspec.Spec, name string) error {
	var names []string
	for _, d := range s.Disks() {
		names = append(names, d.Name)
	}
	return &errdefs.Error{Code: errdefs.CodeNotFound, Field: "disk",
		Message: fmt.Sprintf("VM %s has no disk %q; its disks are %v", s.ID, name, names)}
}

// specDisk is the VM's disk named name.
func specDisk(s *vmspec.Spec, name string) (*vmspec.Device, error) {
	d := s.Device(name)
	if d == nil || d.Type != api.DeviceDisk || d.Disk == nil {
		return nil, errNoDisk(s, name)
	}
	return d, nil
}

// shimRuns reports whether the VM's shim runs, so that a change must be live.
func shimRuns(rec *record) bool { return !rec.currentStatus().Terminal() }

func (a *Agent) qemuImg() *qemuimg.Tool {
	return &qemuimg.Tool{Binary: a.cfg.QEMUImg, Timeout: diskImageTimeout}
}

// Disks lists a VM's disks with their images: from QEMU while the VM runs,
// from qemu-img otherwise (or while QEMU is not ready yet).
func (a *Agent) Disks(ctx context.Context, id string) (api.Disks, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Disks{}, err
	}
	spec := rec.currentSpec()
	if shimRuns(rec) {
		live, err := ShimCall(ctx, a, id, shimapi.RouteDisks, shimapi.DisksRequest{})
		switch {
		case err == nil:
			return mergeLive(spec, live), nil
		case errdefs.As(err).Code != errdefs.CodeFailedPrecondition && errdefs.As(err).Code != errdefs.CodeUnavailable:
			return api.Disks{}, err
		}
	}
	out := api.Disks{Disks: []api.Disk{}}
	for _, d := range spec.Disks() {
		disk, err := a.imageDisk(ctx, spec, d)
		if err != nil {
			return api.Disks{}, err
		}
		out.Disks = append(out.Disks, disk)
	}
	return out, nil
}

// specView is a disk as its spec entry has it, before its image is read.
func specView(d *vmspec.Device) api.Disk {
	v := api.Disk{Name: d.Name, Path: d.Disk.Path, Format: d.Disk.Format,
		BootIndex: d.Disk.BootIndex, VirtualSizeBytes: d.Disk.SizeBytes, BackingChain: []api.BackingImage{},
		Image: d.Disk.Image, Clone: d.Disk.Clone}
	return v.WithModes(*d.Disk)
}

// imageDisk reads a disk's image and its backing chain with qemu-img,
// which refuses a chain that leaves the VM's directory. A running QEMU
// may hold the image: it is read shared.
func (a *Agent) imageDisk(ctx context.Context, spec *vmspec.Spec, d *vmspec.Device) (api.Disk, error) {
	out := specView(d)
	roots := device.ChainRoots(a.cfg.Layout.VMDir(spec.ID), a.cfg.Layout.ImagesDir(), *d.Disk)
	chain, err := a.qemuImg().CheckChainIn(ctx, d.Disk.Path, d.Disk.Format, roots, qemuimg.ForceShare())
	if err != nil {
		return out, errdefs.Internal("disk %s: %v", d.Name, err)
	}
	out.VirtualSizeBytes, out.AllocatedBytes = chain[0].VirtualSize, chain[0].ActualSize
	for _, b := range chain[1:] {
		out.BackingChain = append(out.BackingChain, api.BackingImage{Path: b.Filename, Format: b.Format, VirtualSizeBytes: b.VirtualSize})
	}
	return out, nil
}

// mergeLive puts QEMU's numbers on the spec's disks, in the spec's order.
func mergeLive(spec *vmspec.Spec, live api.Disks) api.Disks {
	out := api.Disks{Disks: []api.Disk{}}
	for _, d := range spec.Disks() {
		v := specView(d)
		if i := slices.IndexFunc(live.Disks, func(l api.Disk) bool { return l.Name == d.Name }); i >= 0 {
			l := live.Disks[i]
			v.VirtualSizeBytes, v.AllocatedBytes, v.BackingChain, v.Live = l.VirtualSizeBytes, l.AllocatedBytes, l.BackingChain, true
		}
		out.Disks = append(out.Disks, v)
	}
	return out
}

// checkAddDisk checks what a request can be checked for before the lock.
func checkAddDisk(req api.AddDiskRequest) (int64, error) {
	if req.Name != "" {
		if err := vmspec.CheckDeviceName("name", req.Name); err != nil {
			return 0, err
		}
	}
	size, err := vmspec.DiskBytes("sizeGB", req.SizeGB)
	if err != nil {
		return 0, err
	}
	if err := vmspec.CheckDiskModes("", req.Bus, req.Cache, req.Discard); err != nil {
		return 0, err
	}
	if req.BootOrder < 0 || req.BootOrder > 99 {
		return 0, errdefs.Invalid("bootOrder", "must be between 1 and 99, or 0 for not bootable, got %d", req.BootOrder)
	}
	return size, nil
}

// errSATALive is the error of a sata disk added to or removed from a
// running VM: q35's AHCI controller has no hot-plug.
func errSATALive(id, what string) error {
	return errdefs.FailedPrecondition("a sata disk cannot be %s while VM %s runs: q35's AHCI controller has no hot-plug; power the VM off first, or use bus virtio-scsi or virtio-blk", what, id)
}

// newDisk is the spec entry of a disk to add: the request's name or the
// lowest free diskN (a name whose image was kept by an earlier remove is
// not free), its image path in the VM's directory.
func (a *Agent) newDisk(spec *vmspec.Spec, req api.AddDiskRequest, size int64) (vmspec.Device, error) {
	l := a.cfg.Layout
	name := req.Name
	if name == "" {
		var kept []string
		for {
			name = spec.FreeName(api.DeviceDisk, kept...)
			if _, err := os.Lstat(l.DiskImagePath(spec.ID, name, qemuimg.FormatQCOW2)); errors.Is(err, os.ErrNotExist) {
				break
			}
			kept = append(kept, name)
		}
	} else if spec.Device(name) != nil {
		return vmspec.Device{}, errdefs.AlreadyExists("name", "VM %s already has a device %s", spec.ID, name)
	}
	if req.BootOrder != 0 {
		for _, d := range spec.Devices {
			if (d.Disk != nil && d.Disk.BootIndex == req.BootOrder) || (d.CDROM != nil && d.CDROM.BootIndex == req.BootOrder) {
				return vmspec.Device{}, errdefs.Invalid("bootOrder", "boot index %d is already %s's", req.BootOrder, d.Name)
			}
		}
	}
	if req.Bus == api.DiskBusSATA {
		if err := ahciFull(spec); err != nil {
			return vmspec.Device{}, err
		}
	}
	dev := vmspec.NewDevice(name, vmspec.Disk{
		Path: l.DiskImagePath(spec.ID, name, qemuimg.FormatQCOW2), Format: qemuimg.FormatQCOW2, SizeBytes: size, BootIndex: req.BootOrder,
		Bus: req.Bus, Cache: req.Cache, Discard: req.Discard,
	})
	if _, err := os.Lstat(dev.Disk.Path); err == nil {
		return dev, errdefs.AlreadyExists("name", "%s already exists (the image of a removed disk is kept unless deleteImage was set)", dev.Disk.Path)
	}
	ns := spec.Clone()
	ns.AddDevice(dev)
	if err := ns.Validate(); err != nil {
		// What a single disk can break: the number of devices.
		return dev, errdefs.Invalid("name", "the VM cannot take another disk: %s", errdefs.As(err).Message)
	}
	// Hot-plugged or not, the disk takes a root port of its own at the
	// next cold boot.
	if err := device.CheckRootBus(ns); err != nil {
		return dev, errdefs.FailedPrecondition("VM %s cannot take another disk: %s", spec.ID, errdefs.As(err).Message)
	}
	return dev, nil
}

// AddDisk adds a new, empty, thin qcow2 disk to a VM. The image is created
// first, so a request that cannot be met fails before anything changes;
// a running VM gets the disk at once on a free hot-plug port.
func (a *Agent) AddDisk(ctx context.Context, id string, req api.AddDiskRequest) (api.Disk, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Disk{}, err
	}
	size, err := checkAddDisk(req)
	if err != nil {
		return api.Disk{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Disk{}, err
	}
	defer unlock()
	spec := rec.currentSpec()
	live := shimRuns(rec)
	if live && req.Bus == api.DiskBusSATA {
		return api.Disk{}, errSATALive(id, "added")
	}
	dev, err := a.newDisk(spec, req, size)
	if err != nil {
		return api.Disk{}, err
	}
	if req.Image != "" {
		// Until the spec holds the disk, no delete may take its image.
		a.img.clone.Lock()
		defer a.img.clone.Unlock()
		if err := a.fromImage(ctx, dev.Disk, req); err != nil {
			return api.Disk{}, err
		}
	}
	if err := a.makeDisk(ctx, dev.Disk); err != nil {
		return api.Disk{}, errdefs.Internal("create the image of disk %s: %v", dev.Name, err)
	}
	removeImage := func() {
		if err := os.Remove(dev.Disk.Path); err != nil {
			a.log.Error("removing a new disk's image failed", logging.KeyVM, id, "DEVICE", dev.Name, "ERROR", err.Error())
		}
	}
	if live {
		if err := diskShimCall(ctx, a, id, shimapi.RouteDiskAdd, shimapi.DiskAddRequest{Device: dev}); err != nil {
			removeImage()
			return api.Disk{}, err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.AddDevice(dev); return nil }); err != nil {
		if live {
			if uerr := diskShimCall(context.WithoutCancel(ctx), a, id, shimapi.RouteDiskRemove, shimapi.DiskRemoveRequest{Name: dev.Name}); uerr != nil {
				return api.Disk{}, errdefs.Internal("%v; and unplugging disk %s again failed: %v (its image %s stays)", err, dev.Name, uerr, dev.Disk.Path)
			}
		}
		removeImage()
		return api.Disk{}, err
	}
	if !live {
		a.recordOffline(ctx, rec, "disk %s added: %d MiB %s at %s", dev.Name, size>>20, dev.Disk.Format, dev.Disk.Path)
	}
	a.sync.Resync(id)
	a.log.Info("disk added", logging.KeyVM, id, "DEVICE", dev.Name, "SIZE_BYTES", size, "LIVE", live)
	return a.diskView(ctx, id, dev.Name), nil
}

// diskView is one disk as Disks lists it, or as its spec entry has it when
// its image cannot be read just now.
func (a *Agent) diskView(ctx context.Context, id, name string) api.Disk {
	rec, err := a.get(id)
	if err != nil {
		return api.Disk{Name: name}
	}
	if all, err := a.Disks(ctx, id); err == nil {
		if i := slices.IndexFunc(all.Disks, func(d api.Disk) bool { return d.Name == name }); i >= 0 {
			return all.Disks[i]
		}
	}
	if d, err := specDisk(rec.currentSpec(), name); err == nil {
		return specView(d)
	}
	return api.Disk{Name: name}
}

// RemoveDisk takes a disk off a VM; its image is deleted only when
// deleteImage is set. A running VM's disk is unplugged first (the guest
// must release it); its only boot device cannot go, nor a VM's last disk.
func (a *Agent) RemoveDisk(ctx context.Context, id, name string, deleteImage bool) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	spec := rec.currentSpec()
	dev, err := specDisk(spec, name)
	if err != nil {
		return err
	}
	if len(spec.Disks()) == 1 {
		return errdefs.FailedPrecondition("disk %s is VM %s's only disk; a VM needs one", name, id)
	}
	live := shimRuns(rec)
	if live && dev.Disk.Bus == api.DiskBusSATA {
		return errSATALive(id, "removed")
	}
	if live && spec.Disks()[0].Name == name {
		return errdefs.FailedPrecondition("disk %s is the running VM %s's system disk, which stays while it runs; power the VM off to remove it", name, id)
	}
	if live && onlyBootDevice(spec, dev) {
		return errdefs.FailedPrecondition("disk %s is the only device the running VM %s boots from; power it off first or give another device a boot order", name, id)
	}
	if live {
		if err := diskShimCall(ctx, a, id, shimapi.RouteDiskRemove, shimapi.DiskRemoveRequest{Name: name}); err != nil {
			return err
		}
	}
	kept := *dev
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.RemoveDevice(name); return nil }); err != nil {
		if live {
			if perr := diskShimCall(context.WithoutCancel(ctx), a, id, shimapi.RouteDiskAdd, shimapi.DiskAddRequest{Device: kept}); perr != nil {
				return errdefs.Internal("%v; and plugging disk %s back failed: %v", err, name, perr)
			}
		}
		return err
	}
	what := "image kept"
	if deleteImage {
		what = "image deleted"
		if err := os.Remove(kept.Disk.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			what = "deleting the image failed: " + err.Error()
			a.log.Error("deleting a removed disk's image failed", logging.KeyVM, id, "DEVICE", name, "ERROR", err.Error())
		}
	}
	if !live {
		a.recordOffline(ctx, rec, "disk %s removed (%s)", name, what)
	}
	a.sync.Resync(id)
	a.log.Info("disk removed", logging.KeyVM, id, "DEVICE", name, "LIVE", live, "IMAGE", what)
	if deleteImage && what != "image deleted" {
		return errdefs.Internal("disk %s was removed from VM %s, but %s (%s stays)", name, id, what, kept.Disk.Path)
	}
	return nil
}

// onlyBootDevice reports whether dev is what the VM boots from and nothing
// else is: no other disk or CD-ROM in the boot order, no kernel of its own.
func onlyBootDevice(s *vmspec.Spec, dev *vmspec.Device) bool {
	if !vmspec.Bootable(dev) || s.Boot != nil {
		return false
	}
	for i := range s.Devices {
		if d := &s.Devices[i]; d.Name != dev.Name && vmspec.Bootable(d) {
			return false
		}
	}
	return true
}

// ResizeDisk sets a disk's size. It grows live on a running VM; shrinking
// needs allowShrink and the VM off, since the data past the new end is lost.
func (a *Agent) ResizeDisk(ctx context.Context, id, name string, req api.ResizeDiskRequest) (api.Disk, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Disk{}, err
	}
	size, err := vmspec.DiskBytes("sizeGB", req.SizeGB)
	if err != nil {
		return api.Disk{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Disk{}, err
	}
	defer unlock()
	dev, err := specDisk(rec.currentSpec(), name)
	if err != nil {
		return api.Disk{}, err
	}
	old := dev.Disk.SizeBytes
	live := shimRuns(rec)
	switch {
	case size == old:
		return a.diskView(ctx, id, name), nil
	case size < old && !req.AllowShrink:
		return api.Disk{}, errdefs.Invalid("sizeGB", "%v GiB would shrink disk %s from %v GiB and lose the data past the new end; set allowShrink, with the VM off",
			req.SizeGB, name, float64(old)/(1<<30))
	case size < old && live:
		return api.Disk{}, errdefs.FailedPrecondition("disk %s of the running VM %s cannot shrink; power the VM off first", name, id)
	}
	if live {
		if err := diskShimCall(ctx, a, id, shimapi.RouteDiskResize, shimapi.DiskResizeRequest{Name: name, SizeBytes: size}); err != nil {
			return api.Disk{}, err
		}
	} else if err := a.qemuImg().Resize(ctx, dev.Disk.Path, dev.Disk.Format, size, size < old); err != nil {
		return api.Disk{}, errdefs.Internal("resize disk %s: %v", name, err)
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.Device(name).Disk.SizeBytes = size; return nil }); err != nil {
		if live {
			// A running disk cannot shrink back; the next save catches up.
			return api.Disk{}, errdefs.Internal("%v; disk %s has already grown to %d bytes in the running VM", err, name, size)
		}
		if rerr := a.qemuImg().Resize(context.WithoutCancel(ctx), dev.Disk.Path, dev.Disk.Format, old, size > old); rerr != nil {
			return api.Disk{}, errdefs.Internal("%v; and resizing disk %s back failed: %v", err, name, rerr)
		}
		return api.Disk{}, err
	}
	if !live {
		a.recordOffline(ctx, rec, "disk %s resized from %d to %d MiB", name, old>>20, size>>20)
	}
	a.sync.Resync(id)
	a.log.Info("disk resized", logging.KeyVM, id, "DEVICE", name, "FROM_BYTES", old, "TO_BYTES", size, "LIVE", live)
	return a.diskView(ctx, id, name), nil
}

// recordOffline records a change of a VM that is off in its event log (a
// running shim records its own); a failure is logged, as the change is done.
func (a *Agent) recordOffline(ctx context.Context, rec *record, format string, args ...any) {
	e := api.Event{Type: api.EventProgress, Message: fmt.Sprintf(format, args...)}
	if err := a.appendEvent(ctx, rec, e); err != nil {
		a.log.Warn("recording an event failed", logging.KeyVM, rec.id, "MESSAGE_DETAIL", e.Message, "ERROR", err.Error())
	}
}
