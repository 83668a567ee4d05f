package agent

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// realQEMUImg is the host's qemu-img, for tests that read and resize images.
func realQEMUImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	return p
}

// vmFiles lists the VM's directory, to show what a request left behind.
func vmFiles(t *testing.T, b *bed, id string) []string {
	t.Helper()
	ents, err := os.ReadDir(b.layout.VMDir(id))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// diskBed is an agent on the fakes but for the real qemu-img (the bed's
// stand-in only creates), with VM vm1 created and off.
func diskBed(t *testing.T) (*bed, *Agent) {
	t.Helper()
	b := newBed(t)
	cfg := b.config()
	cfg.QEMUImg = realQEMUImg(t)
	a, _ := b.start(cfg)
	if _, err := a.Create(t.Context(), createInput(vm1, false)); err != nil {
		t.Fatal(err)
	}
	return b, a
}

func deviceNames(devs []api.Device) []string {
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	return names
}

// A VM that is off: a disk is added with a real image, grows, shrinks only
// with allowShrink, and goes with or without its image; every change is an
// event, and the database follows.
func TestDiskChangesOffline(t *testing.T) {
	b, a := diskBed(t)
	ctx := t.Context()
	d, err := a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625, BootOrder: 3})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "disk1" || d.VirtualSizeBytes != 64<<20 || d.Live || d.BootIndex != 3 || d.Path != b.layout.DiskImagePath(vm1, "disk1", "qcow2") {
		t.Fatalf("added %+v", d)
	}
	if !agenttest.WaitFor(waitLimit, func() bool {
		vm, ok := b.store.VM(vm1)
		return ok && slices.Contains(deviceNames(vm.Devices), "disk1")
	}) {
		t.Error("the new disk never reached the database")
	}
	if _, err := a.ResizeDisk(ctx, vm1, "disk1", api.ResizeDiskRequest{SizeGB: 0.03125}); !isInvalid(err, "sizeGB") {
		t.Errorf("shrink without allowShrink: %v", err)
	}
	if d, err = a.ResizeDisk(ctx, vm1, "disk1", api.ResizeDiskRequest{SizeGB: 0.125}); err != nil || d.VirtualSizeBytes != 128<<20 {
		t.Fatalf("grow: %+v (%v)", d, err)
	}
	if d, err = a.ResizeDisk(ctx, vm1, "disk1", api.ResizeDiskRequest{SizeGB: 0.03125, AllowShrink: true}); err != nil || d.VirtualSizeBytes != 32<<20 {
		t.Fatalf("shrink with allowShrink: %+v (%v)", d, err)
	}
	list, err := a.Disks(ctx, vm1)
	if err != nil || len(list.Disks) != 2 || list.Disks[0].Name != "disk0" || list.Disks[1].VirtualSizeBytes != 32<<20 {
		t.Fatalf("disks %+v (%v)", list, err)
	}
	if err := a.RemoveDisk(ctx, vm1, "disk1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); err != nil {
		t.Errorf("the image went without deleteImage: %v", err)
	}
	// The kept image holds its name: the next disk is disk2.
	if d, err = a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625}); err != nil || d.Name != "disk2" {
		t.Fatalf("add after a kept image: %+v (%v)", d, err)
	}
	if err := a.RemoveDisk(ctx, vm1, "disk2", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Errorf("the image stayed with deleteImage: %v", err)
	}
	var msgs []string
	for _, e := range b.store.Events(vm1) {
		if e.Type == api.EventProgress {
			msgs = append(msgs, e.Message)
		}
	}
	want := []string{"disk disk1 added", "resized from 64 to 128 MiB", "resized from 128 to 32 MiB", "disk disk1 removed (image kept)",
		"disk disk2 added", "disk disk2 removed (image deleted)"}
	if !agenttest.WaitFor(waitLimit, func() bool {
		msgs = msgs[:0]
		for _, e := range b.store.Events(vm1) {
			if e.Type == api.EventProgress {
				msgs = append(msgs, e.Message)
			}
		}
		return len(msgs) == len(want)
	}) {
		t.Fatalf("events %q, want %d", msgs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(msgs[i], w) {
			t.Errorf("event %d is %q, want it to say %q", i, msgs[i], w)
		}
	}
}

func isInvalid(err error, field string) bool {
	e := errdefs.As(err)
	return err != nil && e.Code == errdefs.CodeInvalidArgument && e.Field == field
}

