package shim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// balloonStatsInterval is how often QEMU asks the guest's balloon driver
// for its memory statistics: often enough to follow a balloon that moves,
// seldom enough to cost the guest nothing.
const balloonStatsInterval = 5 * time.Second

// balloonDevice is this start's balloon, or nil when QEMU has none.
func (s *Shim) balloonDevice() *device.Balloon {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := device.Of[*device.Balloon](s.devices); len(l) > 0 {
		return l[0]
	}
	return nil
}

// armBalloon runs while QEMU is still stopped by -S, as libvirt sets up a
// balloon at start: statistics polling on, and the spec's target, which
// the guest's driver meets once it loads.
func (s *Shim) armBalloon(ctx context.Context) error {
	b := s.balloonDevice()
	if b == nil {
		return nil
	}
	c := b.PollStats(balloonStatsInterval)
	if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
		return fmt.Errorf("balloon %s: statistics polling: %w", b.Name(), err)
	}
	target, total := s.spec.BalloonTargetMiB(), s.spec.MemoryMiB
	if target == total {
		return nil
	}
	c = b.Target(int64(target) << 20)
	if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
		return fmt.Errorf("balloon %s: target %d MiB: %w", b.Name(), target, err)
	}
	s.progress("balloon %s target %d MiB of %d MiB", b.Name(), target, total)
	return nil
}

// liveBalloon is the running VM's balloon, or why there is none to use.
func (s *Shim) liveBalloon() (*device.Balloon, error) {
	if err := s.liveDevices(); err != nil {
		return nil, err
	}
	b := s.balloonDevice()
	if b == nil {
		return nil, errdefs.FailedPrecondition("the VM has no memory balloon")
	}
	return b, nil
}

// queryBalloon is the VM's memory as its balloon has it. The statistics
// are the guest's: a failure to read them leaves them out, not the rest.
func (s *Shim) queryBalloon(ctx context.Context, _ shimapi.BalloonQuery) (api.VMMemory, error) {
	b, err := s.liveBalloon()
	if err != nil {
		return api.VMMemory{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	actual, err := s.qmp.QueryBalloon(ctx)
	if err != nil {
		return api.VMMemory{}, qmpFailed(err)
	}
	s.mu.Lock()
	out := api.VMMemory{TotalBytes: int64(s.spec.MemoryMiB) << 20, TargetBytes: int64(s.spec.BalloonTargetMiB()) << 20, ActualBytes: actual}
	s.mu.Unlock()
	var stats device.GuestStats
	c := b.QueryStats()
	if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, &stats); err != nil {
		s.log.Debug("reading the balloon's statistics failed", "ERROR", err.Error())
		return out, nil
	}
	out.Stats = stats.Memory()
	return out, nil
}

// setBalloon asks the guest to leave its balloon req.TargetBytes; the
// guest's driver then inflates or deflates the balloon towards it, which
// query-balloon follows.
func (s *Shim) setBalloon(ctx context.Context, req shimapi.BalloonTarget) (api.VMMemory, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	b, err := s.liveBalloon()
	if err != nil {
		return api.VMMemory{}, err
	}
	s.mu.Lock()
	total := s.spec.MemoryMiB
	s.mu.Unlock()
	if req.TargetBytes <= 0 || req.TargetBytes%(1<<20) != 0 || req.TargetBytes > int64(total)<<20 {
		return api.VMMemory{}, errdefs.Invalid("targetBytes", "must be a whole number of MiB up to the VM's %d MiB, got %d bytes", total, req.TargetBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	c := b.Target(req.TargetBytes)
	if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
		if e := (*qmp.Error)(nil); errors.As(err, &e) {
			return api.VMMemory{}, errdefs.FailedPrecondition("balloon %s: %s", b.Name(), e.Desc)
		}
		return api.VMMemory{}, qmpFailed(err)
	}
	mib := int(req.TargetBytes >> 20)
	s.mu.Lock()
	s.spec.SetBalloonTarget(mib)
	s.mu.Unlock()
	s.progress("balloon %s target set to %d MiB of %d MiB", b.Name(), mib, total)
	return s.queryBalloon(ctx, shimapi.BalloonQuery{})
}
