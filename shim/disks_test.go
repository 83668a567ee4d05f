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
	"github.com/infinibay/infinivirt/pkg/errdefs"
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
