package shim

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
	"github.com/infinibay/infinivirt/pkg/shimapi"
)

// changeMedium puts another ISO into a running VM's CD-ROM drive, or
// ejects its medium. The drive must be one of the spec's (an install's own
// media are not the client's to change). A change that fails part-way puts
// the old medium back. The shim's spec and devices follow the change, so
// that query-block, teardown and the next change agree with the spec the
// agent saves.
func (s *Shim) changeMedium(ctx context.Context, req shimapi.MediumRequest) (shimapi.Empty, error) {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	cur, idx := s.specCDROM(req.CDROM)
	if cur == nil {
		return shimapi.Empty{}, errdefs.NotFound("VM %s has no CD-ROM drive %q", s.cfg.VMID, req.CDROM)
	}
	if cur.Path() == req.Path {
		return shimapi.Empty{}, nil
	}
	if req.Path != "" && strings.HasPrefix(req.Path, s.cfg.Layout.VMDir(s.cfg.VMID)+"/") {
		// Preparing it would hand the VM's own file to QEMU's account.
		return shimapi.Empty{}, errdefs.Invalid("isoPath", "%s lies in the VM's own directory; media live elsewhere", req.Path)
	}
	next := cur.WithMedium(req.Path)
	if err := next.Prepare(ctx, s.deviceHost()); err != nil {
		return shimapi.Empty{}, errdefs.Invalid("isoPath", "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	if err := s.swapMedium(ctx, cur, next); err != nil {
		back, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
		defer cancel()
		if rerr := s.restoreMedium(back, cur); rerr != nil {
			return shimapi.Empty{}, errdefs.Internal("%s: change the medium: %v; and putting %s back failed: %v",
				req.CDROM, err, mediumName(cur.Path()), rerr)
		}
		return shimapi.Empty{}, qmpFailed(fmt.Errorf("%s: change the medium (the old one is back): %w", req.CDROM, err))
	}
	s.mu.Lock()
	s.devices[idx] = next
	s.spec.Device(req.CDROM).CDROM.Path = req.Path
	s.mu.Unlock()
	switch {
	case req.Path == "":
		s.progress("%s: medium %s ejected", req.CDROM, cur.Path())
	case cur.Path() == "":
		s.progress("%s: medium %s inserted", req.CDROM, req.Path)
	default:
		s.progress("%s: medium changed from %s to %s", req.CDROM, cur.Path(), req.Path)
	}
	return shimapi.Empty{}, nil
}

// specCDROM is the running drive the spec names name, and its index in
// the shim's devices; nil when the spec has no such CD-ROM drive.
func (s *Shim) specCDROM(name string) (*device.CDROM, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.spec.Device(name); d == nil || d.Type != api.DeviceCDROM || d.CDROM == nil {
		return nil, -1
	}
	for i, d := range s.devices {
		if cd, ok := d.(*device.CDROM); ok && cd.Name() == name {
			return cd, i
		}
	}
	return nil, -1
}

// swapMedium takes cur's medium out and puts next's in.
func (s *Shim) swapMedium(ctx context.Context, cur, next *device.CDROM) error {
	if err := s.runQMP(ctx, cur.RemoveMedium()); err != nil {
		return err
	}
	return s.runQMP(ctx, next.InsertMedium())
}

// restoreMedium brings a drive whose change failed back to cur, from
// whatever state the failure left: its tray opened, a medium (old, new or
// none) in it, nodes of either name present. What is not there to remove
// is no failure.
func (s *Shim) restoreMedium(ctx context.Context, cur *device.CDROM) error {
	var errs []error
	for _, c := range cur.ClearMedium() {
		if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.runQMP(ctx, cur.InsertMedium()); err != nil {
		return errors.Join(append(errs, err)...)
	}
	return nil
}

// runQMP sends cmds in order and stops at the first that fails.
func (s *Shim) runQMP(ctx context.Context, cmds []device.Command) error {
	for _, c := range cmds {
		if err := s.qmp.Execute(ctx, c.Execute, c.Arguments, nil); err != nil {
			return fmt.Errorf("%s: %w", c.Execute, err)
		}
	}
	return nil
}

// onTrayMoved reports a drive's tray opening or closing: the guest's
// eject, or a medium change's own open and close.
func (s *Shim) onTrayMoved(ev qmp.Event) {
	var d struct {
		Device   string `json:"device"`
		ID       string `json:"id"`
		TrayOpen bool   `json:"tray-open"`
	}
	if err := ev.DecodeData(&d); err != nil {
		s.log.Warn("undecodable QMP event", "EVENT", ev.Name, "ERROR", err.Error())
		return
	}
	name := qdevName(d.ID)
	if name == "" {
		name = d.Device
	}
	state := "closed"
	if d.TrayOpen {
		state = "open"
	}
	s.record(api.Event{Type: api.EventGuest, Time: ev.Time, Message: fmt.Sprintf("%s %s tray %s", ev.Name, name, state)})
}

// qdevName is a device's id from QEMU's name for it: its id, or its QOM
// path "/machine/peripheral/<id>/...".
func qdevName(qdev string) string {
	if rest, ok := strings.CutPrefix(qdev, "/machine/peripheral/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	return qdev
}

// mediumName is an ISO's path for a message, or "no medium".
func mediumName(path string) string {
	if path == "" {
		return "no medium"
	}
	return path
}
