package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// diskCreateTimeout bounds qemu-img create; a thin image takes milliseconds.
const diskCreateTimeout = 60 * time.Second

// Create defines a VM and, unless asked not to, boots it. Either all of it
// happens or nothing is left behind: no directory, disk, unit or TAP.
func (a *Agent) Create(ctx context.Context, in api.CreateVMInput) (api.VM, error) {
	spec, err := vmspec.FromCreateInput(in, vmspec.Defaults{
		Accel: a.cfg.Accel, GraphicsListen: a.cfg.GraphicsListen, Layout: a.cfg.Layout,
	})
	if err != nil {
		return api.VM{}, err
	}
	if err := device.CheckRootBus(spec); err != nil {
		return api.VM{}, errdefs.Invalid("devices", "%s", errdefs.As(err).Message)
	}
	if err := a.checkFits(spec); err != nil {
		return api.VM{}, err
	}
	if in.Start == nil || *in.Start {
		// Refused before any file is made; startUnit checks again, holding
		// the memory, as other VMs may start meanwhile.
		if err := a.checkRoom(spec); err != nil {
			return api.VM{}, err
		}
	}
	if err := a.checkHost(ctx, in, spec); err != nil {
		return api.VM{}, err
	}
	if err := a.checkDiskImages(ctx, in, spec); err != nil {
		return api.VM{}, err
	}
	plan, err := a.planPlatform(in, spec)
	if err != nil {
		return api.VM{}, err
	}
	dept, err := a.net.CheckDepartment(in.DepartmentID)
	if err != nil {
		return api.VM{}, err
	}
	rec := newRecord(spec)
	// Nobody else knows the record yet, so its lock is free: take it
	// without a context, which (already done) could win the select.
	rec.op <- struct{}{}
	defer func() { <-rec.op }()
	if err := a.claimPCI(spec.ID, createPCIClaims(in, spec), func() error { return a.reserve(rec) }); err != nil {
		return api.VM{}, err
	}
	undo := []func(){func() { a.unreserve(rec) }}
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}

	dir := a.cfg.Layout.VMDir(spec.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		rollback()
		if errors.Is(err, os.ErrExist) {
			return api.VM{}, errdefs.AlreadyExists("internalName", "VM %s already exists on disk", spec.ID)
		}
		return api.VM{}, a.stateWriteError("create VM directory", err)
	}
	undo = append(undo, func() {
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn("leftover files of a failed create", logging.KeyVM, spec.ID, "ERROR", err.Error())
		}
	})
	// Durable before anything else is made: an agent killed from here to
	// the commit leaves a create the next start rolls back.
	if err := atomicfile.Write(a.cfg.Layout.CreatingMarker(spec.ID), nil, 0o600); err != nil {
		rollback()
		return api.VM{}, a.stateWriteError("mark the VM's create", err)
	}
	// Each disk's image, in the spec's order; a failure takes the ones
	// made before it with the directory.
	for i, d := range spec.Devices {
		if d.Type != api.DeviceDisk {
			continue
		}
		// The reserved record already shows the disk to a delete of its image.
		a.img.clone.Lock()
		err := a.makeDisk(ctx, d.Disk)
		a.img.clone.Unlock()
		if err != nil {
			rollback()
			if e := errdefs.As(err); e != nil && e.Code == errdefs.CodeNotFound && d.Disk.Image != "" {
				// Deleted since checkDiskImages saw it.
				return api.VM{}, errdefs.Invalid(vmspec.CreateInputField(in, fmt.Sprintf("devices[%d].disk.image", i)), "%s", e.Message)
			}
			return api.VM{}, a.stateWriteError("create disk "+d.Name, err)
		}
	}
	if err := a.preparePlatform(ctx, spec, plan); err != nil {
		rollback()
		return api.VM{}, err
	}
	if err := spec.Save(a.cfg.Layout.SpecFile(spec.ID)); err != nil {
		rollback()
		return api.VM{}, a.stateWriteError("save spec", err)
	}
	if err := a.net.JoinDepartment(spec.ID, dept.ID); err != nil {
		rollback()
		return api.VM{}, err
	}
	if err := a.appendEvent(ctx, rec, api.Event{Type: api.EventStatus, Status: api.StatusOff, Reason: api.ReasonCreated}); err != nil {
		rollback()
		return api.VM{}, a.stateWriteError("start event log", err)
	}
	if in.Start == nil || *in.Start {
		if err := a.startUnit(ctx, rec, api.ReasonUser); err != nil {
			undo = append(undo, func() {
				// The request may be gone; the unit must go all the same.
				if err := a.removeUnit(context.WithoutCancel(ctx), rec.id); err != nil {
					a.log.Warn("cannot remove the unit of a VM that failed to start", logging.KeyVM, rec.id, "ERROR", err.Error())
				}
			})
			rollback()
			return api.VM{}, err
		}
	}
	if err := os.Remove(a.cfg.Layout.CreatingMarker(spec.ID)); err != nil {
		undo = append(undo, func() { _ = a.removeUnit(context.WithoutCancel(ctx), rec.id) })
		rollback()
		return api.VM{}, errdefs.Internal("commit the VM's create: %v", err)
	}
	a.commit(rec)
	a.log.Info("VM created", logging.KeyVM, spec.ID, "NAME", spec.Name)
	return rec.view(), nil
}

