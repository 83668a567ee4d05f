package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/swtpm"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// addFirmwareFiles gives f the VM's own copy of OVMF's Microsoft-keys
// variable store, and a virtio-win stand-in, in dir. Without the ovmf
// package the vars stay empty and firmware cases skip.
func addFirmwareFiles(t *testing.T, f *files, dir string) {
	t.Helper()
	f.OVMFCode, f.OVMFSecureCode = ovmfCode, ovmfSecureCode
	f.VirtioWinISO = filepath.Join(dir, "virtio-win.iso")
	if err := os.WriteFile(f.VirtioWinISO, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	vars, err := os.ReadFile(ovmfMSVars)
	if err != nil {
		return
	}
	f.UEFIVars = filepath.Join(dir, "uefi-vars.fd")
	if err := os.WriteFile(f.UEFIVars, vars, 0o600); err != nil {
		t.Fatal(err)
	}
}

func needFiles(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if p == "" {
			t.Skip("OVMF is not installed (Debian package ovmf)")
		}
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%v (Debian package ovmf)", err)
		}
	}
}

// TestQEMUWithSWTPM starts the Windows 11 install configuration for real:
// Secure Boot OVMF, a TPM backed by a real swtpm over a socketpair, the OS
// ISO booted once. It checks query-tpm, then ends the boot-once the way the
// shim does and reads the boot index back; finally swtpm must end with QEMU.
func TestQEMUWithSWTPM(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if _, err := exec.LookPath(swtpm.DefaultBinary); err != nil {
		t.Skip("swtpm is not installed (Debian package swtpm)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	dir := t.TempDir()
	f := files{QCOW2: filepath.Join(dir, "disk0.qcow2"), ISO: filepath.Join(dir, "install.iso"), AnswerISO: filepath.Join(dir, "answers.iso")}
	var tool qemuimg.Tool
	if err := tool.Create(ctx, f.QCOW2, qemuimg.FormatQCOW2, 64<<20); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.ISO, f.AnswerISO} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addFirmwareFiles(t, &f, dir)
	needFiles(t, f.OVMFSecureCode, f.UEFIVars)
	state := filepath.Join(dir, "tpm")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	tpm, ctrl, err := swtpm.Start(ctx, swtpm.Options{StateDir: state, Log: func(l string) { t.Log("swtpm: " + l) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()

	cfg := windows11Install(f)
	conn, qmpChild, err := guest.Socketpair("qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd, err := qemu.Command(ctx, "", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	// fd 3 QMP, fd 4 closed (no serial), fd 5 the TPM as cfg.TPM says.
	cmd.ExtraFiles = []*os.File{qmpChild, nil, ctrl}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qmpChild.Close()
	ctrl.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	c, err := qmp.New(ctx, conn)
	if err != nil {
		t.Fatalf("QMP: %v; QEMU stderr: %s", err, stderr.String())
	}
	defer c.Close()

	devs, err := c.QueryTPM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Model != "tpm-crb" || devs[0].Type != "emulator" {
		t.Fatalf("query-tpm = %+v, want one tpm-crb on the emulator backend", devs)
	}

	bootIndex := func() int {
		var i int
		if err := c.Execute(ctx, "qom-get", map[string]any{"path": qemu.PeripheralPath("cd0"), "property": "bootindex"}, &i); err != nil {
			t.Fatal(err)
		}
		return i
	}
	if got := bootIndex(); got != 0 {
		t.Fatalf("the boot-once CD-ROM has bootindex %d, want 0 (first)", got)
	}
	id, idx, ok := cfg.BootOnceRestore()
	if !ok || id != "cd0" || idx != 2 {
		t.Fatalf("BootOnceRestore = %s %d %v", id, idx, ok)
	}
	if err := c.Execute(ctx, "qom-set", map[string]any{"path": qemu.PeripheralPath(id), "property": "bootindex", "value": idx}, nil); err != nil {
		t.Fatalf("qom-set bootindex: %v", err)
	}
	if got := bootIndex(); got != 2 {
		t.Fatalf("after the boot-once ended, bootindex %d, want 2", got)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	<-exited
	exited <- nil
	select {
	case <-tpm.Done():
	case <-ctx.Done():
		t.Fatal("swtpm outlived QEMU")
	}
}
