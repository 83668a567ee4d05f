package device

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

const vmID = "0f8fad5b-d9cb-469f-a165-70867728950e"

// everyType is a spec with one device of each type, under vmDir.
func everyType(vmDir string) *vmspec.Spec {
	s := &vmspec.Spec{ID: vmID}
	for _, d := range []vmspec.Device{
		vmspec.NewDevice("disk0", vmspec.Disk{Path: filepath.Join(vmDir, "disk0.qcow2"), Format: "qcow2", SizeBytes: 64 << 20, BootIndex: 1}),
		vmspec.NewDevice("cd0", vmspec.CDROM{Path: "/isos/os.iso", BootIndex: 2}),
		vmspec.NewDevice("net0", vmspec.NIC{MAC: "52:54:00:12:34:56", Bridge: "br0"}),
		vmspec.NewDevice("pci0", vmspec.PCI{Host: "0000:01:00.0"}),
		vmspec.NewDevice("usb0", vmspec.USB{VendorID: "046d", ProductID: "c52b"}),
		vmspec.NewDevice("tpm0", vmspec.TPM{StateDir: filepath.Join(vmDir, "tpm")}),
		vmspec.NewDevice("balloon0", vmspec.Balloon{DeflateOnOOM: true}),
		vmspec.NewDevice("channel0", vmspec.Channel{Port: "org.qemu.guest_agent.0"}),
	} {
		s.AddDevice(d)
	}
	return s
}

func TestFromSpecMakesEveryType(t *testing.T) {
	devs, err := FromSpec(everyType("/vms/x"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Caps{
		"disk0":    {Hotplug: true, Migrate: true},
		"cd0":      {LiveUpdate: true, Migrate: true},
		"net0":     {Hotplug: true, LiveUpdate: true, Migrate: true},
		"pci0":     {Hotplug: true},
		"usb0":     {Hotplug: true},
		"tpm0":     {Migrate: true},
		"balloon0": {Hotplug: true, LiveUpdate: true, Migrate: true},
		"channel0": {Migrate: true},
	}
	if len(devs) != len(want) {
		t.Fatalf("%d devices", len(devs))
	}
	for i, d := range devs {
		if d.Type() != api.DeviceTypes[i] || d.Caps() != want[d.Name()] {
			t.Errorf("%s: type %s caps %+v", d.Name(), d.Type(), d.Caps())
		}
		_, herr := d.Hotplug(qemu.HotplugPortID(0))
		if !d.Caps().Hotplug && !errors.Is(herr, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) {
			t.Errorf("%s cannot be hot-plugged, but Hotplug answered %v", d.Name(), herr)
		}
	}
	if len(Of[*NIC](devs)) != 1 || Of[*PCI](devs)[0].Host() != "0000:01:00.0" {
		t.Error("Of")
	}
	if _, err := New(vmspec.Device{Name: "x", Type: api.DeviceDisk}); err == nil {
		t.Error("a disk entry without its section made a device")
	}
}

// The command line and the hot-plug commands come from the same values:
// what device_add and blockdev-add get is what -device and -blockdev get.
func TestHotplugMatchesTheCommandLine(t *testing.T) {
	spec := everyType("/vms/x")
	spec.RemoveDevice("cd0") // AHCI: no hot-plug
	for _, bus := range []api.DiskBus{api.DiskBusVirtioSCSI, api.DiskBusSATA} {
		spec.AddDevice(vmspec.NewDevice("", vmspec.Disk{Path: "/vms/x/" + string(bus) + ".qcow2", Format: "qcow2", SizeBytes: 64 << 20,
			Bus: bus, Cache: api.DiskCacheNone, Discard: api.DiskDiscardIgnore}))
	}
	devs, err := FromSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	nic := Of[*NIC](devs)[0]
	nic.TAP = &netdev.TAP{Files: []*os.File{os.Stdin, os.Stdin}} // numbered, never used
	cfg := qemu.Config{UUID: vmID, CPUs: 1, MemoryMiB: 128, QMPFD: 3}
	fds := NewFDs(5)
	for _, d := range devs {
		d.Configure(&cfg, fds)
	}
	cfg.Channels[0].FD = 7 // its socket is made by Prepare
	if len(fds.Files()) != 2 || !slices.Equal(cfg.NICs[0].FDs, []int{5, 6}) {
		t.Fatalf("fds %v, NIC %+v", fds.Files(), cfg.NICs[0])
	}
	args, err := cfg.Args()
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Join(args, "\n")
	// A cold-plugged device's bus and boot index are the command line's;
	// the rest must be the same.
	devices := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-device" {
			devices[withoutBus(t, args[i+1])["id"].(string)] = mustJSON(withoutBus(t, args[i+1]))
		}
	}
	for _, d := range devs {
		cmds, err := d.Hotplug("")
		if err != nil {
			continue
		}
		for _, c := range cmds {
			arg := mustJSON(c.Arguments)
			switch c.Execute {
			case "getfd":
				continue
			case "device_add":
				if m := withoutBus(t, arg); devices[m["id"].(string)] != mustJSON(m) {
					t.Errorf("%s: device_add %s, on the command line %s", d.Name(), arg, devices[m["id"].(string)])
				}
				continue
			case "netdev_add":
				// Over QMP the queue fds go by getfd's names.
				arg = strings.ReplaceAll(arg, `"fds":"net0-q0:net0-q1"`, `"fds":"5:6"`)
			}
			if !strings.Contains(argv, arg) {
				t.Errorf("%s: %s %s is not on the command line:\n%s", d.Name(), c.Execute, arg, argv)
			}
		}
	}
	cmds, _ := devs[0].Hotplug(qemu.HotplugPortID(1))
	if b, _ := json.Marshal(cmds[2]); string(b) != `{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"disk0","bus":"hotplug-1","drive":"disk0"}}` {
		t.Errorf("disk device_add %s", b)
	}
	unplug, _ := devs[0].Unplug()
	if len(unplug) != 3 || unplug[0].Execute != "device_del" {
		t.Errorf("disk unplug %+v", unplug)
	}
}

