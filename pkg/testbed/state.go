package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/atomicfile"
)

// stateVersion is bumped whenever hostState changes incompatibly.
const stateVersion = 1

// hostState is what SaveState writes and Attach reads: enough to find the
// host's processes again and to stop it.
type hostState struct {
	Version     int      `json:"version"`
	Name        string   `json:"name"`
	ID          string   `json:"id"`
	PID         int      `json:"pid"`
	StartTime   uint64   `json:"startTime"`
	LauncherPID int      `json:"launcherPid"`
	Cgroup      string   `json:"cgroup"`
	WorkDir     string   `json:"workDir"`
	BootState   string   `json:"bootState"`
	FailedUnits []string `json:"failedUnits,omitempty"`
}

// SaveState writes what Attach needs to find this host again to path, so
// that a later process can run commands in the host or stop it.
func (h *Host) SaveState(path string) error {
	data, err := json.MarshalIndent(hostState{
		Version: stateVersion, Name: h.name, ID: h.id, PID: h.pid, StartTime: h.startTime,
		LauncherPID: h.launcherPID, Cgroup: h.cgroup, WorkDir: h.workDir,
		BootState: h.bootState, FailedUnits: h.failedUnits,
	}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// Attach returns the host that SaveState recorded in path. It fails with
// ErrHostGone when that host's systemd is no longer running.
func Attach(path string) (*Host, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := parseState(data)
	if err != nil {
		return nil, fmt.Errorf("testbed: %s: %w", path, err)
	}
	h := &Host{
		name: st.Name, id: st.ID, pid: st.PID, startTime: st.StartTime, launcherPID: st.LauncherPID,
		cgroup: st.Cgroup, workDir: st.WorkDir, bootState: st.BootState, failedUnits: st.FailedUnits,
	}
	if !h.alive() {
		return h, fmt.Errorf("testbed host %s (pid %d): %w", st.ID, st.PID, ErrHostGone)
	}
	return h, nil
}

// ErrHostGone means a saved host's systemd has exited. The *Host that
// Attach returns with it can still Stop, to clean up what is left.
var ErrHostGone = errors.New("host is no longer running")

// parseState decodes and checks a state file. The paths it names are
// removed by Stop, so they must look like ours.
func parseState(data []byte) (hostState, error) {
	var st hostState
	if err := json.Unmarshal(data, &st); err != nil {
		return st, err
	}
	switch {
	case st.Version != stateVersion:
		return st, fmt.Errorf("state version %d, want %d", st.Version, stateVersion)
	case !nameRE.MatchString(st.Name):
		return st, fmt.Errorf("state: bad name %q", st.Name)
	case !strings.HasPrefix(st.ID, st.Name+"-"):
		return st, fmt.Errorf("state: id %q does not belong to name %q", st.ID, st.Name)
	case st.PID <= 1 || st.LauncherPID <= 1:
		return st, fmt.Errorf("state: bad pids %d/%d", st.PID, st.LauncherPID)
	case !ownedPath(st.Cgroup, "infinivirt-testbed-"+st.ID, "/sys/fs/cgroup/"):
		return st, fmt.Errorf("state: cgroup %q is not a test-bed cgroup", st.Cgroup)
	case !ownedPath(st.WorkDir, "infinivirt-testbed-"+st.ID+"-", "/"):
		return st, fmt.Errorf("state: work dir %q is not a test-bed work dir", st.WorkDir)
	}
	return st, nil
}

// ownedPath reports whether p is a clean absolute path under root whose
// last element starts with prefix.
func ownedPath(p, prefix, root string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && strings.HasPrefix(p, root) &&
		strings.HasPrefix(filepath.Base(p), prefix)
}
