package agent

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A VM's CD-ROM drives are added and removed only while it is off (q35's
// AHCI drives cannot be hot-plugged); their media change while it runs,
// through its shim, which records the change in the VM's log. While the
// VM is off the spec alone changes and the agent records the event.

// CDROMs lists a VM's CD-ROM drives, with what QEMU has in them while the
// VM runs.
func (a *Agent) CDROMs(ctx context.Context, id string) (api.CDROMs, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.CDROMs{}, err
	}
	return a.cdroms(ctx, rec)
}

func (a *Agent) cdroms(ctx context.Context, rec *record) (api.CDROMs, error) {
	spec := rec.currentSpec()
	out := api.CDROMs{CDROMs: []api.CDROM{}}
	for _, d := range spec.CDROMs() {
		out.CDROMs = append(out.CDROMs, api.CDROM{Name: d.Name, ISOPath: d.CDROM.Path, BootIndex: d.CDROM.BootIndex})
	}
	if rec.currentStatus().Terminal() {
		return out, nil
	}
	blk, err := a.queryBlock(ctx, rec.id)
	if err != nil {
		return out, err
	}
	for i, cd := range out.CDROMs {
		if j := slices.IndexFunc(blk.Devices, func(b api.BlockDevice) bool { return b.Name == cd.Name }); j >= 0 {
			b := blk.Devices[j]
			out.CDROMs[i].Live = &api.CDROMLive{MediumInserted: b.MediumInserted, File: b.File, TrayOpen: b.TrayOpen}
		}
	}
	return out, nil
}

// cdrom is the drive named cd, as a change left it. The change is done
// whatever QEMU's view: a failure to read that leaves Live out, and is
// logged, rather than failing a change that happened.
func (a *Agent) cdrom(ctx context.Context, rec *record, cd string) api.CDROM {
	all, err := a.cdroms(ctx, rec)
	if err != nil {
		a.log.Warn("cannot read the running VM's CD-ROM drives after a change", logging.KeyVM, rec.id, "ERROR", err.Error())
	}
	for _, c := range all.CDROMs {
		if c.Name == cd {
			return c
		}
	}
	return api.CDROM{Name: cd}
}

// InsertMedium puts the ISO at isoPath into the VM's CD-ROM drive cd, in
// place of what it held: at once in a running guest, which sees a media
// change, and in the spec. The same ISO again changes nothing.
func (a *Agent) InsertMedium(ctx context.Context, id, cd, isoPath string) (api.CDROM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.CDROM{}, err
	}
	resolved, err := a.checkMedium("isoPath", isoPath)
	if err != nil {
		return api.CDROM{}, err
	}
	return a.setMedium(ctx, rec, cd, resolved)
}

// EjectMedium empties the VM's CD-ROM drive cd, live while it runs. An
// empty drive stays as it is.
func (a *Agent) EjectMedium(ctx context.Context, id, cd string) (api.CDROM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.CDROM{}, err
	}
	return a.setMedium(ctx, rec, cd, "")
}

