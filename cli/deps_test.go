package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCLILinksOnlyTheWireTypes: infinivirtctl speaks the API through
// pkg/agentclient and pkg/api, and links none of the host-side libraries
// (nftables, netlink, the spec files) to do it.
func TestCLILinksOnlyTheWireTypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../cmd/infinivirtctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages; the check would prove nothing", len(deps))
	}
	for _, d := range deps {
		for _, f := range []string{"nftables", "netlink", "infinivirt/pkg/firewall", "infinivirt/pkg/netdev",
			"infinivirt/pkg/vmspec", "infinivirt/agent"} {
			if strings.Contains(d, f) {
				t.Errorf("infinivirtctl links %s", d)
			}
		}
	}
}
