package agent

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// realQemuImg makes the bed's agents create and snapshot real images.
func (b *bed) realQemuImg() {
	b.t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		b.t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	if _, err := exec.LookPath("qemu-io"); err != nil {
		b.t.Skip("qemu-io is not installed (Debian package qemu-utils)")
	}
	b.qemuImg = p
}

// writePattern fills the first 4 KiB of a VM's disk0 with byte n.
func (b *bed) writePattern(id string, n int) {
	b.t.Helper()
	img := b.layout.VMDir(id) + "/disk0.qcow2"
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P "+strconv.Itoa(n)+" 0 4k", img).CombinedOutput(); err != nil {
		b.t.Fatalf("qemu-io write: %v: %s", err, out)
	}
}

// holdsPattern reports whether the first 4 KiB of disk0 are byte n.
func (b *bed) holdsPattern(id string, n int) bool {
	b.t.Helper()
	img := b.layout.VMDir(id) + "/disk0.qcow2"
	out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "read -P "+strconv.Itoa(n)+" 0 4k", img).CombinedOutput()
	return err == nil && !strings.Contains(string(out), "Pattern verification failed")
}

// imageTags are the tags `qemu-img snapshot -l` lists for disk0.
func (b *bed) imageTags(id string) []string {
	b.t.Helper()
	out, err := exec.Command("qemu-img", "snapshot", "-l", b.layout.VMDir(id)+"/disk0.qcow2").CombinedOutput()
	if err != nil {
		b.t.Fatalf("snapshot -l: %v: %s", err, out)
	}
	var tags []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] != "ID" && f[0] != "Snapshot" {
			tags = append(tags, f[1])
		}
	}
	return tags
}

// snapshotFootprint is what a refused snapshot change must leave as it
// was: spec, log, snapshots file and the image's own snapshots.
func (b *bed) snapshotFootprint(id string) string {
	b.t.Helper()
	return b.footprintOf(id) + "\n--\n" + b.snapshotState(id)
}

// snapshotState is the snapshots file, the spec and the image's own
// snapshots.
func (b *bed) snapshotState(id string) string {
	b.t.Helper()
	meta, err := os.ReadFile(b.layout.SnapshotsFile(id))
	if err != nil && !os.IsNotExist(err) {
		b.t.Fatal(err)
	}
	spec, err := os.ReadFile(b.layout.SpecFile(id))
	if err != nil {
		b.t.Fatal(err)
	}
	return string(spec) + "\n--\n" + string(meta) + "\n--\n" + strings.Join(b.imageTags(id), ",")
}

func snapshotNames(l api.Snapshots) (names []string, current string) {
	for _, s := range l.Snapshots {
		names = append(names, s.Name)
		if s.IsCurrent {
			current = s.Name
		}
	}
	return names, current
}

// waitStored waits until the database holds the VM's snapshots as the
// agent lists them.
func (b *bed) waitStored(a *Agent, id, what string) {
	b.t.Helper()
	var listed, stored []api.Snapshot
	if !agenttest.WaitFor(waitLimit, func() bool {
		l, err := a.Snapshots(context.Background(), id)
		listed, stored = l.Snapshots, b.store.Snapshots(id)
		return err == nil && len(listed) == len(stored) && (len(stored) == 0 || reflect.DeepEqual(listed, stored))
	}) {
		b.t.Fatalf("%s: the database holds %+v, the agent lists %+v", what, stored, listed)
	}
}

func wantCode(t *testing.T, what string, err error, code errdefs.Code, field string) {
	t.Helper()
	e := errdefs.As(err)
	if e == nil || e.Code != code || e.Field != field {
		t.Errorf("%s: %v, want %s naming %q", what, err, code, field)
	}
}

