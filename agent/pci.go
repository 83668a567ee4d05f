package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// A VM's host PCI devices are attached and detached while it is off. Every
// claim of host PCI devices, an attach or a create's gpuPciAddress, is
// checked against the host and made the VM's under one lock (pciMu), so
// that two VMs never take one IOMMU group at once.

// pciClaim is one device a request passes through.
type pciClaim struct {
	field string      // the request's field that names it
	pci   *vmspec.PCI // its companion functions are filled in
}

// claimPCI finds each claimed device's companions (the other functions of
// its slot in its IOMMU group, unless claimed as devices of their own),
// checks that the devices can be passed through to VM vmID, and runs
// claim, which makes them the VM's, before any other claim can look.
func (a *Agent) claimPCI(vmID string, claims []pciClaim, claim func() error) error {
	if len(claims) == 0 {
		return claim()
	}
	a.pciMu.Lock()
	defer a.pciMu.Unlock()
	inv, err := hostpci.List(a.cfg.Sysfs, a.ids(a.pciIDs))
	if err != nil {
		return errdefs.Internal("read the host's PCI devices: %v", err)
	}
	own := map[string]bool{}
	for _, c := range claims {
		own[c.pci.Host] = true
	}
	var want []hostpci.Want
	for _, c := range claims {
		c.pci.Functions = nil
		for _, d := range inv.Companions(c.pci.Host) {
			if !own[d.Address] {
				c.pci.Functions = append(c.pci.Functions, d.Address)
			}
		}
		for _, addr := range append([]string{c.pci.Host}, c.pci.Functions...) {
			want = append(want, hostpci.Want{Field: c.field, Address: addr, Managed: c.pci.Managed})
		}
	}
	held := map[string]string{}
	for addr, u := range a.pciHolders() {
		if u.VMID != vmID {
			held[addr] = fmt.Sprintf("VM %s (%s) as %s", u.VMID, u.VMName, u.Device)
		}
	}
	if err := inv.CheckPassthrough(want, held); err != nil {
		return err
	}
	return claim()
}

// createPCIClaims are the PCI devices of a create's spec, each with the
// request's field that names it (gpuPciAddress).
func createPCIClaims(in api.CreateVMInput, spec *vmspec.Spec) []pciClaim {
	var claims []pciClaim
	for i, d := range spec.Devices {
		if d.Type != api.DevicePCI || d.PCI == nil {
			continue
		}
		field := fmt.Sprintf("devices[%d].pci.host", i)
		if f := vmspec.CreateInputField(in, field); f != "" {
			field = f
		}
		claims = append(claims, pciClaim{field: field, pci: d.PCI})
	}
	return claims
}

// AttachPCI passes the host PCI device at req.Address, with its
// companions, through to a VM that is off; the VM's next start has it.
func (a *Agent) AttachPCI(ctx context.Context, id string, req api.AttachPCIRequest) (api.Device, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Device{}, err
	}
	addr := vmspec.NormalPCIAddress(req.Address)
	if !hostpci.ValidAddress(addr) {
		return api.Device{}, errdefs.Invalid("address", "must be a PCI address like 0000:01:00.0 or 01:00.0, got %q", req.Address)
	}
	var rom string
	if req.ROMFile != "" {
		if rom, err = a.checkROM("romFile", req.ROMFile); err != nil {
			return api.Device{}, err
		}
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Device{}, err
	}
	defer unlock()
	if err := refusePCIWhileRunning(rec, "attached"); err != nil {
		return api.Device{}, err
	}
	spec := rec.currentSpec()
	name := req.Name
	if name == "" {
		name = spec.FreeName(api.DevicePCI)
	} else if spec.Device(name) != nil {
		return api.Device{}, errdefs.AlreadyExists("name", "the VM already has a device %q", name)
	}
	dev := vmspec.NewDevice(name, vmspec.PCI{Host: addr, Managed: req.Managed, ROMFile: rom})
	change := func(s *vmspec.Spec) error { s.AddDevice(dev); return nil }
	// The new entry is the spec's last: its fields are the request's.
	last := fmt.Sprintf("devices[%d]", len(spec.Devices))
	rename := func(f string) string {
		switch {
		case f == last+".name":
			return "name"
		case f == last+".pci.romFile":
			return "romFile"
		case strings.HasPrefix(f, last+".pci."):
			return "address"
		}
		return f
	}
	err = a.claimPCI(rec.id, []pciClaim{{field: "address", pci: dev.PCI}}, func() error {
		if err := a.checkSpecChange(rec, change); err != nil {
			return errdefs.RenameField(err, rename)
		}
		return a.updateSpec(rec, change)
	})
	if err != nil {
		return api.Device{}, err
	}
	msg := fmt.Sprintf("%s: PCI device %s attached", name, strings.Join(pciAddresses(dev.PCI), " with "))
	if req.Managed {
		msg += ", managed"
	}
	if err := a.recordChange(ctx, rec, msg, func(s *vmspec.Spec) error { s.RemoveDevice(name); return nil }); err != nil {
		return api.Device{}, err
	}
	a.sync.Resync(rec.id)
	a.log.Info("PCI device attached", logging.KeyVM, rec.id, "DEVICE", name, "PCI", strings.Join(pciAddresses(dev.PCI), ","), "MANAGED", req.Managed)
	return dev, nil
}

// DetachPCI takes the PCI device dev, with its companions, off a VM that
// is off; the host device is free for other VMs at once.
func (a *Agent) DetachPCI(ctx context.Context, id, dev string) error {
	rec, err := a.get(id)
	if err != nil {
		return err
	}
	if _, err := pciOf(rec.currentSpec(), dev); err != nil {
		return err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return err
	}
	defer unlock()
	if err := refusePCIWhileRunning(rec, "detached"); err != nil {
		return err
	}
	p, err := pciOf(rec.currentSpec(), dev)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s: PCI device %s detached", dev, strings.Join(pciAddresses(p), " with "))
	if err := a.removeStoppedDevice(ctx, rec, dev, msg); err != nil {
		return err
	}
	a.log.Info("PCI device detached", logging.KeyVM, rec.id, "DEVICE", dev, "PCI", strings.Join(pciAddresses(p), ","))
	return nil
}

func pciAddresses(p *vmspec.PCI) []string { return append([]string{p.Host}, p.Functions...) }

// pciOf is the VM's PCI device named dev; any other name is NotFound of
// the path's dev, naming the PCI devices there are.
func pciOf(s *vmspec.Spec, dev string) (*vmspec.PCI, error) {
	d := s.Device(dev)
	if d == nil || d.Type != api.DevicePCI || d.PCI == nil {
		names := []string{}
		for _, p := range s.PCIs() {
			names = append(names, p.Name)
		}
		e := errdefs.NotFound("VM %s has no PCI device %q; its PCI devices are %v", s.ID, dev, names)
		e.Field = "dev"
		return nil, e
	}
	return d.PCI, nil
}

func refusePCIWhileRunning(rec *record, what string) error {
	if st := rec.currentStatus(); !st.Terminal() {
		return errdefs.FailedPrecondition("VM %s is %s: PCI devices are %s only while it is off; power it off first", rec.id, st, what)
	}
	return nil
}

// checkROM resolves the ROM file a request names, by its name in the ROM
// directory or by its path, and accepts it only inside that directory,
// links followed, as a regular file QEMU's account can read. The spec
// keeps the resolved path, so a link changed later cannot point QEMU
// elsewhere.
func (a *Agent) checkROM(field, p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(a.cfg.ROMDir, p)
	}
	return a.fileInDirs(field, p, "ROM", []string{a.cfg.ROMDir})
}
