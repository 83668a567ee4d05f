package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// guestMemTotalKiB is the guest's MemTotal, in KiB.
func (b *bed) guestMemTotalKiB(t *testing.T, id string) int64 {
	t.Helper()
	out, rc := b.guestRun(t, id, `sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo`)
	n, err := strconv.ParseInt(out, 10, 64)
	if rc != 0 || err != nil {
		t.Fatalf("guest MemTotal: rc %d %q", rc, out)
	}
	return n
}

// waitMemory waits until the VM's memory, as GET /v1/vms/{id} shows it,
// satisfies ok.
func (b *bed) waitMemory(t *testing.T, id, what string, ok func(api.VMMemory) bool) api.VMMemory {
	t.Helper()
	var m api.VMMemory
	b.eventually(t, 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		vm, err := b.client.Get(ctx, id)
		if err != nil {
			return err
		}
		if vm.Memory == nil || !ok(*vm.Memory) {
			return fmt.Errorf("memory %+v, want %s", vm.Memory, what)
		}
		m = *vm.Memory
		return nil
	})
	return m
}

// Acceptance 3: the real guest meets the balloon's target (its MemTotal
// shrinks, and grows back), its statistics appear in the API, and a target
// set while the VM is off is met at the next start.
func TestBalloonShrinksTheGuest(t *testing.T) {
	b := setup(t)
	in, _ := b.vmInput("balloon")
	in.RAMGB = 0.25
	vm := b.createVMFrom(t, in)
	if !argvHas(b.qemuArgv(t, b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID), `"driver":"virtio-balloon-pci","id":"balloon0"`) {
		t.Fatal("QEMU has no balloon0")
	}
	full := b.guestMemTotalKiB(t, vm.ID)
	b.waitMemory(t, vm.ID, "all 256 MiB and the guest's statistics", func(m api.VMMemory) bool {
		return m.TotalBytes == 256<<20 && m.TargetBytes == 256<<20 && m.ActualBytes == 256<<20 && m.Stats != nil && m.Stats.TotalBytes != nil
	})

	var set api.VMMemory
	out := b.run(t, "infinivirtctl", "vm", "balloon", vm.ID, "--target-mib", "160", "-o", "json")
	if err := json.Unmarshal([]byte(out), &set); err != nil || set.TargetBytes != 160<<20 || set.TotalBytes != 256<<20 {
		t.Fatalf("vm balloon -o json: %v\n%s", err, out)
	}
	// 96 MiB go to the balloon; the guest's kernel takes them off MemTotal.
	b.eventually(t, 2*time.Minute, func() error {
		if got := b.guestMemTotalKiB(t, vm.ID); full-got < 96<<10 {
			return fmt.Errorf("guest MemTotal %d KiB, was %d: want 96 MiB less", got, full)
		}
		return nil
	})
	m := b.waitMemory(t, vm.ID, "160 MiB in the guest, as it reports it", func(m api.VMMemory) bool {
		return m.ActualBytes == 160<<20 && m.Stats != nil && m.Stats.TotalBytes != nil && *m.Stats.TotalBytes <= (full-96<<10)<<10
	})
	if s := m.Stats; s.FreeBytes == nil || s.AvailableBytes == nil || s.LastUpdate.IsZero() || *s.FreeBytes > *s.TotalBytes {
		t.Errorf("guest statistics %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b.eventually(t, time.Minute, func() error {
		devs, err := b.db.Devices(ctx, vm.ID)
		for _, d := range devs {
			if d.Balloon != nil && d.Balloon.TargetMiB == 160 {
				return nil
			}
		}
		return fmt.Errorf("PostgreSQL devices %+v (%v), want balloon0 with target 160 MiB", devs, err)
	})
	for field, req := range map[string]api.BalloonRequest{"targetMiB": {TargetMiB: 512}, "targetGB": {TargetGB: 0.01}} {
		if _, err := b.client.SetBalloon(ctx, vm.ID, req); errdefs.As(err).Field != field {
			t.Errorf("%+v: %v, want InvalidArgument naming %s", req, err, field)
		}
	}

	// The whole memory deflates the balloon: the guest has it all again.
	if _, err := b.client.SetBalloon(ctx, vm.ID, api.BalloonRequest{TargetGB: 0.25}); err != nil {
		t.Fatal(err)
	}
	b.eventually(t, 2*time.Minute, func() error {
		if got := b.guestMemTotalKiB(t, vm.ID); got != full {
			return fmt.Errorf("guest MemTotal %d KiB, want all %d back", got, full)
		}
		return nil
	})

	// Set while off, the target is met at the next start.
	if _, err := b.client.Power(ctx, vm.ID, api.ForcePowerOff, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	if set, err := b.client.SetBalloon(ctx, vm.ID, api.BalloonRequest{TargetMiB: 192}); err != nil || set.TargetBytes != 192<<20 || set.ActualBytes != 0 {
		t.Fatalf("target while off: %+v (%v)", set, err)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1) // a new shim, a new console
	b.waitMemory(t, vm.ID, "192 MiB in the guest after the start", func(m api.VMMemory) bool {
		return m.TargetBytes == 192<<20 && m.ActualBytes == 192<<20
	})
	b.eventually(t, 2*time.Minute, func() error {
		if got := b.guestMemTotalKiB(t, vm.ID); full-got < 64<<10 {
			return fmt.Errorf("guest MemTotal %d KiB after the start, was %d: want 64 MiB less", got, full)
		}
		return nil
	})
	inOrder(t, b.vmEvents(t, vm.ID),
		`^progress +balloon balloon0 target set to 160 MiB of 256 MiB$`,
		`^progress +balloon balloon0 target set to 256 MiB of 256 MiB$`,
		`^progress +balloon balloon0 target set to 192 MiB of 256 MiB; the next start applies it$`,
		`^progress +balloon balloon0 target 192 MiB of 256 MiB$`)

	// A VM created without a balloon has none to set.
	in, _ = b.vmInput("noballoon")
	no := false
	in.Start, in.Balloon = &no, &no
	plain, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(plain.ID) })
	if _, err := b.client.SetBalloon(ctx, plain.ID, api.BalloonRequest{TargetMiB: 64}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("a VM created without a balloon: %v, want FailedPrecondition", err)
	}
	if got, err := b.client.Get(ctx, plain.ID); err != nil || got.Memory != nil || len(got.Devices) != 2 {
		t.Errorf("a VM created without a balloon: memory %+v, devices %+v (%v)", got.Memory, got.Devices, err)
	}
}
