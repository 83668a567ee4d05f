package device

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestDiskPrepareAcceptsOnlyTheStoreForALinkedClone: a disk backed by an
// image of the store passes only as the linked clone of a store image;
// the store image is not handed to QEMU (it stays the agent's); any
// other backing file outside the VM's directory is still refused.
func TestDiskPrepareAcceptsOnlyTheStoreForALinkedClone(t *testing.T) {
	vmDir, imagesDir, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	golden := filepath.Join(imagesDir, "golden.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", golden, "64M")
	clone := filepath.Join(vmDir, "disk0.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", golden, clone, "64M")
	var handed []string
	h := &Host{VMID: vmID, VMDir: vmDir, ImagesDir: imagesDir, QEMUImg: "qemu-img",
		HandToQEMU: func(p ...string) error { handed = append(handed, p...); return nil }}
	prep := func(disk vmspec.Disk) error {
		d, err := New(vmspec.NewDevice("disk0", disk))
		if err != nil {
			t.Fatal(err)
		}
		return d.Prepare(context.Background(), h)
	}
	linked := vmspec.Disk{Path: clone, Format: "qcow2", SizeBytes: 64 << 20, Image: "golden", Clone: api.CloneLinked}
	if err := prep(linked); err != nil || !slices.Equal(handed, []string{clone}) {
		t.Fatalf("a linked clone of a store image: %v, handed %v (want only the clone)", err, handed)
	}
	if err := prep(vmspec.Disk{Path: clone, Format: "qcow2", SizeBytes: 64 << 20}); err == nil {
		t.Error("a disk backed by a store image without naming it passed")
	}
	if err := prep(vmspec.Disk{Path: clone, Format: "qcow2", SizeBytes: 64 << 20, Image: "golden", Clone: api.CloneFull}); err == nil {
		t.Error("a full copy backed by a store image passed")
	}
	foreign := filepath.Join(elsewhere, "golden.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", foreign, "64M")
	other := filepath.Join(vmDir, "disk1.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", foreign, other, "64M")
	if err := prep(vmspec.Disk{Path: other, Format: "qcow2", SizeBytes: 64 << 20, Image: "golden", Clone: api.CloneLinked}); err == nil {
		t.Error("a linked clone backed by a file outside the store passed")
	}
	// A link in the store leading out of it is refused too.
	if err := os.Remove(golden); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(foreign, golden); err != nil {
		t.Fatal(err)
	}
	if err := prep(linked); err == nil {
		t.Error("a store image that links out of the store passed")
	}
}
