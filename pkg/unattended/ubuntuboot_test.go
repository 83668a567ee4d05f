package unattended

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
)

var (
	fakeKernel = bytes.Repeat([]byte("KERNEL"), 50000) // 300 kB: several extents' worth of blocks
	fakeInitrd = bytes.Repeat([]byte("INITRD"), 90000)
)

// casperISO writes a small ISO with the Ubuntu live layout using our writer.
func casperISO(t *testing.T, initrdName string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ubuntu.iso")
	files := []isoimage.File{
		{Path: "casper/vmlinuz", Data: fakeKernel},
		{Path: "casper/" + initrdName, Data: fakeInitrd},
		{Path: "boot/grub/grub.cfg", Data: []byte("linux /casper/vmlinuz ---\n")},
	}
	if err := isoimage.Write(context.Background(), dst, isoimage.Options{Label: "UBUNTU_TEST", NoJoliet: true}, files); err != nil {
		t.Fatal(err)
	}
	return dst
}

func checkExtracted(t *testing.T, iso string) {
	t.Helper()
	dir := t.TempDir()
	k, i, err := ExtractUbuntuBoot(context.Background(), iso, dir)
	if err != nil {
		t.Fatal(err)
	}
	if k != filepath.Join(dir, "vmlinuz") || i != filepath.Join(dir, "initrd") {
		t.Errorf("paths %s %s", k, i)
	}
	if b, _ := os.ReadFile(k); !bytes.Equal(b, fakeKernel) {
		t.Error("kernel content differs")
	}
	if b, _ := os.ReadFile(i); !bytes.Equal(b, fakeInitrd) {
		t.Error("initrd content differs")
	}
}

func TestExtractUbuntuBoot(t *testing.T) {
	for _, name := range []string{"initrd", "initrd.lz"} {
		t.Run(name, func(t *testing.T) { checkExtracted(t, casperISO(t, name)) })
	}
}

// TestExtractUbuntuBootFromGenisoimage reads an ISO made by another tool
// (Rock Ridge + Joliet, like Ubuntu's own xorriso-made ISOs).
func TestExtractUbuntuBootFromGenisoimage(t *testing.T) {
	gen, err := exec.LookPath("genisoimage")
	if err != nil {
		t.Skip("genisoimage is not installed")
	}
	src := t.TempDir()
	noErr(t, os.MkdirAll(filepath.Join(src, "casper"), 0o755))
	noErr(t, os.MkdirAll(filepath.Join(src, ".disk"), 0o755))
	noErr(t, os.WriteFile(filepath.Join(src, ".disk", "info"), []byte("Ubuntu-Server 24.04 LTS\n"), 0o644))
	noErr(t, os.WriteFile(filepath.Join(src, "casper", "vmlinuz"), fakeKernel, 0o644))
	noErr(t, os.WriteFile(filepath.Join(src, "casper", "initrd"), fakeInitrd, 0o644))
	iso := filepath.Join(t.TempDir(), "ubuntu.iso")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gen, "-quiet", "-o", iso, "-V", "Ubuntu-Server 24.04", "-J", "-r", src).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v\n%s", err, out)
	}
	checkExtracted(t, iso)
}

func TestExtractUbuntuBootErrors(t *testing.T) {
	dir := t.TempDir()
	// A Fedora-like layout: no casper.
	fedora := filepath.Join(t.TempDir(), "fedora.iso")
	noErr(t, isoimage.Write(context.Background(), fedora, isoimage.Options{Label: "FEDORA", NoJoliet: true},
		[]isoimage.File{{Path: "images/pxeboot/vmlinuz", Data: []byte("k")}, {Path: "images/pxeboot/initrd.img", Data: []byte("i")}}))
	_, _, err := ExtractUbuntuBoot(context.Background(), fedora, dir)
	var le *UnknownLayoutError
	if !errors.As(err, &le) {
		t.Fatalf("Fedora layout: %v, want *UnknownLayoutError", err)
	}
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "isoPath"}) {
		t.Errorf("UnknownLayoutError does not unwrap to InvalidArgument on isoPath: %v", err)
	}
	if len(le.TopDirs) != 1 || le.TopDirs[0] != "images" {
		t.Errorf("TopDirs = %v", le.TopDirs)
	}

	noInitrd := filepath.Join(t.TempDir(), "half.iso")
	noErr(t, isoimage.Write(context.Background(), noInitrd, isoimage.Options{Label: "HALF", NoJoliet: true},
		[]isoimage.File{{Path: "casper/vmlinuz", Data: []byte("k")}}))
	if _, _, err := ExtractUbuntuBoot(context.Background(), noInitrd, dir); !errors.As(err, &le) {
		t.Errorf("no initrd: %v, want *UnknownLayoutError", err)
	}

	if _, _, err := ExtractUbuntuBoot(context.Background(), filepath.Join(dir, "missing.iso"), dir); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing ISO: %v, want NotFound", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.iso")
	noErr(t, os.WriteFile(junk, bytes.Repeat([]byte{1}, 100<<10), 0o644))
	if _, _, err := ExtractUbuntuBoot(context.Background(), junk, dir); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "isoPath"}) {
		t.Errorf("junk ISO: %v, want InvalidArgument on isoPath", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failures left files behind: %v", entries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := ExtractUbuntuBoot(ctx, casperISO(t, "initrd"), dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a cancelled extract left files behind: %v", entries)
	}
}
