package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/eventlog"
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

// An event log emptied under a running shim, then an agent restart: the
// live shim's status wins over what is left of the log, the log says it
// again, and power operations work as on any running VM.
func TestEmptiedLogOfARunningVM(t *testing.T) {
	b := newBed(t)
	a, stop := b.start(b.config())
	if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := os.Truncate(b.layout.EventsFile(vm1), 0); err != nil {
		t.Fatal(err)
	}
	a, _ = b.start(b.config())
	v := waitVM(t, a, vm1, "running again", status(api.StatusRunning, api.ReasonBooted))
	if v.QEMUPID == 0 {
		t.Error("the restated status lost QEMU's pid")
	}
	if evs, _ := eventlog.ReadFile(b.layout.EventsFile(vm1), 0); len(evs) == 0 || evs[len(evs)-1].Status != api.StatusRunning {
		t.Errorf("the log was not repaired: %+v", evs)
	}
	if _, err := a.Power(t.Context(), vm1, api.Suspend, true); err != nil {
		t.Fatalf("suspend after the repair: %v", err)
	}
	if _, err := a.Power(t.Context(), vm1, api.Resume, true); err != nil {
		t.Fatalf("resume after the repair: %v", err)
	}
}
