package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// diskCtx is a deadline for one disk call; an unplug alone may take 10 s.
func diskCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// guestSees waits until the guest's shell test on path gives want.
func (b *bed) guestSees(t testing.TB, id, path string, want bool) {
	t.Helper()
	b.eventually(t, time.Minute, func() error {
		if _, rc := b.guestRun(t, id, "test -e "+path); (rc == 0) != want {
			return fmt.Errorf("guest: test -e %s exits %d, want it there: %t", path, rc, want)
		}
		return nil
	})
}

// hotplugRoundTrip adds a disk to the running VM, has the guest write to
// it and read it back, removes it, and checks the guest saw it go, the
// image went with deleteImage, the database followed, and the VM kept
// running in the same QEMU.
func (b *bed) hotplugRoundTrip(t *testing.T, vm api.VM, name string) {
	t.Helper()
	ctx, cancel := diskCtx()
	defer cancel()
	pid := b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID
	d, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: name, SizeGB: 0.0625})
	if err != nil {
		t.Fatalf("add disk: %v", err)
	}
	if d.Name == "" || d.Format != "qcow2" || d.VirtualSizeBytes != 64<<20 || !d.Live {
		t.Fatalf("added disk %+v, want a live 64 MiB qcow2", d)
	}
	b.guestSees(t, vm.ID, "/sys/block/vdb", true)
	marker := "hotplugged-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	out, rc := b.guestRun(t, vm.ID, fmt.Sprintf("printf %s | dd of=/dev/vdb conv=fsync 2>/dev/null && dd if=/dev/vdb bs=%d count=1 2>/dev/null", marker, len(marker)))
	if rc != 0 || !strings.Contains(out, marker) {
		t.Fatalf("guest wrote and read /dev/vdb: rc %d %q, want %q", rc, out, marker)
	}
	list, err := b.client.Disks(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(list.Disks, func(x api.Disk) bool { return x.Name == d.Name }); i < 0 || !list.Disks[i].Live || list.Disks[i].AllocatedBytes == 0 {
		t.Fatalf("disks %+v, want %s live", list.Disks, d.Name)
	}
	b.eventually(t, time.Minute, func() error {
		devs, err := b.db.Devices(ctx, vm.ID)
		if err != nil || !slices.ContainsFunc(devs, func(x api.Device) bool { return x.Name == d.Name }) {
			return fmt.Errorf("PostgreSQL devices %+v (%v), want %s", devs, err, d.Name)
		}
		return nil
	})

	if err := b.client.RemoveDisk(ctx, vm.ID, d.Name, true); err != nil {
		t.Fatalf("remove disk: %v", err)
	}
	b.guestSees(t, vm.ID, "/sys/block/vdb", false)
	if _, err := b.try("test", "-e", d.Path); err == nil {
		t.Errorf("%s is still there after a remove with deleteImage", d.Path)
	}
	got := b.waitStatus(t, vm.ID, api.StatusRunning, "")
	if got.QEMUPID != pid || slices.ContainsFunc(got.Devices, func(x api.Device) bool { return x.Name == d.Name }) {
		t.Fatalf("after the remove: qemu pid %d (was %d), devices %+v", got.QEMUPID, pid, got.Devices)
	}
	b.eventually(t, time.Minute, func() error {
		devs, err := b.db.Devices(ctx, vm.ID)
		if err != nil || slices.ContainsFunc(devs, func(x api.Device) bool { return x.Name == d.Name }) {
			return fmt.Errorf("PostgreSQL devices %+v (%v), want no %s", devs, err, d.Name)
		}
		return nil
	})
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +disk `+d.Name+` hot-plugged on hotplug-`, `^progress +disk `+d.Name+` unplugged`)
}

// Acceptance 1: a running guest sees a new disk appear, writes to it and
// sees it go; the VM keeps running. The same after an agent restart.
func TestDiskHotplugLive(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "disks")
	b.guestSees(t, vm.ID, "/sys/block/vdb", false)
	b.hotplugRoundTrip(t, vm, "")

	b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	b.eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := b.client.Health(ctx)
		return err
	})
	b.hotplugRoundTrip(t, vm, "data")

	var cli api.Disks
	out := b.run(t, "infinivirtctl", "vm", "disk", "list", vm.ID, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cli); err != nil || len(cli.Disks) != 1 || cli.Disks[0].Name != "disk0" {
		t.Fatalf("vm disk list -o json: %v\n%s", err, out)
	}
}

// Acceptance 4: the guest sees its disk grow without a reboot.
func TestDiskGrowLive(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "diskgrow")
	sectors := func() string {
		out, rc := b.guestRun(t, vm.ID, "cat /sys/block/vda/size")
		if rc != 0 {
			t.Fatalf("guest: cat /sys/block/vda/size exits %d: %s", rc, out)
		}
		return out
	}
	if got := sectors(); got != strconv.Itoa(1<<30/512) {
		t.Fatalf("vda has %s sectors before, want a 1 GiB disk", got)
	}
	out := b.run(t, "infinivirtctl", "vm", "disk", "resize", vm.ID, "disk0", "--size-gb", "1.5", "-o", "json")
	var d api.Disk
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.VirtualSizeBytes != 3<<29 || !d.Live {
		t.Fatalf("vm disk resize -o json: %v\n%s", err, out)
	}
	b.eventually(t, time.Minute, func() error {
		if got := sectors(); got != strconv.Itoa(3<<29/512) {
			return fmt.Errorf("vda has %s sectors, want 1.5 GiB", got)
		}
		return nil
	})
	ctx, cancel := diskCtx()
	defer cancel()
	got, err := b.client.Get(ctx, vm.ID)
	if err != nil || got.DiskSizeGB != 1.5 || got.QEMUPID != b.waitStatus(t, vm.ID, api.StatusRunning, "").QEMUPID {
		t.Fatalf("after the resize: %+v (%v)", got, err)
	}
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +disk disk0 grown to 1610612736 bytes`)
}

