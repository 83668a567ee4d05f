package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// sourceImage writes a raw file of size bytes outside the state directory.
func sourceImage(t *testing.T, b *bed, size int) string {
	t.Helper()
	p := filepath.Join(b.dir, "golden.raw")
	if err := os.WriteFile(p, []byte(strings.Repeat("g", size)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitImage waits until the image is no longer importing and returns it.
func waitImage(t *testing.T, a *Agent, name string) api.Image {
	t.Helper()
	var img api.Image
	if !agenttest.WaitFor(waitLimit, func() bool {
		var err error
		img, err = a.Image(t.Context(), name)
		return err == nil && img.State != api.ImageImporting
	}) {
		t.Fatalf("image %s is still %+v", name, img)
	}
	return img
}

// An image is imported in the background, backs a linked clone and a full
// copy, cannot be deleted while the clone exists, and a stopped VM's disk
// becomes a new image, recorded in its log.
func TestImagesClonesAndCapture(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	cfg.QEMUImg = realQEMUImg(t)
	a, _ := b.start(cfg)
	ctx := t.Context()
	src := sourceImage(t, b, 4<<20)
	img, err := a.ImportImage(ctx, api.ImportImageRequest{Name: "golden", SourcePath: src}, false)
	if err != nil || img.State != api.ImageImporting {
		t.Fatalf("import: %+v, %v", img, err)
	}
	if img = waitImage(t, a, "golden"); img.State != api.ImageReady || img.VirtualSizeBytes != 4<<20 {
		t.Fatalf("imported %+v", img)
	}
	linked := createInput(vm1, false)
	linked.DiskImage = "golden"
	if _, err := a.Create(ctx, linked); err != nil {
		t.Fatal(err)
	}
	full := createInput(vm2, false)
	full.DiskImage, full.DiskClone = "golden", api.CloneFull
	if _, err := a.Create(ctx, full); err != nil {
		t.Fatal(err)
	}
	disks, err := a.Disks(ctx, vm1)
	if err != nil || len(disks.Disks[0].BackingChain) != 1 || disks.Disks[0].BackingChain[0].Path != a.imageStore().Path("golden") ||
		disks.Disks[0].Image != "golden" || disks.Disks[0].Clone != api.CloneLinked {
		t.Fatalf("the linked clone's disks %+v, %v", disks, err)
	}
	if disks, err = a.Disks(ctx, vm2); err != nil || len(disks.Disks[0].BackingChain) != 0 || disks.Disks[0].VirtualSizeBytes != 1<<30 {
		t.Fatalf("the full copy's disks %+v, %v", disks, err)
	}
	// A disk added to a VM that is off, from the image; refusals name their field.
	if _, err := a.AddDisk(ctx, vm2, api.AddDiskRequest{SizeGB: 0.0625, Image: "golden"}); err != nil {
		t.Fatal(err)
	}
	for field, req := range map[string]api.AddDiskRequest{
		"image":  {SizeGB: 0.0625, Image: "missing"},
		"clone":  {SizeGB: 0.0625, Image: "golden", Clone: "deep"},
		"sizeGB": {SizeGB: 0.001953125, Image: "golden"}, // 2 MiB < 4 MiB
	} {
		if _, err := a.AddDisk(ctx, vm2, req); !isInvalid(err, field) {
			t.Errorf("add %+v: %v, want InvalidArgument naming %s", req, err, field)
		}
	}
	if vm, _ := a.Get(vm2); len(vm.Devices) != 4 { // disk0, net0, balloon0, disk1
		t.Errorf("refused adds changed the devices: %+v", vm.Devices)
	}
	list, err := a.Images(ctx)
	if err != nil || len(list.Images) != 1 || len(list.Images[0].UsedBy) != 2 || list.Images[0].UsedBy[0].VMID != vm1 ||
		list.Images[0].UsedBy[1] != (api.ImageUser{VMID: vm2, VMName: "vm-2222", Disk: "disk1"}) {
		t.Fatalf("images %+v, %v; want golden used by %s's disk0 and %s's disk1", list, err, vm1, vm2)
	}
	if err := a.DeleteImage(ctx, "golden"); !hasCode(err, errdefs.CodeFailedPrecondition) || !strings.Contains(err.Error(), vm1) {
		t.Fatalf("delete while a clone exists: %v", err)
	}

	sealed, err := a.CaptureDiskImage(ctx, vm1, "disk0", "sealed", true)
	if err != nil || sealed.State != api.ImageReady || sealed.VirtualSizeBytes != 1<<30 {
		t.Fatalf("capture: %+v, %v", sealed, err)
	}
	if _, err := a.CaptureDiskImage(ctx, vm1, "disk0", "sealed", true); !hasCode(err, errdefs.CodeAlreadyExists) {
		t.Errorf("a second capture under the name: %v", err)
	}
	if _, err := a.CaptureDiskImage(ctx, vm1, "disk9", "other", true); !hasCode(err, errdefs.CodeNotFound) {
		t.Errorf("capture of a missing disk: %v", err)
	}
	if !agenttest.WaitFor(waitLimit, func() bool {
		for _, e := range b.store.Events(vm1) {
			if e.Type == api.EventProgress && strings.Contains(e.Message, "disk disk0 copied into image sealed") {
				return true
			}
		}
		return false
	}) {
		t.Error("the capture is not an event of the VM")
	}
	for _, id := range []string{vm1, vm2} {
		if err := a.Delete(ctx, id, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"golden", "sealed"} {
		if err := a.DeleteImage(ctx, name); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	}
}

// An import that qemu-img fails part-way is failed, says why, leaves
// nothing in the store, and its record goes with a delete.
func TestImageImportFailureLeavesNothing(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	host := realQEMUImg(t)
	cfg.QEMUImg = b.script("qemu-img-fails", `[ "$1" = convert ] && { printf '    (40.00/100%%)\r'; echo "convert: disk full" >&2; exit 1; }
exec `+host+` "$@"`)
	a, _ := b.start(cfg)
	ctx := t.Context()
	if _, err := a.ImportImage(ctx, api.ImportImageRequest{Name: "golden", SourcePath: sourceImage(t, b, 1<<20)}, true); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a failing convert: %v", err)
	}
	img, err := a.Image(ctx, "golden")
	if err != nil || img.State != api.ImageFailed || img.Progress != 40 || !strings.Contains(img.Error, "disk full") {
		t.Fatalf("after the failure: %+v, %v", img, err)
	}
	ents, err := os.ReadDir(b.layout.ImagesDir())
	if err != nil || len(ents) != 0 {
		t.Fatalf("the store after a failed import: %v, %v", ents, err)
	}
	if err := a.DeleteImage(ctx, "golden"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Image(ctx, "golden"); !hasCode(err, errdefs.CodeNotFound) {
		t.Errorf("a deleted failure: %v", err)
	}
}

func hasCode(err error, code errdefs.Code) bool {
	e := errdefs.As(err)
	return err != nil && e != nil && e.Code == code
}
