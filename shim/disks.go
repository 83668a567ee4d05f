package shim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// Live disk changes. Each holds mediaMu, as medium changes do, and keeps
// the shim's devices and spec (teardown releases the devices, the next
// change reads them) as QEMU has them.
const (
	// unplugDeadline is how long the guest gets to release a disk; like
	// Incus, device_del is sent again meanwhile, since a guest that was
	// still booting may have missed the first request.
	unplugDeadline = 10 * time.Second
	unplugRetry    = time.Second
	// diskOpTimeout bounds a whole live change but the unplug wait: the
	// image check (qemu-img on a backing chain) and a few QMP commands.
	diskOpTimeout = 30 * time.Second
)

// liveDevices answers FailedPrecondition unless QEMU runs and its devices
// can change: not while it starts, nor once its end is decided.
func (s *Shim) liveDevices() error {
	switch st := s.lifecycleState(); st {
	case stateRunning, stateSuspended, statePaused:
		return nil
	default:
		return errdefs.FailedPrecondition("the VM is %s: its devices change live only while QEMU runs", st)
	}
}

// liveDevice is the running device named name, or nil.
func (s *Shim) liveDevice(name string) device.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.Name() == name {
			return d
		}
	}
	return nil
}

// newLiveDevice is the device of entry d, to add to the running VM as a
// device of type t: refused unless QEMU runs, d is of that type, and the
// VM has no device of its name.
func (s *Shim) newLiveDevice(d api.Device, t api.DeviceType) (device.Device, error) {
	if err := s.liveDevices(); err != nil {
		return nil, err
	}
	if d.Type != t {
		return nil, errdefs.Invalid("device", "must be a %s device, got a %q device", t, d.Type)
	}
	if s.liveDevice(d.Name) != nil {
		return nil, errdefs.AlreadyExists("name", "the VM already has a device %s", d.Name)
	}
	return device.New(d)
}

// liveDeviceOf is the running VM's device of type t named name.
func (s *Shim) liveDeviceOf(name string, t api.DeviceType) (device.Device, error) {
	if err := s.liveDevices(); err != nil {
		return nil, err
	}
	dev := s.liveDevice(name)
	if dev == nil || dev.Type() != t {
		return nil, errdefs.NotFound("the running VM has no %s device %q", t, name)
	}
	return dev, nil
}

// plugRefused is the error of command c of a hot-plug (what) that failed.
func plugRefused(what string, c device.Command, err error) error {
	if e := (*qmp.Error)(nil); errors.As(err, &e) {
		return errdefs.FailedPrecondition("%s: %s refused: %s", what, c.Execute, e.Desc)
	}
	return qmpFailed(err)
}

// keepLive records a device QEMU now has, with its spec entry.
func (s *Shim) keepLive(dev device.Device, entry api.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices = append(s.devices, dev)
	s.spec.Devices = append(s.spec.Devices, entry)
}

// dropLive forgets a device QEMU no longer has, with its spec entry.
func (s *Shim) dropLive(dev device.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices = slices.DeleteFunc(s.devices, func(d device.Device) bool { return d == dev })
	s.spec.RemoveDevice(dev.Name())
}