// A VM that is off: snapshots are taken, reverted to and deleted with
// qemu-img, the list agrees with `qemu-img snapshot -l`, each change is an
// event, and all of it survives an agent restart.
func TestSnapshotsOfAStoppedVM(t *testing.T) {
	b := newBed(t)
	b.realQemuImg()
	a, stop := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	b.writePattern(vm1, 1)
	first, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "first", Description: "clean"})
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == "" || first.VMID != vm1 || !first.IsCurrent || first.Memory || first.PowerState != api.StatusOff ||
		!slices.Equal(first.Disks, []string{"disk0"}) || first.Description != "clean" || first.CreatedAt.IsZero() {
		t.Errorf("created %+v", first)
	}
	if got := lastMessage(t, b, vm1); got != "snapshot first taken of disk0" {
		t.Errorf("event %q", got)
	}
	b.waitStored(a, vm1, "take")
	b.writePattern(vm1, 2)
	if _, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "second.v2"}); err != nil {
		t.Fatal(err)
	}
	b.waitStored(a, vm1, "take another")
	b.writePattern(vm1, 3)
	l, err := a.Snapshots(t.Context(), vm1)
	names, cur := snapshotNames(l)
	if err != nil || !slices.Equal(names, []string{"first", "second.v2"}) || cur != "second.v2" {
		t.Fatalf("list %+v %v", l, err)
	}
	if tags := b.imageTags(vm1); !slices.Equal(tags, names) {
		t.Errorf("qemu-img lists %v, the agent %v", tags, names)
	}

	sn, err := a.RevertSnapshot(t.Context(), vm1, "first", false)
	if err != nil || sn.Name != "first" || !sn.IsCurrent {
		t.Fatalf("revert: %+v %v", sn, err)
	}
	if !b.holdsPattern(vm1, 1) {
		t.Error("after the revert the disk does not hold the first data")
	}
	if got := lastMessage(t, b, vm1); got != "reverted to snapshot first: disk0" {
		t.Errorf("event %q", got)
	}
	if tags := b.imageTags(vm1); !slices.Equal(tags, []string{"first", "second.v2"}) {
		t.Errorf("after the revert qemu-img lists %v: the revert's own keep must be gone", tags)
	}
	b.waitStored(a, vm1, "revert")

	// While the agent is away the database gains a row of a snapshot the
	// VM does not have; the next agent removes it when it starts.
	stop()
	stale := api.Snapshot{ID: "0c0c0c0c-0000-4000-8000-000000000000", VMID: vm1, Name: "stale", PowerState: api.StatusOff, Disks: []string{"disk0"}}
	b.store.SetSnapshots(vm1, append(b.store.Snapshots(vm1), stale))
	a, _ = b.start(b.config())
	l, err = a.Snapshots(t.Context(), vm1)
	if names, cur := snapshotNames(l); err != nil || !slices.Equal(names, []string{"first", "second.v2"}) || cur != "first" {
		t.Fatalf("after a restart: %+v %v", l, err)
	}
	b.waitStored(a, vm1, "an agent's start")
	if err := a.DeleteSnapshot(t.Context(), vm1, "second.v2"); err != nil {
		t.Fatal(err)
	}
	if got := lastMessage(t, b, vm1); got != "snapshot second.v2 deleted" {
		t.Errorf("event %q", got)
	}
	b.waitStored(a, vm1, "delete")
	if err := a.DeleteSnapshot(t.Context(), vm1, "first"); err != nil {
		t.Fatal(err)
	}
	b.waitStored(a, vm1, "delete the last")
	l, err = a.Snapshots(t.Context(), vm1)
	if err != nil || len(l.Snapshots) != 0 || len(b.imageTags(vm1)) != 0 {
		t.Fatalf("after deleting both: %+v %v, qemu-img %v", l, err, b.imageTags(vm1))
	}
	if !b.holdsPattern(vm1, 1) {
		t.Error("deleting the snapshots changed the disk")
	}
}

