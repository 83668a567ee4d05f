// Package sysfs reads the kernel's device lists and attributes under a
// sysfs root: "/sys" on a host, a fixture tree (pkg/sysfstest) in tests.
package sysfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Root is where the kernel's sysfs is mounted.
const Root = "/sys"

// BusDevices reads the devices of a bus (root/bus/<bus>/devices) whose
// names match name, each with read, in directory order. A device that
// goes while it is read (unplugged) is left out, and so is a root
// without the bus: it lists none.
func BusDevices[T any](root, bus string, name *regexp.Regexp, read func(dir, name string) (T, error)) ([]T, error) {
	dir := filepath.Join(root, "bus", bus, "devices")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []T
	for _, e := range entries {
		if !name.MatchString(e.Name()) {
			continue
		}
		d, err := read(filepath.Join(dir, e.Name()), e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s device %s: %w", bus, e.Name(), err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Attr reads an attribute file without its white space.
func Attr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return strings.TrimSpace(string(b)), err
}

// OptionalAttr reads an attribute that a device may not have: "" then.
func OptionalAttr(dir, name string) (string, error) {
	s, err := Attr(dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return s, err
}

// Uint reads an attribute holding a number of at most bits bits in base
// 10 or 16; a hex number may have a 0x prefix (PCI's 0x10de, USB's 046d).
func Uint(dir, name string, base, bits int) (uint64, error) {
	s, err := Attr(dir, name)
	if err != nil {
		return 0, err
	}
	v, err := parseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func parseUint(s string, base, bits int) (uint64, error) {
	digits := s
	if base == 16 {
		digits = strings.TrimPrefix(s, "0x")
	}
	v, err := strconv.ParseUint(digits, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of %d bits", s, bits)
	}
	return v, nil
}

// LinkBase is the last element of a symlink's target (a driver's or an
// IOMMU group's name); "" when there is no link.
func LinkBase(dir, name string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return filepath.Base(target), nil
}

// Writer writes an attribute. The kernel acts on some writes (a driver's
// unbind, the bus's drivers_probe); a test's fixture tree gets
// sysfstest.Kernel's writer, which does what the kernel would.
type Writer func(path string, data []byte) error

// Tree is a sysfs tree: where it is, and how its attributes are written.
// The zero Tree is the host's /sys.
type Tree struct {
	Root  string // "" is Root
	Write Writer // nil writes the file
}

// Dir is the tree's root.
func (t Tree) Dir() string {
	if t.Root == "" {
		return Root
	}
	return t.Root
}

// Path is name (bus/pci/drivers_probe) inside the tree.
func (t Tree) Path(name string) string { return filepath.Join(t.Dir(), name) }

// WriteAttr writes value to the attribute at path. A write the kernel
// keeps waiting (an unbind waits for the device's last user) ends the
// call when ctx does; the write itself stays with the kernel.
func (t Tree) WriteAttr(ctx context.Context, path, value string) error {
	write := t.Write
	if write == nil {
		write = func(p string, b []byte) error { return os.WriteFile(p, b, 0o200) }
	}
	done := make(chan error, 1)
	go func() { done <- write(path, []byte(value)) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("write %q to %s: %w", value, path, ctx.Err())
	}
}
