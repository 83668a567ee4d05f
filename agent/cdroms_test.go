package agent

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// isos writes empty ISO stand-ins named names and returns their paths.
func (b *bed) isos(names ...string) []string {
	b.t.Helper()
	var out []string
	for _, n := range names {
		p := filepath.Join(b.dir, n)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			b.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// footprintOf is what a refused change must leave as it was: the spec
// file and the event log.
func (b *bed) footprintOf(id string) string {
	b.t.Helper()
	spec, err := os.ReadFile(b.layout.SpecFile(id))
	if err != nil {
		b.t.Fatal(err)
	}
	evs, err := os.ReadFile(b.layout.EventsFile(id))
	if err != nil {
		b.t.Fatal(err)
	}
	return string(spec) + "\n--\n" + string(evs)
}

func lastMessage(t *testing.T, b *bed, id string) string {
	t.Helper()
	evs, err := eventlog.ReadFile(b.layout.EventsFile(id), 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("event log: %d entries, %v", len(evs), err)
	}
	return evs[len(evs)-1].Message
}

func cdPaths(cds api.CDROMs) map[string]string {
	out := map[string]string{}
	for _, cd := range cds.CDROMs {
		out[cd.Name] = cd.ISOPath
	}
	return out
}

// A VM that is off: its media change in the spec alone, drives come and
// go, each change is an event and reaches the database; bad input names
// its field and changes nothing.
func TestCDROMsOfAStoppedVM(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	isos := b.isos("a.iso", "b.iso")
	in := createInput(vm1, false)
	in.ISOPath = isos[0]
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}

	cd, err := a.InsertMedium(t.Context(), vm1, "cd0", isos[1])
	if err != nil || cd.ISOPath != isos[1] || cd.Live != nil {
		t.Fatalf("insert: %+v %v", cd, err)
	}
	if got := lastMessage(t, b, vm1); got != "cd0: medium changed from "+isos[0]+" to "+isos[1] {
		t.Errorf("event %q", got)
	}
	if _, err := a.EjectMedium(t.Context(), vm1, "cd0"); err != nil {
		t.Fatal(err)
	}
	if got := lastMessage(t, b, vm1); got != "cd0: medium "+isos[1]+" ejected" {
		t.Errorf("event %q", got)
	}
	added, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{ISOPath: isos[0], BootIndex: 5})
	if err != nil || added.Name != "cd1" || added.ISOPath != isos[0] || added.BootIndex != 5 {
		t.Fatalf("add: %+v %v", added, err)
	}
	if _, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{Name: "tools"}); err != nil {
		t.Fatal(err)
	}
	cds, err := a.CDROMs(t.Context(), vm1)
	if want := map[string]string{"cd0": "", "cd1": isos[0], "tools": ""}; err != nil || !maps.Equal(cdPaths(cds), want) {
		t.Fatalf("list %+v %v, want %v", cds, err, want)
	}
	if err := a.RemoveCDROM(t.Context(), vm1, "tools"); err != nil {
		t.Fatal(err)
	}
	if got := lastMessage(t, b, vm1); got != "tools: CD-ROM drive removed" {
		t.Errorf("event %q", got)
	}
	if !agenttest.WaitFor(waitLimit, func() bool {
		vm, ok := b.store.VM(vm1)
		return ok && len(vm.Devices) > 0 && slices.ContainsFunc(vm.Devices, func(d api.Device) bool {
			return d.Name == "cd1" && d.CDROM != nil && d.CDROM.Path == isos[0]
		}) && !slices.ContainsFunc(vm.Devices, func(d api.Device) bool { return d.Name == "tools" })
	}) {
		t.Errorf("the database never got the drives: %+v", func() api.VM { vm, _ := b.store.VM(vm1); return vm }())
	}

	before := b.footprintOf(vm1)
	for _, bad := range []struct {
		name  string
		call  func() error
		code  errdefs.Code
		field string
	}{
		{"relative path", func() error { _, err := a.InsertMedium(t.Context(), vm1, "cd0", "a.iso"); return err }, errdefs.CodeInvalidArgument, "isoPath"},
		{"missing file", func() error {
			_, err := a.InsertMedium(t.Context(), vm1, "cd0", filepath.Join(b.dir, "missing.iso"))
			return err
		}, errdefs.CodeInvalidArgument, "isoPath"},
		{"directory", func() error { _, err := a.InsertMedium(t.Context(), vm1, "cd0", b.dir); return err }, errdefs.CodeInvalidArgument, "isoPath"},
		{"a VM's own file", func() error {
			_, err := a.InsertMedium(t.Context(), vm1, "cd0", b.layout.SpecFile(vm1))
			return err
		}, errdefs.CodeInvalidArgument, "isoPath"},
		{"unknown drive", func() error { _, err := a.InsertMedium(t.Context(), vm1, "cd9", isos[0]); return err }, errdefs.CodeNotFound, "cd"},
		{"eject unknown drive", func() error { _, err := a.EjectMedium(t.Context(), vm1, "disk0"); return err }, errdefs.CodeNotFound, "cd"},
		{"remove unknown drive", func() error { return a.RemoveCDROM(t.Context(), vm1, "net0") }, errdefs.CodeNotFound, "cd"},
		{"add a taken name", func() error {
			_, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{Name: "disk0"})
			return err
		}, errdefs.CodeAlreadyExists, "name"},
		{"add a bad name", func() error {
			_, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{Name: "CD-9"})
			return err
		}, errdefs.CodeInvalidArgument, "name"},
		{"add a taken boot index", func() error {
			_, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{BootIndex: 1})
			return err
		}, errdefs.CodeInvalidArgument, "bootIndex"},
		{"add with a relative ISO", func() error {
			_, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{ISOPath: "b.iso"})
			return err
		}, errdefs.CodeInvalidArgument, "isoPath"},
	} {
		err := bad.call()
		if e := errdefs.As(err); e == nil || e.Code != bad.code || e.Field != bad.field {
			t.Errorf("%s: %v, want %s naming %q", bad.name, err, bad.code, bad.field)
		}
		if after := b.footprintOf(vm1); after != before {
			t.Fatalf("%s changed the spec or the log:\n%s\n---- was ----\n%s", bad.name, after, before)
		}
	}

	// The AHCI controller has six ports.
	for i := 0; ; i++ {
		_, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{})
		if err == nil {
			continue
		}
		if errdefs.As(err).Code != errdefs.CodeFailedPrecondition || i != vmspec.MaxCDROMs-2 {
			t.Fatalf("add #%d: %v, want the controller full after %d drives", i, err, vmspec.MaxCDROMs)
		}
		break
	}
}

