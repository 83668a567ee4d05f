package shim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// snapshot takes or deletes an internal snapshot of the running VM's
// disks. The disks must be the spec's qcow2 disks; their block nodes are
// named after them, as a cold boot and a hot-plug name them.
func (s *Shim) snapshot(ctx context.Context, req shimapi.SnapshotRequest) (shimapi.SnapshotResult, error) {
	if err := qemuimg.CheckSnapshotName("name", req.Tag); err != nil {
		return shimapi.SnapshotResult{}, err
	}
	if len(req.Disks) == 0 {
		return shimapi.SnapshotResult{}, errdefs.Invalid("disks", "must name at least one disk")
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
			return shimapi.SnapshotResult{}, errdefs.NotFound("VM %s has no disk %q", s.cfg.VMID, name)
		}
		if d.Disk.Format != qemuimg.FormatQCOW2 {
			s.mu.Unlock()
			return shimapi.SnapshotResult{}, errdefs.FailedPrecondition("disk %s is a %s image: only qcow2 disks hold snapshots", name, d.Disk.Format)
		}
	}
	s.mu.Unlock()
	timeout := qmpTimeout
	if req.Memory {
		timeout = memorySnapshotTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case req.Op == shimapi.SnapshotCreate && req.Memory:
		paused, err := s.saveSnapshot(ctx, req.Tag, req.Disks)
		return shimapi.SnapshotResult{GuestPaused: paused}, err
	case req.Op == shimapi.SnapshotCreate:
		paused, err := s.snapshotDisks(ctx, req.Tag, req.Disks)
		return shimapi.SnapshotResult{GuestPaused: paused}, err
	case req.Op == shimapi.SnapshotLoad && req.Memory:
		return shimapi.SnapshotResult{}, s.loadSnapshot(ctx, req.Tag, req.Disks)
	case req.Op == shimapi.SnapshotLoad:
		return shimapi.SnapshotResult{}, errdefs.Invalid("op", "only a memory snapshot loads into a running guest; a disk-only one reverts while the VM is off")
	case req.Op == shimapi.SnapshotDelete && req.Memory:
		if err := s.snapshotJob(ctx, "delete", req.Tag, func(job string) error {
			return s.qmp.SnapshotDelete(ctx, job, req.Tag, req.Disks)
		}); err != nil {
			return shimapi.SnapshotResult{}, err
		}
		s.progress("snapshot %s deleted", req.Tag)
		return shimapi.SnapshotResult{}, nil
	case req.Op == shimapi.SnapshotDelete:
		return shimapi.SnapshotResult{}, s.deleteSnapshot(ctx, req.Tag, req.Disks)
	}
	return shimapi.SnapshotResult{}, errdefs.Invalid("op", "must be %q, %q or %q, got %q", shimapi.SnapshotCreate, shimapi.SnapshotDelete, shimapi.SnapshotLoad, req.Op)
}

// memorySnapshotTimeout bounds a snapshot job: QEMU writes or reads all of
// the guest's RAM.
const memorySnapshotTimeout = 5 * time.Minute

// saveSnapshot is QEMU's snapshot-save job: the guest's RAM and device
// state into the first disk, an internal snapshot of every disk, all while
// QEMU holds the guest stopped; a guest that ran runs on after. It returns
// how long the guest was stopped.
func (s *Shim) saveSnapshot(ctx context.Context, tag string, disks []string) (time.Duration, error) {
	thaw, err := s.freezeGuestFS(ctx)
	if err != nil {
		return 0, err
	}
	defer thaw()
	running := s.lifecycleState() == stateRunning
	pause := s.watchPause()
	defer pause.end()
	s.progress("snapshot %s: saving the guest's memory into %s and snapshotting %s", tag, disks[0], strings.Join(disks, ", "))
	began := time.Now()
	if err := s.snapshotJob(ctx, "save", tag, func(job string) error {
		return s.qmp.SnapshotSave(ctx, job, tag, disks[0], disks)
	}); err != nil {
		return 0, err
	}
	if !running {
		s.progress("snapshot %s taken with memory of %s", tag, strings.Join(disks, ", "))
		return 0, nil
	}
	paused := pause.paused(time.Since(began))
	s.progress("snapshot %s taken with memory of %s (the guest paused %s)", tag, strings.Join(disks, ", "), paused.Round(time.Millisecond))
	return paused, nil
}

// loadSnapshot is QEMU's snapshot-load job: the disks back to the
// snapshot, RAM and device state from the first disk; a guest that ran
// goes on from where the snapshot caught it, not rebooted.
//
// QEMU reverts the disks before it reads the memory, and leaves the guest
// stopped when the load fails: so everything a load needs is checked
// first, and a load failing past that leaves the guest suspended, to be
// reverted again or powered off, never run on half-loaded.
func (s *Shim) loadSnapshot(ctx context.Context, tag string, disks []string) error {
	if err := s.checkLoadable(ctx, tag, disks); err != nil {
		return err
	}
	s.progress("snapshot %s: loading the guest's memory and disks", tag)
	if err := s.snapshotJob(ctx, "load", tag, func(job string) error {
		return s.qmp.SnapshotLoad(ctx, job, tag, disks[0], disks)
	}); err != nil {
		if st, qerr := s.qmp.QueryStatus(context.WithoutCancel(ctx)); qerr == nil && !st.Running && s.lifecycleState() == stateRunning {
			s.setStatus(api.StatusSuspended, api.ReasonUser,
				fmt.Sprintf("loading snapshot %s failed part-way; the guest stays stopped: revert again or power it off", tag), nil)
		}
		return err
	}
	s.progress("reverted to snapshot %s with memory: %s", tag, strings.Join(disks, ", "))
	return nil
}

