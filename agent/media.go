package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// checkMedium checks an ISO a request names (a CD-ROM's medium, an
// install's OS or virtio-win ISO) the way libvirt takes volumes only from
// its storage pools: inside one of the agent's ISO directories, links
// followed. Any other file QEMU's account can read (/proc, another VM's
// disk) would otherwise become the guest's to read. Nothing of the state
// directory is a medium but its own ISO directory: the rest holds VMs'
// disks, specs and logs, even when an ISO directory was set above it. It
// returns the resolved path, which the spec keeps, so a link changed later
// cannot point QEMU elsewhere.
func (a *Agent) checkMedium(field, p string) (string, error) {
	if err := vmspec.CheckHostPath(field, p); err != nil {
		return "", err
	}
	resolved, err := a.fileInDirs(field, p, "ISO", a.cfg.ISODirs)
	if err != nil {
		return "", err
	}
	state, err := filepath.EvalSymlinks(a.cfg.Layout.StateDir)
	if err != nil || !within(state, resolved) {
		return resolved, nil
	}
	if own, err := filepath.EvalSymlinks(a.cfg.Layout.ISOsDir()); err != nil || !within(own, resolved) {
		return "", errdefs.Invalid(field, "%s lies in the agent's state directory %s (its file is %s); media live in the ISO directories", p, a.cfg.Layout.StateDir, resolved)
	}
	return resolved, nil
}

// fileInDirs resolves the links of p and accepts it only inside one of
// dirs (their links resolved too), as a regular file QEMU's account can
// read. kind names the directories in errors.
func (a *Agent) fileInDirs(field, p, kind string, dirs []string) (string, error) {
	var resolvedDirs []string
	var unreadable error
	for _, d := range dirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			unreadable = err
			continue
		}
		resolvedDirs = append(resolvedDirs, r)
	}
	noun := "directory"
	if len(dirs) != 1 {
		noun = "directories"
	}
	named := strings.Join(dirs, ", ")
	if len(resolvedDirs) == 0 {
		why := "none is set"
		if unreadable != nil {
			why = fmt.Sprint(errors.Unwrap(unreadable))
		}
		return "", errdefs.Invalid(field, "the agent's %s %s %s cannot be read (%s): %s files must be put there", kind, noun, named, why, kind)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", errdefs.Invalid(field, "%s: %v", p, errors.Unwrap(err))
	}
	inside := false
	for _, r := range resolvedDirs {
		inside = inside || within(r, resolved)
	}
	if !inside {
		return "", errdefs.Invalid(field, "%s is outside the %s %s %s (its file is %s): a %s file must be one of theirs", p, kind, noun, named, resolved, kind)
	}
	if err := vmspec.CheckHostPath(field, resolved); err != nil {
		return "", err
	}
	if st, err := os.Stat(resolved); err != nil || !st.Mode().IsRegular() {
		return "", errdefs.Invalid(field, "%s is not a regular file", p)
	}
	if err := a.checkQEMUReads(field, resolved); err != nil {
		return "", err
	}
	return resolved, nil
}

// within reports whether p lies below dir (both resolved).
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && filepath.IsLocal(rel)
}
