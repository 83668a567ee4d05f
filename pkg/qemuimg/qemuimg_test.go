package qemuimg_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

const mib = 1 << 20

func needQemuImg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(qemuimg.DefaultBinary); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// qemuImg runs qemu-img directly, to set up what the wrapper does not do.
func qemuImg(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx(t), qemuimg.DefaultBinary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func isInvalid(err error, field string) bool {
	return errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: field})
}

func TestCreateQCOW2IsThinAndPrivate(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "disk0.qcow2")
	if err := tool.Create(ctx(t), path, qemuimg.FormatQCOW2, 1<<30); err != nil {
		t.Fatal(err)
	}
	info, err := tool.Info(ctx(t), path, qemuimg.FormatQCOW2)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 1<<30 || info.ClusterSize != 65536 {
		t.Errorf("info = %+v, want a 1 GiB qcow2 with 64 KiB clusters", info)
	}
	if info.ActualSize >= 16*mib {
		t.Errorf("actual size %d: a fresh thin image should hold only metadata", info.ActualSize)
	}
	if info.BackingFile != "" || info.DataFile != "" || len(info.Snapshots) != 0 || info.Corrupt {
		t.Errorf("fresh image has unexpected metadata: %+v", info)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: images hold guest data", st.Mode().Perm())
	}
}

func TestCreateRawIsSparse(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "disk0.raw")
	if err := tool.Create(ctx(t), path, qemuimg.FormatRaw, 256*mib); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 256*mib {
		t.Errorf("size %d, want %d", st.Size, 256*mib)
	}
	if allocated := st.Blocks * 512; allocated > mib {
		t.Errorf("%d bytes allocated: raw images must not be preallocated", allocated)
	}
	info, err := tool.Info(ctx(t), path, qemuimg.FormatRaw)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "raw" || info.VirtualSize != 256*mib {
		t.Errorf("info = %+v", info)
	}
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "precious.qcow2")
	if err := os.WriteFile(path, []byte("guest data"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := tool.Create(ctx(t), path, qemuimg.FormatQCOW2, mib)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Fatalf("Create over an existing file: %v, want AlreadyExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "guest data" {
		t.Errorf("existing file was changed to %q", b)
	}
}

func TestCreateValidatesArguments(t *testing.T) {
	var tool qemuimg.Tool
	dir := t.TempDir()
	for _, tt := range []struct {
		field, path, format string
		size                int64
	}{
		{"path", "disk.qcow2", "qcow2", mib},
		{"path", "nbd:localhost:10809", "raw", mib},
		{"format", filepath.Join(dir, "a"), "vmdk", mib},
		{"format", filepath.Join(dir, "a"), "", mib},
		{"sizeBytes", filepath.Join(dir, "a"), "qcow2", 0},
		{"sizeBytes", filepath.Join(dir, "a"), "raw", 1000},
	} {
		if err := tool.Create(ctx(t), tt.path, tt.format, tt.size); !isInvalid(err, tt.field) {
			t.Errorf("Create(%q, %q, %d) = %v, want InvalidArgument on %s", tt.path, tt.format, tt.size, err, tt.field)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused calls left files behind: %v", entries)
	}
}

// TestCreateFailureCarriesStderr makes qemu-img itself fail and checks the
// typed error and that no half-made image stays behind.
func TestCreateFailureCarriesStderr(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "huge.qcow2")
	err := tool.Create(ctx(t), path, qemuimg.FormatQCOW2, 1<<62)
	var ee *qemuimg.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *ExitError", err)
	}
	if ee.ExitCode != 1 || ee.Stderr == "" || ee.Args[0] != "create" {
		t.Errorf("ExitError = %+v, want exit 1 of create with qemu-img's message", ee)
	}
	if !strings.Contains(err.Error(), strings.TrimSpace(ee.Stderr)) {
		t.Errorf("Error() %q does not show stderr", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed create left %s behind (%v)", path, err)
	}
}

func TestInfoWrongFormatIsNotProbed(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := tool.Create(ctx(t), path, qemuimg.FormatRaw, mib); err != nil {
		t.Fatal(err)
	}
	_, err := tool.Info(ctx(t), path, qemuimg.FormatQCOW2)
	var ee *qemuimg.ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "qcow2") {
		t.Fatalf("Info of a raw image as qcow2 = %v, want qemu-img's refusal", err)
	}
}

func TestInfoSnapshots(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := tool.Create(ctx(t), path, qemuimg.FormatQCOW2, 64*mib); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Minute)
	qemuImg(t, "snapshot", "-c", "before-update", path)
	qemuImg(t, "snapshot", "-c", "after-update", path)
	info, err := tool.Info(ctx(t), path, qemuimg.FormatQCOW2)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Snapshots) != 2 || info.Snapshots[0].Name != "before-update" || info.Snapshots[1].Name != "after-update" {
		t.Fatalf("snapshots = %+v", info.Snapshots)
	}
	if s := info.Snapshots[0]; s.ID != "1" || s.Date.Before(before) || s.VMStateSize != 0 {
		t.Errorf("snapshot = %+v, want id 1, taken just now, disk only", s)
	}
}

