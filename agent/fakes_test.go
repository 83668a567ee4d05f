package agent

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/supervisor"
)

const (
	vm1 = "11111111-1111-4111-8111-111111111111"
	vm2 = "22222222-2222-4222-8222-222222222222"
	vm3 = "33333333-3333-4333-8333-333333333333"
)

func TestCreateBootsAndFollows(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	vm, err := a.Create(t.Context(), createInput(vm1, true))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Status != api.StatusRunning || vm.Reason != api.ReasonBooted || vm.QEMUPID == 0 {
		t.Fatalf("created VM is %s (%s) pid %d", vm.Status, vm.Reason, vm.QEMUPID)
	}
	// What the shim records from now on reaches the agent by its stream.
	if err := b.host.Shim(vm1).Record(api.StatusPaused, api.ReasonIOError, "disk full"); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "paused", status(api.StatusPaused, api.ReasonIOError))
	if _, err := a.Power(t.Context(), vm1, api.PowerOff, true); err != nil {
		t.Fatal(err)
	}
	if b.host.Loaded(vm1) {
		t.Error("the unit is still loaded after power-off")
	}
	if _, ok := b.store.VM(vm1); !ok {
		t.Error("the VM never reached the database")
	}
}

// A create that fails at any step leaves nothing: no directory, no
// reservation of its id or port, no unit.
func TestCreateRollsBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*bed, *Config)
		want  string // in the error
		// diskFormat, if set, is the disk's format: a qcow2 disk is
		// written without qemu-img.
		diskFormat string
	}{
		{"disk", func(b *bed, c *Config) {
			c.QEMUImg = b.script("qemu-img-fails", `echo "qemu-img: No space left on device" >&2; exit 1`)
		}, "No space left", "raw"},
		{"unit start", func(b *bed, c *Config) {
			b.host.FailStart(func(supervisor.UnitSpec) error { return errdefs.Unavailable("systemd: connection reset") })
		}, "connection reset", ""},
		{"shim startup", func(b *bed, c *Config) {
			b.host.OnBoot(func(*agenttest.Shim) error { return errors.New("QEMU exited: could not open disk") })
		}, "could not open disk", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t)
			cfg := b.config()
			tc.setup(b, &cfg)
			a, _ := b.start(cfg)
			in := createInput(vm1, true)
			in.GraphicPort = 5999
			in.DiskFormat = tc.diskFormat
			_, err := a.Create(t.Context(), in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want an error saying %q", err, tc.want)
			}
			requireNothingLeft(t, a, b, vm1)
			// The same id and port are free again.
			b.host.FailStart(nil)
			b.host.OnBoot(nil)
			cfg.QEMUImg = b.qemuImg
			a2, _ := b.start(cfg)
			if _, err := a2.Create(t.Context(), in); err != nil {
				t.Fatalf("create again: %v", err)
			}
		})
	}
}

// requireNothingLeft fails unless a create of id left nothing: no
// directory, no reservation of its id or port, no unit, no VM.
func requireNothingLeft(t *testing.T, a *Agent, b *bed, id string) {
	t.Helper()
	if _, err := os.Stat(b.layout.VMDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("VM directory left behind: %v", err)
	}
	a.mu.Lock()
	vms, ports := len(a.vms), len(a.ports)
	a.mu.Unlock()
	if vms != 0 || ports != 0 {
		t.Errorf("reservations left: %d VMs, %d ports", vms, ports)
	}
	if b.host.Loaded(id) {
		t.Error("unit left loaded")
	}
	if _, err := a.Get(id); !isNotFound(err) {
		t.Errorf("Get after a failed create: %v", err)
	}
}

