package qemuimg_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

func TestCheckSnapshotName(t *testing.T) {
	for _, ok := range []string{"a", "before-update", "v1.2_rc", "2026.12.03", "_x", strings.Repeat("a", qemuimg.MaxSnapshotNameLen)} {
		if err := qemuimg.CheckSnapshotName("name", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a,b", "a/b", "a=b", "a b", "a\tb", "é", "12", "a:b", "a\x00", strings.Repeat("a", qemuimg.MaxSnapshotNameLen+1)} {
		err := qemuimg.CheckSnapshotName("name", bad)
		if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeInvalidArgument || e.Field != "name" {
			t.Errorf("%q: %v, want InvalidArgument on name", bad, err)
		}
	}
}

func tagsOf(snaps []qemuimg.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

// snapshotListTags parses the text of `qemu-img snapshot -l`.
func snapshotListTags(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("qemu-img", "snapshot", "-l", path).CombinedOutput()
	if err != nil {
		t.Fatalf("snapshot -l: %v: %s", err, out)
	}
	var tags []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] != "ID" && !strings.HasPrefix(line, "Snapshot list") {
			tags = append(tags, f[1])
		}
	}
	return tags
}

// Take, list, apply and delete internal snapshots of a real image; the
// list is what `snapshot -l` says.
func TestSnapshotsOfARealImage(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	if err := tool.Create(ctx(t), img, qemuimg.FormatQCOW2, 1<<20); err != nil {
		t.Fatal(err)
	}
	write := func(b byte) {
		t.Helper()
		cmd := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P "+strconv.Itoa(int(b))+" 0 4k", img)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("qemu-io: %v: %s", err, out)
		}
	}
	read := func(b byte) bool {
		t.Helper()
		out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "read -P "+strconv.Itoa(int(b))+" 0 4k", img).CombinedOutput()
		return err == nil && !strings.Contains(string(out), "Pattern verification failed")
	}
	write(1)
	if err := tool.SnapshotCreate(ctx(t), img, qemuimg.FormatQCOW2, "first"); err != nil {
		t.Fatal(err)
	}
	write(2)
	if err := tool.SnapshotCreate(ctx(t), img, qemuimg.FormatQCOW2, "second"); err != nil {
		t.Fatal(err)
	}
	snaps, err := tool.Snapshots(ctx(t), img, qemuimg.FormatQCOW2)
	if err != nil || !slices.Equal(tagsOf(snaps), []string{"first", "second"}) {
		t.Fatalf("snapshots %+v %v", snaps, err)
	}
	if got := snapshotListTags(t, img); !slices.Equal(got, tagsOf(snaps)) {
		t.Errorf("snapshot -l says %v, Snapshots %v", got, tagsOf(snaps))
	}
	if err := tool.SnapshotApply(ctx(t), img, qemuimg.FormatQCOW2, "first"); err != nil {
		t.Fatal(err)
	}
	if !read(1) {
		t.Error("after applying first, the image does not hold the first data")
	}
	if err := tool.SnapshotDelete(ctx(t), img, qemuimg.FormatQCOW2, "second"); err != nil {
		t.Fatal(err)
	}
	if snaps, err := tool.Snapshots(ctx(t), img, qemuimg.FormatQCOW2); err != nil || !slices.Equal(tagsOf(snaps), []string{"first"}) {
		t.Fatalf("after delete: %+v %v", snaps, err)
	}
	err = tool.SnapshotApply(ctx(t), img, qemuimg.FormatQCOW2, "second")
	var ee *qemuimg.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("applying a deleted snapshot: %v, want qemu-img's refusal", err)
	}
}

// A raw image holds no snapshots; a tag that reads as an option or has
// option syntax never reaches qemu-img.
func TestSnapshotRefusals(t *testing.T) {
	tool := &qemuimg.Tool{Binary: "/nonexistent/qemu-img"}
	err := tool.SnapshotCreate(ctx(t), "/x/disk.img", qemuimg.FormatRaw, "a")
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "raw") {
		t.Errorf("raw: %v", err)
	}
	for _, tag := range []string{"", "-d", "a,b", "a/b", "a=b", "a b"} {
		if err := tool.SnapshotDelete(ctx(t), "/x/disk.qcow2", qemuimg.FormatQCOW2, tag); errdefs.As(err) == nil {
			t.Errorf("tag %q: %v", tag, err)
		}
	}
	if err := tool.SnapshotApply(ctx(t), "disk.qcow2", qemuimg.FormatQCOW2, "a"); errdefs.As(err) == nil {
		t.Errorf("relative path: %v", err)
	}
}
