package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// debianRoot holds one directory per installed major version on Debian and Ubuntu.
const debianRoot = "/usr/lib/postgresql"

// serverBinaries are the programs a cluster needs; a bindir without them is a client-only install.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres", "createdb"}

// FindBinDir returns the directory holding the PostgreSQL server programs:
// the one pg_config reports when it really has them, else the newest
// /usr/lib/postgresql/<version>/bin, else the directory of initdb on PATH.
func FindBinDir(ctx context.Context) (string, error) {
	var tried []string
	if dir, err := pgConfigBinDir(ctx); err == nil {
		if hasServerBinaries(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	if entries, err := os.ReadDir(debianRoot); err == nil {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		for _, v := range sortVersionsDesc(names) {
			dir := filepath.Join(debianRoot, v, "bin")
			if hasServerBinaries(dir) {
				return dir, nil
			}
			tried = append(tried, dir)
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if hasServerBinaries(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	return "", fmt.Errorf("%w (looked in pg_config --bindir, %s/<version>/bin and PATH; incomplete: %v)",
		ErrNoBinaries, debianRoot, tried)
}

func pgConfigBinDir(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" || !filepath.IsAbs(dir) {
		return "", errors.New("pg_config printed no absolute bindir")
	}
	return dir, nil
}

func hasServerBinaries(dir string) bool {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// parseVersion reads a PostgreSQL version directory name ("15", "9.6").
// ok is false for anything else, so stray directories are ignored.
func parseVersion(name string) (major, minor int, ok bool) {
	majorText, minorText, hasMinor := strings.Cut(name, ".")
	major, err := strconv.Atoi(majorText)
	if err != nil || major < 0 || majorText != strconv.Itoa(major) {
		return 0, 0, false
	}
	if hasMinor {
		minor, err = strconv.Atoi(minorText)
		if err != nil || minor < 0 || minorText != strconv.Itoa(minor) {
			return 0, 0, false
		}
	}
	return major, minor, true
}

// sortVersionsDesc keeps the names that are versions, newest first.
func sortVersionsDesc(names []string) []string {
	type version struct {
		name         string
		major, minor int
	}
	var vs []version
	for _, n := range names {
		if major, minor, ok := parseVersion(n); ok {
			vs = append(vs, version{n, major, minor})
		}
	}
	slices.SortFunc(vs, func(a, b version) int {
		return cmp.Or(cmp.Compare(b.major, a.major), cmp.Compare(b.minor, a.minor))
	})
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.name
	}
	return out
}
