// Package testassets provides what the unattended tests need from outside
// Go: the cloud-init schema validator unpacked from its Debian package, and a
// Debian minbase + cloud-init guest image. Both are built once into the
// repository's git-ignored .cache directory (or $INFINIVIRT_CACHE), under a
// file lock so parallel test runs share one build.
package testassets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CacheDir returns $INFINIVIRT_CACHE, or .cache beside the go.mod found by
// walking up from the working directory, creating it.
func CacheDir() (string, error) {
	dir := os.Getenv("INFINIVIRT_CACHE")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, ".cache")
				break
			}
			if filepath.Dir(d) == d {
				return "", fmt.Errorf("testassets: no go.mod above %s; set INFINIVIRT_CACHE", wd)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// withLock runs fn holding an exclusive flock on path.
func withLock(ctx context.Context, path string, fn func() error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("testassets: flock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testassets: waiting for %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	// Closing f releases the lock even if unlocking failed.
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	return fn()
}

// ToolError is a failed external command with its output.
type ToolError struct {
	Cmd    string
	Err    error
	Output string
}

func (e *ToolError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 4000 {
		out = "..." + out[len(out)-4000:]
	}
	return fmt.Sprintf("%s: %v\n%s", e.Cmd, e.Err, out)
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), &ToolError{Cmd: name + " " + strings.Join(args, " "), Err: err, Output: out.String()}
	}
	return out.String(), nil
}

// buildOnce makes dir by running build into a fresh temp directory beside
// it and renaming that into place, under a lock. A finished dir is reused.
func buildOnce(ctx context.Context, dir string, build func(tmp string) error) error {
	return withLock(ctx, dir+".lock", func() error {
		if _, err := os.Stat(filepath.Join(dir, ".ready")); err == nil {
			return nil
		}
		if err := os.RemoveAll(dir); err != nil { // an unfinished build
			return err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".build-*")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }() // renamed into place unless the build failed
		if err := build(tmp); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, ".ready"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	})
}

// Python is Debian's interpreter, which sees the python3-* packages (a
// pyenv python3 earlier on PATH would not).
const Python = "/usr/bin/python3"

// cloudInitPythonDeps are the Debian packages cloud-init's schema command
// imports; they are installed with apt, cloud-init itself never is.
var cloudInitPythonDeps = []string{"python3-yaml", "python3-jsonschema", "python3-jinja2", "python3-configobj",
	"python3-requests", "python3-jsonpatch", "python3-netifaces", "python3-oauthlib", "python3-serial"}

// ErrUnavailable says a tool cannot be had on this machine; tests skip on it.
var ErrUnavailable = errors.New("unavailable")

// CloudInit returns the root of the cloud-init Debian package unpacked
// (never installed: installed, it adds a systemd generator) into the cache.
func CloudInit(ctx context.Context) (string, error) {
	if _, err := os.Stat(Python); err != nil {
		return "", fmt.Errorf("%w: %s is missing", ErrUnavailable, Python)
	}
	if _, err := run(ctx, "", nil, Python, "-c", "import yaml, jsonschema, jinja2, configobj, requests, jsonpatch, netifaces, oauthlib, serial"); err != nil {
		return "", fmt.Errorf("%w: cloud-init's python modules are missing; apt-get install %s: %v",
			ErrUnavailable, strings.Join(cloudInitPythonDeps, " "), err)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "cloud-init-deb")
	err = buildOnce(ctx, dir, func(tmp string) error {
		if _, err := run(ctx, tmp, nil, "apt-get", "download", "cloud-init"); err != nil {
			return fmt.Errorf("%w: apt-get download cloud-init: %v", ErrUnavailable, err)
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "cloud-init_*.deb"))
		if len(debs) != 1 {
			return fmt.Errorf("testassets: apt-get download left %d cloud-init debs", len(debs))
		}
		if _, err := run(ctx, tmp, nil, "dpkg-deb", "-x", debs[0], filepath.Join(tmp, "root")); err != nil {
			return err
		}
		return os.Remove(debs[0])
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "root"), nil
}

// CloudInitSchema runs `cloud-init schema --config-file` on file and
// returns its output; a schema error is a *ToolError carrying that output.
func CloudInitSchema(ctx context.Context, root, file string) (string, error) {
	env := []string{"PYTHONPATH=" + filepath.Join(root, "usr/lib/python3/dist-packages")}
	return run(ctx, "", env, Python, filepath.Join(root, "usr/bin/cloud-init"), "schema", "--config-file", file)
}

