package agent

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// smallHost is the bed on a host of 24032 MiB and 2 CPUs, no reserve.
func smallHost(b *bed) Config {
	cfg := b.config()
	cfg.Resources = fakeResources{memoryMiB: 24032, cpus: 2}
	return cfg
}

func requireExhausted(t *testing.T, err error, field string, says ...string) {
	t.Helper()
	e := errdefs.As(err)
	if e == nil || e.Code != errdefs.CodeResourceExhausted || e.Field != field {
		t.Fatalf("error %v, want ResourceExhausted naming %q", err, field)
	}
	for _, s := range says {
		if !strings.Contains(e.Message, s) {
			t.Errorf("message %q does not say %q", e.Message, s)
		}
	}
}

// A create the host can never run is refused, naming the field, before
// anything is made: no directory, spec, reservation or unit.
func TestCreateBeyondTheHostIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*api.CreateVMInput)
		field  string
		says   []string
	}{
		{"memory beyond the host", func(in *api.CreateVMInput) { in.RAMGB = 4097 },
			"ramGB", []string{"4195328 MiB asked, the host has 24032 MiB"}},
		{"memory beyond the reserve", func(in *api.CreateVMInput) { in.RAMGB = 23 },
			"ramGB", []string{"23552 MiB asked", "allow 23008 MiB"}},
		{"vCPUs beyond the host", func(in *api.CreateVMInput) { in.CPUCores = 3 },
			"cpuCores", []string{"3 vCPUs asked, the host has 2 CPUs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t)
			cfg := smallHost(b)
			cfg.MemoryReserveMiB = -1 // the default: 1 GiB of this host
			a, _ := b.start(cfg)
			for _, start := range []bool{true, false} {
				in := createInput(vm1, start)
				tc.mutate(&in)
				_, err := a.Create(t.Context(), in)
				requireExhausted(t, err, tc.field, tc.says...)
				requireNothingLeft(t, a, b, vm1)
			}
			if n := len(b.host.Starts()); n != 0 {
				t.Errorf("%d units started", n)
			}
		})
	}
}

// A VM of as many vCPUs as the host has CPUs, and of all the memory the
// budget allows, is created and starts.
func TestCreateUpToTheHost(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(smallHost(b))
	in := createInput(vm1, true)
	in.CPUCores, in.RAMGB = 2, 23
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "running", status(api.StatusRunning, api.ReasonBooted))
}

// fill creates vm1 running with 16 GiB and vm2 off with 12 GiB on a host of
// 24032 MiB: vm2 fits the host but not beside vm1.
func fill(t *testing.T, b *bed, cfg Config) *Agent {
	t.Helper()
	a, _ := b.start(cfg)
	in := createInput(vm1, true)
	in.RAMGB = 16
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	waitVM(t, a, vm1, "running", status(api.StatusRunning, api.ReasonBooted))
	in = createInput(vm2, false)
	in.RAMGB = 12
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	return a
}

// A power-on the running VMs leave no room for is refused, saying what is
// short, and changes nothing: no unit, no entry, the same status. Once the
// other VM is off, it starts.
func TestStartRefusedWhenTheHostIsFull(t *testing.T) {
	b := newBed(t)
	a := fill(t, b, smallHost(b))
	before, _ := a.Get(vm2)
	starts := len(b.host.Starts())
	sub := a.broker.subscribe(vm2)
	defer a.broker.unsubscribe(sub)

	_, err := a.Power(t.Context(), vm2, api.PowerOn, true)
	requireExhausted(t, err, "", "needs 12288 MiB, 7648 MiB free", "24032 MiB at overcommit 1.0",
		"running VMs hold 16384 MiB")
	if after, _ := a.Get(vm2); after.Status != before.Status || after.Reason != before.Reason || after.Seq != before.Seq {
		t.Errorf("vm2 went from %s (%s) seq %d to %s (%s) seq %d",
			before.Status, before.Reason, before.Seq, after.Status, after.Reason, after.Seq)
	}
	if n := len(b.host.Starts()); n != starts {
		t.Errorf("the refused start started %d units", n-starts)
	}
	if b.host.Loaded(vm2) {
		t.Error("vm2 has a unit")
	}
	select {
	case e := <-sub.ch:
		t.Errorf("the refused start sent %+v", e)
	default:
	}
	// A create that would start beside vm1 is refused before it makes
	// anything; off, it is made.
	in := createInput(vm3, true)
	in.RAMGB = 12
	_, err = a.Create(t.Context(), in)
	requireExhausted(t, err, "", "needs 12288 MiB")
	if _, err := a.Get(vm3); !isNotFound(err) {
		t.Errorf("vm3 after the refused create: %v", err)
	}

	if _, err := a.Power(t.Context(), vm1, api.PowerOff, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Power(t.Context(), vm2, api.PowerOn, true); err != nil {
		t.Fatalf("power-on once vm1 is off: %v", err)
	}
}

// An overcommit ratio lets through what the host alone does not hold.
func TestMemoryOvercommitLetsTheStartThrough(t *testing.T) {
	b := newBed(t)
	cfg := smallHost(b)
	cfg.MemoryOvercommit = 1.5
	a := fill(t, b, cfg)
	if _, err := a.Power(t.Context(), vm2, api.PowerOn, true); err != nil {
		t.Fatalf("power-on at overcommit 1.5: %v", err)
	}
	// A single VM still gets no more than the host has.
	in := createInput(vm3, false)
	in.RAMGB = 24
	_, err := a.Create(t.Context(), in)
	requireExhausted(t, err, "ramGB", "24576 MiB asked, the host has 24032 MiB")
}

// Of two starts at once that each fit alone but not together, one is
// refused: the check and the unit's start are one step.
func TestConcurrentStartsDoNotBothTakeTheLastMemory(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(smallHost(b))
	for _, id := range []string{vm1, vm2} {
		in := createInput(id, false)
		in.RAMGB = 12
		if _, err := a.Create(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{vm1, vm2} {
		wg.Go(func() { _, errs[i] = a.Power(t.Context(), id, api.PowerOn, true) })
	}
	wg.Wait()
	var refused int
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, &errdefs.Error{Code: errdefs.CodeResourceExhausted}):
			refused++
		default:
			t.Errorf("power-on: %v", err)
		}
	}
	if refused != 1 {
		t.Errorf("%d starts refused, want 1: %v", refused, errs)
	}
}

