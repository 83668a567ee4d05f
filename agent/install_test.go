package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent/internal/wiretest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
	"github.com/infinibay/infinivirt/pkg/unattended"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// installAgent is an agent whose firmware and virtio-win files exist in a
// temp dir; planPlatform touches nothing else.
func installAgent(t testing.TB) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"code.fd", "vars.fd", "virtio-win.iso", "os.iso"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := New(Config{
		Layout:    vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")},
		Accel:     "tcg",
		UEFICode:  filepath.Join(dir, "code.fd"),
		UEFIVars:  filepath.Join(dir, "vars.fd"),
		VirtioWin: filepath.Join(dir, "virtio-win.iso"),
		ISODirs:   []string{dir},
	})
	return a, dir
}

func installInput(t testing.TB, os, dir string) api.CreateVMInput {
	t.Helper()
	cfg := api.InstallConfig{Username: "alice", Password: "Secr3t-pass", Locale: "en_US", Timezone: "Europe/Madrid", Hostname: "desk1"}
	return api.CreateVMInput{
		Name: "inst", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: os, CPUCores: 1, RAMGB: 1,
		DiskSizeGB: 1, NetworkBridge: "br0", GraphicProtocol: "vnc", GraphicPassword: "pw",
		ISOPath: filepath.Join(dir, "os.iso"),
		Install: &api.InstallRequest{Config: &cfg},
	}
}

func plan(t *testing.T, a *Agent, in api.CreateVMInput) (*vmspec.Spec, *installPlan, error) {
	t.Helper()
	spec, err := vmspec.FromCreateInput(in, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: a.cfg.Layout})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.planPlatform(in, spec)
	return spec, p, err
}

func TestPlanPlatformPerOS(t *testing.T) {
	a, dir := installAgent(t)
	l := a.cfg.Layout

	spec, p, err := plan(t, a, installInput(t, "windows11", dir))
	if err != nil {
		t.Fatal(err)
	}
	if f := spec.Firmware; f == nil || !f.SecureBoot || f.Vars != l.UEFIVars(spec.ID) || f.Code != a.cfg.UEFICode {
		t.Errorf("windows11 firmware %+v", spec.Firmware)
	}
	if spec.TPM() == nil || spec.TPM().StateDir != l.TPMStateDir(spec.ID) {
		t.Errorf("windows11 TPM %+v", spec.TPM())
	}
	in := spec.Install
	if in.State != api.InstallPending || in.BootOnce != vmspec.BootOnceISO || in.VirtioWinISO != a.cfg.VirtioWin ||
		in.TimeoutSec != 7200 || !in.BootFromDiskAfter || in.AnswerISO != l.AnswerISO(spec.ID) {
		t.Errorf("windows11 install %+v", in)
	}
	if p.config.Password != "Secr3t-pass" || p.os != "windows11" {
		t.Errorf("plan %+v", p)
	}
	if b, _ := json.Marshal(spec); strings.Contains(string(b), "Secr3t-pass") {
		t.Error("the install password reached the spec")
	}

	spec, _, err = plan(t, a, installInput(t, "windows10", dir))
	if err != nil || spec.TPM() != nil || spec.Firmware == nil || spec.Install.TimeoutSec != 5400 {
		t.Errorf("windows10: %v TPM %+v firmware %+v", err, spec.TPM(), spec.Firmware)
	}

	ubuntu := installInput(t, "ubuntu", dir)
	f := false
	ubuntu.Install.BootFromDiskAfter = &f
	ubuntu.Install.TimeoutMinutes = 0.05
	ubuntu.Install.KernelArgs = "console=ttyS0"
	spec, p, err = plan(t, a, ubuntu)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Firmware != nil || spec.TPM() != nil || spec.Install.BootOnce != "" || spec.Install.VirtioWinISO != "" ||
		spec.Install.BootFromDiskAfter || spec.Install.TimeoutSec != 3 || p.kernelArgs != "console=ttyS0" {
		t.Errorf("ubuntu: firmware %+v TPM %+v install %+v", spec.Firmware, spec.TPM(), spec.Install)
	}

	// No install: a plain Linux VM gets nothing, a Windows one its firmware.
	plain := installInput(t, "linux", dir)
	plain.Install = nil
	if spec, p, err = plan(t, a, plain); err != nil || p != nil || spec.Firmware != nil || spec.Install != nil {
		t.Errorf("plain VM: %v %+v %+v", err, p, spec)
	}
	plain.OS = "windows11"
	if spec, _, err = plan(t, a, plain); err != nil || spec.Firmware == nil || spec.TPM() == nil || spec.Install != nil {
		t.Errorf("windows11 without install: %v %+v", err, spec)
	}
}

