package cli

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/infinibay/infinivirt/pkg/api"
)

// The PCI verbs send what their arguments and flags say, to the VM's
// PCI path.
func TestPCICommandsSendTheirFlags(t *testing.T) {
	f := startDiskAgent(t) // records every request; the answers do not matter here
	for _, args := range [][]string{
		{"-o", "json", "vm", "pci", "attach", "vm1", "01:00.0"},
		{"vm", "pci", "attach", "vm1", "0000:01:00.0", "--name", "gpu", "--managed", "--rom", "gp104.rom"},
		{"vm", "pci", "detach", "vm1", "gpu"},
	} {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append([]string{"--socket", f.sock}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		`POST /v1/vms/vm1/pci {"address":"01:00.0"}`,
		`POST /v1/vms/vm1/pci {"address":"0000:01:00.0","name":"gpu","managed":true,"romFile":"gp104.rom"}`,
		"DELETE /v1/vms/vm1/pci/gpu",
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(f.got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPCITable(t *testing.T) {
	var out bytes.Buffer
	w := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	pciTable(api.Device{Name: "pci0", Type: api.DevicePCI, PCI: &api.PCIDevice{Host: "0000:01:00.0", Functions: []string{"0000:01:00.1"}, Managed: true}})(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "pci0", "0000:01:00.0", "0000:01:00.1", "true", "-"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
