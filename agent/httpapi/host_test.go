package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
)

// hostFixture is a sysfs tree of the hostpci and hostusb fixtures, and a
// handler listing it with the tests' excerpts of pci.ids and usb.ids.
func hostFixture(t *testing.T, pciTree string) (root string, h http.Handler) {
	t.Helper()
	root = sysfstest.Build(t, "../../pkg/hostpci/testdata/"+pciTree+".tree", "../../pkg/hostusb/testdata/desktop.tree")
	return root, Handler(agent.New(agent.Config{Sysfs: root,
		PCIIDs: "../../pkg/hwids/testdata/pci.ids", USBIDs: "../../pkg/hwids/testdata/usb.ids"}))
}

// get answers GET path into out, which must take every field of the
// answer.
func get(t *testing.T, h http.Handler, path string, out any) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if out != nil && rec.Code == http.StatusOK {
		if err := api.Decode(strings.NewReader(rec.Body.String()), out, ""); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
		}
	}
	return rec
}

func TestHostPCI(t *testing.T) {
	_, h := hostFixture(t, "gpu-audio")
	var pci api.HostPCI
	if rec := get(t, h, "/v1/host/pci", &pci); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if !pci.IOMMU || len(pci.Devices) != 5 {
		t.Fatalf("IOMMU %v, %d devices", pci.IOMMU, len(pci.Devices))
	}
	want := api.HostPCIDevice{Address: "0000:01:00.0", VendorID: "10de", DeviceID: "1b80",
		Vendor: "NVIDIA Corporation", Device: "GP104 [GeForce GTX 1080]",
		ClassCode: "030000", ClassName: "VGA compatible controller", Class: api.PCIClassGPU,
		IOMMUGroup: "1", GroupMembers: []string{"0000:00:01.0", "0000:01:00.0", "0000:01:00.1"},
		Driver: "vfio-pci", VFIO: true}
	if got := pci.Devices[3]; !reflect.DeepEqual(got, want) {
		t.Errorf("GPU\n got %+v\nwant %+v", got, want)
	}
	if d := pci.Devices[0]; d.Address != "0000:00:00.0" || d.Driver != "" || d.VFIO || !reflect.DeepEqual(d.GroupMembers, []string{"0000:00:00.0"}) {
		t.Errorf("host bridge %+v", d)
	}
}

// TestHostPCIIOMMUOff: the answer says the IOMMU is off, and no device
// has a group, rather than listing empty groups.
func TestHostPCIIOMMUOff(t *testing.T) {
	_, h := hostFixture(t, "iommu-off")
	rec := get(t, h, "/v1/host/pci", nil)
	var raw struct {
		IOMMU   *bool            `json:"iommu"`
		Devices []map[string]any `json:"devices"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if raw.IOMMU == nil || *raw.IOMMU || len(raw.Devices) != 4 {
		t.Fatalf("iommu %v, %d devices", raw.IOMMU, len(raw.Devices))
	}
	for _, d := range raw.Devices {
		if _, ok := d["iommuGroup"]; ok || !reflect.DeepEqual(d["groupMembers"], []any{}) {
			t.Errorf("%v: group %v, members %v", d["address"], d["iommuGroup"], d["groupMembers"])
		}
	}
}

func TestHostUSB(t *testing.T) {
	_, h := hostFixture(t, "gpu-audio")
	var usb api.HostUSB
	if rec := get(t, h, "/v1/host/usb", &usb); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var ports []string
	for _, d := range usb.Devices {
		ports = append(ports, d.BusPort)
	}
	if !reflect.DeepEqual(ports, []string{"1-1", "1-1.2", "1-2", "2-1"}) {
		t.Fatalf("devices at %v", ports)
	}
	want := api.HostUSBDevice{BusPort: "1-1.2", Bus: 1, Port: "1.2", DeviceNumber: 5, VendorID: "0781", ProductID: "5567",
		Vendor: "SanDisk Corp.", Product: "Cruzer Blade", Serial: "4C530001240710115411"}
	if usb.Devices[1] != want {
		t.Errorf("flash drive\n got %+v\nwant %+v", usb.Devices[1], want)
	}
	if !usb.Devices[0].Hub || usb.Devices[3].Vendor != "Yubico" {
		t.Errorf("hub %+v, key %+v", usb.Devices[0], usb.Devices[3])
	}
}

// TestHostDevicesWithoutTheDatabases: with no pci.ids or usb.ids, devices
// are listed by their ids (USB devices by their own strings).
func TestHostDevicesWithoutTheDatabases(t *testing.T) {
	root := sysfstest.Build(t, "../../pkg/hostpci/testdata/gpu-audio.tree", "../../pkg/hostusb/testdata/desktop.tree")
	missing := filepath.Join(t.TempDir(), "none.ids")
	h := Handler(agent.New(agent.Config{Sysfs: root, PCIIDs: missing, USBIDs: missing}))
	var pci api.HostPCI
	get(t, h, "/v1/host/pci", &pci)
	if d := pci.Devices[3]; d.VendorID != "10de" || d.Vendor != "" || d.Device != "" || d.ClassName != "" || d.Class != api.PCIClassGPU {
		t.Errorf("GPU %+v", d)
	}
	var usb api.HostUSB
	get(t, h, "/v1/host/usb", &usb)
	if d := usb.Devices[1]; d.Vendor != "SanDisk" || d.Product != "Cruzer Blade" {
		t.Errorf("flash drive %+v", d)
	}
}

// TestHostDevicesUnreadable: a sysfs the agent cannot make sense of is a
// typed Internal error.
func TestHostDevicesUnreadable(t *testing.T) {
	root, h := hostFixture(t, "gpu-audio")
	for file, path := range map[string]string{
		"bus/pci/devices/0000:01:00.0/vendor": "/v1/host/pci",
		"bus/usb/devices/1-2/idVendor":        "/v1/host/usb",
	} {
		if err := os.WriteFile(filepath.Join(root, file), []byte("nonsense\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rec := get(t, h, path, nil)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusInternalServerError ||
			body.Error == nil || body.Error.Code != errdefs.CodeInternal {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// unknownVM is a well-formed VM id that names no VM.
const unknownVM = "00000000-0000-4000-8000-0000000000ff"

// TestPCIRoutes: the attach and detach routes decode strictly, and reach
// the agent, which answers for a VM it does not have.
func TestPCIRoutes(t *testing.T) {
	_, h := hostFixture(t, "gpu-audio")
	for _, c := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{http.MethodPost, "/v1/vms/" + unknownVM + "/pci", `{"address":"01:00.0","rom":"a"}`, http.StatusBadRequest, "rom"},
		{http.MethodPost, "/v1/vms/" + unknownVM + "/pci", `{"address":"01:00.0"}`, http.StatusNotFound, ""},
		{http.MethodDelete, "/v1/vms/" + unknownVM + "/pci/pci0", ``, http.StatusNotFound, ""},
		{http.MethodDelete, "/v1/vms/x/pci/pci0", ``, http.StatusBadRequest, "id"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		var e struct{ Error errdefs.Error }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); rec.Code != c.code || err != nil || e.Error.Field != c.field {
			t.Errorf("%s %s %s: %d %s, want %d naming %q", c.method, c.path, c.body, rec.Code, rec.Body, c.code, c.field)
		}
	}
}
