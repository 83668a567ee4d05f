package qemuimg_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

// storage makes a root and a directory outside it.
func storage(t *testing.T) (root, outside string) {
	dir := t.TempDir()
	root, outside = filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "vms"), filepath.Join(root, "base")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func wantConfinementError(t *testing.T, err error, what string) {
	t.Helper()
	var ce *qemuimg.ConfinementError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: err = %v, want *ConfinementError", what, err)
	}
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) {
		t.Errorf("%s: %v does not class as FailedPrecondition", what, err)
	}
}

func TestCheckConfined(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	root, outside := storage(t)
	base := filepath.Join(root, "base", "debian.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "64M")
	evil := filepath.Join(outside, "evil.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", evil, "64M")
	if err := os.Symlink(evil, filepath.Join(root, "base", "link.qcow2")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, create string // the qemu-img create options of the top image
		reason       string // what the refusal says; empty when accepted
	}{
		{"no backing file", "", ""},
		{"relative backing inside", "-b ../base/debian.qcow2 -F qcow2", ""},
		{"absolute backing inside", "-b " + base + " -F qcow2", ""},
		{"absolute backing outside", "-b " + evil + " -F qcow2", "outside the root"},
		{"relative backing climbing out", "-b ../../outside/evil.qcow2 -F qcow2", "outside the root"},
		{"symlink inside leading outside", "-b ../base/link.qcow2 -F qcow2", "through a symlink"},
		{"missing backing file", "-u -b ../base/gone.qcow2 -F qcow2", "cannot be resolved"},
		{"protocol backing", "-u -b nbd://127.0.0.1:10809/x -F raw", "protocol"},
		{"data file inside", "-o data_file=" + filepath.Join(root, "vms", "data.raw"), ""},
		{"data file outside", "-o data_file=" + filepath.Join(outside, "data.raw"), "data file"},
	}
	for i, tt := range tests {
		top := filepath.Join(root, "vms", "top"+string(rune('a'+i))+".qcow2")
		args := append([]string{"create", "-q", "-f", "qcow2"}, strings.Fields(tt.create)...)
		qemuImg(t, append(args, top, "64M")...)
		info, err := tool.Info(ctx(t), top, qemuimg.FormatQCOW2)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		err = qemuimg.CheckConfined(info, root)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		wantConfinementError(t, err, tt.name)
		if err != nil && !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: %v, want a refusal saying %q", tt.name, err, tt.reason)
		}
	}
}

func TestCheckConfinedRejectsBadRoot(t *testing.T) {
	info := &qemuimg.Info{Filename: "/a/b.qcow2", Format: "qcow2"}
	if err := qemuimg.CheckConfined(info, "relative"); !isInvalid(err, "root") {
		t.Errorf("relative root: %v", err)
	}
	if err := qemuimg.CheckConfined(info, "/nonexistent/root"); !isInvalid(err, "root") {
		t.Errorf("missing root: %v", err)
	}
}

func TestCheckChain(t *testing.T) {
	needQemuImg(t)
	var tool qemuimg.Tool
	root, outside := storage(t)
	base := filepath.Join(root, "base", "os.raw")
	mid := filepath.Join(root, "base", "apps.qcow2")
	top := filepath.Join(root, "vms", "disk0.qcow2")
	qemuImg(t, "create", "-q", "-f", "raw", base, "64M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "os.raw", "-F", "raw", mid)
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "../base/apps.qcow2", "-F", "qcow2", top)

	chain, err := tool.CheckChain(ctx(t), top, qemuimg.FormatQCOW2, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || chain[0].Format != "qcow2" || chain[1].Format != "qcow2" || chain[2].Format != "raw" {
		t.Fatalf("chain = %+v, want qcow2 → qcow2 → raw", chain)
	}
	if chain[2].VirtualSize != 64<<20 {
		t.Errorf("base virtual size %d", chain[2].VirtualSize)
	}

	// A confined overlay on a base whose own backing file lies outside.
	evil := filepath.Join(outside, "evil.raw")
	qemuImg(t, "create", "-q", "-f", "raw", evil, "64M")
	bad := filepath.Join(root, "base", "bad.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", evil, "-F", "raw", bad)
	top2 := filepath.Join(root, "vms", "disk1.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", bad, "-F", "qcow2", top2)
	chain, err = tool.CheckChain(ctx(t), top2, qemuimg.FormatQCOW2, root)
	wantConfinementError(t, err, "second-level backing outside")
	if len(chain) != 2 {
		t.Errorf("chain stopped after %d images, want 2", len(chain))
	}

	_, err = tool.CheckChain(ctx(t), evil, qemuimg.FormatRaw, root)
	wantConfinementError(t, err, "image outside root")
}
