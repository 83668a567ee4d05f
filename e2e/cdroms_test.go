package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// labelledISOs writes ISOs named by their volume labels into the images
// directory, readable by QEMU's account unless the label says CLOSED.
func (b *bed) labelledISOs(t *testing.T, labels ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []string
	for _, label := range labels {
		p := imagesDir + "/" + strings.ToLower(label) + ".iso"
		dst := b.host.Path(p)
		files := []isoimage.File{{Path: "LABEL.TXT", Data: []byte(label + "\n")}}
		if err := isoimage.Write(ctx, dst, isoimage.Options{Label: label, NoJoliet: true}, files); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(label, "CLOSED") {
			if err := os.Chmod(dst, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = os.Remove(dst) })
		out = append(out, p)
	}
	return out
}

// guestLabel is the volume label the guest reads from dev: the primary
// volume descriptor's identifier, 40 bytes into sector 16.
func (b *bed) guestLabel(t *testing.T, id, dev string) (string, int) {
	t.Helper()
	out, rc := b.guestRun(t, id, fmt.Sprintf("echo LABEL=$(dd if=%s bs=1 skip=32808 count=32 2>/dev/null)", dev))
	for _, line := range strings.Split(out, "\n") {
		if l, ok := strings.CutPrefix(strings.TrimSpace(line), "LABEL="); ok {
			return strings.TrimSpace(l), rc
		}
	}
	return "", rc
}

func (b *bed) waitGuestLabel(t *testing.T, id, dev, want string) {
	t.Helper()
	b.eventually(t, time.Minute, func() error {
		if got, _ := b.guestLabel(t, id, dev); got != want {
			return fmt.Errorf("the guest reads label %q from %s, want %q", got, dev, want)
		}
		return nil
	})
}

