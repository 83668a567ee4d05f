package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// markerOffset is where on its disk the guest writes its markers: the
// test guest has no file system there, so a raw block at 1 MiB will do.
const markerOffset = 2048 // 512-byte sectors

// writeDiskMarker has the guest write marker onto its disk and flush it
// down to QEMU.
func (b *bed) writeDiskMarker(t *testing.T, id, marker string) {
	t.Helper()
	b.guestMust(t, id, fmt.Sprintf("printf '%%-512s' '%s' > /tmp/blk && dd if=/tmp/blk of=/dev/vda bs=512 seek=%d count=1 2>/dev/null && sync",
		marker, markerOffset))
}

// diskMarker is what the guest reads back from its disk, past its page
// cache.
func (b *bed) diskMarker(t *testing.T, id string) string {
	t.Helper()
	out, rc := b.guestRun(t, id, fmt.Sprintf("echo 3 > /proc/sys/vm/drop_caches; echo DISK=$(dd if=/dev/vda bs=512 skip=%d count=1 2>/dev/null)", markerOffset))
	if rc != 0 {
		t.Fatalf("guest: reading the disk exited %d: %s", rc, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "DISK="); ok {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// imageSnapshots are the tags `qemu-img snapshot -l` lists for the image,
// read shared (-U) as a running QEMU holds it locked.
func (b *bed) imageSnapshots(t *testing.T, path string) []string {
	t.Helper()
	var tags []string
	for _, line := range strings.Split(b.run(t, "qemu-img", "snapshot", "-l", "-U", path), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] != "ID" && f[0] != "Snapshot" {
			tags = append(tags, f[1])
		}
	}
	return tags
}

func snapshotTags(l api.Snapshots) []string {
	var out []string
	for _, s := range l.Snapshots {
		out = append(out, s.Name)
	}
	return out
}

// diskPath is the image of the VM's disk name.
func diskPath(t *testing.T, vm api.VM, name string) string {
	t.Helper()
	for _, d := range vm.Devices {
		if d.Name == name && d.Disk != nil {
			return d.Disk.Path
		}
	}
	t.Fatalf("VM %s has no disk %s: %+v", vm.ID, name, vm.Devices)
	return ""
}

// A disk-only snapshot of a running VM (acceptance 3): the guest writes,
// a snapshot is taken live, it writes again, the VM is powered off and
// reverted, and the next boot's guest reads the first data. The list
// agrees with `qemu-img snapshot -l` and with PostgreSQL's rows, which
// announce each change; each change is an event, and bad input names its
// field and leaves nothing behind.
func TestSnapshotDiskOnlyLive(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "snapshots")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img := diskPath(t, vm, "disk0")

	b.writeDiskMarker(t, vm.ID, "FIRST-DATA")
	notes := b.listen(t)
	sn, err := b.client.CreateSnapshot(ctx, vm.ID, api.CreateSnapshotRequest{Name: "before-update", Description: "clean system"})
	if err != nil {
		t.Fatal(err)
	}
	if sn.PowerState != api.StatusRunning || sn.Memory || !sn.IsCurrent || !slices.Equal(sn.Disks, []string{"disk0"}) || sn.GuestPausedMs <= 0 {
		t.Fatalf("snapshot %+v", sn)
	}
	// PostgreSQL holds it as the API gave it, and said so.
	awaitSnapshotRows(t, notes, vm.ID, func(rows []api.Snapshot) bool {
		return len(rows) == 1 && rows[0].ID == sn.ID && rows[0].Name == sn.Name && rows[0].Description == sn.Description &&
			rows[0].IsCurrent && !rows[0].Memory && rows[0].PowerState == api.StatusRunning &&
			slices.Equal(rows[0].Disks, sn.Disks) && rows[0].CreatedAt.Equal(sn.CreatedAt.Truncate(time.Microsecond))
	})
	// The guest was resumed: it writes again.
	b.writeDiskMarker(t, vm.ID, "SECOND-DATA")
	if got := b.diskMarker(t, vm.ID); got != "SECOND-DATA" {
		t.Fatalf("the guest reads %q after its second write", got)
	}
	if v, err := b.client.Get(ctx, vm.ID); err != nil || v.Status != api.StatusRunning {
		t.Fatalf("after the snapshot the VM is %s (%v)", v.Status, err)
	}
	var listed api.Snapshots
	out := b.run(t, "infinivirtctl", "vm", "snapshot", "list", vm.ID, "-o", "json")
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("vm snapshot list -o json: %v\n%s", err, out)
	}
	if got, want := snapshotTags(listed), b.imageSnapshots(t, img); !slices.Equal(got, want) || !slices.Equal(got, []string{"before-update"}) {
		t.Fatalf("the agent lists %v, qemu-img %v", got, want)
	}

	// Bad input on the running VM: nothing changes.
	specFile := vmspec.DefaultLayout.SpecFile(vm.ID)
	metaFile := vmspec.DefaultLayout.SnapshotsFile(vm.ID)
	footprint := func() string {
		return b.run(t, "cat", specFile) + "\n" + b.run(t, "cat", metaFile) + "\n" + strings.Join(b.imageSnapshots(t, img), ",")
	}
	before := footprint()
	for _, bad := range []struct {
		name  string
		call  func() error
		code  errdefs.Code
		field string
	}{
		{"comma", func() error {
			_, err := b.client.CreateSnapshot(ctx, vm.ID, api.CreateSnapshotRequest{Name: "a,file=/etc/passwd"})
			return err
		}, errdefs.CodeInvalidArgument, "name"},
		{"slash", func() error {
			_, err := b.client.CreateSnapshot(ctx, vm.ID, api.CreateSnapshotRequest{Name: "a/b"})
			return err
		}, errdefs.CodeInvalidArgument, "name"},
		{"taken", func() error {
			_, err := b.client.CreateSnapshot(ctx, vm.ID, api.CreateSnapshotRequest{Name: "before-update"})
			return err
		}, errdefs.CodeAlreadyExists, "name"},
		{"revert unknown", func() error { _, err := b.client.RevertSnapshot(ctx, vm.ID, "nope", false); return err }, errdefs.CodeNotFound, "snapshot"},
		{"delete unknown", func() error { return b.client.DeleteSnapshot(ctx, vm.ID, "nope") }, errdefs.CodeNotFound, "snapshot"},
		{"revert while running", func() error {
			_, err := b.client.RevertSnapshot(ctx, vm.ID, "before-update", false)
			return err
		}, errdefs.CodeFailedPrecondition, ""},
	} {
		if err := bad.call(); !isAPIError(err, bad.code, bad.field) || (bad.field == "" && errdefs.As(err).Field != "") {
			t.Errorf("%s: %v, want %s naming %q", bad.name, err, bad.code, bad.field)
		}
		if now := footprint(); now != before {
			t.Fatalf("%s changed something:\n%s", bad.name, now)
		}
	}

	if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	var reverted api.Snapshot
	out = b.run(t, "infinivirtctl", "vm", "snapshot", "revert", vm.ID, "before-update", "-o", "json")
	if err := json.Unmarshal([]byte(out), &reverted); err != nil || reverted.Name != "before-update" || !reverted.IsCurrent {
		t.Fatalf("vm snapshot revert -o json: %v\n%s", err, out)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, false, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if got := b.diskMarker(t, vm.ID); got != "FIRST-DATA" {
		t.Fatalf("after the revert and a boot the guest reads %q, want the first data", got)
	}
	if l, err := b.client.Snapshots(ctx, vm.ID); err != nil || !slices.Equal(snapshotTags(l), b.imageSnapshots(t, img)) {
		t.Fatalf("after the boot the agent lists %+v (%v), qemu-img %v", l, err, b.imageSnapshots(t, img))
	}

	// Deleted live, through the CLI; its row goes.
	b.run(t, "infinivirtctl", "vm", "snapshot", "delete", vm.ID, "before-update")
	awaitSnapshotRows(t, notes, vm.ID, func(rows []api.Snapshot) bool { return len(rows) == 0 })
	if tags := b.imageSnapshots(t, img); len(tags) != 0 {
		t.Fatalf("after the delete qemu-img lists %v", tags)
	}
	if l, err := b.client.Snapshots(ctx, vm.ID); err != nil || len(l.Snapshots) != 0 {
		t.Fatalf("after the delete the agent lists %+v (%v)", l, err)
	}

	var msgs []string
	for _, e := range b.vmEvents(t, vm.ID) {
		msgs = append(msgs, e.Message)
	}
	for _, want := range []string{"snapshot before-update taken of disk0 (the guest paused", "reverted to snapshot before-update: disk0", "snapshot before-update deleted"} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, want) }) {
			t.Errorf("the VM's log lacks %q", want)
		}
	}
}

