package guest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// modules are what the guest loads at boot, before their dependencies are
// added: evdev and button for acpid's power button, virtio for disks, NICs,
// serial ports and the memory balloon, the CD-ROM stack for answer ISOs
// (ahci on q35), and sd_mod for the disks on virtio-scsi and AHCI (sda, sdb).
var modules = []string{
	"evdev", "button",
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_scsi", "virtio_balloon",
	"ahci", "ata_piix", "sr_mod", "sd_mod", "isofs",
}

// applets the init script cannot do without; a busybox lacking one fails
// the build instead of the boot.
var requiredApplets = []string{"sh", "mount", "modprobe", "depmod", "cpio", "ip", "acpid", "nc", "cttyhack", "setsid", "poweroff", "stty"}

var kernelPkgRE = regexp.MustCompile(`Depends:\s*(linux-image-[0-9][^\s]*)`)

// build makes vmlinuz, initramfs.gz and kernel-version in work/out.
func build(ctx context.Context, work string) error {
	out := filepath.Join(work, "out")
	debs := filepath.Join(work, "debs")
	for _, d := range []string{out, debs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// 1. The kernel package that linux-image-amd64 points at, and busybox.
	deps, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return err
	}
	m := kernelPkgRE.FindSubmatch(deps)
	if m == nil {
		return &BuildError{Step: "apt-cache depends linux-image-amd64", Err: fmt.Errorf("no linux-image-<version> dependency in %q", deps)}
	}
	kernelPkg := string(m[1])
	if _, err := run(ctx, debs, "apt-get", "download", kernelPkg, "busybox-static"); err != nil {
		return err
	}
	kdir, bbdir := filepath.Join(work, "kernel"), filepath.Join(work, "busybox")
	for pkg, dir := range map[string]string{kernelPkg: kdir, "busybox-static": bbdir} {
		debsOf, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(debsOf) != 1 {
			return &BuildError{Step: "apt-get download", Err: fmt.Errorf("expected one %s .deb, found %d", pkg, len(debsOf))}
		}
		if _, err := run(ctx, "", "dpkg-deb", "-x", debsOf[0], dir); err != nil {
			return err
		}
	}
	kversions, _ := os.ReadDir(filepath.Join(kdir, "lib", "modules"))
	if len(kversions) != 1 {
		return &BuildError{Step: "unpack kernel", Err: fmt.Errorf("expected one lib/modules/<version>, found %d", len(kversions))}
	}
	kv := kversions[0].Name()

	// 2. The root file system.
	root := filepath.Join(work, "root")
	busybox := filepath.Join(bbdir, "bin", "busybox")
	if err := makeRoot(ctx, root, busybox, filepath.Join(kdir, "lib", "modules", kv), kv); err != nil {
		return err
	}

	// 3. The images.
	if err := copyFile(filepath.Join(kdir, "boot", "vmlinuz-"+kv), filepath.Join(out, "vmlinuz"), 0o644); err != nil {
		return err
	}
	if err := packInitramfs(ctx, busybox, root, filepath.Join(out, "initramfs.gz")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "kernel-version"), []byte(kv+"\n"), 0o644)
}

func makeRoot(ctx context.Context, root, busybox, moduleDir, kv string) error {
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "root", "run", "var/run", "etc/acpi/PWRF", "lib/modules/" + kv} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	list, err := run(ctx, "", busybox, "--list")
	if err != nil {
		return err
	}
	applets := strings.Fields(string(list))
	for _, need := range requiredApplets {
		if !contains(applets, need) {
			return &BuildError{Step: "busybox --list", Err: fmt.Errorf("busybox has no %s applet", need)}
		}
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}

	mods, err := scanModules(moduleDir)
	if err != nil {
		return &BuildError{Step: "scan kernel modules", Err: err}
	}
	order, err := mods.closure(modules)
	if err != nil {
		return &BuildError{Step: "resolve kernel modules", Err: err}
	}
	for _, name := range order {
		rel, _ := filepath.Rel(filepath.Dir(filepath.Dir(moduleDir)), mods[name].path) // modules/<kv>/kernel/...
		dst := filepath.Join(root, "lib", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(mods[name].path, dst, 0o644); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "", busybox, "depmod", "-b", root, kv); err != nil {
		return err
	}
	files := map[string][]byte{
		"etc/modules.order":      []byte(strings.Join(order, "\n") + "\n"),
		"init":                   initScript,
		"etc/acpi/PWRF/00000080": powerButtonScript,
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if name != "etc/modules.order" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(root, name), data, mode); err != nil {
			return err
		}
	}
	return nil
}

// packInitramfs writes root as a gzip'd newc cpio archive, with busybox's
// cpio reading the file list in a stable order.
func packInitramfs(ctx context.Context, busybox, root, dst string) error {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, busybox, "cpio", "-o", "-H", "newc")
	cmd.Dir = root
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	cmd.Stdout, cmd.Stderr = zw, &stderr
	if err := cmd.Run(); err != nil {
		return &BuildError{Step: "busybox cpio", Stderr: stderr.String(), Err: err}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// run runs a build tool with a clean locale and returns its stdout.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &BuildError{Step: strings.Join(append([]string{filepath.Base(name)}, args...), " "), Stderr: lastLines(stderr.String(), 20), Err: err}
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, bufio.NewReader(in)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
