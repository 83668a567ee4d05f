package testassets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestCacheDirHonoursEnv(t *testing.T) {
	want := filepath.Join(t.TempDir(), "c")
	t.Setenv("INFINIVIRT_CACHE", want)
	got, err := CacheDir()
	if err != nil || got != want {
		t.Fatalf("CacheDir() = %q, %v; want %q", got, err, want)
	}
	if fi, err := os.Stat(want); err != nil || !fi.IsDir() {
		t.Errorf("cache dir not created: %v", err)
	}
}

func TestCacheDirFindsModuleRoot(t *testing.T) {
	t.Setenv("INFINIVIRT_CACHE", "")
	got, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(got), "go.mod")); err != nil || filepath.Base(got) != ".cache" {
		t.Errorf("CacheDir() = %q: want .cache beside go.mod", got)
	}
}

// TestBuildOnceSerializes runs two builders at once: one builds, the other
// waits on the lock and reuses the result.
func TestBuildOnceSerializes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "asset")
	var mu sync.Mutex
	builds := 0
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = buildOnce(context.Background(), dir, func(tmp string) error {
				mu.Lock()
				builds++
				mu.Unlock()
				return os.WriteFile(filepath.Join(tmp, "x"), []byte("y"), 0o644)
			})
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || builds != 1 {
		t.Fatalf("builds = %d, errors %v", builds, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x")); err != nil || string(b) != "y" {
		t.Errorf("built content = %q, %v", b, err)
	}
	failing := filepath.Join(t.TempDir(), "bad")
	if err := buildOnce(context.Background(), failing, func(string) error { return errors.New("boom") }); err == nil {
		t.Error("a failing build succeeded")
	}
	if _, err := os.Stat(failing); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s", failing)
	}
}

func TestBuildDebianImage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the Debian image build downloads about 200 MB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	img, err := BuildDebianImage(ctx)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{img.Kernel, img.Initrd, img.Disk} {
		if fi, err := os.Stat(f); err != nil || fi.Size() < 1<<20 {
			t.Errorf("%s: %v (size %v)", f, err, fi)
		}
	}
}
