package isoimage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var sample = []File{
	{Path: "user-data", Data: []byte("#cloud-config\nhostname: a\n")},
	{Path: "meta-data", Data: []byte("instance-id: iid-1\n")},
	{Path: "autounattend.xml", Data: []byte("<unattend/>\n")},
	{Path: "infinivirt-01-first-script.ps1", Data: []byte("Write-Host hi\r\n")},
}

func writeSample(t *testing.T, label string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "answer.iso")
	if err := Write(context.Background(), dst, Options{Label: label}, sample); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return dst
}

func TestWriteReadBack(t *testing.T) {
	dst := writeSample(t, "CIDATA")
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != Mode {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), Mode)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the image: %v", len(entries), entries)
	}

	im, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	v := im.Volumes()
	if v.Label != "CIDATA" || !v.Joliet || !v.RockRidge || v.BlockSize != 2048 {
		t.Errorf("volumes = %+v, want label CIDATA with Joliet and Rock Ridge", v)
	}
	rr, err := im.Names(".")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"autounattend.xml", "infinivirt-01-first-script.ps1", "meta-data", "user-data"}
	if !reflect.DeepEqual(rr, want) {
		t.Errorf("Rock Ridge names %q, want %q", rr, want)
	}
	j, err := im.JolietNames(".")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("Joliet names %q, want %q", j, want)
	}
	p, err := im.PrimaryNames(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p {
		if n != strings.ToUpper(n) {
			t.Errorf("primary name %q is not upper case", n)
		}
	}
	for _, f := range sample {
		got, err := im.ReadFile(f.Path)
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", f.Path, got, err, f.Data)
		}
	}
	out := filepath.Join(t.TempDir(), "copy")
	n, err := im.CopyFile(context.Background(), "infinivirt-01-first-script.ps1", out)
	if err != nil || n != int64(len(sample[3].Data)) {
		t.Fatalf("CopyFile = %d, %v", n, err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, sample[3].Data) {
		t.Errorf("copied %q", b)
	}
	if im.Exists("nope") || !im.Exists("user-data") {
		t.Error("Exists answers wrong")
	}
}

// TestIsoinfoAgrees checks our reading against genisoimage's isoinfo, an
// independent ISO 9660 reader.
func TestIsoinfoAgrees(t *testing.T) {
	isoinfo, err := exec.LookPath("isoinfo")
	if err != nil {
		t.Skip("isoinfo (Debian package genisoimage) is not installed")
	}
	dst := writeSample(t, "OEMDRV")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, isoinfo, append([]string{"-i", dst}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("isoinfo %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	if d := run("-d"); !strings.Contains(d, "Volume id: OEMDRV") || !strings.Contains(d, "Joliet with UCS level 3") || !strings.Contains(d, "Rock Ridge signatures version 1 found") {
		t.Errorf("isoinfo -d:\n%s", d)
	}
	list := func(flag string) []string {
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(run(flag, "-f")), "\n") {
			names = append(names, strings.TrimSuffix(l, ";1"))
		}
		sort.Strings(names)
		return names
	}
	want := []string{"/autounattend.xml", "/infinivirt-01-first-script.ps1", "/meta-data", "/user-data"}
	if got := list("-R"); !reflect.DeepEqual(got, want) {
		t.Errorf("isoinfo -R -f = %q, want %q", got, want)
	}
	if got := list("-J"); !reflect.DeepEqual(got, want) {
		t.Errorf("isoinfo -J -f = %q, want %q", got, want)
	}
	if x := run("-J", "-x", "/autounattend.xml"); x != string(sample[2].Data) {
		t.Errorf("isoinfo -J -x /autounattend.xml = %q", x)
	}
}

func TestWriteFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := map[string]struct {
		ctx   context.Context
		dst   string
		label string
		files []File
	}{
		"lower-case label": {context.Background(), filepath.Join(dir, "a.iso"), "cidata", sample},
		"long label":       {context.Background(), filepath.Join(dir, "a.iso"), strings.Repeat("A", 33), sample},
		"no files":         {context.Background(), filepath.Join(dir, "a.iso"), "X", nil},
		"escaping path":    {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: "../x"}}},
		"absolute path":    {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: "/x"}}},
		"duplicate":        {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: "A"}, {Path: "a"}}},
		"joliet subdir":    {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: "d/x"}}},
		"dot name":         {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: ".disk"}}},
		"long name":        {context.Background(), filepath.Join(dir, "a.iso"), "X", []File{{Path: strings.Repeat("n", 65)}}},
		"cancelled":        {cancelled, filepath.Join(dir, "a.iso"), "X", sample},
		"missing dir":      {context.Background(), filepath.Join(dir, "missing", "a.iso"), "X", sample},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := Write(c.ctx, c.dst, Options{Label: c.label}, c.files); err == nil {
				t.Fatal("Write succeeded")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.iso")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.iso")
	if err := os.WriteFile(junk, bytes.Repeat([]byte{0xAB}, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk); !errors.Is(err, ErrNotISO) {
		t.Errorf("junk file: %v, want ErrNotISO", err)
	}
}

func TestCopyFileHonoursContext(t *testing.T) {
	im, err := Open(writeSample(t, "X"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := im.CopyFile(ctx, "user-data", filepath.Join(dir, "u")); !errors.Is(err, context.Canceled) {
		t.Errorf("CopyFile with a cancelled context: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// FuzzVolumes feeds corrupted images to our descriptor and directory parser:
// it must return errors, never panic or allocate without bound.
func FuzzVolumes(f *testing.F) {
	dst := filepath.Join(f.TempDir(), "seed.iso")
	if err := Write(context.Background(), dst, Options{Label: "CIDATA"}, sample); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(dst)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, uint32(0), byte(0))
	f.Add(seed, uint32(16*2048+156+10), byte(0xff))
	f.Add(seed, uint32(17*2048+88), byte('x'))
	f.Fuzz(func(t *testing.T, img []byte, off uint32, val byte) {
		if len(img) > 0 {
			img = bytes.Clone(img)
			img[int(off)%len(img)] = val
		}
		r := bytes.NewReader(img)
		v, err := ReadVolumes(r)
		if err != nil {
			return
		}
		for _, tree := range []Tree{PrimaryTree, JolietTree} {
			_, _ = v.ListDir(r, tree, ".") // must not panic on any image
			_, _ = v.ListDir(r, tree, "casper")
		}
	})
}

// TestRockRidgeSubdirectories builds a tree like an installer ISO's, without
// Joliet, and reads it back through Rock Ridge and the primary tree.
func TestRockRidgeSubdirectories(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "tree.iso")
	files := []File{
		{Path: "casper/vmlinuz", Data: []byte("kernel")},
		{Path: "casper/initrd", Data: []byte("initrd")},
		{Path: "boot/grub/grub.cfg", Data: []byte("menuentry")},
	}
	if err := Write(context.Background(), dst, Options{Label: "UBUNTU_TEST", NoJoliet: true}, files); err != nil {
		t.Fatal(err)
	}
	im, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if v := im.Volumes(); v.Joliet || !v.RockRidge {
		t.Errorf("volumes %+v: want Rock Ridge without Joliet", v)
	}
	if names, err := im.Names("casper"); err != nil || !reflect.DeepEqual(names, []string{"initrd", "vmlinuz"}) {
		t.Errorf("Names(casper) = %q, %v", names, err)
	}
	if names, err := im.PrimaryNames("CASPER"); err != nil || !reflect.DeepEqual(names, []string{"INITRD", "VMLINUZ"}) {
		t.Errorf("PrimaryNames(CASPER) = %q, %v", names, err)
	}
	if b, err := im.ReadFile("boot/grub/grub.cfg"); err != nil || string(b) != "menuentry" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := im.JolietNames("."); err == nil {
		t.Error("JolietNames on an image without Joliet succeeded")
	}
}