func TestPlanPlatformNamesTheField(t *testing.T) {
	// Each case gets a fresh agent in a, set in the loop; mutate may change its config.
	var a *Agent
	cases := []struct {
		field  string
		code   errdefs.Code
		os     string
		mutate func(*api.CreateVMInput)
	}{
		{"install.os", errdefs.CodeInvalidArgument, "linux", func(in *api.CreateVMInput) {}},
		{"install.os", errdefs.CodeInvalidArgument, "ubuntu", func(in *api.CreateVMInput) { in.Install.OS = "beos" }},
		{"install.os", errdefs.CodeInvalidArgument, "ubuntu", func(in *api.CreateVMInput) { in.Install.OS = "fedora" }},
		{"isoPath", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.ISOPath = "" }},
		// A drive of the devices list is not the OS ISO.
		{"isoPath", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) {
			in.Devices = []api.Device{{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: in.ISOPath}}}
			in.ISOPath = ""
		}},
		// The OS ISO, four more drives and the two media of a Windows
		// install take seven of the six AHCI ports.
		{"devices", errdefs.CodeInvalidArgument, "windows10", func(in *api.CreateVMInput) {
			for range 4 {
				in.Devices = append(in.Devices, api.Device{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{}})
			}
		}},
		{"boot", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.Boot = &api.DirectBoot{Kernel: "/boot/k"} }},
		{"install.config", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.Install.Config = nil }},
		// Decoding install.config (unknown fields, wrong types, trailing
		// data) is the HTTP layer's: httpapi's TestDecodeStrictNamesTheField.
		{"install.config.username", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) {
			in.Install.Config = &api.InstallConfig{Username: "", Password: "Secr3t-pass", Locale: "en_US", Timezone: "UTC", Hostname: "h"}
		}},
		{"install.config.password", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) {
			in.Install.Config = &api.InstallConfig{Username: "bob", Password: "abc", Locale: "en_US", Timezone: "UTC", Hostname: "h"}
		}},
		{"install.config.firstBootScripts[0].content", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) {
			in.Install.Config.FirstBootScripts = []api.Script{{Name: "empty"}}
		}},
		{"install.timeoutMinutes", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.Install.TimeoutMinutes = -1 }},
		{"install.timeoutMinutes", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.Install.TimeoutMinutes = 0.001 }},
		{"install.kernelArgs", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.Install.KernelArgs = "inst.text" }},
		{"install.kernelArgs", errdefs.CodeInvalidArgument, "ubuntu", func(in *api.CreateVMInput) { in.Install.KernelArgs = "a\nb" }},
		{"install.kernelArgs", errdefs.CodeInvalidArgument, "ubuntu", func(in *api.CreateVMInput) { in.Install.KernelArgs = "a --- b" }},
		{"virtioWinPath", errdefs.CodeInvalidArgument, "fedora", func(in *api.CreateVMInput) { in.VirtioWinPath = "/isos/virtio-win.iso" }},
		{"virtioWinPath", errdefs.CodeInvalidArgument, "windows10", func(in *api.CreateVMInput) { in.VirtioWinPath = "/nonexistent/virtio-win.iso" }},
		// Only the ISO directories hold ISOs.
		{"virtioWinPath", errdefs.CodeInvalidArgument, "windows10", func(in *api.CreateVMInput) { in.VirtioWinPath = "/proc/self/environ" }},
		{"virtioWinPath", errdefs.CodeInvalidArgument, "windows10", func(in *api.CreateVMInput) { in.VirtioWinPath = "/etc/passwd" }},
		{"", errdefs.CodeFailedPrecondition, "windows10", func(in *api.CreateVMInput) { a.cfg.VirtioWin = "/nonexistent/virtio-win.iso" }},
		{"", errdefs.CodeFailedPrecondition, "windows11", func(in *api.CreateVMInput) { in.Install = nil; a.cfg.UEFICode = "/nonexistent/code.fd" }},
	}
	for _, tc := range cases {
		var dir string
		a, dir = installAgent(t)
		in := installInput(t, tc.os, dir)
		tc.mutate(&in)
		_, _, err := plan(t, a, in)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s (%s): got %v", tc.field, tc.os, err)
			continue
		}
		if strings.Contains(e.Message, "Secr3t-pass") || strings.Contains(e.Message, `"abc"`) {
			t.Errorf("%s: the error repeats the password: %s", tc.field, e.Message)
		}
	}
}

