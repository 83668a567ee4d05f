package unattended

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
	"github.com/infinibay/infinivirt/pkg/unattended/sha512crypt"
)

// TestAnswerISOs builds each OS's answer ISO and reads it back: label,
// Rock Ridge names, Joliet names (what Windows sees) and content.
func TestAnswerISOs(t *testing.T) {
	cases := []struct {
		os, label string
		names     []string
	}{
		{OSUbuntu, "CIDATA", []string{"meta-data", "user-data"}},
		{OSFedora, "OEMDRV", []string{"ks.cfg"}},
		{OSWindows10, "UNATTEND", []string{"autounattend.xml", "infinivirt-01-set-wallpaper.ps1", "infinivirt-02-legacy-batch.cmd"}},
		{OSWindows11, "UNATTEND", []string{"autounattend.xml", "infinivirt-01-set-wallpaper.ps1", "infinivirt-02-legacy-batch.cmd"}},
	}
	for _, c := range cases {
		t.Run(c.os, func(t *testing.T) {
			cfg := fullConfig(c.os)
			dst := filepath.Join(t.TempDir(), "answer.iso")
			if err := BuildAnswerISO(context.Background(), c.os, cfg, dst); err != nil {
				t.Fatal(err)
			}
			im, err := isoimage.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			v := im.Volumes()
			if v.Label != c.label || !v.RockRidge || !v.Joliet {
				t.Errorf("volumes %+v, want label %s with Rock Ridge and Joliet", v, c.label)
			}
			rr, err := im.Names(".")
			if err != nil || !reflect.DeepEqual(rr, c.names) {
				t.Errorf("Rock Ridge names %q, %v; want %q", rr, err, c.names)
			}
			j, err := im.JolietNames(".")
			if err != nil || !reflect.DeepEqual(j, c.names) {
				t.Errorf("Joliet names %q, %v; want %q", j, err, c.names)
			}
			read := func(name string) []byte {
				t.Helper()
				b, err := im.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			switch c.os {
			case OSUbuntu:
				ud := read("user-data")
				doc := mustParseYAML(t, ud)
				hash, _ := dig(doc, "autoinstall", "identity", "password").(string)
				if ok, _ := sha512crypt.Verify(cfg.Password, hash); !ok {
					t.Error("the ISO's identity password does not verify")
				}
				md := read("meta-data")
				if !bytes.Contains(md, []byte(instanceID(ud))) {
					t.Errorf("meta-data %q does not name the user-data's instance id", md)
				}
			case OSFedora:
				ks := read("ks.cfg")
				if err := CheckKickstart(ks); err != nil {
					t.Error(err)
				}
			default:
				x := read("autounattend.xml")
				want, err := WindowsAutounattend(cfg, WindowsOptions{Edition: map[string]int{OSWindows10: 10, OSWindows11: 11}[c.os]})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(x, want) {
					t.Error("autounattend.xml on the ISO differs from the generator's")
				}
				ps := read("infinivirt-01-set-wallpaper.ps1")
				if !bytes.HasPrefix(ps, []byte("\ufeff")) || !bytes.Contains(ps, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(ps, []byte("\r\n"), nil), []byte("\n")) {
					t.Errorf("PowerShell script should be UTF-8 with BOM and CRLF: %q", ps)
				}
				if got := strings.TrimPrefix(strings.ReplaceAll(string(ps), "\r\n", "\n"), "\ufeff"); got != cfg.FirstBootScripts[0].Content {
					t.Errorf("script content %q", got)
				}
			}
		})
	}
}

// TestBadInputCreatesNothing covers acceptance item 6 for the generator side.
func TestBadInputCreatesNothing(t *testing.T) {
	short := fullConfig(OSFedora)
	short.Password = "abc"
	empty := fullConfig(OSUbuntu)
	empty.Username = ""
	cases := []struct {
		name, os, field string
		cfg             InstallConfig
		code            errdefs.Code
	}{
		{"unknown OS", "haiku", "os", fullConfig(OSUbuntu), errdefs.CodeInvalidArgument},
		{"empty username", OSUbuntu, "username", empty, errdefs.CodeInvalidArgument},
		{"password against the OS's rules", OSFedora, "password", short, errdefs.CodeInvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			err := BuildAnswerISO(context.Background(), c.os, c.cfg, filepath.Join(dir, "a.iso"))
			var ae *errdefs.Error
			if !errors.As(err, &ae) || ae.Code != c.code || ae.Field != c.field {
				t.Errorf("BuildAnswerISO = %v, want %s on %s", err, c.code, c.field)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		err := BuildAnswerISO(context.Background(), OSUbuntu, fullConfig(OSUbuntu), filepath.Join(dir, "nope", "a.iso"))
		if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
			t.Errorf("BuildAnswerISO = %v, want NotFound", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
	})
	t.Run("edition mismatch", func(t *testing.T) {
		dir := t.TempDir()
		err := BuildAnswerISOWithOptions(context.Background(), OSWindows10, fullConfig(OSWindows10), filepath.Join(dir, "a.iso"),
			Options{Windows: WindowsOptions{Edition: 11}})
		if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "edition"}) {
			t.Errorf("BuildAnswerISOWithOptions = %v, want InvalidArgument on edition", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := BuildAnswerISO(ctx, OSUbuntu, fullConfig(OSUbuntu), filepath.Join(dir, "a.iso")); !errors.Is(err, context.Canceled) {
			t.Errorf("BuildAnswerISO = %v, want context.Canceled", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
	})
}

func TestBuildCloudConfigISO(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "seed.iso")
	if err := BuildCloudConfigISO(context.Background(), fullConfig(OSUbuntu), CloudOptions{}, dst); err != nil {
		t.Fatal(err)
	}
	im, err := isoimage.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	ud, _ := im.ReadFile("user-data")
	if im.Volumes().Label != LabelNoCloud || mustParseYAML(t, ud)["hostname"] != "ivt-guest1" {
		t.Errorf("label %s, user-data %s", im.Volumes().Label, ud)
	}
}

func BenchmarkBuildAnswerISO(b *testing.B) {
	dir := b.TempDir()
	for _, os := range OSes {
		b.Run(os, func(b *testing.B) {
			cfg := fullConfig(os)
			for b.Loop() {
				if err := BuildAnswerISO(context.Background(), os, cfg, filepath.Join(dir, os+".iso")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
