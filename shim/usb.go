package shim

import (
	"context"
	"errors"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// Live USB changes hold mediaMu, as the disks' do, and keep the shim's
// devices and spec as QEMU has them.

// addUSB plugs a host USB device into the xHCI controller. QEMU's
// usb-host takes a device that is not plugged in yet and waits for it.
func (s *Shim) addUSB(ctx context.Context, req shimapi.USBAddRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	dev, err := s.newLiveDevice(req.Device, api.DeviceUSB)
	if err != nil {
		return shimapi.Empty{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, diskOpTimeout)
	defer cancel()
	if err := s.checkUSBController(ctx); err != nil {
		return shimapi.Empty{}, err
	}
	if err := dev.Prepare(ctx, s.deviceHost()); err != nil {
		return shimapi.Empty{}, errdefs.FailedPrecondition("USB device %s: %v", dev.Name(), err)
	}
	cmds, err := dev.Hotplug("")
	if err != nil {
		return shimapi.Empty{}, err
	}
	for _, c := range cmds {
		if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
			return shimapi.Empty{}, plugRefused("plug USB device "+dev.Name(), c, err)
		}
	}
	s.keepLive(dev, req.Device)
	s.progress("USB device %s plugged in", dev.Name())
	return shimapi.Empty{}, nil
}

// checkUSBController answers FailedPrecondition when QEMU has no xHCI
// controller: one is added at boot only, for a display or a USB device.
func (s *Shim) checkUSBController(ctx context.Context) error {
	_, err := s.qmp.QOMList(ctx, "/machine/peripheral/"+qemu.USBController)
	var e *qmp.Error
	switch {
	case errors.As(err, &e):
		return errdefs.FailedPrecondition("the VM has no USB controller: it gets one at boot when it has a display or a USB device; attach the device while the VM is off, then start it")
	case err != nil:
		return qmpFailed(err)
	}
	return nil
}

// removeUSB unplugs a USB device: device_del, until DEVICE_DELETED.
func (s *Shim) removeUSB(ctx context.Context, req shimapi.USBRemoveRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	dev, err := s.liveDeviceOf(req.Name, api.DeviceUSB)
	if err != nil {
		return shimapi.Empty{}, err
	}
	if err := s.unplug(ctx, dev.Name()); err != nil {
		return shimapi.Empty{}, err
	}
	s.dropLive(dev)
	s.release(ctx, []device.Device{dev})
	s.progress("USB device %s unplugged", dev.Name())
	return shimapi.Empty{}, nil
}

// queryUSB reads each USB device of the running VM from QEMU's object
// tree, and QEMU's own listing of its USB bus.
func (s *Shim) queryUSB(ctx context.Context, _ shimapi.USBRequest) (shimapi.USBState, error) {
	if err := s.liveDevices(); err != nil {
		return shimapi.USBState{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	out := shimapi.USBState{Devices: []shimapi.USBDeviceState{}}
	s.mu.Lock()
	var names []string
	for _, d := range s.devices {
		if d.Type() == api.DeviceUSB {
			names = append(names, d.Name())
		}
	}
	s.mu.Unlock()
	for _, n := range names {
		st := shimapi.USBDeviceState{Name: n}
		path := "/machine/peripheral/" + n
		if err := s.qmp.QOMGet(ctx, path, "type", &st.Driver); err != nil {
			var e *qmp.Error
			if errors.As(err, &e) {
				continue // not in QEMU (yet)
			}
			return out, qmpFailed(err)
		}
		if err := s.qmp.QOMGet(ctx, path, "attached", &st.Attached); err != nil {
			return out, qmpFailed(err)
		}
		out.Devices = append(out.Devices, st)
	}
	info, err := s.qmp.HumanMonitor(ctx, "info usb")
	if err != nil {
		return out, qmpFailed(err)
	}
	out.InfoUSB = info
	return out, nil
}
