package unattended

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // zone names validate the same on hosts without tzdata
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Limits that keep answer files inside what installers accept.
const (
	MaxLinuxUsername   = 32  // useradd
	MaxWindowsUsername = 20  // SAM account names
	MaxWindowsPassword = 127 // Windows logon UI and net user
	MaxLinuxPassword   = 256 // ours: SHA-512 crypt cost grows with length
	MinFedoraPassword  = 6   // Anaconda's default password policy (minlen=6)
	MaxWindowsHostname = 15  // NetBIOS computer names
	MaxHostname        = 63  // one DNS label
	MaxItems           = 100 // applications, and scripts, per install
	MaxScriptBytes     = 1 << 20
	MaxNameLen         = 100
	// MaxWindowsCommand is the longest application command: unattend's
	// CommandLine holds 1024 characters, and "cmd.exe /c " goes first.
	MaxWindowsCommand = 1024 - len("cmd.exe /c ")
)

var (
	linuxUserRE  = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	hostnameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)
	localeRE     = regexp.MustCompile(`^([a-z]{2,3})[_-]([A-Z]{2})(\.(UTF-8|utf8))?$`)
	keyboardRE   = regexp.MustCompile(`^[a-z][a-z0-9]{1,15}$`)
	packageRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._-]{0,127}$`)
	productKeyRE = regexp.MustCompile(`^[A-Z0-9]{5}(-[A-Z0-9]{5}){4}$`)
	allDigitsRE  = regexp.MustCompile(`^[0-9]+$`)
)

// reservedLinux are accounts that exist on every Debian, Ubuntu and Fedora
// system, or that installers refuse.
var reservedLinux = map[string]bool{
	"root": true, "daemon": true, "bin": true, "sys": true, "sync": true, "games": true, "man": true,
	"lp": true, "mail": true, "news": true, "uucp": true, "proxy": true, "www-data": true, "backup": true,
	"list": true, "irc": true, "gnats": true, "nobody": true, "adm": true, "admin": true, "sudo": true,
	"wheel": true, "shutdown": true, "halt": true, "operator": true, "ftp": true, "sshd": true,
	"messagebus": true, "systemd-network": true, "systemd-resolve": true, "systemd-timesync": true,
	"polkitd": true, "syslog": true, "tss": true, "chrony": true, "dnsmasq": true, "_apt": true,
}

// reservedWindows are built-in account names Setup refuses to create.
var reservedWindows = map[string]bool{
	"administrator": true, "guest": true, "defaultaccount": true, "wdagutilityaccount": true,
	"system": true, "local service": true, "network service": true, "administrators": true,
	"users": true, "none": true,
}

// Validate checks the config for an install of os (one of OSes) and returns
// an *errdefs.Error naming the first field at fault.
func (c InstallConfig) Validate(os string) error {
	switch os {
	case OSWindows10, OSWindows11, OSUbuntu, OSFedora:
	default:
		return errdefs.Invalid("os", "unattended install supports %s, got %q", strings.Join(OSes, ", "), os)
	}
	checks := []func(string) error{
		c.checkUsername, c.checkPassword, c.checkProductKey, c.checkLocale, c.checkTimezone,
		c.checkHostname, c.checkKeyboard, c.checkApplications, c.checkScripts,
	}
	for _, check := range checks {
		if err := check(os); err != nil {
			return err
		}
	}
	return nil
}

func (c InstallConfig) checkUsername(os string) error {
	u := c.Username
	if u == "" {
		return errdefs.Invalid("username", "must not be empty")
	}
	if err := plainText("username", u, false); err != nil {
		return err
	}
	if isWindows(os) {
		if n := utf8.RuneCountInString(u); n > MaxWindowsUsername {
			return errdefs.Invalid("username", "Windows allows at most %d characters, got %d", MaxWindowsUsername, n)
		}
		if i := strings.IndexAny(u, "\"/\\[]:;|=,+*?<>@"); i >= 0 {
			return errdefs.Invalid("username", "Windows does not allow %q in a user name", u[i])
		}
		if strings.TrimSpace(u) != u {
			return errdefs.Invalid("username", "must not start or end with white space")
		}
		if strings.Trim(u, ". ") == "" || strings.HasSuffix(u, ".") {
			return errdefs.Invalid("username", "Windows does not allow a user name of only dots and spaces, or ending in a dot")
		}
		if reservedWindows[strings.ToLower(u)] {
			return errdefs.Invalid("username", "%q is a built-in Windows account", u)
		}
		if strings.EqualFold(u, c.Hostname) {
			return errdefs.Invalid("username", "Windows does not allow a user name equal to the computer name")
		}
		return nil
	}
	if len(u) > MaxLinuxUsername {
		return errdefs.Invalid("username", "at most %d characters, got %d", MaxLinuxUsername, len(u))
	}
	if !linuxUserRE.MatchString(u) {
		return errdefs.Invalid("username", "must start with a-z or _ and hold only a-z, 0-9, _ and -, got %q", u)
	}
	if reservedLinux[u] || strings.HasPrefix(u, "systemd-") {
		return errdefs.Invalid("username", "%q is a system account", u)
	}
	return nil
}

func (c InstallConfig) checkPassword(os string) error {
	p := c.Password
	if p == "" {
		return errdefs.Invalid("password", "must not be empty")
	}
	if !utf8.ValidString(p) {
		return errdefs.Invalid("password", "must be valid UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return errdefs.Invalid("password", "must not contain control characters such as newline or tab")
		}
	}
	switch {
	case isWindows(os):
		if n := len(utf16.Encode([]rune(p))); n > MaxWindowsPassword {
			return errdefs.Invalid("password", "Windows allows at most %d characters, got %d", MaxWindowsPassword, n)
		}
	default:
		if n := utf8.RuneCountInString(p); n > MaxLinuxPassword {
			return errdefs.Invalid("password", "at most %d characters, got %d", MaxLinuxPassword, n)
		}
		if os == OSFedora && utf8.RuneCountInString(p) < MinFedoraPassword {
			return errdefs.Invalid("password", "Fedora's installer requires at least %d characters", MinFedoraPassword)
		}
	}
	return nil
}

func (c InstallConfig) checkProductKey(os string) error {
	if c.ProductKey == "" {
		return nil
	}
	if !isWindows(os) {
		return errdefs.Invalid("productKey", "only Windows takes a product key")
	}
	if !productKeyRE.MatchString(strings.ToUpper(c.ProductKey)) {
		return errdefs.Invalid("productKey", "must look like XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")
	}
	return nil
}

func (c InstallConfig) checkLocale(string) error {
	if _, _, ok := splitLocale(c.Locale); !ok {
		return errdefs.Invalid("locale", "must be a language and territory such as en_US, es-ES or en_US.UTF-8, got %q", c.Locale)
	}
	return nil
}

func (c InstallConfig) checkTimezone(os string) error {
	tz := c.Timezone
	if isWindows(os) {
		if _, ok := windowsZone(tz); !ok {
			return errdefs.Invalid("timezone", "no Windows time zone matches %q; give an IANA zone such as Europe/Madrid or a Windows zone name", tz)
		}
		return nil
	}
	if !ianaZone(tz) {
		return errdefs.Invalid("timezone", "must be an IANA time zone such as Europe/Madrid or UTC, got %q", tz)
	}
	return nil
}

func ianaZone(tz string) bool {
	if tz == "" || tz == "Local" || strings.ContainsAny(tz, " \\") || strings.Contains(tz, "..") {
		return false
	}
	_, err := time.LoadLocation(tz)
	return err == nil
}

func (c InstallConfig) checkHostname(os string) error {
	h := c.Hostname
	if h == "" {
		return errdefs.Invalid("hostname", "must not be empty")
	}
	limit := MaxHostname
	if isWindows(os) {
		limit = MaxWindowsHostname
	}
	if len(h) > limit {
		return errdefs.Invalid("hostname", "at most %d characters, got %d", limit, len(h))
	}
	if !hostnameRE.MatchString(h) || allDigitsRE.MatchString(h) {
		return errdefs.Invalid("hostname", "must be letters, digits and inner hyphens, not only digits, got %q", h)
	}
	return nil
}

func (c InstallConfig) checkKeyboard(string) error {
	if c.Keyboard != "" && !keyboardRE.MatchString(c.Keyboard) {
		return errdefs.Invalid("keyboard", "must be an XKB layout name such as us or es, got %q", c.Keyboard)
	}
	return nil
}

func (c InstallConfig) checkApplications(os string) error {
	if len(c.Applications) > MaxItems {
		return errdefs.Invalid("applications", "at most %d, got %d", MaxItems, len(c.Applications))
	}
	for i, a := range c.Applications {
		f := fmt.Sprintf("applications[%d]", i)
		if err := checkItemName(f+".name", a.Name); err != nil {
			return err
		}
		if isWindows(os) {
			if a.Command == "" {
				return errdefs.Invalid(f+".command", "Windows needs the command line that installs the application")
			}
			if err := plainText(f+".command", a.Command, false); err != nil {
				return err
			}
			if n := len(utf16.Encode([]rune(a.Command))); n > MaxWindowsCommand {
				return errdefs.Invalid(f+".command", "at most %d characters on one line, got %d; put longer steps in a first-boot script", MaxWindowsCommand, n)
			}
			continue
		}
		if a.Command == "" {
			if !packageRE.MatchString(a.Name) {
				return errdefs.Invalid(f+".name", "without a command the name is a package name, and %q is not one", a.Name)
			}
			continue
		}
		if err := plainText(f+".command", a.Command, true); err != nil {
			return err
		}
		if len(a.Command) > MaxScriptBytes {
			return errdefs.Invalid(f+".command", "at most %d bytes", MaxScriptBytes)
		}
	}
	return nil
}

func (c InstallConfig) checkScripts(os string) error {
	if len(c.FirstBootScripts) > MaxItems {
		return errdefs.Invalid("firstBootScripts", "at most %d, got %d", MaxItems, len(c.FirstBootScripts))
	}
	for i, s := range c.FirstBootScripts {
		f := fmt.Sprintf("firstBootScripts[%d]", i)
		if err := checkItemName(f+".name", s.Name); err != nil {
			return err
		}
		switch {
		case isWindows(os) && (s.Language == "" || s.Language == PowerShell || s.Language == Cmd):
		case !isWindows(os) && (s.Language == "" || s.Language == Shell):
		default:
			want := "shell"
			if isWindows(os) {
				want = "powershell or cmd"
			}
			return errdefs.Invalid(f+".language", "%s takes %s scripts, got %q", os, want, s.Language)
		}
		if strings.TrimSpace(s.Content) == "" {
			return errdefs.Invalid(f+".content", "must not be empty")
		}
		if len(s.Content) > MaxScriptBytes {
			return errdefs.Invalid(f+".content", "at most %d bytes, got %d", MaxScriptBytes, len(s.Content))
		}
		if err := plainText(f+".content", s.Content, true); err != nil {
			return err
		}
	}
	return nil
}

// plainText accepts valid UTF-8 without control characters; multiline also
// lets newline, carriage return and tab through.
func plainText(f, s string, multiline bool) error {
	if !utf8.ValidString(s) {
		return errdefs.Invalid(f, "must be valid UTF-8")
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		// Also refused: characters XML 1.0 cannot carry and YAML line breaks.
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\uFEFF' || r == '\uFFFE' || r == '\uFFFF' {
			return errdefs.Invalid(f, "must not contain control characters (found %U)", r)
		}
	}
	return nil
}

// checkItemName checks the display name of an application or script.
func checkItemName(f, name string) error {
	if name == "" {
		return errdefs.Invalid(f, "must not be empty")
	}
	if err := plainText(f, name, false); err != nil {
		return err
	}
	if utf8.RuneCountInString(name) > MaxNameLen {
		return errdefs.Invalid(f, "at most %d characters", MaxNameLen)
	}
	return nil
}

// splitLocale returns the language and territory of a locale.
func splitLocale(l string) (lang, territory string, ok bool) {
	m := localeRE.FindStringSubmatch(l)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// linuxLocale spells a valid locale as glibc does: en_US.UTF-8.
func linuxLocale(l string) string {
	lang, terr, _ := splitLocale(l)
	return lang + "_" + terr + ".UTF-8"
}

// windowsLocale spells a valid locale as Windows does: en-US.
func windowsLocale(l string) string {
	lang, terr, _ := splitLocale(l)
	return lang + "-" + terr
}

// keyboardLayout is the configured layout, or the one named after the
// locale's territory (es_ES → es, en_GB → gb), with us for en_US.
func (c InstallConfig) keyboardLayout() string {
	if c.Keyboard != "" {
		return c.Keyboard
	}
	_, terr, _ := splitLocale(c.Locale)
	return strings.ToLower(terr)
}
