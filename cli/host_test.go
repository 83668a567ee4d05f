package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
)

var (
	testHostPCI = api.HostPCI{IOMMU: true, Devices: []api.HostPCIDevice{
		{Address: "0000:00:01.0", VendorID: "8086", DeviceID: "1901", Vendor: "Intel Corporation", Class: api.PCIClassBridge,
			IOMMUGroup: "1", GroupMembers: []string{"0000:00:01.0", "0000:01:00.0"}, Driver: "pcieport"},
		{Address: "0000:01:00.0", VendorID: "10de", DeviceID: "1b80", Vendor: "NVIDIA Corporation", Device: "GP104",
			Class: api.PCIClassGPU, IOMMUGroup: "1", GroupMembers: []string{"0000:00:01.0", "0000:01:00.0"},
			Driver: "vfio-pci", VFIO: true, UsedBy: &api.DeviceUser{VMID: "vm1", VMName: "cad", Device: "pci0"}},
	}}
	testHostUSB = api.HostUSB{Devices: []api.HostUSBDevice{
		{BusPort: "1-1", Bus: 1, Port: "1", DeviceNumber: 2, VendorID: "05e3", ProductID: "0610", Vendor: "Genesys Logic, Inc.", Product: "Hub", Hub: true},
		{BusPort: "1-1.2", Bus: 1, Port: "1.2", DeviceNumber: 5, VendorID: "0781", ProductID: "5567", Serial: "4C53"},
	}}
)

// startHostAgent answers the two host listings on a Unix socket.
func startHostAgent(t *testing.T, pci api.HostPCI) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]any{"/v1/host/pci": pci, "/v1/host/usb": testHostUSB}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := answers[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close below
	t.Cleanup(func() { srv.Close() })
	return sock
}

func runCLI(t *testing.T, sock string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := NewRoot(&out)
	root.SetArgs(append([]string{"--socket", sock}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String()
}

func TestHostPCIAndUSB(t *testing.T) {
	sock := startHostAgent(t, testHostPCI)
	var pci api.HostPCI
	if err := json.Unmarshal([]byte(runCLI(t, sock, "-o", "json", "host", "pci")), &pci); err != nil || !reflect.DeepEqual(pci, testHostPCI) {
		t.Errorf("host pci -o json: %+v, %v", pci, err)
	}
	var usb api.HostUSB
	if err := json.Unmarshal([]byte(runCLI(t, sock, "-o", "json", "host", "usb")), &usb); err != nil || !reflect.DeepEqual(usb, testHostUSB) {
		t.Errorf("host usb -o json: %+v, %v", usb, err)
	}
	table := runCLI(t, sock, "host", "pci")
	for _, want := range []string{"ADDRESS", "0000:01:00.0  gpu", "10de:1b80  NVIDIA Corporation GP104", "vfio-pci", "vm1/pci0", "pcieport"} {
		if !strings.Contains(table, want) {
			t.Errorf("host pci table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "IOMMU off") {
		t.Errorf("the IOMMU is on, yet:\n%s", table)
	}
	table = runCLI(t, sock, "host", "usb")
	for _, want := range []string{"BUS-PORT", "1-1.2", "001:005", "0781:5567", "Genesys Logic, Inc. Hub (hub)", "4C53"} {
		if !strings.Contains(table, want) {
			t.Errorf("host usb table lacks %q:\n%s", want, table)
		}
	}
}

func TestHostPCITableSaysTheIOMMUIsOff(t *testing.T) {
	sock := startHostAgent(t, api.HostPCI{Devices: []api.HostPCIDevice{{Address: "0000:00:00.0", VendorID: "8086", DeviceID: "0d57", Class: api.PCIClassBridge, GroupMembers: []string{}}}})
	table := runCLI(t, sock, "host", "pci")
	if !strings.HasPrefix(table, "IOMMU off") || !strings.Contains(table, "0000:00:00.0  bridge  8086:0d57  -") {
		t.Errorf("table:\n%s", table)
	}
}
