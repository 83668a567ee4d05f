package agent

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// balloonTarget is the target the VM's spec gives its balloon, in MiB (0: none).
func balloonTarget(t *testing.T, a *Agent, id string) int {
	t.Helper()
	for _, d := range a.mustGet(t, id).Devices {
		if d.Balloon != nil {
			return d.Balloon.TargetMiB
		}
	}
	t.Fatalf("VM %s has no balloon", id)
	return 0
}

// A VM that is off keeps the target for its next start; refusals name the
// field and change nothing; a VM created without a balloon has none to set.
func TestBalloonWhileOff(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	ctx := t.Context()
	if _, err := a.Create(ctx, createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	before := b.footprintOf(vm1)
	for field, req := range map[string]api.BalloonRequest{
		"targetMiB": {TargetMiB: 2048},
		"targetGB":  {TargetGB: 0.1},
	} {
		if _, err := a.SetBalloon(ctx, vm1, req); !isInvalid(err, field) {
			t.Errorf("%+v: %v, want InvalidArgument naming %s", req, err, field)
		}
	}
	if _, err := a.SetBalloon(ctx, vm1, api.BalloonRequest{}); !isInvalid(err, "targetMiB") {
		t.Errorf("no target: %v", err)
	}
	if after := b.footprintOf(vm1); after != before {
		t.Fatalf("a refused target changed the spec or the log:\n%s", after)
	}

	m, err := a.SetBalloon(ctx, vm1, api.BalloonRequest{TargetMiB: 512})
	if err != nil || m != (api.VMMemory{TotalBytes: 1 << 30, TargetBytes: 512 << 20}) {
		t.Fatalf("target 512 MiB: %+v (%v)", m, err)
	}
	if balloonTarget(t, a, vm1) != 512 {
		t.Errorf("the spec's target is %d MiB", balloonTarget(t, a, vm1))
	}
	waitEvent(t, a, vm1, "balloon balloon0 target set to 512 MiB of 1024 MiB; the next start applies it")
	if v, err := a.GetLive(ctx, vm1); err != nil || v.Memory == nil || *v.Memory != m {
		t.Errorf("the VM's memory: %+v (%v), want %+v", v.Memory, err, m)
	}
	if !agenttest.WaitFor(waitLimit, func() bool {
		vm, ok := b.store.VM(vm1)
		for _, d := range vm.Devices {
			if d.Balloon != nil {
				return ok && d.Balloon.TargetMiB == 512
			}
		}
		return false
	}) {
		t.Error("the target never reached the database")
	}
	if m, err = a.SetBalloon(ctx, vm1, api.BalloonRequest{TargetGB: 1}); err != nil || m.TargetBytes != 1<<30 || balloonTarget(t, a, vm1) != 0 {
		t.Errorf("target all of 1 GiB: %+v (%v), spec target %d MiB", m, err, balloonTarget(t, a, vm1))
	}

	in := createInput(vm2, false)
	no := false
	in.Balloon = &no
	if _, err := a.Create(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetBalloon(ctx, vm2, api.BalloonRequest{TargetMiB: 512}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("a VM without a balloon: %v, want FailedPrecondition", err)
	}
	if v, err := a.GetLive(ctx, vm2); err != nil || v.Memory != nil {
		t.Errorf("a VM without a balloon shows memory %+v (%v)", v.Memory, err)
	}
	if _, err := a.SetBalloon(ctx, vm3, api.BalloonRequest{TargetMiB: 512}); errdefs.As(err).Code != errdefs.CodeNotFound {
		t.Errorf("no such VM: %v", err)
	}
}

// fakeBalloonShim answers the balloon verbs as the shim does, until fail
// makes the next target fail or down makes every verb fail.
type fakeBalloonShim struct {
	mu       sync.Mutex
	mem      api.VMMemory
	requests []int64
	fail     bool
	down     bool
}

func (f *fakeBalloonShim) exchange(s *agenttest.Shim, method, target string, body []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errdefs.Unavailable("the shim does not answer")
	}
	switch method + " " + target {
	case shimapi.RouteBalloonSet.Pattern():
		var req shimapi.BalloonTarget
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		f.requests = append(f.requests, req.TargetBytes)
		if f.fail {
			f.fail = false
			return nil, errdefs.FailedPrecondition("balloon balloon0: no balloon device has been activated")
		}
		f.mem.TargetBytes = req.TargetBytes
		if err := s.Progress("balloon target set"); err != nil {
			return nil, err
		}
		return json.Marshal(f.mem)
	case shimapi.RouteBalloon.Pattern():
		return json.Marshal(f.mem)
	}
	return nil, errdefs.Unavailable("no %s %s", method, target)
}

// A running VM's target goes to its shim first, and the spec follows only
// a target the shim set; GET shows the shim's figures, or the spec's when
// the shim does not answer.
func TestBalloonOfARunningVM(t *testing.T) {
	b := newBed(t)
	free := int64(300 << 20)
	fake := &fakeBalloonShim{mem: api.VMMemory{TotalBytes: 1 << 30, TargetBytes: 1 << 30, ActualBytes: 1 << 30,
		Stats: &api.MemoryStats{FreeBytes: &free}}}
	b.host.OnExchange(fake.exchange)
	a, _ := b.start(b.config())
	ctx := t.Context()
	if _, err := a.Create(ctx, createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "running", func(v api.VM) bool { return v.Status == api.StatusRunning })
	m, err := a.SetBalloon(ctx, vm1, api.BalloonRequest{TargetGB: 0.25})
	if err != nil || m.TargetBytes != 256<<20 || len(fake.requests) != 1 || fake.requests[0] != 256<<20 {
		t.Fatalf("target 256 MiB: %+v (%v), the shim was asked %v", m, err, fake.requests)
	}
	if balloonTarget(t, a, vm1) != 256 {
		t.Errorf("the spec's target is %d MiB", balloonTarget(t, a, vm1))
	}
	v, err := a.GetLive(ctx, vm1)
	if err != nil || v.Memory == nil || v.Memory.ActualBytes != 1<<30 || v.Memory.Stats == nil || *v.Memory.Stats.FreeBytes != free {
		t.Fatalf("the running VM's memory: %+v (%v)", v.Memory, err)
	}

	before := b.footprintOf(vm1)
	fake.fail = true
	if _, err := a.SetBalloon(ctx, vm1, api.BalloonRequest{TargetMiB: 128}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("a target the shim refused: %v", err)
	}
	if after := b.footprintOf(vm1); after != before {
		t.Fatalf("a refused live target changed the spec or the log:\n%s", after)
	}
	fake.mu.Lock()
	fake.down = true
	fake.mu.Unlock()
	if v, err = a.GetLive(ctx, vm1); err != nil || v.Memory == nil || *v.Memory != (api.VMMemory{TotalBytes: 1 << 30, TargetBytes: 256 << 20}) {
		t.Errorf("memory of a VM whose shim does not answer: %+v (%v), want the spec's", v.Memory, err)
	}
}
