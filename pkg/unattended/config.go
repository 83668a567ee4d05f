// Package unattended generates the answer files that install an operating
// system without a person: autounattend.xml for Windows 10 and 11, Subiquity
// autoinstall in cloud-init NoCloud user-data for Ubuntu, a plain cloud-config
// for cloud-init guests, and a kickstart for Fedora. It also builds the answer
// ISO each installer finds by itself, and extracts the Ubuntu installer's
// kernel and initrd so the multi-GB OS ISO is never remastered.
//
// Every generator validates its InstallConfig first and names the field at
// fault with an *errdefs.Error of class InvalidArgument.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package unattended

import (
	"fmt"
	"log/slog"
	"strings"
)

// The operating systems this package installs, spelled as VM specs spell them.
const (
	OSWindows10 = "windows10"
	OSWindows11 = "windows11"
	OSUbuntu    = "ubuntu"
	OSFedora    = "fedora"
)

// OSes lists the operating systems with an unattended install.
var OSes = []string{OSWindows10, OSWindows11, OSUbuntu, OSFedora}

func isWindows(os string) bool { return os == OSWindows10 || os == OSWindows11 }

// InstallConfig is what an unattended install needs to know (seed §6.2).
// It holds secrets: log it through LogValue or Redacted, never as is.
type InstallConfig struct {
	Username string `json:"username"`
	// Password is the user's password in plain text. Linux answer files get
	// only its SHA-512 crypt hash; autounattend.xml can only hide it.
	Password string `json:"password"`
	// ProductKey is the Windows product key; empty installs with the generic
	// key of the chosen edition, unactivated.
	ProductKey string `json:"productKey,omitempty"`
	// Locale is a language and territory, such as en_US, es-ES or en_US.UTF-8.
	Locale string `json:"locale"`
	// Timezone is an IANA zone such as Europe/Madrid. Windows also takes a
	// Windows zone name such as "Romance Standard Time".
	Timezone string `json:"timezone"`
	Hostname string `json:"hostname"`
	// Keyboard is the XKB layout, such as us or es. Empty derives it from the
	// locale's territory. An Infinivirt extension of §6.2.
	Keyboard string `json:"keyboard,omitempty"`
	// Applications are installed in order, before the first-boot scripts run.
	Applications []Application `json:"applications,omitempty"`
	// FirstBootScripts run in order at the installed system's first boot.
	FirstBootScripts []Script `json:"firstBootScripts,omitempty"`
}

// Application is one program to install.
type Application struct {
	Name string `json:"name"`
	// Command installs it. On Windows it is a cmd.exe command line and is
	// required. On Linux it is a shell command run at first boot; when empty,
	// Name is a package installed by the installer's package manager.
	Command string `json:"command,omitempty"`
}

// ScriptLanguage says which interpreter runs a script.
type ScriptLanguage string

// The script languages.
const (
	PowerShell ScriptLanguage = "powershell" // Windows; the default there
	Cmd        ScriptLanguage = "cmd"        // Windows batch
	Shell      ScriptLanguage = "shell"      // Linux; the default there
)

// Script is one first-boot script.
type Script struct {
	Name     string         `json:"name"`
	Language ScriptLanguage `json:"language,omitempty"`
	// Content is the script. On Linux a "#!" line picks the interpreter,
	// otherwise /bin/sh runs it.
	Content string `json:"content"`
}

const redacted = "[REDACTED]"

// Redacted returns a copy that is safe to log: the password and product key
// are replaced and script contents and application commands are cut to their
// size, since they may carry secrets of their own.
func (c InstallConfig) Redacted() InstallConfig {
	r := c
	if r.Password != "" {
		r.Password = redacted
	}
	if r.ProductKey != "" {
		r.ProductKey = redacted
	}
	r.Applications = make([]Application, len(c.Applications))
	for i, a := range c.Applications {
		r.Applications[i] = Application{Name: a.Name}
		if a.Command != "" {
			r.Applications[i].Command = fmt.Sprintf("[%d bytes]", len(a.Command))
		}
	}
	r.FirstBootScripts = make([]Script, len(c.FirstBootScripts))
	for i, s := range c.FirstBootScripts {
		r.FirstBootScripts[i] = Script{Name: s.Name, Language: s.Language, Content: fmt.Sprintf("[%d bytes]", len(s.Content))}
	}
	return r
}

// LogValue makes slog print the redacted form.
func (c InstallConfig) LogValue() slog.Value {
	r := c.Redacted()
	names := make([]string, 0, len(r.FirstBootScripts))
	for _, s := range r.FirstBootScripts {
		names = append(names, s.Name)
	}
	apps := make([]string, 0, len(r.Applications))
	for _, a := range r.Applications {
		apps = append(apps, a.Name)
	}
	return slog.GroupValue(
		slog.String("username", r.Username),
		slog.String("password", r.Password),
		slog.String("productKey", r.ProductKey),
		slog.String("locale", r.Locale),
		slog.String("timezone", r.Timezone),
		slog.String("hostname", r.Hostname),
		slog.String("keyboard", r.Keyboard),
		slog.String("applications", strings.Join(apps, ",")),
		slog.String("firstBootScripts", strings.Join(names, ",")),
	)
}

// String keeps %v and %+v from printing secrets.
func (c InstallConfig) String() string {
	r := c.Redacted()
	return fmt.Sprintf("{username:%q password:%s productKey:%s locale:%q timezone:%q hostname:%q keyboard:%q applications:%d firstBootScripts:%d}",
		r.Username, r.Password, r.ProductKey, r.Locale, r.Timezone, r.Hostname, r.Keyboard, len(r.Applications), len(r.FirstBootScripts))
}

// GoString keeps %#v from printing secrets.
func (c InstallConfig) GoString() string { return "unattended.InstallConfig" + c.String() }
