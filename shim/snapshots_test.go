package shim

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Live snapshots on real QEMU: one transaction over all disks while the
// guest is paused, resumed after, also when the transaction fails (then no
// disk holds the snapshot); deletes live; each change an event; bad input
// refused before QEMU sees it.
func TestSnapshotOnRealQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	var tool qemuimg.Tool
	var args []string
	s := New(Config{})
	s.spec = &vmspec.Spec{ID: cdromTestVM}
	for _, d := range []struct{ name, format string }{{"disk0", "qcow2"}, {"disk1", "qcow2"}, {"disk2", "raw"}} {
		p := filepath.Join(dir, d.name+"."+d.format)
		if err := tool.Create(ctx, p, d.format, 1<<20); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-blockdev", fmt.Sprintf(`{"driver":"file","node-name":"%s-file","filename":%q}`, d.name, p),
			"-blockdev", fmt.Sprintf(`{"driver":%q,"node-name":%q,"file":"%s-file"}`, d.format, d.name, d.name),
			"-device", fmt.Sprintf(`{"driver":"virtio-blk-pci","id":%q,"drive":%q}`, d.name, d.name))
		dev := vmspec.NewDevice(d.name, vmspec.Disk{Path: p, Format: d.format, SizeBytes: 1 << 20})
		s.spec.Devices = append(s.spec.Devices, dev)
		dd, err := device.New(dev)
		if err != nil {
			t.Fatal(err)
		}
		s.devices = append(s.devices, dd)
	}
	c, p := bareQEMU(t, ctx, args...)
	s.qmp, s.qemu = c, p
	logFile := cdromShim(t, s, dir)
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	s.status.Status = api.StatusRunning
	running := func(step string) {
		t.Helper()
		st, err := c.QueryStatus(ctx)
		if err != nil || !st.Running {
			t.Fatalf("%s: the guest is not running: %+v %v", step, st, err)
		}
	}
	tags := func(disk string) []string {
		t.Helper()
		snaps, err := tool.Snapshots(ctx, filepath.Join(dir, disk+".qcow2"), "qcow2", qemuimg.ForceShare())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sn := range snaps {
			out = append(out, sn.Name)
		}
		return out
	}
	var paused time.Duration // what the last call answered
	snap := func(op, tag string, disks ...string) error {
		res, err := s.snapshot(ctx, shimapi.SnapshotRequest{Op: op, Tag: tag, Disks: disks})
		paused = res.GuestPaused
		return err
	}

	if err := snap(shimapi.SnapshotCreate, "both", "disk0", "disk1"); err != nil {
		t.Fatal(err)
	}
	running("after a snapshot")
	if paused <= 0 {
		t.Errorf("a snapshot of the running guest says it paused it %v", paused)
	}
	if !slices.Equal(tags("disk0"), []string{"both"}) || !slices.Equal(tags("disk1"), []string{"both"}) {
		t.Fatalf("after a snapshot: disk0 %v, disk1 %v", tags("disk0"), tags("disk1"))
	}
	if err := snap(shimapi.SnapshotCreate, "one", "disk1"); err != nil {
		t.Fatal(err)
	}
	// disk1 holds "one" already: the transaction fails, disk0 gets none.
	if err := snap(shimapi.SnapshotCreate, "one", "disk0", "disk1"); err == nil {
		t.Fatal("a snapshot one disk refuses succeeded")
	}
	running("after a failed snapshot")
	if got := tags("disk0"); !slices.Equal(got, []string{"both"}) {
		t.Fatalf("a failed transaction left disk0 with %v", got)
	}

	for _, bad := range []struct {
		op, tag string
		disks   []string
		code    errdefs.Code
	}{
		{shimapi.SnapshotCreate, "a,b", []string{"disk0"}, errdefs.CodeInvalidArgument},
		{shimapi.SnapshotCreate, "a/b", []string{"disk0"}, errdefs.CodeInvalidArgument},
		{shimapi.SnapshotCreate, "x", nil, errdefs.CodeInvalidArgument},
		{shimapi.SnapshotCreate, "x", []string{"disk9"}, errdefs.CodeNotFound},
		{shimapi.SnapshotCreate, "x", []string{"disk0", "disk2"}, errdefs.CodeFailedPrecondition},
		{"revert", "x", []string{"disk0"}, errdefs.CodeInvalidArgument},
	} {
		if e := errdefs.As(snap(bad.op, bad.tag, bad.disks...)); e == nil || e.Code != bad.code {
			t.Errorf("%+v: %v, want %s", bad, e, bad.code)
		}
	}
	if got := tags("disk0"); !slices.Equal(got, []string{"both"}) {
		t.Fatalf("refusals left disk0 with %v", got)
	}

	// With memory: QEMU's jobs save, load and delete it; the guest runs
	// on after each, and its state lies in the first disk.
	memory := func(op, tag string, disks ...string) error {
		res, err := s.snapshot(ctx, shimapi.SnapshotRequest{Op: op, Tag: tag, Disks: disks, Memory: true})
		paused = res.GuestPaused
		return err
	}
	if err := memory(shimapi.SnapshotCreate, "mem", "disk0", "disk1"); err != nil {
		t.Fatal(err)
	}
	running("after a memory snapshot")
	if paused <= 0 {
		t.Errorf("a memory snapshot of the running guest says it paused it %v", paused)
	}
	snaps, err := tool.Snapshots(ctx, filepath.Join(dir, "disk0.qcow2"), "qcow2", qemuimg.ForceShare())
	if err != nil || len(snaps) != 2 || snaps[1].Name != "mem" || snaps[1].VMStateSize == 0 {
		t.Fatalf("disk0's snapshots after a memory snapshot: %+v %v", snaps, err)
	}
	if got := tags("disk1"); !slices.Equal(got, []string{"both", "one", "mem"}) {
		t.Fatalf("disk1 after a memory snapshot: %v", got)
	}
	if err := memory(shimapi.SnapshotLoad, "mem", "disk0", "disk1"); err != nil {
		t.Fatal(err)
	}
	running("after loading a memory snapshot")
	if err := snap(shimapi.SnapshotLoad, "both", "disk0", "disk1"); errdefs.As(err) == nil || errdefs.As(err).Code != errdefs.CodeInvalidArgument {
		t.Errorf("loading a disk-only snapshot live: %v", err)
	}
	for _, bad := range [][]string{{"nope", "disk0"}, {"both", "disk0", "disk1"}} {
		if err := memory(shimapi.SnapshotLoad, bad[0], bad[1:]...); errdefs.As(err) == nil || errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
			t.Errorf("loading %s with memory: %v, want FailedPrecondition", bad[0], err)
		}
	}
	running("after refused loads")
	if err := memory(shimapi.SnapshotDelete, "mem", "disk0", "disk1"); err != nil {
		t.Fatal(err)
	}
	if paused != 0 {
		t.Errorf("a delete says it paused the guest %v", paused)
	}

	if err := snap(shimapi.SnapshotDelete, "one", "disk1"); err != nil {
		t.Fatal(err)
	}
	if err := snap(shimapi.SnapshotDelete, "both", "disk0", "disk1"); err != nil {
		t.Fatal(err)
	}
	running("after the deletes")
	if len(tags("disk0"))+len(tags("disk1")) != 0 {
		t.Fatalf("after the deletes: disk0 %v, disk1 %v", tags("disk0"), tags("disk1"))
	}
	var got []string
	for _, m := range messages(t, logFile) {
		if i := strings.Index(m, " (the guest paused"); i >= 0 {
			m = m[:i]
		}
		if strings.HasSuffix(m, "%") {
			continue // a long job's progress, as far as it got
		}
		got = append(got, m)
	}
	want := []string{
		"progress: snapshot both taken of disk0, disk1",
		"progress: snapshot one taken of disk1",
		"progress: snapshot mem: saving the guest's memory into disk0 and snapshotting disk0, disk1",
		"progress: snapshot mem taken with memory of disk0, disk1",
		"progress: snapshot mem: loading the guest's memory and disks",
		"progress: reverted to snapshot mem with memory: disk0, disk1",
		"progress: snapshot mem deleted",
		"progress: snapshot one deleted",
		"progress: snapshot both deleted",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
}

