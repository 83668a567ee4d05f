package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/peerconn/stalltest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestStalledConnectionsBesideANormalRequest: 300 connections that send
// half a request to the agent, more than its cap per uid, do not keep the
// same uid's normal requests out, and the agent closes every one of them:
// the oldest to make room, the rest once its read deadlines pass.
func TestStalledConnectionsBesideANormalRequest(t *testing.T) {
	b := setup(t)
	conns, err := stalltest.Stall(b.host.Path(vmspec.DefaultLayout.AgentSocket()), 300)
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := b.client.Health(ctx); err != nil {
			t.Fatalf("a normal request beside 300 stalled ones: %v", err)
		}
		if _, err := b.client.List(ctx); err != nil {
			t.Fatalf("a normal request beside 300 stalled ones: %v", err)
		}
	}
	// The deadlines are the agent's defaults, 10 s for the headers and 10 s
	// more for the body; the wait is a bound for a hung test.
	if err := stalltest.WaitClosed(conns, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}
