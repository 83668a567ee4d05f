package qemuimg

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestReadHeaderOfRealImages(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	base, plain, overlay, compat, withData, raw := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "plain.qcow2"),
		filepath.Join(dir, "overlay.qcow2"), filepath.Join(dir, "v2.qcow2"), filepath.Join(dir, "data.qcow2"), filepath.Join(dir, "disk.raw")
	run("create", "-q", "-f", "qcow2", base, "64M")
	run("create", "-q", "-f", "qcow2", plain, "128M")
	run("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	run("create", "-q", "-f", "qcow2", "-o", "compat=0.10", compat, "32M")
	run("create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.bin"), withData, "32M")
	run("create", "-q", "-f", "raw", raw, "16M")
	for _, tc := range []struct {
		path, format string
		refs         bool
		size         int64
	}{
		{plain, FormatQCOW2, false, 128 << 20},
		{overlay, FormatQCOW2, true, 64 << 20},
		{compat, FormatQCOW2, false, 32 << 20},
		{withData, FormatQCOW2, true, 32 << 20},
		{raw, FormatRaw, false, 0},
	} {
		h, err := ReadHeader(tc.path, tc.format)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(tc.path), err)
		}
		if h.References != tc.refs || h.VirtualSize != tc.size {
			t.Errorf("%s: %+v, want references=%v size=%d", filepath.Base(tc.path), h, tc.refs, tc.size)
		}
		// The fast path must agree with qemu-img on whether another file is named.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		info, err := (&Tool{}).Info(ctx, tc.path, tc.format)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if named := info.BackingFile != "" || info.DataFile != ""; named != h.References {
			t.Errorf("%s: header says references=%v, qemu-img says backing=%q data=%q", filepath.Base(tc.path), h.References, info.BackingFile, info.DataFile)
		}
	}
	if _, err := ReadHeader(raw, FormatQCOW2); err == nil {
		t.Error("a raw file read as qcow2")
	}
}

func FuzzParseQCOW2Header(f *testing.F) {
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03" + string(make([]byte, 120))))
	f.Add([]byte("QFI\xfb\x00\x00\x00\x02" + string(make([]byte, 70))))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseQCOW2Header(b)
		if err == nil && (h.Format != FormatQCOW2 || h.VirtualSize < 0) {
			t.Fatalf("accepted %+v", h)
		}
	})
}
