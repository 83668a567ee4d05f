package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// testQEMUConfig is the configuration of a start of spec whose devices
// are prepared, without a host: each NIC has a TAP of queues stand-in fds.
func testQEMUConfig(t *testing.T, spec *vmspec.Spec, queues int) *qemu.Config {
	t.Helper()
	devs, err := runDevices(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range device.Of[*device.NIC](devs) {
		n.TAP = &netdev.TAP{}
		for range queues {
			n.TAP.Files = append(n.TAP.Files, os.Stdin) // numbered, never passed
		}
	}
	return qemuConfig(spec, devs, device.NewFDs(firstDeviceFD))
}

// TestV1SpecsKeepTheirQEMU: a spec file written by the version 1 code,
// converted on load, gives QEMU the argv that code gave it
// (testdata/v1-args was recorded from it). Their Windows and desktop VMs
// keep their hardware too: platform and audio are the spec's, and a v1
// spec has neither.
func TestV1SpecsKeepTheirQEMU(t *testing.T) {
	files, err := filepath.Glob("../pkg/vmspec/testdata/v1/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no v1 spec files: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			s, err := vmspec.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			args, err := testQEMUConfig(t, s, 2).Args()
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", "v1-args", name+".args"))
			if err != nil {
				t.Fatal(err)
			}
			// How SPICE encodes the screen is the host's choice, not the
			// guest's hardware: it follows this build.
			// Nor are the USB redirection channels: a usb-redir device is
			// attached to the guest only while a client redirects a device.
			args = dropUSBRedir(args)
			got := strings.ReplaceAll(strings.Join(args, "\n")+"\n", ","+qemu.SpiceCompression, "")
			if got != string(want) {
				t.Errorf("argv differs from the v1 code's\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// dropUSBRedir leaves out the SPICE USB redirection chardevs and devices,
// each an option and its value.
func dropUSBRedir(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if i+1 < len(args) && strings.Contains(args[i+1], "usbredir") {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
