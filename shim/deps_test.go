package shim

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShimStaysSmall keeps the shim independent of the agent, the
// supervisor and the store: it must run, and clean up, with none of them.
// It also keeps net/http (and the TLS stack it links) out: one shim runs
// per VM, so every MiB of it counts hundreds of times on a host.
func TestShimStaysSmall(t *testing.T) {
	forbidden := []string{
		"github.com/infinibay/infinivirt/agent",
		"github.com/infinibay/infinivirt/supervisor",
		"github.com/infinibay/infinivirt/pkg/store",
		"github.com/jackc/pgx",
		"github.com/godbus/dbus",
		"net/http",
		"crypto/tls",
	}
	for _, pkg := range []string{".", "../cmd/infinivirt-shim"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed only %d packages; the check would prove nothing", pkg, len(deps))
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
}
