package installs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

const vmID = "11111111-1111-4111-8111-111111111111"

// fakeVM is a VM whose install the shim has just recorded the end of.
type fakeVM struct {
	t        *testing.T
	spec     *vmspec.Spec
	view     api.VM
	unitErr  error // WaitUnitGone's answer
	appended []api.Event
	saves    int
}

func (v *fakeVM) ID() string                                        { return vmID }
func (v *fakeVM) View() api.VM                                      { return v.view }
func (v *fakeVM) Spec() *vmspec.Spec                                { return v.spec }
func (v *fakeVM) WaitUnitGone(context.Context, time.Duration) error { return v.unitErr }

func (v *fakeVM) AppendEvent(_ context.Context, e api.Event) error {
	v.appended = append(v.appended, e)
	return nil
}

// UpdateSpec changes a deep copy, as the agent does, so a failed change
// leaves the spec as it was.
func (v *fakeVM) UpdateSpec(change func(*vmspec.Spec) error) error {
	b, err := json.Marshal(v.spec)
	if err != nil {
		v.t.Fatal(err)
	}
	var ns vmspec.Spec
	if err := json.Unmarshal(b, &ns); err != nil {
		v.t.Fatal(err)
	}
	if err := change(&ns); err != nil {
		return err
	}
	v.spec = &ns
	v.saves++
	return nil
}

func testSettler(t *testing.T) (Settler, *[]string) {
	dir := t.TempDir()
	var settled []string
	return Settler{
		Layout:  vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")},
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Settled: func(id string) { settled = append(settled, id) },
	}, &settled
}

// installingVM is a Fedora VM whose installer ran for ten minutes and then
// ended as the shim recorded: status and reason.
func installingVM(t *testing.T, s Settler, st api.Status, reason api.Reason) *fakeVM {
	t.Helper()
	iso := filepath.Join(t.TempDir(), "fedora.iso")
	start := false
	spec, err := vmspec.FromCreateInput(api.CreateVMInput{
		Name: "inst", InternalName: vmID, OS: "fedora", CPUCores: 1, RAMGB: 1, DiskSizeGB: 1,
		NetworkBridge: "br0", GraphicProtocol: "vnc", GraphicPassword: "pw", GraphicPort: 5900, ISOPath: iso, Start: &start,
	}, vmspec.Defaults{Accel: "tcg", GraphicsListen: "127.0.0.1", Layout: s.Layout})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	spec.Install = &vmspec.Install{
		State: api.InstallRunning, OS: "fedora", AnswerISO: s.Layout.AnswerISO(vmID), BootOnce: vmspec.BootOnceISO,
		BootFromDiskAfter: true, TimeoutSec: 3600, StartedAt: began,
	}
	if err := os.MkdirAll(s.Layout.InstallDir(vmID), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec.Install.AnswerISO, []byte("answers"), 0o600); err != nil {
		t.Fatal(err)
	}
	view := spec.View()
	view.Status, view.Reason, view.UpdatedAt = st, reason, began.Add(10*time.Minute)
	return &fakeVM{t: t, spec: spec, view: view}
}

