package unattended

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestOSNamesMatchVMSpec(t *testing.T) {
	for _, os := range OSes {
		if !slices.Contains(vmspec.OSes, os) {
			t.Errorf("unattended OS %q is not a VM spec OS (%v)", os, vmspec.OSes)
		}
	}
}

func TestValidConfigsPass(t *testing.T) {
	for _, os := range OSes {
		if err := fullConfig(os).Validate(os); err != nil {
			t.Errorf("%s: %v", os, err)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	mod := func(os string, f func(*InstallConfig)) InstallConfig {
		c := fullConfig(os)
		f(&c)
		return c
	}
	cases := []struct {
		name, os, field string
		cfg             InstallConfig
	}{
		{"unknown OS", "beos", "os", fullConfig(OSUbuntu)},
		{"plain linux", "linux", "os", fullConfig(OSUbuntu)},
		{"empty username", OSUbuntu, "username", mod(OSUbuntu, func(c *InstallConfig) { c.Username = "" })},
		{"empty username windows", OSWindows11, "username", mod(OSWindows11, func(c *InstallConfig) { c.Username = "" })},
		{"linux username with space", OSFedora, "username", mod(OSFedora, func(c *InstallConfig) { c.Username = "al ice" })},
		{"linux username upper case", OSUbuntu, "username", mod(OSUbuntu, func(c *InstallConfig) { c.Username = "Alice" })},
		{"reserved linux user", OSUbuntu, "username", mod(OSUbuntu, func(c *InstallConfig) { c.Username = "root" })},
		{"long linux user", OSUbuntu, "username", mod(OSUbuntu, func(c *InstallConfig) { c.Username = strings.Repeat("a", 33) })},
		{"windows user with slash", OSWindows10, "username", mod(OSWindows10, func(c *InstallConfig) { c.Username = "a/b" })},
		{"windows user too long", OSWindows10, "username", mod(OSWindows10, func(c *InstallConfig) { c.Username = strings.Repeat("a", 21) })},
		{"windows builtin", OSWindows11, "username", mod(OSWindows11, func(c *InstallConfig) { c.Username = "Administrator" })},
		{"windows user = computer", OSWindows11, "username", mod(OSWindows11, func(c *InstallConfig) { c.Username = "PC1"; c.Hostname = "pc1" })},
		{"empty password", OSUbuntu, "password", mod(OSUbuntu, func(c *InstallConfig) { c.Password = "" })},
		{"fedora short password", OSFedora, "password", mod(OSFedora, func(c *InstallConfig) { c.Password = "abc12" })},
		{"windows long password", OSWindows11, "password", mod(OSWindows11, func(c *InstallConfig) { c.Password = strings.Repeat("x", 128) })},
		{"password newline", OSUbuntu, "password", mod(OSUbuntu, func(c *InstallConfig) { c.Password = "a\nb" })},
		{"password invalid utf8", OSUbuntu, "password", mod(OSUbuntu, func(c *InstallConfig) { c.Password = "a\xffb" })},
		{"product key on linux", OSUbuntu, "productKey", mod(OSUbuntu, func(c *InstallConfig) { c.ProductKey = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY" })},
		{"bad product key", OSWindows10, "productKey", mod(OSWindows10, func(c *InstallConfig) { c.ProductKey = "1234" })},
		{"bad locale", OSUbuntu, "locale", mod(OSUbuntu, func(c *InstallConfig) { c.Locale = "english" })},
		{"empty locale", OSWindows10, "locale", mod(OSWindows10, func(c *InstallConfig) { c.Locale = "" })},
		{"bad timezone", OSUbuntu, "timezone", mod(OSUbuntu, func(c *InstallConfig) { c.Timezone = "Mars/Olympus" })},
		{"windows name on linux", OSFedora, "timezone", mod(OSFedora, func(c *InstallConfig) { c.Timezone = "Romance Standard Time" })},
		{"local timezone", OSUbuntu, "timezone", mod(OSUbuntu, func(c *InstallConfig) { c.Timezone = "Local" })},
		{"bad windows timezone", OSWindows11, "timezone", mod(OSWindows11, func(c *InstallConfig) { c.Timezone = "Nowhere Standard Time" })},
		{"empty hostname", OSUbuntu, "hostname", mod(OSUbuntu, func(c *InstallConfig) { c.Hostname = "" })},
		{"hostname with dot", OSUbuntu, "hostname", mod(OSUbuntu, func(c *InstallConfig) { c.Hostname = "a.example" })},
		{"hostname underscore", OSFedora, "hostname", mod(OSFedora, func(c *InstallConfig) { c.Hostname = "a_b" })},
		{"hostname digits", OSUbuntu, "hostname", mod(OSUbuntu, func(c *InstallConfig) { c.Hostname = "12345" })},
		{"windows hostname long", OSWindows10, "hostname", mod(OSWindows10, func(c *InstallConfig) { c.Hostname = "abcdefghijklmnop" })},
		{"bad keyboard", OSUbuntu, "keyboard", mod(OSUbuntu, func(c *InstallConfig) { c.Keyboard = "US;rm" })},
		{"windows app without command", OSWindows10, "applications[0].command", mod(OSWindows10, func(c *InstallConfig) { c.Applications[0].Command = "" })},
		{"windows app multi-line", OSWindows10, "applications[0].command", mod(OSWindows10, func(c *InstallConfig) { c.Applications[0].Command = "a\nb" })},
		{"windows app too long", OSWindows10, "applications[0].command", mod(OSWindows10, func(c *InstallConfig) { c.Applications[0].Command = strings.Repeat("x", 1014) })},
		{"linux package name", OSUbuntu, "applications[0].name", mod(OSUbuntu, func(c *InstallConfig) { c.Applications[0].Name = "two words" })},
		{"app without name", OSFedora, "applications[1].name", mod(OSFedora, func(c *InstallConfig) { c.Applications[1].Name = "" })},
		{"script without content", OSUbuntu, "firstBootScripts[1].content", mod(OSUbuntu, func(c *InstallConfig) { c.FirstBootScripts[1].Content = " \n" })},
		{"script with NUL", OSUbuntu, "firstBootScripts[0].content", mod(OSUbuntu, func(c *InstallConfig) { c.FirstBootScripts[0].Content = "a\x00b" })},
		{"script name newline", OSFedora, "firstBootScripts[0].name", mod(OSFedora, func(c *InstallConfig) { c.FirstBootScripts[0].Name = "a\nb" })},
		{"powershell on linux", OSUbuntu, "firstBootScripts[0].language", mod(OSUbuntu, func(c *InstallConfig) { c.FirstBootScripts[0].Language = PowerShell })},
		{"shell on windows", OSWindows11, "firstBootScripts[0].language", mod(OSWindows11, func(c *InstallConfig) { c.FirstBootScripts[0].Language = Shell })},
		{"script too big", OSUbuntu, "firstBootScripts[0].content", mod(OSUbuntu, func(c *InstallConfig) { c.FirstBootScripts[0].Content = strings.Repeat("x", MaxScriptBytes+1) })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate(c.os)
			var ae *errdefs.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Validate(%s) = %v, want an *errdefs.Error", c.os, err)
			}
			if ae.Code != errdefs.CodeInvalidArgument || ae.Field != c.field {
				t.Errorf("Validate(%s) = %v, want InvalidArgument on field %s", c.os, err, c.field)
			}
		})
	}
}

func TestWindowsTimezones(t *testing.T) {
	for tz, want := range map[string]string{
		"Europe/Madrid":                "Romance Standard Time",
		"Romance Standard Time":        "Romance Standard Time",
		"America/New_York":             "Eastern Standard Time",
		"UTC":                          "UTC",
		"Asia/Kolkata":                 "India Standard Time",
		"Europe/Andorra":               "", // no table entry: any zone with Andorra's clock is right
		"America/Argentina/Cordoba":    "",
		"Pacific Standard Time":        "Pacific Standard Time",
		"America/Indiana/Indianapolis": "US Eastern Standard Time",
	} {
		got, ok := windowsZone(tz)
		if !ok {
			t.Errorf("windowsZone(%q) found nothing", tz)
			continue
		}
		if want != "" && got != want {
			t.Errorf("windowsZone(%q) = %q, want %q", tz, got, want)
		}
		if want == "" {
			a, _ := loadZone(tz)
			b, _ := loadZone(windowsZones[got])
			if !sameClock(a, b) {
				t.Errorf("windowsZone(%q) = %q whose clock differs", tz, got)
			}
		}
	}
	for id, iana := range windowsZones {
		if _, err := loadZone(iana); err != nil {
			t.Errorf("%s maps to %q, which Go's tzdata does not know: %v", id, iana, err)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c := fullConfig(OSWindows11)
	c.Password = "Sup3r-S3cret-Pw"
	c.FirstBootScripts[0].Content = "token=TOPSECRETTOKEN"
	c.Applications[0].Command = "install --key=APPKEYSECRET"
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("install", "config", c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("install", "config", c)
	fmt.Fprintf(&buf, "%v %+v %#v %s", c, c, c, c)
	fmt.Fprintf(&buf, "%v", c.Redacted())
	out := buf.String()
	for _, secret := range []string{"Sup3r-S3cret-Pw", c.ProductKey, "TOPSECRETTOKEN", "APPKEYSECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q leaked into:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "O'Brien") || !strings.Contains(out, "Set wallpaper") {
		t.Errorf("the non-secret fields should still be visible:\n%s", out)
	}
	if c.Password != "Sup3r-S3cret-Pw" {
		t.Error("Redacted changed the original")
	}
}

func loadZone(name string) (*time.Location, error) { return time.LoadLocation(name) }
