package shim

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// diskShim is a shim on a bare, running QEMU with two reserved hot-plug
// ports and, with extra, more devices; its VM's directory is a temporary one.
func diskShim(t *testing.T, ctx context.Context, extra ...string) (*Shim, vmspec.Layout) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	const id = "44444444-4444-4444-8444-444444444444"
	l := vmspec.Layout{StateDir: t.TempDir()}
	args := []string{
		"-device", `{"driver":"pcie-root-port","id":"hotplug-0","bus":"pcie.0","chassis":1}`,
		"-device", `{"driver":"pcie-root-port","id":"hotplug-1","bus":"pcie.0","chassis":2}`,
	}
	c, p := bareQEMU(t, ctx, append(args, extra...)...)
	s := New(Config{VMID: id, Layout: l})
	s.qmp, s.qemu = c, p
	s.spec = &vmspec.Spec{ID: id, CPUs: 1}
	s.status.Status = api.StatusRunning
	if out, err := exec.CommandContext(ctx, "mkdir", "-p", l.VMDir(id)).CombinedOutput(); err != nil {
		t.Fatalf("mkdir: %v: %s", err, out)
	}
	return s, l
}

func newDiskImage(t *testing.T, ctx context.Context, l vmspec.Layout, id, name string) api.Device {
	t.Helper()
	p := l.DiskImagePath(id, name, qemuimg.FormatQCOW2)
	if err := (&qemuimg.Tool{}).Create(ctx, p, qemuimg.FormatQCOW2, 16<<20); err != nil {
		t.Fatal(err)
	}
	return vmspec.NewDevice(name, vmspec.Disk{Path: p, Format: qemuimg.FormatQCOW2, SizeBytes: 16 << 20})
}

// blockNodes are the node names QEMU holds.
func blockNodes(t *testing.T, ctx context.Context, s *Shim) []string {
	t.Helper()
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := s.qmp.Execute(ctx, "query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.NodeName)
	}
	return names
}

