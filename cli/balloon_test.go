package cli

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// vm balloon sends the unit its flag names, to the VM's balloon.
func TestBalloonCommandSendsItsFlags(t *testing.T) {
	f := startDiskAgent(t)
	for _, args := range [][]string{
		{"vm", "balloon", "vm1", "--target-mib", "160"},
		{"vm", "balloon", "vm1", "--target-gb", "0.5"},
	} {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append([]string{"--socket", f.sock, "-o", "json"}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{`PUT /v1/vms/vm1/balloon {"targetMiB":160}`, `PUT /v1/vms/vm1/balloon {"targetGB":0.5}`}
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(f.got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMemoryTable(t *testing.T) {
	total, avail := int64(200<<20), int64(150<<20)
	for m, want := range map[*api.VMMemory]string{
		{TotalBytes: 256 << 20, TargetBytes: 160 << 20}: "256.0 MiB  160.0 MiB  -       -            -",
		{TotalBytes: 256 << 20, TargetBytes: 160 << 20, ActualBytes: 160 << 20,
			Stats: &api.MemoryStats{LastUpdate: time.Unix(1, 0), TotalBytes: &total, AvailableBytes: &avail}}: "256.0 MiB  160.0 MiB  160.0 MiB  200.0 MiB    150.0 MiB",
	} {
		var b bytes.Buffer
		w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		memoryTable(*m)(w)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(b.String(), "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], want) {
			t.Errorf("table:\n%s\nwant a row beginning %q", b.String(), want)
		}
	}
}
