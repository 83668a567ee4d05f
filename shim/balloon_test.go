package shim

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// The balloon on real QEMU, with no guest to move it: the start arms its
// statistics polling and the spec's target, and the control verbs read it
// and set a new target, refusing what the VM cannot have.
func TestBalloonOnRealQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, p := bareQEMU(t, ctx, "-device", `{"driver":"virtio-balloon-pci","id":"balloon0"}`)
	s := New(Config{})
	s.qmp, s.qemu = c, p
	s.spec = &vmspec.Spec{MemoryMiB: 32}
	logFile := cdromShim(t, s, t.TempDir())
	d := vmspec.NewDevice("balloon0", vmspec.Balloon{TargetMiB: 24})
	s.spec.Devices = append(s.spec.Devices, d)
	dev, err := device.New(d)
	if err != nil {
		t.Fatal(err)
	}
	s.devices = append(s.devices, dev)

	if _, err := s.queryBalloon(ctx, shimapi.BalloonQuery{}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("query while starting: %v, want FailedPrecondition", err)
	}
	if err := s.armBalloon(ctx); err != nil {
		t.Fatal(err)
	}
	var interval int
	if err := c.Execute(ctx, "qom-get", map[string]any{"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval"}, &interval); err != nil || interval != 5 {
		t.Errorf("polling interval %d s (%v), want 5", interval, err)
	}
	s.status.Status = api.StatusRunning
	got, err := s.queryBalloon(ctx, shimapi.BalloonQuery{})
	// No guest driver: the balloon stays deflated and nothing is reported.
	if err != nil || got != (api.VMMemory{TotalBytes: 32 << 20, TargetBytes: 24 << 20, ActualBytes: 32 << 20}) {
		t.Errorf("query: %+v (%v)", got, err)
	}
	for _, bad := range []int64{0, -1 << 20, 33 << 20, 16<<20 + 1} {
		if _, err := s.setBalloon(ctx, shimapi.BalloonTarget{TargetBytes: bad}); errdefs.As(err).Field != "targetBytes" {
			t.Errorf("target %d bytes: %v, want InvalidArgument naming targetBytes", bad, err)
		}
	}
	if got, err = s.setBalloon(ctx, shimapi.BalloonTarget{TargetBytes: 16 << 20}); err != nil || got.TargetBytes != 16<<20 || s.spec.Balloon().TargetMiB != 16 {
		t.Errorf("target 16 MiB: %+v (%v), spec %+v", got, err, s.spec.Balloon())
	}
	if got, err = s.setBalloon(ctx, shimapi.BalloonTarget{TargetBytes: 32 << 20}); err != nil || got.TargetBytes != 32<<20 || s.spec.Balloon().TargetMiB != 0 {
		t.Errorf("target all 32 MiB: %+v (%v), spec %+v", got, err, s.spec.Balloon())
	}
	want := []string{"progress: balloon balloon0 target 24 MiB of 32 MiB", "progress: balloon balloon0 target set to 16 MiB of 32 MiB",
		"progress: balloon balloon0 target set to 32 MiB of 32 MiB"}
	if got := messages(t, logFile); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}

	s.devices = nil
	if _, err := s.setBalloon(ctx, shimapi.BalloonTarget{TargetBytes: 16 << 20}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("a VM without a balloon: %v", err)
	}
	if err := s.armBalloon(ctx); err != nil {
		t.Errorf("arming no balloon: %v", err)
	}
}
