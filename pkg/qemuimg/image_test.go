package qemuimg_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

func TestSniffFormat(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	for _, f := range []string{"qcow2", "vmdk", "vhdx", "raw"} {
		p := filepath.Join(dir, "img."+f)
		qemuImg(t, "create", "-q", "-f", f, p, "16M")
		got, err := qemuimg.SniffFormat(p)
		if err != nil || got != f {
			t.Errorf("SniffFormat(%s) = %q, %v", f, got, err)
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := qemuimg.SniffFormat(empty); err != nil || got != "raw" {
		t.Errorf("SniffFormat(empty) = %q, %v", got, err)
	}
}

// TestConvertFromEveryImportFormat converts each import format to qcow2,
// keeping the content, and reports progress up to 100%.
func TestConvertFromEveryImportFormat(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	data := make([]byte, 2*mib)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var tool qemuimg.Tool
	for _, f := range qemuimg.ImportFormats {
		src := raw
		if f != "raw" {
			src = filepath.Join(dir, "src."+f)
			qemuImg(t, "convert", "-f", "raw", "-O", f, raw, src)
		}
		if _, err := tool.InspectSource(ctx(t), src, f); err != nil {
			t.Fatalf("InspectSource(%s): %v", f, err)
		}
		dst := filepath.Join(dir, "from-"+f+".qcow2")
		var last float64
		if err := tool.ConvertFrom(ctx(t), src, f, dst, qemuimg.FormatQCOW2, func(p float64) { last = p }); err != nil {
			t.Fatalf("ConvertFrom(%s): %v", f, err)
		}
		if last != 100 {
			t.Errorf("%s: last progress %v, want 100", f, last)
		}
		back := filepath.Join(dir, "back-"+f+".raw")
		qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", dst, back)
		got, err := os.ReadFile(back)
		if err != nil || string(got) != string(data) {
			t.Errorf("%s: content changed in the convert (%v)", f, err)
		}
	}
}

// TestInspectSourceRefusesReferences: a source with a backing file or a
// data file is refused naming sourcePath, and so is a wrong format.
func TestInspectSourceRefusesReferences(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay)
	withData := filepath.Join(dir, "data.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw"), withData, "16M")
	var tool qemuimg.Tool
	for _, c := range []struct{ path, format string }{{overlay, "qcow2"}, {withData, "qcow2"}, {base, "vhdx"}, {"rel.qcow2", "qcow2"}} {
		if _, err := tool.InspectSource(ctx(t), c.path, c.format); !isInvalid(err, "sourcePath") {
			t.Errorf("InspectSource(%s, %s): %v, want InvalidArgument naming sourcePath", c.path, c.format, err)
		}
	}
	if _, err := tool.InspectSource(ctx(t), base, "vdi"); !isInvalid(err, "format") {
		t.Errorf("InspectSource with vdi: %v", err)
	}
}

// TestCheckChainInSeveralRoots: an overlay in one root backed by an
// image in another passes, and fails once the backing image's root is not
// among the roots.
func TestCheckChainInSeveralRoots(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	top := t.TempDir()
	overlay := filepath.Join(top, "overlay.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay, "32M")
	var tool qemuimg.Tool
	chain, err := tool.CheckChainIn(ctx(t), overlay, qemuimg.FormatQCOW2, []string{top, dir})
	if err != nil || len(chain) != 2 {
		t.Errorf("CheckChainIn: %d images, %v", len(chain), err)
	}
	if _, err := tool.CheckChainIn(ctx(t), overlay, qemuimg.FormatQCOW2, []string{top}); err == nil {
		t.Error("CheckChainIn passed a backing image outside every root")
	}
}
