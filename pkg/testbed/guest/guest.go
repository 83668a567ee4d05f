// Package guest builds and drives the tiny real guest that Infinivirt's
// tests boot under QEMU: a Debian kernel with a busybox-static initramfs,
// booted with -kernel/-initrd. It comes up in seconds under TCG, reports on
// its serial console, answers ACPI power-button presses, and leaves a shell
// on the console for tests to script.
//
// The image is built once from Debian packages and cached; every test
// process that calls Ensure gets the same files.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package guest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RecipeVersion names the build recipe. Bump it when the build changes in
// a way the embedded files do not show; Ensure then builds anew.
const RecipeVersion = "1"

// BuildTimeout bounds one build: two package downloads (about 70 MB) and
// a few seconds of packing.
const BuildTimeout = 10 * time.Minute

// CacheEnv overrides the repository's .cache directory.
const CacheEnv = "INFINIVIRT_CACHE"

var (
	//go:embed files/init
	initScript []byte
	//go:embed files/powerbutton
	powerButtonScript []byte
)

// Image is a built guest.
type Image struct {
	Kernel        string // bzImage, for -kernel
	Initrd        string // gzip'd newc initramfs, for -initrd
	KernelVersion string // e.g. 6.1.0-56-amd64
}

// BuildError is a failed step of the build, with the tool's own words.
type BuildError struct {
	Step   string
	Stderr string
	Err    error
}

func (e *BuildError) Error() string {
	if msg := strings.TrimSpace(e.Stderr); msg != "" {
		return fmt.Sprintf("test guest build: %s: %v: %s", e.Step, e.Err, msg)
	}
	return fmt.Sprintf("test guest build: %s: %v", e.Step, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// Ensure returns the cached guest, building it first if needed. cacheDir
// may be empty for DefaultCacheDir. Concurrent callers, in this process
// or others, wait for one build and share its result.
func Ensure(ctx context.Context, cacheDir string) (*Image, error) {
	return ensure(ctx, cacheDir, recipeKey(), build)
}

// ensure is Ensure with the cache key and the build step as parameters.
func ensure(ctx context.Context, cacheDir, key string, build func(ctx context.Context, work string) error) (*Image, error) {
	if cacheDir == "" {
		var err error
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	dir := filepath.Join(cacheDir, key)
	if img, err := load(dir); err == nil {
		return img, nil
	}
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }() // renamed into place unless the build failed; a leftover is swept by removeStale
	if err := build(ctx, tmp); err != nil {
		return nil, err
	}
	// The rename publishes the image whole: a reader sees all of it or
	// nothing, even if this process dies here.
	if err := os.Rename(filepath.Join(tmp, "out"), dir); err != nil {
		return nil, err
	}
	removeStale(cacheDir, filepath.Base(dir))
	return load(dir)
}

// DefaultCacheDir is $INFINIVIRT_CACHE/testguest, or .cache/testguest at
// the root of the module this process runs in (found by walking up to
// go.mod).
func DefaultCacheDir() (string, error) {
	if c := os.Getenv(CacheEnv); c != "" {
		return filepath.Join(c, "testguest"), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "testguest"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("test guest: no go.mod above the working directory; set %s", CacheEnv)
		}
		dir = parent
	}
}

// recipeKey names the cache entry after everything that shapes the image.
func recipeKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", RecipeVersion, strings.Join(modules, " "))
	h.Write(initScript)
	h.Write(powerButtonScript)
	return "v" + RecipeVersion + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

func load(dir string) (*Image, error) {
	kv, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	if err != nil {
		return nil, err
	}
	img := &Image{
		Kernel:        filepath.Join(dir, "vmlinuz"),
		Initrd:        filepath.Join(dir, "initramfs.gz"),
		KernelVersion: strings.TrimSpace(string(kv)),
	}
	for _, p := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// removeStale deletes images of other recipe versions and leftovers of
// builds that died. It runs under the lock, so no build is in progress.
func removeStale(cacheDir, keep string) {
	entries, _ := os.ReadDir(cacheDir)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() && name != keep && (strings.HasPrefix(name, "v") || strings.HasPrefix(name, ".build-")) {
			_ = os.RemoveAll(filepath.Join(cacheDir, name)) // best effort: the next run tries again
		}
	}
}

// lock takes an exclusive flock on path, polling so that ctx can end the
// wait while another process builds.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the file drops the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("test guest: locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("test guest: waiting for another build: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