// On real QEMU: a disk goes on the first free port and is listed with its
// image; a device_add that QEMU refuses leaves no block node; with every
// port taken the next disk is refused by name; a disk grows and never
// shrinks live.
func TestHotplugDisksOnRealQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A device already holds the id clash: its device_add must fail.
	s, l := diskShim(t, ctx, "-device", `{"driver":"pvpanic","id":"clash"}`)
	id := s.cfg.VMID

	if _, err := s.addDisk(ctx, shimapi.DiskAddRequest{Device: newDiskImage(t, ctx, l, id, "disk1")}); err != nil {
		t.Fatal(err)
	}
	disks, err := s.queryDisks(ctx, shimapi.DisksRequest{})
	if err != nil || len(disks.Disks) != 1 {
		t.Fatalf("disks %+v (%v)", disks, err)
	}
	if d := disks.Disks[0]; d.Name != "disk1" || d.Format != "qcow2" || d.VirtualSizeBytes != 16<<20 || d.AllocatedBytes == 0 || !d.Live {
		t.Fatalf("disk1 listed as %+v", d)
	}

	_, err = s.addDisk(ctx, shimapi.DiskAddRequest{Device: newDiskImage(t, ctx, l, id, "clash")})
	if errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "device_add") {
		t.Fatalf("add with a clashing id: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); slices.ContainsFunc(nodes, func(n string) bool { return strings.HasPrefix(n, "clash") }) {
		t.Fatalf("the failed hot-plug left block nodes: %v", nodes)
	}
	if len(s.devices) != 1 || len(s.spec.Devices) != 1 || s.spec.Devices[0].Name != "disk1" {
		t.Fatalf("the shim's devices after the failed hot-plug: %d, spec %+v", len(s.devices), s.spec.Devices)
	}

	if _, err := s.addDisk(ctx, shimapi.DiskAddRequest{Device: newDiskImage(t, ctx, l, id, "disk2")}); err != nil {
		t.Fatal(err)
	}
	_, err = s.addDisk(ctx, shimapi.DiskAddRequest{Device: newDiskImage(t, ctx, l, id, "disk3")})
	if errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "all 2 hot-plug ports") {
		t.Fatalf("add with every port taken: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); slices.ContainsFunc(nodes, func(n string) bool { return strings.HasPrefix(n, "disk3") }) {
		t.Fatalf("the refused hot-plug left block nodes: %v", nodes)
	}

	if _, err := s.resizeDisk(ctx, shimapi.DiskResizeRequest{Name: "disk2", SizeBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.resizeDisk(ctx, shimapi.DiskResizeRequest{Name: "disk2", SizeBytes: 8 << 20}); errdefs.As(err).Field != "sizeGB" {
		t.Fatalf("shrink live: %v", err)
	}
	if d := s.spec.Device("disk2"); d == nil || d.Disk.SizeBytes != 32<<20 {
		t.Fatalf("the shim's spec after the live grow: %+v", d)
	}
	info, err := (&qemuimg.Tool{}).Info(ctx, filepath.Join(l.VMDir(id), "disk2.qcow2"), qemuimg.FormatQCOW2, qemuimg.ForceShare())
	if err != nil || info.VirtualSize != 32<<20 {
		t.Fatalf("disk2 after the live grow: %+v (%v)", info, err)
	}
	if _, err := s.removeDisk(ctx, shimapi.DiskRemoveRequest{Name: "disk9"}); errdefs.As(err).Code != errdefs.CodeNotFound {
		t.Fatalf("remove a missing disk: %v", err)
	}

	// A guest that never releases the disk (this one has no guest at all):
	// the unplug gives up at its deadline and the disk stays as it was.
	_, err = s.removeDisk(ctx, shimapi.DiskRemoveRequest{Name: "disk1"})
	if errdefs.As(err).Code != errdefs.CodeDeadlineExceeded || !strings.Contains(err.Error(), "stays attached") {
		t.Fatalf("remove from a guest that keeps the disk: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); !slices.Contains(nodes, "disk1") || !slices.Contains(nodes, "disk1-file") || s.liveDevice("disk1") == nil {
		t.Fatalf("after the refused unplug: nodes %v, device kept %t", nodes, s.liveDevice("disk1") != nil)
	}
}

// On real QEMU: the first virtio-scsi disk plugs the controller into a
// free port (and a failed disk unplugs it again, or says it could not),
// later ones go onto it without a port, and each unplugs at once; a sata
// disk neither plugs nor unplugs and leaves nothing; a scsi disk grows.
func TestHotplugSCSIAndSATAOnRealQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, l := diskShim(t, ctx, "-device", `{"driver":"pvpanic","id":"clash"}`)
	id := s.cfg.VMID
	scsi := func(name string) api.Device {
		d := newDiskImage(t, ctx, l, id, name)
		d.Disk.Bus, d.Disk.Cache = api.DiskBusVirtioSCSI, api.DiskCacheWritethrough
		return d
	}
	controller := func() bool {
		_, err := s.qmp.QOMList(ctx, "/machine/peripheral/"+qemu.SCSIController)
		return err == nil
	}

	// The controller went in, the disk's device_add failed, and this QEMU
	// has no guest to release the controller: the error says both.
	_, err := s.addDisk(ctx, shimapi.DiskAddRequest{Device: scsi("clash")})
	if e := errdefs.As(err); e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "device_add refused") ||
		!strings.Contains(e.Message, "undoing the hot-plug") || !strings.Contains(e.Message, qemu.SCSIController) {
		t.Fatalf("a scsi disk whose device_add fails: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); slices.ContainsFunc(nodes, func(n string) bool { return strings.HasPrefix(n, "clash") }) {
		t.Fatalf("the failed hot-plug left block nodes: %v", nodes)
	}
	if !controller() {
		t.Fatal("no controller after the failed hot-plug; it was to stay, unreleased")
	}

	// The controller is there: the disks take no port.
	for _, name := range []string{"disk1", "disk2"} {
		if _, err := s.addDisk(ctx, shimapi.DiskAddRequest{Device: scsi(name)}); err != nil {
			t.Fatal(err)
		}
	}
	if port, err := s.freeHotplugPort(ctx); err != nil || port != qemu.HotplugPortID(1) {
		t.Fatalf("free port after two scsi disks: %q (%v), want hotplug-1", port, err)
	}
	disks, err := s.queryDisks(ctx, shimapi.DisksRequest{})
	if err != nil || len(disks.Disks) != 2 {
		t.Fatalf("disks %+v (%v)", disks, err)
	}
	for _, d := range disks.Disks {
		if d.Bus != api.DiskBusVirtioSCSI || d.Cache != api.DiskCacheWritethrough || d.Discard != api.DiskDiscardUnmap || !d.Live {
			t.Errorf("listed as %+v", d)
		}
	}
	if _, err := s.resizeDisk(ctx, shimapi.DiskResizeRequest{Name: "disk2", SizeBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.removeDisk(ctx, shimapi.DiskRemoveRequest{Name: "disk2"}); err != nil {
		t.Fatalf("a scsi disk unplugs without the guest's help: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); slices.Contains(nodes, "disk2") || slices.Contains(nodes, "disk2-file") || s.liveDevice("disk2") != nil || s.spec.Device("disk2") != nil {
		t.Fatalf("after the unplug: nodes %v", nodes)
	}

	sata := newDiskImage(t, ctx, l, id, "disk3")
	sata.Disk.Bus = api.DiskBusSATA
	if _, err := s.addDisk(ctx, shimapi.DiskAddRequest{Device: sata}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "AHCI") {
		t.Fatalf("hot-plug a sata disk: %v", err)
	}
	if nodes := blockNodes(t, ctx, s); slices.ContainsFunc(nodes, func(n string) bool { return strings.HasPrefix(n, "disk3") }) || s.spec.Device("disk3") != nil {
		t.Fatalf("the refused sata disk left nodes %v", nodes)
	}
	// One cold-plugged at start stays there.
	dev, err := device.New(sata)
	if err != nil {
		t.Fatal(err)
	}
	s.devices = append(s.devices, dev)
	if _, err := s.removeDisk(ctx, shimapi.DiskRemoveRequest{Name: "disk3"}); errdefs.As(err).Code != errdefs.CodeFailedPrecondition || !strings.Contains(err.Error(), "AHCI") {
		t.Fatalf("unplug a sata disk: %v", err)
	}
}