// fakeMediaShim answers the change-medium and query-block verbs as the
// shim does, keeping the drives' media, until fail makes the next change
// fail.
type fakeMediaShim struct {
	mu       sync.Mutex
	media    map[string]string
	requests []shimapi.MediumRequest
	fail     bool
}

func (f *fakeMediaShim) exchange(s *agenttest.Shim, method, target string, body []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch method + " " + target {
	case shimapi.RouteMedium.Pattern():
		var req shimapi.MediumRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		f.requests = append(f.requests, req)
		if f.fail {
			f.fail = false
			return nil, errdefs.Internal("blockdev-add: Could not open the ISO: Permission denied")
		}
		f.media[req.CDROM] = req.Path
		return nil, s.Progress(req.CDROM + ": medium changed")
	case shimapi.RouteBlock.Pattern():
		out := api.BlockDevices{}
		for name, p := range f.media {
			out.Devices = append(out.Devices, api.BlockDevice{Name: name, File: p, Removable: true, MediumInserted: p != ""})
		}
		return json.Marshal(out)
	}
	return nil, errdefs.Unavailable("no %s %s", method, target)
}

// A running VM: its media change through the shim, which records the
// change; the spec follows only a change the shim made. Drives are not
// added or removed while it runs.
func TestCDROMsOfARunningVM(t *testing.T) {
	b := newBed(t)
	a, _ := b.start(b.config())
	isos := b.isos("a.iso", "b.iso")
	fake := &fakeMediaShim{media: map[string]string{"cd0": isos[0]}}
	b.host.OnExchange(fake.exchange)
	in := createInput(vm1, true)
	in.ISOPath = isos[0]
	if _, err := a.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}

	cd, err := a.InsertMedium(t.Context(), vm1, "cd0", isos[1])
	if err != nil || cd.ISOPath != isos[1] || cd.Live == nil || cd.Live.File != isos[1] || !cd.Live.MediumInserted {
		t.Fatalf("insert: %+v %v", cd, err)
	}
	if want := []shimapi.MediumRequest{{CDROM: "cd0", Path: isos[1]}}; !slices.Equal(fake.requests, want) {
		t.Fatalf("the shim was asked %+v, want %+v", fake.requests, want)
	}
	waitEvent(t, a, vm1, "cd0: medium changed")

	before := b.footprintOf(vm1)
	fake.fail = true
	if _, err := a.EjectMedium(t.Context(), vm1, "cd0"); err == nil {
		t.Fatal("an eject the shim failed succeeded")
	}
	if after := b.footprintOf(vm1); after != before {
		t.Fatalf("a failed live change changed the spec or the log:\n%s", after)
	}
	for _, call := range []func() error{
		func() error { _, err := a.AddCDROM(t.Context(), vm1, api.AddCDROMRequest{}); return err },
		func() error { return a.RemoveCDROM(t.Context(), vm1, "cd0") },
	} {
		err := call()
		if e := errdefs.As(err); e == nil || e.Code != errdefs.CodeFailedPrecondition || !bytes.Contains([]byte(e.Message), []byte("is running")) {
			t.Errorf("a drive change while running: %v, want FailedPrecondition naming the state", err)
		}
	}
	if after := b.footprintOf(vm1); after != before {
		t.Fatalf("a refused drive change changed the spec or the log:\n%s", after)
	}
	cds, err := a.CDROMs(t.Context(), vm1)
	if err != nil || len(cds.CDROMs) != 1 || cds.CDROMs[0].ISOPath != isos[1] || cds.CDROMs[0].Live.File != isos[1] {
		t.Fatalf("list: %+v %v", cds, err)
	}
}