// An agent that restarts finds its VMs as their logs left them, follows the
// shims that still run, records the end of those that died while it was
// away, and starts or stops nothing.
func TestReattachAfterRestart(t *testing.T) {
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

	// While no agent runs: vm1's guest is suspended, vm2's shim is killed.
	if err := b.host.Shim(vm1).Record(api.StatusSuspended, api.ReasonUser, ""); err != nil {
		t.Fatal(err)
	}
	b.host.Shim(vm2).Crash()
	starts := len(b.host.Starts())

	a, _ = b.start(b.config())
	if v, _ := a.Get(vm1); v.Status != api.StatusSuspended {
		t.Errorf("vm1 after restart: %s, want suspended from its log", v.Status)
	}
	waitVM(t, a, vm2, "lost", status(api.StatusError, api.ReasonShimLost))
	if v, _ := a.Get(vm3); v.Status != api.StatusOff || v.Reason != api.ReasonCreated {
		t.Errorf("vm3 after restart: %s (%s)", v.Status, v.Reason)
	}
	// vm1 is followed again: the new agent sees what its shim records next.
	if err := b.host.Shim(vm1).Record(api.StatusRunning, api.ReasonUser, ""); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "resumed", status(api.StatusRunning, api.ReasonUser))
	if _, err := a.Power(t.Context(), vm1, api.PowerOff, true); err != nil {
		t.Fatal(err)
	}
	if n := len(b.host.Starts()); n != starts {
		t.Errorf("the restart started %d units", n-starts)
	}
	waitStored(t, b.store, vm2, func(evs []api.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Reason == api.ReasonShimLost
	})
}

func waitStored(t *testing.T, s *agenttest.Store, id string, ok func([]api.Event) bool) {
	t.Helper()
	if !agenttest.WaitFor(waitLimit, func() bool { return ok(s.Events(id)) }) {
		t.Fatalf("database events of %s never as expected: %v", id, s.Seqs(id))
	}
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// appendLog writes entries into a VM's log as a shim would.
func appendLog(t *testing.T, b *bed, id string, n int) {
	t.Helper()
	l, err := eventlog.Open(t.Context(), b.layout.EventsFile(id), id)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		if _, err := l.Append(api.Event{Type: api.EventProgress, Message: "step " + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// Entries the agent has not seen are applied in order and once, however
// many catch-ups race, and reach streams and the database once each.
func TestCatchUpAppliesEachEntryOnce(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	// The row and the history start at the create's entry (seq 1).
	waitStored(t, b.store, vm1, func(evs []api.Event) bool { return len(evs) == 1 && evs[0].Seq == 1 })
	handed := b.store.Handed()

	sub := a.broker.subscribe(vm1)
	defer a.broker.unsubscribe(sub)
	appendLog(t, b, vm1, 5)
	rec, err := a.get(vm1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { a.catchUp(rec) })
	}
	wg.Wait()
	a.catchUp(rec)

	var got []uint64
	for len(got) < 5 {
		got = append(got, (<-sub.ch).Seq)
	}
	select {
	case e := <-sub.ch:
		t.Errorf("entry %d streamed twice", e.Seq)
	default:
	}
	if !slices.Equal(got, seqs(2, 6)) {
		t.Errorf("streamed %v, want 2..6 in order", got)
	}
	if v, _ := a.Get(vm1); v.Seq != 6 {
		t.Errorf("the VM's seq is %d, want 6", v.Seq)
	}
	waitStored(t, b.store, vm1, func(evs []api.Event) bool { return len(evs) == 6 })
	if n := b.store.Handed() - handed; n != 5 {
		t.Errorf("the database was handed %d entries, want each of the 5 once", n)
	}

	// While no agent runs, more is logged: the next agent applies it, and
	// the database gets only what it lacks.
	stop()
	handed = b.store.Handed()
	appendLog(t, b, vm1, 3)
	a, _ = b.start(b.config())
	if v, _ := a.Get(vm1); v.Seq != 9 {
		t.Errorf("after restart the VM's seq is %d, want 9", v.Seq)
	}
	waitStored(t, b.store, vm1, func(evs []api.Event) bool { return len(evs) == 9 })
	if !slices.Equal(b.store.Seqs(vm1), seqs(1, 9)) {
		t.Errorf("stored %v", b.store.Seqs(vm1))
	}
	if n := b.store.Handed() - handed; n != 3 {
		t.Errorf("the replay handed %d entries, want the 3 new ones", n)
	}
}

// fakeResources is a host of a given size.
type fakeResources struct {
	memoryMiB, cpus int
	err             error // from MemoryMiB
}

func (r fakeResources) MemoryMiB() (int, error) { return r.memoryMiB, r.err }
func (r fakeResources) CPUs() int               { return r.cpus }
