package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Autostart that cannot leave its marker says so: the next agent start
// would boot the autostart VMs again.
func TestAutostartMarkerFailureIsLogged(t *testing.T) {
	root := t.TempDir()
	runDir := filepath.Join(root, "run")
	if err := os.WriteFile(runDir, nil, 0o600); err != nil { // a file where the directory should be
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := New(Config{
		Layout: vmspec.Layout{StateDir: filepath.Join(root, "state"), RunDir: runDir},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	a.autostart(t.Context())
	if !strings.Contains(logs.String(), "cannot mark autostart done") {
		t.Fatalf("log %q does not report the marker", logs.String())
	}
}
