package device

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func testBalloon(t *testing.T) *Balloon {
	t.Helper()
	d, err := New(vmspec.NewDevice("balloon0", vmspec.Balloon{}))
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Balloon)
}

func TestBalloonCommands(t *testing.T) {
	b := testBalloon(t)
	for _, c := range []struct {
		cmd  Command
		want string
	}{
		{b.Target(96 << 20), `balloon {"value":100663296}`},
		{b.PollStats(5 * time.Second), `qom-set {"path":"/machine/peripheral/balloon0","property":"guest-stats-polling-interval","value":5}`},
		{b.QueryStats(), `qom-get {"path":"/machine/peripheral/balloon0","property":"guest-stats"}`},
	} {
		args, err := json.Marshal(c.cmd.Arguments)
		if got := c.cmd.Execute + " " + string(args); err != nil || got != c.want {
			t.Errorf("got %s (%v)\nwant %s", got, err, c.want)
		}
	}
}

// qemuStats is what QEMU 7.2 answered for a booted Linux guest; the
// never-reported figures are all ones.
const qemuStats = `{"stats": {"stat-htlb-pgalloc": 0, "stat-swap-out": 0, "stat-available-memory": 180428800,
 "stat-htlb-pgfail": 0, "stat-free-memory": 190119936, "stat-minor-faults": 3069, "stat-major-faults": 12,
 "stat-total-memory": 229126144, "stat-swap-in": 0, "stat-disk-caches": 18446744073709551615}, "last-update": 1796345460}`

func TestGuestStatsMemory(t *testing.T) {
	var g GuestStats
	if err := json.Unmarshal([]byte(qemuStats), &g); err != nil {
		t.Fatal(err)
	}
	m := g.Memory()
	if m == nil || !m.LastUpdate.Equal(time.Unix(1796345460, 0)) {
		t.Fatalf("stats %+v", m)
	}
	for name, got := range map[string]*int64{"total": m.TotalBytes, "free": m.FreeBytes, "available": m.AvailableBytes,
		"minor faults": m.MinorFaults, "major faults": m.MajorFaults, "swap in": m.SwapInBytes} {
		if got == nil {
			t.Errorf("%s is missing", name)
		}
	}
	if *m.TotalBytes != 229126144 || *m.MajorFaults != 12 || m.DiskCachesBytes != nil {
		t.Errorf("total %d, major faults %d, disk caches %v (unreported: want absent)", *m.TotalBytes, *m.MajorFaults, m.DiskCachesBytes)
	}
	// Before the guest's driver first reports, there are no statistics.
	g = GuestStats{Stats: map[string]uint64{"stat-total-memory": math.MaxUint64}}
	if g.Memory() != nil {
		t.Errorf("no report yet: %+v", g.Memory())
	}
}

// FuzzGuestStats: whatever QEMU relays from the guest, the API gets
// figures that are absent or not negative, and nothing panics.
func FuzzGuestStats(f *testing.F) {
	f.Add([]byte(qemuStats))
	f.Add([]byte(`{"stats": {"stat-total-memory": 9223372036854775808}, "last-update": 1}`))
	f.Add([]byte(`{"stats": {}, "last-update": -5}`))
	f.Add([]byte(`{"last-update": 99999999999999999}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var g GuestStats
		if json.Unmarshal(data, &g) != nil {
			return
		}
		m := g.Memory()
		if m == nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("stats do not encode: %v", err)
		}
		var back api.MemoryStats
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		for _, v := range []*int64{m.TotalBytes, m.FreeBytes, m.AvailableBytes, m.DiskCachesBytes, m.SwapInBytes, m.SwapOutBytes,
			m.MajorFaults, m.MinorFaults, m.HugetlbAllocations, m.HugetlbFailures} {
			if v != nil && *v < 0 {
				t.Fatalf("negative figure in %s", out)
			}
		}
	})
}
