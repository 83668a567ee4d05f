package device

import (
	"context"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Balloon is a virtio memory balloon.
type Balloon struct {
	name string
	spec vmspec.Balloon
}

// Name is the balloon's name, also its QEMU id.
func (b *Balloon) Name() string { return b.name }

// Type is always api.DeviceBalloon.
func (b *Balloon) Type() api.DeviceType { return api.DeviceBalloon }

// Caps says the balloon plugs into a free root port, its target changes
// live (QMP balloon), and it migrates.
func (b *Balloon) Caps() Caps { return Caps{Hotplug: true, LiveUpdate: true, Migrate: true} }

// Prepare has nothing to do: the balloon takes nothing from the host.
func (b *Balloon) Prepare(context.Context, *Host) error { return nil }

// Release has nothing to give back.
func (b *Balloon) Release(context.Context) error { return nil }

func (b *Balloon) qemu() qemu.Balloon {
	return qemu.Balloon{ID: b.name, FreePageReporting: b.spec.FreePageReporting, DeflateOnOOM: b.spec.DeflateOnOOM}
}

// Configure sets the VM's balloon; a VM has at most one.
func (b *Balloon) Configure(cfg *qemu.Config, _ *FDs) {
	q := b.qemu()
	cfg.Balloon = &q
}

// Hotplug adds the balloon on port.
func (b *Balloon) Hotplug(port string) ([]Command, error) {
	dev := b.qemu().Device()
	dev.Bus = port
	return []Command{{Execute: "device_add", Arguments: dev}}, nil
}

// Unplug removes the balloon.
func (b *Balloon) Unplug() ([]Command, error) { return []Command{deviceDel(b.name)}, nil }

// Target is the QMP command that asks the guest to leave it bytes of memory.
func (b *Balloon) Target(bytes int64) Command {
	return Command{Execute: "balloon", Arguments: map[string]any{"value": bytes}}
}
