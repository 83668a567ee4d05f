package device

import (
	"context"
	"math"
	"time"

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

// PollStats is the QMP command that has QEMU ask the guest's driver for
// its memory statistics every interval (whole seconds; 0 stops it). It
// may be set before the driver loads: QEMU asks once the driver is there.
func (b *Balloon) PollStats(interval time.Duration) Command {
	return Command{Execute: "qom-set", Arguments: map[string]any{
		"path": qemu.PeripheralPath(b.name), "property": "guest-stats-polling-interval", "value": int64(interval / time.Second),
	}}
}

// QueryStats is the QMP command whose answer is a GuestStats.
func (b *Balloon) QueryStats() Command {
	return Command{Execute: "qom-get", Arguments: map[string]any{"path": qemu.PeripheralPath(b.name), "property": "guest-stats"}}
}

// GuestStats is a balloon's guest-stats property as qom-get answers it:
// the figures the guest last reported (by QEMU's names), each all ones
// until the guest reports it, and when, in seconds since the epoch (0:
// never). The figures are the guest's word, so nothing about them is
// trusted beyond their type.
type GuestStats struct {
	LastUpdate int64             `json:"last-update"`
	Stats      map[string]uint64 `json:"stats"`
}

// lastUpdateMax is the end of year 9999, the last time JSON can spell.
const lastUpdateMax = 253402300799

// Memory is the statistics as the API shows them, or nil when the guest
// never reported. A figure it did not report, or one past int64, is absent.
func (g GuestStats) Memory() *api.MemoryStats {
	if g.LastUpdate <= 0 || g.LastUpdate > lastUpdateMax {
		return nil
	}
	m := &api.MemoryStats{LastUpdate: time.Unix(g.LastUpdate, 0).UTC()}
	for name, field := range map[string]**int64{
		"stat-total-memory":     &m.TotalBytes,
		"stat-free-memory":      &m.FreeBytes,
		"stat-available-memory": &m.AvailableBytes,
		"stat-disk-caches":      &m.DiskCachesBytes,
		"stat-swap-in":          &m.SwapInBytes,
		"stat-swap-out":         &m.SwapOutBytes,
		"stat-major-faults":     &m.MajorFaults,
		"stat-minor-faults":     &m.MinorFaults,
		"stat-htlb-pgalloc":     &m.HugetlbAllocations,
		"stat-htlb-pgfail":      &m.HugetlbFailures,
	} {
		if v, ok := g.Stats[name]; ok && v <= math.MaxInt64 {
			n := int64(v)
			*field = &n
		}
	}
	return m
}