// A raw disk holds no snapshots: the refusal names the disk and leaves
// nothing behind.
func TestSnapshotRawDiskRefused(t *testing.T) {
	b := setup(t)
	in, _ := b.vmInput("snapshot-raw")
	in.DiskFormat = "raw"
	off := false
	in.Start = &off
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	events := b.run(t, "cat", vmspec.DefaultLayout.EventsFile(vm.ID))
	_, err = b.client.CreateSnapshot(ctx, vm.ID, api.CreateSnapshotRequest{Name: "x"})
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "disk0 is a raw image") {
		t.Fatalf("a snapshot of a raw disk: %v", err)
	}
	if _, err := b.try("test", "-e", vmspec.DefaultLayout.SnapshotsFile(vm.ID)); err == nil {
		t.Error("a refused snapshot left a snapshots file")
	}
	if now := b.run(t, "cat", vmspec.DefaultLayout.EventsFile(vm.ID)); now != events {
		t.Errorf("a refused snapshot changed the log:\n%s", now)
	}
}

// guestUptime is the guest's /proc/uptime in whole seconds.
func (b *bed) guestUptime(t *testing.T, id string) int {
	t.Helper()
	out, rc := b.guestRun(t, id, "echo UPTIME=$(cut -d. -f1 /proc/uptime)")
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "UPTIME="); ok && rc == 0 {
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("guest: no uptime in %q (exit %d)", out, rc)
	return 0
}