// createOff creates a test guest that stays off, deleted when the test ends.
func (b *bed) createOff(t *testing.T, name string) api.VM {
	t.Helper()
	ctx, cancel := diskCtx()
	defer cancel()
	in, _ := b.vmInput(name)
	off := false
	in.Start = &off
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	return vm
}

// While the VM is off the spec changes and qemu-img does the image's part;
// the next boot plugs the disk in under the same name.
func TestDiskChangesWhileOff(t *testing.T) {
	b := setup(t)
	ctx, cancel := diskCtx()
	defer cancel()
	vm := b.createOff(t, "diskoff")
	d, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 0.0625})
	if err != nil || d.Name != "disk1" || d.Live || d.VirtualSizeBytes != 64<<20 {
		t.Fatalf("add disk while off: %+v (%v)", d, err)
	}
	if d, err = b.client.ResizeDisk(ctx, vm.ID, "disk1", api.ResizeDiskRequest{SizeGB: 0.125}); err != nil || d.VirtualSizeBytes != 128<<20 {
		t.Fatalf("grow while off: %+v (%v)", d, err)
	}
	if d, err = b.client.ResizeDisk(ctx, vm.ID, "disk1", api.ResizeDiskRequest{SizeGB: 0.09375, AllowShrink: true}); err != nil || d.VirtualSizeBytes != 96<<20 {
		t.Fatalf("shrink while off with allowShrink: %+v (%v)", d, err)
	}
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +disk disk1 added: 64 MiB qcow2`, `^progress +disk disk1 resized from 64 to 128 MiB`, `resized from 128 to 96 MiB`)

	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if out, _ := b.guestRun(t, vm.ID, "cat /sys/block/vdb/size"); out != strconv.Itoa(96<<20/512) {
		t.Fatalf("guest: vdb has %q sectors, want 96 MiB", out)
	}
	list, err := b.client.Disks(ctx, vm.ID)
	if err != nil || len(list.Disks) != 2 || list.Disks[1].Name != "disk1" || !list.Disks[1].Live {
		t.Fatalf("disks of the booted VM: %+v (%v)", list, err)
	}
	// Cold-plugged behind a root port of its own, it unplugs live too; its
	// image stays, and holds its name back from the next disk.
	if err := b.client.RemoveDisk(ctx, vm.ID, "disk1", false); err != nil {
		t.Fatalf("remove the cold-plugged disk live: %v", err)
	}
	b.guestSees(t, vm.ID, "/sys/block/vdb", false)
	if _, err := b.try("test", "-f", d.Path); err != nil {
		t.Errorf("%s went with a remove without deleteImage", d.Path)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.ForcePowerOff, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	d2, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 0.0625})
	if err != nil || d2.Name != "disk2" {
		t.Fatalf("add after a remove that kept disk1's image: %+v (%v)", d2, err)
	}
	if err := b.client.RemoveDisk(ctx, vm.ID, "disk2", true); err != nil {
		t.Fatalf("remove while off: %v", err)
	}
	if _, err := b.try("test", "-e", d2.Path); err == nil {
		t.Errorf("%s stayed after a remove with deleteImage", d2.Path)
	}
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +disk disk1 unplugged`, `^progress +disk disk2 added`, `^progress +disk disk2 removed \(image deleted\)`)
}