func blockDevice(t *testing.T, b *bed, id, name string) api.BlockDevice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blk, err := b.client.Block(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range blk.Devices {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("QEMU has no block device %s: %+v", name, blk.Devices)
	return api.BlockDevice{}
}

// CD-ROM media on the real guest: it reads the first ISO's label, the
// medium changes live and it reads the second's; an eject leaves the drive
// empty; a tray the guest opens is an event; every change is in the log and
// in PostgreSQL; bad input names its field and changes nothing; drives are
// added only while the VM is off, and a cold boot has the medium the spec
// last got.
func TestCDROMMediaChangeLive(t *testing.T) {
	b := setup(t)
	isos := b.labelledISOs(t, "FIRST_LABEL", "SECOND_LABEL", "CLOSED_LABEL")
	first, second, closed := isos[0], isos[1], isos[2]
	in, _ := b.vmInput("cdroms")
	in.ISOPath = first
	vm := b.createVMFrom(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	b.waitGuestLabel(t, vm.ID, "/dev/sr0", "FIRST_LABEL")

	cd, err := b.client.InsertMedium(ctx, vm.ID, "cd0", second)
	if err != nil {
		t.Fatal(err)
	}
	if cd.ISOPath != second || cd.Live == nil || !cd.Live.MediumInserted || cd.Live.File != second || cd.Live.TrayOpen {
		t.Fatalf("after the change: %+v (live %+v)", cd, cd.Live)
	}
	b.waitGuestLabel(t, vm.ID, "/dev/sr0", "SECOND_LABEL")

	if cd, err = b.client.EjectMedium(ctx, vm.ID, "cd0"); err != nil {
		t.Fatal(err)
	}
	if cd.ISOPath != "" || cd.Live == nil || cd.Live.MediumInserted {
		t.Fatalf("after the eject: %+v (live %+v)", cd, cd.Live)
	}
	if d := blockDevice(t, b, vm.ID, "cd0"); d.MediumInserted || d.File != "" || d.TrayOpen {
		t.Fatalf("query-block after the eject: %+v", d)
	}
	if label, _ := b.guestLabel(t, vm.ID, "/dev/sr0"); label != "" {
		t.Fatalf("the guest still reads %q from an ejected drive", label)
	}

	// Back in through the CLI, into the empty drive.
	var viaCLI api.CDROM
	out := b.run(t, "infinivirtctl", "vm", "cdrom", "insert", vm.ID, "cd0", first, "-o", "json")
	if err := json.Unmarshal([]byte(out), &viaCLI); err != nil || viaCLI.ISOPath != first {
		t.Fatalf("vm cdrom insert -o json: %v\n%s", err, out)
	}
	b.waitGuestLabel(t, vm.ID, "/dev/sr0", "FIRST_LABEL")

	// A medium change moves the tray too: the guest's own move is the one
	// after the insert closed it.
	var closedAt uint64
	b.eventually(t, time.Minute, func() error {
		for _, e := range b.vmEvents(t, vm.ID) {
			if e.Type == api.EventGuest && e.Message == "DEVICE_TRAY_MOVED cd0 tray closed" {
				closedAt = e.Seq
			}
		}
		if closedAt == 0 {
			return fmt.Errorf("no tray event of the insert in the VM's log")
		}
		return nil
	})
	// The guest opens the tray: the kernel's autoeject opens it when the
	// drive's last user closes it.
	b.guestMust(t, vm.ID, "echo 1 > /proc/sys/dev/cdrom/autoeject && dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/dev/null; echo 0 > /proc/sys/dev/cdrom/autoeject")
	b.eventually(t, time.Minute, func() error {
		for _, e := range b.vmEvents(t, vm.ID) {
			if e.Seq > closedAt && e.Type == api.EventGuest && e.Message == "DEVICE_TRAY_MOVED cd0 tray open" {
				return nil
			}
		}
		return fmt.Errorf("no event of the guest's tray opening in the VM's log")
	})
	if d := blockDevice(t, b, vm.ID, "cd0"); !d.TrayOpen {
		t.Fatalf("query-block after the guest's eject: %+v, want the tray open", d)
	}
	var listed api.CDROMs
	out = b.run(t, "infinivirtctl", "vm", "cdrom", "list", vm.ID, "-o", "json")
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.CDROMs) != 1 || listed.CDROMs[0].Live == nil || !listed.CDROMs[0].Live.TrayOpen {
		t.Fatalf("vm cdrom list -o json: %v\n%s", err, out)
	}
	if table := b.run(t, "infinivirtctl", "vm", "cdrom", "list", vm.ID); !strings.Contains(table, "tray open") {
		t.Fatalf("vm cdrom list:\n%s", table)
	}

	var msgs []string
	for _, e := range b.vmEvents(t, vm.ID) {
		msgs = append(msgs, e.Message)
	}
	for _, want := range []string{
		"cd0: medium changed from " + first + " to " + second,
		"cd0: medium " + second + " ejected",
		"cd0: medium " + first + " inserted",
	} {
		if !slices.Contains(msgs, want) {
			t.Errorf("the VM's log lacks %q", want)
		}
	}
	b.eventually(t, time.Minute, func() error {
		evs, err := b.db.Events(ctx, vm.ID, 0, 1000)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(evs, func(e api.Event) bool { return e.Message == "cd0: medium "+first+" inserted" }) {
			return fmt.Errorf("PostgreSQL has not got the last change's event")
		}
		devs, err := b.db.Devices(ctx, vm.ID)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(devs, func(d api.Device) bool { return d.Name == "cd0" }); i < 0 || devs[i].CDROM == nil || devs[i].CDROM.Path != first {
			return fmt.Errorf("PostgreSQL's cd0 is %+v", devs)
		}
		return nil
	})

	// Bad input, on the running VM: each names its field and leaves the
	// spec, the log's changes and QEMU's medium as they were.
	specFile := vmspec.DefaultLayout.SpecFile(vm.ID)
	spec := b.run(t, "cat", specFile)
	medium := blockDevice(t, b, vm.ID, "cd0")
	for _, bad := range []struct {
		name  string
		call  func() error
		code  errdefs.Code
		field string
	}{
		{"relative path", func() error { _, err := b.client.InsertMedium(ctx, vm.ID, "cd0", "isos/second.iso"); return err }, errdefs.CodeInvalidArgument, "isoPath"},
		{"missing file", func() error { _, err := b.client.InsertMedium(ctx, vm.ID, "cd0", imagesDir+"/missing.iso"); return err }, errdefs.CodeInvalidArgument, "isoPath"},
		{"ISO QEMU cannot read", func() error { _, err := b.client.InsertMedium(ctx, vm.ID, "cd0", closed); return err }, errdefs.CodeInvalidArgument, "isoPath"},
		{"unknown drive", func() error { _, err := b.client.InsertMedium(ctx, vm.ID, "cd7", second); return err }, errdefs.CodeNotFound, "cd"},
		{"eject an unknown drive", func() error { _, err := b.client.EjectMedium(ctx, vm.ID, "cd7"); return err }, errdefs.CodeNotFound, "cd"},
		{"add a drive while running", func() error {
			_, err := b.client.AddCDROM(ctx, vm.ID, api.AddCDROMRequest{ISOPath: second})
			return err
		}, errdefs.CodeFailedPrecondition, ""},
		{"remove a drive while running", func() error { return b.client.RemoveCDROM(ctx, vm.ID, "cd0") }, errdefs.CodeFailedPrecondition, ""},
	} {
		err := bad.call()
		if e := errdefs.As(err); e == nil || e.Code != bad.code || e.Field != bad.field {
			t.Errorf("%s: %v, want %s naming %q", bad.name, err, bad.code, bad.field)
		} else if bad.code == errdefs.CodeFailedPrecondition && !strings.Contains(e.Message, "running") {
			t.Errorf("%s: %q does not name the VM's state", bad.name, e.Message)
		}
		if now := b.run(t, "cat", specFile); now != spec {
			t.Fatalf("%s changed the spec:\n%s", bad.name, now)
		}
		if now := blockDevice(t, b, vm.ID, "cd0"); now != medium {
			t.Fatalf("%s changed QEMU's medium: %+v, was %+v", bad.name, now, medium)
		}
	}

	// Off: a second drive is added with the second ISO, and the next boot
	// has both media.
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	added, err := b.client.AddCDROM(ctx, vm.ID, api.AddCDROMRequest{ISOPath: second})
	if err != nil || added.Name != "cd1" || added.ISOPath != second || added.Live != nil {
		t.Fatalf("add while off: %+v %v", added, err)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, false, 0); err != nil {
		t.Fatal(err)
	}
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	b.waitGuestLabel(t, vm.ID, "/dev/sr0", "FIRST_LABEL")
	b.waitGuestLabel(t, vm.ID, "/dev/sr1", "SECOND_LABEL")
	if _, err := b.client.Power(ctx, vm.ID, api.ForcePowerOff, true, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, "")
	b.run(t, "infinivirtctl", "vm", "cdrom", "remove", vm.ID, "cd1")
	if table := b.run(t, "infinivirtctl", "vm", "cdrom", "list", vm.ID); strings.Contains(table, "cd1") {
		t.Fatalf("cd1 is still listed after its removal:\n%s", table)
	}
}
