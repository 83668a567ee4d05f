package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// TestNotRespondingVM stops a running VM's QEMU, then its shim across an
// agent restart: the view says which one does not answer while the VM
// still reads running, the restarted agent answers while the shim is
// stopped, and both answer again once continued, in the same QEMU.
func TestNotRespondingVM(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "stalled")
	running := b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	qemuPID := strconv.Itoa(running.QEMUPID)

	b.stop(t, qemuPID)
	stalled := b.waitResponding(t, vm.ID, "qemu")
	if stalled.Status != api.StatusRunning || stalled.NotResponding.Error == "" {
		t.Errorf("a stopped QEMU's VM: %s, %+v", stalled.Status, stalled.NotResponding)
	}
	b.run(t, "kill", "-CONT", qemuPID)
	b.waitResponding(t, vm.ID, "")

	shimPID := b.unitProperty(t, vm.ID, "MainPID")
	b.stop(t, shimPID)
	// Readiness waits for no shim: the restart returns and the API answers
	// while this one is stopped.
	b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	hung := b.waitResponding(t, vm.ID, "shim")
	if hung.Status != api.StatusRunning || hung.QEMUPID != running.QEMUPID {
		t.Errorf("a stopped shim's VM: %s, qemu pid %d (was %d)", hung.Status, hung.QEMUPID, running.QEMUPID)
	}
	b.run(t, "kill", "-CONT", shimPID)
	if again := b.waitResponding(t, vm.ID, ""); again.QEMUPID != running.QEMUPID {
		t.Errorf("QEMU pid %d after the stops, was %d", again.QEMUPID, running.QEMUPID)
	}
}

// stop sends SIGSTOP to pid, and SIGCONT when the test ends however it ends.
func (b *bed) stop(t *testing.T, pid string) {
	t.Helper()
	b.run(t, "kill", "-STOP", pid)
	t.Cleanup(func() { _, _ = b.try("kill", "-CONT", pid) })
}

// waitResponding waits until the API shows the VM not responding in
// component, or responding when component is empty.
func (b *bed) waitResponding(t *testing.T, id, component string) api.VM {
	t.Helper()
	var vm api.VM
	b.eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if vm, err = b.client.Get(ctx, id); err != nil {
			return err
		}
		switch {
		case vm.Responding == nil:
			return fmt.Errorf("no responding field yet")
		case component == "" && (!*vm.Responding || vm.NotResponding != nil):
			return fmt.Errorf("not responding: %+v", vm.NotResponding)
		case component != "" && (vm.NotResponding == nil || vm.NotResponding.Component != component):
			return fmt.Errorf("responding %v, %+v; want its %s not responding", *vm.Responding, vm.NotResponding, component)
		}
		return nil
	})
	return vm
}
