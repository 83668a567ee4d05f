package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Inside the test-bed host: where the tests keep the files they import.
const imageSources = "/var/lib/infinivirt-image-sources"

// storeDir is the agent's image store inside the test-bed host.
var storeDir = vmspec.DefaultLayout.ImagesDir()

func imageCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// makeSource writes a raw image of sizeMiB with dataMiB of random data at
// its start, for an import, and returns its path.
func (b *bed) makeSource(t testing.TB, name string, sizeMiB, dataMiB int) string {
	t.Helper()
	p := filepath.Join(imageSources, name)
	b.run(t, "sh", "-c", fmt.Sprintf("mkdir -p %s && truncate -s %dM %s && dd if=/dev/urandom of=%s bs=1M count=%d conv=notrunc status=none",
		imageSources, sizeMiB, p, p, dataMiB))
	t.Cleanup(func() { _, _ = b.try("rm", "-f", p) })
	return p
}

// importImage imports src as name without waiting, follows its progress
// until it is ready, and deletes it when the test ends.
func (b *bed) importImage(t testing.TB, name, src, format string) api.Image {
	t.Helper()
	ctx, cancel := imageCtx()
	defer cancel()
	img, err := b.client.ImportImage(ctx, api.ImportImageRequest{Name: name, SourcePath: src, Format: format}, false)
	if err != nil {
		t.Fatalf("import %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := imageCtx()
		defer cancel()
		if err := b.client.DeleteImage(ctx, name); err != nil && !isAPIError(err, errdefs.CodeNotFound, "") {
			t.Errorf("delete image %s: %v", name, err)
		}
	})
	if img.Name != name || img.State != api.ImageImporting || img.Source != src {
		t.Fatalf("import answered %+v, want %s importing from %s", img, name, src)
	}
	b.eventually(t, time.Minute, func() error {
		if img, err = b.client.Image(ctx, name); err != nil {
			return err
		}
		if img.State != api.ImageReady {
			return fmt.Errorf("image %s is %s (%.0f%%, %s)", name, img.State, img.Progress, img.Error)
		}
		return nil
	})
	return img
}

// storeFiles lists the image store's files, temporary ones included.
func (b *bed) storeFiles(t testing.TB) []string {
	t.Helper()
	return strings.Fields(b.run(t, "ls", "-A", storeDir))
}