// ramMarker is what the guest reads from its file in RAM.
func (b *bed) ramMarker(t *testing.T, id string) string {
	t.Helper()
	out, _ := b.guestRun(t, id, "echo RAM=$(cat /mnt/ram/marker)")
	for _, line := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "RAM="); ok {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// A memory snapshot of a running VM (acceptance 2): the guest writes a
// marker into a file in RAM (tmpfs) and onto its disk, the snapshot is
// taken, both markers are overwritten, the snapshot is reverted: the guest
// shows the first markers and was not rebooted: its uptime goes on, and
// its console shows one boot.
func TestSnapshotWithMemory(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "snapshot-memory")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img := diskPath(t, vm, "disk0")

	b.guestMust(t, vm.ID, "mkdir -p /mnt/ram && mount -t tmpfs tmpfs /mnt/ram && echo RAM-FIRST > /mnt/ram/marker")
	b.writeDiskMarker(t, vm.ID, "DISK-FIRST")
	atSnapshot := b.guestUptime(t, vm.ID)
	var sn api.Snapshot
	out := b.run(t, "infinivirtctl", "vm", "snapshot", "create", vm.ID, "with-memory", "--memory", "-o", "json")
	if err := json.Unmarshal([]byte(out), &sn); err != nil || !sn.Memory || sn.PowerState != api.StatusRunning || sn.GuestPausedMs <= 0 {
		t.Fatalf("vm snapshot create --memory -o json: %v\n%s", err, out)
	}
	l, err := b.client.Snapshots(ctx, vm.ID)
	if err != nil || len(l.Snapshots) != 1 || l.Snapshots[0].SizeBytes == 0 || !slices.Equal(snapshotTags(l), b.imageSnapshots(t, img)) {
		t.Fatalf("the agent lists %+v (%v), qemu-img %v", l, err, b.imageSnapshots(t, img))
	}

	b.guestMust(t, vm.ID, "echo RAM-SECOND > /mnt/ram/marker")
	b.writeDiskMarker(t, vm.ID, "DISK-SECOND")
	if got := b.ramMarker(t, vm.ID); got != "RAM-SECOND" {
		t.Fatalf("before the revert the guest reads %q from RAM", got)
	}

	reverted, err := b.client.RevertSnapshot(ctx, vm.ID, "with-memory", false)
	if err != nil || !reverted.IsCurrent {
		t.Fatalf("revert: %+v %v", reverted, err)
	}
	if v, err := b.client.Get(ctx, vm.ID); err != nil || v.Status != api.StatusRunning {
		t.Fatalf("after the revert the VM is %s (%v)", v.Status, err)
	}
	if got := b.ramMarker(t, vm.ID); got != "RAM-FIRST" {
		t.Fatalf("after the revert the guest reads %q from RAM, want the first marker", got)
	}
	if got := b.diskMarker(t, vm.ID); got != "DISK-FIRST" {
		t.Fatalf("after the revert the guest reads %q from its disk, want the first marker", got)
	}
	// Not rebooted: the clock goes on, and the console shows one boot.
	if now := b.guestUptime(t, vm.ID); now < atSnapshot {
		t.Fatalf("after the revert the guest's uptime is %d s, below the %d s it had at the snapshot", now, atSnapshot)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if con, err := b.client.Console(ctx, vm.ID); err != nil || strings.Count(con, "TESTGUEST READY") != 1 {
		t.Fatalf("the guest booted again (%v)", err)
	}

	// Deleted live: a snapshot-delete job.
	if err := b.client.DeleteSnapshot(ctx, vm.ID, "with-memory"); err != nil {
		t.Fatal(err)
	}
	if tags := b.imageSnapshots(t, img); len(tags) != 0 {
		t.Fatalf("after the delete qemu-img lists %v", tags)
	}
	var msgs []string
	for _, e := range b.vmEvents(t, vm.ID) {
		msgs = append(msgs, e.Message)
	}
	for _, want := range []string{"snapshot with-memory taken with memory of disk0 (the guest paused", "reverted to snapshot with-memory with memory: disk0", "snapshot with-memory deleted"} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, want) }) {
			t.Errorf("the VM's log lacks %q", want)
		}
	}
}

