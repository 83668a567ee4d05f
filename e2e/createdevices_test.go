package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// Acceptance 7: a VM made in one request with three disks and two CD-ROM
// drives boots, and the guest sees every disk (and can use it) and reads
// each drive's label; the API and PostgreSQL show the same devices.
func TestCreateWithDisksAndCDROMs(t *testing.T) {
	b := setup(t)
	isos := b.labelledISOs(t, "FIRST_DRIVE", "SECOND_DRIVE")
	in, _ := b.vmInput("manydevices")
	in.ISOPath = isos[0]
	in.Devices = []api.Device{
		{Name: "data", Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 64 << 20, Format: "raw"}},
		{Type: api.DeviceDisk, Disk: &api.DiskDevice{SizeBytes: 32 << 20, BootIndex: 3}},
		{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: isos[1], BootIndex: 4}},
	}
	vm := b.createVMFrom(t, in)
	wantNames := []string{"disk0", "cd0", "net0", "data", "disk1", "cd1", "balloon0"}
	if got := deviceNames(vm.Devices); !slices.Equal(got, wantNames) {
		t.Fatalf("devices %v, want %v", got, wantNames)
	}

	// Each disk is a virtio disk of its size (in 512-byte sectors); the
	// guest names them in bus order, so the sizes tell them apart.
	sizes := map[int64]string{1 << 30 / 512: "disk0", 64 << 20 / 512: "data", 32 << 20 / 512: "disk1"}
	out, rc := b.guestRun(t, vm.ID, "for d in /sys/block/vd*; do echo ${d##*/} $(cat $d/size); done")
	if rc != 0 {
		t.Fatalf("guest: listing /sys/block/vd* exits %d: %s", rc, out)
	}
	seen := map[string]string{} // disk name → guest device
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if name, ok := sizes[n]; err == nil && ok {
			seen[name] = f[0]
		}
	}
	if len(seen) != 3 {
		t.Fatalf("the guest's virtio disks:\n%s\nwant one of 1 GiB, 64 MiB and 32 MiB", out)
	}
	for _, name := range []string{"data", "disk1"} {
		dev := "/dev/" + seen[name]
		marker := name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		got, rc := b.guestRun(t, vm.ID, fmt.Sprintf("printf %s | dd of=%s conv=fsync 2>/dev/null && dd if=%s bs=%d count=1 2>/dev/null", marker, dev, dev, len(marker)))
		if rc != 0 || !strings.Contains(got, marker) {
			t.Errorf("guest wrote and read %s (%s): rc %d %q, want %q", dev, name, rc, got, marker)
		}
	}

	// Both drives are there, each with its ISO.
	out, rc = b.guestRun(t, vm.ID, "ls -d /sys/block/sr*")
	if rc != 0 || !slices.Equal(strings.Fields(out), []string{"/sys/block/sr0", "/sys/block/sr1"}) {
		t.Fatalf("guest: ls -d /sys/block/sr* exits %d: %q, want sr0 and sr1", rc, out)
	}
	var labels []string
	for _, dev := range []string{"/dev/sr0", "/dev/sr1"} {
		label, _ := b.guestLabel(t, vm.ID, dev)
		labels = append(labels, label)
	}
	slices.Sort(labels)
	if !slices.Equal(labels, []string{"FIRST_DRIVE", "SECOND_DRIVE"}) {
		t.Fatalf("the guest reads labels %q from sr0 and sr1, want FIRST_DRIVE and SECOND_DRIVE", labels)
	}

	ctx, cancel := diskCtx()
	defer cancel()
	disks, err := b.client.Disks(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks.Disks {
		got = append(got, fmt.Sprintf("%s %s %d %d live=%t", d.Name, d.Format, d.VirtualSizeBytes, d.BootIndex, d.Live))
	}
	if want := []string{"disk0 qcow2 1073741824 1 live=true", "data raw 67108864 0 live=true", "disk1 qcow2 33554432 3 live=true"}; !slices.Equal(got, want) {
		t.Errorf("disks %q, want %q", got, want)
	}
	cds, err := b.client.CDROMs(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cds.CDROMs) != 2 || cds.CDROMs[1].ISOPath != isos[1] || cds.CDROMs[1].BootIndex != 4 || cds.CDROMs[1].Live == nil || cds.CDROMs[1].Live.File != isos[1] {
		t.Errorf("CD-ROMs %+v", cds.CDROMs)
	}
	b.eventually(t, time.Minute, func() error {
		devs, err := b.db.Devices(ctx, vm.ID)
		if err != nil {
			return err
		}
		var names []string
		for _, d := range devs {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		want := slices.Clone(wantNames)
		slices.Sort(want)
		if !slices.Equal(names, want) {
			return fmt.Errorf("PostgreSQL has devices %v, want %v", names, want)
		}
		return nil
	})
}

func deviceNames(devs []api.Device) []string {
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	return names
}
