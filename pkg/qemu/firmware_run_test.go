package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	// fd 3 QMP, fd 4 closed (no serial), fd 5 the TPM as cfg.TPM says.
	vm := runWithQMP(t, ctx, &cfg, nil, nil, ctrl)
	ctrl.Close()
	c := vm.qmp

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
	<-vm.exited
	select {
	case <-tpm.Done():
	case <-ctx.Done():
		t.Fatal("swtpm outlived QEMU")
	}
}

// TestBootOnceReachesTheFirmware proves the boot-once with the firmware
// itself: SeaBIOS's debug console (added to argv here only) shows the first
// boot trying the CD-ROM before the disk, and the boot after a reset the
// disk first, once the boot index went back before the CPUs ran.
func TestBootOnceReachesTheFirmware(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	dir := t.TempDir()
	disk, cd, debug := filepath.Join(dir, "disk0.qcow2"), filepath.Join(dir, "install.iso"), filepath.Join(dir, "seabios.log")
	if err := (&qemuimg.Tool{}).Create(ctx, disk, qemuimg.FormatQCOW2, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cd, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := base()
	cfg.Disks = []qemu.Disk{{ID: "disk0", Path: disk, Format: qemu.FormatQCOW2, BootIndex: 1}}
	cfg.CDROMs = []qemu.CDROM{{ID: "cd0", Path: cd}}
	cfg.BootOnce = "cd0"
	vm := runWithQMP(t, ctx, &cfg, []string{"-chardev", "file,id=seabios,path=" + debug, "-device", "isa-debugcon,iobase=0x402,chardev=seabios"})
	c := vm.qmp
	id, idx, _ := cfg.BootOnceRestore()
	if err := c.Execute(ctx, "qom-set", map[string]any{"path": qemu.PeripheralPath(id), "property": "bootindex", "value": idx}, nil); err != nil {
		t.Fatal(err)
	}
	// bootOrder waits until the firmware's log holds n boot attempts past
	// offset and returns the devices in the order it tried them.
	bootOrder := func(offset, n int) ([]string, int) {
		for {
			b, _ := os.ReadFile(debug)
			var tried []string
			for _, line := range strings.Split(string(b[min(offset, len(b)):]), "\n") {
				if dev, ok := strings.CutPrefix(line, "Booting from "); ok {
					tried = append(tried, strings.TrimSuffix(dev, "..."))
				}
			}
			if len(tried) >= n {
				return tried[:n], len(b)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("firmware tried only %v; QEMU stderr: %s", tried, vm.stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	first, end := bootOrder(0, 2)
	if first[0] != "DVD/CD" || first[1] != "Hard Disk" {
		t.Fatalf("first boot tried %v, want the CD-ROM, then the disk", first)
	}
	if err := c.SystemReset(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := bootOrder(end, 1)
	if again[0] != "Hard Disk" {
		t.Fatalf("the boot after a reset tried %v first, want the disk", again)
	}
}

// qemuRun is a QEMU a test started, with a QMP client on it.
type qemuRun struct {
	qmp    *qmp.Client
	stderr *lockedBuffer
	exited chan struct{} // closed once QEMU has been reaped
}

// runWithQMP starts QEMU for cfg with extraArgs after its own, QMP on fd 3
// and files from fd 4 on (nil keeps an fd closed), and connects QMP. QEMU is
// killed when the test ends.
func runWithQMP(t *testing.T, ctx context.Context, cfg *qemu.Config, extraArgs []string, files ...*os.File) *qemuRun {
	t.Helper()
	cmd, err := qemu.Command(ctx, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, extraArgs...)
	vm, err := startWithQMP(t, ctx, cmd, files...)
	if err != nil {
		t.Fatalf("QMP: %v; QEMU stderr: %s", err, vm.stderr.String())
	}
	return vm
}

// startWithQMP starts cmd, a QEMU whose QMP is on fd 3, with files from fd
// 4 on, and connects QMP; the error is QMP's when QEMU did not come up.
// QEMU is killed when the test ends.
func startWithQMP(t *testing.T, ctx context.Context, cmd *exec.Cmd, files ...*os.File) (*qemuRun, error) {
	t.Helper()
	conn, qmpChild, err := guest.Socketpair("qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	vm := &qemuRun{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = vm.stderr
	cmd.ExtraFiles = append([]*os.File{qmpChild}, files...)
	err = cmd.Start()
	qmpChild.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait() // killed at cleanup: how it ended is not under test
		close(vm.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-vm.exited
	})
	if vm.qmp, err = qmp.New(ctx, conn); err != nil {
		return vm, err
	}
	t.Cleanup(func() { vm.qmp.Close() })
	return vm, nil
}