func TestPrefixField(t *testing.T) {
	err := prefixField("install.config.", errdefs.Invalid("firstBootScripts[1].content", "bad"))
	if e := errdefs.As(err); e.Field != "install.config.firstBootScripts[1].content" || e.Message != "bad" {
		t.Errorf("%+v", e)
	}
	if e := errdefs.As(prefixField("install.config.", errdefs.Invalid("", "bad"))); e.Field != "install.config" {
		t.Errorf("no field: %+v", e)
	}
	if e := errdefs.As(prefixField("install.config.", errdefs.NotFound("gone"))); e.Code != errdefs.CodeNotFound || e.Field != "" {
		t.Errorf("other classes pass through: %+v", e)
	}
}

// TestInstallConfigMatchesTheLibrary: every field of the wire's install
// config reaches pkg/unattended's, and the wire has every field it has.
func TestInstallConfigMatchesTheLibrary(t *testing.T) {
	cfg := wiretest.Filled[api.InstallConfig]()
	wiretest.SameJSON(t, "install config", cfg, fromAPIInstallConfig(cfg))
	wiretest.SameJSON(t, "library install config", wiretest.Filled[unattended.InstallConfig](), cfg)
	if got := fromAPIInstallConfig(api.InstallConfig{}); got.Applications != nil || got.FirstBootScripts != nil {
		t.Errorf("absent lists became empty ones: %+v", got)
	}
	for _, m := range [][2]string{
		{string(api.ScriptPowerShell), string(unattended.PowerShell)},
		{string(api.ScriptCmd), string(unattended.Cmd)},
		{string(api.ScriptShell), string(unattended.Shell)},
	} {
		if m[0] != m[1] {
			t.Errorf("the wire says %q where the library says %q", m[0], m[1])
		}
	}
}

// FuzzDecodeInstallConfig: whatever arrives as install.config, decoding
// neither panics nor fails without naming a field under install.config,
// and the agent's validation of what decodes names one too.
func FuzzDecodeInstallConfig(f *testing.F) {
	f.Add([]byte(`{"username":"alice","password":"pw","locale":"en_US","timezone":"UTC","hostname":"h"}`))
	f.Add([]byte(`{"applications":[{"name":"vim"}],"firstBootScripts":[{"name":"a","content":"echo"}]}`))
	f.Add([]byte(`{"applications":[{"name":7}]}`))
	f.Add([]byte(`{"applications":[{"name":"vim","cmd":"x"}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"x":1} 2`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cfg *api.InstallConfig
		if err := api.Decode(bytes.NewReader(raw), &cfg, "install.config"); err != nil {
			e := errdefs.As(err)
			if e.Code != errdefs.CodeInvalidArgument || !strings.HasPrefix(e.Field, "install.config") {
				t.Fatalf("error %v", err)
			}
			return
		}
		if cfg == nil {
			return // refused as missing: TestPlanPlatformNamesTheField
		}
		if err := fromAPIInstallConfig(*cfg).Validate("ubuntu"); err != nil {
			if e := errdefs.As(prefixField("install.config.", err)); !strings.HasPrefix(e.Field, "install.config") {
				t.Fatalf("validation error without the prefix: %v", e)
			}
		}
	})
}

// BenchmarkPrepareUbuntuInstall is what an install adds to a create: the
// answer ISO built and a 16 MiB kernel and initrd extracted from the OS ISO.
func BenchmarkPrepareUbuntuInstall(b *testing.B) {
	a, dir := installAgent(b)
	iso := filepath.Join(dir, "os.iso")
	big := make([]byte, 8<<20)
	if err := isoimage.Write(b.Context(), iso, isoimage.Options{Label: "UBUNTU", NoJoliet: true}, []isoimage.File{
		{Path: "casper/vmlinuz", Data: big}, {Path: "casper/initrd", Data: big},
	}); err != nil {
		b.Fatal(err)
	}
	in := installInput(b, "ubuntu", dir)
	in.ISOPath = iso
	b.ReportAllocs()
	for b.Loop() {
		spec, err := vmspec.FromCreateInput(in, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: a.cfg.Layout})
		if err != nil {
			b.Fatal(err)
		}
		spec.Display.Port = 5900
		p, err := a.planPlatform(in, spec)
		if err != nil {
			b.Fatal(err)
		}
		vmDir := a.cfg.Layout.VMDir(spec.ID)
		if err := os.MkdirAll(vmDir, 0o711); err != nil {
			b.Fatal(err)
		}
		if err := a.preparePlatform(b.Context(), spec, p); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(vmDir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