// Bad input names its field and leaves nothing behind: not the spec, the
// log, the snapshots file or the images.
func TestSnapshotBadInput(t *testing.T) {
	b := newBed(t)
	b.realQemuImg()
	a, _ := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	before := b.snapshotFootprint(vm1)
	create := func(req api.CreateSnapshotRequest) func() error {
		return func() error { _, err := a.CreateSnapshot(t.Context(), vm1, req); return err }
	}
	for _, bad := range []struct {
		name  string
		call  func() error
		code  errdefs.Code
		field string
	}{
		{"comma", create(api.CreateSnapshotRequest{Name: "a,b"}), errdefs.CodeInvalidArgument, "name"},
		{"slash", create(api.CreateSnapshotRequest{Name: "a/b"}), errdefs.CodeInvalidArgument, "name"},
		{"option", create(api.CreateSnapshotRequest{Name: "-d"}), errdefs.CodeInvalidArgument, "name"},
		{"equals", create(api.CreateSnapshotRequest{Name: "file=x"}), errdefs.CodeInvalidArgument, "name"},
		{"space", create(api.CreateSnapshotRequest{Name: "a b"}), errdefs.CodeInvalidArgument, "name"},
		{"empty", create(api.CreateSnapshotRequest{}), errdefs.CodeInvalidArgument, "name"},
		{"an ID", create(api.CreateSnapshotRequest{Name: "1"}), errdefs.CodeInvalidArgument, "name"},
		{"too long", create(api.CreateSnapshotRequest{Name: strings.Repeat("x", 65)}), errdefs.CodeInvalidArgument, "name"},
		{"long description", create(api.CreateSnapshotRequest{Name: "d", Description: strings.Repeat("x", 1025)}), errdefs.CodeInvalidArgument, "description"},
		{"memory of a VM that is off", create(api.CreateSnapshotRequest{Name: "m", Memory: true}), errdefs.CodeInvalidArgument, "memory"},
		{"taken name", create(api.CreateSnapshotRequest{Name: "kept"}), errdefs.CodeAlreadyExists, "name"},
		{"revert unknown", func() error { _, err := a.RevertSnapshot(t.Context(), vm1, "nope", false); return err }, errdefs.CodeNotFound, "snapshot"},
		{"delete unknown", func() error { return a.DeleteSnapshot(t.Context(), vm1, "nope") }, errdefs.CodeNotFound, "snapshot"},
		{"revert with a comma", func() error { _, err := a.RevertSnapshot(t.Context(), vm1, "kept,x", false); return err }, errdefs.CodeInvalidArgument, "snapshot"},
		{"delete with a slash", func() error { return a.DeleteSnapshot(t.Context(), vm1, "../kept") }, errdefs.CodeInvalidArgument, "snapshot"},
		{"unknown VM", func() error {
			_, err := a.CreateSnapshot(t.Context(), vm2, api.CreateSnapshotRequest{Name: "x"})
			return err
		}, errdefs.CodeNotFound, ""},
	} {
		wantCode(t, bad.name, bad.call(), bad.code, bad.field)
		if after := b.snapshotFootprint(vm1); after != before {
			t.Fatalf("%s changed something:\n%s", bad.name, after)
		}
	}

	// A raw disk holds no snapshots: the refusal names it.
	in := createInput(vm2, false)
	in.DiskFormat = "raw"
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	evs := b.footprintOf(vm2)
	_, err := a.CreateSnapshot(t.Context(), vm2, api.CreateSnapshotRequest{Name: "x"})
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "disk0 is a raw image") {
		t.Errorf("a raw disk: %v", err)
	}
	if _, err := os.Stat(b.layout.SnapshotsFile(vm2)); !os.IsNotExist(err) || b.footprintOf(vm2) != evs {
		t.Errorf("a refused snapshot of a raw disk left something behind: %v", err)
	}
}

// fakeSnapshotShim answers the snapshot verb as the shim does, with
// qemu-img on the images no QEMU holds here.
type fakeSnapshotShim struct {
	mu       sync.Mutex
	b        *bed
	requests []shimapi.SnapshotRequest
	fail     bool
}

func (f *fakeSnapshotShim) exchange(s *agenttest.Shim, method, target string, body []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if method+" "+target != shimapi.RouteSnapshot.Pattern() {
		return nil, errdefs.Unavailable("no %s %s", method, target)
	}
	var req shimapi.SnapshotRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	f.requests = append(f.requests, req)
	if f.fail {
		// As a job QEMU failed part-way: the first disk got the snapshot.
		f.fail = false
		img := f.b.layout.VMDir(s.ID()) + "/" + req.Disks[0] + ".qcow2"
		if out, err := exec.Command("qemu-img", "snapshot", "-c", req.Tag, img).CombinedOutput(); err != nil {
			return nil, errdefs.Internal("%s: %s", err, out)
		}
		return nil, errdefs.Internal("snapshot-save: Error while writing VM state: No space left on device")
	}
	op := map[string]string{shimapi.SnapshotCreate: "-c", shimapi.SnapshotDelete: "-d", shimapi.SnapshotLoad: "-a"}[req.Op]
	for _, d := range req.Disks {
		img := f.b.layout.VMDir(s.ID()) + "/" + d + ".qcow2"
		if out, err := exec.Command("qemu-img", "snapshot", op, req.Tag, img).CombinedOutput(); err != nil {
			return nil, errdefs.Internal("%s: %s", err, out)
		}
	}
	verb := map[string]string{shimapi.SnapshotCreate: "taken", shimapi.SnapshotDelete: "deleted", shimapi.SnapshotLoad: "loaded"}[req.Op]
	var res shimapi.SnapshotResult
	if req.Op == shimapi.SnapshotCreate {
		res.GuestPaused = fakeGuestPause
	}
	body, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return body, s.Progress("snapshot " + req.Tag + " " + verb)
}

// fakeGuestPause is how long the fake shim says a create paused the guest.
const fakeGuestPause = 4250 * time.Microsecond