// TestInfoForceShare opens an image that a running QEMU holds: only -U can
// read it.
func TestInfoForceShare(t *testing.T) {
	needQemuImg(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	var tool qemuimg.Tool
	path := filepath.Join(t.TempDir(), "live.qcow2")
	if err := tool.Create(ctx(t), path, qemuimg.FormatQCOW2, 64*mib); err != nil {
		t.Fatal(err)
	}
	qemu := exec.CommandContext(ctx(t), "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
		"-blockdev", `{"driver":"file","node-name":"f0","filename":"`+path+`"}`,
		"-blockdev", `{"driver":"qcow2","node-name":"disk0","file":"f0"}`,
		"-qmp", "stdio")
	stdin, err := qemu.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := qemu.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		qemu.Process.Kill()
		_ = qemu.Wait() // killed: how it ended is not under test
	})
	// The QMP greeting comes once the block nodes are open and locked.
	greeting, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(greeting, `"QMP"`) {
		t.Fatalf("no QMP greeting from QEMU: %q %v", greeting, err)
	}
	_, err = tool.Info(ctx(t), path, qemuimg.FormatQCOW2)
	var ee *qemuimg.ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "lock") {
		t.Fatalf("Info of a locked image = %v, want a lock error", err)
	}
	info, err := tool.Info(ctx(t), path, qemuimg.FormatQCOW2, qemuimg.ForceShare())
	if err != nil {
		t.Fatalf("Info with ForceShare: %v", err)
	}
	if info.VirtualSize != 64*mib {
		t.Errorf("virtual size %d", info.VirtualSize)
	}
}

func TestResize(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	for _, format := range []string{qemuimg.FormatQCOW2, qemuimg.FormatRaw} {
		path := filepath.Join(t.TempDir(), "disk."+format)
		if err := tool.Create(ctx(t), path, format, 64*mib); err != nil {
			t.Fatal(err)
		}
		if err := tool.Resize(ctx(t), path, format, 128*mib, false); err != nil {
			t.Fatalf("%s grow: %v", format, err)
		}
		if format == qemuimg.FormatQCOW2 {
			err := tool.Resize(ctx(t), path, format, 32*mib, false)
			var ee *qemuimg.ExitError
			if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "--shrink") {
				t.Fatalf("shrink without allowShrink = %v, want qemu-img's refusal", err)
			}
		}
		if err := tool.Resize(ctx(t), path, format, 32*mib, true); err != nil {
			t.Fatalf("%s shrink: %v", format, err)
		}
		info, err := tool.Info(ctx(t), path, format)
		if err != nil {
			t.Fatal(err)
		}
		if info.VirtualSize != 32*mib {
			t.Errorf("%s: virtual size %d after grow and shrink, want %d", format, info.VirtualSize, 32*mib)
		}
	}
	if err := tool.Resize(ctx(t), "/x.qcow2", "qcow2", 1000, false); !isInvalid(err, "sizeBytes") {
		t.Errorf("Resize to 1000 bytes = %v, want InvalidArgument", err)
	}
}

func TestConvertKeepsContent(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, 4*mib)
	copy(data[3*mib:], "written by the guest")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mid := filepath.Join(dir, "mid.qcow2")
	if err := tool.Convert(ctx(t), src, qemuimg.FormatRaw, mid, qemuimg.FormatQCOW2); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back.raw")
	if err := tool.Convert(ctx(t), mid, qemuimg.FormatQCOW2, back, qemuimg.FormatRaw); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("raw → qcow2 → raw changed the content")
	}
	if err := tool.Convert(ctx(t), src, qemuimg.FormatRaw, mid, qemuimg.FormatQCOW2); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Errorf("Convert onto an existing image = %v, want AlreadyExists", err)
	}
	if err := tool.Convert(ctx(t), src, qemuimg.FormatRaw, src, qemuimg.FormatRaw); !isInvalid(err, "dst") {
		t.Errorf("Convert onto itself = %v, want InvalidArgument", err)
	}
}

func TestConvertFailureRemovesTarget(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	dir := t.TempDir()
	src := filepath.Join(dir, "not-qcow2")
	if err := os.WriteFile(src, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst.raw")
	var ee *qemuimg.ExitError
	if err := tool.Convert(ctx(t), src, qemuimg.FormatQCOW2, dst, qemuimg.FormatRaw); !errors.As(err, &ee) {
		t.Fatalf("Convert of a non-qcow2 as qcow2 = %v, want *ExitError", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed convert left %s behind", dst)
	}
}

func TestCancelledContext(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	c, cancel := context.WithCancel(context.Background())
	cancel()
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	err := tool.Create(c, path, qemuimg.FormatQCOW2, mib)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled context = %v, want context.Canceled", err)
	}
	var ee *qemuimg.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != -1 {
		t.Errorf("want an *ExitError with exit code -1, got %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled create left %s behind", path)
	}
}

func TestMissingBinary(t *testing.T) {
	tool := qemuimg.Tool{Binary: "/nonexistent/qemu-img"}
	_, err := tool.Info(ctx(t), "/x.qcow2", qemuimg.FormatQCOW2)
	var ee *qemuimg.ExitError
	if err == nil || errors.As(err, &ee) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing binary: %v, want a start error wrapping ErrNotExist", err)
	}
}

// A qemu-img that prints without end (info of an image inflated with
// snapshots) is cut off, not read into memory.
func TestOutputIsBounded(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "qemu-img")
	script := "#!/bin/sh\nexec head -c 100000000 /dev/zero\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tool := qemuimg.Tool{Binary: bin}
	_, err := tool.Info(ctx(t), "/x.qcow2", qemuimg.FormatQCOW2)
	if err == nil || !strings.Contains(err.Error(), "bytes of output") {
		t.Fatalf("endless output: %v, want it refused as too large", err)
	}
}

func BenchmarkInfo(b *testing.B) {
	needQemuImg(b)
	var tool qemuimg.Tool
	path := filepath.Join(b.TempDir(), "disk.qcow2")
	if err := tool.Create(ctx(b), path, qemuimg.FormatQCOW2, 64*mib); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		if _, err := tool.Info(ctx(b), path, qemuimg.FormatQCOW2); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/info")
}