// TestImagesLinkedClones: an image is imported with progress, three VMs
// are created as linked clones of it and boot, reading the image's data;
// each clone's own image is a few hundred KiB; the image cannot be deleted
// while they exist, and can once they are gone. A disk of a VM that is off
// becomes a new image, flattened.
func TestImagesLinkedClones(t *testing.T) {
	b := setup(t)
	src := b.makeSource(t, "golden.raw", 64, 4)
	img := b.importImage(t, "golden", src, "")
	if img.Format != "qcow2" || img.VirtualSizeBytes != 64<<20 || img.AllocatedBytes < 4<<20 || img.Progress != 100 || len(img.UsedBy) != 0 {
		t.Fatalf("imported %+v, want a 64 MiB qcow2 holding 4 MiB, unused", img)
	}
	if mode := b.run(t, "stat", "-c", "%a %U", filepath.Join(storeDir, "golden.qcow2")); mode != "644 root" {
		t.Errorf("store image mode and owner %q, want 644 root (QEMU's account reads it, only the agent writes)", mode)
	}
	want := b.run(t, "sh", "-c", "dd if="+src+" bs=1M count=4 status=none | md5sum | cut -d' ' -f1")

	ctx, cancel := imageCtx()
	defer cancel()
	var vms []api.VM
	for i := range 3 {
		in, _ := b.vmInput(fmt.Sprintf("clone%d", i))
		in.DiskImage = "golden"
		vm, err := b.client.Create(ctx, in)
		if err != nil {
			t.Fatalf("create clone %d: %v", i, err)
		}
		t.Cleanup(func() { b.deleteVM(vm.ID) })
		if d := vm.Devices[0].Disk; d.Image != "golden" || d.Clone != api.CloneLinked {
			t.Fatalf("clone %d's disk0 %+v, want a linked clone of golden", i, d)
		}
		vms = append(vms, vm)
	}
	for _, vm := range vms {
		b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
		out, rc := b.guestRun(t, vm.ID, "dd if=/dev/vda bs=1M count=4 2>/dev/null | md5sum")
		if rc != 0 || !strings.Contains(out, want) {
			t.Fatalf("%s reads its disk's first 4 MiB as %q (rc %d), want the image's %s", vm.Name, out, rc, want)
		}
		disks, err := b.client.Disks(ctx, vm.ID)
		if err != nil {
			t.Fatal(err)
		}
		d := disks.Disks[0]
		if len(d.BackingChain) != 1 || d.BackingChain[0].Path != filepath.Join(storeDir, "golden.qcow2") {
			t.Fatalf("%s's disk0 backing chain %+v, want the store's golden.qcow2", vm.Name, d.BackingChain)
		}
		alloc := b.run(t, "du", "-k", d.Path)
		var kib int
		if _, err := fmt.Sscan(alloc, &kib); err != nil || kib <= 0 || kib > 1024 {
			t.Fatalf("%s's own image takes %q KiB, want a few hundred", vm.Name, alloc)
		}
		t.Logf("%s: disk0 takes %d KiB over the 4 MiB image", vm.Name, kib)
	}

	img, err := b.client.Image(ctx, "golden")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.UsedBy) != 3 {
		t.Fatalf("golden used by %+v, want the three clones", img.UsedBy)
	}
	err = b.client.DeleteImage(ctx, "golden")
	if !isAPIError(err, errdefs.CodeFailedPrecondition, "") {
		t.Fatalf("delete of an image three disks are backed by: %v, want FailedPrecondition", err)
	}
	for _, vm := range vms {
		if !strings.Contains(err.Error(), vm.ID) {
			t.Errorf("the refusal %q does not name %s", err, vm.ID)
		}
	}
	if !slices.Contains(b.storeFiles(t), "golden.qcow2") {
		t.Fatal("a refused delete removed the image")
	}

	// A linked clone hot-plugged into a running VM: the guest reads the
	// image's data on its new disk.
	added, err := b.client.AddDisk(ctx, vms[1].ID, api.AddDiskRequest{Name: "data", SizeGB: 0.125, Image: "golden"})
	if err != nil {
		t.Fatalf("add a linked clone live: %v", err)
	}
	if !added.Live || len(added.BackingChain) != 1 || added.Image != "golden" || added.Clone != api.CloneLinked {
		t.Fatalf("added %+v, want a live disk backed by golden", added)
	}
	b.guestSees(t, vms[1].ID, "/sys/block/vdb", true)
	if out, rc := b.guestRun(t, vms[1].ID, "dd if=/dev/vdb bs=1M count=4 2>/dev/null | md5sum"); rc != 0 || !strings.Contains(out, want) {
		t.Fatalf("the hot-plugged clone reads %q (rc %d), want %s", out, rc, want)
	}
	if img, err := b.client.Image(ctx, "golden"); err != nil || len(img.UsedBy) != 4 {
		t.Fatalf("golden used by %+v (%v), want four disks", img.UsedBy, err)
	}

	// A disk of a running VM is not captured; of one that is off, it is,
	// flattened: the new image holds the data and has no backing file.
	if _, err := b.client.CaptureDiskImage(ctx, vms[0].ID, "disk0", "sealed", true); !isAPIError(err, errdefs.CodeFailedPrecondition, "") || !strings.Contains(err.Error(), "running") {
		t.Fatalf("capture of a running VM's disk: %v, want FailedPrecondition naming its state", err)
	}
	if _, err := b.client.Power(ctx, vms[0].ID, api.ForcePowerOff, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	sealed, err := b.client.CaptureDiskImage(ctx, vms[0].ID, "disk0", "sealed", true)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	t.Cleanup(func() { _ = b.client.DeleteImage(context.Background(), "sealed") })
	if sealed.State != api.ImageReady || sealed.VirtualSizeBytes != 1<<30 || len(sealed.UsedBy) != 0 {
		t.Fatalf("captured %+v, want a ready 1 GiB image", sealed)
	}
	info := b.run(t, "qemu-img", "info", "-U", "-f", "qcow2", filepath.Join(storeDir, "sealed.qcow2"))
	if strings.Contains(info, "backing file") {
		t.Fatalf("the captured image has a backing file:\n%s", info)
	}
	flat := b.run(t, "sh", "-c", "qemu-img convert -U -f qcow2 -O raw "+filepath.Join(storeDir, "sealed.qcow2")+" /tmp/sealed.raw"+
		" && dd if=/tmp/sealed.raw bs=1M count=4 status=none | md5sum | cut -d' ' -f1; rm -f /tmp/sealed.raw")
	if flat != want {
		t.Fatalf("the captured image's first 4 MiB hash to %s, want %s", flat, want)
	}

	for _, vm := range vms {
		b.deleteVM(vm.ID)
	}
	if err := b.client.DeleteImage(ctx, "golden"); err != nil {
		t.Fatalf("delete of an image no disk is backed by: %v", err)
	}
	if files := b.storeFiles(t); slices.Contains(files, "golden.qcow2") {
		t.Fatalf("store after the delete: %v", files)
	}
}