// A host whose memory cannot be read refuses the create, saying why.
func TestCreateWhenTheHostMemoryIsUnreadable(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	cfg.Resources = fakeResources{cpus: 2, err: errors.New("no /proc")}
	a, _ := b.start(cfg)
	_, err := a.Create(t.Context(), createInput(vm1, true))
	if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeInternal || !strings.Contains(e.Message, "no /proc") {
		t.Fatalf("create: %v, want Internal saying no /proc", err)
	}
	requireNothingLeft(t, a, b, vm1)
}

func TestMemoryBudget(t *testing.T) {
	for _, tc := range []struct {
		host, reserve int
		overcommit    float64
		limit         int
	}{
		{host: 24032, reserve: -1, overcommit: 1, limit: 23008},
		{host: 4096, reserve: -1, overcommit: 1, limit: 3687}, // a tenth of a small host
		{host: 24032, reserve: 0, overcommit: 2, limit: 48064},
		{host: 24032, reserve: 2048, overcommit: 1.5, limit: 34000},
		{host: 512, reserve: 1024, overcommit: 1, limit: 0},
	} {
		a := New(Config{Resources: fakeResources{memoryMiB: tc.host, cpus: 1},
			MemoryReserveMiB: tc.reserve, MemoryOvercommit: tc.overcommit})
		b, err := a.memoryBudget()
		if err != nil || b.limitMiB != tc.limit {
			t.Errorf("%+v: limit %d (%v), want %d", tc, b.limitMiB, err, tc.limit)
		}
	}
}

func TestHostResourcesParse(t *testing.T) {
	mib, err := parseMemTotal(strings.NewReader("MemTotal:       24683748 kB\nMemFree:  1 kB\n"))
	if err != nil || mib != 24105 {
		t.Errorf("MemTotal %d MiB (%v), want 24105", mib, err)
	}
	if _, err := parseMemTotal(strings.NewReader("MemFree: 1 kB\n")); err == nil {
		t.Error("a meminfo without MemTotal parsed")
	}
	for list, want := range map[string]int{"0": 1, "0-1": 2, "0-3,6,8-9": 7} {
		if n, err := countCPUList(list); err != nil || n != want {
			t.Errorf("%q: %d CPUs (%v), want %d", list, n, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1"} {
		if _, err := countCPUList(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if n := (HostResources{}).CPUs(); n < 1 {
		t.Errorf("the host has %d CPUs", n)
	}
}

// The host's CPU list and meminfo are read as outside input: whatever they
// hold is a count that makes sense or an error.
func FuzzHostResourcesParse(f *testing.F) {
	for _, s := range []string{"0-3,6,8-9", "0", "MemTotal: 1024 kB", "MemTotal: -5 kB", "0-9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := countCPUList(s); err == nil && (n < 1 || n > maxCPUs) {
			t.Fatalf("CPU list %q counted %d", s, n)
		}
		if mib, err := parseMemTotal(strings.NewReader(s)); err == nil && mib < 0 {
			t.Fatalf("meminfo %q read as %d MiB", s, mib)
		}
	})
}
