package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "spec.json")
	if err := Write(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "two" {
		t.Fatalf("content = %q, %v", b, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("leftover files: %v", ents)
	}
}

func TestWriteFailsInMissingDir(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "no", "x"), nil, 0o600); err == nil {
		t.Fatal("want error for a missing directory")
	}
}

func TestCreateMakesANewFileOnly(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk")
	fill := func(s string) func(*os.File) error {
		return func(f *os.File) error { _, err := f.WriteString(s); return err }
	}
	if err := Create(p, 0o640, fill("one")); err != nil {
		t.Fatal(err)
	}
	if err := Create(p, 0o600, fill("two")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file: %v, want ErrExist", err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "one" {
		t.Fatalf("content = %q, %v", b, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 || st.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Fatalf("mode %v, links %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Nlink)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("leftover files: %v", ents)
	}
}

func TestCreateLeavesNothingWhenFillFails(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	err := Create(filepath.Join(dir, "disk"), 0o600, func(*os.File) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Create: %v, want the fill's error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("leftover files: %v", ents)
	}
}
