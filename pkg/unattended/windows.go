package unattended

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
)

// WindowsOptions choose what autounattend.xml installs.
type WindowsOptions struct {
	// Edition is 10 or 11.
	Edition int
	// ImageName picks the image in install.wim by name, such as
	// "Windows 11 Pro". Empty lets the product key choose the edition.
	ImageName string
	// UILanguage is the language of Setup and of Windows itself, which must
	// be on the install medium. Empty means en-US. The config's locale sets
	// the formats, the input locale and the system locale.
	UILanguage string
}

// GenericProductKey is the key used without a product key: Microsoft's
// published KMS client setup key for Windows 10 and 11 Pro. It selects the
// Pro edition and installs without activating it.
const GenericProductKey = "W269N-WFGWX-YVC9B-4J6C9-T83GX"

const (
	unattendNS = "urn:schemas-microsoft-com:unattend"
	wcmNS      = "http://schemas.microsoft.com/WMIConfig/2002/State"
	// scriptPrefix starts the names of first-boot scripts on the answer ISO.
	scriptPrefix = "infinivirt-"
)

// virtioDrivers are the virtio-win folders Setup loads: block, SCSI, network.
var virtioDrivers = []string{"viostor", "vioscsi", "NetKVM"}

// searchLetters are the drive letters the CD-ROMs may get. Setup ignores
// driver paths that do not exist, so listing them all finds the virtio-win
// ISO and the answer ISO wherever Windows puts them.
const searchLetters = "DEFGHIJKLMNOPQRSTUVWXYZ"

// WindowsAutounattend returns autounattend.xml for Windows 10 or 11 on
// UEFI: the virtio storage and network drivers from the virtio-win ISO
// (searched on every drive letter), the first disk wiped and partitioned
// GPT (EFI, MSR, Windows), the product key or the generic one, locale and
// time zone, the computer name, the local administrator with one automatic
// logon, OOBE skipped, and FirstLogonCommands that run the applications
// and then the first-boot scripts in order, and power the guest off.
//
// The scripts themselves are files at the root of the answer ISO (see
// AnswerFiles); the commands find them by drive letter. Windows cannot take
// a password hash: the password is stored base64-encoded as Setup's
// "PlainText=false" form, which hides it from a glance but is no secret.
func WindowsAutounattend(cfg InstallConfig, opts WindowsOptions) ([]byte, error) {
	os, err := opts.os()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(os); err != nil {
		return nil, err
	}
	return renderAutounattend(cfg, opts), nil
}

func (o WindowsOptions) os() (string, error) {
	switch o.Edition {
	case 10:
		return OSWindows10, nil
	case 11:
		return OSWindows11, nil
	}
	return "", errdefs.Invalid("edition", "Windows edition must be 10 or 11, got %d", o.Edition)
}

func (o WindowsOptions) uiLanguage() string {
	if o.UILanguage != "" {
		return o.UILanguage
	}
	return "en-US"
}

// windowsScript is one first-boot script as a file on the answer ISO.
type windowsScript struct {
	file        string
	data        []byte
	commandLine string
	description string
}