// TestImagesBadInput: refused imports and creates name their field and
// leave nothing behind, in the store or among the VMs.
func TestImagesBadInput(t *testing.T) {
	b := setup(t)
	src := b.makeSource(t, "bad.raw", 8, 1)
	b.run(t, "sh", "-c", fmt.Sprintf("qemu-img create -q -f qcow2 -F raw -b %s %s/overlay.qcow2 && mkdir -p %s/dir",
		src, imageSources, imageSources))
	t.Cleanup(func() { _, _ = b.try("rm", "-rf", imageSources+"/overlay.qcow2", imageSources+"/dir") })
	ctx, cancel := imageCtx()
	defer cancel()
	before := b.storeFiles(t)

	imports := []struct {
		req   api.ImportImageRequest
		field string
	}{
		{api.ImportImageRequest{Name: "a/b", SourcePath: src}, "name"},
		{api.ImportImageRequest{Name: "", SourcePath: src}, "name"},
		{api.ImportImageRequest{Name: "-o", SourcePath: src}, "name"},
		{api.ImportImageRequest{Name: "ok", SourcePath: "bad.raw"}, "sourcePath"},
		{api.ImportImageRequest{Name: "ok", SourcePath: imageSources + "/missing.raw"}, "sourcePath"},
		{api.ImportImageRequest{Name: "ok", SourcePath: imageSources + "/dir"}, "sourcePath"},
		{api.ImportImageRequest{Name: "ok", SourcePath: imageSources + "/overlay.qcow2"}, "sourcePath"},
		{api.ImportImageRequest{Name: "ok", SourcePath: src, Format: "qcow2"}, "sourcePath"},
		{api.ImportImageRequest{Name: "ok", SourcePath: src, Format: "vdi"}, "format"},
	}
	for _, c := range imports {
		if _, err := b.client.ImportImage(ctx, c.req, true); !isAPIError(err, errdefs.CodeInvalidArgument, c.field) {
			t.Errorf("import %+v: %v, want InvalidArgument naming %s", c.req, err, c.field)
		}
	}

	b.importImage(t, "small", src, "raw")
	if _, err := b.client.ImportImage(ctx, api.ImportImageRequest{Name: "small", SourcePath: src}, true); !isAPIError(err, errdefs.CodeAlreadyExists, "name") {
		t.Errorf("a second import of small: %v, want AlreadyExists", err)
	}
	inState := api.ImportImageRequest{Name: "again", SourcePath: filepath.Join(storeDir, "small.qcow2")}
	if _, err := b.client.ImportImage(ctx, inState, true); !isAPIError(err, errdefs.CodeInvalidArgument, "sourcePath") {
		t.Errorf("import from the state directory: %v, want InvalidArgument naming sourcePath", err)
	}
	vmsBefore := b.run(t, "ls", "-A", vmspec.DefaultLayout.VMsDir())
	creates := []struct {
		change func(*api.CreateVMInput)
		field  string
	}{
		{func(in *api.CreateVMInput) { in.DiskImage = "missing" }, "diskImage"},
		{func(in *api.CreateVMInput) { in.DiskImage = "../small" }, "diskImage"},
		{func(in *api.CreateVMInput) { in.DiskImage = filepath.Join(storeDir, "small.qcow2") }, "diskImage"},
		{func(in *api.CreateVMInput) { in.DiskImage = src }, "diskImage"},
		{func(in *api.CreateVMInput) { in.DiskImage, in.DiskClone = "small", "deep" }, "diskClone"},
		{func(in *api.CreateVMInput) { in.DiskClone = api.CloneLinked }, "diskClone"},
		{func(in *api.CreateVMInput) { in.DiskImage, in.DiskFormat = "small", "raw" }, "diskFormat"},
		{func(in *api.CreateVMInput) { in.DiskImage, in.DiskSizeGB = "small", 0.00390625 }, "diskSizeGB"}, // 4 MiB < 8 MiB
	}
	for i, c := range creates {
		in, _ := b.vmInput(fmt.Sprintf("badclone%d", i))
		c.change(&in)
		if vm, err := b.client.Create(ctx, in); !isAPIError(err, errdefs.CodeInvalidArgument, c.field) {
			if err == nil {
				b.deleteVM(vm.ID)
			}
			t.Errorf("create with diskImage %q, diskClone %q, diskFormat %q: %v, want InvalidArgument naming %s",
				in.DiskImage, in.DiskClone, in.DiskFormat, err, c.field)
		}
	}
	if after := b.run(t, "ls", "-A", vmspec.DefaultLayout.VMsDir()); after != vmsBefore {
		t.Errorf("VM directories after the refused creates: %q, before: %q", after, vmsBefore)
	}
	img, err := b.client.Image(ctx, "small")
	if err != nil || len(img.UsedBy) != 0 {
		t.Errorf("small after refused creates: %+v, %v", img, err)
	}
	if _, err := b.client.Image(ctx, "a/b"); !isAPIError(err, errdefs.CodeNotFound, "") && !isAPIError(err, errdefs.CodeInvalidArgument, "") {
		t.Errorf("get of a bad name: %v", err)
	}
	if err := b.client.DeleteImage(ctx, "missing"); !isAPIError(err, errdefs.CodeNotFound, "image") {
		t.Errorf("delete of a missing image: %v, want NotFound", err)
	}
	if err := b.client.DeleteImage(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	if after := b.storeFiles(t); !slices.Equal(after, before) {
		t.Errorf("store after the refused imports: %v, before: %v", after, before)
	}
}

// BenchmarkLinkedClones creates 50 VMs (not started) as linked clones of
// one image through the API: the whole create call per clone, and the
// bytes each clone's own image takes on the host.
func BenchmarkLinkedClones(b *testing.B) {
	const clones = 50
	bd := setup(b)
	bd.importImage(b, "bench-golden", bd.makeSource(b, "bench-golden.raw", 64, 16), "raw")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := false
	var callMs, diskBytes []float64
	for i := range clones {
		in, _ := bd.vmInput(fmt.Sprintf("bench-clone%d", i))
		in.DiskImage, in.Start = "bench-golden", &start
		began := time.Now()
		vm, err := bd.client.Create(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		callMs = append(callMs, ms(time.Since(began)))
		b.Cleanup(func() { bd.deleteVM(vm.ID) })
		disks, err := bd.client.Disks(ctx, vm.ID)
		if err != nil {
			b.Fatal(err)
		}
		diskBytes = append(diskBytes, float64(disks.Disks[0].AllocatedBytes))
	}
	b.ReportMetric(median(callMs), "create-ms/clone")
	b.ReportMetric(median(diskBytes), "disk-bytes/clone")
}