// Bad input is refused with the field named, and leaves the VM's
// directory and spec as they were; so does a hot-plug with every port used.
func TestDiskBadInput(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "diskbad")
	ctx, cancel := diskCtx()
	defer cancel()
	dir := vmspec.DefaultLayout.VMDir(vm.ID)
	before := func() (string, []api.Device) {
		got, err := b.client.Get(ctx, vm.ID)
		if err != nil {
			t.Fatal(err)
		}
		return b.run(t, "ls", dir), got.Devices
	}
	files, devs := before()
	for _, tc := range []struct {
		name  string
		call  func() error
		code  errdefs.Code
		field string
	}{
		{"missing disk", func() error { return b.client.RemoveDisk(ctx, vm.ID, "disk7", true) }, errdefs.CodeNotFound, "disk"},
		{"resize a missing disk", func() error {
			_, err := b.client.ResizeDisk(ctx, vm.ID, "disk7", api.ResizeDiskRequest{SizeGB: 2})
			return err
		}, errdefs.CodeNotFound, "disk"},
		{"shrink", func() error {
			_, err := b.client.ResizeDisk(ctx, vm.ID, "disk0", api.ResizeDiskRequest{SizeGB: 0.5})
			return err
		}, errdefs.CodeInvalidArgument, "sizeGB"},
		{"shrink live with allowShrink", func() error {
			_, err := b.client.ResizeDisk(ctx, vm.ID, "disk0", api.ResizeDiskRequest{SizeGB: 0.5, AllowShrink: true})
			return err
		}, errdefs.CodeFailedPrecondition, ""},
		{"relative name", func() error {
			_, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: "../disk9", SizeGB: 1})
			return err
		}, errdefs.CodeInvalidArgument, "name"},
		{"taken name", func() error {
			_, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: "net0", SizeGB: 1})
			return err
		}, errdefs.CodeAlreadyExists, "name"},
		{"no size", func() error {
			_, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{})
			return err
		}, errdefs.CodeInvalidArgument, "sizeGB"},
		{"bus", func() error {
			_, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 1, Bus: "ide"})
			return err
		}, errdefs.CodeInvalidArgument, "bus"},
		{"cache", func() error {
			_, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 1, Cache: "write-back"})
			return err
		}, errdefs.CodeInvalidArgument, "cache"},
		{"only disk", func() error { return b.client.RemoveDisk(ctx, vm.ID, "disk0", false) }, errdefs.CodeFailedPrecondition, ""},
	} {
		if err := tc.call(); !isAPIError(err, tc.code, tc.field) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	if f, d := before(); f != files || !slices.EqualFunc(d, devs, func(x, y api.Device) bool { return x.Name == y.Name }) {
		t.Fatalf("refused requests changed the VM: files %q → %q, devices %+v → %+v", files, f, devs, d)
	}

	// Every reserved hot-plug port taken: the next disk is refused, and
	// neither its image nor a spec entry stays.
	var added []string
	for {
		d, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 0.0625})
		if err != nil {
			if !isAPIError(err, errdefs.CodeFailedPrecondition, "") || !strings.Contains(err.Error(), "hot-plug ports") {
				t.Fatalf("add disk %d: %v, want the ports refused", len(added)+1, err)
			}
			break
		}
		added = append(added, d.Name)
		if len(added) > 8 {
			t.Fatalf("%d disks hot-plugged; the VM has fewer reserved ports", len(added))
		}
	}
	got, err := b.client.Get(ctx, vm.ID)
	if err != nil || len(got.Devices) != len(devs)+len(added) {
		t.Fatalf("after the refused hot-plug: devices %+v (%v), want %d more than %+v", got.Devices, err, len(added), devs)
	}
	ls := b.run(t, "ls", dir)
	if n := strings.Count(ls, ".qcow2"); n != 1+len(added) {
		t.Fatalf("images in %s after the refused hot-plug:\n%s\nwant disk0 and %v", dir, ls, added)
	}
}

