package device

import (
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// HotplugPorts is how many empty root ports a VM boots with, for the
// devices plugged in while it runs.
const HotplugPorts = 4

// QEMUConfig maps a spec and the devices of one start to QEMU's typed
// configuration; the files QEMU must inherit go through fds. The shim adds
// its own channels (QMP, the serial console) and the platform.
func QEMUConfig(spec *vmspec.Spec, devs []Device, fds *FDs) *qemu.Config {
	cfg := &qemu.Config{
		UUID:      spec.ID,
		Accel:     qemu.Accel(spec.Accel),
		CPUs:      spec.CPUs,
		MemoryMiB: spec.MemoryMiB,
		Display: qemu.Display{
			Protocol: qemu.DisplayProtocol(spec.Display.Protocol), Listen: spec.Display.Listen, Port: spec.Display.Port,
		},
		HotplugPorts: HotplugPorts,
		Windows:      spec.Platform == vmspec.PlatformWindows,
		Audio:        spec.Audio,
	}
	for _, d := range devs {
		d.Configure(cfg, fds)
	}
	if b := spec.Boot; b != nil {
		cfg.Boot = &qemu.DirectBoot{Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	return cfg
}

// CheckRootBus refuses a spec whose devices would not all fit on q35's
// PCIe root bus at a cold boot, beside the reserved hot-plug ports: QEMU
// would refuse to start. A disk past the first takes a root port of its own.
func CheckRootBus(spec *vmspec.Spec) error {
	devs, err := FromSpec(spec)
	if err != nil {
		return err
	}
	return QEMUConfig(spec, devs, NewFDs(0)).CheckRootBus()
}
