package agent

import (
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
)

func TestGoalOfEachPowerVerb(t *testing.T) {
	const since = 10 // the VM's last seq when the verb was accepted
	running := api.VM{Status: api.StatusRunning, Reason: api.ReasonUser, Seq: 11}
	off := api.VM{Status: api.StatusOff, Reason: api.ReasonUser, Seq: 11}
	suspended := api.VM{Status: api.StatusSuspended, Seq: 11}
	restarted := api.VM{Status: api.StatusRunning, Reason: api.ReasonRestarted, Seq: 11}
	// Still the entry of an earlier restart: this restart has not happened yet.
	earlier := api.VM{Status: api.StatusRunning, Reason: api.ReasonRestarted, Seq: since}
	for op, want := range map[api.PowerOp][5]bool{ // running, off, suspended, restarted, earlier
		api.PowerOn:       {true, true, false, true, true},
		api.PowerOff:      {false, true, false, false, false},
		api.ForcePowerOff: {false, true, false, false, false},
		api.Suspend:       {false, true, true, false, false},
		api.Restart:       {false, true, false, true, false},
	} {
		g := goal(op, since)
		got := [5]bool{g(running), g(off), g(suspended), g(restarted), g(earlier)}
		if got != want {
			t.Errorf("%s: goal on running/off/suspended/restarted/earlier = %v, want %v", op, got, want)
		}
	}
}
