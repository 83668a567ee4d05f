package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestCreateAndBoot(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "boot")
	unit := vmspec.UnitName(vm.ID)

	if got := b.unitProperty(t, vm.ID, "ActiveState") + "/" + b.unitProperty(t, vm.ID, "SubState"); got != "active/running" {
		t.Fatalf("unit %s is %s, want active/running", unit, got)
	}
	status, _ := b.try("systemctl", "status", "--no-pager", unit)
	if !strings.Contains(status, "Status: \"running (booted)") {
		t.Fatalf("systemctl status does not show the VM's state:\n%s", status)
	}
	if journal, err := b.host.Journal(context.Background(), unit); err != nil || !strings.Contains(journal, "TESTGUEST READY") {
		t.Fatalf("the guest's ready line is not in the unit's journal (err %v)", err)
	}
	got := b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	if got.QEMUPID == 0 {
		t.Fatal("API shows no QEMU pid for a running VM")
	}
	if pid := b.unitProperty(t, vm.ID, "MainPID"); pid == strconv.Itoa(got.QEMUPID) {
		t.Fatal("QEMU is the unit's main process; the shim should be")
	}
	row := b.waitDB(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	if row.GraphicPort != got.GraphicPort || row.RAMMiB != 128 || row.Bridge != bridgeName {
		t.Fatalf("PostgreSQL inventory %+v does not match the VM %+v", row, got)
	}
	devs, err := b.db.Devices(context.Background(), vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) == 0 || len(devs) != len(got.Devices) {
		t.Fatalf("PostgreSQL holds devices %+v, the VM has %+v", devs, got.Devices)
	}
	for i, d := range devs {
		if d.Name != got.Devices[i].Name || d.Type != got.Devices[i].Type {
			t.Errorf("PostgreSQL device %d is %s (%s), the VM's is %s (%s)", i, d.Name, d.Type, got.Devices[i].Name, got.Devices[i].Type)
		}
	}
	// One journal field finds the VM's lines across the agent and its shim.
	ids := b.run(t, "sh", "-c", "journalctl --no-pager -o cat --output-fields=SYSLOG_IDENTIFIER VM_ID="+vm.ID+" | sort -u")
	if !strings.Contains(ids, "infinivirt-agent") || !strings.Contains(ids, "infinivirt-shim") {
		t.Errorf("journalctl VM_ID=%s finds lines from %q, want both the agent and the shim", vm.ID, ids)
	}
	for _, prop := range []string{"Slice=infinivirt.slice", "Type=notify", "KillMode=mixed", "DevicePolicy=closed"} {
		kv := strings.SplitN(prop, "=", 2)
		if v := b.unitProperty(t, vm.ID, kv[0]); v != kv[1] {
			t.Errorf("unit %s=%s, want %s", kv[0], v, kv[1])
		}
	}
}

