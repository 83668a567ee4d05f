package agent

import (
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// TestHungShimIsShownNotResponding starts an agent while one running VM's
// shim hangs: the agent comes up anyway, shows that VM as not responding
// (its shim) and the other as responding, follows a stalled QEMU the same
// way, and shows both answering again once they do.
func TestHungShimIsShownNotResponding(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	for _, id := range []string{vm1, vm2} {
		if _, err := a.Create(t.Context(), createInput(id, true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Create(t.Context(), createInput(vm3, false)); err != nil {
		t.Fatal(err)
	}
	stop()

	resume := b.host.Shim(vm1).Hang()
	defer resume()
	cfg := b.config()
	cfg.HealthInterval = 20 * time.Millisecond
	a, _ = b.start(cfg) // returns while vm1's shim still hangs
	hung := waitVM(t, a, vm1, "not responding", notResponding(componentShim))
	if hung.Status != api.StatusRunning || hung.NotResponding.Since.IsZero() || hung.NotResponding.Error == "" {
		t.Errorf("hung VM's view: %s, %+v", hung.Status, hung.NotResponding)
	}
	waitVM(t, a, vm2, "responding", responding)
	if v, _ := a.Get(vm3); v.Responding != nil || v.NotResponding != nil {
		t.Errorf("a VM that is off shows responding %v, %+v", v.Responding, v.NotResponding)
	}
	// Later checks keep the time it stopped answering.
	waitVM(t, a, vm1, "checked again", func(v api.VM) bool {
		return v.NotResponding != nil && v.NotResponding.Since.Equal(hung.NotResponding.Since) && v.UpdatedAt.Equal(hung.UpdatedAt)
	})
	resume()
	waitVM(t, a, vm1, "responding again", responding)

	b.host.Shim(vm2).StallQEMU("query-status: context deadline exceeded")
	stalled := waitVM(t, a, vm2, "QEMU not responding", notResponding(componentQEMU))
	if stalled.NotResponding.Error != "query-status: context deadline exceeded" {
		t.Errorf("stalled QEMU's error: %q", stalled.NotResponding.Error)
	}
	b.host.Shim(vm2).StallQEMU("")
	waitVM(t, a, vm2, "QEMU responding again", responding)

	// A power-off ends the run: nothing is said of a shim that is gone.
	if _, err := a.Power(t.Context(), vm2, api.PowerOff, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Get(vm2); v.Responding != nil || v.NotResponding != nil {
		t.Errorf("a powered-off VM shows responding %v, %+v", v.Responding, v.NotResponding)
	}
}

func responding(v api.VM) bool { return v.Responding != nil && *v.Responding && v.NotResponding == nil }

func notResponding(component string) func(api.VM) bool {
	return func(v api.VM) bool {
		return v.Responding != nil && !*v.Responding && v.NotResponding != nil && v.NotResponding.Component == component
	}
}
