package vmspec

import (
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// MinBalloonMiB is the least memory a balloon target leaves the guest, the
// least a VM may have at all: a balloon that took more would starve the
// guest rather than reclaim what it does not use.
const MinBalloonMiB = MinMemoryMiB

// wantsBalloon reports whether a create request gives the VM a balloon:
// every VM gets one, as libvirt gives every KVM domain a memballoon,
// unless the request says balloon: false.
func wantsBalloon(in api.CreateVMInput) bool { return in.Balloon == nil || *in.Balloon }

// BalloonRequestMiB is the target a PUT of the balloon asks for, in MiB,
// checked against the VM's memory. The error names the field the client
// sent (targetGB or targetMiB).
func BalloonRequestMiB(req api.BalloonRequest, memoryMiB int) (int, error) {
	switch {
	case req.TargetGB != 0 && req.TargetMiB != 0:
		return 0, errdefs.Invalid("targetGB", "give targetGB or targetMiB, not both")
	case req.TargetGB != 0:
		mib, ok := wholeMiB(req.TargetGB)
		if !ok {
			return 0, errdefs.Invalid("targetGB", "must be a positive whole number of MiB in GiB (0.25 = 256 MiB), got %v", req.TargetGB)
		}
		return mib, checkBalloonTarget("targetGB", mib, memoryMiB)
	case req.TargetMiB != 0:
		return req.TargetMiB, checkBalloonTarget("targetMiB", req.TargetMiB, memoryMiB)
	}
	return 0, errdefs.Invalid("targetMiB", "is required (or targetGB): the memory the guest is to keep")
}

func checkBalloonTarget(field string, mib, memoryMiB int) error {
	if mib < MinBalloonMiB || mib > memoryMiB {
		return errdefs.Invalid(field, "must be between %d MiB and the VM's memory, %d MiB; got %d MiB", MinBalloonMiB, memoryMiB, mib)
	}
	return nil
}

// BalloonTargetMiB is the memory the VM's balloon leaves the guest: its
// target, or all of its memory while none is set.
func (s *Spec) BalloonTargetMiB() int {
	if b := s.Balloon(); b != nil && b.TargetMiB != 0 {
		return b.TargetMiB
	}
	return s.MemoryMiB
}

// SetBalloonTarget sets the balloon's target, which is no target at all
// when it is the VM's whole memory: a target that only repeated the
// memory would hold the balloon at the old size once the memory grows.
// It reports whether the spec has a balloon.
func (s *Spec) SetBalloonTarget(mib int) bool {
	b := s.Balloon()
	if b == nil {
		return false
	}
	if mib == s.MemoryMiB {
		mib = 0
	}
	b.TargetMiB = mib
	return true
}
