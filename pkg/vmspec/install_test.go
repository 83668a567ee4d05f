package vmspec

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// installSpec is a Windows 11 VM with UEFI Secure Boot, a TPM and a pending
// install, laid out as the agent lays it out.
func installSpec(t *testing.T) *Spec {
	t.Helper()
	in := validInput()
	in.OS, in.ISOPath = "windows11", "/isos/win11.iso"
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	s.Display.Port = 5901
	l := defaults.Layout
	s.Firmware = &Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", Vars: l.UEFIVars(s.ID), SecureBoot: true}
	s.AddDevice(NewDevice("tpm0", TPM{StateDir: l.TPMStateDir(s.ID)}))
	s.Install = &Install{
		State: api.InstallPending, OS: "windows11", AnswerISO: l.AnswerISO(s.ID),
		VirtioWinISO: "/usr/share/virtio-win/virtio-win.iso", BootOnce: BootOnceISO,
		BootFromDiskAfter: true, TimeoutSec: int(DefaultInstallTimeout("windows11").Seconds()),
	}
	return s
}

func TestInstallSpecValidates(t *testing.T) {
	s := installSpec(t)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	v := s.View()
	if v.Firmware != "uefi-secure-boot" || !v.TPM || v.Install == nil || v.Install.State != api.InstallPending || v.Install.TimeoutSec != 7200 {
		t.Fatalf("view %+v install %+v", v, v.Install)
	}
	s.Firmware.SecureBoot = false
	if s.View().Firmware != "uefi" {
		t.Error("UEFI without Secure Boot")
	}
	s.Firmware = nil
	if s.View().Firmware != "bios" {
		t.Error("no firmware section is the BIOS")
	}
}

func TestInstallSpecNamesTheField(t *testing.T) {
	cases := map[string]func(*Spec){
		"firmware.code":           func(s *Spec) { s.Firmware.Code = "OVMF_CODE.fd" },
		"firmware.vars":           func(s *Spec) { s.Firmware.Vars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" },
		"devices[4].tpm.stateDir": func(s *Spec) { s.TPM().StateDir = "/var/lib/swtpm" },
		"install.state":           func(s *Spec) { s.Install.State = "halfway" },
		"install.os":              func(s *Spec) { s.Install.OS = "ubuntu" },
		"install.answerIso":       func(s *Spec) { s.Install.AnswerISO = "/tmp/answers.iso" },
		"install.virtioWinIso":    func(s *Spec) { s.Install.VirtioWinISO = "virtio-win.iso" },
		"install.timeoutSec":      func(s *Spec) { s.Install.TimeoutSec = 0 },
		"install.bootOnce":        func(s *Spec) { s.Install.BootOnce = "floppy" },
		"devices":                 func(s *Spec) { s.RemoveDevice("cd0") },
		"install.startedAt":       func(s *Spec) { s.Install.State = api.InstallRunning },
	}
	for field, mutate := range cases {
		s := installSpec(t)
		mutate(s)
		var e *errdefs.Error
		if err := s.Validate(); !errors.As(err, &e) || e.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	// A done install has its media detached: no ISO is fine then.
	s := installSpec(t)
	s.Install.State = api.InstallDone
	s.RemoveDevice("cd0")
	if err := s.Validate(); err != nil {
		t.Errorf("done install without ISO: %v", err)
	}
	// The answer ISO's directory must not be a sibling that merely shares a prefix.
	s = installSpec(t)
	s.Install.AnswerISO = filepath.Dir(s.SystemDisk().Path) + "-evil/answers.iso"
	if err := s.Validate(); err == nil {
		t.Error("an answer ISO outside the VM directory passed")
	}
}

func TestInstallTransitions(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	i := &Install{State: api.InstallPending, OS: "ubuntu", TimeoutSec: 60}
	if !i.Active() {
		t.Fatal("a pending install is active")
	}
	if _, err := i.End(api.ReasonInstalled, t0, ""); err == nil {
		t.Fatal("a pending install ended")
	}
	if err := i.Begin(t0); err != nil || i.State != api.InstallRunning || !i.StartedAt.Equal(t0) {
		t.Fatalf("begin: %v %+v", err, i)
	}
	// An operator's power-off is not the installer's end: still running.
	if ended, err := i.End(api.ReasonUser, t0.Add(time.Minute), ""); ended || err != nil || i.State != api.InstallRunning {
		t.Fatalf("user power-off ended the install: %v %v %+v", ended, err, i)
	}
	if ended, err := i.End(api.ReasonInstallTimeout, t0.Add(time.Minute), "too slow"); !ended || err != nil {
		t.Fatalf("timeout: %v %v", ended, err)
	}
	if i.State != api.InstallFailed || i.Message != "too slow" || i.Duration() != time.Minute || i.Active() {
		t.Fatalf("after timeout %+v", i)
	}
	// A retry starts the clock again and forgets the failure.
	t1 := t0.Add(time.Hour)
	if err := i.Begin(t1); err != nil || i.State != api.InstallRunning || i.Message != "" || !i.FinishedAt.IsZero() || i.Duration() != 0 {
		t.Fatalf("retry: %v %+v", err, i)
	}
	if ended, err := i.End(api.ReasonInstalled, t1.Add(90*time.Second), ""); !ended || err != nil || i.State != api.InstallDone {
		t.Fatalf("installed: %v %v %+v", ended, err, i)
	}
	if i.Duration() != 90*time.Second || i.Status().DurationSec != 90 {
		t.Fatalf("duration %s", i.Duration())
	}
	if err := i.Begin(t1.Add(time.Hour)); err == nil || i.State != api.InstallDone {
		t.Fatal("a done install began again")
	}
	if _, err := i.End(api.ReasonInstalled, t1, ""); err == nil {
		t.Fatal("a done install ended twice")
	}
}

func TestDefaultInstallTimeouts(t *testing.T) {
	want := map[string]time.Duration{"ubuntu": 45 * time.Minute, "fedora": time.Hour,
		"windows10": 90 * time.Minute, "windows11": 2 * time.Hour, "linux": 0}
	for os, d := range want {
		if got := DefaultInstallTimeout(os); got != d {
			t.Errorf("%s: %s, want %s", os, got, d)
		}
	}
}

// The spec on disk and the API's view never hold the install's secrets,
// because the spec has nowhere to put them; this pins that no field named
// like one appears.
func TestInstallSpecHasNoSecretFields(t *testing.T) {
	b, err := json.Marshal(installSpec(t).Install)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"password", "productKey", "config"} {
		if strings.Contains(strings.ToLower(string(b)), strings.ToLower(bad)) {
			t.Errorf("install section has %q: %s", bad, b)
		}
	}
}