// BenchmarkSnapshotLive takes disk-only snapshots of a running VM: how
// long the guest was paused (QEMU's STOP to RESUME, as the snapshot
// reports it) and the whole API call. Each is deleted again after.
func BenchmarkSnapshotLive(b *testing.B) {
	bd := setup(b)
	vm := bd.createVM(b, "bench-snapshot")
	var pauseMs, callMs []float64
	for i := range rounds {
		pause, call := bd.benchSnapshot(b, vm.ID, fmt.Sprintf("bench%d", i), false)
		pauseMs, callMs = append(pauseMs, pause), append(callMs, call)
	}
	b.ReportMetric(median(pauseMs), "ms/pause")
	b.ReportMetric(median(callMs), "ms/call")
}

// memoryBenchFillMiB is how much of its 512 MiB the guest fills before a
// memory snapshot, so that QEMU saves pages that are not zero, as a
// desktop's would be.
const memoryBenchFillMiB = 256

// BenchmarkSnapshotMemory takes memory snapshots of a running 512 MiB
// guest that filled half its RAM: the whole API call, and how long QEMU
// held the guest stopped for the save. Each is deleted again after.
func BenchmarkSnapshotMemory(b *testing.B) {
	bd := setup(b)
	in, _ := bd.vmInput("bench-snapshot-memory")
	in.RAMGB = 0.5
	vm := bd.createVMFrom(b, in)
	bd.guestMust(b, vm.ID, fmt.Sprintf("mkdir -p /mnt/fill && mount -t tmpfs -o size=%dm fill /mnt/fill && "+
		"dd if=/dev/urandom of=/mnt/fill/chunk bs=1M count=1 2>/dev/null && "+
		"for i in $(seq %d); do cat /mnt/fill/chunk; done > /mnt/fill/all", memoryBenchFillMiB+16, memoryBenchFillMiB))
	var pauseMs, callMs []float64
	for i := range 3 {
		pause, call := bd.benchSnapshot(b, vm.ID, fmt.Sprintf("bench-mem%d", i), true)
		pauseMs, callMs = append(pauseMs, pause), append(callMs, call)
	}
	b.ReportMetric(median(pauseMs), "ms/pause")
	b.ReportMetric(median(callMs), "ms/call")
}

// benchSnapshot takes the snapshot name of the running VM, checks that the
// guest runs on, deletes it, and returns the pause it reported and how
// long the call took, in milliseconds.
func (b *bed) benchSnapshot(t testing.TB, id, name string, memory bool) (pauseMs, callMs float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	sn, err := b.client.CreateSnapshot(ctx, id, api.CreateSnapshotRequest{Name: name, Memory: memory})
	if err != nil {
		t.Fatal(err)
	}
	callMs = ms(time.Since(began))
	if sn.GuestPausedMs <= 0 {
		t.Fatalf("snapshot %s of the running VM reports no pause: %+v", name, sn)
	}
	if v, err := b.client.Get(ctx, id); err != nil || v.Status != api.StatusRunning {
		t.Fatalf("after snapshot %s the VM is %s (%v)", name, v.Status, err)
	}
	if err := b.client.DeleteSnapshot(ctx, id, name); err != nil {
		t.Fatal(err)
	}
	return sn.GuestPausedMs, callMs
}
