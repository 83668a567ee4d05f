package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
)

// ISOs come only from the ISO directories, links followed: QEMU's account
// reading /proc, another VM's disk or /etc/shadow as a CD-ROM is refused
// at create and at every medium change, and nothing is made or changed.
func TestMediaOnlyFromISODirs(t *testing.T) {
	b := newBed(t)
	isoDir := filepath.Join(b.dir, "isos")
	if err := os.Mkdir(isoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(isoDir, "good.iso")
	outside := filepath.Join(b.dir, "outside.iso")
	for _, p := range []string{good, outside} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := b.config()
	// The state directory is an ISO directory too, as a careless setting
	// would make it: its VMs' files stay out all the same.
	cfg.ISODirs = []string{isoDir, b.layout.StateDir}
	a, _ := b.start(cfg)

	// vm2 is the victim: off, with a disk and a CD-ROM drive.
	victim := createInput(vm2, false)
	victim.GraphicPort = 5998
	linked := filepath.Join(isoDir, "linked.iso")
	if err := os.Symlink(good, linked); err != nil {
		t.Fatal(err)
	}
	victim.ISOPath = linked
	v, err := a.Create(t.Context(), victim)
	if err != nil {
		t.Fatal(err)
	}
	if v.ISOPath != good {
		t.Errorf("the spec keeps %s, want the resolved %s", v.ISOPath, good)
	}
	disk := b.layout.DiskImagePath(vm2, "disk0", "qcow2")
	if _, err := os.Stat(disk); err != nil {
		t.Fatal(err)
	}

	link := func(name, target string) string {
		p := filepath.Join(isoDir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := map[string]string{
		"/proc/self/environ":          "/proc/self/environ",
		"/proc/1/environ":             "/proc/1/environ",
		"a link to /proc/self/mem":    link("mem.iso", "/proc/self/mem"),
		"/etc/shadow":                 "/etc/shadow",
		"a link to /etc/shadow":       link("shadow.iso", "/etc/shadow"),
		"another VM's disk":           disk,
		"a link to another VM's disk": link("disk.iso", disk),
		"another VM's spec":           b.layout.SpecFile(vm2),
		"a file outside the dirs":     outside,
		"a link leading outside":      link("out.iso", outside),
	}
	before := b.footprintOf(vm2)
	for name, p := range bad {
		for field, mutate := range map[string]func(*api.CreateVMInput){
			"isoPath": func(in *api.CreateVMInput) { in.ISOPath = p },
			"devices[0].cdrom.path": func(in *api.CreateVMInput) {
				in.Devices = []api.Device{{Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: p}}}
			},
		} {
			in := createInput(vm1, false)
			mutate(&in)
			if _, err := a.Create(t.Context(), in); !isInvalid(err, field) {
				t.Errorf("create with %s as %s: %v", name, field, err)
			}
			if _, err := os.Stat(b.layout.VMDir(vm1)); !os.IsNotExist(err) || b.host.Loaded(vm1) || len(a.List()) != 1 {
				t.Errorf("create with %s as %s left something: %v", name, field, err)
			}
		}
		if _, err := a.InsertMedium(t.Context(), vm2, "cd0", p); !isInvalid(err, "isoPath") {
			t.Errorf("medium %s: %v", name, err)
		}
		if _, err := a.AddCDROM(t.Context(), vm2, api.AddCDROMRequest{ISOPath: p}); !isInvalid(err, "isoPath") {
			t.Errorf("drive with %s: %v", name, err)
		}
	}
	if after := b.footprintOf(vm2); after != before {
		t.Errorf("a refused medium changed the VM:\n%s\n%s", before, after)
	}

	// An ISO of the directories is taken by every path, resolved.
	if cd, err := a.InsertMedium(t.Context(), vm2, "cd0", link("again.iso", good)); err != nil || cd.ISOPath != good {
		t.Errorf("medium from the ISO directory: %+v, %v", cd, err)
	}
	if cd, err := a.AddCDROM(t.Context(), vm2, api.AddCDROMRequest{ISOPath: good}); err != nil || cd.ISOPath != good {
		t.Errorf("drive from the ISO directory: %+v, %v", cd, err)
	}
}