func mediaLeft(t *testing.T, s Settler) bool {
	_, err := os.Stat(s.Layout.InstallDir(vmID))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSettleDoneDetachesMedia(t *testing.T) {
	s, settled := testSettler(t)
	vm := installingVM(t, s, api.StatusOff, api.ReasonInstalled)
	in := s.Settle(t.Context(), vm)
	if in == nil || in.State != api.InstallDone || !in.BootFromDiskAfter {
		t.Fatalf("settled %+v", in)
	}
	if d := in.Duration(); d != 10*time.Minute {
		t.Errorf("the install took %s, want 10m", d)
	}
	if v := vm.spec.View(); v.ISOPath != "" || in.AnswerISO != "" || in.VirtioWinISO != "" {
		t.Errorf("media still attached: iso %q answer %q", v.ISOPath, in.AnswerISO)
	}
	if mediaLeft(t, s) {
		t.Error("the temporary media were not deleted")
	}
	if len(vm.appended) != 1 || vm.appended[0].Type != api.EventProgress {
		t.Errorf("recorded %+v, want one progress entry", vm.appended)
	}
	if len(*settled) != 1 {
		t.Errorf("told of %v settles", *settled)
	}
	// Settled once: a second look finds nothing to do.
	if again := s.Settle(t.Context(), vm); again != nil || vm.saves != 1 {
		t.Errorf("settled twice: %+v, %d saves", again, vm.saves)
	}
}

func TestSettleFailedKeepsMedia(t *testing.T) {
	for _, r := range []api.Reason{api.ReasonInstallTimeout, api.ReasonInstallResetLoop} {
		s, _ := testSettler(t)
		vm := installingVM(t, s, api.StatusError, r)
		iso := vm.spec.View().ISOPath
		in := s.Settle(t.Context(), vm)
		if in == nil || in.State != api.InstallFailed {
			t.Fatalf("%s: settled %+v", r, in)
		}
		if vm.spec.View().ISOPath != iso || in.AnswerISO == "" || !mediaLeft(t, s) {
			t.Errorf("%s: a failed install's media were detached or deleted", r)
		}
	}
}

// Nothing is settled while the VM's end is not recorded, or while the
// shim that recorded it still runs.
func TestSettleWaits(t *testing.T) {
	s, settled := testSettler(t)
	running := installingVM(t, s, api.StatusBuilding, api.ReasonInstalling)
	if in := s.Settle(t.Context(), running); in != nil {
		t.Errorf("settled a running install: %+v", in)
	}
	stillUp := installingVM(t, s, api.StatusOff, api.ReasonInstalled)
	stillUp.unitErr = errdefs.FailedPrecondition("unit still stopping")
	if in := s.Settle(t.Context(), stillUp); in != nil {
		t.Errorf("settled while the shim runs: %+v", in)
	}
	for _, vm := range []*fakeVM{running, stillUp} {
		if vm.saves != 0 || len(vm.appended) != 0 || !mediaLeft(t, s) {
			t.Errorf("changed something: %d saves, %d entries", vm.saves, len(vm.appended))
		}
	}
	if len(*settled) != 0 {
		t.Errorf("told of %v", *settled)
	}
	if !Unsettled(stillUp.view) || Unsettled(running.view) {
		t.Error("Unsettled judges the views wrong")
	}
}

// A new run of an unfinished install starts its clock; a run whose end was
// recorded is settled first, and an install that ended is not begun again.
func TestBeginRun(t *testing.T) {
	s, _ := testSettler(t)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cutShort := installingVM(t, s, api.StatusOff, api.ReasonUser) // powered off mid-install
	if err := s.BeginRun(t.Context(), cutShort, now); err != nil {
		t.Fatal(err)
	}
	if in := cutShort.spec.Install; in.State != api.InstallRunning || !in.StartedAt.Equal(now) {
		t.Errorf("a new run of an unfinished install: %+v", in)
	}
	for _, end := range []struct {
		st     api.Status
		reason api.Reason
		want   api.InstallState
	}{{api.StatusOff, api.ReasonInstalled, api.InstallDone}, {api.StatusError, api.ReasonInstallTimeout, api.InstallFailed}} {
		vm := installingVM(t, s, end.st, end.reason)
		if err := s.BeginRun(t.Context(), vm, now); err != nil {
			t.Fatal(err)
		}
		if in := vm.spec.Install; in.State != end.want || in.StartedAt.Equal(now) {
			t.Errorf("%s: begun again, or not settled: %+v", end.reason, in)
		}
	}
}

func TestEnded(t *testing.T) {
	if Ended([]api.Event{{Type: api.EventProgress, Reason: api.ReasonInstalled}, {Type: api.EventStatus, Status: api.StatusBuilding, Reason: api.ReasonInstalling}}) {
		t.Error("progress and installing are no end")
	}
	if !Ended([]api.Event{{Type: api.EventStatus, Status: api.StatusError, Reason: api.ReasonInstallResetLoop}}) {
		t.Error("a reset loop ends the install")
	}
}
