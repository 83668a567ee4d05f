package hwids

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseFile(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestParsePCIIDs(t *testing.T) {
	db := parseFile(t, "testdata/pci.ids")
	for _, c := range []struct{ got, want string }{
		{db.Vendor(0x10de), "NVIDIA Corporation"},
		{db.Device(0x10de, 0x1b80), "GP104 [GeForce GTX 1080]"},
		{db.Device(0x10de, 0x10f0), "GP104 High Definition Audio Controller"},
		{db.Device(0x1002, 0xaaf0), "Ellesmere HDMI Audio [Radeon RX 470/480 / 570/580/590]"},
		// Subsystem lines belong to no device of their own.
		{db.Device(0x10de, 0x1458), ""},
		{db.Device(0x10de, 0x3702), ""},
		{db.Vendor(0xffff), ""},
		{db.Device(0x10de, 0xffff), ""},
		{db.Class(0x03, 0x00), "VGA compatible controller"},
		{db.Class(0x06, 0x04), "PCI bridge"},
		// An unknown subclass falls back to its class.
		{db.Class(0x02, 0x80), "Network controller"},
		{db.Class(0x0d, 0x00), ""},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestParseUSBIDs(t *testing.T) {
	db := parseFile(t, "testdata/usb.ids")
	for _, c := range []struct{ got, want string }{
		{db.Vendor(0x046d), "Logitech, Inc."},
		{db.Device(0x0781, 0x5567), "Cruzer Blade"},
		{db.Device(0x1d6b, 0x0003), "3.0 root hub"},
		{db.Class(0x09, 0x00), "Unused"},
		{db.Class(0x03, 0x01), "Boot Interface Subclass"},
		// The sections after the classes are not vendors: a language's
		// dialect line must not become a device of the last vendor.
		{db.Device(0x1d6b, 0x0001), ""},
		{db.Vendor(0x0100), ""},
		{db.Vendor(0x0009), ""},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNilDBAnswersEmpty(t *testing.T) {
	var db *DB
	if db.Vendor(1) != "" || db.Device(1, 2) != "" || db.Class(3, 0) != "" {
		t.Fatal("a nil database answered a name")
	}
}

// TestTheInstalledDatabases parses the host's own files, when the
// packages are installed, and finds a few long-standing entries.
func TestTheInstalledDatabases(t *testing.T) {
	for _, c := range []struct {
		path   string
		vendor uint16
		want   string
	}{
		{DefaultPCIIDs, 0x8086, "Intel Corporation"},
		{DefaultUSBIDs, 0x1d6b, "Linux Foundation"},
	} {
		if _, err := os.Stat(c.path); err != nil {
			t.Logf("skipping %s: %v (Debian's pci.ids and usb.ids packages install it)", c.path, err)
			continue
		}
		f := &File{Path: c.path}
		db, err := f.DB()
		if err != nil {
			t.Fatal(err)
		}
		if got := db.Vendor(c.vendor); got != c.want {
			t.Errorf("%s: vendor %04x is %q, want %q", c.path, c.vendor, got, c.want)
		}
		if len(db.vendors) < 1000 || len(db.classes) < 10 {
			t.Errorf("%s: only %d vendors and %d classes", c.path, len(db.vendors), len(db.classes))
		}
	}
}

func TestFileIsMissingOrChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pci.ids")
	f := &File{Path: path}
	if db, err := f.DB(); err != nil || db.Vendor(0x10de) != "" {
		t.Fatalf("missing file: %v, %v", db, err)
	}
	write := func(content string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	then := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	write("10de  NVIDIA\n", then)
	if db, err := f.DB(); err != nil || db.Vendor(0x10de) != "NVIDIA" {
		t.Fatalf("got %v, %v", db, err)
	}
	write("10de  NVIDIA Corporation\n", then.Add(time.Hour))
	if db, err := f.DB(); err != nil || db.Vendor(0x10de) != "NVIDIA Corporation" {
		t.Fatalf("the changed file was not read again: %v, %v", db, err)
	}
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		write("10de  x\n", then.Add(2*time.Hour))
		if _, err := f.DB(); err == nil {
			t.Error("an unreadable file gave no error")
		}
	}
}

func TestOverlongLineFails(t *testing.T) {
	if _, err := Parse(strings.NewReader("10de  " + strings.Repeat("x", maxLine) + "\n")); err == nil {
		t.Fatal("an overlong line was accepted")
	}
}

// format writes db back in the file format, sorted, for the fuzz target.
func format(db *DB) string {
	var b strings.Builder
	for _, v := range slices.Sorted(maps.Keys(db.vendors)) {
		fmt.Fprintf(&b, "%04x  %s\n", v, db.vendors[v].name)
		for _, d := range slices.Sorted(maps.Keys(db.vendors[v].devices)) {
			fmt.Fprintf(&b, "\t%04x  %s\n", d, db.vendors[v].devices[d])
		}
	}
	for _, c := range slices.Sorted(maps.Keys(db.classes)) {
		fmt.Fprintf(&b, "C %02x  %s\n", c, db.classes[c].name)
		for _, s := range slices.Sorted(maps.Keys(db.classes[c].subs)) {
			fmt.Fprintf(&b, "\t%02x  %s\n", s, db.classes[c].subs[s])
		}
	}
	return b.String()
}

// FuzzParse: no input makes the parser panic, every name it keeps is
// trimmed and on one line, and what it kept, written back, parses to the
// same database. Seeds are both databases' layouts.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/pci.ids", "testdata/usb.ids"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("10de  a\n\t1b80  b\nC 03  c\n\t00  d\n\t\t00  e\n")
	f.Add("10de\tx\n\tzzzz  y\nC 3  z\nC 0300  w\n\t\t\t1  v\n")
	f.Fuzz(func(t *testing.T, in string) {
		db, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		check := func(name string) {
			if name == "" || name != strings.TrimSpace(name) || strings.Contains(name, "\n") {
				t.Fatalf("kept name %q", name)
			}
		}
		for _, v := range db.vendors {
			check(v.name)
			for _, d := range v.devices {
				check(d)
			}
		}
		for _, c := range db.classes {
			check(c.name)
			for _, s := range c.subs {
				check(s)
			}
		}
		again, err := Parse(strings.NewReader(format(db)))
		if err != nil {
			t.Fatal(err)
		}
		if format(again) != format(db) {
			t.Fatalf("written back:\n%s\nparsed to a different database", format(db))
		}
	})
}

// BenchmarkParsePCIIDs is the cost of reading the installed pci.ids once
// (the agent keeps it until the file changes).
func BenchmarkParsePCIIDs(b *testing.B) {
	data, err := os.ReadFile(DefaultPCIIDs)
	if err != nil {
		b.Skipf("no %s: %v", DefaultPCIIDs, err)
	}
	for b.Loop() {
		if _, err := Parse(strings.NewReader(string(data))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "bytes/file")
}
