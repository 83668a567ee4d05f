package vmspec

import (
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// Limits that keep a single request from asking for the absurd.
const (
	MaxCPUs            = 288 // q35 in QEMU 7.2
	MinMemoryMiB       = 64
	MaxMemoryMiB       = 16 << 20 // 16 TiB
	MaxDiskBytes       = 64 << 40 // 64 TiB
	MaxVNCPassword     = 8        // QEMU silently truncates longer ones
	MaxSpicePassword   = 60
	DefaultShutdownSec = 120
	MaxShutdownSec     = 3600
	maxNameLen         = 128
	maxCmdlineLen      = 4096
)

// OSes lists the operating systems a VM can declare.
var OSes = []string{"windows10", "windows11", "ubuntu", "fedora", "linux"}

var (
	uuidRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	pciRE    = regexp.MustCompile(`^([0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	bridgeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
)

// ValidID reports whether id is a VM id as a spec holds it: a lower-case
// UUID, safe to put in a path or a unit name.
func ValidID(id string) bool { return uuidRE.MatchString(id) }

// Defaults are the host's settings that fill what a request leaves empty.
type Defaults struct {
	Accel          string // kvm or tcg
	GraphicsListen string // IP literal the displays listen on
	Layout         Layout
	Now            func() time.Time
}

// FromCreateInput checks every field of a create request on its own, without
// looking at the host, and returns the spec it describes. The error names the
// first field at fault with its JSON name. Host checks (bridge, port, files,
// duplicates) are the agent's.
func FromCreateInput(in api.CreateVMInput, d Defaults) (*Spec, error) {
	id := strings.ToLower(strings.TrimSpace(in.InternalName))
	if !uuidRE.MatchString(id) {
		return nil, errdefs.Invalid("internalName", "must be a UUID like 0f8fad5b-d9cb-469f-a165-70867728950e, got %q", in.InternalName)
	}
	if err := checkName(in.Name); err != nil {
		return nil, err
	}
	if !contains(OSes, in.OS) {
		return nil, errdefs.Invalid("os", "must be one of %s, got %q", strings.Join(OSes, ", "), in.OS)
	}
	if in.CPUCores < 1 || in.CPUCores > MaxCPUs {
		return nil, errdefs.Invalid("cpuCores", "must be between 1 and %d, got %d", MaxCPUs, in.CPUCores)
	}
	memMiB, ok := wholeMiB(in.RAMGB)
	if !ok || memMiB < MinMemoryMiB || memMiB > MaxMemoryMiB {
		return nil, errdefs.Invalid("ramGB", "must be a whole number of MiB between %d MiB and %d GiB, got %v GiB", MinMemoryMiB, MaxMemoryMiB>>10, in.RAMGB)
	}
	diskMiB, ok := wholeMiB(in.DiskSizeGB)
	if !ok || diskMiB < 1 || int64(diskMiB)<<20 > MaxDiskBytes {
		return nil, errdefs.Invalid("diskSizeGB", "must be a whole number of MiB between 1 MiB and %d TiB, got %v GiB", MaxDiskBytes>>40, in.DiskSizeGB)
	}
	format := in.DiskFormat
	if format == "" {
		format = "qcow2"
	}
	if format != "qcow2" && format != "raw" {
		return nil, errdefs.Invalid("diskFormat", "must be qcow2 or raw, got %q", in.DiskFormat)
	}
	mac := in.MACAddress
	if mac == "" {
		mac = netdev.GenerateMAC().String()
	} else {
		hw, err := netdev.ParseMAC(mac)
		if err != nil {
			return nil, errdefs.Invalid("macAddress", "%v", err)
		}
		mac = hw.String()
	}
	if !bridgeRE.MatchString(in.NetworkBridge) {
		return nil, errdefs.Invalid("networkBridge", "must be an interface name of 1 to 15 letters, digits, '-', '_' or '.', got %q", in.NetworkBridge)
	}
	disp, err := checkDisplay(in)
	if err != nil {
		return nil, err
	}
	disp.Listen = d.GraphicsListen
	gpu := strings.ToLower(in.GPUPCIAddress)
	if gpu != "" {
		if !pciRE.MatchString(gpu) {
			return nil, errdefs.Invalid("gpuPciAddress", "must be a PCI address like 0000:01:00.0, got %q", in.GPUPCIAddress)
		}
		if len(gpu) == 7 {
			gpu = "0000:" + gpu
		}
	}
	if in.ISOPath != "" {
		if err := CheckHostPath("isoPath", in.ISOPath); err != nil {
			return nil, err
		}
	}
	if in.Boot != nil {
		if err := checkBoot(in.Boot); err != nil {
			return nil, err
		}
	}
	accel := in.Accel
	if accel == "" {
		accel = d.Accel
	}
	if accel != "kvm" && accel != "tcg" {
		return nil, errdefs.Invalid("accel", "must be kvm or tcg, got %q", in.Accel)
	}
	timeout := in.ShutdownTimeoutSec
	if timeout == 0 {
		timeout = DefaultShutdownSec
	}
	if timeout < 1 || timeout > MaxShutdownSec {
		return nil, errdefs.Invalid("shutdownTimeoutSec", "must be between 1 and %d seconds, got %d", MaxShutdownSec, in.ShutdownTimeoutSec)
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	return &Spec{
		Version:   CurrentVersion,
		ID:        id,
		Name:      in.Name,
		OS:        in.OS,
		CPUs:      in.CPUCores,
		MemoryMiB: memMiB,
		Disk: Disk{
			Path:      filepath.Join(d.Layout.VMDir(id), "disk0."+format),
			Format:    format,
			SizeBytes: int64(diskMiB) << 20,
		},
		NIC:                NIC{MAC: mac, Bridge: in.NetworkBridge},
		Display:            disp,
		GPU:                gpu,
		ISOPath:            in.ISOPath,
		Boot:               in.Boot,
		Accel:              accel,
		ShutdownTimeoutSec: timeout,
		Autostart:          in.Autostart,
		CreatedAt:          now().UTC().Truncate(time.Second),
	}, nil
}

// Validate re-checks a loaded spec, so that a hand-edited file fails loudly
// in the shim rather than producing a strange QEMU.
func (s *Spec) Validate() error {
	in := api.CreateVMInput{
		Name: s.Name, InternalName: s.ID, OS: s.OS, CPUCores: s.CPUs,
		RAMGB: float64(s.MemoryMiB) / 1024, DiskSizeGB: float64(s.Disk.SizeBytes) / (1 << 30),
		MACAddress: s.NIC.MAC, NetworkBridge: s.NIC.Bridge, GraphicProtocol: s.Display.Protocol,
		GraphicPort: s.Display.Port, GraphicPassword: s.Display.Password, GPUPCIAddress: s.GPU,
		ISOPath: s.ISOPath, DiskFormat: s.Disk.Format, Accel: s.Accel, Boot: s.Boot,
		ShutdownTimeoutSec: s.ShutdownTimeoutSec,
	}
	if _, err := FromCreateInput(in, Defaults{Accel: s.Accel, GraphicsListen: s.Display.Listen}); err != nil {
		return err
	}
	// What a create fills in when the request leaves it empty, a stored
	// spec must hold itself.
	if s.Display.Port == 0 {
		return errdefs.Invalid("graphicPort", "a stored spec needs an allocated port")
	}
	if s.NIC.MAC == "" {
		return errdefs.Invalid("macAddress", "a stored spec needs its MAC address")
	}
	if s.Disk.Format == "" {
		return errdefs.Invalid("diskFormat", "a stored spec names its disk's format")
	}
	if net.ParseIP(s.Display.Listen) == nil {
		return errdefs.Invalid("graphicListen", "must be an IP address, got %q", s.Display.Listen)
	}
	if err := CheckHostPath("disk.path", s.Disk.Path); err != nil {
		return err
	}
	return s.validatePlatform()
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return errdefs.Invalid("name", "must be 1 to %d bytes long", maxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errdefs.Invalid("name", "must not contain control characters or invalid UTF-8")
		}
	}
	return nil
}

func checkDisplay(in api.CreateVMInput) (Display, error) {
	d := Display{Protocol: in.GraphicProtocol, Port: in.GraphicPort, Password: in.GraphicPassword}
	maxPass := 0
	switch in.GraphicProtocol {
	case "vnc":
		maxPass = MaxVNCPassword
		if d.Port != 0 && (d.Port < 5900 || d.Port > 65535) {
			return d, errdefs.Invalid("graphicPort", "a VNC port must be between 5900 and 65535 (or 0 to allocate), got %d", d.Port)
		}
	case "spice":
		maxPass = MaxSpicePassword
		if d.Port != 0 && (d.Port < 1024 || d.Port > 65535) {
			return d, errdefs.Invalid("graphicPort", "a SPICE port must be between 1024 and 65535 (or 0 to allocate), got %d", d.Port)
		}
	default:
		return d, errdefs.Invalid("graphicProtocol", "must be spice or vnc, got %q", in.GraphicProtocol)
	}
	if d.Password == "" {
		return d, errdefs.Invalid("graphicPassword", "is required: a display without one would refuse every login")
	}
	if len(d.Password) > maxPass {
		return d, errdefs.Invalid("graphicPassword", "a %s password has at most %d characters, got %d", in.GraphicProtocol, maxPass, len(d.Password))
	}
	for _, r := range d.Password {
		if r < 0x20 || r > 0x7e {
			return d, errdefs.Invalid("graphicPassword", "must be printable ASCII")
		}
	}
	return d, nil
}

func checkBoot(b *api.DirectBoot) error {
	if err := CheckHostPath("boot.kernel", b.Kernel); err != nil {
		return err
	}
	if b.Initrd != "" {
		if err := CheckHostPath("boot.initrd", b.Initrd); err != nil {
			return err
		}
	}
	if len(b.Cmdline) > maxCmdlineLen {
		return errdefs.Invalid("boot.cmdline", "is longer than %d bytes", maxCmdlineLen)
	}
	for _, r := range b.Cmdline {
		if unicode.IsControl(r) {
			return errdefs.Invalid("boot.cmdline", "must not contain control characters")
		}
	}
	return nil
}

// CheckHostPath accepts an absolute, clean path without ".." or commas
// (QEMU's option separator), and names field when it refuses.
func CheckHostPath(field, p string) error {
	switch {
	case p == "":
		return errdefs.Invalid(field, "is empty")
	case !filepath.IsAbs(p):
		return errdefs.Invalid(field, "must be an absolute path, got %q", p)
	case filepath.Clean(p) != p || strings.Contains(p, ".."):
		return errdefs.Invalid(field, "must be a clean path without '..', got %q", p)
	case strings.ContainsAny(p, ",\x00\n"):
		return errdefs.Invalid(field, "must not contain commas, NUL or newlines, got %q", p)
	}
	return nil
}

// wholeMiB converts GiB to MiB when the value is a whole, finite number of MiB.
func wholeMiB(gib float64) (int, bool) {
	if math.IsNaN(gib) || math.IsInf(gib, 0) || gib <= 0 || gib > float64(MaxDiskBytes>>30) {
		return 0, false
	}
	mib := gib * 1024
	if mib != math.Trunc(mib) {
		return 0, false
	}
	return int(mib), true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
