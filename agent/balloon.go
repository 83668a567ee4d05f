package agent

import (
	"context"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A VM's memory balloon. Its target is part of the VM's definition, as
// libvirt's currentMemory: set while the VM runs, the guest gets it at once
// (through the shim, which records the event) and the spec keeps it; set
// while the VM is off, the spec keeps it and the next start applies it.

const (
	// balloonShimTimeout bounds a live target change: one QMP command and
	// a query of the balloon.
	balloonShimTimeout = 15 * time.Second
	// memoryViewTimeout is what GET of a VM waits for its shim's balloon
	// figures: a shim that is slow to answer leaves them out of the view
	// rather than holding it up.
	memoryViewTimeout = 2 * time.Second
)

// GetLive is Get with what only the running QEMU knows: the balloon's
// actual size and the guest's memory statistics, when its shim answers
// within memoryViewTimeout. A VM without a balloon shows no memory.
func (a *Agent) GetLive(ctx context.Context, id string) (api.VM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.VM{}, err
	}
	v := rec.view()
	spec := rec.currentSpec()
	if spec.Balloon() == nil {
		return v, nil
	}
	mem := specMemory(spec)
	if shimRuns(rec) {
		ctx, cancel := context.WithTimeout(ctx, memoryViewTimeout)
		defer cancel()
		if live, err := ShimCall(ctx, a, id, shimapi.RouteBalloon, shimapi.BalloonQuery{}); err == nil {
			mem = live
		} else {
			a.log.Debug("the VM's balloon figures are left out", logging.KeyVM, id, "ERROR", err.Error())
		}
	}
	v.Memory = &mem
	return v, nil
}

// specMemory is the memory a VM's spec gives it, without live figures.
func specMemory(s *vmspec.Spec) api.VMMemory {
	return api.VMMemory{TotalBytes: int64(s.MemoryMiB) << 20, TargetBytes: int64(s.BalloonTargetMiB()) << 20}
}

// SetBalloon sets the memory a VM's balloon leaves its guest, between
// vmspec.MinBalloonMiB and the VM's memory (which is no target at all).
func (a *Agent) SetBalloon(ctx context.Context, id string, req api.BalloonRequest) (api.VMMemory, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.VMMemory{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.VMMemory{}, err
	}
	defer unlock()
	spec := rec.currentSpec()
	if spec.Balloon() == nil {
		return api.VMMemory{}, errdefs.FailedPrecondition("VM %s has no memory balloon: it was created without one", id)
	}
	mib, err := vmspec.BalloonRequestMiB(req, spec.MemoryMiB)
	if err != nil {
		return api.VMMemory{}, err
	}
	old := spec.BalloonTargetMiB()
	live := shimRuns(rec)
	out := api.VMMemory{}
	if live {
		if out, err = a.balloonShimCall(ctx, id, mib); err != nil {
			return api.VMMemory{}, err
		}
	}
	if err := a.updateSpec(rec, func(s *vmspec.Spec) error { s.SetBalloonTarget(mib); return nil }); err != nil {
		if live {
			if _, berr := a.balloonShimCall(context.WithoutCancel(ctx), id, old); berr != nil {
				return api.VMMemory{}, errdefs.Internal("%v; and setting the balloon back to %d MiB failed: %v", err, old, berr)
			}
		}
		return api.VMMemory{}, err
	}
	if !live {
		name := spec.DevicesOf(api.DeviceBalloon)[0].Name
		a.recordOffline(ctx, rec, "balloon %s target set to %d MiB of %d MiB; the next start applies it", name, mib, spec.MemoryMiB)
		out = specMemory(rec.currentSpec())
	}
	a.sync.Resync(id)
	a.log.Info("balloon target set", logging.KeyVM, id, "TARGET_MIB", mib, "MEMORY_MIB", spec.MemoryMiB, "LIVE", live)
	return out, nil
}

// balloonShimCall asks the running VM's shim for a balloon target.
func (a *Agent) balloonShimCall(ctx context.Context, id string, mib int) (api.VMMemory, error) {
	ctx, cancel := context.WithTimeout(ctx, balloonShimTimeout)
	defer cancel()
	return ShimCall(ctx, a, id, shimapi.RouteBalloonSet, shimapi.BalloonTarget{TargetBytes: int64(mib) << 20})
}
