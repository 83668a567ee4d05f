package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

const cdromTestVM = "0f8fad5b-d9cb-469f-a165-70867728950e"

// cdromShim gives s a spec with the drives cds (name to ISO) and their
// devices, as a start would, and an event log in dir.
func cdromShim(t *testing.T, s *Shim, dir string, cds ...[2]string) string {
	t.Helper()
	s.cfg.VMID = cdromTestVM
	s.cfg.Layout = vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}
	s.spec.ID = cdromTestVM
	for _, cd := range cds {
		d := vmspec.NewDevice(cd[0], vmspec.CDROM{Path: cd[1]})
		s.spec.Devices = append(s.spec.Devices, d)
		dev, err := device.New(d)
		if err != nil {
			t.Fatal(err)
		}
		s.devices = append(s.devices, dev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logFile := filepath.Join(dir, "events")
	l, err := eventlog.Open(ctx, logFile, cdromTestVM)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s.events = l
	return logFile
}

func messages(t *testing.T, logFile string) []string {
	t.Helper()
	evs, err := eventlog.ReadFile(logFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type)+": "+e.Message)
	}
	return out
}

// Media change on real QEMU: a disc changed for another, ejected, and put
// into an empty drive, each with the node names a cold boot gives, the
// shim's spec and devices following, an event per change, and the tray
// moves reported as the guest's events.
func TestChangeMediumOnRealQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	isoA, isoB := filepath.Join(dir, "a.iso"), filepath.Join(dir, "b.iso")
	for _, p := range []string{isoA, isoB} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{
		"-blockdev", fmt.Sprintf(`{"driver":"file","node-name":"cd0-file","filename":%q,"read-only":true}`, isoA),
		"-blockdev", `{"driver":"raw","node-name":"cd0","file":"cd0-file","read-only":true}`,
		"-device", `{"driver":"ide-cd","id":"cd0","drive":"cd0","bus":"ide.0"}`,
		"-device", `{"driver":"ide-cd","id":"cd1","bus":"ide.1"}`,
	}
	c, p := bareQEMU(t, ctx, args...)
	events, unsubscribe := c.Subscribe(64)
	defer unsubscribe()
	s := New(Config{})
	s.qmp, s.qemu, s.spec = c, p, &vmspec.Spec{}
	logFile := cdromShim(t, s, dir, [2]string{"cd0", isoA}, [2]string{"cd1", ""})

	nodes := func() []string {
		var infos []struct {
			NodeName string `json:"node-name"`
			File     string `json:"file"`
		}
		if err := c.Execute(ctx, "query-named-block-nodes", nil, &infos); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range infos {
			out = append(out, n.NodeName+"="+n.File)
		}
		slices.Sort(out)
		return out
	}
	check := func(step string, want []api.BlockDevice, wantNodes []string) {
		t.Helper()
		got, err := s.queryBlock(ctx, shimapi.BlockRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Devices, want) {
			t.Fatalf("%s: query-block\n got %+v\nwant %+v", step, got.Devices, want)
		}
		if n := nodes(); !slices.Equal(n, wantNodes) {
			t.Fatalf("%s: block nodes %v, want %v", step, n, wantNodes)
		}
		for _, w := range want {
			if path := s.spec.Device(w.Name).CDROM.Path; path != w.File {
				t.Fatalf("%s: the shim's spec has %q in %s, QEMU %q", step, path, w.Name, w.File)
			}
			cd, _ := s.specCDROM(w.Name)
			if cd.Path() != w.File {
				t.Fatalf("%s: the shim's device %s holds %q, QEMU %q", step, w.Name, cd.Path(), w.File)
			}
		}
	}
	inserted := func(name, file string) api.BlockDevice {
		return api.BlockDevice{Name: name, File: file, Format: "raw", ReadOnly: true, Removable: true, MediumInserted: true}
	}
	empty := func(name string) api.BlockDevice { return api.BlockDevice{Name: name, Removable: true} }

	if _, err := s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd0", Path: isoB}); err != nil {
		t.Fatal(err)
	}
	check("change", []api.BlockDevice{inserted("cd0", isoB), empty("cd1")}, []string{"cd0-file=" + isoB, "cd0=" + isoB})
	if _, err := s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd0"}); err != nil {
		t.Fatal(err)
	}
	check("eject", []api.BlockDevice{empty("cd0"), empty("cd1")}, nil)
	if _, err := s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd1", Path: isoA}); err != nil {
		t.Fatal(err)
	}
	check("insert", []api.BlockDevice{empty("cd0"), inserted("cd1", isoA)}, []string{"cd1-file=" + isoA, "cd1=" + isoA})

	// Refusals change nothing.
	for _, bad := range []struct {
		req  shimapi.MediumRequest
		code errdefs.Code
	}{
		{shimapi.MediumRequest{CDROM: "cd7", Path: isoB}, errdefs.CodeNotFound},
		{shimapi.MediumRequest{CDROM: "cd0", Path: filepath.Join(dir, "missing.iso")}, errdefs.CodeInvalidArgument},
		{shimapi.MediumRequest{CDROM: "cd0", Path: dir}, errdefs.CodeInvalidArgument},
		{shimapi.MediumRequest{CDROM: "cd0", Path: s.cfg.Layout.VMDir(cdromTestVM) + "/spec.json"}, errdefs.CodeInvalidArgument},
	} {
		if _, err := s.changeMedium(ctx, bad.req); errdefs.As(err) == nil || errdefs.As(err).Code != bad.code {
			t.Fatalf("%+v: %v, want %s", bad.req, err, bad.code)
		}
	}
	check("refusals", []api.BlockDevice{empty("cd0"), inserted("cd1", isoA)}, []string{"cd1-file=" + isoA, "cd1=" + isoA})

	// QEMU announced each tray move; the shim reports them.
	for drained := false; !drained; {
		select {
		case ev := <-events:
			s.handleEvent(ctx, ev)
		default:
			drained = true
		}
	}
	got := messages(t, logFile)
	want := []string{
		"progress: cd0: medium changed from " + isoA + " to " + isoB,
		"progress: cd0: medium " + isoB + " ejected",
		"progress: cd1: medium " + isoA + " inserted",
		"guest: DEVICE_TRAY_MOVED cd0 tray open",
		"guest: DEVICE_TRAY_MOVED cd0 tray closed",
		"guest: DEVICE_TRAY_MOVED cd1 tray open",
		"guest: DEVICE_TRAY_MOVED cd1 tray closed",
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("event log lacks %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// A change that QEMU refuses part-way puts the old medium back and leaves
// the shim's view and the log as they were.
func TestChangeMediumFailingPartWayRestores(t *testing.T) {
	s, fake := newSupervisedShim(t, 2)
	dir := t.TempDir()
	isoA, isoB := filepath.Join(dir, "a.iso"), filepath.Join(dir, "b.iso")
	for _, p := range []string{isoA, isoB} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logFile := cdromShim(t, s, dir, [2]string{"cd0", isoA})
	fake.refuse("blockdev-insert-medium")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd0", Path: isoB})
	if err == nil || !strings.Contains(err.Error(), "blockdev-insert-medium") {
		t.Fatalf("change: %v, want the refused insert named", err)
	}
	// The change's two nodes and the old medium's two again; the tray
	// closed on the old medium.
	if n := fake.count("blockdev-add"); n != 4 {
		t.Errorf("blockdev-add sent %d times, want 4", n)
	}
	if n := fake.count("blockdev-close-tray"); n != 0 {
		t.Errorf("blockdev-close-tray sent %d times; the refused insert of the old medium comes first", n)
	}
	if cd, _ := s.specCDROM("cd0"); cd.Path() != isoA || s.spec.Device("cd0").CDROM.Path != isoA {
		t.Errorf("the shim's view moved to %s", cd.Path())
	}
	if got := messages(t, logFile); len(got) != 0 {
		t.Errorf("a failed change was recorded: %v", got)
	}
	if !strings.Contains(err.Error(), "putting "+isoA+" back failed") {
		t.Errorf("the error %q does not say the old medium could not go back", err)
	}
}

// QEMU refusing the new medium part-way, on real QEMU: another process
// holds a lock that denies it a consistent read of the ISO (as a second
// QEMU writing it would), so the new nodes cannot take the drive. The old
// medium is back, in its cold boot's nodes, the tray closed; the shim's
// view and the log are as they were; once the lock goes, the change works.
func TestChangeMediumRefusedByQEMURestoresTheOldMedium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	isoA, isoB := filepath.Join(dir, "a.iso"), filepath.Join(dir, "b.iso")
	for _, p := range []string{isoA, isoB} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, p := bareQEMU(t, ctx,
		"-blockdev", fmt.Sprintf(`{"driver":"file","node-name":"cd0-file","filename":%q,"read-only":true}`, isoA),
		"-blockdev", `{"driver":"raw","node-name":"cd0","file":"cd0-file","read-only":true}`,
		"-device", `{"driver":"ide-cd","id":"cd0","drive":"cd0","bus":"ide.0"}`)
	s := New(Config{})
	s.qmp, s.qemu, s.spec = c, p, &vmspec.Spec{}
	logFile := cdromShim(t, s, dir, [2]string{"cd0", isoA})

	// QEMU's file locking: a lock on byte 200 says another user does not
	// share "consistent read", the permission a reader needs.
	f, err := os.Open(isoB)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lock := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 200, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lock); err != nil {
		t.Skipf("no OFD locks here: %v", err)
	}
	_, err = s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd0", Path: isoB})
	if err == nil || !strings.Contains(err.Error(), "the old one is back") {
		t.Fatalf("change onto a locked ISO: %v, want a refusal with the old medium back", err)
	}
	t.Logf("refused: %v", err)
	got, err := s.queryBlock(ctx, shimapi.BlockRequest{})
	want := []api.BlockDevice{{Name: "cd0", File: isoA, Format: "raw", ReadOnly: true, Removable: true, MediumInserted: true}}
	if err != nil || !slices.Equal(got.Devices, want) {
		t.Fatalf("after the refusal: %+v %v, want %+v", got.Devices, err, want)
	}
	var infos []struct {
		NodeName string `json:"node-name"`
	}
	if err := c.Execute(ctx, "query-named-block-nodes", nil, &infos); err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range infos {
		nodes = append(nodes, n.NodeName)
	}
	slices.Sort(nodes)
	if !slices.Equal(nodes, []string{"cd0", "cd0-file"}) {
		t.Errorf("block nodes after the refusal %v, want the cold boot's cd0 and cd0-file only", nodes)
	}
	if cd, _ := s.specCDROM("cd0"); cd.Path() != isoA || s.spec.Device("cd0").CDROM.Path != isoA {
		t.Errorf("the shim's view moved to %s", cd.Path())
	}
	if got := messages(t, logFile); len(got) != 0 {
		t.Errorf("a refused change was recorded: %v", got)
	}

	lock.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lock); err != nil {
		t.Fatal(err)
	}
	if _, err := s.changeMedium(ctx, shimapi.MediumRequest{CDROM: "cd0", Path: isoB}); err != nil {
		t.Fatalf("change once the lock is gone: %v", err)
	}
}
