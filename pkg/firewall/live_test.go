package firewall

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
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
	var e *api.Error
	if _, err := f.VMRuleset(ctx, "nope"); !errors.As(err, &e) || e.Code != api.CodeNotFound {
		t.Errorf("unknown VM: want NotFound, got %v", err)
	}
}