// DebianImage is a bootable Debian 12 minbase guest with cloud-init whose
// only datasource is NoCloud; boot Kernel and Initrd directly with
// "root=/dev/vda rw console=ttyS0" and an overlay on Disk.
type DebianImage struct {
	Kernel, Initrd, Disk string
}

// debianRecipe is the mmdebstrap command line; changing it changes the
// cache key, so the image is rebuilt.
var debianRecipe = []string{
	"--variant=minbase", "--mode=root",
	"--include=systemd-sysv,udev,dbus,cloud-init,linux-image-amd64,initramfs-tools,isc-dhcp-client,ifupdown,iproute2,netbase,sudo,e2fsprogs,locales,console-setup,tzdata",
	// Debian's locale-gen ignores the locale cloud-init passes it (Ubuntu's
	// takes it), so the image carries the locales the tests ask for.
	`--customize-hook=printf "en_US.UTF-8 UTF-8\nes_ES.UTF-8 UTF-8\n" >> "$1/etc/locale.gen"; chroot "$1" locale-gen`,
	`--customize-hook=echo "/dev/vda / ext4 defaults 0 1" > "$1/etc/fstab"`,
	`--customize-hook=printf "datasource_list: [ NoCloud, None ]\n" > "$1/etc/cloud/cloud.cfg.d/99-ds.cfg"`,
	`--customize-hook=rm -f "$1/etc/hostname" "$1/etc/machine-id"; touch "$1/etc/machine-id"`,
	"bookworm",
}

const debianMirror = "http://deb.debian.org/debian"

// BuildDebianImage builds the image once (about 80 s plus the download)
// and returns it from the cache afterwards.
func BuildDebianImage(ctx context.Context) (DebianImage, error) {
	for _, tool := range []string{"mmdebstrap", "mke2fs", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			return DebianImage{}, fmt.Errorf("%w: %s is not installed (Debian packages mmdebstrap, e2fsprogs, qemu-utils)", ErrUnavailable, tool)
		}
	}
	if os.Geteuid() != 0 {
		return DebianImage{}, fmt.Errorf("%w: mmdebstrap --mode=root needs root", ErrUnavailable)
	}
	cache, err := CacheDir()
	if err != nil {
		return DebianImage{}, err
	}
	sum := sha256.Sum256([]byte(strings.Join(debianRecipe, "\x00") + debianMirror))
	dir := filepath.Join(cache, "debian-cloudinit-"+hex.EncodeToString(sum[:6]))
	err = buildOnce(ctx, dir, func(tmp string) error {
		rootfs := filepath.Join(tmp, "rootfs")
		args := append(append([]string{}, debianRecipe...), rootfs, debianMirror)
		if _, err := run(ctx, tmp, nil, "mmdebstrap", args...); err != nil {
			return err
		}
		for _, f := range []string{"vmlinuz", "initrd.img"} {
			b, err := os.ReadFile(filepath.Join(rootfs, f)) // symlinks into /boot
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
				return err
			}
		}
		raw := filepath.Join(tmp, "disk.raw")
		if _, err := run(ctx, tmp, nil, "mke2fs", "-q", "-t", "ext4", "-L", "rootfs", "-d", rootfs, raw, "2G"); err != nil {
			return err
		}
		if _, err := run(ctx, tmp, nil, "qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(tmp, "disk.qcow2")); err != nil {
			return err
		}
		return errors.Join(os.Remove(raw), os.RemoveAll(rootfs))
	})
	if err != nil {
		return DebianImage{}, err
	}
	pruneStale(cache, "debian-cloudinit-", filepath.Base(dir))
	return DebianImage{
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
		Disk:   filepath.Join(dir, "disk.qcow2"),
	}, nil
}

// pruneStale removes images of older recipes that no run holds locked.
func pruneStale(cache, prefix, keep string) {
	old, _ := filepath.Glob(filepath.Join(cache, prefix+"*"))
	for _, d := range old {
		if filepath.Base(d) == keep || strings.HasSuffix(d, ".lock") {
			continue
		}
		f, err := os.OpenFile(d+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			continue
		}
		// Best effort: an image left over is pruned by the next run.
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(d)
			_ = os.Remove(d + ".lock")
		}
		f.Close()
	}
}