// setMedium is InsertMedium and EjectMedium: validate, lock, change the
// running guest's medium through its shim, persist the spec, and put the
// old medium back in the guest if persisting fails.
func (a *Agent) setMedium(ctx context.Context, rec *record, cd, path string) (api.CDROM, error) {
	if _, err := cdromOf(rec.currentSpec(), cd); err != nil {
		return api.CDROM{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.CDROM{}, err
	}
	defer unlock()
	d, err := cdromOf(rec.currentSpec(), cd)
	if err != nil {
		return api.CDROM{}, err
	}
	old := d.Path
	if old == path {
		return a.cdrom(ctx, rec, cd), nil
	}
	change := func(s *vmspec.Spec) error { s.Device(cd).CDROM.Path = path; return nil }
	if err := a.checkSpecChange(rec, change); err != nil {
		return api.CDROM{}, err
	}
	running := !rec.currentStatus().Terminal()
	if running {
		if err := a.changeMediumLive(ctx, rec.id, cd, path); err != nil {
			return api.CDROM{}, err
		}
	}
	if err := a.updateSpec(rec, change); err != nil {
		if running {
			if berr := a.changeMediumLive(context.WithoutCancel(ctx), rec.id, cd, old); berr != nil {
				return api.CDROM{}, errdefs.Internal("%v; and putting %s back into %s failed: %v", err, mediumName(old), cd, berr)
			}
		}
		return api.CDROM{}, err
	}
	if !running {
		msg := fmt.Sprintf("%s: medium %s ejected", cd, old)
		switch {
		case old == "":
			msg = fmt.Sprintf("%s: medium %s inserted", cd, path)
		case path != "":
			msg = fmt.Sprintf("%s: medium changed from %s to %s", cd, old, path)
		}
		if err := a.recordChange(ctx, rec, msg, func(s *vmspec.Spec) error { s.Device(cd).CDROM.Path = old; return nil }); err != nil {
			return api.CDROM{}, err
		}
	}
	a.sync.Resync(rec.id)
	a.log.Info("CD-ROM medium changed", logging.KeyVM, rec.id, "CDROM", cd, "FROM", old, "TO", path, "LIVE", running)
	return a.cdrom(ctx, rec, cd), nil
}

// AddCDROM adds a CD-ROM drive, empty or with an ISO, to a VM that is off.
func (a *Agent) AddCDROM(ctx context.Context, id string, req api.AddCDROMRequest) (api.CDROM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.CDROM{}, err
	}
	if req.ISOPath != "" {
		if req.ISOPath, err = a.checkMedium("isoPath", req.ISOPath); err != nil {
			return api.CDROM{}, err
		}
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.CDROM{}, err
	}
	defer unlock()
	if err := a.refuseWhileRunning(rec, "added"); err != nil {
		return api.CDROM{}, err
	}
	spec := rec.currentSpec()
	name := req.Name
	if name == "" {
		name = spec.FreeName(api.DeviceCDROM)
	} else if spec.Device(name) != nil {
		return api.CDROM{}, errdefs.AlreadyExists("name", "the VM already has a device %q", name)
	}
	if err := ahciFull(spec); err != nil {
		return api.CDROM{}, err
	}
	change := func(s *vmspec.Spec) error {
		s.AddDevice(vmspec.NewDevice(name, vmspec.CDROM{Path: req.ISOPath, BootIndex: req.BootIndex}))
		return nil
	}
	// The new entry is the spec's last: its fields are the request's.
	last := fmt.Sprintf("devices[%d]", len(spec.Devices))
	if err := a.checkSpecChange(rec, change); err != nil {
		return api.CDROM{}, errdefs.RenameField(err, func(f string) string {
			switch f {
			case last + ".name":
				return "name"
			case last + ".cdrom.bootIndex":
				return "bootIndex"
			case last + ".cdrom.path":
				return "isoPath"
			}
			return f
		})
	}
	if err := a.updateSpec(rec, change); err != nil {
		return api.CDROM{}, err
	}
	msg := fmt.Sprintf("%s: CD-ROM drive added, empty", name)
	if req.ISOPath != "" {
		msg = fmt.Sprintf("%s: CD-ROM drive added with %s", name, req.ISOPath)
	}
	if err := a.recordChange(ctx, rec, msg, func(s *vmspec.Spec) error { s.RemoveDevice(name); return nil }); err != nil {
		return api.CDROM{}, err
	}
	a.sync.Resync(rec.id)
	a.log.Info("CD-ROM drive added", logging.KeyVM, rec.id, "CDROM", name, "ISO", req.ISOPath)
	return a.cdrom(ctx, rec, name), nil
}

// RemoveCDROM removes a CD-ROM drive, with its medium, from a VM that is
// off. The ISO itself stays where it is.
func (a *Agent) RemoveCDROM(ctx context.Context, id, cd string) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	if _, err := cdromOf(rec.currentSpec(), cd); err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.refuseWhileRunning(rec, "removed"); err != nil {
		return err
	}
	d, err := cdromOf(rec.currentSpec(), cd)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s: CD-ROM drive removed", cd)
	if d.Path != "" {
		msg = fmt.Sprintf("%s: CD-ROM drive removed with %s", cd, d.Path)
	}
	if err := a.removeStoppedDevice(ctx, rec, cd, msg); err != nil {
		return err
	}
	a.log.Info("CD-ROM drive removed", logging.KeyVM, rec.id, "CDROM", cd)
	return nil
}

// removeStoppedDevice removes the device named name from the spec of a VM
// that is off, and records msg in its log; if it cannot, the device goes
// back where it was in the device order.
func (a *Agent) removeStoppedDevice(ctx context.Context, rec *record, name, msg string) error {
	spec := rec.currentSpec()
	i := slices.IndexFunc(spec.Devices, func(d vmspec.Device) bool { return d.Name == name })
	removed := spec.Devices[i]
	change := func(s *vmspec.Spec) error { s.RemoveDevice(name); return nil }
	if err := a.checkSpecChange(rec, change); err != nil {
		return err
	}
	if err := a.updateSpec(rec, change); err != nil {
		return err
	}
	undo := func(s *vmspec.Spec) error { s.Devices = slices.Insert(s.Devices, i, removed); return nil }
	if err := a.recordChange(ctx, rec, msg, undo); err != nil {
		return err
	}
	a.sync.Resync(rec.id)
	return nil
}

// cdromOf is the VM's CD-ROM drive named cd; any other name is NotFound
// of the path's cd, naming the drives there are.
func cdromOf(s *vmspec.Spec, cd string) (*vmspec.CDROM, error) {
	d := s.Device(cd)
	if d == nil || d.Type != api.DeviceCDROM || d.CDROM == nil {
		var names []string
		for _, c := range s.CDROMs() {
			names = append(names, c.Name)
		}
		e := errdefs.NotFound("VM %s has no CD-ROM drive %q; its CD-ROM drives are %v", s.ID, cd, names)
		e.Field = "cd"
		return nil, e
	}
	return d.CDROM, nil
}