func waitEvent(t *testing.T, a *Agent, id, msg string) {
	t.Helper()
	if !agenttest.WaitFor(waitLimit, func() bool {
		evs, err := a.EventBacklog(id, 0)
		return err == nil && slices.ContainsFunc(evs, func(e api.Event) bool { return e.Message == msg })
	}) {
		t.Fatalf("no event %q", msg)
	}
}

// An ISO QEMU's account cannot read is refused by its mode bits: the
// file's, and the search bit of each directory above it.
func TestReadableBy(t *testing.T) {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no account nobody to check against")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Skipf("cannot make %s searchable: %v", d, err)
			}
		}
	}
	open, closed := filepath.Join(sub, "open.iso"), filepath.Join(sub, "closed.iso")
	for p, mode := range map[string]os.FileMode{open: 0o644, closed: 0o600} {
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if !readableBy(open, u) {
		t.Errorf("%s (0644) is not readable by nobody", open)
	}
	if readableBy(closed, u) {
		t.Errorf("%s (0600, another owner) is readable by nobody", closed)
	}
	if err := os.Chmod(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if readableBy(open, u) {
		t.Errorf("%s is readable through a directory nobody cannot search", open)
	}
	if readableBy(filepath.Join(sub, "missing.iso"), u) {
		t.Error("a missing file is readable")
	}
	a := &Agent{cfg: Config{QEMUUser: "nobody", Layout: vmspec.Layout{StateDir: filepath.Join(dir, "state")}, ISODirs: []string{dir}}}
	if _, err := a.checkMedium("isoPath", open); errdefs.As(err) == nil || errdefs.As(err).Field != "isoPath" {
		t.Errorf("checkMedium of an ISO QEMU cannot read: %v", err)
	}
	if err := os.Chmod(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := a.checkMedium("isoPath", open); err != nil {
		t.Errorf("checkMedium of a readable ISO: %v", err)
	}
}