func TestPowerOperations(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "power")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	power := func(op api.PowerOp) api.VM {
		t.Helper()
		v, err := b.client.Power(ctx, vm.ID, op, true, guestTimeout)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return v
	}

	if v := power(api.Suspend); v.Status != api.StatusSuspended {
		t.Fatalf("after suspend: %s", v.Status)
	}
	st, err := b.shim(vm.ID).Status(ctx)
	if err != nil || st.QMPStatus != "paused" {
		t.Fatalf("QMP says %q (err %v), want paused", st.QMPStatus, err)
	}
	b.waitDB(t, vm.ID, api.StatusSuspended, api.ReasonUser)

	if v := power(api.Resume); v.Status != api.StatusRunning {
		t.Fatalf("after resume: %s", v.Status)
	}
	if st, _ := b.shim(vm.ID).Status(ctx); st.QMPStatus != "running" {
		t.Fatalf("QMP says %q after resume", st.QMPStatus)
	}

	power(api.Reset)
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 2)

	pid := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	if v := power(api.PowerOff); v.Status != api.StatusOff || v.Reason != api.ReasonUser {
		t.Fatalf("after powerOff: %s (%s) %q", v.Status, v.Reason, v.Message)
	}
	// A waited power-off returns once the unit has finished, so the
	// shim's console is gone: the unit's journal kept the guest's lines.
	if journal, err := b.host.Journal(context.Background(), vmspec.UnitName(vm.ID)); err != nil || !strings.Contains(journal, "TESTGUEST: powerbutton") {
		t.Fatalf("the guest never saw the power button (journal: %v)", err)
	}
	b.waitDB(t, vm.ID, api.StatusOff, api.ReasonUser)
	b.eventually(t, time.Minute, func() error {
		if state := b.unitProperty(t, vm.ID, "ActiveState"); state != "inactive" {
			return errorf("unit is %s after a clean power-off, want inactive", state)
		}
		return nil
	})
	if _, err := b.try("kill", "-0", strconv.Itoa(pid)); err == nil {
		t.Fatalf("QEMU %d still runs after power-off", pid)
	}

	if v := power(api.PowerOn); v.Status != api.StatusRunning {
		t.Fatalf("after powerOn: %s", v.Status)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)

	before := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	if v := power(api.Restart); v.Status != api.StatusRunning || v.Reason != api.ReasonRestarted {
		t.Fatalf("after restart: %s (%s) %q", v.Status, v.Reason, v.Message)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST: powerbutton", 1)
	b.waitDB(t, vm.ID, api.StatusRunning, api.ReasonRestarted)
	if after := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID; after != before {
		t.Errorf("restart changed the QEMU pid %d → %d; it resets the guest in the same QEMU", before, after)
	}

	if v := power(api.ForcePowerOff); v.Status != api.StatusOff || v.Reason != api.ReasonKilled {
		t.Fatalf("after forcePowerOff: %s (%s)", v.Status, v.Reason)
	}
	b.waitDB(t, vm.ID, api.StatusOff, api.ReasonKilled)

	if _, err := b.client.Power(ctx, vm.ID, api.Suspend, false, 0); !isAPIError(err, errdefs.CodeFailedPrecondition, "") {
		t.Fatalf("suspend of an off VM: %v, want FailedPrecondition", err)
	}
}

