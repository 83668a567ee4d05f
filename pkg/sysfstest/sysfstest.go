// Package sysfstest builds sysfs trees for tests from a text description.
// Real sysfs paths hold ':' (0000:01:00.0, 1-1:1.0), which a Go module's
// files may not, so fixtures are descriptions rather than committed trees.
// A description has one entry a line, paths relative to the tree's root
// (the /sys of the host it copies):
//
//	dir  kernel/iommu_groups            an empty directory
//	file devices/pci0000:00/0000:00:00.0/vendor 0x8086
//	link bus/pci/devices/0000:00:00.0 ../../../devices/pci0000:00/0000:00:00.0
//
// A file holds the rest of its line and a newline, as sysfs attributes
// do; a link's target is written as is, relative like the kernel's.
// Blank lines and lines starting with '#' are skipped.
package sysfstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Build makes the tree that the description files at paths describe, one
// after the other, in a new temporary directory and returns the directory.
func Build(t testing.TB, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, path := range paths {
		desc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(desc), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := make1(root, line); err != nil {
				t.Fatalf("%s:%d: %v", path, n+1, err)
			}
		}
	}
	return root
}

func make1(root, line string) error {
	kind, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimLeft(rest, " ")
	name, arg, _ := strings.Cut(rest, " ")
	arg = strings.TrimLeft(arg, " ")
	if name == "" || filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return fmt.Errorf("entry %q: want a relative path inside the tree", line)
	}
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	switch kind {
	case "dir":
		return os.MkdirAll(p, 0o755)
	case "file":
		return os.WriteFile(p, []byte(arg+"\n"), 0o644)
	case "link":
		if arg == "" {
			return fmt.Errorf("link %s: no target", name)
		}
		return os.Symlink(arg, p)
	}
	return fmt.Errorf("entry %q: want dir, file or link", line)
}
