package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A snapshot is an internal qcow2 snapshot in each of the VM's disks, all
// tagged with its name; what the images do not hold (description, memory,
// power state, the disks covered, which one is current) is the VM's
// snapshots file beside its spec. The images are the truth: the list
// shows only snapshots every disk they cover still holds.
//
// While the VM is off, qemu-img takes, reverts and deletes them and the
// agent records each change in the VM's log. While it runs, its shim takes
// them (the guest paused around one QMP transaction over all the disks, or
// with memory QEMU's snapshot-save job), loads memory snapshots
// (snapshot-load) and deletes them, and records the change; a revert of
// a disk-only snapshot needs the VM off.
//
// With a database, each change is followed by a resync of the VM, which
// writes the list into infinivirt.vm_snapshots (agent/dbsync).

// maxSnapshotDescription bounds a snapshot's description.
const maxSnapshotDescription = 1024

// undoRevertTag tags the state a revert leaves, kept until every disk is
// reverted so that a revert failing part-way can go back. A client's name
// never holds '~'.
const undoRevertTag = "infinivirt~undo-revert"

// Snapshots lists a VM's snapshots, oldest first, as its disks hold them.
func (a *Agent) Snapshots(ctx context.Context, id string) (api.Snapshots, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Snapshots{}, err
	}
	return a.snapshots(ctx, rec)
}

func (a *Agent) snapshots(ctx context.Context, rec *record) (api.Snapshots, error) {
	return a.listSnapshots(ctx, rec, !rec.currentStatus().Terminal())
}

// snapshotsToSync is what the database mirrors: the list as the API gives
// it. The disks are read shared, so that a read in the background never
// holds a lock that would fail a QEMU or qemu-img starting on them.
func (a *Agent) snapshotsToSync(ctx context.Context, id string) ([]api.Snapshot, error) {
	rec, err := a.get(id)
	if err != nil {
		return nil, err
	}
	l, err := a.listSnapshots(ctx, rec, true)
	return l.Snapshots, err
}

// listSnapshots lists the snapshots of the metadata that the disks hold;
// shared reads the disks without locking them, as a running QEMU holds
// them locked.
func (a *Agent) listSnapshots(ctx context.Context, rec *record, shared bool) (api.Snapshots, error) {
	meta, err := a.loadSnapshots(rec)
	if err != nil {
		return api.Snapshots{}, err
	}
	out := api.Snapshots{Snapshots: []api.Snapshot{}}
	if len(meta.Snapshots) == 0 {
		return out, nil
	}
	tags, err := a.readDiskTags(ctx, rec, shared)
	if err != nil {
		return api.Snapshots{}, err
	}
	for _, sn := range meta.Snapshots {
		size, ok := int64(0), true
		for _, d := range sn.Disks {
			onDisk, known := tags[d]
			if !known {
				continue // the disk is gone; the others still revert
			}
			q, held := onDisk[sn.Name]
			if !held {
				ok = false
				break
			}
			size += q.VMStateSize
		}
		if !ok {
			a.log.Warn("a snapshot of the metadata is missing from a disk; not listed", logging.KeyVM, rec.id, "SNAPSHOT", sn.Name)
			continue
		}
		sn.SizeBytes = size
		sn.IsCurrent = sn.Name == meta.Current
		out.Snapshots = append(out.Snapshots, sn)
	}
	return out, nil
}

