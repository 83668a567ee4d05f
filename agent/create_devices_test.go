package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// withDevices is a create request with two disks and two CD-ROM drives in
// its devices list, beside disk0 and cd0 of the flat fields.
func withDevices(b *bed, id string) api.CreateVMInput {
	in := createInput(id, false)
	in.ISOPath = filepath.Join(b.dir, "os.iso")
	in.Devices = []api.Device{
		{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 64 << 20, BootIndex: 3}},
		{Name: "data", Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 32 << 20, Format: "raw"}},
		{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: filepath.Join(b.dir, "tools.iso")}},
		{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{}},
	}
	for _, iso := range []string{in.ISOPath, in.Devices[2].CDROM.Path} {
		if err := os.WriteFile(iso, []byte("iso"), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	return in
}

// One request makes every disk's image and every drive; the disks list
// reads the images qemu-img made.
func TestCreateWithDisksAndCDROMs(t *testing.T) {
	b := newBed(t)
	cfg := b.config()
	cfg.QEMUImg = realQEMUImg(t)
	a, _ := b.start(cfg)
	ctx := t.Context()
	vm, err := a.Create(ctx, withDevices(b, vm1))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(deviceNames(vm.Devices), " "); got != "disk0 cd0 net0 disk1 data cd1 cd2 balloon0" {
		t.Errorf("devices %s", got)
	}
	disks, err := a.Disks(ctx, vm1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks.Disks {
		got = append(got, fmt.Sprintf("%s %s %d %d", filepath.Base(d.Path), d.Format, d.VirtualSizeBytes, d.BootIndex))
	}
	if want := []string{"disk0.qcow2 qcow2 1073741824 1", "disk1.qcow2 qcow2 67108864 3", "data.raw raw 33554432 0"}; !slices.Equal(got, want) {
		t.Errorf("disks %q, want %q", got, want)
	}
	cds, err := a.CDROMs(ctx, vm1)
	if err != nil || len(cds.CDROMs) != 3 || cds.CDROMs[1].ISOPath != filepath.Join(b.dir, "tools.iso") || cds.CDROMs[2].ISOPath != "" {
		t.Errorf("CD-ROMs %+v (%v)", cds, err)
	}
}

// A create whose third disk's image cannot be made leaves nothing: the
// images made before it go with the VM's directory. Refused before any
// image is made: a store image that does not exist, more disks than the
// root bus takes.
func TestCreateWithDisksRollsBack(t *testing.T) {
	b := newBed(t)
	made := filepath.Join(b.dir, "made")
	// The bed's stand-in fails for the third disk, a raw one, and logs the
	// qcow2 images (written without qemu-img) made before it.
	failing := b.script("qemu-img-third-fails", `[ "$1" = create ] || exit 2
while [ $# -gt 2 ]; do shift; done
case "$1" in */data.raw) ls "$(dirname "$1")"/*.qcow2 >> `+made+`
	echo "qemu-img: $1: Could not create: No space left on device" >&2; exit 1;; esac
: > "$1"`)
	cfg := b.config()
	cfg.QEMUImg = failing
	a, _ := b.start(cfg)
	ctx := t.Context()
	in := withDevices(b, vm1)
	_, err := a.Create(ctx, in)
	if err == nil || !strings.Contains(err.Error(), "create disk data") || !strings.Contains(err.Error(), "No space left") {
		t.Fatalf("create: %v, want disk data's qemu-img error", err)
	}
	log, _ := os.ReadFile(made)
	if want := b.layout.DiskImagePath(vm1, "disk0", "qcow2") + "\n" + b.layout.DiskImagePath(vm1, "disk1", "qcow2") + "\n"; string(log) != want {
		t.Errorf("images made before the failure:\n%s\nwant:\n%s", log, want)
	}
	requireNothingLeft(t, a, b, vm1)

	// Refusals that come before any image: each names its field.
	for _, tc := range []struct {
		field  string
		mutate func(*api.CreateVMInput)
	}{
		{"devices[1].disk.image", func(in *api.CreateVMInput) { in.Devices[1].Disk.Image, in.Devices[1].Disk.Format = "missing", "qcow2" }},
		{"devices[2].cdrom.path", func(in *api.CreateVMInput) { in.Devices[2].CDROM.Path = filepath.Join(b.dir, "none.iso") }},
		{"devices[3].name", func(in *api.CreateVMInput) { in.Devices[3].Name = "data" }},
		{"devices[0].disk.bootIndex", func(in *api.CreateVMInput) { in.Devices[0].Disk.BootIndex = 2 }},
		{"devices", func(in *api.CreateVMInput) {
			// Beside 4 hot-plug ports, VNC's two, the balloon and net0: 22
			// disks fit, not 23.
			for range 20 {
				in.Devices = append(in.Devices, api.Device{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 1 << 20}})
			}
		}},
	} {
		if err := os.Remove(made); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		in := withDevices(b, vm1)
		tc.mutate(&in)
		_, err := a.Create(ctx, in)
		if e := errdefs.As(err); err == nil || e.Code != errdefs.CodeInvalidArgument || e.Field != tc.field {
			t.Errorf("%s: got %v", tc.field, err)
		}
		if _, err := os.Stat(made); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: an image was made before the refusal", tc.field)
		}
		requireNothingLeft(t, a, b, vm1)
	}
	// The refusal says what fills the bus (the balloon takes a slot too).
	in = withDevices(b, vm1)
	for range 20 {
		in.Devices = append(in.Devices, api.Device{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 1 << 20}})
	}
	if _, err := a.Create(ctx, in); err == nil || !strings.Contains(err.Error(), "23 disks") || !strings.Contains(err.Error(), "root bus") {
		t.Errorf("23 disks: %v", err)
	}
	// One disk fewer fits, and the same id is free again.
	in.Devices = in.Devices[:len(in.Devices)-1]
	cfg.QEMUImg = b.qemuImg
	a2, _ := b.start(cfg)
	if _, err := a2.Create(ctx, in); err != nil {
		t.Fatalf("22 disks: %v", err)
	}
	// Its bus is full: a disk added later would not boot either.
	files := vmFiles(t, b, vm1)
	_, err = a2.AddDisk(ctx, vm1, api.AddDiskRequest{SizeGB: 0.0625})
	if e := errdefs.As(err); err == nil || e.Code != errdefs.CodeFailedPrecondition || !strings.Contains(e.Message, "root bus") {
		t.Errorf("a 23rd disk: %v", err)
	}
	if after := vmFiles(t, b, vm1); !slices.Equal(after, files) {
		t.Errorf("the refused disk changed the VM's files: %q, was %q", after, files)
	}
}
