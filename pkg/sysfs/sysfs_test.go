package sysfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUint(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"vendor": "0x10de\n", "idVendor": "046d\n", "busnum": "3\n", "wide": "0x10000\n", "word": "abc xyz\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name       string
		base, bits int
		want       uint64
		ok         bool
	}{
		{"vendor", 16, 16, 0x10de, true},
		{"idVendor", 16, 16, 0x046d, true},
		{"busnum", 10, 16, 3, true},
		{"wide", 16, 16, 0, false},
		{"word", 16, 16, 0, false},
		{"missing", 16, 16, 0, false},
	} {
		got, err := Uint(dir, c.name, c.base, c.bits)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s: %#x, %v", c.name, got, err)
		}
		if !c.ok && c.name != "missing" && (err == nil || !strings.Contains(err.Error(), c.name)) {
			t.Errorf("%s: the error %v does not name the attribute", c.name, err)
		}
	}
	if _, err := Uint(dir, "missing", 10, 8); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing attribute: %v", err)
	}
	if s, err := OptionalAttr(dir, "missing"); s != "" || err != nil {
		t.Errorf("a missing optional attribute: %q, %v", s, err)
	}
}

func TestBusDevices(t *testing.T) {
	root := t.TempDir()
	if got, err := BusDevices(root, "pci", regexp.MustCompile(`.`), func(string, string) (string, error) { return "", nil }); got != nil || err != nil {
		t.Errorf("no bus: %v, %v", got, err)
	}
	dir := filepath.Join(root, "bus/usb/devices")
	for _, n := range []string{"1-1", "1-2", "1-3", "usb1"} {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	read := func(d, name string) (string, error) {
		switch name {
		case "1-2":
			return "", fs.ErrNotExist // unplugged
		case "1-3":
			return "", errors.New("garbled")
		}
		return filepath.Base(d), nil
	}
	if _, err := BusDevices(root, "usb", regexp.MustCompile(`^1-`), read); err == nil || !strings.Contains(err.Error(), "usb device 1-3: garbled") {
		t.Errorf("got %v, want the failure naming the device", err)
	}
	got, err := BusDevices(root, "usb", regexp.MustCompile(`^1-[12]$`), read)
	if err != nil || len(got) != 1 || got[0] != "1-1" {
		t.Errorf("got %v, %v", got, err)
	}
}

// FuzzParseUint: no attribute text makes the number parser panic, and
// what it accepts is the number the text writes, in range.
func FuzzParseUint(f *testing.F) {
	for _, s := range []string{"0x10de", "046d", "0x030000", "12", "0x", "0x0x1", "-1", "1_000", "ffffffffffffffffff"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, hex bool) {
		base, bits := 10, 16
		if hex {
			base, bits = 16, 24
		}
		v, err := parseUint(s, base, bits)
		if err != nil {
			return
		}
		if v >= 1<<bits {
			t.Fatalf("%q: %d is out of range", s, v)
		}
		digits := strings.TrimPrefix(s, "0x")
		if !hex {
			digits = s
		}
		if strings.TrimLeft(strings.ToLower(digits), "0") != strings.TrimLeft(strconv.FormatUint(v, base), "0") {
			t.Fatalf("%q parsed to %d", s, v)
		}
	})
}