// CreateSnapshot takes a snapshot of all of the VM's disks.
func (a *Agent) CreateSnapshot(ctx context.Context, id string, req api.CreateSnapshotRequest) (api.Snapshot, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Snapshot{}, err
	}
	if err := qemuimg.CheckSnapshotName("name", req.Name); err != nil {
		return api.Snapshot{}, err
	}
	if len(req.Description) > maxSnapshotDescription {
		return api.Snapshot{}, errdefs.Invalid("description", "must be at most %d bytes, got %d", maxSnapshotDescription, len(req.Description))
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	defer unlock()
	defer a.sync.Resync(rec.id) // the database follows, even a change that failed part-way
	state := rec.currentStatus()
	live := !state.Terminal()
	if req.Memory && !live {
		return api.Snapshot{}, errdefs.Invalid("memory", "VM %s is %s: it has no RAM to include", rec.id, state)
	}
	disks, err := snapshotDisks(rec.currentSpec())
	if err != nil {
		return api.Snapshot{}, err
	}
	meta, err := a.loadSnapshots(rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	if meta.Find(req.Name) >= 0 {
		return api.Snapshot{}, errdefs.AlreadyExists("name", "VM %s already has a snapshot %q", rec.id, req.Name)
	}
	tags, err := a.diskTags(ctx, rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	for _, d := range disks {
		if _, taken := tags[d.Name][req.Name]; taken {
			return api.Snapshot{}, errdefs.AlreadyExists("name", "disk %s already holds a snapshot %q that the VM's snapshots do not know", d.Name, req.Name)
		}
	}
	sn := api.Snapshot{
		ID: uuid.NewString(), VMID: rec.id, Name: req.Name, Description: req.Description,
		CreatedAt: time.Now().UTC(), PowerState: state, Disks: diskNames(disks), Memory: req.Memory,
	}
	if live {
		var res shimapi.SnapshotResult
		res, err = a.snapshotLive(ctx, rec.id, shimapi.SnapshotRequest{Op: shimapi.SnapshotCreate, Tag: req.Name, Disks: sn.Disks, Memory: req.Memory})
		if err != nil {
			a.dropPartialSnapshot(ctx, rec, req.Name)
		}
		sn.GuestPausedMs = float64(res.GuestPaused.Microseconds()) / 1000
	} else {
		err = a.snapshotsOffline(ctx, disks, req.Name)
	}
	if err != nil {
		return api.Snapshot{}, err
	}
	undoTags := func() {
		bg := context.WithoutCancel(ctx)
		var err error
		if live {
			_, err = a.snapshotLive(bg, rec.id, shimapi.SnapshotRequest{Op: shimapi.SnapshotDelete, Tag: req.Name, Disks: sn.Disks, Memory: req.Memory})
		} else {
			err = a.deleteTags(bg, disks, req.Name)
		}
		if err != nil {
			a.log.Warn("cannot delete the snapshot of a failed create", logging.KeyVM, rec.id, "SNAPSHOT", req.Name, "ERROR", err.Error())
		}
	}
	next := meta.Clone()
	next.Snapshots = append(next.Snapshots, sn)
	next.Current = sn.Name
	if err := next.Save(a.cfg.Layout.SnapshotsFile(rec.id)); err != nil {
		undoTags()
		return api.Snapshot{}, errdefs.Internal("save the snapshots: %v", err)
	}
	// A running VM's shim recorded the change in the log it holds.
	if !live {
		msg := fmt.Sprintf("snapshot %s taken of %s", sn.Name, strings.Join(sn.Disks, ", "))
		if err := a.recordSnapshotChange(ctx, rec, msg, meta); err != nil {
			undoTags()
			return api.Snapshot{}, err
		}
	}
	a.log.Info("snapshot taken", logging.KeyVM, rec.id, "SNAPSHOT", sn.Name, "DISKS", sn.Disks, "LIVE", live)
	sn.IsCurrent = true
	return sn, nil
}

// RevertSnapshot takes the VM back to the snapshot name: what was written
// since is lost. A memory snapshot loads into a running VM, which goes on
// from where it was; any other revert needs the VM off, and force powers
// it off first. While off, a memory snapshot reverts the disks alone, and
// the next boot starts afresh from them. A disk added after the snapshot
// stays as it is.
func (a *Agent) RevertSnapshot(ctx context.Context, id, name string, force bool) (api.Snapshot, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Snapshot{}, err
	}
	if err := qemuimg.CheckSnapshotName("snapshot", name); err != nil {
		return api.Snapshot{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	defer unlock()
	defer a.sync.Resync(rec.id) // the database follows, even a change that failed part-way
	meta, sn, err := a.findSnapshot(rec, name)
	if err != nil {
		return api.Snapshot{}, err
	}
	st := rec.currentStatus()
	if sn.Memory && !st.Terminal() {
		return a.loadSnapshot(ctx, rec, meta, sn)
	}
	if !st.Terminal() {
		if !force {
			return api.Snapshot{}, errdefs.FailedPrecondition("VM %s is %s: a revert of its disks needs it off; power it off or revert with force=true", rec.id, st)
		}
		if err := a.powerOffForRevert(ctx, rec); err != nil {
			return api.Snapshot{}, err
		}
	}
	disks := coveredDisks(rec.currentSpec(), sn)
	tags, err := a.diskTags(ctx, rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	for _, d := range disks {
		if _, held := tags[d.Name][name]; !held {
			return api.Snapshot{}, errdefs.FailedPrecondition("disk %s no longer holds snapshot %q", d.Name, name)
		}
	}
	if err := a.revertOffline(ctx, rec, disks, name); err != nil {
		return api.Snapshot{}, err
	}
	next := meta.Clone()
	next.Current = name
	if err := next.Save(a.cfg.Layout.SnapshotsFile(rec.id)); err != nil {
		// The disks are reverted all the same: only the mark is stale.
		a.log.Warn("cannot mark the reverted snapshot current", logging.KeyVM, rec.id, "SNAPSHOT", name, "ERROR", err.Error())
	}
	msg := fmt.Sprintf("reverted to snapshot %s: %s", name, strings.Join(diskNames(disks), ", "))
	if err := a.appendEvent(ctx, rec, api.Event{Type: api.EventProgress, Message: msg}); err != nil {
		a.log.Warn("cannot record a revert that happened", logging.KeyVM, rec.id, "SNAPSHOT", name, "ERROR", err.Error())
	}
	a.log.Info("snapshot reverted", logging.KeyVM, rec.id, "SNAPSHOT", name)
	sn.IsCurrent = true
	return sn, nil
}

// loadSnapshot reverts a running VM to a memory snapshot through its shim:
// the guest goes on from where the snapshot caught it. The VM's disks must
// be the snapshot's, as QEMU loads its device state onto them.
func (a *Agent) loadSnapshot(ctx context.Context, rec *record, meta *vmspec.Snapshots, sn api.Snapshot) (api.Snapshot, error) {
	now := diskNames(rec.currentSpec().Disks())
	if !slices.Equal(now, sn.Disks) {
		return api.Snapshot{}, errdefs.FailedPrecondition("snapshot %s holds the memory of a VM with disks %v, and VM %s now has %v: revert it while the VM is off (its disks only)",
			sn.Name, sn.Disks, rec.id, now)
	}
	tags, err := a.diskTags(ctx, rec)
	if err != nil {
		return api.Snapshot{}, err
	}
	for _, d := range sn.Disks {
		if _, held := tags[d][sn.Name]; !held {
			return api.Snapshot{}, errdefs.FailedPrecondition("disk %s no longer holds snapshot %q", d, sn.Name)
		}
	}
	if _, err := a.snapshotLive(ctx, rec.id, shimapi.SnapshotRequest{Op: shimapi.SnapshotLoad, Tag: sn.Name, Disks: sn.Disks, Memory: true}); err != nil {
		return api.Snapshot{}, err
	}
	next := meta.Clone()
	next.Current = sn.Name
	if err := next.Save(a.cfg.Layout.SnapshotsFile(rec.id)); err != nil {
		a.log.Warn("cannot mark the reverted snapshot current", logging.KeyVM, rec.id, "SNAPSHOT", sn.Name, "ERROR", err.Error())
	}
	a.log.Info("snapshot loaded into the running guest", logging.KeyVM, rec.id, "SNAPSHOT", sn.Name)
	sn.IsCurrent = true
	return sn, nil
}

// DeleteSnapshot deletes the snapshot name from every disk it covers and
// from the VM's snapshots. The VM's disks as they are stay.
func (a *Agent) DeleteSnapshot(ctx context.Context, id, name string) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	if err := qemuimg.CheckSnapshotName("snapshot", name); err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	defer a.sync.Resync(rec.id) // the database follows, even a change that failed part-way
	meta, sn, err := a.findSnapshot(rec, name)
	if err != nil {
		return err
	}
	live := !rec.currentStatus().Terminal()
	disks := coveredDisks(rec.currentSpec(), sn)
	tags, err := a.diskTags(ctx, rec)
	if err != nil {
		return err
	}
	// A disk that lost the tag already (a delete that failed part-way) is
	// left alone, so that deleting again finishes the job.
	held := slices.DeleteFunc(slices.Clone(disks), func(d *vmspec.Device) bool { _, ok := tags[d.Name][name]; return !ok })
	switch {
	case live && len(held) > 0:
		_, err = a.snapshotLive(ctx, rec.id, shimapi.SnapshotRequest{Op: shimapi.SnapshotDelete, Tag: name, Disks: diskNames(held), Memory: sn.Memory})
	case !live:
		err = a.deleteTags(ctx, held, name)
	}
	if err != nil {
		return err
	}
	next := meta.Clone()
	next.Snapshots = slices.DeleteFunc(next.Snapshots, func(s api.Snapshot) bool { return s.Name == name })
	if next.Current == name {
		next.Current = ""
	}
	if err := next.Save(a.cfg.Layout.SnapshotsFile(rec.id)); err != nil {
		// The list leaves it out all the same: the disks no longer hold it.
		return errdefs.Internal("snapshot %s is deleted from the disks, but saving the snapshots failed: %v", name, err)
	}
	if !live {
		if err := a.appendEvent(ctx, rec, api.Event{Type: api.EventProgress, Message: "snapshot " + name + " deleted"}); err != nil {
			a.log.Warn("cannot record a delete that happened", logging.KeyVM, rec.id, "SNAPSHOT", name, "ERROR", err.Error())
		}
	}
	a.log.Info("snapshot deleted", logging.KeyVM, rec.id, "SNAPSHOT", name, "LIVE", live)
	return nil
}

// findSnapshot is the VM's metadata and its snapshot name; an unknown
// name is NotFound of the path's snapshot.
func (a *Agent) findSnapshot(rec *record, name string) (*vmspec.Snapshots, api.Snapshot, error) {
	meta, err := a.loadSnapshots(rec)
	if err != nil {
		return nil, api.Snapshot{}, err
	}
	i := meta.Find(name)
	if i < 0 {
		e := errdefs.NotFound("VM %s has no snapshot %q", rec.id, name)
		e.Field = "snapshot"
		return nil, api.Snapshot{}, e
	}
	return meta, meta.Snapshots[i], nil
}

func (a *Agent) loadSnapshots(rec *record) (*vmspec.Snapshots, error) {
	meta, err := vmspec.LoadSnapshots(a.cfg.Layout.SnapshotsFile(rec.id))
	if err != nil {
		return nil, errdefs.Internal("%v", err)
	}
	return meta, nil
}

// dropPartialSnapshot deletes tag from the disks of a running VM that hold
// it after a live create failed: a job QEMU failed part-way may have
// snapshotted some of them. The tag was on none before.
func (a *Agent) dropPartialSnapshot(ctx context.Context, rec *record, tag string) {
	bg := context.WithoutCancel(ctx)
	tags, err := a.diskTags(bg, rec)
	if err != nil {
		a.log.Warn("cannot check the disks after a failed snapshot", logging.KeyVM, rec.id, "SNAPSHOT", tag, "ERROR", err.Error())
		return
	}
	var held []string
	for _, d := range rec.currentSpec().Disks() {
		if _, ok := tags[d.Name][tag]; ok {
			held = append(held, d.Name)
		}
	}
	if len(held) == 0 {
		return
	}
	if _, err := a.snapshotLive(bg, rec.id, shimapi.SnapshotRequest{Op: shimapi.SnapshotDelete, Tag: tag, Disks: held}); err != nil {
		a.log.Warn("cannot delete what a failed snapshot left", logging.KeyVM, rec.id, "SNAPSHOT", tag, "DISKS", held, "ERROR", err.Error())
	}
}

// snapshotCallTimeout bounds a live snapshot call: a memory snapshot's
// job writes or reads all of the guest's RAM (the shim bounds it at 5 min).
const snapshotCallTimeout = 6 * time.Minute

// snapshotLive asks the running VM's shim to take, delete or load a
// snapshot.
func (a *Agent) snapshotLive(ctx context.Context, id string, req shimapi.SnapshotRequest) (shimapi.SnapshotResult, error) {
	timeout := shimCallTimeout
	if req.Memory {
		timeout = snapshotCallTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sh := a.shim(id)
	defer sh.Close()
	return shimclient.Call(ctx, sh, shimapi.RouteSnapshot, req)
}

// recordSnapshotChange records msg in the log of a VM that is off; if it
// cannot, the snapshots file goes back to prev.
func (a *Agent) recordSnapshotChange(ctx context.Context, rec *record, msg string, prev *vmspec.Snapshots) error {
	err := a.appendEvent(ctx, rec, api.Event{Type: api.EventProgress, Message: msg})
	if err == nil {
		return nil
	}
	if uerr := prev.Save(a.cfg.Layout.SnapshotsFile(rec.id)); uerr != nil {
		return errdefs.Internal("record the change: %v; and undoing it failed: %v", err, uerr)
	}
	if e := errdefs.As(err); e != nil {
		return err
	}
	return errdefs.Internal("record the change: %v", err)
}

// powerOffForRevert forces a running VM off and waits until its unit is
// gone, so that its QEMU no longer holds the images.
func (a *Agent) powerOffForRevert(ctx context.Context, rec *record) error {
	if err := a.power(ctx, rec, api.ForcePowerOff); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, unitGoneWait)
	defer cancel()
	if _, err := a.waitFor(wctx, rec, func(v api.VM) bool { return v.Status.Terminal() }); err != nil {
		return err
	}
	return a.waitUnitGone(ctx, rec.id, unitGoneWait)
}

// snapshotDisks are the disks a new snapshot covers: all of the VM's, each
// a qcow2 image. A raw disk refuses, naming itself.
func snapshotDisks(s *vmspec.Spec) ([]*vmspec.Device, error) {
	disks := s.Disks()
	if len(disks) == 0 {
		return nil, errdefs.FailedPrecondition("VM %s has no disks to snapshot", s.ID)
	}
	for _, d := range disks {
		if d.Disk.Format != qemuimg.FormatQCOW2 {
			return nil, errdefs.FailedPrecondition("disk %s is a %s image: only qcow2 disks hold snapshots, so VM %s cannot take one",
				d.Name, d.Disk.Format, s.ID)
		}
	}
	return disks, nil
}

// coveredDisks are the VM's disks that sn covers and that it still has.
func coveredDisks(s *vmspec.Spec, sn api.Snapshot) []*vmspec.Device {
	var out []*vmspec.Device
	for _, d := range s.Disks() {
		if slices.Contains(sn.Disks, d.Name) && d.Disk.Format == qemuimg.FormatQCOW2 {
			out = append(out, d)
		}
	}
	return out
}

func diskNames(disks []*vmspec.Device) []string {
	names := make([]string, 0, len(disks))
	for _, d := range disks {
		names = append(names, d.Name)
	}
	return names
}

// diskTags are the snapshots each of the VM's qcow2 disks holds, by disk
// name and tag. A running QEMU holds its images locked: they are read
// shared.
func (a *Agent) diskTags(ctx context.Context, rec *record) (map[string]map[string]qemuimg.Snapshot, error) {
	return a.readDiskTags(ctx, rec, !rec.currentStatus().Terminal())
}

// readDiskTags is diskTags, the images read without locking them when
// shared.
func (a *Agent) readDiskTags(ctx context.Context, rec *record, shared bool) (map[string]map[string]qemuimg.Snapshot, error) {
	var opts []qemuimg.InfoOption
	if shared {
		opts = append(opts, qemuimg.ForceShare())
	}
	out := map[string]map[string]qemuimg.Snapshot{}
	for _, d := range rec.currentSpec().Disks() {
		if d.Disk.Format != qemuimg.FormatQCOW2 {
			continue
		}
		snaps, err := a.qemuImg().Snapshots(ctx, d.Disk.Path, d.Disk.Format, opts...)
		if err != nil {
			return nil, errdefs.Internal("read the snapshots of disk %s: %v", d.Name, err)
		}
		byTag := map[string]qemuimg.Snapshot{}
		for _, s := range snaps {
			byTag[s.Name] = s
		}
		out[d.Name] = byTag
	}
	return out, nil
}

// snapshotsOffline tags every disk with tag; if one fails, the disks
// already tagged lose it again.
func (a *Agent) snapshotsOffline(ctx context.Context, disks []*vmspec.Device, tag string) error {
	for i, d := range disks {
		if err := a.qemuImg().SnapshotCreate(ctx, d.Disk.Path, d.Disk.Format, tag); err != nil {
			if uerr := a.deleteTags(context.WithoutCancel(ctx), disks[:i], tag); uerr != nil {
				return errdefs.Internal("snapshot disk %s: %v; and deleting it from the disks before failed: %v", d.Name, err, uerr)
			}
			return errdefs.Internal("snapshot disk %s: %v", d.Name, err)
		}
	}
	return nil
}

// deleteTags deletes tag from every disk, going on past a failure.
func (a *Agent) deleteTags(ctx context.Context, disks []*vmspec.Device, tag string) error {
	var failed []string
	for _, d := range disks {
		if err := a.qemuImg().SnapshotDelete(ctx, d.Disk.Path, d.Disk.Format, tag); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", d.Name, err))
		}
	}
	if len(failed) > 0 {
		return errdefs.Internal("delete snapshot %s: %s", tag, strings.Join(failed, "; "))
	}
	return nil
}

// revertOffline applies tag to every disk. Each disk's state before is
// first kept as a snapshot of its own, so that a revert failing part-way
// puts the disks it reverted back; the keeps go once all is done.
func (a *Agent) revertOffline(ctx context.Context, rec *record, disks []*vmspec.Device, tag string) error {
	img := a.qemuImg()
	// A keep a crashed revert left behind would block the next one.
	tags, err := a.diskTags(ctx, rec)
	if err != nil {
		return err
	}
	for _, d := range disks {
		if _, left := tags[d.Name][undoRevertTag]; left {
			if err := img.SnapshotDelete(ctx, d.Disk.Path, d.Disk.Format, undoRevertTag); err != nil {
				return errdefs.Internal("disk %s: delete a revert's leftover: %v", d.Name, err)
			}
		}
	}
	if err := a.snapshotsOffline(ctx, disks, undoRevertTag); err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	defer func() {
		if err := a.deleteTags(bg, disks, undoRevertTag); err != nil {
			a.log.Warn("cannot delete a revert's keep", logging.KeyVM, rec.id, "ERROR", err.Error())
		}
	}()
	for i, d := range disks {
		if err := img.SnapshotApply(ctx, d.Disk.Path, d.Disk.Format, tag); err != nil {
			var failed []string
			for _, r := range disks[:i] {
				if uerr := img.SnapshotApply(bg, r.Disk.Path, r.Disk.Format, undoRevertTag); uerr != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", r.Name, uerr))
				}
			}
			if len(failed) > 0 {
				return errdefs.Internal("revert disk %s: %v; and putting back the disks reverted before failed: %s", d.Name, err, strings.Join(failed, "; "))
			}
			return errdefs.Internal("revert disk %s (the disks are as they were): %v", d.Name, err)
		}
	}
	return nil
}
