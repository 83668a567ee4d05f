package vmspec

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

func TestSnapshotsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snapshots.json")
	s, err := LoadSnapshots(p)
	if err != nil || len(s.Snapshots) != 0 {
		t.Fatalf("missing file: %+v %v", s, err)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	s.Snapshots = append(s.Snapshots, api.Snapshot{ID: "u1", VMID: "v", Name: "a", CreatedAt: at, IsCurrent: true,
		PowerState: api.StatusOff, Disks: []string{"disk0"}})
	s.Current = "a"
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSnapshots(p)
	if err != nil || got.Current != "a" || got.Find("a") != 0 || got.Find("b") != -1 {
		t.Fatalf("loaded %+v %v", got, err)
	}
	if sn := got.Snapshots[0]; sn.IsCurrent || !sn.CreatedAt.Equal(at) || sn.Disks[0] != "disk0" {
		t.Errorf("loaded %+v: IsCurrent is not stored, the rest is", sn)
	}
	c := got.Clone()
	c.Snapshots[0].Disks[0] = "x"
	if got.Snapshots[0].Disks[0] != "disk0" {
		t.Error("Clone shares the disks")
	}
	if err := os.WriteFile(p, []byte(`{"version":9,"snapshots":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSnapshots(p); err == nil {
		t.Error("an unknown version loads")
	}
}
