package device

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

const gpu, audio = "0000:01:00.0", "0000:01:00.1"

// pciHost is a device host on a hostpci fixture tree whose writes the
// simulated kernel acts on; what is handed to QEMU's user is recorded.
type pciHost struct {
	*Host
	kernel *sysfstest.Kernel
	handed []string
}

func newPCIHost(t *testing.T, tree string) *pciHost {
	t.Helper()
	root := sysfstest.Build(t, filepath.Join("../hostpci/testdata", tree+".tree"))
	ph := &pciHost{kernel: &sysfstest.Kernel{Root: root}}
	ph.Host = &Host{VMID: vmID, VMDir: t.TempDir(), RuntimeDir: t.TempDir(),
		Sysfs:      sysfs.Tree{Root: root, Write: ph.kernel.Write},
		HandToQEMU: func(p ...string) error { ph.handed = append(ph.handed, p...); return nil }}
	return ph
}

func (ph *pciHost) drivers(t *testing.T) []hostpci.Binding {
	t.Helper()
	bs, err := hostpci.Drivers(ph.Sysfs, []string{gpu, audio})
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func gpuWithAudio(managed bool) *PCI {
	return &PCI{name: "pci0", spec: vmspec.PCI{Host: gpu, Functions: []string{audio}, Managed: managed}}
}

var hostDrivers = []hostpci.Binding{{Address: gpu, Driver: "nouveau"}, {Address: audio, Driver: "snd_hda_intel"}}

// TestManagedPCI: a managed GPU and its audio function go to vfio-pci at
// the start, their drivers recorded first, QEMU's user gets the vfio
// nodes, and the stop gives both back to the host's drivers.
func TestManagedPCI(t *testing.T) {
	ph := newPCIHost(t, "gpu-audio-host")
	p := gpuWithAudio(true)
	if err := p.Prepare(t.Context(), ph.Host); err != nil {
		t.Fatal(err)
	}
	for _, b := range ph.drivers(t) {
		if b.Driver != hostpci.VFIODriver {
			t.Errorf("%s is on %s after Prepare", b.Address, b.Driver)
		}
	}
	var recorded []hostpci.Binding
	b, err := os.ReadFile(pciDriversFile(ph.RuntimeDir, "pci0"))
	if err != nil || json.Unmarshal(b, &recorded) != nil || !reflect.DeepEqual(recorded, hostDrivers) {
		t.Errorf("record %s (%v), want %+v", b, err, hostDrivers)
	}
	if want := []string{"/dev/vfio/vfio", "/dev/vfio/1"}; !slices.Equal(ph.handed, want) {
		t.Errorf("handed %v, want %v", ph.handed, want)
	}
	var cfg qemu.Config
	p.Configure(&cfg, nil)
	if want := []qemu.HostPCI{{ID: "pci0", Host: gpu, Functions: []string{audio}}}; !reflect.DeepEqual(cfg.PCIs, want) {
		t.Errorf("config %+v", cfg.PCIs)
	}

	if err := p.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := ph.drivers(t); !reflect.DeepEqual(got, hostDrivers) {
		t.Errorf("after Release: %+v", got)
	}
	if _, err := os.Stat(pciDriversFile(ph.RuntimeDir, "pci0")); !os.IsNotExist(err) {
		t.Errorf("the record stays: %v", err)
	}
	n := len(ph.kernel.Writes())
	if err := p.Release(t.Context()); err != nil || len(ph.kernel.Writes()) != n {
		t.Errorf("a second Release: %v, writes %q", err, ph.kernel.Writes()[n:])
	}
}

// TestManagedPCIAfterACrash: a shim that dies with the devices on
// vfio-pci leaves their record, from which the unit's cleanup gives them
// back; a second cleanup finds nothing.
func TestManagedPCIAfterACrash(t *testing.T) {
	ph := newPCIHost(t, "gpu-audio-host")
	if err := gpuWithAudio(true).Prepare(t.Context(), ph.Host); err != nil {
		t.Fatal(err)
	}
	if err := RestorePCIDrivers(t.Context(), ph.Sysfs, ph.RuntimeDir); err != nil {
		t.Fatal(err)
	}
	if got := ph.drivers(t); !reflect.DeepEqual(got, hostDrivers) {
		t.Errorf("after cleanup: %+v", got)
	}
	if left, _ := filepath.Glob(filepath.Join(ph.RuntimeDir, "*")); len(left) != 0 {
		t.Errorf("left %v", left)
	}
	if err := RestorePCIDrivers(t.Context(), ph.Sysfs, ph.RuntimeDir); err != nil {
		t.Error(err)
	}
}

// TestManagedPCIBindFails: the kernel refuses to take the audio function
// from its driver; the start fails naming it, and the release the shim
// then runs puts the GPU back too.
func TestManagedPCIBindFails(t *testing.T) {
	ph := newPCIHost(t, "gpu-audio-host")
	ph.kernel.FailWrites("bus/pci/devices/"+audio+"/driver/unbind", syscall.EBUSY)
	p := gpuWithAudio(true)
	err := p.Prepare(t.Context(), ph.Host)
	if err == nil || !strings.Contains(err.Error(), audio) || !strings.Contains(err.Error(), "snd_hda_intel") {
		t.Fatalf("Prepare: %v", err)
	}
	if len(ph.handed) != 0 {
		t.Errorf("handed %v", ph.handed)
	}
	if err := p.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := ph.drivers(t); !reflect.DeepEqual(got, hostDrivers) {
		t.Errorf("after Release: %+v", got)
	}
}

// TestPCIOnVFIO: a device already on vfio-pci is only handed to QEMU's
// user, and its unit allows its group's node; a managed one's unit allows
// vfio's class, whose node appears only at the start.
func TestPCIOnVFIO(t *testing.T) {
	ph := newPCIHost(t, "gpu-audio")
	p := gpuWithAudio(false)
	if err := p.Prepare(t.Context(), ph.Host); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w := ph.kernel.Writes(); len(w) != 0 {
		t.Errorf("writes %q", w)
	}
	if want := []string{"/dev/vfio/vfio", "/dev/vfio/1"}; !slices.Equal(ph.handed, want) {
		t.Errorf("handed %v", ph.handed)
	}
	if got, want := p.DeviceAllow(ph.Sysfs.Root), []string{"/dev/vfio/vfio", "/dev/vfio/1"}; !slices.Equal(got, want) {
		t.Errorf("DeviceAllow %v, want %v", got, want)
	}
	if got, want := gpuWithAudio(true).DeviceAllow(ph.Sysfs.Root), []string{"/dev/vfio/vfio", "char-vfio"}; !slices.Equal(got, want) {
		t.Errorf("managed DeviceAllow %v, want %v", got, want)
	}
}

// TestPCIStartRefusals: a ROM file that is not there is found before any
// device moves; a host without an IOMMU gives the device no group.
func TestPCIStartRefusals(t *testing.T) {
	ph := newPCIHost(t, "gpu-audio-host")
	p := gpuWithAudio(true)
	p.spec.ROMFile = filepath.Join(t.TempDir(), "gone.rom")
	if err := p.Prepare(t.Context(), ph.Host); err == nil || !strings.Contains(err.Error(), "romFile") {
		t.Errorf("missing ROM: %v", err)
	}
	if w := ph.kernel.Writes(); len(w) != 0 {
		t.Errorf("writes %q", w)
	}
	off := newPCIHost(t, "iommu-off")
	if err := gpuWithAudio(false).Prepare(t.Context(), off.Host); err == nil || !strings.Contains(err.Error(), "IOMMU") {
		t.Errorf("IOMMU off: %v", err)
	}
}

func TestPCIHotplugAndUnplug(t *testing.T) {
	p := gpuWithAudio(false)
	cmds, err := p.Hotplug("hotplug-1")
	if err != nil || len(cmds) != 2 {
		t.Fatalf("%+v %v", cmds, err)
	}
	if first, last := cmds[0].Arguments.(qemu.Device), cmds[1].Arguments.(qemu.Device); first.Host != audio || last.Host != gpu || !last.Multifunction {
		t.Errorf("hot-plug order %+v then %+v", first, last)
	}
	if un, _ := p.Unplug(); len(un) != 1 || un[0].Arguments.(map[string]any)["id"] != "pci0" {
		t.Errorf("unplug %+v", un)
	}
}
