package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// installSecret is the install's password: it must appear nowhere but in
// the answer ISO.
const installSecret = "Inst4ll-S3cret-pw"

// installISOs are the stand-in media inside the host: an "Ubuntu" ISO whose
// casper kernel and initrd are the test guest's, so the real extraction and
// direct boot run the test guest as the installer; an ISO of no known
// layout; a virtio-win stand-in.
type installISOs struct{ ubuntu, plain, virtioWin string }

var (
	isoOnce sync.Once
	isoSet  installISOs
	isoErr  error
)

func (b *bed) installISOs(t *testing.T) installISOs {
	t.Helper()
	isoOnce.Do(func() { isoSet, isoErr = b.buildInstallISOs() })
	if isoErr != nil {
		t.Fatalf("install ISOs: %v", isoErr)
	}
	return isoSet
}

//nolint:contextcheck // built once for the whole run, on its own deadline, whichever test asks first
func (b *bed) buildInstallISOs() (installISOs, error) {
	ctx, cancel := context.WithTimeout(context.Background(), guest.BuildTimeout)
	defer cancel()
	img, err := guest.Ensure(ctx, "")
	if err != nil {
		return installISOs{}, err
	}
	kernel, err := os.ReadFile(img.Kernel)
	if err != nil {
		return installISOs{}, err
	}
	initrd, err := os.ReadFile(img.Initrd)
	if err != nil {
		return installISOs{}, err
	}
	set := installISOs{
		ubuntu:    imagesDir + "/ubuntu-standin.iso",
		plain:     imagesDir + "/plain.iso",
		virtioWin: imagesDir + "/virtio-win.iso",
	}
	images := []struct {
		path, label string
		files       []isoimage.File
	}{
		{set.ubuntu, "UBUNTU_STANDIN", []isoimage.File{
			{Path: "casper/vmlinuz", Data: kernel}, {Path: "casper/initrd", Data: initrd},
			{Path: "boot/grub/grub.cfg", Data: []byte("linux /casper/vmlinuz ---\n")},
		}},
		{set.plain, "PLAIN", []isoimage.File{{Path: "README.TXT", Data: []byte("no installer here\n")}}},
		{set.virtioWin, "VIRTIO_WIN", []isoimage.File{{Path: "README.TXT", Data: []byte("drivers\n")}}},
	}
	for _, im := range images {
		// Written from outside straight into the host's root; QEMU reads
		// shared ISOs as its own user, so they are world-readable.
		dst := b.host.Path(im.path)
		if err := isoimage.Write(ctx, dst, isoimage.Options{Label: im.label, NoJoliet: true}, im.files); err != nil {
			return installISOs{}, err
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return installISOs{}, err
		}
	}
	return set, nil
}

func installConfig(hostname string) *api.InstallConfig {
	return &api.InstallConfig{
		Username: "tester", Password: installSecret, Locale: "en_US", Timezone: "Europe/Madrid", Hostname: hostname,
	}
}

// ubuntuInstallInput is the test guest, booted as the Ubuntu installer from
// the stand-in ISO with the guest's own settings as extra kernel arguments.
func (b *bed) ubuntuInstallInput(t *testing.T, name, guestArgs string) api.CreateVMInput {
	in, ip := b.vmInput(name)
	in.Boot = nil
	in.OS = "ubuntu"
	in.ISOPath = b.installISOs(t).ubuntu
	in.Install = &api.InstallRequest{
		Config:     installConfig(name),
		KernelArgs: fmt.Sprintf("console=ttyS0 panic=-1 tg.ip=%s/24 tg.host=%s %s", ip, name, guestArgs),
	}
	return in
}

