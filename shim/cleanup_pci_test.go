package shim

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/hostpci"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/sysfstest"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestCleanupGivesManagedPCIBack: a shim killed while its managed GPU and
// audio function were on vfio-pci leaves their record; the unit's cleanup
// gives both back to the host's drivers. A device the kernel will not let
// go keeps its record, alone in the runtime directory, and the next
// cleanup finishes the job.
func TestCleanupGivesManagedPCIBack(t *testing.T) {
	n := guest.NewNetwork(t, "", 0, "") // Cleanup removes TAPs too: root, in a namespace of its own
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
	const gpu, audio = "0000:01:00.0", "0000:01:00.1"
	root := sysfstest.Build(t, "../pkg/hostpci/testdata/gpu-audio-host.tree")
	kernel := &sysfstest.Kernel{Root: root}
	tree := sysfs.Tree{Root: root, Write: kernel.Write}
	dir := t.TempDir()
	layout := vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}
	runtime := layout.RuntimeDir(id)
	if err := os.MkdirAll(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	dev, err := device.New(vmspec.NewDevice("pci0", vmspec.PCI{Host: gpu, Functions: []string{audio}, Managed: true}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := dev.Prepare(ctx, &device.Host{VMID: id, RuntimeDir: runtime, Sysfs: tree}); err != nil {
		t.Fatal(err)
	}
	// The shim dies here: no Release.
	drivers := func() []hostpci.Binding {
		bs, err := hostpci.Drivers(tree, []string{gpu, audio})
		if err != nil {
			t.Fatal(err)
		}
		return bs
	}
	onHost := []hostpci.Binding{{Address: gpu, Driver: "nouveau"}, {Address: audio, Driver: "snd_hda_intel"}}
	cfg := CleanupConfig{VMID: id, Layout: layout, Logger: New(Config{}).log, Sysfs: tree}

	kernel.FailWrites("bus/pci/devices/"+gpu+"/driver/unbind", syscall.EBUSY)
	if err := n.Do(func() error { return Cleanup(ctx, cfg) }); err == nil || !strings.Contains(err.Error(), gpu) {
		t.Fatalf("cleanup with the GPU stuck: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(runtime, "*"))
	if len(left) != 1 || !strings.HasPrefix(filepath.Base(left[0]), "pci-drivers-") {
		t.Errorf("runtime dir holds %v, want the record alone", left)
	}
	if got := drivers(); got[0].Driver != hostpci.VFIODriver || got[1].Driver != "snd_hda_intel" {
		t.Errorf("after the failed cleanup: %+v", got)
	}

	kernel.FailWrites("bus/pci/devices/"+gpu+"/driver/unbind", nil)
	if err := n.Do(func() error { return Cleanup(ctx, cfg) }); err != nil {
		t.Fatal(err)
	}
	if got := drivers(); !reflect.DeepEqual(got, onHost) {
		t.Errorf("after cleanup: %+v, want %+v", got, onHost)
	}
	if _, err := os.Stat(runtime); !os.IsNotExist(err) {
		t.Errorf("runtime dir: %v", err)
	}
}