// BenchmarkDiskHotplug times a hot-plug: the API call alone, and from the
// call until the guest sees the disk (polled on its serial console, so the
// second includes a console round trip).
func BenchmarkDiskHotplug(b *testing.B) {
	bd := setup(b)
	vm := bd.createVM(b, "bench-hotplug")
	var callMs, seenMs []float64
	for range rounds {
		ctx, cancel := diskCtx()
		began := time.Now()
		d, err := bd.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 0.0625})
		if err != nil {
			b.Fatal(err)
		}
		callMs = append(callMs, ms(time.Since(began)))
		bd.guestSees(b, vm.ID, "/sys/block/vdb", true)
		seenMs = append(seenMs, ms(time.Since(began)))
		if err := bd.client.RemoveDisk(ctx, vm.ID, d.Name, true); err != nil {
			b.Fatal(err)
		}
		bd.guestSees(b, vm.ID, "/sys/block/vdb", false)
		cancel()
	}
	b.ReportMetric(median(callMs), "api-call-ms")
	b.ReportMetric(median(seenMs), "guest-sees-ms")
}

// sdLine is guestSD's answer, among the kernel's messages on the console.
var sdLine = regexp.MustCompile(`(?m)^(sd[a-z]+) (/sys/\S+)$`)

// guestSD waits for the guest's sd disk of sectors 512-byte sectors and
// returns its name and sysfs path (the path names the controller).
func (b *bed) guestSD(t testing.TB, id string, sectors int64) (name, path string) {
	t.Helper()
	b.eventually(t, time.Minute, func() error {
		out, _ := b.guestRun(t, id, fmt.Sprintf(`for d in /sys/block/sd*; do [ "$(cat $d/size 2>/dev/null)" = %d ] && echo "${d##*/} $(readlink -f $d)"; done; true`, sectors))
		m := sdLine.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("guest: no sd disk of %d sectors yet (%q)", sectors, out)
		}
		name, path = m[1], m[2]
		return nil
	})
	return name, path
}

// guestWrites has the guest write a marker to dev and read it back.
func (b *bed) guestWrites(t testing.TB, id, dev, marker string) {
	t.Helper()
	out, rc := b.guestRun(t, id, fmt.Sprintf("printf %s | dd of=%s conv=fsync 2>/dev/null && dd if=%s bs=%d count=1 2>/dev/null", marker, dev, dev, len(marker)))
	if rc != 0 || !strings.Contains(out, marker) {
		t.Fatalf("guest wrote and read %s: rc %d %q, want %q", dev, rc, out, marker)
	}
}

