// Package device is a VM's devices as the shim runs them, one file per
// type: each prepares what it needs on the host before QEMU starts and
// releases it after, renders its part of QEMU's configuration and the QMP
// commands that hot-plug it from the same values, and says what can change
// while the VM runs. It never imports the agent, the supervisor or the
// store: the shim uses it.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package device

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Device is one of a VM's devices.
type Device interface {
	// Name is the device's stable name, its QEMU id and node name.
	Name() string
	Type() api.DeviceType
	// Caps says what the device allows while the VM runs.
	Caps() Caps
	// Prepare takes what the device needs on the host before QEMU starts.
	Prepare(ctx context.Context, h *Host) error
	// Release gives back what Prepare took. It is safe to call whether or
	// not Prepare ran or succeeded, and more than once.
	Release(ctx context.Context) error
	// Configure adds the device to QEMU's configuration; the files QEMU
	// must inherit go through fds.
	Configure(cfg *qemu.Config, fds *FDs)
	// Hotplug is the QMP commands that add the prepared device to a
	// running VM, in order; port is a free hot-plug port
	// (qemu.HotplugPortID). A device that cannot be hot-plugged answers
	// FailedPrecondition.
	Hotplug(port string) ([]Command, error)
	// Unplug is the QMP commands that remove it again, in order.
	Unplug() ([]Command, error)
}

// Caps are what a device allows while its VM runs.
type Caps struct {
	// Hotplug: it can be added to and removed from a running VM.
	Hotplug bool
	// LiveUpdate: its settings can change while the VM runs (a CD-ROM's
	// disc, a NIC's bridge, the balloon's target).
	LiveUpdate bool
	// Migrate: a VM with it can be migrated live to another host.
	Migrate bool
}

// Command is one QMP command; File, when set, travels with it (getfd).
type Command struct {
	Execute   string   `json:"execute"`
	Arguments any      `json:"arguments,omitempty"`
	File      *os.File `json:"-"`
}

// Host is what devices need from the host and the shim.
type Host struct {
	VMID string
	// VMDir is the VM's directory: its disks and its own files live there.
	VMDir string
	// RuntimeDir is the VM's volatile directory, which the unit's cleanup
	// reads and removes: what a device must undo after a crash is
	// recorded there.
	RuntimeDir string
	// Sysfs is the host's sysfs, where PCI devices change drivers.
	Sysfs sysfs.Tree
	// ImagesDir is the image store, whose images may back a linked clone.
	ImagesDir string
	// QEMUImg is the qemu-img binary that checks a disk's backing chain.
	QEMUImg string
	// HandToQEMU gives files to the account QEMU runs as; nil leaves them.
	HandToQEMU func(paths ...string) error
	// Queues is how many queues each NIC's TAP gets.
	Queues int
	// Progress reports a step worth an event ("tap ... attached to br0").
	Progress func(format string, args ...any)
}

func (h *Host) hand(paths ...string) error {
	if h.HandToQEMU == nil || len(paths) == 0 {
		return nil
	}
	return h.HandToQEMU(paths...)
}

func (h *Host) progress(format string, args ...any) {
	if h.Progress != nil {
		h.Progress(format, args...)
	}
}

// inVMDir reports whether p lies inside the VM's directory.
func (h *Host) inVMDir(p string) bool {
	rel, err := filepath.Rel(h.VMDir, p)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

// FromSpec makes the devices of a spec, in its order.
func FromSpec(spec *vmspec.Spec) ([]Device, error) {
	devs := make([]Device, 0, len(spec.Devices))
	for _, d := range spec.Devices {
		dev, err := New(d)
		if err != nil {
			return nil, err
		}
		devs = append(devs, dev)
	}
	return devs, nil
}

// New makes the device a spec entry describes.
func New(d vmspec.Device) (Device, error) {
	switch {
	case d.Type == api.DeviceDisk && d.Disk != nil:
		return &Disk{name: d.Name, spec: *d.Disk}, nil
	case d.Type == api.DeviceCDROM && d.CDROM != nil:
		return &CDROM{name: d.Name, spec: *d.CDROM}, nil
	case d.Type == api.DeviceNIC && d.NIC != nil:
		return &NIC{name: d.Name, spec: *d.NIC}, nil
	case d.Type == api.DevicePCI && d.PCI != nil:
		return &PCI{name: d.Name, spec: *d.PCI}, nil
	case d.Type == api.DeviceUSB && d.USB != nil:
		return newUSB(d.Name, *d.USB)
	case d.Type == api.DeviceTPM && d.TPM != nil:
		return &TPM{name: d.Name, spec: *d.TPM}, nil
	case d.Type == api.DeviceBalloon && d.Balloon != nil:
		return &Balloon{name: d.Name, spec: *d.Balloon}, nil
	case d.Type == api.DeviceChannel && d.Channel != nil:
		return &Channel{name: d.Name, spec: *d.Channel}, nil
	}
	return nil, errdefs.Invalid("devices", "device %q: no %q section for its type %q", d.Name, d.Type, d.Type)
}

// Of lists the devices of type t.
func Of[T Device](devs []Device) []T {
	var out []T
	for _, d := range devs {
		if t, ok := d.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// FDs numbers the files QEMU inherits: os/exec passes ExtraFiles[i] as fd
// 3+i, and the first few are the shim's own (QMP, serial).
type FDs struct {
	first int
	files []*os.File
}

// NewFDs numbers files from first on.
func NewFDs(first int) *FDs { return &FDs{first: first} }

// Pass adds f and returns its number in QEMU.
func (f *FDs) Pass(file *os.File) int {
	f.files = append(f.files, file)
	return f.first + len(f.files) - 1
}

// Files are the files passed, in fd order.
func (f *FDs) Files() []*os.File { return f.files }

// notHotpluggable is the error of a device type that cannot be hot-plugged.
func notHotpluggable(t api.DeviceType) error {
	return errdefs.FailedPrecondition("a %s device cannot be hot-plugged", t)
}

// statFile checks that a file QEMU will open exists and is a regular file.
func statFile(what, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", what, p)
	}
	return nil
}

func deviceDel(id string) Command {
	return Command{Execute: "device_del", Arguments: map[string]any{"id": id}}
}

func blockdevDel(node string) Command {
	return Command{Execute: "blockdev-del", Arguments: map[string]any{"node-name": node}}
}
