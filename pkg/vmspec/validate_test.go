package vmspec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

var defaults = Defaults{
	Accel: "kvm", GraphicsListen: "127.0.0.1",
	Layout: Layout{StateDir: "/var/lib/infinivirt", RunDir: "/run/infinivirt"},
	Now:    func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
}

func validInput() api.CreateVMInput {
	return api.CreateVMInput{
		Name: "web 1", InternalName: "0F8FAD5B-D9CB-469F-A165-70867728950E", OS: "ubuntu",
		CPUCores: 2, RAMGB: 0.125, DiskSizeGB: 1, NetworkBridge: "br0",
		GraphicProtocol: "vnc", GraphicPassword: "s3cret",
	}
}

func TestFromCreateInputNormalises(t *testing.T) {
	s, err := FromCreateInput(validInput(), defaults)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "0f8fad5b-d9cb-469f-a165-70867728950e" {
		t.Errorf("id not lower-cased: %s", s.ID)
	}
	disk := s.SystemDisk()
	if s.MemoryMiB != 128 || disk.SizeBytes != 1<<30 || disk.Format != "qcow2" || disk.BootIndex != 1 {
		t.Errorf("sizes: %d MiB, %+v", s.MemoryMiB, disk)
	}
	if want := filepath.Join("/var/lib/infinivirt/vms", s.ID, "disk0.qcow2"); disk.Path != want {
		t.Errorf("disk path %s", disk.Path)
	}
	if s.Device("disk0") == nil || s.Device("net0") == nil || s.Device("balloon0") == nil || len(s.Devices) != 3 {
		t.Errorf("devices %+v", s.Devices)
	}
	if !strings.HasPrefix(s.NICs()[0].NIC.MAC, "52:54:00:") || s.Accel != "kvm" || s.ShutdownTimeoutSec != DefaultShutdownSec {
		t.Errorf("defaults not applied: %+v", s)
	}
	if s.Display.Listen != "127.0.0.1" || s.Display.Port != 0 {
		t.Errorf("display %+v", s.Display)
	}
}