// Refused requests name the field and change nothing: no image, no spec
// entry. A running VM's change that its shim refuses is undone too.
func TestDiskRefusalsChangeNothing(t *testing.T) {
	b, a := diskBed(t)
	ctx := t.Context()
	for _, req := range []api.AddDiskRequest{{Name: "data", SizeGB: 1}, {Name: "sata", SizeGB: 1, Bus: api.DiskBusSATA}} {
		if _, err := a.AddDisk(ctx, vm1, req); err != nil {
			t.Fatal(err)
		}
	}
	files, devs := vmFiles(t, b, vm1), deviceNames(a.mustGet(t, vm1).Devices)
	for _, tc := range []struct {
		name, field string
		code        errdefs.Code
		call        func() error
	}{
		{"relative name", "name", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{Name: "../x", SizeGB: 1})},
		{"upper-case name", "name", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{Name: "Disk1", SizeGB: 1})},
		{"taken name", "name", errdefs.CodeAlreadyExists, add(a, api.AddDiskRequest{Name: "net0", SizeGB: 1})},
		{"no size", "sizeGB", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{})},
		{"partial MiB", "sizeGB", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1e-9})},
		{"unknown bus", "bus", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1, Bus: "ide"})},
		{"unknown cache", "cache", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1, Cache: "write-back"})},
		{"unknown discard", "discard", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1, Discard: "on"})},
		{"boot order taken", "bootOrder", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1, BootOrder: 1})},
		{"boot order range", "bootOrder", errdefs.CodeInvalidArgument, add(a, api.AddDiskRequest{SizeGB: 1, BootOrder: 100})},
		{"remove a missing disk", "disk", errdefs.CodeNotFound, func() error { return a.RemoveDisk(ctx, vm1, "disk9", true) }},
		{"remove a NIC", "disk", errdefs.CodeNotFound, func() error { return a.RemoveDisk(ctx, vm1, "net0", true) }},
		{"resize a missing disk", "disk", errdefs.CodeNotFound, func() error {
			_, err := a.ResizeDisk(ctx, vm1, "disk9", api.ResizeDiskRequest{SizeGB: 2})
			return err
		}},
		{"shrink", "sizeGB", errdefs.CodeInvalidArgument, func() error {
			_, err := a.ResizeDisk(ctx, vm1, "disk0", api.ResizeDiskRequest{SizeGB: 0.5})
			return err
		}},
		{"missing VM", "", errdefs.CodeNotFound, func() error {
			_, err := a.AddDisk(ctx, vm2, api.AddDiskRequest{SizeGB: 1})
			return err
		}},
	} {
		err := tc.call()
		if e := errdefs.As(err); err == nil || e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	if f, d := vmFiles(t, b, vm1), deviceNames(a.mustGet(t, vm1).Devices); !slices.Equal(f, files) || !slices.Equal(d, devs) {
		t.Fatalf("refusals changed the VM: files %v → %v, devices %v → %v", files, f, devs, d)
	}

	// Running, on a shim that answers no disk verb: nothing changes.
	if _, err := a.Power(ctx, vm1, api.PowerOn, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 1}); errdefs.As(err).Code != errdefs.CodeUnavailable {
		t.Errorf("add on a shim that refuses: %v", err)
	}
	if err := a.RemoveDisk(ctx, vm1, "data", true); errdefs.As(err).Code != errdefs.CodeUnavailable {
		t.Errorf("remove on a shim that refuses: %v", err)
	}
	// AHCI cannot hot-plug: refused before the shim is asked.
	if _, err := a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 1, Bus: api.DiskBusSATA}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "AHCI") {
		t.Errorf("add a sata disk live: %v", err)
	}
	if err := a.RemoveDisk(ctx, vm1, "sata", true); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "AHCI") {
		t.Errorf("remove a sata disk live: %v", err)
	}
	if _, err := a.ResizeDisk(ctx, vm1, "disk0", api.ResizeDiskRequest{SizeGB: 0.5, AllowShrink: true}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition {
		t.Errorf("shrink of a running VM: %v", err)
	}
	if f, d := vmFiles(t, b, vm1), deviceNames(a.mustGet(t, vm1).Devices); !slices.Equal(f, files) || !slices.Equal(d, devs) {
		t.Fatalf("refused live changes changed the VM: files %v → %v, devices %v → %v", files, f, devs, d)
	}
}

