package device

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDevicesStayBelowTheAgent: the shim runs devices, so this package
// must not pull in the agent, the supervisor, the store or net/http.
func TestDevicesStayBelowTheAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages; the check would prove nothing", len(deps))
	}
	for _, d := range deps {
		for _, f := range []string{
			"github.com/infinibay/infinivirt/agent", "github.com/infinibay/infinivirt/supervisor",
			"github.com/infinibay/infinivirt/pkg/store", "net/http",
		} {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("pkg/device imports %s", d)
			}
		}
	}
}
