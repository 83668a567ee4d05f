package testbed

import (
	"context"
	"testing"
)

// NewHost boots a host for a test and stops it when the test ends, also
// after a failure or a panic. It skips the test, naming the reason, when the
// machine cannot run one (not root, unshare or systemd missing). Without
// opts.Log, systemd's console goes to the test log only if the boot fails.
func NewHost(t testing.TB, opts HostOptions) *Host {
	t.Helper()
	if err := Prerequisites(); err != nil {
		t.Skipf("testbed host cannot run here: %v", err)
	}
	ctx := t.Context()
	h, err := StartHost(context.WithoutCancel(ctx), opts)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	if h.BootState() == "degraded" {
		t.Logf("testbed host %s booted degraded; failed units: %v", h.ID(), h.FailedUnits())
	}
	return h
}