// refuseWhileRunning refuses a drive change on a VM that is not off.
func (a *Agent) refuseWhileRunning(rec *record, what string) error {
	if st := rec.currentStatus(); !st.Terminal() {
		return errdefs.FailedPrecondition("VM %s is %s: CD-ROM drives are %s only while it is off (q35's AHCI drives cannot be hot-plugged); its media change live",
			rec.id, st, what)
	}
	return nil
}

// checkSpecChange refuses a change the spec's own rules would not accept,
// before anything changes: an unfinished install, for one, keeps its OS
// ISO in the first drive.
func (a *Agent) checkSpecChange(rec *record, change func(*vmspec.Spec) error) error {
	ns := rec.currentSpec().Clone()
	if err := change(ns); err != nil {
		return err
	}
	if err := ns.Validate(); err != nil {
		if e := errdefs.As(err); e != nil && e.Code == errdefs.CodeInvalidArgument && strings.HasPrefix(e.Field, "devices[") {
			return err
		}
		return errdefs.FailedPrecondition("the VM's spec would not hold: %v", err)
	}
	return nil
}

// recordChange records msg in the log of a VM that is off; if it cannot,
// undo takes the spec change back, so that nothing changed unrecorded.
func (a *Agent) recordChange(ctx context.Context, rec *record, msg string, undo func(*vmspec.Spec) error) error {
	err := a.appendEvent(ctx, rec, api.Event{Type: api.EventProgress, Message: msg})
	if err == nil {
		return nil
	}
	if uerr := a.updateSpec(rec, undo); uerr != nil {
		return errdefs.Internal("record the change: %v; and undoing it failed: %v", err, uerr)
	}
	if e := errdefs.As(err); e != nil {
		return err
	}
	return errdefs.Internal("record the change: %v", err)
}

// changeMediumLive asks the VM's shim to change a drive's medium.
func (a *Agent) changeMediumLive(ctx context.Context, id, cd, path string) error {
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	sh := a.shim(id)
	defer sh.Close()
	_, err := shimclient.Call(ctx, sh, shimapi.RouteMedium, shimapi.MediumRequest{CDROM: cd, Path: path})
	return err
}

func (a *Agent) queryBlock(ctx context.Context, id string) (api.BlockDevices, error) {
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	sh := a.shim(id)
	defer sh.Close()
	return shimclient.Call(ctx, sh, shimapi.RouteBlock, shimapi.BlockRequest{})
}

// ahciFull is the error of a VM whose AHCI ports are all taken.
func ahciFull(s *vmspec.Spec) error {
	if s.AHCIPortsUsed() < vmspec.MaxCDROMs {
		return nil
	}
	install := ""
	if s.Install.Active() {
		install = ", beside an unfinished install's own media"
	}
	return errdefs.FailedPrecondition("VM %s: the AHCI controller's %d ports are all taken by its %d CD-ROM drives and %d sata disks%s",
		s.ID, vmspec.MaxCDROMs, len(s.CDROMs()), s.SATADisks(), install)
}

// checkQEMUReads refuses a file that QEMU's account could not read by its
// mode bits.
func (a *Agent) checkQEMUReads(field, p string) error {
	if a.cfg.QEMUUser == "" {
		return nil
	}
	u, err := user.Lookup(a.cfg.QEMUUser)
	if err != nil {
		return nil // the shim reports a missing account when it starts QEMU
	}
	if !readableBy(p, u) {
		return errdefs.Invalid(field, "%s is not readable by %s, the account QEMU runs as: make it (and its directories' search bit) readable to that account", p, u.Username)
	}
	return nil
}

// readableBy reports whether u may read the file at p by its mode bits:
// every directory above it searchable, the file readable, each by the
// owner, group or other bits that apply to u. ACLs are not looked at.
func readableBy(p string, u *user.User) bool {
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gids := map[uint64]bool{}
	if g, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
		gids[g] = true
	}
	if groups, err := u.GroupIds(); err == nil {
		for _, s := range groups {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				gids[g] = true
			}
		}
	}
	allowed := func(path string, bit os.FileMode) bool {
		fi, err := os.Stat(path)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		mode := fi.Mode().Perm()
		switch {
		case uint64(st.Uid) == uid:
			return mode&(bit<<6) != 0
		case gids[uint64(st.Gid)]:
			return mode&(bit<<3) != 0
		}
		return mode&bit != 0
	}
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if !allowed(dir, 0o1) {
			return false
		}
		if dir == "/" {
			break
		}
	}
	return allowed(p, 0o4)
}

// mediumName is an ISO's path for a message, or "no medium".
func mediumName(path string) string {
	if path == "" {
		return "no medium"
	}
	return path
}