// TestPauseWatchReadsQEMUsClock: the pause is QEMU's STOP to the RESUME
// after it; a RESUME before any STOP does not count, and without the pair
// the caller's own bound stands.
func TestPauseWatchReadsQEMUsClock(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	watch := func(evs ...qmp.Event) *pauseWatch {
		ch := make(chan qmp.Event, len(evs))
		for _, e := range evs {
			ch <- e
		}
		return &pauseWatch{events: ch, end: func() {}}
	}
	const bound = time.Second
	for _, c := range []struct {
		name string
		evs  []qmp.Event
		want time.Duration
	}{
		{"stop and resume", []qmp.Event{{Name: qmp.EventStop, Time: at}, {Name: qmp.EventResume, Time: at.Add(1500 * time.Microsecond)}}, 1500 * time.Microsecond},
		{"an earlier resume", []qmp.Event{{Name: qmp.EventResume, Time: at}, {Name: qmp.EventStop, Time: at.Add(time.Millisecond)}, {Name: qmp.EventResume, Time: at.Add(3 * time.Millisecond)}}, 2 * time.Millisecond},
		{"no resume", []qmp.Event{{Name: qmp.EventStop, Time: at}}, bound},
		{"no timestamps", []qmp.Event{{Name: qmp.EventStop}, {Name: qmp.EventResume}}, bound},
		{"nothing", nil, bound},
	} {
		if got := watch(c.evs...).paused(bound); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