// A running VM: its shim takes and deletes snapshots live, a failure there
// changes nothing, a memory snapshot loads into the running VM, and a
// revert of a disk-only one needs the VM off or force, which powers it off
// first.
func TestSnapshotsOfARunningVM(t *testing.T) {
	b := newBed(t)
	b.realQemuImg()
	fake := &fakeSnapshotShim{b: b}
	b.host.OnExchange(fake.exchange)
	a, _ := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	b.writePattern(vm1, 1)
	if _, err := a.Power(t.Context(), vm1, api.PowerOn, true); err != nil {
		t.Fatal(err)
	}
	sn, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "live"})
	if err != nil || sn.PowerState != api.StatusRunning || !sn.IsCurrent || sn.Memory || sn.GuestPausedMs != 4.25 {
		t.Fatalf("live snapshot: %+v %v", sn, err)
	}
	want := []shimapi.SnapshotRequest{{Op: shimapi.SnapshotCreate, Tag: "live", Disks: []string{"disk0"}}}
	if !reflect.DeepEqual(fake.requests, want) {
		t.Fatalf("the shim was asked %+v, want %+v", fake.requests, want)
	}
	waitEvent(t, a, vm1, "snapshot live taken")
	b.waitStored(a, vm1, "a live snapshot")
	if l, err := a.Snapshots(t.Context(), vm1); err != nil || len(l.Snapshots) != 1 || l.Snapshots[0].Name != "live" || l.Snapshots[0].GuestPausedMs != 4.25 {
		t.Fatalf("list while running: %+v %v", l, err)
	}
	b.writePattern(vm1, 2)

	// A failed live snapshot leaves the spec, the snapshots and the images
	// as they were; the log tells of the cleanup.
	stateBefore := b.snapshotState(vm1)
	fake.fail = true
	if _, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "x", Memory: true}); err == nil {
		t.Fatal("a snapshot the shim failed succeeded")
	}
	if last := fake.requests[len(fake.requests)-1]; last.Op != shimapi.SnapshotDelete || last.Tag != "x" || !slices.Equal(last.Disks, []string{"disk0"}) {
		t.Errorf("what the failed snapshot left was not deleted: the shim was last asked %+v", last)
	}
	if after := b.snapshotState(vm1); after != stateBefore {
		t.Fatalf("a failed live snapshot changed something:\n%s", after)
	}
	before := b.snapshotFootprint(vm1)
	_, err = a.RevertSnapshot(t.Context(), vm1, "live", false)
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "is running") {
		t.Errorf("revert while running: %v, want FailedPrecondition naming the state", err)
	}
	if after := b.snapshotFootprint(vm1); after != before {
		t.Fatalf("a refused change changed something:\n%s", after)
	}

	if _, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteSnapshot(t.Context(), vm1, "gone"); err != nil {
		t.Fatal(err)
	}
	if last := fake.requests[len(fake.requests)-1]; last.Op != shimapi.SnapshotDelete || last.Tag != "gone" {
		t.Errorf("the delete asked the shim %+v", last)
	}
	waitEvent(t, a, vm1, "snapshot gone deleted")

	// A memory snapshot loads into the running guest: no power-off.
	mem, err := a.CreateSnapshot(t.Context(), vm1, api.CreateSnapshotRequest{Name: "mem", Memory: true})
	if err != nil || !mem.Memory || mem.PowerState != api.StatusRunning {
		t.Fatalf("memory snapshot: %+v %v", mem, err)
	}
	if sn, err := a.RevertSnapshot(t.Context(), vm1, "mem", false); err != nil || !sn.IsCurrent {
		t.Fatalf("memory revert: %+v %v", sn, err)
	}
	wantReqs := []shimapi.SnapshotRequest{
		{Op: shimapi.SnapshotCreate, Tag: "mem", Disks: []string{"disk0"}, Memory: true},
		{Op: shimapi.SnapshotLoad, Tag: "mem", Disks: []string{"disk0"}, Memory: true},
	}
	if got := fake.requests[len(fake.requests)-2:]; !reflect.DeepEqual(got, wantReqs) {
		t.Fatalf("the shim was asked %+v, want %+v", got, wantReqs)
	}
	if v, err := a.Get(vm1); err != nil || v.Status != api.StatusRunning {
		t.Fatalf("after a memory revert the VM is %s (%v)", v.Status, err)
	}
	if err := a.DeleteSnapshot(t.Context(), vm1, "mem"); err != nil {
		t.Fatal(err)
	}
	if last := fake.requests[len(fake.requests)-1]; last.Op != shimapi.SnapshotDelete || !last.Memory {
		t.Errorf("deleting a memory snapshot asked the shim %+v", last)
	}

	if _, err := a.RevertSnapshot(t.Context(), vm1, "live", true); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(vm1); err != nil || !v.Status.Terminal() {
		t.Errorf("after a forced revert the VM is %s (%v)", v.Status, err)
	}
	if !b.holdsPattern(vm1, 1) {
		t.Error("after the forced revert the disk does not hold the first data")
	}
	if tags := b.imageTags(vm1); !slices.Equal(tags, []string{"live"}) {
		t.Errorf("qemu-img lists %v", tags)
	}
}
