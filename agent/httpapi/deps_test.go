package httpapi

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHTTPStaysOutOfTheCore: the HTTP layer sits on top of the agent. The
// agent and every library below it must work, and be tested, without it.
func TestHTTPStaysOutOfTheCore(t *testing.T) {
	const self = "github.com/infinibay/infinivirt/agent/httpapi"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list listed only %d packages; the check would prove nothing", len(lines))
	}
	// Only the agent's main and the HTTP layer's own parts may import it.
	allowed := func(pkg string) bool {
		return pkg == "github.com/infinibay/infinivirt/cmd/infinivirt-agent" || strings.HasPrefix(pkg, self+"/")
	}
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, imp := range strings.Fields(imports) {
			if (imp == self || strings.HasPrefix(imp, self+"/")) && !allowed(pkg) && pkg != self {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	// And the core itself links none of it.
	for _, core := range []string{"github.com/infinibay/infinivirt/agent", "github.com/infinibay/infinivirt/pkg/..."} {
		out, err := exec.Command("go", "list", "-deps", core).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", core, err, out)
		}
		for _, d := range strings.Fields(string(out)) {
			if d == self || strings.HasPrefix(d, self+"/") {
				t.Errorf("%s depends on %s", core, d)
			}
		}
	}
}
