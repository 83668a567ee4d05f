package guest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBuild writes a pretend image and counts its calls.
func fakeBuild(calls *atomic.Int32) func(context.Context, string) error {
	return func(ctx context.Context, work string) error {
		calls.Add(1)
		out := filepath.Join(work, "out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		for name, data := range map[string]string{"vmlinuz": "k", "initramfs.gz": "i", "kernel-version": "6.1.0-test\n"} {
			if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestEnsureBuildsOnceForConcurrentCallers(t *testing.T) {
	cache := t.TempDir()
	var calls atomic.Int32
	var wg sync.WaitGroup
	images := make([]*Image, 6)
	errs := make([]error, len(images))
	for i := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			images[i], errs[i] = ensure(t.Context(), cache, "v9-test", fakeBuild(&calls))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if *images[i] != *images[0] {
			t.Errorf("caller %d got %+v, caller 0 %+v", i, images[i], images[0])
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
	if images[0].KernelVersion != "6.1.0-test" || filepath.Dir(images[0].Kernel) != filepath.Join(cache, "v9-test") {
		t.Errorf("image = %+v", images[0])
	}
	if names := dirNames(t, cache); !slices.Equal(names, []string{".lock", "v9-test"}) {
		t.Errorf("cache holds %v, want only the lock and the image", names)
	}
}

func TestEnsureRebuildsForANewRecipe(t *testing.T) {
	cache := t.TempDir()
	var calls atomic.Int32
	if _, err := ensure(t.Context(), cache, "v1-old", fakeBuild(&calls)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cache, ".build-dead"), 0o755); err != nil { // a build that died
		t.Fatal(err)
	}
	img, err := ensure(t.Context(), cache, "v2-new", fakeBuild(&calls))
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || filepath.Base(filepath.Dir(img.Kernel)) != "v2-new" {
		t.Errorf("calls = %d, image %+v: want a second build into v2-new", calls.Load(), img)
	}
	if names := dirNames(t, cache); !slices.Equal(names, []string{".lock", "v2-new"}) {
		t.Errorf("cache holds %v, want the old recipe and dead builds gone", names)
	}
}

func TestEnsureFailedBuildLeavesNothing(t *testing.T) {
	cache := t.TempDir()
	boom := errors.New("no network")
	_, err := ensure(t.Context(), cache, "v9-test", func(ctx context.Context, work string) error {
		if err := os.MkdirAll(filepath.Join(work, "out"), 0o755); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the build's error", err)
	}
	if names := dirNames(t, cache); !slices.Equal(names, []string{".lock"}) {
		t.Errorf("cache holds %v after a failed build", names)
	}
}

func TestEnsureWaitIsBoundByContext(t *testing.T) {
	cache := t.TempDir()
	unlock, err := lock(t.Context(), filepath.Join(cache, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var calls atomic.Int32
	if _, err := ensure(ctx, cache, "v9-test", fakeBuild(&calls)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ensure while another holds the lock = %v, want DeadlineExceeded", err)
	}
	unlock()
	if _, err := ensure(t.Context(), cache, "v9-test", fakeBuild(&calls)); err != nil {
		t.Errorf("ensure after the lock was released: %v", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv(CacheEnv, "/var/cache/infinivirt-ci")
	if d, err := DefaultCacheDir(); err != nil || d != "/var/cache/infinivirt-ci/testguest" {
		t.Errorf("with %s: %q, %v", CacheEnv, d, err)
	}
	t.Setenv(CacheEnv, "")
	d, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(d))
	if filepath.Base(d) != "testguest" || filepath.Base(filepath.Dir(d)) != ".cache" {
		t.Errorf("default %q, want <module root>/.cache/testguest", d)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("%s is not the module root: %v", root, err)
	}
}

func TestRecipeKeyFollowsEmbeddedFiles(t *testing.T) {
	before := recipeKey()
	saved := initScript
	t.Cleanup(func() { initScript = saved })
	initScript = append(slices.Clone(saved), '\n')
	if recipeKey() == before {
		t.Error("changing the init script does not change the cache key")
	}
}

func TestModuleClosure(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, modinfo string) {
		p := filepath.Join(dir, "kernel", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("\x7fELF junk\x00license=GPL\x00"+modinfo+"\x00name=x\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("drivers/virtio/virtio_pci.ko", "depends=virtio_pci_modern_dev,virtio,virtio_ring")
	write("drivers/virtio/virtio_pci_modern_dev.ko", "depends=")
	write("drivers/virtio/virtio_ring.ko", "depends=virtio")
	write("drivers/virtio/virtio.ko", "depends=")
	write("drivers/block/virtio-blk.ko", "depends=virtio,virtio_ring")
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/input/evdev.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := scanModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := set.closure([]string{"evdev", "virtio_blk", "virtio_pci"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio", "virtio_ring", "virtio_blk", "virtio_pci_modern_dev", "virtio_pci"}
	if !slices.Equal(order, want) {
		t.Errorf("order = %v, want %v (dependencies first, built-ins left out)", order, want)
	}
	if _, err := set.closure([]string{"nonexistent"}); err == nil {
		t.Error("a missing module did not fail the closure")
	}
}

func FuzzModinfoDepends(f *testing.F) {
	f.Add([]byte("\x00depends=a,b\x00"))
	f.Add([]byte("depends=\x00"))
	f.Add([]byte("xdepends=a\x00depends=,,c,\x00"))
	f.Fuzz(func(t *testing.T, ko []byte) {
		for _, d := range modinfoDepends(ko) {
			if d == "" || slices.Contains([]byte(d), 0) || slices.Contains([]byte(d), ',') {
				t.Fatalf("bad dependency name %q", d)
			}
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
