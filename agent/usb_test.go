package agent

import (
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestUSBAttachAndDetach: on the desktop fixture (a flash drive with a
// serial at 1-1.2, a keyboard at 1-2), USB devices attached to VMs that
// are off are kept in their specs and shown as used; each bad input is
// refused naming its field and changes neither VM; a detach frees the
// device for the other VM.
func TestUSBAttachAndDetach(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	cfg.Sysfs = sysfstest.Build(t, "../pkg/hostusb/testdata/desktop.tree")
	a, _ := b.start(cfg)
	for _, id := range []string{vm1, vm2} {
		if _, err := a.Create(t.Context(), createInput(id, false)); err != nil {
			t.Fatal(err)
		}
	}
	// The serial pins the flash drive to the port it is found on.
	dev, err := a.AttachUSB(t.Context(), vm1, api.AttachUSBRequest{VendorID: "0781", ProductID: "5567", Serial: "4C530001240710115411"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.USBDevice{VendorID: "0781", ProductID: "5567", Serial: "4C530001240710115411", BusPort: "1-1.2"}); dev.Name != "usb0" || *dev.USB != want {
		t.Fatalf("attached %+v %+v", dev, dev.USB)
	}
	if got := lastMessage(t, b, vm1); got != "USB device usb0 attached: 0781:5567 serial 4C530001240710115411 at 1-1.2" {
		t.Errorf("event %q", got)
	}
	if s, err := vmspec.Load(b.layout.SpecFile(vm1)); err != nil || s.Device("usb0") == nil {
		t.Fatalf("stored spec: %v", err)
	}
	if _, err := a.AttachUSB(t.Context(), vm1, api.AttachUSBRequest{BusPort: "1-2", Name: "keyboard"}); err != nil {
		t.Fatal(err)
	}
	usb, err := a.HostUSB()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]string{}
	for _, d := range usb.Devices {
		if d.UsedBy != nil {
			used[d.BusPort] = d.UsedBy.VMID + "/" + d.UsedBy.Device
		}
	}
	if len(used) != 2 || used["1-1.2"] != vm1+"/usb0" || used["1-2"] != vm1+"/keyboard" {
		t.Errorf("host USB users %v", used)
	}

	before := b.footprintOf(vm1) + b.footprintOf(vm2)
	for _, bad := range []struct {
		name    string
		req     api.AttachUSBRequest
		code    errdefs.Code
		field   string
		message string
	}{
		{"vendor id not hex", api.AttachUSBRequest{VendorID: "07g1", ProductID: "5567"}, errdefs.CodeInvalidArgument, "vendorId", "hex"},
		{"product id too short", api.AttachUSBRequest{VendorID: "0781", ProductID: "556"}, errdefs.CodeInvalidArgument, "productId", "hex"},
		{"upper-case id", api.AttachUSBRequest{VendorID: "046D", ProductID: "c31c"}, errdefs.CodeInvalidArgument, "vendorId", "lower-case"},
		{"nothing", api.AttachUSBRequest{}, errdefs.CodeInvalidArgument, "vendorId", "busPort"},
		{"bus-port malformed", api.AttachUSBRequest{BusPort: "1.2"}, errdefs.CodeInvalidArgument, "busPort", "1-1.2"},
		{"bus-port of a root hub", api.AttachUSBRequest{BusPort: "1-0"}, errdefs.CodeInvalidArgument, "busPort", ""},
		{"serial not plugged in", api.AttachUSBRequest{VendorID: "0781", ProductID: "5567", Serial: "nope"}, errdefs.CodeInvalidArgument, "serial", "no device"},
		{"serial at another port", api.AttachUSBRequest{VendorID: "0781", ProductID: "5567", Serial: "4C530001240710115411", BusPort: "1-3"},
			errdefs.CodeInvalidArgument, "busPort", "plugged into 1-1.2"},
		{"held by another VM, by ids", api.AttachUSBRequest{VendorID: "0781", ProductID: "5567"}, errdefs.CodeInvalidArgument, "vendorId", "already passed through to VM " + vm1},
		{"held by another VM, by port", api.AttachUSBRequest{BusPort: "1-1.2"}, errdefs.CodeInvalidArgument, "busPort", "already passed through to VM " + vm1},
		{"the same model, not plugged in", api.AttachUSBRequest{VendorID: "046d", ProductID: "c31c"}, errdefs.CodeInvalidArgument, "vendorId", "as keyboard"},
		{"a bad name", api.AttachUSBRequest{VendorID: "1050", ProductID: "0407", Name: "Key-1"}, errdefs.CodeInvalidArgument, "name", "Key-1"},
		{"a taken name", api.AttachUSBRequest{VendorID: "1050", ProductID: "0407", Name: "net0"}, errdefs.CodeAlreadyExists, "name", "net0"},
	} {
		_, err := a.AttachUSB(t.Context(), vm2, bad.req)
		if e := errdefs.As(err); e == nil || e.Code != bad.code || e.Field != bad.field || !strings.Contains(e.Message, bad.message) {
			t.Errorf("%s: %v, want %s naming %q and saying %q", bad.name, err, bad.code, bad.field, bad.message)
		}
		if after := b.footprintOf(vm1) + b.footprintOf(vm2); after != before {
			t.Fatalf("%s changed a spec or a log", bad.name)
		}
	}
	if err := a.DetachUSB(t.Context(), vm1, "net0"); errdefs.As(err) == nil || errdefs.As(err).Field != "dev" {
		t.Errorf("detach a NIC: %v, want NotFound of dev", err)
	}

	if err := a.DetachUSB(t.Context(), vm1, "usb0"); err != nil {
		t.Fatal(err)
	}
	if got := lastMessage(t, b, vm1); !strings.HasPrefix(got, "USB device usb0 detached") {
		t.Errorf("event %q", got)
	}
	if _, err := a.AttachUSB(t.Context(), vm2, api.AttachUSBRequest{BusPort: "1-1.2"}); err != nil {
		t.Errorf("attach the freed flash drive to vm2: %v", err)
	}
}
