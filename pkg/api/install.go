package api

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// InstallRequest asks for an unattended OS install when the VM is created:
// the VM boots the OS installer once, with an answer medium, and its status
// is building until the installer powers the guest off.
type InstallRequest struct {
	// OS is windows10, windows11, ubuntu or fedora; empty takes the VM's os,
	// and a different one is refused.
	OS string `json:"os,omitempty"`
	// Config is what the installer is told: the user, locale, time zone,
	// host name, applications and first-boot scripts; nil is refused. It
	// holds secrets: it is never stored in the spec, logged or returned;
	// only the answer ISO built from it carries them.
	Config *InstallConfig `json:"config"`
	// BootFromDiskAfter boots the installed system once the install is done;
	// nil means true.
	BootFromDiskAfter *bool `json:"bootFromDiskAfter,omitempty"`
	// TimeoutMinutes overrides the OS's install timeout (fractions allowed,
	// whole seconds count); 0 keeps the OS's default.
	TimeoutMinutes float64 `json:"timeoutMinutes,omitempty"`
	// KernelArgs are added to the kernel command line of an installer that
	// boots directly (Ubuntu), for example console=ttyS0 to follow it on the
	// serial console.
	KernelArgs string `json:"kernelArgs,omitempty"`
}

// InstallConfig is what an unattended install needs to know. It holds
// secrets (the password, the product key, and whatever the commands and
// scripts carry): the agent never stores it in the spec, logs or returns
// it. Its String, GoString and LogValue print it redacted.
type InstallConfig struct {
	// Username is the account the install creates, with administrator
	// rights (sudo on Linux).
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
	// Hostname is the installed system's host name (the computer name on
	// Windows).
	Hostname string `json:"hostname"`
	// Keyboard is the XKB layout, such as us or es. Empty derives it from the
	// locale's territory.
	Keyboard string `json:"keyboard,omitempty"`
	// Applications are installed in order, before the first-boot scripts run.
	Applications []Application `json:"applications,omitempty"`
	// FirstBootScripts run in order at the installed system's first boot.
	FirstBootScripts []Script `json:"firstBootScripts,omitempty"`
}

// Application is one program an unattended install installs.
type Application struct {
	// Name names it in errors and logs; on Linux, with no Command, it is
	// the package to install.
	Name string `json:"name"`
	// Command installs it. On Windows it is a cmd.exe command line and is
	// required. On Linux it is a shell command run at first boot; when empty,
	// Name is a package installed by the installer's package manager.
	Command string `json:"command,omitempty"`
}

// ScriptLanguage says which interpreter runs a first-boot script.
type ScriptLanguage string

// The script languages.
const (
	ScriptPowerShell ScriptLanguage = "powershell" // Windows; the default there
	ScriptCmd        ScriptLanguage = "cmd"        // Windows batch
	ScriptShell      ScriptLanguage = "shell"      // Linux; the default there
)

// Script is one first-boot script of an unattended install.
type Script struct {
	// Name names it in errors and logs.
	Name string `json:"name"`
	// Language is the interpreter; empty takes the OS's default.
	Language ScriptLanguage `json:"language,omitempty"`
	// Content is the script. On Linux a "#!" line picks the interpreter,
	// otherwise /bin/sh runs it.
	Content string `json:"content"`
}

const redacted = "[REDACTED]"

// redacted is a copy safe to print: the password and product key replaced,
// commands and script contents cut to their size, since they may carry
// secrets of their own.
func (c InstallConfig) redacted() InstallConfig {
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
	r := c.redacted()
	apps := make([]string, 0, len(r.Applications))
	for _, a := range r.Applications {
		apps = append(apps, a.Name)
	}
	scripts := make([]string, 0, len(r.FirstBootScripts))
	for _, s := range r.FirstBootScripts {
		scripts = append(scripts, s.Name)
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
		slog.String("firstBootScripts", strings.Join(scripts, ",")),
	)
}

// String keeps %v, %+v and %s from printing secrets.
func (c InstallConfig) String() string {
	r := c.redacted()
	return fmt.Sprintf("{username:%q password:%s productKey:%s locale:%q timezone:%q hostname:%q keyboard:%q applications:%d firstBootScripts:%d}",
		r.Username, r.Password, r.ProductKey, r.Locale, r.Timezone, r.Hostname, r.Keyboard, len(r.Applications), len(r.FirstBootScripts))
}

// GoString keeps %#v from printing secrets.
func (c InstallConfig) GoString() string { return "api.InstallConfig" + c.String() }

// InstallState is where an unattended install stands.
type InstallState string

// The install states, in the order an install goes through them.
const (
	InstallPending InstallState = "pending" // created, the installer has not run yet
	InstallRunning InstallState = "running" // the installer runs (or will at the next power-on)
	InstallDone    InstallState = "done"    // installed; the media are detached
	InstallFailed  InstallState = "failed"  // timed out or reset in a loop; the media are kept
)

// InstallStatus is what the API shows of a VM's unattended install. It never
// holds the install's secrets.
type InstallStatus struct {
	OS                string       `json:"os"`
	State             InstallState `json:"state"`
	BootFromDiskAfter bool         `json:"bootFromDiskAfter"`
	TimeoutSec        int          `json:"timeoutSec"`
	StartedAt         *time.Time   `json:"startedAt,omitempty"`
	FinishedAt        *time.Time   `json:"finishedAt,omitempty"`
	// DurationSec is how long the installer ran, once it finished or failed.
	DurationSec float64 `json:"durationSec,omitempty"`
	// Message says why an install failed.
	Message string `json:"message,omitempty"`
}