// stateWriteError is the error of a write to the state directory: when its
// file system is full, ResourceExhausted saying so, as a retry can succeed
// once space is freed; otherwise Internal.
func (a *Agent) stateWriteError(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "No space left on device") { // qemu-img says it only in words
		return errdefs.Exhausted("", "%s: the file system of the state directory %s is full: %v", what, a.cfg.Layout.StateDir, err)
	}
	return errdefs.Internal("%s: %v", what, err)
}

// checkHost looks at the host for what the request names: the bridges, the
// files QEMU will read, the accelerator. Errors name the request's fields.
func (a *Agent) checkHost(ctx context.Context, in api.CreateVMInput, spec *vmspec.Spec) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	files := map[string]string{}
	for i, d := range spec.Devices {
		switch d.Type {
		case api.DeviceNIC:
			if err := a.cfg.Network.BridgeExists(ctx, d.NIC.Bridge); err != nil {
				return errdefs.Invalid(vmspec.CreateInputField(in, fmt.Sprintf("devices[%d].nic.bridge", i)), "%v", err)
			}
		case api.DeviceCDROM:
			if d.CDROM.Path == "" {
				continue
			}
			resolved, err := a.checkMedium(vmspec.CreateInputField(in, fmt.Sprintf("devices[%d].cdrom.path", i)), d.CDROM.Path)
			if err != nil {
				return err
			}
			d.CDROM.Path = resolved
		}
	}
	if b := spec.Boot; b != nil {
		files["boot.kernel"], files["boot.initrd"] = b.Kernel, b.Initrd
	}
	for field, p := range files {
		if p == "" {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return errdefs.Invalid(field, "%s: %v", p, errors.Unwrap(err))
		}
		if !st.Mode().IsRegular() {
			return errdefs.Invalid(field, "%s is not a regular file", p)
		}
	}
	if spec.Accel == "kvm" {
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return errdefs.Invalid("accel", "kvm was asked for but this host has no /dev/kvm")
		}
	}
	return nil
}

// reserve claims the VM's id and graphic port, allocating a port when the
// request left it at 0.
func (a *Agent) reserve(rec *record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.vms[rec.id]; ok {
		return errdefs.AlreadyExists("internalName", "VM %s already exists", rec.id)
	}
	d := &rec.spec.Display
	if d.Port == 0 {
		port, err := a.freePortLocked(d.Listen)
		if err != nil {
			return err
		}
		d.Port = port
	} else {
		if owner, ok := a.ports[d.Port]; ok {
			return errdefs.AlreadyExists("graphicPort", "port %d is already used by VM %s", d.Port, owner)
		}
		if !portFree(d.Listen, d.Port) {
			return errdefs.AlreadyExists("graphicPort", "port %d is already in use on %s", d.Port, d.Listen)
		}
	}
	a.vms[rec.id] = rec
	a.ports[d.Port] = rec.id
	return nil
}

