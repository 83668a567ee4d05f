package agent

import (
	"context"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/hostusb"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A VM's host USB devices are attached and detached running or off: live
// on the xHCI controller through the shim (diskShimCall's deadline covers
// an unplug's wait), and in the spec either way.
// Every claim is checked against the other VMs' entries under usbMu, so
// two VMs never take one device at once.

// usbHolder is a VM's USB entry and the host devices it stands for.
type usbHolder struct {
	user   api.DeviceUser
	filter hostusb.Filter
}

// usbHolders are the USB entries of every VM the agent holds but vmID.
func (a *Agent) usbHolders(vmID string) []usbHolder {
	var out []usbHolder
	for _, s := range a.allSpecs() {
		if s.ID == vmID {
			continue
		}
		for _, d := range s.USBs() {
			out = append(out, usbHolder{user: api.DeviceUser{VMID: s.ID, VMName: s.Name, Device: d.Name}, filter: device.USBFilter(*d.USB)})
		}
	}
	return out
}

// usbConflict is the other VM's entry that takes what f stands for: a
// plugged-in device both match, or, for a device not plugged in, the
// same model or the same port.
func usbConflict(f hostusb.Filter, devs []hostusb.Device, holders []usbHolder) *api.DeviceUser {
	for _, h := range holders {
		for _, d := range devs {
			if f.Match(d) && h.filter.Match(d) {
				return &h.user
			}
		}
		sameModel := f.VendorID != 0 && f.VendorID == h.filter.VendorID && f.ProductID == h.filter.ProductID
		samePort := f.BusPort != "" && f.BusPort == h.filter.BusPort
		if (sameModel || samePort) && f.Overlaps(h.filter) {
			return &h.user
		}
	}
	return nil
}

// usbEntry is the spec entry an attach asks for, checked.
func usbEntry(req api.AttachUSBRequest) (api.USBDevice, error) {
	u := api.USBDevice{VendorID: req.VendorID, ProductID: req.ProductID, Serial: req.Serial, BusPort: req.BusPort}
	if err := vmspec.CheckUSB("", &u); err != nil {
		return u, err
	}
	if req.Name != "" {
		if err := vmspec.CheckDeviceName("name", req.Name); err != nil {
			return u, err
		}
	}
	return u, nil
}

// AttachUSB passes a host USB device through to a VM: at once on its
// USB controller while it runs, at its next start otherwise.
func (a *Agent) AttachUSB(ctx context.Context, id string, req api.AttachUSBRequest) (api.Device, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Device{}, err
	}
	u, err := usbEntry(req)
	if err != nil {
		return api.Device{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Device{}, err
	}
	defer unlock()
	spec := rec.currentSpec()
	name := req.Name
	if name == "" {
		name = spec.FreeName(api.DeviceUSB)
	} else if spec.Device(name) != nil {
		return api.Device{}, errdefs.AlreadyExists("name", "the VM already has a device %q", name)
	}
	live := shimRuns(rec)
	if live && !spec.HasUSBController() {
		return api.Device{}, errdefs.FailedPrecondition("VM %s has no USB controller: one is added at boot when the VM has a display or a USB device; attach the device while the VM is off, then start it", id)
	}
	a.usbMu.Lock()
	defer a.usbMu.Unlock()
	devs, err := hostusb.List(a.cfg.Sysfs, nil)
	if err != nil {
		return api.Device{}, errdefs.Internal("read the host's USB devices: %v", err)
	}
	if u.Serial != "" {
		if u, err = pinSerial(u, devs); err != nil {
			return api.Device{}, err
		}
	}
	if h := usbConflict(device.USBFilter(u), devs, a.usbHolders(id)); h != nil {
		field := "busPort"
		if u.VendorID != "" {
			field = "vendorId"
		}
		return api.Device{}, errdefs.Invalid(field, "the USB device %s is already passed through to VM %s (%s) as %s; detach it there first", describeUSB(u), h.VMID, h.VMName, h.Device)
	}
	dev := vmspec.NewDevice(name, u)
	ns := spec.Clone()
	ns.AddDevice(dev)
	if err := ns.Validate(); err != nil {
		return api.Device{}, errdefs.Invalid("name", "the VM cannot take another USB device: %s", errdefs.As(err).Message)
	}
	if live {
		if err := diskShimCall(ctx, a, id, shimapi.RouteUSBAdd, shimapi.USBAddRequest{Device: dev}); err != nil {
			return api.Device{}, err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.AddDevice(dev); return nil }); err != nil {
		if live {
			if uerr := diskShimCall(context.WithoutCancel(ctx), a, id, shimapi.RouteUSBRemove, shimapi.USBRemoveRequest{Name: name}); uerr != nil {
				return api.Device{}, errdefs.Internal("%v; and unplugging USB device %s again failed: %v", err, name, uerr)
			}
		}
		return api.Device{}, err
	}
	if !live {
		a.recordOffline(ctx, rec, "USB device %s attached: %s", name, describeUSB(u))
	}
	a.sync.Resync(id)
	a.log.Info("USB device attached", logging.KeyVM, id, "DEVICE", name, "USB", describeUSB(u), "LIVE", live)
	return dev, nil
}

// pinSerial finds the plugged-in device of the entry's model with its
// serial, and records where it is.
func pinSerial(u api.USBDevice, devs []hostusb.Device) (api.USBDevice, error) {
	f := device.USBFilter(u)
	f.BusPort = ""
	for _, d := range devs {
		if f.Match(d) {
			if u.BusPort != "" && u.BusPort != d.BusPort {
				return u, errdefs.Invalid("busPort", "the device %s:%s with serial %q is plugged into %s, not %s", u.VendorID, u.ProductID, u.Serial, d.BusPort, u.BusPort)
			}
			u.BusPort = d.BusPort
			return u, nil
		}
	}
	return u, errdefs.Invalid("serial", "no device %s:%s with serial %q is plugged into the host (GET /v1/host/usb lists them)", u.VendorID, u.ProductID, u.Serial)
}

func describeUSB(u api.USBDevice) string {
	s := u.VendorID + ":" + u.ProductID
	if u.VendorID == "" {
		s = "any device"
	}
	if u.Serial != "" {
		s += " serial " + u.Serial
	}
	if u.BusPort != "" {
		s += " at " + u.BusPort
	}
	return s
}

// DetachUSB takes the USB device dev off a VM, unplugging it first while
// the VM runs; the host keeps the device.
func (a *Agent) DetachUSB(ctx context.Context, id, dev string) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	if _, err := usbOf(rec.currentSpec(), dev); err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	u, err := usbOf(rec.currentSpec(), dev)
	if err != nil {
		return err
	}
	kept := vmspec.NewDevice(dev, *u)
	live := shimRuns(rec)
	if live {
		if err := diskShimCall(ctx, a, id, shimapi.RouteUSBRemove, shimapi.USBRemoveRequest{Name: dev}); err != nil {
			return err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.RemoveDevice(dev); return nil }); err != nil {
		if live {
			if perr := diskShimCall(context.WithoutCancel(ctx), a, id, shimapi.RouteUSBAdd, shimapi.USBAddRequest{Device: kept}); perr != nil {
				return errdefs.Internal("%v; and plugging USB device %s back failed: %v", err, dev, perr)
			}
		}
		return err
	}
	if !live {
		a.recordOffline(ctx, rec, "USB device %s detached: %s", dev, describeUSB(*u))
	}
	a.sync.Resync(id)
	a.log.Info("USB device detached", logging.KeyVM, id, "DEVICE", dev, "LIVE", live)
	return nil
}

// usbOf is the VM's USB device named dev; any other name is NotFound of
// the path's dev, naming the USB devices there are.
func usbOf(s *vmspec.Spec, dev string) (*api.USBDevice, error) {
	d := s.Device(dev)
	if d == nil || d.Type != api.DeviceUSB || d.USB == nil {
		names := []string{}
		for _, u := range s.USBs() {
			names = append(names, u.Name)
		}
		e := errdefs.NotFound("VM %s has no USB device %q; its USB devices are %v", s.ID, dev, names)
		e.Field = "dev"
		return nil, e
	}
	return d.USB, nil
}

// usbUser is the VM entry that holds host device d, if any.
func usbUser(d hostusb.Device, holders []usbHolder) *api.DeviceUser {
	for _, h := range holders {
		if h.filter.Match(d) {
			return &h.user
		}
	}
	return nil
}
