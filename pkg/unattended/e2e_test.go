package unattended

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/isoimage"
	"github.com/infinibay/infinivirt/pkg/unattended/internal/testassets"
	"github.com/infinibay/infinivirt/pkg/unattended/sha512crypt"
)

// TestCloudConfigOnRealGuest boots a Debian guest that runs cloud-init (TCG)
// with a CIDATA ISO built from CloudConfig, and proves from the serial
// console and from the disk after power-off that the user, hostname,
// timezone, application command and first-boot script were applied.
func TestCloudConfigOnRealGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: boots a full guest under TCG")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages qemu-system-x86, qemu-utils, e2fsprogs)", tool)
		}
	}
	buildCtx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	img, err := testassets.BuildDebianImage(buildCtx)
	if errors.Is(err, testassets.ErrUnavailable) {
		t.Skipf("Debian cloud-init image: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}

	const marker = `INFINIVIRT-FIRSTBOOT`
	tricky := `<&>'"#: {x} [y] *z`
	cfg := InstallConfig{
		Username: "alice",
		Password: `s3cret: "quoted" & <xml> #hash`,
		Locale:   "es_ES",
		Timezone: "Europe/Madrid",
		Hostname: "ivt-e2e",
		Applications: []Application{
			{Name: "Marker app", Command: "echo app-ran > /root/app-ran"},
		},
		FirstBootScripts: []Script{{
			Name: "Report to the console",
			Content: "#!/bin/sh\ncat > /root/tricky <<'EOF'\n" + tricky + "\nEOF\n" +
				`echo "` + marker + ` host=$(hostname) user=$(id -un alice) tricky=$(cat /root/tricky)" > /dev/ttyS0` + "\n",
		}},
	}
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.iso")
	if err := BuildCloudConfigISO(context.Background(), cfg, CloudOptions{PowerOff: true}, seed); err != nil {
		t.Fatal(err)
	}
	im, err := isoimage.Open(seed)
	if err != nil {
		t.Fatal(err)
	}
	userData, _ := im.ReadFile("user-data")
	im.Close()
	wantHash, _ := dig(mustParseYAML(t, userData), "users", 0, "hashed_passwd").(string)

	overlay := filepath.Join(dir, "run.qcow2")
	tool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Disk, "-F", "qcow2", overlay)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", "root=/dev/vda rw console=ttyS0 panic=-1",
		"-drive", "file="+overlay+",if=none,id=d0,format=qcow2", "-device", "virtio-blk-pci,drive=d0",
		"-drive", "file="+seed+",if=none,id=cd0,media=cdrom,readonly=on,format=raw", "-device", "ide-cd,drive=cd0,bus=ide.0",
		"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0")
	var serial bytes.Buffer
	qemu.Stdout, qemu.Stderr = &serial, &serial
	start := time.Now()
	err = qemu.Run()
	t.Logf("guest ran %.1f s until it powered off", time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("QEMU: %v (the guest should power itself off)\n%s", err, tail(serial.String(), 4000))
	}
	want := marker + " host=ivt-e2e user=alice tricky=" + tricky
	if !strings.Contains(serial.String(), want) {
		t.Fatalf("serial console lacks %q:\n%s", want, tail(serial.String(), 4000))
	}

	// Offline checks on the guest's disk.
	raw := filepath.Join(dir, "disk.raw")
	tool(t, "qemu-img", "convert", "-O", "raw", overlay, raw)
	cat := func(path string) string { return tool(t, "debugfs", "-R", "cat "+path, raw) }
	if got := strings.TrimSpace(cat("/etc/hostname")); got != "ivt-e2e" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if !strings.Contains(cat("/etc/passwd"), "\nalice:x:") {
		t.Error("/etc/passwd has no alice")
	}
	var gotHash string
	for _, l := range strings.Split(cat("/etc/shadow"), "\n") {
		if f := strings.Split(l, ":"); len(f) > 1 && f[0] == "alice" {
			gotHash = f[1]
		}
	}
	if gotHash != wantHash {
		t.Errorf("alice's hash in /etc/shadow = %q, want the user-data's %q", gotHash, wantHash)
	}
	if ok, _ := sha512crypt.Verify(cfg.Password, gotHash); !ok {
		t.Error("the password does not verify against /etc/shadow")
	}
	if got := strings.TrimSpace(cat("/etc/timezone")); got != "Europe/Madrid" {
		t.Errorf("/etc/timezone = %q", got)
	}
	if !strings.Contains(cat("/etc/sudoers.d/90-cloud-init-users"), "alice ALL=(ALL:ALL) ALL") {
		t.Error("alice has no sudo rule")
	}
	if got := strings.TrimSpace(cat("/root/app-ran")); got != "app-ran" {
		t.Errorf("the application command did not run: /root/app-ran = %q", got)
	}
	if got := strings.TrimSpace(cat("/root/tricky")); got != tricky {
		t.Errorf("/root/tricky = %q, want %q", got, tricky)
	}
	if !strings.Contains(cat("/etc/default/locale"), "LANG=es_ES.UTF-8") {
		t.Errorf("/etc/default/locale = %q", cat("/etc/default/locale"))
	}
	if kb := cat("/etc/default/keyboard"); !strings.Contains(kb, "XKBLAYOUT=es\n") && !strings.Contains(kb, `XKBLAYOUT="es"`) {
		t.Errorf("/etc/default/keyboard = %q", cat("/etc/default/keyboard"))
	}
	var result struct {
		V1 struct {
			Datasource string   `json:"datasource"`
			Errors     []string `json:"errors"`
		} `json:"v1"`
	}
	if err := json.Unmarshal([]byte(cat("/var/lib/cloud/data/result.json")), &result); err != nil {
		t.Fatalf("cloud-init result.json: %v", err)
	}
	if !strings.Contains(result.V1.Datasource, "NoCloud") || len(result.V1.Errors) != 0 {
		t.Errorf("cloud-init result: datasource %q, errors %q", result.V1.Datasource, result.V1.Errors)
	}
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return stdout.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
