package guest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// module is one loadable kernel module of the unpacked kernel package.
type module struct {
	path string
	deps []string
}

// moduleSet maps a module's name (with '_', as modprobe spells it) to its
// file, or to nil for a module built into the kernel.
type moduleSet map[string]*module

// scanModules indexes the .ko files under moduleDir (lib/modules/<kv>)
// and the modules.builtin list. The Debian package ships no modules.dep,
// so dependencies come from each module's own modinfo "depends=" field.
func scanModules(moduleDir string) (moduleSet, error) {
	set := moduleSet{}
	if b, err := os.ReadFile(filepath.Join(moduleDir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			set[moduleName(line)] = nil
		}
	}
	err := filepath.WalkDir(filepath.Join(moduleDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") || strings.HasSuffix(p, ".ko.gz") {
			return fmt.Errorf("%s is compressed; the build expects plain .ko files", p)
		}
		if !strings.HasSuffix(p, ".ko") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		set[moduleName(p)] = &module{path: p, deps: modinfoDepends(b)}
		return nil
	})
	return set, err
}

// closure returns the wanted modules and everything they depend on, each
// after its dependencies, without built-in ones.
func (s moduleSet) closure(want []string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var add func(name, neededBy string) error
	add = func(name, neededBy string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return nil
		}
		seen[name] = true
		m, ok := s[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is neither a .ko nor built in", name, neededBy)
		}
		if m == nil {
			return nil // built in
		}
		for _, d := range m.deps {
			if err := add(d, name); err != nil {
				return err
			}
		}
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		if err := add(w, "the guest"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleName turns ".../virtio-blk.ko" into "virtio_blk".
func moduleName(path string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".ko"), "-", "_")
}

// modinfoDepends reads the "depends=a,b" string of a module's .modinfo
// section, which sits in the file as a NUL-terminated string.
func modinfoDepends(ko []byte) []string {
	for _, field := range bytes.Split(ko, []byte{0}) {
		if v, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
			return deps
		}
	}
	return nil
}