// A disk's bus decides what it can do live: virtio-blk plugs into a port,
// virtio-scsi onto the controller (plugged first on a port when the VM has
// none), sata neither plugs nor unplugs.
func TestDiskBuses(t *testing.T) {
	disk := func(bus api.DiskBus) Device {
		d, err := New(vmspec.NewDevice("disk1", vmspec.Disk{Path: "/vms/x/disk1.qcow2", Format: "qcow2", Bus: bus}))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	executes := func(cmds []Command) string {
		var out []string
		for _, c := range cmds {
			out = append(out, c.Execute+" "+mustJSON(c.Arguments))
		}
		return strings.Join(out, "\n")
	}
	nodes := `blockdev-add {"driver":"file","node-name":"disk1-file","filename":"/vms/x/disk1.qcow2","read-only":false,"discard":"unmap"}
blockdev-add {"driver":"qcow2","node-name":"disk1","file":"disk1-file","read-only":false,"discard":"unmap"}
`
	for _, tc := range []struct {
		bus     api.DiskBus
		port    string
		hotplug string // "" when refused
	}{
		{"", "hotplug-1", nodes + `device_add {"driver":"virtio-blk-pci","id":"disk1","bus":"hotplug-1","drive":"disk1"}`},
		{api.DiskBusVirtioBlk, "hotplug-0", nodes + `device_add {"driver":"virtio-blk-pci","id":"disk1","bus":"hotplug-0","drive":"disk1"}`},
		{api.DiskBusVirtioSCSI, "", nodes + `device_add {"driver":"scsi-hd","id":"disk1","bus":"scsi-0.0","drive":"disk1"}`},
		{api.DiskBusVirtioSCSI, "hotplug-1", `device_add {"driver":"virtio-scsi-pci","id":"scsi-0","bus":"hotplug-1"}
` + nodes + `device_add {"driver":"scsi-hd","id":"disk1","bus":"scsi-0.0","drive":"disk1"}`},
		{api.DiskBusSATA, "hotplug-0", ""},
	} {
		d := disk(tc.bus)
		cmds, err := d.Hotplug(tc.port)
		_, uerr := d.Unplug()
		if tc.hotplug == "" {
			for _, err := range []error{err, uerr} {
				if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) || !strings.Contains(err.Error(), "AHCI") {
					t.Errorf("%s: %v, want the AHCI controller named", tc.bus, err)
				}
			}
			if d.Caps().Hotplug {
				t.Errorf("%s: caps %+v", tc.bus, d.Caps())
			}
			continue
		}
		if err != nil || uerr != nil || !d.Caps().Hotplug {
			t.Fatalf("%s: %v, %v, caps %+v", tc.bus, err, uerr, d.Caps())
		}
		if got := executes(cmds); got != tc.hotplug {
			t.Errorf("%s on %q:\n%s\nwant\n%s", tc.bus, tc.port, got, tc.hotplug)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func withoutBus(t *testing.T, arg string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(arg), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "bus")
	delete(m, "bootindex")
	return m
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (scripts/install-deps.sh installs it)")
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

func TestDiskPrepareChecksTheImage(t *testing.T) {
	vmDir := t.TempDir()
	disk := filepath.Join(vmDir, "disk0.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", disk, "64M")
	var handed []string
	h := &Host{VMID: vmID, VMDir: vmDir, QEMUImg: "qemu-img", HandToQEMU: func(p ...string) error { handed = append(handed, p...); return nil }}
	prep := func(path, format string) error {
		d, _ := New(vmspec.NewDevice("disk0", vmspec.Disk{Path: path, Format: format}))
		return d.Prepare(context.Background(), h)
	}
	if err := prep(disk, "qcow2"); err != nil || !slices.Equal(handed, []string{disk}) {
		t.Fatalf("a good disk: %v, handed %v", err, handed)
	}
	if err := prep(disk, "vmdk"); err == nil {
		t.Error("a vmdk disk passed")
	}
	elsewhere := filepath.Join(t.TempDir(), "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", elsewhere, "64M")
	if err := prep(elsewhere, "qcow2"); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("a disk outside the VM's directory: %v", err)
	}
	link := filepath.Join(vmDir, "link.qcow2")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if err := prep(link, "qcow2"); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("a symlinked disk: %v", err)
	}
	overlay := filepath.Join(vmDir, "overlay.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", elsewhere, "-F", "qcow2", overlay)
	if err := prep(overlay, "qcow2"); err == nil {
		t.Error("a backing file outside the VM's directory passed")
	}
}

func TestMediaTPMAndChannelPrepare(t *testing.T) {
	vmDir := t.TempDir()
	var handed []string
	h := &Host{VMID: vmID, VMDir: vmDir, HandToQEMU: func(p ...string) error { handed = append(handed, p...); return nil }}
	ctx := context.Background()
	answers := filepath.Join(vmDir, "install", "answers.iso")
	if err := os.MkdirAll(filepath.Dir(answers), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(answers, []byte("iso"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(t.TempDir(), "os.iso")
	if err := os.WriteFile(shared, []byte("iso"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cd := range []*CDROM{NewCDROM("cd0", shared), NewCDROM("cd1", answers), NewCDROM("cd2", "")} {
		if err := cd.Prepare(ctx, h); err != nil {
			t.Errorf("%s: %v", cd.Name(), err)
		}
	}
	if !slices.Equal(handed, []string{answers}) {
		t.Errorf("handed %v: only the VM's own medium goes to QEMU's user", handed)
	}
	if err := NewCDROM("cd3", filepath.Join(vmDir, "missing.iso")).Prepare(ctx, h); err == nil || !strings.Contains(err.Error(), "cd3") {
		t.Errorf("a missing ISO: %v", err)
	}

	handed = nil
	state := filepath.Join(vmDir, "tpm")
	tpm, _ := New(vmspec.NewDevice("tpm0", vmspec.TPM{StateDir: state}))
	if err := tpm.Prepare(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "tpm2-00.permall"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	handed = nil
	if err := tpm.Prepare(ctx, h); err != nil || len(handed) != 2 {
		t.Errorf("tpm again: %v, handed %v", err, handed)
	}

	dev, _ := New(vmspec.NewDevice("channel0", vmspec.Channel{Port: "org.qemu.guest_agent.0"}))
	ch := dev.(*Channel)
	if err := ch.Prepare(ctx, h); err != nil {
		t.Fatal(err)
	}
	cfg := qemu.Config{}
	fds := NewFDs(9)
	ch.Configure(&cfg, fds)
	if cfg.Channels[0].FD != 9 || len(fds.Files()) != 1 || ch.Host == nil {
		t.Errorf("channel %+v", cfg.Channels)
	}
	for range 2 { // Release is safe to call more than once
		if err := ch.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ch.Host != nil {
		t.Error("release kept the socket")
	}
}
