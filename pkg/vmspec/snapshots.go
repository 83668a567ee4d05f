package vmspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
)

// SnapshotsFile is the VM's snapshot metadata beside its spec: what the
// qcow2 images do not hold (description, memory, power state, disks).
func (l Layout) SnapshotsFile(id string) string { return filepath.Join(l.VMDir(id), "snapshots.json") }

// snapshotsVersion is the version of the snapshots file this build writes.
const snapshotsVersion = 1

// Snapshots is a VM's snapshot metadata, oldest first. IsCurrent is not
// stored per entry: Current names the current snapshot.
type Snapshots struct {
	Version   int            `json:"version"`
	Current   string         `json:"current,omitempty"`
	Snapshots []api.Snapshot `json:"snapshots"`
}

// LoadSnapshots reads a VM's snapshot metadata; a missing file is a VM
// without snapshots.
func LoadSnapshots(path string) (*Snapshots, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Snapshots{Version: snapshotsVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	var s Snapshots
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshots %s: %w", path, err)
	}
	if s.Version != snapshotsVersion {
		return nil, fmt.Errorf("snapshots %s: version %d, this build reads %d", path, s.Version, snapshotsVersion)
	}
	for i := range s.Snapshots {
		s.Snapshots[i].IsCurrent = false
	}
	return &s, nil
}

// Save writes the metadata atomically with mode 0600.
func (s *Snapshots) Save(path string) error {
	c := Snapshots{Version: snapshotsVersion, Current: s.Current, Snapshots: make([]api.Snapshot, len(s.Snapshots))}
	copy(c.Snapshots, s.Snapshots)
	for i := range c.Snapshots {
		c.Snapshots[i].IsCurrent = false
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// Find is the index of the snapshot named name, or -1.
func (s *Snapshots) Find(name string) int {
	for i := range s.Snapshots {
		if s.Snapshots[i].Name == name {
			return i
		}
	}
	return -1
}

// Clone is a deep copy, to change without touching s.
func (s *Snapshots) Clone() *Snapshots {
	c := *s
	c.Snapshots = make([]api.Snapshot, len(s.Snapshots))
	for i, sn := range s.Snapshots {
		sn.Disks = append([]string(nil), sn.Disks...)
		c.Snapshots[i] = sn
	}
	return &c
}
