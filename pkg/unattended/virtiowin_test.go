package unattended

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestFindVirtioWin(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		noErr(t, os.WriteFile(p, []byte("iso"), 0o644))
		return p
	}
	v99 := touch("virtio-win-0.1.99.iso")
	v240 := touch("virtio-win-0.1.240.iso")
	noErr(t, os.Mkdir(filepath.Join(dir, "adir.iso"), 0o755))

	if got, err := FindVirtioWin(v99, nil); err != nil || got != v99 {
		t.Errorf("configured: %q, %v", got, err)
	}
	if _, err := FindVirtioWin(filepath.Join(dir, "nope.iso"), nil); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
		t.Errorf("configured missing: %v, want NotFound", err)
	}
	if _, err := FindVirtioWin(filepath.Join(dir, "adir.iso"), nil); err == nil {
		t.Error("a directory was accepted")
	}
	cands := []string{filepath.Join(dir, "absent.iso"), filepath.Join(dir, "adir.iso"), filepath.Join(dir, "virtio-win-*.iso")}
	if got, err := FindVirtioWin("", cands); err != nil || got != v240 {
		t.Errorf("glob: %q, %v; want the highest version %s", got, err, v240)
	}
	if got, err := FindVirtioWin("", []string{filepath.Join(dir, "absent.iso"), v99, v240}); err != nil || got != v99 {
		t.Errorf("order: %q, %v; want the first existing", got, err)
	}
	if _, err := FindVirtioWin("", []string{filepath.Join(dir, "absent.iso")}); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
		t.Errorf("none: %v, want NotFound", err)
	}
	if len(DefaultVirtioWinPaths) == 0 {
		t.Error("no default paths")
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range [][2]string{{"a-0.1.99", "a-0.1.240"}, {"a-1", "a-2"}, {"a", "ab"}, {"x-01", "x-2"}} {
		if !versionLess(c[0], c[1]) || versionLess(c[1], c[0]) {
			t.Errorf("versionLess(%q, %q) wrong", c[0], c[1])
		}
	}
}
