package shim

import (
	"context"
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// The power verbs each state allows; every other one is refused.
var allowedVerbs = map[vmState][]api.PowerOp{
	stateStarting:  {api.PowerOff, api.ForcePowerOff, api.Restart},
	stateRunning:   {api.PowerOff, api.ForcePowerOff, api.Suspend, api.Resume, api.Reset, api.Restart},
	stateSuspended: {api.PowerOn, api.PowerOff, api.ForcePowerOff, api.Suspend, api.Resume, api.Reset, api.Restart},
	statePaused:    {api.PowerOn, api.PowerOff, api.ForcePowerOff, api.Resume, api.Reset, api.Restart},
	stateStopping:  {},
	stateOff:       {},
}

func TestTransitionTable(t *testing.T) {
	if len(transitions) != len(vmStates) {
		t.Fatalf("%d rows for %d states", len(transitions), len(vmStates))
	}
	for _, st := range vmStates {
		row, ok := transitions[st]
		if !ok {
			t.Fatalf("no row for %s", st)
		}
		for _, op := range api.PowerOps {
			_, allowed := row[op]
			if want := slices.Contains(allowedVerbs[st], op); allowed != want {
				t.Errorf("%s from %s: allowed %v, want %v", op, st, allowed, want)
			}
		}
		for op, tr := range row {
			if !op.Valid() || !slices.Contains(vmStates, tr.to) {
				t.Errorf("%s from %s leads to unknown %q", op, st, tr.to)
			}
			if tr.run == nil && tr.to != st {
				t.Errorf("%s from %s leads to %s but does nothing", op, st, tr.to)
			}
		}
	}
}

func TestRefusalsNameBothStates(t *testing.T) {
	for _, c := range []struct {
		op   api.PowerOp
		from vmState
		want string
	}{
		{api.Suspend, stateOff, "cannot suspend: VM is off, not running or suspended"},
		{api.Suspend, statePaused, "cannot suspend: VM is paused, not running or suspended"},
		{api.Resume, stateStarting, "cannot resume: VM is starting, not running, suspended or paused"},
		{api.Reset, stateStopping, "cannot reset: VM is stopping, not running, suspended or paused"},
		{api.PowerOn, stateRunning, "cannot powerOn: VM is already running"},
		{api.PowerOff, stateOff, "cannot powerOff: VM is already off"},
		{api.Restart, stateStopping, "cannot restart: VM is stopping, not starting, running, suspended or paused"},
	} {
		err := refusal(c.op, c.from)
		if e := errdefs.As(err); e.Code != errdefs.CodeFailedPrecondition || e.Message != c.want {
			t.Errorf("%s from %s: %v, want FailedPrecondition %q", c.op, c.from, err, c.want)
		}
	}
}

// putInState sets up what lifecycleState reads for st.
func putInState(s *Shim, st vmState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case stateStarting:
		s.status.Status = api.StatusStarting
	case stateRunning:
		s.status.Status = api.StatusRunning
	case stateSuspended:
		s.status.Status = api.StatusSuspended
	case statePaused:
		s.status.Status = api.StatusPaused
	case stateStopping:
		s.status.Status = api.StatusRunning
		s.cause = &exitCause{status: api.StatusOff, reason: api.ReasonKilled}
	case stateOff:
		s.status.Status = api.StatusOff
	}
}

// The verbs that act on QEMU directly: what each sends, and the state it
// leaves the VM in.
func TestPowerFollowsTheTable(t *testing.T) {
	for _, c := range []struct {
		from vmState
		op   api.PowerOp
		sent string // QMP command, "" for none
		to   vmState
	}{
		{stateRunning, api.Suspend, "stop", stateSuspended},
		{stateRunning, api.Resume, "", stateRunning},
		{stateRunning, api.Reset, "system_reset", stateRunning},
		{stateSuspended, api.Resume, "cont", stateRunning},
		{stateSuspended, api.PowerOn, "cont", stateRunning},
		{stateSuspended, api.Suspend, "", stateSuspended},
		{stateSuspended, api.Reset, "system_reset", stateSuspended},
		{statePaused, api.Resume, "cont", stateRunning},
		{statePaused, api.Reset, "system_reset", statePaused},
	} {
		s, fake := newSupervisedShim(t, 2)
		putInState(s, c.from)
		if err := s.Power(context.Background(), c.op); err != nil {
			t.Errorf("%s from %s: %v", c.op, c.from, err)
			continue
		}
		if got := s.lifecycleState(); got != c.to || got != transitions[c.from][c.op].to {
			t.Errorf("%s from %s: now %s, want %s", c.op, c.from, got, c.to)
		}
		for _, cmd := range []string{"stop", "cont", "system_reset"} {
			if n, want := fake.count(cmd), btoi(cmd == c.sent); n != want {
				t.Errorf("%s from %s: sent %s %d times, want %d", c.op, c.from, cmd, n, want)
			}
		}
	}
}

// A refused verb sends nothing to QEMU and changes nothing.
func TestRefusedPowerChangesNothing(t *testing.T) {
	for _, st := range vmStates {
		for _, op := range api.PowerOps {
			if slices.Contains(allowedVerbs[st], op) {
				continue
			}
			s, fake := newSupervisedShim(t, 2)
			putInState(s, st)
			before := s.Status()
			err := s.Power(context.Background(), op)
			if errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
				t.Errorf("%s from %s: %v, want FailedPrecondition", op, st, err)
			}
			if s.Status() != before || s.lifecycleState() != st {
				t.Errorf("%s from %s changed the VM to %+v", op, st, s.Status())
			}
			for _, cmd := range []string{"stop", "cont", "system_reset", "system_powerdown", "quit"} {
				if fake.count(cmd) != 0 {
					t.Errorf("%s from %s sent %s to QEMU", op, st, cmd)
				}
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