// A VM boots with a sata disk the guest sees on AHCI; live, a sata disk
// is refused both ways leaving nothing behind, the first virtio-scsi disk
// brings its controller onto a hot-plug port, and the guest sees it, writes
// it and sees it go; the next one goes onto that controller, keeps what the
// guest wrote, and the next boot has it on its controller beside the sata
// disk.
func TestDiskBuses(t *testing.T) {
	b := setup(t)
	ctx, cancel := diskCtx()
	defer cancel()
	vm := b.createOff(t, "diskbuses")
	const sataBytes, scsiBytes, keptBytes = 48 << 20, 64 << 20, 80 << 20
	sata, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: "legacy", SizeGB: sataBytes / float64(1<<30), Bus: api.DiskBusSATA, Cache: api.DiskCacheWritethrough})
	if err != nil || sata.Bus != api.DiskBusSATA || sata.Cache != api.DiskCacheWritethrough || sata.Discard != api.DiskDiscardUnmap || sata.Live {
		t.Fatalf("add a sata disk while off: %+v (%v)", sata, err)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if _, path := b.guestSD(t, vm.ID, sataBytes/512); !strings.Contains(path, "/ata") {
		t.Fatalf("the sata disk is at %s, not on AHCI", path)
	}

	// AHCI cannot hot-plug: refused, and nothing stays.
	dir := vmspec.DefaultLayout.VMDir(vm.ID)
	files := b.run(t, "ls", dir)
	if _, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{SizeGB: 0.0625, Bus: api.DiskBusSATA}); !isAPIError(err, errdefs.CodeFailedPrecondition, "") || !strings.Contains(err.Error(), "AHCI") {
		t.Fatalf("live sata add: %v, want FailedPrecondition naming AHCI", err)
	}
	if err := b.client.RemoveDisk(ctx, vm.ID, "legacy", false); !isAPIError(err, errdefs.CodeFailedPrecondition, "") || !strings.Contains(err.Error(), "AHCI") {
		t.Fatalf("live sata remove: %v, want FailedPrecondition naming AHCI", err)
	}
	got, err := b.client.Get(ctx, vm.ID)
	if err != nil || len(got.Devices) != len(vm.Devices)+1 || b.run(t, "ls", dir) != files {
		t.Fatalf("after the refused sata changes: devices %+v (%v), files %q, want %q", got.Devices, err, b.run(t, "ls", dir), files)
	}
	if blk, err := b.client.Block(ctx, vm.ID); err != nil || len(blk.Devices) != 2 {
		t.Fatalf("QEMU's block devices after the refused sata changes: %+v (%v), want disk0 and legacy", blk, err)
	}

	// The first virtio-scsi disk: its controller comes too.
	d, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: "data", SizeGB: scsiBytes / float64(1<<30), Bus: api.DiskBusVirtioSCSI})
	if err != nil || d.Bus != api.DiskBusVirtioSCSI || !d.Live {
		t.Fatalf("live scsi add: %+v (%v)", d, err)
	}
	sd, path := b.guestSD(t, vm.ID, scsiBytes/512)
	if !strings.Contains(path, "virtio") || !strings.Contains(path, "/host") {
		t.Fatalf("the scsi disk is at %s, not on a virtio SCSI host", path)
	}
	b.guestWrites(t, vm.ID, "/dev/"+sd, "scsi-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := b.client.RemoveDisk(ctx, vm.ID, "data", true); err != nil {
		t.Fatalf("live scsi remove: %v", err)
	}
	b.guestSees(t, vm.ID, "/sys/block/"+sd, false)

	// The next one goes onto that controller, and stays.
	if _, err := b.client.AddDisk(ctx, vm.ID, api.AddDiskRequest{Name: "kept", SizeGB: keptBytes / float64(1<<30), Bus: api.DiskBusVirtioSCSI, Discard: api.DiskDiscardIgnore}); err != nil {
		t.Fatal(err)
	}
	sd, _ = b.guestSD(t, vm.ID, keptBytes/512)
	marker := "kept-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	b.guestWrites(t, vm.ID, "/dev/"+sd, marker)
	inOrder(t, b.vmEvents(t, vm.ID), `^progress +disk data hot-plugged on scsi-0\.0, its controller scsi-0 hot-plugged first on hotplug-`,
		`^progress +disk data unplugged`, `^progress +disk kept hot-plugged on scsi-0\.0 \(`)

	// Cold-booted, both disks are on their controllers, with the data.
	if _, err := b.client.Power(ctx, vm.ID, api.ForcePowerOff, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	if _, path := b.guestSD(t, vm.ID, sataBytes/512); !strings.Contains(path, "/ata") {
		t.Fatalf("after a boot the sata disk is at %s", path)
	}
	sd, path = b.guestSD(t, vm.ID, keptBytes/512)
	if !strings.Contains(path, "virtio") {
		t.Fatalf("after a boot the scsi disk is at %s", path)
	}
	if out, _ := b.guestRun(t, vm.ID, fmt.Sprintf("dd if=/dev/%s bs=%d count=1 2>/dev/null", sd, len(marker))); !strings.Contains(out, marker) {
		t.Fatalf("after a boot the scsi disk holds %q, want %q", out, marker)
	}
	list, err := b.client.Disks(ctx, vm.ID)
	if err != nil || len(list.Disks) != 3 {
		t.Fatalf("disks %+v (%v)", list, err)
	}
	for i, want := range []string{"disk0 virtio-blk writeback unmap", "legacy sata writethrough unmap", "kept virtio-scsi writeback ignore"} {
		l := list.Disks[i]
		if got := fmt.Sprintf("%s %s %s %s", l.Name, l.Bus, l.Cache, l.Discard); got != want || !l.Live {
			t.Errorf("disk %d is %q (live %t), want %q", i, got, l.Live, want)
		}
	}
	// The CLI shows them too.
	if out := b.run(t, "infinivirtctl", "vm", "disk", "list", vm.ID); !strings.Contains(out, "virtio-scsi") || !strings.Contains(out, "writethrough") {
		t.Errorf("vm disk list:\n%s", out)
	}
}
