package hostusb

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/hwids"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
)

func testIDs(t *testing.T) *hwids.DB {
	t.Helper()
	db, err := hwids.Load("../hwids/testdata/usb.ids")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestListDesktop(t *testing.T) {
	root := sysfstest.Build(t, "testdata/desktop.tree")
	got, err := List(root, testIDs(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{BusPort: "1-1", Bus: 1, DevNum: 2, Port: "1", VendorID: 0x05e3, ProductID: 0x0610,
			VendorName: "Genesys Logic, Inc.", ProductName: "Hub", Hub: true},
		{BusPort: "1-1.2", Bus: 1, DevNum: 5, Port: "1.2", VendorID: 0x0781, ProductID: 0x5567,
			VendorName: "SanDisk Corp.", ProductName: "Cruzer Blade", Serial: "4C530001240710115411"},
		{BusPort: "1-2", Bus: 1, DevNum: 3, Port: "2", VendorID: 0x046d, ProductID: 0xc31c,
			VendorName: "Logitech, Inc.", ProductName: "Keyboard K120"},
		// Not in usb.ids: named by its own strings.
		{BusPort: "2-1", Bus: 2, DevNum: 2, Port: "1", VendorID: 0x1050, ProductID: 0x0407,
			VendorName: "Yubico", ProductName: "YubiKey OTP+FIDO+CCID"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// TestListWithoutTheDatabase: without usb.ids, the devices' own strings
// name them.
func TestListWithoutTheDatabase(t *testing.T) {
	got, err := List(sysfstest.Build(t, "testdata/desktop.tree"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[1].VendorName != "SanDisk" || got[2].ProductName != "USB Keyboard" || got[0].VendorName != "GenesysLogic" {
		t.Errorf("got %+v", got)
	}
}

func TestListWithoutAUSBBus(t *testing.T) {
	got, err := List(t.TempDir(), nil)
	if err != nil || got != nil {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestListRefusesABrokenAttribute(t *testing.T) {
	root := sysfstest.Build(t, "testdata/desktop.tree")
	if err := os.WriteFile(filepath.Join(root, "bus/usb/devices/1-2/busnum"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := List(root, nil); err == nil || !strings.Contains(err.Error(), "1-2") || !strings.Contains(err.Error(), "busnum") {
		t.Errorf("got %v, want an error naming the device and attribute", err)
	}
}

func TestPortOrder(t *testing.T) {
	if !reflect.DeepEqual(portNumbers("1.10.2"), []int{1, 10, 2}) {
		t.Error(portNumbers("1.10.2"))
	}
}

// TestThisHost lists this machine's USB devices; a machine without a USB
// bus (many virtual machines) lists none, without an error.
func TestThisHost(t *testing.T) {
	ids, err := (&hwids.File{Path: hwids.DefaultUSBIDs}).DB()
	if err != nil {
		t.Fatal(err)
	}
	devs, err := List(sysfs.Root, ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sysfs.Root, "bus/usb/devices")); err != nil && len(devs) != 0 {
		t.Errorf("no USB bus, yet %d devices", len(devs))
	}
	for _, d := range devs {
		if d.Bus == 0 || d.Port == "" || strings.HasPrefix(d.BusPort, "usb") {
			t.Errorf("device %+v", d)
		}
		t.Logf("%s bus %d dev %d %04x:%04x %s %s", d.BusPort, d.Bus, d.DevNum, d.VendorID, d.ProductID, d.VendorName, d.ProductName)
	}
}

func TestFilter(t *testing.T) {
	drive := Device{BusPort: "1-1.2", Bus: 1, DevNum: 5, VendorID: 0x0781, ProductID: 0x5567, Serial: "S1"}
	for f, want := range map[Filter]bool{
		{VendorID: 0x0781, ProductID: 0x5567}:               true,
		{VendorID: 0x0781, ProductID: 0x5568}:               false,
		{BusPort: "1-1.2"}:                                  true,
		{BusPort: "1-1"}:                                    false,
		{VendorID: 0x0781, ProductID: 0x5567, Serial: "S1"}: true,
		{VendorID: 0x0781, ProductID: 0x5567, Serial: "S2"}: false,
	} {
		if got := f.Match(drive); got != want {
			t.Errorf("%+v matches the drive: %t", f, got)
		}
	}
	model := Filter{VendorID: 0x0781, ProductID: 0x5567}
	if !model.Overlaps(Filter{VendorID: 0x0781, ProductID: 0x5567, Serial: "S1"}) || model.Overlaps(Filter{VendorID: 0x046d, ProductID: 0xc52b}) ||
		(Filter{BusPort: "1-1"}).Overlaps(Filter{BusPort: "1-2"}) {
		t.Error("Overlaps")
	}
	if n := drive.Node(); n != "/dev/bus/usb/001/005" {
		t.Errorf("node %s", n)
	}
}
