package qemuimg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfinedRef feeds arbitrary references, as an image could hold them,
// to the confinement check: whatever it accepts must really lie under root.
func FuzzConfinedRef(f *testing.F) {
	for _, s := range []string{"base.qcow2", "../base/os.raw", "../../etc/passwd", "/etc/passwd", "nbd:x:1",
		"json:{}", "./a:b", "link/../../x", "link", "sub/", ""} {
		f.Add(s)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{filepath.Join(root, "vms", "sub"), filepath.Join(root, "base"), filepath.Join(dir, "out")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(root, "base", "os.raw"), filepath.Join(root, "vms", "base.qcow2"), filepath.Join(dir, "out", "x")} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "out"), filepath.Join(root, "vms", "link")); err != nil {
		f.Fatal(err)
	}
	realRoot, err := resolveRoot(root)
	if err != nil {
		f.Fatal(err)
	}
	image := filepath.Join(root, "vms", "disk0.qcow2")
	f.Fuzz(func(t *testing.T, ref string) {
		resolved, err := confinedRef(image, "backing file", ref, root, realRoot)
		if err != nil {
			return
		}
		if resolved != realRoot && !strings.HasPrefix(resolved, realRoot+string(filepath.Separator)) {
			t.Fatalf("accepted %q, which resolves to %s outside %s", ref, resolved, realRoot)
		}
		if strings.HasPrefix(resolved, filepath.Join(dir, "out")) {
			t.Fatalf("accepted %q, which leads into the outside directory", ref)
		}
	})
}