func TestCrashIsDetectedAndNothingRestarts(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "crash")
	pid := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	b.run(t, "kill", "-9", strconv.Itoa(pid))

	row := b.waitDB(t, vm.ID, api.StatusError, api.ReasonCrashed)
	if !strings.Contains(row.Message, "SIGKILL") {
		t.Fatalf("the crash message %q does not name the signal", row.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	evs, err := b.db.Events(ctx, vm.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Signal != "SIGKILL" || last.Status != api.StatusError {
		t.Fatalf("last event %+v does not record SIGKILL", last)
	}
	b.eventually(t, time.Minute, func() error {
		if state := b.unitProperty(t, vm.ID, "ActiveState"); state != "failed" {
			return errorf("unit is %s, want failed", state)
		}
		return nil
	})
	if _, err := b.try("ip", "link", "show", netdev.TapName(vm.ID, netdev.PrimaryNIC)); err == nil {
		t.Fatal("the TAP survived the crash")
	}
	if _, err := b.try("test", "-e", vmspec.DefaultLayout.RuntimeDir(vm.ID)); err == nil {
		t.Fatal("the runtime directory survived the crash")
	}
	// Nothing restarts unless asked: the unit stays failed and the VM in error.
	time.Sleep(3 * time.Second)
	if state := b.unitProperty(t, vm.ID, "ActiveState"); state != "failed" {
		t.Fatalf("unit became %s after the crash; nothing should restart it", state)
	}
	if v, _ := b.client.Get(ctx, vm.ID); v.Status != api.StatusError {
		t.Fatalf("VM is %s after the crash", v.Status)
	}
}

func TestAgentRestartTouchesNoVM(t *testing.T) {
	b := setup(t)
	vms := []api.VM{b.createVM(t, "keep-a"), b.createVM(t, "keep-b"), b.createVM(t, "stop-c")}
	pids := map[string]int{}
	for _, vm := range vms {
		pids[vm.ID] = b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	}
	b.run(t, "systemctl", "kill", "--signal=SIGKILL", "infinivirt-agent.service")
	b.eventually(t, time.Minute, func() error {
		if s, _ := b.try("systemctl", "is-active", "infinivirt-agent.service"); s == "active" {
			return errorf("agent still active")
		}
		return nil
	})

	// While the agent is down, power one guest off through its shim.
	stopped := vms[2]
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if _, err := b.shim(stopped.ID).Power(ctx, api.PowerOff); err != nil {
		t.Fatalf("power off through the shim: %v", err)
	}
	b.eventually(t, guestTimeout, func() error {
		if s := b.unitProperty(t, stopped.ID, "ActiveState"); s != "inactive" {
			return errorf("unit is %s", s)
		}
		return nil
	})

	b.run(t, "systemctl", "start", "infinivirt-agent.service")
	for _, vm := range vms[:2] {
		got := b.waitStatus(t, vm.ID, api.StatusRunning, "")
		if got.QEMUPID != pids[vm.ID] {
			t.Fatalf("VM %s: QEMU pid %d → %d across an agent restart", vm.Name, pids[vm.ID], got.QEMUPID)
		}
		if _, err := b.try("kill", "-0", strconv.Itoa(pids[vm.ID])); err != nil {
			t.Fatalf("QEMU %d of %s is gone", pids[vm.ID], vm.Name)
		}
	}
	b.waitDB(t, stopped.ID, api.StatusOff, api.ReasonUser)
	b.waitStatus(t, stopped.ID, api.StatusOff, api.ReasonUser)

	// The agent follows the survivors again: a power-off reaches PostgreSQL.
	if _, err := b.client.Power(ctx, vms[0].ID, api.PowerOff, true, guestTimeout); err != nil {
		t.Fatal(err)
	}
	b.waitDB(t, vms[0].ID, api.StatusOff, api.ReasonUser)
}

// A forced delete of a running VM is the user's forced power-off, then the
// delete: the history ends off/killed, never as a crash or a lost shim.
func TestForcedDeleteIsAForcedPowerOff(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "force-delete")
	b.waitDB(t, vm.ID, api.StatusRunning, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := b.client.Delete(ctx, vm.ID, true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	var last api.Event
	b.eventually(t, time.Minute, func() error {
		row, err := b.db.GetVM(ctx, vm.ID)
		if err != nil {
			return err
		}
		if row.DeletedAt == nil || !row.Status.Terminal() {
			return errorf("row %s (%s), deleted at %v: want it ended and deleted", row.Status, row.Reason, row.DeletedAt)
		}
		events, err := b.db.Events(ctx, vm.ID, 0, 0)
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.IsStatus() {
				last = e
			}
		}
		return nil
	})
	if last.Status != api.StatusOff || last.Reason != api.ReasonKilled {
		t.Fatalf("last recorded state before the delete: %s (%s) %q, want off (killed)", last.Status, last.Reason, last.Message)
	}
}

// A waited forced power-off returns once the unit has finished, so a plain
// delete right after it succeeds.
func TestDeleteRightAfterWaitedPowerOff(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "off-then-delete")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, op := range []api.PowerOp{api.ForcePowerOff, api.PowerOn, api.ForcePowerOff} {
		if _, err := b.client.Power(ctx, vm.ID, op, true, guestTimeout); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if op == api.PowerOn {
			continue
		}
		if state := b.unitProperty(t, vm.ID, "ActiveState"); state == "active" || state == "deactivating" {
			t.Fatalf("after a waited %s the unit is still %s", op, state)
		}
	}
	if err := b.client.Delete(ctx, vm.ID, false); err != nil {
		t.Fatalf("delete right after a waited forcePowerOff: %v", err)
	}
}

// An event log emptied under a running VM, then an agent restart: the API
// reads the VM as the live shim has it, the log says it again, and suspend
// and resume work.
func TestEmptiedEventLogOfARunningVM(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "emptied-log")
	b.run(t, "truncate", "-s", "0", vmspec.DefaultLayout.EventsFile(vm.ID))
	b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	if v := b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted); v.QEMUPID == 0 {
		t.Error("the VM reads running without QEMU's pid")
	}
	if log := b.run(t, "cat", vmspec.DefaultLayout.EventsFile(vm.ID)); !strings.Contains(log, "restated") {
		t.Errorf("the log was not repaired:\n%s", log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	for _, op := range []api.PowerOp{api.Suspend, api.Resume} {
		if _, err := b.client.Power(ctx, vm.ID, op, true, time.Minute); err != nil {
			t.Fatalf("%s after the repair: %v", op, err)
		}
	}
}

// The agent killed at several points of a create, then the same create
// retried: the VM is either made whole by the retry, or was committed
// before the kill and is there; never wedged, unlisted but "already exists".
func TestAgentKilledDuringCreate(t *testing.T) {
	b := setup(t)
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		in, _ := b.vmInput(fmt.Sprintf("killed-create-%d", delay.Milliseconds()))
		t.Cleanup(func() { b.deleteVM(in.InternalName) })
		ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
		first := make(chan error, 1)
		go func() { _, err := b.client.Create(ctx, in); first <- err }()
		time.Sleep(delay)
		b.run(t, "systemctl", "kill", "--signal=SIGKILL", "infinivirt-agent.service")
		firstErr := <-first
		t.Logf("killed %s into a create, which said: %v", delay, firstErr)
		// The bed turns the unit's restarts off: the test brings it back.
		b.run(t, "systemctl", "start", "infinivirt-agent.service")
		_, err := b.client.Create(ctx, in)
		switch {
		case err == nil:
		case errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}):
			if _, gerr := b.client.Get(ctx, in.InternalName); gerr != nil {
				t.Fatalf("killed %s into a create (which said %v): the retry says %v, yet the VM is not there: %v", delay, firstErr, err, gerr)
			}
		default:
			t.Fatalf("killed %s into a create (which said %v): the retry failed: %v", delay, firstErr, err)
		}
		v, err := b.client.Get(ctx, in.InternalName)
		if err != nil || v.Status != api.StatusRunning {
			t.Fatalf("killed %s into a create: the VM after the retry is %+v, %v", delay, v, err)
		}
		b.deleteVM(in.InternalName)
		cancel()
	}
}

