package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/shimapi"
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

// A running VM's spec.json truncated, then an agent restart: the spec
// comes back from the VM's shim and the file is rewritten. Where the shim
// cannot give it, the VM stays listed as error (spec-unreadable), a start
// or a change is refused saying why, and force-off and delete work.
func TestTruncatedSpecOfARunningVM(t *testing.T) {
	for _, shimAnswers := range []bool{true, false} {
		t.Run(fmt.Sprintf("shim answers %v", shimAnswers), func(t *testing.T) {
			b := newBed(t)
			a, stop := b.start(b.config())
			if _, err := a.Create(t.Context(), createInput(vm1, true)); err != nil {
				t.Fatal(err)
			}
			stop()
			onDisk, err := os.ReadFile(b.layout.SpecFile(vm1))
			if err != nil {
				t.Fatal(err)
			}
			// What the shim holds: the spec it loaded, secrets included.
			spec, err := vmspec.Load(b.layout.SpecFile(vm1))
			if err != nil {
				t.Fatal(err)
			}
			saved, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(b.layout.SpecFile(vm1), onDisk[:len(onDisk)/2], 0o600); err != nil {
				t.Fatal(err)
			}
			if shimAnswers {
				b.host.OnExchange(func(_ *agenttest.Shim, method, target string, _ []byte) ([]byte, error) {
					if method != shimapi.RouteSpec.Method || target != shimapi.RouteSpec.Path {
						return nil, errdefs.NotFound("no verb %s %s", method, target)
					}
					return json.Marshal(shimapi.SpecCopy{Spec: saved})
				})
			}
			a, _ = b.start(b.config())
			v, err := a.Get(vm1)
			if err != nil {
				t.Fatalf("the VM is not listed: %v", err)
			}
			if shimAnswers {
				if v.Status != api.StatusRunning || v.Name != "vm-1111" {
					t.Errorf("the recovered VM reads %s (%s) named %q", v.Status, v.Reason, v.Name)
				}
				if spec, err := vmspec.Load(b.layout.SpecFile(vm1)); err != nil || spec.ID != vm1 {
					t.Errorf("spec.json was not rewritten: %v", err)
				}
				return
			}
			if v.Status != api.StatusError || v.Reason != api.ReasonSpecUnreadable || !strings.Contains(v.Message, "spec.json") {
				t.Errorf("the VM reads %s (%s) %q, want error (spec-unreadable)", v.Status, v.Reason, v.Message)
			}
			if _, err := a.Power(t.Context(), vm1, api.ForcePowerOff, true); err != nil {
				t.Fatalf("force-off: %v", err)
			}
			if _, err := a.Power(t.Context(), vm1, api.PowerOn, false); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) ||
				!strings.Contains(err.Error(), "spec.json") {
				t.Errorf("a start of a VM without its spec: %v, want FailedPrecondition saying why", err)
			}
			if err := a.Delete(t.Context(), vm1, false); err != nil {
				t.Fatalf("delete: %v", err)
			}
			requireNothingLeft(t, a, b, vm1)
		})
	}
}
