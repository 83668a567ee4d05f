// Package sysfs reads the kernel's device lists and attributes under a
// sysfs root: "/sys" on a host, a fixture tree (pkg/sysfstest) in tests.
package sysfs

import (
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