func (c InstallConfig) windowsScripts() []windowsScript {
	var out []windowsScript
	for i, s := range c.FirstBootScripts {
		ext, data := ".ps1", []byte("\ufeff"+crlf(s.Content)) // Windows PowerShell 5.1 needs the BOM to read UTF-8
		if s.Language == Cmd {
			ext, data = ".cmd", []byte(crlf(s.Content))
		}
		name := fmt.Sprintf("%s%02d-%s%s", scriptPrefix, i+1, slug(s.Name), ext)
		run := fmt.Sprintf(`powershell.exe -NoProfile -ExecutionPolicy Bypass -File %%d:\%s`, name)
		if ext == ".cmd" {
			run = fmt.Sprintf(`call %%d:\%s`, name)
		}
		letters := strings.Join(strings.Split(searchLetters, ""), " ")
		out = append(out, windowsScript{
			file:        name,
			data:        data,
			commandLine: fmt.Sprintf(`cmd.exe /c for %%d in (%s) do @if exist %%d:\%s %s`, letters, name, run),
			description: "Run first-boot script " + s.Name,
		})
	}
	return out
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// hidePassword is unattend's PlainText=false form: base64 of the UTF-16LE
// password followed by the element name ("Password").
func hidePassword(pw string) string {
	u := utf16.Encode([]rune(pw + "Password"))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// xw writes indented XML; text and attribute values are always escaped.
type xw struct {
	b     strings.Builder
	depth int
}

func (w *xw) indent() { w.b.WriteString(strings.Repeat("  ", w.depth)) }

// open writes an indented start tag without its line end; attrs are
// name, value pairs.
func (w *xw) open(name string, attrs []string) {
	w.indent()
	w.b.WriteString("<" + name)
	for i := 0; i+1 < len(attrs); i += 2 {
		w.b.WriteString(" " + attrs[i] + `="`)
		_ = xml.EscapeText(&w.b, []byte(attrs[i+1])) // writes to memory never fail
		w.b.WriteString(`"`)
	}
	w.b.WriteString(">")
}

func (w *xw) start(name string, attrs ...string) {
	w.open(name, attrs)
	w.b.WriteString("\n")
	w.depth++
}

func (w *xw) end(name string) {
	w.depth--
	w.indent()
	w.b.WriteString("</" + name + ">\n")
}

func (w *xw) leaf(name, text string, attrs ...string) {
	w.open(name, attrs)
	_ = xml.EscapeText(&w.b, []byte(text))
	w.b.WriteString("</" + name + ">\n")
}

func (w *xw) component(name string) {
	w.start("component", "name", name, "processorArchitecture", "amd64", "publicKeyToken", "31bf3856ad364e35",
		"language", "neutral", "versionScope", "nonSxS")
}

// locales writes the language settings of the International-Core
// components, the same in windowsPE and oobeSystem.
func (w *xw) locales(locale, ui string) {
	w.leaf("InputLocale", locale)
	w.leaf("SystemLocale", locale)
	w.leaf("UILanguage", ui)
	w.leaf("UserLocale", locale)
}

func (w *xw) password(pw string) {
	w.start("Password")
	w.leaf("Value", hidePassword(pw))
	w.leaf("PlainText", "false")
	w.end("Password")
}

func renderAutounattend(cfg InstallConfig, opts WindowsOptions) []byte {
	locale := windowsLocale(cfg.Locale)
	tz, _ := windowsZone(cfg.Timezone)
	key := strings.ToUpper(cfg.ProductKey)
	if key == "" {
		key = GenericProductKey
	}
	w := &xw{}
	w.b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	fmt.Fprintf(&w.b, "<!-- Unattended install of Windows %d, generated by Infinivirt. -->\n", opts.Edition)
	w.start("unattend", "xmlns", unattendNS, "xmlns:wcm", wcmNS)

	w.start("settings", "pass", "windowsPE")
	w.component("Microsoft-Windows-International-Core-WinPE")
	w.start("SetupUILanguage")
	w.leaf("UILanguage", opts.uiLanguage())
	w.end("SetupUILanguage")
	w.locales(locale, opts.uiLanguage())
	w.end("component")

	w.component("Microsoft-Windows-PnpCustomizationsWinPE")
	w.start("DriverPaths")
	n := 0
	winDir := fmt.Sprintf("w%d", opts.Edition)
	for _, drv := range virtioDrivers {
		for _, l := range searchLetters {
			n++
			w.start("PathAndCredentials", "wcm:action", "add", "wcm:keyValue", fmt.Sprint(n))
			w.leaf("Path", fmt.Sprintf(`%c:\%s\%s\amd64`, l, drv, winDir))
			w.end("PathAndCredentials")
		}
	}
	w.end("DriverPaths")
	w.end("component")

	w.component("Microsoft-Windows-Setup")
	w.start("DiskConfiguration")
	w.start("Disk", "wcm:action", "add")
	w.leaf("DiskID", "0")
	w.leaf("WillWipeDisk", "true")
	w.start("CreatePartitions")
	for i, p := range []struct{ typ, size string }{{"EFI", "300"}, {"MSR", "16"}, {"Primary", ""}} {
		w.start("CreatePartition", "wcm:action", "add")
		w.leaf("Order", fmt.Sprint(i+1))
		w.leaf("Type", p.typ)
		if p.size != "" {
			w.leaf("Size", p.size)
		} else {
			w.leaf("Extend", "true")
		}
		w.end("CreatePartition")
	}
	w.end("CreatePartitions")
	w.start("ModifyPartitions")
	for i, p := range []struct{ label, letter, format string }{{"System", "", "FAT32"}, {}, {"Windows", "C", "NTFS"}} {
		w.start("ModifyPartition", "wcm:action", "add")
		w.leaf("Order", fmt.Sprint(i+1))
		w.leaf("PartitionID", fmt.Sprint(i+1))
		for _, f := range [][2]string{{"Label", p.label}, {"Letter", p.letter}, {"Format", p.format}} {
			if f[1] != "" {
				w.leaf(f[0], f[1])
			}
		}
		w.end("ModifyPartition")
	}
	w.end("ModifyPartitions")
	w.end("Disk")
	w.end("DiskConfiguration")
	w.start("ImageInstall")
	w.start("OSImage")
	if opts.ImageName != "" {
		w.start("InstallFrom")
		w.start("MetaData", "wcm:action", "add")
		w.leaf("Key", "/IMAGE/NAME")
		w.leaf("Value", opts.ImageName)
		w.end("MetaData")
		w.end("InstallFrom")
	}
	w.start("InstallTo")
	w.leaf("DiskID", "0")
	w.leaf("PartitionID", "3")
	w.end("InstallTo")
	w.end("OSImage")
	w.end("ImageInstall")
	w.start("UserData")
	w.start("ProductKey")
	w.leaf("Key", key)
	w.leaf("WillShowUI", "OnError")
	w.end("ProductKey")
	w.leaf("AcceptEula", "true")
	w.end("UserData")
	w.end("component")
	w.end("settings")

	w.start("settings", "pass", "specialize")
	w.component("Microsoft-Windows-Shell-Setup")
	w.leaf("ComputerName", cfg.Hostname)
	w.leaf("TimeZone", tz)
	w.end("component")
	w.end("settings")

	w.start("settings", "pass", "oobeSystem")
	w.component("Microsoft-Windows-International-Core")
	w.locales(locale, opts.uiLanguage())
	w.end("component")
	w.component("Microsoft-Windows-Shell-Setup")
	w.start("AutoLogon")
	w.password(cfg.Password)
	w.leaf("Enabled", "true")
	w.leaf("LogonCount", "1")
	w.leaf("Username", cfg.Username)
	w.end("AutoLogon")
	w.start("FirstLogonCommands")
	order := 0
	cmd := func(line, desc string) {
		order++
		w.start("SynchronousCommand", "wcm:action", "add")
		w.leaf("Order", fmt.Sprint(order))
		w.leaf("CommandLine", line)
		w.leaf("Description", desc)
		w.leaf("RequiresUserInput", "false")
		w.end("SynchronousCommand")
	}
	for _, a := range cfg.Applications {
		cmd("cmd.exe /c "+a.Command, "Install "+a.Name)
	}
	for _, s := range cfg.windowsScripts() {
		cmd(s.commandLine, s.description)
	}
	cmd(`shutdown.exe /s /f /t 5 /c "Infinivirt: installation finished"`, "Power off: the installation is complete")
	w.end("FirstLogonCommands")
	w.start("OOBE")
	w.leaf("HideEULAPage", "true")
	w.leaf("HideLocalAccountScreen", "true")
	w.leaf("HideOEMRegistrationScreen", "true")
	w.leaf("HideOnlineAccountScreens", "true")
	w.leaf("HideWirelessSetupInOOBE", "true")
	w.leaf("ProtectYourPC", "3")
	w.end("OOBE")
	w.start("UserAccounts")
	w.start("LocalAccounts")
	w.start("LocalAccount", "wcm:action", "add")
	w.password(cfg.Password)
	w.leaf("Description", "Administrator created by Infinivirt")
	w.leaf("DisplayName", cfg.Username)
	w.leaf("Group", "Administrators")
	w.leaf("Name", cfg.Username)
	w.end("LocalAccount")
	w.end("LocalAccounts")
	w.end("UserAccounts")
	w.end("component")
	w.end("settings")
	w.end("unattend")
	return []byte(w.b.String())
}

// windowsAnswerFiles are autounattend.xml and the scripts, all at the root:
// Setup reads the answer file from the root of any removable medium.
func windowsAnswerFiles(cfg InstallConfig, opts WindowsOptions) ([]isoimage.File, error) {
	x, err := WindowsAutounattend(cfg, opts)
	if err != nil {
		return nil, err
	}
	files := []isoimage.File{{Path: "autounattend.xml", Data: x}}
	for _, s := range cfg.windowsScripts() {
		files = append(files, isoimage.File{Path: s.file, Data: s.data})
	}
	return files, nil
}