func (a *Agent) unreserve(rec *record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.vms[rec.id] == rec {
		delete(a.vms, rec.id)
	}
	if port := rec.currentSpec().Display.Port; a.ports[port] == rec.id {
		delete(a.ports, port)
	}
	// A follower may still apply the VM's last entries: they go nowhere now.
	rec.setCommitted(false)
}

// freePortLocked finds the lowest display port no VM holds and nothing on
// the host listens on.
func (a *Agent) freePortLocked(listen string) (int, error) {
	for p := vncBasePort; p <= 65535; p++ {
		if _, taken := a.ports[p]; !taken && portFree(listen, p) {
			return p, nil
		}
	}
	return 0, errdefs.Unavailable("no free graphic port on %s", listen)
}

const vncBasePort = 5900

func portFree(listen string, port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(listen, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// Delete removes a VM that is off; with force it powers it off first.
func (a *Agent) Delete(ctx context.Context, id string, force bool) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	state, err := a.unitActiveState(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case !isActive(state):
	case state == "deactivating" && rec.currentStatus().Terminal():
		// The VM is off and its unit is finishing (the shim's cleanup):
		// nothing to refuse, only to wait out.
		if err := a.waitUnitGone(ctx, id, unitGoneWait); err != nil {
			return err
		}
	case !force:
		return errdefs.FailedPrecondition("VM %s is %s; power it off first, or delete with force", id, rec.currentStatus())
	default:
		// A forced delete is the user's forced power-off, then the delete:
		// the VM's history ends off/killed, not as a lost shim. Only a
		// shim that cannot do it gets its unit killed.
		if err := a.forceOff(ctx, rec); err != nil {
			a.log.Warn("forced power-off before a delete failed; killing the unit", logging.KeyVM, id, "ERROR", err.Error())
			if err := a.killUnit(ctx, id); err != nil {
				return err
			}
		}
	}
	// Files must not go from under a unit that still runs.
	if err := a.removeUnit(ctx, id); err != nil {
		return err
	}
	removeFiles, err := a.buryVMDir(id)
	if err != nil {
		return errdefs.Internal("delete VM directory: %v", err)
	}
	a.unreserve(rec)
	a.broker.publish([]api.Event{{VMID: id, Seq: rec.lastSeq() + 1, Time: time.Now().UTC(), Type: api.EventProgress, Message: "deleted"}})
	a.broker.closeVM(id)
	a.sync.MarkDeleted(id)
	removeFiles()
	a.log.Info("VM deleted", logging.KeyVM, id)
	return nil
}

// buryVMDir renames a VM's directory to a tombstone, so that a crash from
// here on leaves one the next start sweeps, never a half-deleted VM; the
// files go when removeFiles is called.
func (a *Agent) buryVMDir(id string) (removeFiles func(), err error) {
	tomb := filepath.Join(a.cfg.Layout.VMsDir(), ".deleting-"+id)
	if err := os.Rename(a.cfg.Layout.VMDir(id), tomb); err != nil {
		return nil, err
	}
	return func() {
		if err := os.RemoveAll(tomb); err != nil {
			a.log.Warn("leftover VM files", logging.KeyVM, id, "ERROR", err.Error())
		}
	}, nil
}

// killUnit kills the VM's unit and waits for it to stop. A unit that ended
// meanwhile (NotFound) is what it aims at.
func (a *Agent) killUnit(ctx context.Context, id string) error {
	if err := a.cfg.Units.Kill(ctx, id, syscall.SIGKILL); err != nil && !isNotFound(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.cfg.Units.Stop(ctx, id); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// removeUnit ends the VM's unit if it still runs and forgets it: a failed
// transient unit otherwise stays loaded until reset. A unit already gone
// (NotFound) is what it aims at.
func (a *Agent) removeUnit(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := a.cfg.Units.State(ctx, id)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if isActive(st.ActiveState) {
		if err := a.cfg.Units.Kill(ctx, id, syscall.SIGKILL); err != nil && !isNotFound(err) {
			return err
		}
		if err := a.cfg.Units.Stop(ctx, id); err != nil && !isNotFound(err) {
			return err
		}
	}
	if err := a.cfg.Units.ResetFailed(ctx, id); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}
