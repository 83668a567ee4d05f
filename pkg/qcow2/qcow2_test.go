package qcow2_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qcow2"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

const (
	kib = int64(1) << 10
	mib = kib << 10
	gib = mib << 10
	tib = gib << 10
)

func need(t testing.TB, bin, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("%s is not installed (Debian package %s)", bin, pkg)
	}
}

// run runs a QEMU tool with a deadline and returns its stdout.
func run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s%s", bin, strings.Join(args, " "), err, stderr.String(), out)
	}
	return string(out)
}

// sizes are the virtual sizes the tests go over: the edges of a sector,
// a cluster, an L2 table's span and an L1 table's cluster, the limit, and
// a fixed sample spread evenly over their orders of magnitude.
func sizes() []int64 {
	out := []int64{1, 511, 512, 513, 64*kib - 1, 64 * kib, 64*kib + 1, 512*mib - 1, 512 * mib, 512*mib + 1,
		tib + 1, 4 * tib, 4*tib + 512, 64 * tib, qcow2.MaxSize - 1, qcow2.MaxSize}
	r := rand.New(rand.NewPCG(8, 2))
	for range 12 {
		bits := 1 + r.IntN(50)
		out = append(out, 1<<bits+r.Int64N(1<<bits))
	}
	return out
}

// TestCreateIsWhatQemuImgCreates: for every size, with and without a
// backing file, the image holds exactly the bytes `qemu-img create`
// writes, and qemu-img reads back its size, its backing file and format,
// and finds no error and no leak.
func TestCreateIsWhatQemuImgCreates(t *testing.T) {
	need(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	backing := filepath.Join(dir, "golden image.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", backing, "64M")
	tool := &qemuimg.Tool{}
	for _, size := range sizes() {
		for _, im := range []qcow2.Image{
			{SizeBytes: size},
			{SizeBytes: size, BackingFile: backing, BackingFormat: qcow2.FormatQCOW2},
		} {
			name := fmt.Sprintf("size %d backed %t", size, im.BackingFile != "")
			ours := filepath.Join(dir, "ours.qcow2")
			theirs := filepath.Join(dir, "theirs.qcow2")
			if err := qcow2.Create(ours, im); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			args := []string{"create", "-q", "-f", "qcow2", "-o", "preallocation=off"}
			if im.BackingFile != "" {
				args = append(args, "-u", "-b", im.BackingFile, "-F", im.BackingFormat)
			}
			run(t, "qemu-img", append(args, theirs, strconv.FormatInt(size, 10))...)
			a, err := os.ReadFile(ours)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s: %d bytes differ from qemu-img's %d, first at %d", name, len(a), len(b), firstDiff(a, b))
			}

			info, err := tool.Info(context.Background(), ours, "qcow2")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			wantSize := (size + 511) / 512 * 512
			if info.VirtualSize != wantSize || info.BackingFile != im.BackingFile || info.BackingFormat != im.BackingFormat ||
				info.ClusterSize != qcow2.ClusterSize || info.DirtyFlag || info.Corrupt {
				t.Errorf("%s: qemu-img info says %+v", name, info)
			}
			checkClean(t, name, ours)
			for _, p := range []string{ours, theirs} {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// checkClean fails unless `qemu-img check` finds the image without error,
// corruption or leak.
func checkClean(t *testing.T, name, path string) {
	t.Helper()
	var check map[string]any
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "check", "--output=json", "-f", "qcow2", path)), &check); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"check-errors", "corruptions", "leaks", "corruptions-fixed", "leaks-fixed"} {
		if v, ok := check[k]; ok && v != 0.0 {
			t.Errorf("%s: qemu-img check: %s = %v", name, k, v)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestQEMUWritesIntoIt: QEMU's own block layer (qemu-io) reads a linked
// clone through to its backing image, writes into it, up to the last
// sector of an odd size; the result checks clean, and committing it puts
// the writes into the backing image.
func TestQEMUWritesIntoIt(t *testing.T) {
	need(t, "qemu-img", "qemu-utils")
	need(t, "qemu-io", "qemu-utils")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "8M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x11 0 1M", base)

	size := 3*gib + 4097 // rounded up to 3 GiB + 4.5 KiB
	last := strconv.FormatInt((size+511)/512*512-512, 10)
	clone := filepath.Join(dir, "clone.qcow2")
	if err := qcow2.Create(clone, qcow2.Image{SizeBytes: size, BackingFile: base, BackingFormat: qcow2.FormatQCOW2}); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "qcow2",
		"-c", "read -q -P 0x11 0 1M", // the backing image's data
		"-c", "read -q -P 0 1M 7M",
		"-c", "write -q -P 0x22 64k 64k",
		"-c", "write -q -P 0x33 "+last+" 512",
		"-c", "read -q -P 0x11 0 64k",
		"-c", "read -q -P 0x22 64k 64k",
		"-c", "read -q -P 0x33 "+last+" 512",
		clone)
	checkClean(t, "the written clone", clone)
	run(t, "qemu-img", "commit", "-q", "-f", "qcow2", clone)
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x11 0 64k", "-c", "read -q -P 0x22 64k 64k", base)

	empty := filepath.Join(dir, "empty.qcow2")
	if err := qcow2.Create(empty, qcow2.Image{SizeBytes: 5 * tib}); err != nil {
		t.Fatal(err)
	}
	far := strconv.FormatInt(5*tib-gib, 10)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x44 "+far+" 1M", "-c", "read -q -P 0x44 "+far+" 1M", "-c", "read -q -P 0 0 1M", empty)
	checkClean(t, "the written empty image", empty)
}

// TestCreateRefuses: bad input names its field, an existing file is
// neither replaced nor changed, and a refusal leaves no file behind.
func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "base.qcow2")
	for _, c := range []struct {
		name  string
		im    qcow2.Image
		field string
	}{
		{"zero size", qcow2.Image{}, "sizeBytes"},
		{"negative size", qcow2.Image{SizeBytes: -512}, "sizeBytes"},
		{"too large", qcow2.Image{SizeBytes: qcow2.MaxSize + 1}, "sizeBytes"},
		{"relative backing file", qcow2.Image{SizeBytes: mib, BackingFile: "base.qcow2", BackingFormat: "qcow2"}, "backingFile"},
		{"protocol backing file", qcow2.Image{SizeBytes: mib, BackingFile: "nbd:localhost:10809", BackingFormat: "raw"}, "backingFile"},
		{"NUL in backing file", qcow2.Image{SizeBytes: mib, BackingFile: abs + "\x00x", BackingFormat: "qcow2"}, "backingFile"},
		{"long backing file", qcow2.Image{SizeBytes: mib, BackingFile: "/" + strings.Repeat("a", qcow2.MaxBackingFileLen), BackingFormat: "qcow2"}, "backingFile"},
		{"no backing format", qcow2.Image{SizeBytes: mib, BackingFile: abs}, "backingFormat"},
		{"probed backing format", qcow2.Image{SizeBytes: mib, BackingFile: abs, BackingFormat: "vmdk"}, "backingFormat"},
		{"backing format alone", qcow2.Image{SizeBytes: mib, BackingFormat: "qcow2"}, "backingFormat"},
	} {
		err := qcow2.Create(filepath.Join(dir, "x.qcow2"), c.im)
		if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeInvalidArgument || e.Field != c.field {
			t.Errorf("%s: %v, want InvalidArgument naming %s", c.name, err, c.field)
		}
	}
	if err := qcow2.Create("x.qcow2", qcow2.Image{SizeBytes: mib}); errdefs.As(err) == nil || errdefs.As(err).Field != "path" {
		t.Errorf("relative path: %v, want InvalidArgument naming path", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refusals left files: %v", ents)
	}

	p := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := qcow2.Create(p, qcow2.Image{SizeBytes: mib})
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Errorf("over an existing file: %v, want AlreadyExists", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Errorf("the existing file now holds %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("leftover files: %v", ents)
	}
}

// TestCreateIsThin: a new image takes a few blocks of the host's disk,
// whatever its virtual size, and only its owner may open it.
func TestCreateIsThin(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := qcow2.Create(p, qcow2.Image{SizeBytes: 64 * tib}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if used := allocated(t, p); used > 64*kib {
		t.Errorf("a new image takes %d bytes of the host's disk", used)
	}
}

// BenchmarkCreate makes linked clones: the time per clone and the bytes
// each takes on the host.
func BenchmarkCreate(b *testing.B) {
	dir := b.TempDir()
	var used int64
	for i := range b.N {
		p := filepath.Join(dir, "clone"+strconv.Itoa(i)+".qcow2")
		if err := qcow2.Create(p, qcow2.Image{SizeBytes: 10 * gib, BackingFile: "/var/lib/images/golden.qcow2", BackingFormat: "qcow2"}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		used += allocated(b, p)
		b.StartTimer()
	}
	b.ReportMetric(float64(used)/float64(b.N), "disk-bytes/clone")
}

// allocated is what the file takes on the host's disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
