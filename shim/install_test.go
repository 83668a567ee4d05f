package shim

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// installingSpec is a Windows 11 VM in the middle of its install.
func installingSpec(t *testing.T) *vmspec.Spec {
	t.Helper()
	layout := vmspec.Layout{StateDir: "/var/lib/infinivirt", RunDir: "/run/infinivirt"}
	spec, err := vmspec.FromCreateInput(api.CreateVMInput{
		Name: "w11", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: "windows11",
		CPUCores: 2, RAMGB: 4, DiskSizeGB: 64, NetworkBridge: "br0", ISOPath: "/isos/win11.iso",
		GraphicProtocol: "spice", GraphicPort: 5930, GraphicPassword: "pw",
	}, vmspec.Defaults{Accel: "kvm", GraphicsListen: "127.0.0.1", Layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	spec.Firmware = &vmspec.Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", Vars: layout.UEFIVars(spec.ID), SecureBoot: true}
	spec.AddDevice(vmspec.NewDevice("tpm0", vmspec.TPM{StateDir: layout.TPMStateDir(spec.ID)}))
	spec.Install = &vmspec.Install{State: api.InstallRunning, OS: "windows11", AnswerISO: layout.AnswerISO(spec.ID),
		VirtioWinISO: "/usr/share/virtio-win/virtio-win.iso", BootOnce: vmspec.BootOnceISO, TimeoutSec: 7200,
		StartedAt: time.Now()}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestQEMUConfigDuringAndAfterInstall(t *testing.T) {
	spec := installingSpec(t)
	cfg := testQEMUConfig(t, spec, 1)
	var ids []string
	for _, cd := range cfg.CDROMs {
		ids = append(ids, cd.ID+"="+filepath.Base(cd.Path))
	}
	if !slices.Equal(ids, []string{"cd0=win11.iso", "cd1=answers.iso", "cd2=virtio-win.iso"}) {
		t.Errorf("install CD-ROMs %v", ids)
	}
	if cfg.BootOnce != "cd0" || cfg.Firmware == nil || !cfg.Firmware.SecureBoot {
		t.Errorf("boot once %q, firmware %+v", cfg.BootOnce, cfg.Firmware)
	}
	if id, idx, ok := cfg.BootOnceRestore(); !ok || id != "cd0" || idx != 2 {
		t.Errorf("after the first boot the OS ISO should go behind the disk: %s %d %v", id, idx, ok)
	}
	if _, err := cfg.Args(); err != nil {
		t.Errorf("the install configuration does not validate: %v", err)
	}

	// Done: the agent detached the media; the firmware stays.
	spec.Install.State = api.InstallDone
	spec.DetachISO()
	cfg = testQEMUConfig(t, spec, 1)
	if len(cfg.CDROMs) != 0 || cfg.BootOnce != "" || cfg.Boot != nil || cfg.Firmware == nil {
		t.Errorf("after the install: CD-ROMs %v, boot once %q, boot %+v, firmware %+v", cfg.CDROMs, cfg.BootOnce, cfg.Boot, cfg.Firmware)
	}
	// Failed: nothing is attached until the next start retries (the agent
	// marks the run again first); the files stay where they are.
	spec.Install.State = api.InstallFailed
	spec.AddDevice(vmspec.NewDevice("cd0", vmspec.CDROM{Path: "/isos/win11.iso", BootIndex: 2}))
	if cfg = testQEMUConfig(t, spec, 1); len(cfg.CDROMs) != 1 || cfg.BootOnce != "" {
		t.Errorf("failed install: CD-ROMs %v, boot once %q", cfg.CDROMs, cfg.BootOnce)
	}
}

func TestStatusDuringInstall(t *testing.T) {
	s := New(Config{VMID: "0f8fad5b-d9cb-469f-a165-70867728950e"})
	s.spec = installingSpec(t)
	if s.upStatus() != api.StatusBuilding {
		t.Fatalf("up status during install: %s", s.upStatus())
	}
	s.setRunning(api.ReasonBooted, "")
	if st := s.Status(); st.Status != api.StatusBuilding || st.Reason != api.ReasonInstalling {
		t.Fatalf("booted installer: %s (%s)", st.Status, st.Reason)
	}
	if s.lifecycleState() != stateRunning {
		t.Fatal("power verbs should treat a building VM as running")
	}
	at := s.spec.Install.StartedAt.Add(90 * time.Second)
	if c := s.guestOffCause(at); c.status != api.StatusOff || c.reason != api.ReasonInstalled || c.code != 0 {
		t.Fatalf("installer power-off: %+v", c)
	}
	s.spec.Install.State = api.InstallDone
	s.setRunning(api.ReasonBooted, "")
	if st := s.Status(); st.Status != api.StatusRunning || st.Reason != api.ReasonBooted {
		t.Fatalf("installed system: %s (%s)", st.Status, st.Reason)
	}
	if c := s.guestOffCause(at); c.reason != api.ReasonGuestShutdown {
		t.Fatalf("installed system powering off: %+v", c)
	}
}
