package hostpci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
)

const gpu, audio = "0000:01:00.0", "0000:01:00.1"

// kernelTree is a fixture tree whose writes the simulated kernel acts on.
func kernelTree(t *testing.T, name string) (sysfs.Tree, *sysfstest.Kernel) {
	t.Helper()
	root := fixture(t, name)
	k := &sysfstest.Kernel{Root: root}
	return sysfs.Tree{Root: root, Write: k.Write}, k
}

func driversOf(t *testing.T, tree sysfs.Tree, addrs ...string) []Binding {
	t.Helper()
	bs, err := Drivers(tree, addrs)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// TestBindVFIOAndBack: a managed start takes the GPU and its audio from
// the host's drivers the way libvirt does, and the stop gives each back
// to its own driver; a second restore finds nothing to do.
func TestBindVFIOAndBack(t *testing.T) {
	tree, k := kernelTree(t, "gpu-audio-host")
	before := driversOf(t, tree, gpu, audio)
	if want := []Binding{{gpu, "nouveau"}, {audio, "snd_hda_intel"}}; !reflect.DeepEqual(before, want) {
		t.Fatalf("drivers %+v, want %+v", before, want)
	}
	if err := BindVFIO(t.Context(), tree, []string{gpu, audio}); err != nil {
		t.Fatal(err)
	}
	wantWrites := []string{
		"bus/pci/devices/" + gpu + "/driver_override vfio-pci",
		"bus/pci/devices/" + gpu + "/driver/unbind " + gpu,
		"bus/pci/drivers_probe " + gpu,
		"bus/pci/devices/" + audio + "/driver_override vfio-pci",
		"bus/pci/devices/" + audio + "/driver/unbind " + audio,
		"bus/pci/drivers_probe " + audio,
	}
	if got := k.Writes(); !slices.Equal(got, wantWrites) {
		t.Errorf("writes\n got %q\nwant %q", got, wantWrites)
	}
	if got := driversOf(t, tree, gpu, audio); got[0].Driver != VFIODriver || got[1].Driver != VFIODriver {
		t.Fatalf("after the bind: %+v", got)
	}
	// The inventory sees them on vfio-pci, and the check passes without managed.
	if err := list(t, tree.Root, nil).CheckPassthrough([]Want{{Field: "address", Address: gpu}}, nil); err != nil {
		t.Errorf("check after the bind: %v", err)
	}

	if err := RestoreDrivers(t.Context(), tree, before); err != nil {
		t.Fatal(err)
	}
	if got := driversOf(t, tree, gpu, audio); !reflect.DeepEqual(got, before) {
		t.Errorf("after the restore: %+v, want %+v", got, before)
	}
	for _, addr := range []string{gpu, audio} {
		if o, _ := sysfs.Attr(filepath.Join(tree.Root, "bus/pci/devices", addr), "driver_override"); o != "" {
			t.Errorf("%s keeps driver_override %q", addr, o)
		}
	}
	// Newest first: the audio function goes back before the GPU.
	restoreWrites := k.Writes()[len(wantWrites):]
	if !strings.Contains(restoreWrites[0], audio) || !strings.Contains(restoreWrites[len(restoreWrites)-1], "drivers/nouveau/bind "+gpu) {
		t.Errorf("restore writes %q", restoreWrites)
	}
	n := len(k.Writes())
	if err := RestoreDrivers(t.Context(), tree, before); err != nil {
		t.Fatal(err)
	}
	for _, w := range k.Writes()[n:] {
		if !strings.Contains(w, "driver_override") {
			t.Errorf("a second restore wrote %q", w)
		}
	}
}

// TestBindVFIOLeavesVFIODevices: devices already on vfio-pci are neither
// touched at the start nor taken from vfio-pci at the stop.
func TestBindVFIOLeavesVFIODevices(t *testing.T) {
	tree, k := kernelTree(t, "gpu-audio")
	before := driversOf(t, tree, gpu, audio)
	if err := BindVFIO(t.Context(), tree, []string{gpu, audio}); err != nil {
		t.Fatal(err)
	}
	if err := RestoreDrivers(t.Context(), tree, before); err != nil {
		t.Fatal(err)
	}
	if w := k.Writes(); len(w) != 0 {
		t.Errorf("writes %q", w)
	}
}

func TestBindVFIOWithoutTheModule(t *testing.T) {
	tree, k := kernelTree(t, "gpu-audio-host")
	if err := os.Remove(filepath.Join(tree.Root, "bus/pci/drivers/vfio-pci")); err != nil {
		t.Fatal(err)
	}
	err := BindVFIO(t.Context(), tree, []string{gpu})
	if err == nil || !strings.Contains(err.Error(), "modprobe vfio-pci") {
		t.Errorf("got %v, want the module named", err)
	}
	if w := k.Writes(); len(w) != 0 {
		t.Errorf("writes %q", w)
	}
}

// TestBindVFIOFailures: an unbind or an override the kernel refuses names
// the device; a restore of what the failed bind did brings the host back.
func TestBindVFIOFailures(t *testing.T) {
	t.Run("unbind refused", func(t *testing.T) {
		tree, k := kernelTree(t, "gpu-audio-host")
		before := driversOf(t, tree, gpu, audio)
		k.FailWrites("bus/pci/devices/"+audio+"/driver/unbind", syscall.EBUSY)
		err := BindVFIO(t.Context(), tree, []string{gpu, audio})
		if err == nil || !strings.Contains(err.Error(), audio) || !strings.Contains(err.Error(), "snd_hda_intel") || !errors.Is(err, syscall.EBUSY) {
			t.Fatalf("got %v", err)
		}
		if err := RestoreDrivers(t.Context(), tree, before); err != nil {
			t.Fatal(err)
		}
		if got := driversOf(t, tree, gpu, audio); !reflect.DeepEqual(got, before) {
			t.Errorf("after the restore: %+v, want %+v", got, before)
		}
	})
	t.Run("override refused", func(t *testing.T) {
		tree, k := kernelTree(t, "gpu-audio-host")
		k.FailWrites("bus/pci/devices/"+gpu+"/driver_override", syscall.EINVAL)
		err := BindVFIO(t.Context(), tree, []string{gpu})
		if err == nil || !strings.Contains(err.Error(), gpu) || !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("got %v", err)
		}
		if got := driversOf(t, tree, gpu); got[0].Driver != "nouveau" {
			t.Errorf("the GPU moved to %s", got[0].Driver)
		}
	})
}

// TestRestoreRefusesABadRecord: the record names a path element for the
// driver; one that could leave the drivers' directory is refused.
func TestRestoreRefusesABadRecord(t *testing.T) {
	tree, k := kernelTree(t, "gpu-audio")
	err := RestoreDrivers(t.Context(), tree, []Binding{{gpu, "../../../etc"}, {"../x", "nouveau"}})
	if err == nil || !strings.Contains(err.Error(), "not a driver's name") || !strings.Contains(err.Error(), "not a PCI address") {
		t.Errorf("got %v", err)
	}
	if w := k.Writes(); len(w) != 0 {
		t.Errorf("writes %q", w)
	}
}