// The VM's last disk stays whether it runs or not; a running VM keeps its
// system disk and its only boot device.
func TestDiskRemoveKeepsWhatTheVMNeeds(t *testing.T) {
	_, a := diskBed(t)
	ctx := t.Context()
	if err := a.RemoveDisk(ctx, vm1, "disk0", false); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "only disk") {
		t.Errorf("remove the last disk: %v", err)
	}
	for _, req := range []api.AddDiskRequest{{SizeGB: 1}, {SizeGB: 1, BootOrder: 3}} {
		if _, err := a.AddDisk(ctx, vm1, req); err != nil {
			t.Fatal(err)
		}
	}
	// Off, the boot disk may go: disk1 (not bootable) is the system disk
	// now, and disk2 the only device the VM boots from.
	if err := a.RemoveDisk(ctx, vm1, "disk0", false); err != nil {
		t.Fatalf("remove disk0 while off: %v", err)
	}
	if _, err := a.Power(ctx, vm1, api.PowerOn, true); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveDisk(ctx, vm1, "disk1", false); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "system disk") {
		t.Errorf("remove the running VM's system disk: %v", err)
	}
	if err := a.RemoveDisk(ctx, vm1, "disk2", false); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "only device") {
		t.Errorf("remove the running VM's only boot disk: %v", err)
	}
	if got := deviceNames(a.mustGet(t, vm1).Devices); !slices.Equal(got, []string{"net0", "balloon0", "disk1", "disk2"}) {
		t.Fatalf("devices %v after the refusals", got)
	}
}

func add(a *Agent, req api.AddDiskRequest) func() error {
	return func() error {
		_, err := a.AddDisk(context.Background(), vm1, req)
		return err
	}
}

func (a *Agent) mustGet(t *testing.T, id string) api.VM {
	t.Helper()
	v, err := a.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A stopped VM takes a disk on any bus, with its cache and discard modes,
// and lists them; the sata disks and the CD-ROM drives share the AHCI
// controller's six ports, and the one past them is refused leaving nothing.
func TestDiskBusesOffline(t *testing.T) {
	b, a := diskBed(t)
	ctx := t.Context()
	d, err := a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625, Bus: api.DiskBusVirtioSCSI, Cache: api.DiskCacheNone, Discard: api.DiskDiscardIgnore})
	if err != nil || d.Bus != api.DiskBusVirtioSCSI || d.Cache != api.DiskCacheNone || d.Discard != api.DiskDiscardIgnore {
		t.Fatalf("added %+v (%v)", d, err)
	}
	list, err := a.Disks(ctx, vm1)
	if err != nil || len(list.Disks) != 2 {
		t.Fatalf("disks %+v (%v)", list, err)
	}
	if d0 := list.Disks[0]; d0.Bus != api.DiskBusVirtioBlk || d0.Cache != api.DiskCacheWriteback || d0.Discard != api.DiskDiscardUnmap {
		t.Errorf("the system disk, with no modes of its own, is listed as %+v", d0)
	}
	if got := a.mustGet(t, vm1).Devices; got[len(got)-1].Disk.Bus != api.DiskBusVirtioSCSI {
		t.Errorf("the spec's new entry %+v", got[len(got)-1].Disk)
	}
	if _, err := a.AddCDROM(ctx, vm1, api.AddCDROMRequest{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < vmspec.MaxCDROMs; i++ {
		if _, err := a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625, Bus: api.DiskBusSATA}); err != nil {
			t.Fatalf("sata disk %d beside a CD-ROM drive: %v", i, err)
		}
	}
	files, devs := vmFiles(t, b, vm1), deviceNames(a.mustGet(t, vm1).Devices)
	_, err = a.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625, Bus: api.DiskBusSATA})
	if errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "AHCI") {
		t.Fatalf("a sata disk past the AHCI ports: %v", err)
	}
	if _, err := a.AddCDROM(ctx, vm1, api.AddCDROMRequest{}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "5 sata disks") {
		t.Fatalf("a CD-ROM drive past the AHCI ports: %v", err)
	}
	if f, d := vmFiles(t, b, vm1), deviceNames(a.mustGet(t, vm1).Devices); !slices.Equal(f, files) || !slices.Equal(d, devs) {
		t.Fatalf("refusals changed the VM: files %v → %v, devices %v → %v", files, f, devs, d)
	}
}
