package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// cgroup2Dir finds the cgroup2 directory of the calling process: the
// cgroup2 mount (at /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup
// on a unified one) joined with the "0::" line of /proc/self/cgroup.
func cgroup2Dir() (string, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var mount string
	for _, m := range parseMountinfo(mi) {
		if m.fsType == "cgroup2" {
			mount = m.mountPoint
			break
		}
	}
	if mount == "" {
		return "", errors.New("no cgroup2 file system is mounted")
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	rel, ok := unifiedCgroupPath(cg)
	if !ok {
		return "", errors.New("/proc/self/cgroup has no cgroup2 (0::) line")
	}
	return filepath.Join(mount, rel), nil
}

// unifiedCgroupPath returns the path of the "0::<path>" line of a
// /proc/<pid>/cgroup file.
func unifiedCgroupPath(data []byte) (string, bool) {
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(rest, "/") {
			return filepath.Clean(rest), true
		}
	}
	return "", false
}

// mountEntry is one line of /proc/<pid>/mountinfo, reduced to what we use.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
}

// parseMountinfo parses /proc/<pid>/mountinfo (see proc(5)); malformed
// lines are skipped.
func parseMountinfo(data []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 {
			continue
		}
		out = append(out, mountEntry{
			mountPoint: unescapeOctal(fields[4]),
			fsType:     fields[sep+1],
			source:     unescapeOctal(fields[sep+2]),
		})
	}
	return out
}

// unescapeOctal undoes the \ooo escapes the kernel writes for spaces, tabs,
// newlines and backslashes in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// cgroupPopulated reports whether any process lives in dir or below it.
func cgroupPopulated(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", dir)
}

// waitUnpopulated polls until no process is left in dir's subtree, calling
// each (if not nil) on every poll.
func waitUnpopulated(ctx context.Context, dir string, each func()) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pop, err := cgroupPopulated(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !pop {
			return nil
		}
		if each != nil {
			each()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes still running in %s: %w", dir, ctx.Err())
		case <-tick.C:
		}
	}
}

// killCgroup SIGKILLs every process in dir's subtree (cgroup.kill, Linux 5.14+).
func killCgroup(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// removeCgroup removes dir and every cgroup below it, deepest first. Only
// directories are removed: the kernel's interface files go with them.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupProcs counts the processes in dir's subtree.
func cgroupProcs(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return err
			}
			n += len(strings.Fields(string(data)))
		}
		return nil
	})
	return n, err
}
