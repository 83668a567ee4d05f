package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// The kinds of start other than a cold boot. Each is the cold-boot list
// edited where it must differ: QEMU starts with -incoming defer, its state
// arrives as a migration stream while the CPUs stay stopped, and start-cpus
// runs only once the whole state is in.

// Timeouts of the incoming steps: a memory snapshot is read from a local
// file, a migration comes over the network at the peer's pace.
const (
	snapshotLoadTimeout = 10 * time.Minute
	migrationTimeout    = time.Hour
	incomingPoll        = 100 * time.Millisecond
)

// RestoreSteps brings the VM back from a memory snapshot: the migration
// stream that QMP migrate wrote to the file at path. The guest runs on from
// where the snapshot left it; the disk must be the one it was taken with.
func (s *Shim) RestoreSteps(path string) (StepList, error) {
	l, err := s.incomingSteps()
	if err != nil {
		return nil, err
	}
	return l.InsertBefore("start-cpus", Step{
		Name: "load-memory-snapshot", Timeout: snapshotLoadTimeout,
		Run: func(ctx context.Context) error { return s.loadMemorySnapshot(ctx, path) },
	})
}

// MigrationSteps receives the VM from a peer migrating it here, on uri as
// QMP migrate-incoming takes it (for example "tcp:[::]:49152"). QEMU
// listens as soon as it is up; the CPUs start only once the migration
// completed, and never if it failed.
func (s *Shim) MigrationSteps(uri string) (StepList, error) {
	l, err := s.incomingSteps()
	if err != nil {
		return nil, err
	}
	if l, err = l.InsertAfter("set-display-password", Step{
		Name: "accept-migration", Timeout: 10 * time.Second,
		Run: func(ctx context.Context) error { return s.migrateIncoming(ctx, uri) },
	}); err != nil {
		return nil, err
	}
	return l.InsertBefore("start-cpus", Step{
		Name: "await-migration", Timeout: migrationTimeout, Run: s.awaitIncoming,
	})
}

// incomingSteps is the cold boot with QEMU waiting for its state.
func (s *Shim) incomingSteps() (StepList, error) {
	return s.Steps().Replace("start-qemu", Step{
		Name: "start-qemu-incoming", Timeout: 10 * time.Second, Run: s.startQEMUIncoming, Undo: s.stopQEMU,
	})
}

func (s *Shim) startQEMUIncoming(ctx context.Context) error {
	s.incomingDefer = true
	return s.startQEMU(ctx)
}

// snapshotFD is the name the snapshot's file descriptor has in QEMU.
const snapshotFD = "memory-snapshot"

// loadMemorySnapshot hands QEMU the snapshot file, opened by the shim (QEMU
// never sees its path, and its user needs no access), and waits until
// QEMU has read all of it.
func (s *Shim) loadMemorySnapshot(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("memory snapshot: %w", err)
	}
	defer f.Close()
	if err := s.qmp.GetFD(ctx, snapshotFD, f); err != nil {
		return fmt.Errorf("memory snapshot: %w", err)
	}
	if err := s.migrateIncoming(ctx, "fd:"+snapshotFD); err != nil {
		return err
	}
	s.progress("loading memory snapshot %s", path)
	return s.awaitIncoming(ctx)
}

func (s *Shim) migrateIncoming(ctx context.Context, uri string) error {
	if err := s.qmp.Execute(ctx, "migrate-incoming", map[string]string{"uri": uri}, nil); err != nil {
		return fmt.Errorf("migrate-incoming: %w", err)
	}
	return nil
}

// migrationInfo is the part of query-migrate the shim reads.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// awaitIncoming polls the incoming migration until it completed. A failed
// one fails the step: QEMU's state is partial, and its CPUs must not run.
func (s *Shim) awaitIncoming(ctx context.Context) error {
	began := time.Now()
	tick := time.NewTicker(incomingPoll)
	defer tick.Stop()
	for {
		var info migrationInfo
		if err := s.qmp.Execute(ctx, "query-migrate", nil, &info); err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch info.Status {
		case "completed":
			s.progress("incoming state complete after %s", time.Since(began).Round(time.Millisecond))
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("incoming migration %s: %s", info.Status, info.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("incoming migration still %q: %w", info.Status, ctx.Err())
		case <-s.qemu.exited:
			return errors.New("qemu exited during the incoming migration")
		case <-tick.C:
		}
	}
}
