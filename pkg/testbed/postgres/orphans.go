package postgres

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile records which process made a cluster, so that a later Start can
// stop clusters whose test binary died (a timeout's panic runs no cleanup).
const ownerFile = "owner"

// owner names a process by PID and start time, which survives PID reuse.
type owner struct {
	pid   int
	start string
}

func selfOwner() (owner, error) {
	pid := os.Getpid()
	start, err := processStart(pid)
	return owner{pid: pid, start: start}, err
}

func (o owner) String() string { return strconv.Itoa(o.pid) + " " + o.start + "\n" }

func parseOwner(b []byte) (owner, bool) {
	pidText, start, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 || start == "" {
		return owner{}, false
	}
	return owner{pid: pid, start: start}, true
}

// alive reports whether the very process that wrote the record still runs.
func (o owner) alive() bool {
	start, err := processStart(o.pid)
	return err == nil && start == o.start
}

// processStart is field 22 of /proc/<pid>/stat: clock ticks since boot.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", fmt.Errorf("postgres testbed: unreadable stat of %d", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	const startField = 22 - 3 // fields after "pid (comm)" start at 3
	if len(fields) <= startField {
		return "", fmt.Errorf("postgres testbed: short stat of %d", pid)
	}
	return fields[startField], nil
}

// stopOrphans stops and removes the clusters under base whose owner is gone.
// A cluster without an owner record is left alone: it is not known to be ours.
func stopOrphans(opts Options, cred *syscall.Credential) error {
	dirs, err := filepath.Glob(filepath.Join(opts.BaseDir, "ivpg-*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		o, ok := parseOwner(b)
		if !ok || o.alive() {
			continue
		}
		c := &Cluster{opts: opts, dir: dir, binDir: opts.BinDir, cred: cred}
		if err := c.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("orphaned cluster %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
