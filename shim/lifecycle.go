package shim

import (
	"context"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// vmState is where the VM is in its lifecycle, as the power verbs see it.
// It follows from the recorded status and from whether QEMU's end is
// already decided (see lifecycleState).
type vmState string

const (
	stateStarting  vmState = "starting"  // startup steps run; the CPUs have not started
	stateRunning   vmState = "running"   // the CPUs run (building, during an install)
	stateSuspended vmState = "suspended" // an operator stopped the CPUs
	statePaused    vmState = "paused"    // a disk error stopped the CPUs
	stateStopping  vmState = "stopping"  // QEMU's end is decided; it is going away
	stateOff       vmState = "off"       // QEMU is gone: off, or ended in error
)

// vmStates lists the states in the order messages name them.
var vmStates = []vmState{stateStarting, stateRunning, stateSuspended, statePaused, stateStopping, stateOff}

// transition is one power verb from one state: the state the verb aims at,
// and what the shim does to get there (nil: already there, nothing to do).
// The verbs that go through the guest (powerOff, restart) only start on
// their way; events record where they end.
type transition struct {
	to  vmState
	run func(s *Shim, ctx context.Context, from vmState) error
}

// transitions is the lifecycle, one row per state: the power verbs it
// allows. A verb missing from a row is refused with FailedPrecondition.
var transitions = map[vmState]map[api.PowerOp]transition{
	stateStarting: stopVerbs(nil),
	stateRunning: stopVerbs(map[api.PowerOp]transition{
		api.Resume:  {stateRunning, nil},
		api.Suspend: {stateSuspended, (*Shim).suspendCPUs},
		api.Reset:   {stateRunning, (*Shim).resetMachine},
	}),
	stateSuspended: stopVerbs(map[api.PowerOp]transition{
		api.PowerOn: {stateRunning, (*Shim).resumeCPUs},
		api.Resume:  {stateRunning, (*Shim).resumeCPUs},
		api.Suspend: {stateSuspended, nil},
		api.Reset:   {stateSuspended, (*Shim).resetMachine},
	}),
	statePaused: stopVerbs(map[api.PowerOp]transition{
		api.PowerOn: {stateRunning, (*Shim).resumeCPUs},
		api.Resume:  {stateRunning, (*Shim).resumeCPUs},
		api.Reset:   {statePaused, (*Shim).resetMachine},
	}),
	stateStopping: {},
	stateOff:      {},
}

// stopVerbs adds the verbs every live state allows to row: each ends the
// guest's run, or restarts it.
func stopVerbs(row map[api.PowerOp]transition) map[api.PowerOp]transition {
	if row == nil {
		row = map[api.PowerOp]transition{}
	}
	row[api.PowerOff] = transition{stateOff, (*Shim).requestPowerOff}
	row[api.Restart] = transition{stateRunning, (*Shim).requestRestart}
	row[api.ForcePowerOff] = transition{stateOff, (*Shim).requestForceOff}
	return row
}

// refusal is the error for op in a state whose row lacks it. It names
// the state the VM is in and the states op needs, or says the VM is already
// where op leads.
func refusal(op api.PowerOp, from vmState) error {
	var need []string
	for _, st := range vmStates {
		t, ok := transitions[st][op]
		if ok && t.to == from {
			return errdefs.FailedPrecondition("cannot %s: VM is already %s", op, from)
		}
		if ok {
			need = append(need, string(st))
		}
	}
	return errdefs.FailedPrecondition("cannot %s: VM is %s, not %s", op, from, orList(need))
}

// orList joins "a", "b" and "c" as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// lifecycleState is the VM's state now.
func (s *Shim) lifecycleState() vmState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

func (s *Shim) stateLocked() vmState {
	if s.cause != nil {
		return stateStopping
	}
	switch s.status.Status {
	case api.StatusRunning, api.StatusBuilding:
		return stateRunning
	case api.StatusSuspended:
		return stateSuspended
	case api.StatusPaused:
		return statePaused
	case api.StatusOff, api.StatusError:
		return stateOff
	}
	return stateStarting
}
