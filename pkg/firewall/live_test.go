package firewall

import (
	"context"
	"strings"
	"testing"
	"time"

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
