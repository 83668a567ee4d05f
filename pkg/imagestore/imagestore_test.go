package imagestore_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/imagestore"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

func newStore(t testing.TB) *imagestore.Store {
	t.Helper()
	if _, err := exec.LookPath(qemuimg.DefaultBinary); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	s := &imagestore.Store{Dir: filepath.Join(t.TempDir(), "images"), Tool: &qemuimg.Tool{}}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func rawSource(t testing.TB, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(p, []byte(strings.Repeat("golden", size/6+1)[:size]), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func files(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"golden", "win11-2024.09", "A_b"} {
		if err := imagestore.CheckName("name", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", ".hidden", "-o", "a b", "a,b", "a:b", strings.Repeat("x", 65)} {
		if err := imagestore.CheckName("name", bad); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "name"}) {
			t.Errorf("%q: %v, want InvalidArgument naming name", bad, err)
		}
	}
}

// TestAddListClonesDelete: an added image is readable by all and listed;
// a second one of the name is refused; clones are made; delete removes it.
func TestAddListClonesDelete(t *testing.T) {
	s := newStore(t)
	src := rawSource(t, 1<<20)
	if err := s.Add(ctx(t), "golden", src, "raw", nil); err != nil {
		t.Fatal(err)
	}
	if got := files(t, s.Dir); len(got) != 1 || got[0] != "golden.qcow2" {
		t.Fatalf("store holds %v", got)
	}
	fi, err := os.Stat(s.Path("golden"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("image mode %v, %v; want 0644", fi.Mode(), err)
	}
	if err := s.Add(ctx(t), "golden", src, "raw", nil); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Errorf("a second golden: %v", err)
	}
	list, err := s.List(ctx(t))
	if err != nil || len(list) != 1 || list[0].Name != "golden" || list[0].VirtualSizeBytes != 1<<20 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if img, err := s.Get(ctx(t), "golden"); err != nil || img.VirtualSizeBytes != 1<<20 || img.AllocatedBytes != list[0].AllocatedBytes {
		t.Fatalf("Get = %+v, %v", img, err)
	}
	info, err := s.Tool.Info(ctx(t), s.Path("golden"), imagestore.Format)
	if err != nil || info.ActualSize != list[0].AllocatedBytes {
		t.Errorf("qemu-img info says %+v (%v), the store %d allocated bytes", info, err, list[0].AllocatedBytes)
	}
	dir := t.TempDir()
	linked := filepath.Join(dir, "linked.qcow2")
	if err := s.LinkedClone("golden", linked, 2<<20); err != nil {
		t.Fatal(err)
	}
	// The clone is thin, backed by the image with its format written
	// down, and a disk's chain check (the VM's directory and the store)
	// passes it.
	chain, err := s.Tool.CheckChainIn(ctx(t), linked, "qcow2", []string{dir, s.Dir})
	if err != nil || len(chain) != 2 {
		t.Fatalf("CheckChainIn: %d images, %v", len(chain), err)
	}
	if c := chain[0]; c.VirtualSize != 2<<20 || c.BackingFile != s.Path("golden") || c.BackingFormat != "qcow2" || c.ActualSize > 1<<20 {
		t.Errorf("linked clone %+v, want a thin 2 MiB overlay of %s (qcow2)", c, s.Path("golden"))
	}
	if err := s.LinkedClone("golden", linked, 2<<20); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Errorf("a clone over an existing file: %v, want AlreadyExists", err)
	}
	if err := s.FullClone(ctx(t), "golden", filepath.Join(dir, "full.raw"), "raw", 2<<20); err != nil {
		t.Fatal(err)
	}
	info, err = s.Tool.Info(ctx(t), filepath.Join(dir, "full.raw"), "raw")
	if err != nil || info.VirtualSize != 2<<20 || info.BackingFile != "" {
		t.Errorf("full clone %+v, %v", info, err)
	}
	if err := s.LinkedClone("missing", filepath.Join(dir, "x.qcow2"), 2<<20); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
		t.Errorf("a clone of a missing image: %v", err)
	}
	if err := s.Delete("golden"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("golden"); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
		t.Errorf("a second delete: %v", err)
	}
}

// TestFailedAddLeavesNothing: a convert qemu-img refuses leaves neither
// the image nor its temporary file; Init sweeps a temporary file a crash left.
func TestFailedAddLeavesNothing(t *testing.T) {
	s := newStore(t)
	src := rawSource(t, 4096)
	if err := s.Add(ctx(t), "broken", src, "qcow2", nil); err == nil {
		t.Fatal("a raw file converted as qcow2")
	}
	if got := files(t, s.Dir); len(got) != 0 {
		t.Fatalf("a failed add left %v", got)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, ".importing-x-1.qcow2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, s.Dir); len(got) != 0 {
		t.Fatalf("Init left %v", got)
	}
}

// BenchmarkLinkedClone makes linked clones of one image: the time per
// clone, and the bytes each clone's own image takes.
func BenchmarkLinkedClone(b *testing.B) {
	s := newStore(b)
	if err := s.Add(ctx(b), "golden", rawSource(b, 64<<20), "raw", nil); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var bytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := filepath.Join(dir, "clone"+strconv.Itoa(i)+".qcow2")
		if err := s.LinkedClone("golden", p, 1<<30); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		info, err := s.Tool.Info(ctx(b), p, "qcow2")
		if err != nil {
			b.Fatal(err)
		}
		bytes += info.ActualSize
		b.StartTimer()
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "disk-bytes/clone")
}