// snapshotJob starts one of QEMU's snapshot jobs and waits for it,
// recording its progress as events, a step of at least a quarter at a
// time. The job's id holds its tag, so that a job left over from an
// earlier call is told apart.
func (s *Shim) snapshotJob(ctx context.Context, verb, tag string, start func(job string) error) error {
	job := fmt.Sprintf("snapshot-%s-%s", verb, tag)
	if err := start(job); err != nil {
		return qmpFailed(fmt.Errorf("snapshot %s: start the %s job: %w", tag, verb, err))
	}
	reported := int64(-1)
	err := s.qmp.WaitJob(ctx, job, func(j qmp.JobInfo) {
		if j.TotalProgress <= 0 {
			return
		}
		pct := j.CurrentProgress * 100 / j.TotalProgress
		if pct >= reported+25 && pct < 100 {
			reported = pct
			s.progress("snapshot %s: %s %d%%", tag, verb, pct)
		}
	})
	if err != nil {
		return qmpFailed(fmt.Errorf("snapshot %s: %w", tag, err))
	}
	return nil
}

// snapshotDisks snapshots all the disks at one instant: a running guest is
// paused around one transaction over them, and resumed even when it fails.
// It returns how long the guest was paused.
func (s *Shim) snapshotDisks(ctx context.Context, tag string, disks []string) (time.Duration, error) {
	thaw, err := s.freezeGuestFS(ctx)
	if err != nil {
		return 0, err
	}
	defer thaw()
	if s.lifecycleState() != stateRunning {
		if err := s.qmp.SnapshotInternal(ctx, disks, tag); err != nil {
			return 0, qmpFailed(fmt.Errorf("snapshot %s of %s: %w", tag, strings.Join(disks, ", "), err))
		}
		s.progress("snapshot %s taken of %s", tag, strings.Join(disks, ", "))
		return 0, nil
	}
	pause := s.watchPause()
	defer pause.end()
	began := time.Now()
	if err := s.qmp.Stop(ctx); err != nil {
		return 0, qmpFailed(fmt.Errorf("pause the guest for snapshot %s: %w", tag, err))
	}
	if err = s.qmp.SnapshotInternal(ctx, disks, tag); err != nil {
		err = qmpFailed(fmt.Errorf("snapshot %s of %s: %w", tag, strings.Join(disks, ", "), err))
	}
	// The caller may have gone: the guest must run again all the same.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
	defer cancel()
	if cerr := s.qmp.Cont(bg); cerr != nil {
		s.log.Error("cannot resume the guest after a snapshot", "ERROR", cerr.Error())
		return 0, errors.Join(err, qmpFailed(fmt.Errorf("resume the guest after snapshot %s: %w", tag, cerr)))
	}
	paused := pause.paused(time.Since(began))
	if err != nil {
		return paused, err
	}
	s.progress("snapshot %s taken of %s (the guest paused %s)", tag, strings.Join(disks, ", "), paused.Round(time.Millisecond))
	return paused, nil
}

// pauseWatch follows QEMU's STOP and RESUME events, stamped by QEMU's own
// clock, to tell how long the guest's vCPUs stood still.
type pauseWatch struct {
	events <-chan qmp.Event
	end    func()
}

// watchPause starts following the events; end stops it. Start it before
// the command that stops the guest.
func (s *Shim) watchPause() *pauseWatch {
	ch, end := s.qmp.Subscribe(16)
	return &pauseWatch{events: ch, end: end}
}

// paused is the time from the first STOP to the RESUME after it, once the
// guest runs again: QEMU sends each event before it answers the command
// that caused it, so both are in by then. Without them (dropped, or with
// no timestamp) it is bound, the caller's own measure around both.
func (w *pauseWatch) paused(bound time.Duration) time.Duration {
	var stopped time.Time
	for {
		select {
		case ev, open := <-w.events:
			if !open {
				return bound
			}
			switch {
			case ev.Name == qmp.EventStop && stopped.IsZero():
				stopped = ev.Time
			case ev.Name == qmp.EventResume && !stopped.IsZero() && !ev.Time.IsZero() && !ev.Time.Before(stopped):
				return ev.Time.Sub(stopped)
			}
		default:
			return bound
		}
	}
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

// nodeSnapshots is a block node's internal snapshots, as
// query-named-block-nodes answers.
type nodeSnapshots struct {
	NodeName string `json:"node-name"`
	Image    struct {
		Snapshots []struct {
			Name        string `json:"name"`
			VMStateSize int64  `json:"vm-state-size"`
		} `json:"snapshots"`
	} `json:"image"`
}

// checkLoadable refuses a load QEMU would refuse or fail: every disk must
// hold the snapshot, and the first its RAM state.
func (s *Shim) checkLoadable(ctx context.Context, tag string, disks []string) error {
	var nodes []nodeSnapshots
	if err := s.qmp.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true}, &nodes); err != nil {
		return qmpFailed(err)
	}
	for i, d := range disks {
		j := slices.IndexFunc(nodes, func(n nodeSnapshots) bool { return n.NodeName == d })
		if j < 0 {
			return errdefs.NotFound("QEMU has no block node %s", d)
		}
		snaps := nodes[j].Image.Snapshots
		k := slices.IndexFunc(snaps, func(sn struct {
			Name        string `json:"name"`
			VMStateSize int64  `json:"vm-state-size"`
		}) bool {
			return sn.Name == tag
		})
		switch {
		case k < 0:
			return errdefs.FailedPrecondition("disk %s holds no snapshot %q", d, tag)
		case i == 0 && snaps[k].VMStateSize == 0:
			return errdefs.FailedPrecondition("snapshot %q holds no memory in disk %s", tag, d)
		}
	}
	return nil
}