// queryDisks lists the disks QEMU has open with their images' sizes and
// backing chains; CD-ROMs are left out.
func (s *Shim) queryDisks(ctx context.Context, _ shimapi.DisksRequest) (api.Disks, error) {
	if err := s.liveDevices(); err != nil {
		return api.Disks{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	infos, err := s.qmp.QueryBlock(ctx)
	if err != nil {
		return api.Disks{}, qmpFailed(err)
	}
	out := api.Disks{Disks: []api.Disk{}}
	for _, in := range infos {
		if in.Removable || in.Inserted == nil {
			continue
		}
		name := in.QDev
		if rest, ok := strings.CutPrefix(name, "/machine/peripheral/"); ok {
			name, _, _ = strings.Cut(rest, "/")
		}
		if name == "" {
			name = in.Inserted.NodeName
		}
		img := in.Inserted.Image
		d := api.Disk{Name: name, Path: in.Inserted.File, Format: in.Inserted.Driver,
			VirtualSizeBytes: img.VirtualSize, AllocatedBytes: img.ActualSize, BackingChain: []api.BackingImage{}, Live: true}
		d = d.WithModes(s.specDisk(name))
		for b := img.Backing; b != nil; b = b.Backing {
			d.BackingChain = append(d.BackingChain, api.BackingImage{Path: b.Filename, Format: b.Format, VirtualSizeBytes: b.VirtualSize})
		}
		out.Disks = append(out.Disks, d)
	}
	return out, nil
}

// specDisk is the spec's disk section of the disk named name, or an empty
// one (every mode its default).
func (s *Shim) specDisk(name string) api.DiskDevice {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.spec.Device(name); d != nil && d.Disk != nil {
		return *d.Disk
	}
	return api.DiskDevice{}
}

// addDisk hot-plugs a disk: its image checked and handed to QEMU, its file
// and format nodes, then the device: a virtio-blk one on a free hot-plug
// port, a scsi-hd on the SCSI controller (itself plugged into a free port
// first when the VM has none). A sata disk is refused: AHCI cannot
// hot-plug. A failed step undoes the ones before it.
func (s *Shim) addDisk(ctx context.Context, req shimapi.DiskAddRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	dev, err := s.newLiveDevice(req.Device, api.DeviceDisk)
	if err != nil {
		return shimapi.Empty{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, diskOpTimeout)
	defer cancel()
	disk := dev.(*device.Disk) // a disk entry makes a disk
	port, err := s.diskPort(ctx, disk)
	if err != nil {
		return shimapi.Empty{}, err
	}
	cmds, err := dev.Hotplug(port)
	if err != nil {
		return shimapi.Empty{}, err
	}
	if err := dev.Prepare(ctx, s.deviceHost()); err != nil {
		s.release(ctx, []device.Device{dev})
		return shimapi.Empty{}, errdefs.FailedPrecondition("disk %s: %v", dev.Name(), err)
	}
	// What was added so far, to undo newest first on failure.
	var nodes, devices []string
	for _, c := range cmds {
		err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil)
		if err == nil {
			switch a := c.Arguments.(type) {
			case qemu.Blockdev:
				nodes = append(nodes, a.NodeName)
			case qemu.Device:
				devices = append(devices, a.ID)
			}
			continue
		}
		err = plugRefused("hot-plug disk "+dev.Name(), c, err)
		if uerr := s.unplugAll(ctx, devices); uerr != nil {
			e := *errdefs.As(err)
			e.Message += "; and undoing the hot-plug: " + uerr.Error()
			err = &e
		}
		s.deleteNodes(ctx, nodes)
		s.release(ctx, []device.Device{dev})
		return shimapi.Empty{}, err
	}
	s.keepLive(dev, req.Device)
	where := port
	if disk.Bus() == api.DiskBusVirtioSCSI {
		where = qemu.SCSIBus
		if port != "" {
			where += ", its controller " + qemu.SCSIController + " hot-plugged first on " + port
		}
	}
	s.progress("disk %s hot-plugged on %s (%s)", dev.Name(), where, req.Device.Disk.Path)
	return shimapi.Empty{}, nil
}

// diskPort is the hot-plug port a disk takes: a free one for virtio-blk,
// one for the SCSI controller when a virtio-scsi disk finds none, and
// none for a sata disk (whose hot-plug the disk refuses).
func (s *Shim) diskPort(ctx context.Context, d *device.Disk) (string, error) {
	switch d.Bus() {
	case api.DiskBusSATA:
		return "", nil
	case api.DiskBusVirtioSCSI:
		_, err := s.qmp.QOMList(ctx, "/machine/peripheral/"+qemu.SCSIController)
		var e *qmp.Error
		switch {
		case err == nil:
			return "", nil
		case !errors.As(err, &e):
			return "", qmpFailed(err)
		}
	}
	return s.freeHotplugPort(ctx)
}

// unplugAll unplugs devices newest first, each waited for as a disk's
// unplug is, with a deadline of its own: the request's may be what ended.
func (s *Shim) unplugAll(ctx context.Context, ids []string) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, id := range slices.Backward(ids) {
		if err := s.unplug(ctx, id); err != nil {
			s.log.Warn("unplugging a device again failed", "DEVICE", id, "ERROR", err.Error())
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteNodes removes block nodes newest first, with their own deadline: the
// request's may be what ended. A failure is logged; the rest still go.
func (s *Shim) deleteNodes(ctx context.Context, nodes []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
	defer cancel()
	for _, n := range slices.Backward(nodes) {
		if err := s.qmp.BlockdevDel(ctx, n); err != nil {
			s.log.Warn("deleting a block node failed", "NODE", n, "ERROR", err.Error())
		}
	}
}

// freeHotplugPort is the first reserved hot-plug root port with no device
// on its bus, as QEMU's object tree has it now (a device whose unplug is
// still pending keeps its port). The tree, unlike query-pci, does not wait
// for the guest's firmware to number the buses.
func (s *Shim) freeHotplugPort(ctx context.Context) (string, error) {
	n := 0
	for ; n < qemu.MaxHotplugPorts; n++ {
		id := qemu.HotplugPortID(n)
		// A root port's bus is named by its id.
		props, err := s.qmp.QOMList(ctx, "/machine/peripheral/"+id+"/"+id)
		var e *qmp.Error
		if errors.As(err, &e) {
			break // past the last port
		}
		if err != nil {
			return "", qmpFailed(err)
		}
		if !slices.ContainsFunc(props, func(p qmp.ObjectProperty) bool { return strings.HasPrefix(p.Name, "child[") }) {
			return id, nil
		}
	}
	return "", errdefs.FailedPrecondition("all %d hot-plug ports of the VM are in use; remove a hot-plugged device or add the disk while the VM is off", n)
}

// removeDisk unplugs a disk: device_del, repeated until the guest releases
// it (DEVICE_DELETED) or the deadline passes, then its block nodes. A guest
// that keeps the disk leaves it attached, and the error says so.
func (s *Shim) removeDisk(ctx context.Context, req shimapi.DiskRemoveRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	dev, err := s.liveDeviceOf(req.Name, api.DeviceDisk)
	if err != nil {
		return shimapi.Empty{}, err
	}
	if _, err := dev.Unplug(); err != nil {
		return shimapi.Empty{}, err // a sata disk stays
	}
	if err := s.unplug(ctx, dev.Name()); err != nil {
		return shimapi.Empty{}, err
	}
	s.deleteNodes(ctx, []string{qemu.FileNodeName(dev.Name()), dev.Name()})
	s.dropLive(dev)
	s.release(ctx, []device.Device{dev})
	s.progress("disk %s unplugged", dev.Name())
	return shimapi.Empty{}, nil
}

// unplug asks the guest to release device id until DEVICE_DELETED says it
// did or unplugDeadline passes.
func (s *Shim) unplug(ctx context.Context, id string) error {
	events, unsubscribe := s.qmp.Subscribe(64)
	defer unsubscribe()
	ctx, cancel := context.WithTimeout(ctx, unplugDeadline)
	defer cancel()
	retry := time.NewTicker(unplugRetry)
	defer retry.Stop()
	kept := func(requests int) error {
		return &errdefs.Error{Code: errdefs.CodeDeadlineExceeded,
			Message: fmt.Sprintf("the guest did not release %s within %s (%d unplug requests); it stays attached", id, unplugDeadline, requests)}
	}
	for attempt := 1; ; attempt++ {
		if err := s.qmp.DeviceDel(ctx, id); err != nil {
			var e *qmp.Error
			switch {
			case errors.As(err, &e) && e.Class == "DeviceNotFound":
				return nil // released between the event and now: gone is gone
			case errors.As(err, &e) && strings.Contains(e.Desc, "in the process of unplug"):
				// The first request is still with the guest.
			case errors.As(err, &e):
				return errdefs.FailedPrecondition("unplug %s: %s", id, e.Desc)
			case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
				return kept(attempt)
			default:
				return qmpFailed(err)
			}
		}
		select {
		case ev, open := <-events:
			if !open {
				return errdefs.Unavailable("unplug %s: QEMU went away", id)
			}
			if d, err := ev.DeviceDeleted(); err == nil && d.Device == id {
				return nil
			}
			attempt-- // not ours: wait on without sending again
		case <-retry.C:
		case <-ctx.Done():
			return kept(attempt)
		}
	}
}

// resizeDisk grows a running disk; the guest sees the new size at once.
func (s *Shim) resizeDisk(ctx context.Context, req shimapi.DiskResizeRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	if err := s.liveDevices(); err != nil {
		return shimapi.Empty{}, err
	}
	if dev := s.liveDevice(req.Name); dev == nil || dev.Type() != api.DeviceDisk {
		return shimapi.Empty{}, errdefs.NotFound("the running VM has no disk %q", req.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	disks, err := s.queryDisks(ctx, shimapi.DisksRequest{})
	if err != nil {
		return shimapi.Empty{}, err
	}
	i := slices.IndexFunc(disks.Disks, func(d api.Disk) bool { return d.Name == req.Name })
	if i < 0 {
		return shimapi.Empty{}, errdefs.NotFound("QEMU has no disk %q open", req.Name)
	}
	if old := disks.Disks[i].VirtualSizeBytes; req.SizeBytes < old {
		return shimapi.Empty{}, errdefs.Invalid("sizeGB", "a running VM's disk only grows: %s is %d bytes, asked for %d", req.Name, old, req.SizeBytes)
	}
	if err := s.qmp.BlockResize(ctx, req.Name, req.SizeBytes); err != nil {
		if e := (*qmp.Error)(nil); errors.As(err, &e) {
			return shimapi.Empty{}, errdefs.FailedPrecondition("resize %s: %s", req.Name, e.Desc)
		}
		return shimapi.Empty{}, qmpFailed(err)
	}
	s.mu.Lock()
	if d := s.spec.Device(req.Name); d != nil && d.Disk != nil {
		d.Disk.SizeBytes = req.SizeBytes
	}
	s.mu.Unlock()
	s.progress("disk %s grown to %d bytes", req.Name, req.SizeBytes)
	return shimapi.Empty{}, nil
}