// qemuArgv is the running QEMU's command line inside the host, one
// argument per element.
func (b *bed) qemuArgv(t *testing.T, pid int) []string {
	t.Helper()
	raw, err := os.ReadFile(b.host.Path(fmt.Sprintf("/proc/%d/cmdline", pid)))
	if err != nil {
		t.Fatalf("QEMU's command line: %v", err)
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}

// vmEvents reads the VM's whole event log inside the host.
func (b *bed) vmEvents(t *testing.T, id string) []api.Event {
	t.Helper()
	raw := b.run(t, "cat", vmspec.DefaultLayout.EventsFile(id))
	var evs []api.Event
	for _, line := range strings.Split(raw, "\n") {
		var e api.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("event log line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// inOrder checks that the log holds entries matching each of want, in
// that order, and returns the describing line of each match.
func inOrder(t *testing.T, evs []api.Event, want ...string) {
	t.Helper()
	i := 0
	var seen []string
	for _, e := range evs {
		line := fmt.Sprintf("%s %s %s %s", e.Type, e.Status, e.Reason, e.Message)
		seen = append(seen, line)
		if i < len(want) && regexp.MustCompile(want[i]).MatchString(line) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("event log lacks %q after the earlier matches; log:\n%s", want[i], strings.Join(seen, "\n"))
	}
}

func argvHas(argv []string, sub string) bool {
	for _, a := range argv {
		if strings.Contains(a, sub) {
			return true
		}
	}
	return false
}

// TestInstallFlow runs the unattended-install flow end to end with the
// test guest as the installer: it reboots once (as installers do), then
// powers itself off. The VM goes building → off (installed) → running from
// its disk, with the media detached and the answer ISO deleted.
func TestInstallFlow(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	in := b.ubuntuInstallInput(t, "installer", "tg.poweroff_after=10")
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	if vm.Status != api.StatusBuilding || vm.Reason != api.ReasonInstalling {
		t.Fatalf("created VM is %s (%s), want building (installing)", vm.Status, vm.Reason)
	}
	if vm.Install == nil || vm.Install.State != api.InstallRunning || vm.Install.TimeoutSec != 45*60 || !vm.Install.BootFromDiskAfter {
		t.Fatalf("install view %+v", vm.Install)
	}
	l := vmspec.DefaultLayout
	answers := l.AnswerISO(vm.ID)
	argv := b.qemuArgv(t, vm.QEMUPID)
	for _, want := range []string{l.InstallDir(vm.ID) + "/vmlinuz", "autoinstall ds=nocloud console=ttyS0", in.ISOPath, answers, `"id":"cd1"`} {
		if !argvHas(argv, want) {
			t.Errorf("the installer's QEMU lacks %q: %q", want, argv)
		}
	}
	if mode := b.run(t, "stat", "-c", "%a %U", answers); mode != "600 infinivirt-qemu" {
		t.Errorf("answer ISO is %s, want mode 600 owned by QEMU's user", mode)
	}

	// The installer reboots the guest once: a reset the shim counts.
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if err := b.shim(vm.ID).ConsoleInput(ctx, []byte("reboot -f\n")); err != nil {
		t.Fatal(err)
	}
	done := b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	if done.Install == nil || done.Install.State != api.InstallDone || done.Install.DurationSec <= 0 || done.Install.FinishedAt == nil {
		t.Fatalf("install after the flow: %+v", done.Install)
	}
	if done.ISOPath != "" || done.Boot != nil {
		t.Errorf("media still in the spec: isoPath %q boot %+v", done.ISOPath, done.Boot)
	}
	inOrder(t, b.vmEvents(t, vm.ID),
		`^progress +install media attached: OS ISO .*ubuntu-standin.iso, answer ISO .*answers.iso, installer kernel`,
		`^status building installing the ubuntu installer runs`,
		`^progress +installer booted \(booting its kernel directly\)`,
		`^guest +RESET`,
		`^progress +installer rebooted the guest \(reset 1\)`,
		`^progress +install complete`,
		`^status off installed the ubuntu install finished after`,
		`^progress +install done after .*: media detached, answer ISO deleted`,
		`^status starting installed`,
		`^status running booted`,
	)
	// Booted from its disk: no CD-ROM, no kernel; the temporary media are gone.
	argv = b.qemuArgv(t, done.QEMUPID)
	for _, gone := range []string{"ide-cd", "-kernel", "answers.iso", in.ISOPath} {
		if argvHas(argv, gone) {
			t.Errorf("the installed system's QEMU still has %q: %q", gone, argv)
		}
	}
	if out, err := b.try("ls", "-A", l.VMDir(vm.ID)); err != nil || strings.Contains(out, "install") {
		t.Errorf("the install directory is still there: %s (%v)", out, err)
	}
	b.waitDB(t, vm.ID, api.StatusRunning, api.ReasonBooted)

	// The install's password is only ever in the (now deleted) answer ISO.
	_, body, err := b.client.RawRequest(ctx, http.MethodGet, "/v1/vms/"+vm.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{
		"the API's answer": string(body),
		"the event log":    b.run(t, "cat", l.EventsFile(vm.ID)),
		"the spec":         b.run(t, "cat", l.SpecFile(vm.ID)),
		"the journal":      b.run(t, "journalctl", "--no-pager", "-o", "verbose"),
	} {
		if strings.Contains(text, installSecret) {
			t.Errorf("the install password is in %s", what)
		}
	}
}

// TestInstallTimeout: an installer that never finishes ends in error
// (install-timeout), stopped, with its media kept for inspection.
func TestInstallTimeout(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in := b.ubuntuInstallInput(t, "stuck", "")
	in.Install.TimeoutMinutes = 0.1 // six seconds; the guest never powers off
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	if vm.Status != api.StatusBuilding {
		t.Fatalf("created VM is %s (%s)", vm.Status, vm.Reason)
	}
	failed := b.waitStatus(t, vm.ID, api.StatusError, api.ReasonInstallTimeout)
	if !strings.Contains(failed.Message, "did not finish within 6s") {
		t.Errorf("message %q", failed.Message)
	}
	b.eventually(t, time.Minute, func() error {
		v, err := b.client.Get(ctx, vm.ID)
		if err != nil {
			return err
		}
		if v.Install == nil || v.Install.State != api.InstallFailed || v.Install.Message != failed.Message {
			return fmt.Errorf("install view %+v", v.Install)
		}
		if v.ISOPath != in.ISOPath {
			return fmt.Errorf("isoPath %q: the media must stay attached in the spec", v.ISOPath)
		}
		return nil
	})
	l := vmspec.DefaultLayout
	b.run(t, "test", "-s", l.AnswerISO(vm.ID))
	b.run(t, "test", "-s", l.InstallDir(vm.ID)+"/vmlinuz")
	// A failed install is not a clean end: the unit says so (exit 73).
	b.eventually(t, time.Minute, func() error {
		if st := b.unitProperty(t, vm.ID, "ActiveState"); st != "failed" {
			return fmt.Errorf("the unit is %s after the install failed, want failed", st)
		}
		return nil
	})
	inOrder(t, b.vmEvents(t, vm.ID),
		`^status building installing`,
		`^status error install-timeout`,
		`^progress +install failed \(install-timeout\).*media kept for inspection`,
	)
	b.waitDB(t, vm.ID, api.StatusError, api.ReasonInstallTimeout)
}

// TestWindows11TPMAndSecureBoot starts a Windows 11 install (dummy media,
// empty disk): Secure Boot OVMF and a real swtpm, which query-tpm shows
// and which ends with the VM, after a forced power-off and after the shim
// itself is killed.
func TestWindows11TPMAndSecureBoot(t *testing.T) {
	b := setup(t)
	for _, f := range []string{"/usr/bin/swtpm", "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%v (Debian packages swtpm and ovmf)", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	isos := b.installISOs(t)
	in, _ := b.vmInput("win11")
	in.Boot = nil
	in.OS = "windows11"
	in.RAMGB = 0.5
	in.ISOPath = isos.plain
	in.VirtioWinPath = isos.virtioWin
	in.Install = &api.InstallRequest{Config: installConfig("win11")}
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	if vm.Status != api.StatusBuilding || vm.Firmware != "uefi-secure-boot" || !vm.TPM || vm.Install.TimeoutSec != 120*60 ||
		vm.Platform != vmspec.PlatformWindows || !vm.Audio {
		t.Fatalf("created %s (%s) firmware %q tpm %v install %+v platform %q audio %v", vm.Status, vm.Reason, vm.Firmware, vm.TPM, vm.Install, vm.Platform, vm.Audio)
	}
	l := vmspec.DefaultLayout
	argv := b.qemuArgv(t, vm.QEMUPID)
	for _, want := range []string{"q35,smm=on,pflash0=fw-code,pflash1=fw-vars", "OVMF_CODE_4M.secboot.fd", l.UEFIVars(vm.ID),
		"driver=cfi.pflash01,property=secure,value=on", `"driver":"tpm-crb"`, "emulator,id=tpm0,chardev=tpm",
		isos.plain, isos.virtioWin, l.AnswerISO(vm.ID),
		// The Windows platform and the sound card (the test bed runs TCG).
		"hpet=off", "hv-relaxed=on", qemu.WindowsRTC, `"driver":"intel-hda"`} {
		if !argvHas(argv, want) {
			t.Errorf("QEMU lacks %q: %q", want, argv)
		}
	}
	swtpmPID := b.swtpmOf(t, vm.ID, 1)
	if uid := b.run(t, "sh", "-c", fmt.Sprintf("grep ^Uid: /proc/%d/status | cut -f2", swtpmPID)); uid == "0" {
		t.Error("swtpm runs as root, not as QEMU's user")
	}

	// Forced off: swtpm goes with QEMU.
	if _, err := b.client.Power(ctx, vm.ID, api.ForcePowerOff, true, guestTimeout); err != nil {
		t.Fatal(err)
	}
	b.waitGone(t, swtpmPID)
	b.run(t, "sh", "-c", "ls "+l.TPMStateDir(vm.ID)+" | grep -q tpm2") // the TPM's state stays with the VM

	// Powered on again, the install runs again, with a fresh swtpm; then
	// the shim is SIGKILLed and the unit's KillMode=mixed takes swtpm too.
	if v, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, guestTimeout); err != nil || v.Status != api.StatusBuilding {
		t.Fatalf("power on: %v %+v", err, v)
	}
	swtpmPID = b.swtpmOf(t, vm.ID, 2)
	b.run(t, "systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", vmspec.UnitName(vm.ID))
	b.waitGone(t, swtpmPID)
	b.waitStatus(t, vm.ID, api.StatusError, api.ReasonShimLost)
}

// swtpmOf finds the nth "tpm 2.0 present" event of the VM and returns the
// swtpm PID it names, checking the process serves this VM's state.
func (b *bed) swtpmOf(t *testing.T, id string, nth int) int {
	t.Helper()
	re := regexp.MustCompile(`^tpm 2\.0 present: tpm-crb on swtpm \(pid (\d+)\)$`)
	var pid int
	b.eventually(t, time.Minute, func() error {
		n := 0
		for _, e := range b.vmEvents(t, id) {
			if m := re.FindStringSubmatch(e.Message); m != nil {
				if n++; n == nth {
					pid, _ = strconv.Atoi(m[1])
					return nil
				}
			}
		}
		return fmt.Errorf("no %d. tpm event yet", nth)
	})
	cmdline, err := os.ReadFile(b.host.Path(fmt.Sprintf("/proc/%d/cmdline", pid)))
	if err != nil || !strings.Contains(string(cmdline), "swtpm") ||
		!strings.Contains(string(cmdline), filepath.Join(vmspec.DefaultLayout.VMDir(id), "tpm")) {
		t.Fatalf("pid %d is not this VM's swtpm: %q (%v)", pid, cmdline, err)
	}
	return pid
}

// waitGone waits until the host has no process pid (a zombie counts as gone).
func (b *bed) waitGone(t *testing.T, pid int) {
	t.Helper()
	b.eventually(t, time.Minute, func() error {
		st, err := os.ReadFile(b.host.Path(fmt.Sprintf("/proc/%d/status", pid)))
		if err != nil || strings.Contains(string(st), "\nState:\tZ") {
			return nil
		}
		return fmt.Errorf("process %d is still alive", pid)
	})
}

// TestInstallBadInputLeavesNothing: refused installs name the field and
// leave no directory, unit or TAP, including one refused only after its
// answer ISO was built (an ISO of no known Ubuntu layout).
func TestInstallBadInputLeavesNothing(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	isos := b.installISOs(t)
	cases := []struct {
		name, field string
		mutate      func(*api.CreateVMInput)
	}{
		{"unknown OS", "install.os", func(in *api.CreateVMInput) { in.Install.OS = "beos" }},
		{"no install for the VM's OS", "install.os", func(in *api.CreateVMInput) { in.OS = "linux" }},
		{"no ISO", "isoPath", func(in *api.CreateVMInput) { in.ISOPath = "" }},
		{"missing ISO", "isoPath", func(in *api.CreateVMInput) { in.ISOPath = imagesDir + "/nonexistent.iso" }},
		{"empty username", "install.config.username", func(in *api.CreateVMInput) {
			in.Install.Config = &api.InstallConfig{Username: "", Password: installSecret, Locale: "en_US", Timezone: "UTC", Hostname: "h"}
		}},
		{"password too short for Fedora", "install.config.password", func(in *api.CreateVMInput) {
			in.OS = "fedora"
			in.Install.Config = &api.InstallConfig{Username: "tester", Password: "abc", Locale: "en_US", Timezone: "UTC", Hostname: "h"}
		}},
		{"password with a newline", "install.config.password", func(in *api.CreateVMInput) {
			in.Install.Config = &api.InstallConfig{Username: "tester", Password: "a\nb", Locale: "en_US", Timezone: "UTC", Hostname: "h"}
		}},
		{"not an Ubuntu ISO (refused after the answer ISO was built)", "isoPath", func(in *api.CreateVMInput) { in.ISOPath = isos.plain }},
	}
	before := b.footprint(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := b.ubuntuInstallInput(t, "bad", "")
			tc.mutate(&in)
			body, _ := json.Marshal(in)
			resp := b.expectRefusal(t, ctx, body, errdefs.CodeInvalidArgument, tc.field)
			if strings.Contains(string(resp), installSecret) {
				t.Fatalf("the refusal repeats the password: %s", resp)
			}
		})
	}
	// The config is decoded as strictly as the rest of the body.
	for body, field := range map[string]string{
		`{"install":{"config":{"username":"tester","passwd":"` + installSecret + `"}}}`: "install.config.passwd",
		`{"install":{"config":{"username":"tester","hostname":7}}}`:                     "install.config.hostname",
	} {
		if resp := b.expectRefusal(t, ctx, []byte(body), errdefs.CodeInvalidArgument, field); strings.Contains(string(resp), installSecret) {
			t.Fatalf("the refusal repeats the password: %s", resp)
		}
	}
	// The CLI takes the config from a file and shows the refusal's field.
	cfg := "/tmp/install-empty-user.json"
	if err := os.WriteFile(b.host.Path(cfg), []byte(`{"username":"","password":"`+installSecret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := b.try("sh", "-c", "INFINIVIRT_GRAPHIC_PASSWORD=pw infinivirtctl vm create --name cli --uuid "+
		"3b241101-e2bb-4255-8caf-4136c566a962 --os ubuntu --bridge "+bridgeName+" --iso "+isos.ubuntu+
		" --install-config "+cfg+" 2>&1")
	if err == nil || !strings.Contains(out, "install.config.username") || strings.Contains(out, installSecret) {
		t.Errorf("infinivirtctl with an empty install username: %v\n%s", err, out)
	}
	if after := b.footprint(t); after != before {
		t.Fatalf("refused installs left state behind:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestInstallSettlesAfterAgentRestart: an install that ends while the agent
// is down is settled when the agent comes back, from the event log alone.
func TestInstallSettlesAfterAgentRestart(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in := b.ubuntuInstallInput(t, "unattended", "tg.poweroff_after=3")
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	b.run(t, "systemctl", "kill", "--signal=SIGKILL", "infinivirt-agent.service")
	t.Cleanup(func() {
		if out, err := b.try("systemctl", "start", "infinivirt-agent.service"); err != nil {
			t.Errorf("restart the agent: %v: %s", err, out)
		}
	})
	b.eventually(t, guestTimeout, func() error {
		if s := b.unitProperty(t, vm.ID, "ActiveState"); s != "inactive" {
			return fmt.Errorf("the installer's unit is %s", s)
		}
		return nil
	})
	inOrder(t, b.vmEvents(t, vm.ID), `^status off installed`)

	b.run(t, "systemctl", "start", "infinivirt-agent.service")
	done := b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	if done.Install == nil || done.Install.State != api.InstallDone || done.ISOPath != "" {
		t.Fatalf("after the agent came back: install %+v, isoPath %q", done.Install, done.ISOPath)
	}
	inOrder(t, b.vmEvents(t, vm.ID), `^status off installed`, `^progress +install done after`, `^status starting installed`)
	if _, err := b.try("test", "-e", vmspec.DefaultLayout.InstallDir(vm.ID)); err == nil {
		t.Error("the install directory survived the settle")
	}
}
