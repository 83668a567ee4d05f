package unattended

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// DefaultVirtioWinPaths are where distributions and common setups put the
// virtio-win driver ISO, in search order. Patterns may hold globs; the
// highest version of a match wins (0.1.240 over 0.1.99).
var DefaultVirtioWinPaths = []string{
	"/var/lib/infinivirt/isos/virtio-win.iso",
	"/usr/share/virtio-win/virtio-win.iso", // Fedora, RHEL and the virtio-win RPM
	"/usr/share/virtio-win/virtio-win-*.iso",
	"/usr/share/virtio-win/iso/virtio-win.iso",
	"/var/lib/libvirt/images/virtio-win.iso", // where libvirt users download it
	"/var/lib/libvirt/boot/virtio-win.iso",
	"/opt/virtio-win/virtio-win.iso",
}

// FindVirtioWin returns the virtio-win ISO to attach. A configured path
// must exist; an empty one means the first match among candidates
// (DefaultVirtioWinPaths when nil). Nothing found is an api NotFound error
// that lists the paths searched.
func FindVirtioWin(configured string, candidates []string) (string, error) {
	if configured != "" {
		if isRegular(configured) {
			return configured, nil
		}
		return "", errdefs.NotFound("virtio-win ISO %s does not exist or is not a regular file", configured)
	}
	if candidates == nil {
		candidates = DefaultVirtioWinPaths
	}
	for _, c := range candidates {
		matches := []string{c}
		if strings.ContainsAny(c, "*?[") {
			matches, _ = filepath.Glob(c)
			sort.Slice(matches, func(i, j int) bool { return versionLess(matches[i], matches[j]) })
		}
		for i := len(matches) - 1; i >= 0; i-- {
			if isRegular(matches[i]) {
				return matches[i], nil
			}
		}
	}
	return "", errdefs.NotFound("no virtio-win ISO found; searched %s", strings.Join(candidates, ", "))
}

func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// versionLess compares strings with runs of digits compared as numbers.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