func TestFromCreateInputNamesTheField(t *testing.T) {
	cases := map[string]func(*api.CreateVMInput){
		"internalName":       func(in *api.CreateVMInput) { in.InternalName = "not-a-uuid" },
		"name":               func(in *api.CreateVMInput) { in.Name = "bad\x00name" },
		"os":                 func(in *api.CreateVMInput) { in.OS = "beos" },
		"cpuCores":           func(in *api.CreateVMInput) { in.CPUCores = 0 },
		"ramGB":              func(in *api.CreateVMInput) { in.RAMGB = 0.0001 },
		"diskSizeGB":         func(in *api.CreateVMInput) { in.DiskSizeGB = -1 },
		"diskFormat":         func(in *api.CreateVMInput) { in.DiskFormat = "vmdk" },
		"macAddress":         func(in *api.CreateVMInput) { in.MACAddress = "ff:ff:ff:ff:ff:ff" },
		"networkBridge":      func(in *api.CreateVMInput) { in.NetworkBridge = "br0; reboot" },
		"graphicProtocol":    func(in *api.CreateVMInput) { in.GraphicProtocol = "rdp" },
		"graphicPort":        func(in *api.CreateVMInput) { in.GraphicPort = 80 },
		"graphicPassword":    func(in *api.CreateVMInput) { in.GraphicPassword = "123456789" },
		"gpuPciAddress":      func(in *api.CreateVMInput) { in.GPUPCIAddress = "01:00" },
		"isoPath":            func(in *api.CreateVMInput) { in.ISOPath = "/isos/../etc/shadow" },
		"boot.kernel":        func(in *api.CreateVMInput) { in.Boot = &api.DirectBoot{Kernel: "vmlinuz"} },
		"accel":              func(in *api.CreateVMInput) { in.Accel = "hvf" },
		"shutdownTimeoutSec": func(in *api.CreateVMInput) { in.ShutdownTimeoutSec = -5 },
	}
	for field, mutate := range cases {
		in := validInput()
		mutate(&in)
		_, err := FromCreateInput(in, defaults)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func TestSpecRoundTripsThroughDisk(t *testing.T) {
	s, err := FromCreateInput(validInput(), defaults)
	if err != nil {
		t.Fatal(err)
	}
	s.Display.Port = 5901
	p := filepath.Join(t.TempDir(), "spec.json")
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != s.ID || got.Display != s.Display || *got.SystemDisk() != *s.SystemDisk() || !slices.EqualFunc(got.NICs(), s.NICs(), func(a, b *Device) bool { return *a.NIC == *b.NIC }) || !got.CreatedAt.Equal(s.CreatedAt) {
		t.Fatalf("round trip: %+v != %+v", got, s)
	}
	if v := got.View(); v.GraphicPort != 5901 || v.RAMGB != 0.125 || v.Unit != UnitName(s.ID) {
		t.Fatalf("view %+v", v)
	}
}

func TestLoadRejectsAHandEditedSpec(t *testing.T) {
	for what, edit := range map[string]func(*Spec){
		"a relative disk path": func(s *Spec) { s.SystemDisk().Path = "relative/disk.qcow2" },
		"no MAC address":       func(s *Spec) { s.NICs()[0].NIC.MAC = "" },
		"no disk format":       func(s *Spec) { s.SystemDisk().Format = "" },
		"an unknown platform":  func(s *Spec) { s.Platform = "macos" },
	} {
		s, _ := FromCreateInput(validInput(), defaults)
		s.Display.Port = 5901
		edit(s)
		p := filepath.Join(t.TempDir(), "spec.json")
		if err := s.Save(p); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil {
			t.Errorf("a spec with %s loaded", what)
		}
	}
}

// FuzzFromCreateInput: whatever a client sends, validation neither panics
// nor accepts what a stored spec would refuse.
func FuzzFromCreateInput(f *testing.F) {
	f.Add("web", "0f8fad5b-d9cb-469f-a165-70867728950e", "linux", 1, 0.5, 1.0, "", "br0", "vnc", 0, "pw", "", "")
	f.Add("x", "0f8fad5b-d9cb-469f-a165-70867728950e", "windows11", 4, 8.0, 64.0, "52:54:00:aa:bb:cc", "br-x", "spice", 5930, "pass,word", "0000:01:00.0", "/isos/w.iso")
	f.Fuzz(func(t *testing.T, name, id, os string, cpus int, ram, disk float64, mac, bridge, proto string, port int, pass, gpu, iso string) {
		in := api.CreateVMInput{Name: name, InternalName: id, OS: os, CPUCores: cpus, RAMGB: ram, DiskSizeGB: disk,
			MACAddress: mac, NetworkBridge: bridge, GraphicProtocol: proto, GraphicPort: port, GraphicPassword: pass,
			GPUPCIAddress: gpu, ISOPath: iso}
		checkCreate(t, in)
	})
}

// checkCreate fails unless FromCreateInput refuses in naming a field, or
// makes a spec that Validate accepts once its port is allocated.
func checkCreate(t *testing.T, in api.CreateVMInput) {
	t.Helper()
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Field == "" {
			t.Fatalf("error without a field: %v", err)
		}
		return
	}
	if s.Display.Port == 0 {
		s.Display.Port = 5900
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("accepted input fails Validate: %v (%+v)", err, in)
	}
}

// The display password is saved in secrets.json (mode 0600), never in
// spec.json; Load puts it back. A spec.json of an older build that holds it
// loads, says it is to be rewritten, and its next save moves it out.
func TestThePasswordLivesOutsideTheSpec(t *testing.T) {
	s, _ := FromCreateInput(validInput(), defaults)
	s.Display.Port = 5901
	p := filepath.Join(t.TempDir(), "spec.json")
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if strings.Contains(string(raw), s.Display.Password) || strings.Contains(string(raw), `"password"`) {
		t.Fatalf("spec.json holds the password:\n%s", raw)
	}
	st, err := os.Stat(SecretsFile(p))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.json: %v, mode %v", err, st)
	}
	got, err := Load(p)
	if err != nil || got.Display.Password != s.Display.Password || got.Upgraded() {
		t.Fatalf("loaded password %q (upgraded %v), %v", got.Display.Password, got.Upgraded(), err)
	}

	// An older build's file: the password inline, no secrets.json.
	var inline map[string]any
	if err := json.Unmarshal(raw, &inline); err != nil {
		t.Fatal(err)
	}
	inline["display"].(map[string]any)["password"] = s.Display.Password
	old, _ := json.Marshal(inline)
	if err := os.WriteFile(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(SecretsFile(p)); err != nil {
		t.Fatal(err)
	}
	got, err = Load(p)
	if err != nil || got.Display.Password != s.Display.Password || !got.Upgraded() {
		t.Fatalf("an inline password: %q (upgraded %v), %v", got.Display.Password, got.Upgraded(), err)
	}
	if err := got.Save(p); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(p); strings.Contains(string(raw), s.Display.Password) {
		t.Fatal("the rewrite kept the password in spec.json")
	}
	if again, err := Load(p); err != nil || again.Display.Password != s.Display.Password {
		t.Fatalf("after the rewrite: %v", err)
	}
}
