package shim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// snapshot takes or deletes an internal snapshot of the running VM's
// disks. The disks must be the spec's qcow2 disks; their block nodes are
// named after them, as a cold boot and a hot-plug name them.
func (s *Shim) snapshot(ctx context.Context, req shimapi.SnapshotRequest) (shimapi.Empty, error) {
	if err := qemuimg.CheckSnapshotName("name", req.Tag); err != nil {
		return shimapi.Empty{}, err
	}
	if len(req.Disks) == 0 {
		return shimapi.Empty{}, errdefs.Invalid("disks", "must name at least one disk")
	}
	// As a disk or medium change does: the disks stay as they are, and
	// teardown waits for the snapshot.
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	s.mu.Lock()
	for _, name := range req.Disks {
		d := s.spec.Device(name)
		if d == nil || d.Type != api.DeviceDisk || d.Disk == nil {
			s.mu.Unlock()
			return shimapi.Empty{}, errdefs.NotFound("VM %s has no disk %q", s.cfg.VMID, name)
		}
		if d.Disk.Format != qemuimg.FormatQCOW2 {
			s.mu.Unlock()
			return shimapi.Empty{}, errdefs.FailedPrecondition("disk %s is a %s image: only qcow2 disks hold snapshots", name, d.Disk.Format)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	switch req.Op {
	case shimapi.SnapshotCreate:
		return shimapi.Empty{}, s.snapshotDisks(ctx, req.Tag, req.Disks)
	case shimapi.SnapshotDelete:
		return shimapi.Empty{}, s.deleteSnapshot(ctx, req.Tag, req.Disks)
	}
	return shimapi.Empty{}, errdefs.Invalid("op", "must be %q or %q, got %q", shimapi.SnapshotCreate, shimapi.SnapshotDelete, req.Op)
}

// snapshotDisks snapshots all the disks at one instant: a running guest is
// paused around one transaction over them, and resumed even when it fails.
func (s *Shim) snapshotDisks(ctx context.Context, tag string, disks []string) (err error) {
	thaw, err := s.freezeGuestFS(ctx)
	if err != nil {
		return err
	}
	defer thaw()
	var pausedAt time.Time
	if s.lifecycleState() == stateRunning {
		if err := s.qmp.Stop(ctx); err != nil {
			return qmpFailed(fmt.Errorf("pause the guest for snapshot %s: %w", tag, err))
		}
		pausedAt = time.Now()
		defer func() {
			// The caller may have gone: the guest must run again all the same.
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
			defer cancel()
			if cerr := s.qmp.Cont(bg); cerr != nil {
				s.log.Error("cannot resume the guest after a snapshot", "ERROR", cerr.Error())
				err = errors.Join(err, qmpFailed(fmt.Errorf("resume the guest after snapshot %s: %w", tag, cerr)))
			}
		}()
	}
	if err := s.qmp.SnapshotInternal(ctx, disks, tag); err != nil {
		return qmpFailed(fmt.Errorf("snapshot %s of %s: %w", tag, strings.Join(disks, ", "), err))
	}
	if pausedAt.IsZero() {
		s.progress("snapshot %s taken of %s", tag, strings.Join(disks, ", "))
	} else {
		s.progress("snapshot %s taken of %s (the guest paused %s)", tag, strings.Join(disks, ", "), time.Since(pausedAt).Round(time.Millisecond))
	}
	return nil
}

// deleteSnapshot deletes tag from every disk, going on past a failure: a
// disk that failed still holds it, and deleting again finishes the job.
func (s *Shim) deleteSnapshot(ctx context.Context, tag string, disks []string) error {
	var failed []string
	for _, d := range disks {
		if err := s.qmp.DeleteSnapshotInternal(ctx, d, tag); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return qmpFailed(fmt.Errorf("delete snapshot %s: %s", tag, strings.Join(failed, "; ")))
	}
	s.progress("snapshot %s deleted", tag)
	return nil
}

// freezeGuestFS is where a guest agent's file-system freeze goes, before
// the disks are snapshotted, and its thaw after. Without one the guest's
// file systems are as a power cut would leave them (crash-consistent).
func (s *Shim) freezeGuestFS(context.Context) (thaw func(), err error) {
	return func() {}, nil
}
