package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
)

// qemuUSB is the running VM's USB devices as its QEMU has them.
func (b *bed) qemuUSB(t *testing.T, id string) shimapi.USBState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh := b.shim(id)
	defer sh.Close()
	st, err := shimclient.Call(ctx, sh, shimapi.RouteUSB, shimapi.USBRequest{})
	if err != nil {
		t.Fatalf("query-usb: %v", err)
	}
	return st
}

// Acceptance 5: a USB device attached to a running VM is in its QEMU (the
// usb-host device on the xHCI bus, and HMP info usb lists it); a detach
// takes it out again; the spec follows both, and the VM keeps its QEMU.
// This host has no USB bus, so the device is one that is not plugged in:
// QEMU takes it and waits for it, which is what is checked here.
func TestUSBAttachLive(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "usb")
	pid := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	ctx, cancel := diskCtx()
	defer cancel()

	if allow := b.unitProperty(t, vm.ID, "DeviceAllow"); !strings.Contains(allow, "char-usb_device rw") {
		t.Errorf("unit DeviceAllow %q, want char-usb_device rw: a device attached live needs it", allow)
	}
	for _, bad := range []struct {
		req   api.AttachUSBRequest
		field string
	}{
		{api.AttachUSBRequest{VendorID: "12g4", ProductID: "5678"}, "vendorId"},
		{api.AttachUSBRequest{VendorID: "1234", ProductID: "56"}, "productId"},
		{api.AttachUSBRequest{BusPort: "1-"}, "busPort"},
		{api.AttachUSBRequest{VendorID: "1234", ProductID: "5678", Serial: "ABC"}, "serial"},
	} {
		if _, err := b.client.AttachUSB(ctx, vm.ID, bad.req); !isAPIError(err, errdefs.CodeInvalidArgument, bad.field) {
			t.Errorf("attach %+v: %v, want InvalidArgument of %s", bad.req, err, bad.field)
		}
	}

	dev, err := b.client.AttachUSB(ctx, vm.ID, api.AttachUSBRequest{VendorID: "1234", ProductID: "5678"})
	if err != nil {
		t.Fatalf("attach USB: %v", err)
	}
	if dev.Name != "usb0" || dev.USB == nil || dev.USB.VendorID != "1234" || dev.USB.ProductID != "5678" {
		t.Fatalf("attached %+v, want usb0 1234:5678", dev)
	}
	st := b.qemuUSB(t, vm.ID)
	if len(st.Devices) != 1 || st.Devices[0] != (shimapi.USBDeviceState{Name: "usb0", Driver: "usb-host"}) {
		t.Errorf("QEMU's USB devices %+v, want usb0, a usb-host with no host device attached", st.Devices)
	}
	if !strings.Contains(st.InfoUSB, "ID: usb0") {
		t.Errorf("info usb:\n%s\nwant usb0 there", st.InfoUSB)
	}
	got := b.waitStatus(t, vm.ID, api.StatusRunning, "")
	if !slices.ContainsFunc(got.Devices, func(d api.Device) bool { return d.Name == "usb0" && d.USB != nil }) {
		t.Errorf("VM devices %+v, want usb0 in the spec", got.Devices)
	}
	t.Run("GuestSeesDevice", func(t *testing.T) {
		t.Skip("this host has no USB device to pass through, so the guest's side (lsusb) is not proven here")
	})

	if err := b.client.DetachUSB(ctx, vm.ID, "usb0"); err != nil {
		t.Fatalf("detach USB: %v", err)
	}
	st = b.qemuUSB(t, vm.ID)
	if len(st.Devices) != 0 || strings.Contains(st.InfoUSB, "usb0") {
		t.Errorf("after the detach: QEMU's USB devices %+v, info usb:\n%s\nwant usb0 gone", st.Devices, st.InfoUSB)
	}
	got = b.waitStatus(t, vm.ID, api.StatusRunning, "")
	if got.QEMUPID != pid || slices.ContainsFunc(got.Devices, func(d api.Device) bool { return d.Name == "usb0" }) {
		t.Errorf("after the detach: qemu pid %d (was %d), devices %+v", got.QEMUPID, pid, got.Devices)
	}
	if err := b.client.DetachUSB(ctx, vm.ID, "usb0"); !isAPIError(err, errdefs.CodeNotFound, "dev") {
		t.Errorf("second detach: %v, want NotFound of dev", err)
	}
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +USB device usb0 plugged in`, `^progress +USB device usb0 unplugged`)
}
