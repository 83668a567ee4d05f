package firewall

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall/internal/nettest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// liveFirewall is a stateless Firewall in a fresh namespace.
func liveFirewall(t testing.TB, opts Options) (*Firewall, *nettest.NS) {
	t.Helper()
	ns := nettest.New(t, "ivfw")
	opts.NetNSFd = ns.Fd()
	opts.Stateless = true
	f, err := New(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, ns
}

func TestProbeThisKernel(t *testing.T) {
	ns := nettest.New(t, "ivfw")
	caps, err := ProbeNetNS(testCtx(t), ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities: %+v", caps)
	if out := ns.Run(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("probe left something behind:\n%s", out)
	}
}

func TestLiveVMRulesetReadsBackWhatWasRendered(t *testing.T) {
	f, _ := liveFirewall(t, Options{})
	ctx := testCtx(t)
	d := Department{ID: "eng", Policy: DepartmentPolicy{BlockAll, AllowInternet}, RuleSet: RuleSet{Presets: []Preset{PresetSSH}}}
	v := vmA(Rule{ID: "web", Action: Accept, Direction: In, Priority: 300, Protocol: TCP, DstPortStart: 80})
	if err := f.ApplyVM(ctx, d, v); err != nil {
		t.Fatal(err)
	}
	got, err := f.VMRuleset(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Render(f.Mode(), d, v)
	if err != nil {
		t.Fatal(err)
	}
	// Every chain of the plan but the base chains is reachable from A's.
	var want strings.Builder
	for _, pc := range p.chains {
		if pc.chain.Hooknum == nil {
			writeChain(&want, pc.chain, pc.rules)
		}
	}
	sortChains := func(s string) string {
		parts := strings.Split(s, "chain ")
		sort.Strings(parts)
		return strings.Join(parts, "chain ")
	}
	if sortChains(got) != sortChains(want.String()) {
		t.Errorf("kernel view:\n%s\nwant:\n%s", got, want.String())
	}
	var e *errdefs.Error
	if _, err := f.VMRuleset(ctx, "nope"); !errors.As(err, &e) || e.Code != errdefs.CodeNotFound {
		t.Errorf("unknown VM: want NotFound, got %v", err)
	}
}

// A VM start with an older view of its department must not undo a
// department edit the kernel already holds.
func TestLiveApplyVMKeepsTheKernelsDepartment(t *testing.T) {
	f, ns := liveFirewall(t, Options{})
	ctx := testCtx(t)
	old := Department{ID: "eng", Policy: allowAll}
	edited := old
	edited.RuleSet.Rules = []Rule{rule("no-telnet", Drop, In, TCP)}
	edited.RuleSet.Rules[0].DstPortStart = 23
	if err := f.ApplyDepartment(ctx, edited, []VM{vmA()}); err != nil {
		t.Fatal(err)
	}
	b := testVM("b", "ivtbbbb", "52:54:00:00:00:0b")
	if err := f.ApplyVM(ctx, old, b); err != nil {
		t.Fatal(err)
	}
	table := ns.Run(t, "nft", "list", "table", "bridge", TableName)
	if !strings.Contains(table, "department:no-telnet") || !strings.Contains(table, "chain vm-b-in") {
		t.Errorf("the department edit was undone or B is missing:\n%s", table)
	}
	got, err := f.VMRuleset(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "department:no-telnet") {
		t.Errorf("B does not reach the department's rule:\n%s", got)
	}
}

// The probe's answers match what the kernel then does: a ruleset using a
// feature applies where the probe found it and is refused by the kernel
// where it did not (after which the VM is dropped, not open).
func TestLiveProbeMatchesTheKernel(t *testing.T) {
	ns := nettest.New(t, "ivfw")
	ctx := testCtx(t)
	caps, err := ProbeNetNS(ctx, ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	reject := rule("rej", Reject, In, TCP)
	reject.DstPortStart = 23
	ct := Rule{ID: "ct", Action: Accept, Direction: In, Priority: 500, Protocol: UDP, ConnectionState: &ConnectionState{Established: true}}
	for _, c := range []struct {
		name  string
		has   bool
		mode  Capabilities
		rules []Rule
	}{
		{"conntrack", caps.Conntrack, Capabilities{Conntrack: true}, []Rule{ct}},
		{"reject", caps.Reject, Capabilities{Conntrack: caps.Conntrack, Reject: true}, []Rule{reject}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forced := c.mode
			f, err := New(ctx, Options{NetNSFd: ns.Fd(), Caps: &forced, Stateless: !forced.Conntrack})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Reset(ctx) })
			err = f.ApplyVM(ctx, Department{ID: "d", Policy: allowAll}, vmA(c.rules...))
			var ae *ApplyError
			switch {
			case c.has && err != nil:
				t.Errorf("probe found %s, but the kernel refused: %v", c.name, err)
			case !c.has && !errors.As(err, &ae):
				t.Errorf("probe did not find %s, but the kernel took it (err %v)", c.name, err)
			case !c.has && ae.FailClosed != nil:
				t.Errorf("fail-closed drop failed: %v", ae.FailClosed)
			}
			t.Logf("%s: probe %v, apply: %v", c.name, c.has, err)
		})
	}
}