// A running VM's spec.json truncated, then an agent restart: the agent
// gets the spec back from the VM's shim and rewrites the file, and the VM
// reads running and powers off as any other.
func TestTruncatedSpecOfARunningVM(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "truncated-spec")
	specFile := vmspec.DefaultLayout.SpecFile(vm.ID)
	b.run(t, "truncate", "-s", "100", specFile)
	b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	if v := b.waitStatus(t, vm.ID, api.StatusRunning, ""); v.Name != vm.Name {
		t.Errorf("the recovered VM is named %q, want %q", v.Name, vm.Name)
	}
	if _, err := vmspec.Load(b.host.Path(specFile)); err != nil {
		t.Errorf("spec.json was not rewritten: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, guestTimeout); err != nil {
		t.Fatalf("power-off after the recovery: %v", err)
	}
}

// Resets in a burst, 30 of them as fast as the API takes them: the log
// holds the first and one entry counting the rest, not one per reset, and
// the VM runs on.
func TestResetBurstIsCoalesced(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "reset-burst")
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	const resets = 30
	began := time.Now()
	for range resets {
		if _, err := b.client.Power(ctx, vm.ID, api.Reset, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (entries, summaries int) {
		for _, e := range b.vmEvents(t, vm.ID) {
			switch {
			case e.Type == api.EventGuest && e.Message == "RESET":
				entries++
			case e.Type == api.EventGuest && strings.HasPrefix(e.Message, "RESET repeated "):
				summaries++
			}
		}
		return
	}
	t.Logf("%d resets sent in %s", resets, time.Since(began))
	b.eventually(t, time.Minute, func() error {
		if entries, summaries := count(); summaries == 0 {
			return fmt.Errorf("%d RESET entries and no count of repeats yet", entries)
		}
		return nil
	})
	entries, summaries := count()
	t.Logf("%d RESET entries and %d counts of repeats, %s after the first reset", entries, summaries, time.Since(began))
	if entries+summaries > 6 {
		t.Errorf("%d resets wrote %d RESET entries and %d counts", resets, entries, summaries)
	}
	t.Logf("counted; %s", time.Since(began))
	b.waitStatus(t, vm.ID, api.StatusRunning, "")
}
