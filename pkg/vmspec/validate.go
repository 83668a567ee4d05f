package vmspec

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
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

// FromCreateInput maps a create request onto the spec it describes and
// checks it, without looking at the host. The request's values in its own
// units (GiB, an optional MAC) are checked here; the spec they make is
// checked by the spec's own rules, and the error names the request field
// the client sent (diskSizeGB, macAddress, devices[0].nic.bridge). Host
// checks (bridge, port, files, duplicates) are the agent's.
func FromCreateInput(in api.CreateVMInput, d Defaults) (*Spec, error) {
	s, err := mapCreateInput(in, d)
	if err != nil {
		return nil, err
	}
	if err := s.validate(false); err != nil {
		return nil, errdefs.RenameField(err, func(f string) string { return CreateInputField(in, f) })
	}
	return s, nil
}

// createOrigin is where a device of a created spec comes from: a flat
// field of the request (index -1), or an entry of its devices list.
type createOrigin struct {
	typ   api.DeviceType
	index int
}

// createOrigins lists the devices a create request makes, in the spec's
// order: disk0, cd0 (isoPath), net0, the request's own devices, pci0
// (gpuPciAddress), balloon0 (unless balloon is false).
func createOrigins(in api.CreateVMInput) []createOrigin {
	o := []createOrigin{{api.DeviceDisk, -1}}
	if in.ISOPath != "" {
		o = append(o, createOrigin{api.DeviceCDROM, -1})
	}
	o = append(o, createOrigin{api.DeviceNIC, -1})
	for i, d := range in.Devices {
		o = append(o, createOrigin{d.Type, i})
	}
	if in.GPUPCIAddress != "" {
		o = append(o, createOrigin{api.DevicePCI, -1})
	}
	if wantsBalloon(in) {
		o = append(o, createOrigin{api.DeviceBalloon, -1})
	}
	return o
}

// flatFields are the request fields of the devices a request's flat fields make.
var flatFields = map[api.DeviceType]map[string]string{
	api.DeviceDisk: {"disk.sizeBytes": "diskSizeGB", "disk.format": "diskFormat", "disk.path": "diskFormat",
		"disk.image": "diskImage", "disk.clone": "diskClone"},
	api.DeviceCDROM: {"cdrom.path": "isoPath"},
	api.DeviceNIC:   {"nic.mac": "macAddress", "nic.bridge": "networkBridge"},
	api.DevicePCI:   {"pci.host": "gpuPciAddress"},
}

// specFields are the request fields of the spec's other fields; the rest
// (name, os, accel, boot.kernel, ...) are spelled alike.
var specFields = map[string]string{
	"id": "internalName", "cpus": "cpuCores", "memoryMiB": "ramGB",
	"display.protocol": "graphicProtocol", "display.port": "graphicPort", "display.password": "graphicPassword",
}

var deviceFieldRE = regexp.MustCompile(`^devices\[(\d+)\]\.?(.*)$`)

// CreateInputField is the field of the create request in that a field of
// the spec it made (devices[2].nic.mac) comes from, or "" when the two
// are spelled alike.
func CreateInputField(in api.CreateVMInput, specField string) string {
	if f, ok := specFields[specField]; ok {
		return f
	}
	m := deviceFieldRE.FindStringSubmatch(specField)
	if m == nil {
		return ""
	}
	i, _ := strconv.Atoi(m[1])
	origins := createOrigins(in)
	if i >= len(origins) {
		return ""
	}
	o := origins[i]
	if o.index >= 0 {
		if m[2] == "" {
			return fmt.Sprintf("devices[%d]", o.index)
		}
		return fmt.Sprintf("devices[%d].%s", o.index, m[2])
	}
	return flatFields[o.typ][m[2]]
}

// mapCreateInput builds the spec a request describes, filling what it
// leaves empty, and refuses what cannot be mapped at all.
func mapCreateInput(in api.CreateVMInput, d Defaults) (*Spec, error) {
	id := strings.ToLower(strings.TrimSpace(in.InternalName))
	if !uuidRE.MatchString(id) {
		return nil, errdefs.Invalid("internalName", "must be a UUID like 0f8fad5b-d9cb-469f-a165-70867728950e, got %q", in.InternalName)
	}
	memMiB, ok := wholeMiB(in.RAMGB)
	if !ok {
		return nil, errdefs.Invalid("ramGB", "must be a whole number of MiB between %d MiB and %d GiB, got %v GiB", MinMemoryMiB, MaxMemoryMiB>>10, in.RAMGB)
	}
	diskMiB, ok := wholeMiB(in.DiskSizeGB)
	if !ok {
		return nil, errdefs.Invalid("diskSizeGB", "must be a whole number of MiB between 1 MiB and %d TiB, got %v GiB", MaxDiskBytes>>40, in.DiskSizeGB)
	}
	format := in.DiskFormat
	if format == "" {
		format = "qcow2"
	}
	mac, err := normalMAC("macAddress", in.MACAddress)
	if err != nil {
		return nil, err
	}
	accel := in.Accel
	if accel == "" {
		accel = d.Accel
	}
	timeout := in.ShutdownTimeoutSec
	if timeout == 0 {
		timeout = DefaultShutdownSec
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	s := &Spec{
		Version:   CurrentVersion,
		ID:        id,
		Name:      in.Name,
		OS:        in.OS,
		CPUs:      in.CPUCores,
		MemoryMiB: memMiB,
		Display: Display{
			Protocol: in.GraphicProtocol, Listen: d.GraphicsListen, Port: in.GraphicPort, Password: in.GraphicPassword,
		},
		Boot:               in.Boot,
		Accel:              accel,
		ShutdownTimeoutSec: timeout,
		Autostart:          in.Autostart,
		CreatedAt:          now().UTC().Truncate(time.Second),
		Platform:           DefaultPlatform(in.OS),
		Audio:              DefaultAudio(in.OS),
	}
	if in.Audio != nil {
		s.Audio = *in.Audio
	}
	s.AddDevice(NewDevice("disk0", Disk{
		Path:      d.Layout.DiskImagePath(id, "disk0", format),
		Format:    format,
		SizeBytes: int64(diskMiB) << 20,
		BootIndex: 1,
		Image:     in.DiskImage,
		Clone:     cloneOrLinked(in.DiskImage, in.DiskClone),
	}))
	if in.ISOPath != "" {
		s.AddDevice(NewDevice("cd0", CDROM{Path: in.ISOPath, BootIndex: 2}))
	}
	s.AddDevice(NewDevice("net0", NIC{MAC: mac, Bridge: in.NetworkBridge}))
	named, err := createNames(in)
	if err != nil {
		return nil, err
	}
	for i, dev := range in.Devices {
		f := fmt.Sprintf("devices[%d]", i)
		name := dev.Name
		if name == "" {
			name = s.FreeName(dev.Type, named...)
		}
		section, err := createSection(f, dev, func(format string) string { return d.Layout.DiskImagePath(id, name, format) })
		if err != nil {
			return nil, err
		}
		s.AddDevice(NewDevice(name, section))
	}
	if in.GPUPCIAddress != "" {
		s.AddDevice(NewDevice("pci0", PCI{Host: NormalPCIAddress(in.GPUPCIAddress)}))
	}
	if wantsBalloon(in) {
		s.AddDevice(NewDevice(s.FreeName(api.DeviceBalloon), Balloon{}))
	}
	return s, nil
}

// createNames checks the names the request's devices list gives: each
// a valid device name, once, and none of those the flat fields make. It
// returns them, for the unnamed devices to take other names.
func createNames(in api.CreateVMInput) ([]string, error) {
	flat := map[string]string{"disk0": "diskSizeGB", "net0": "networkBridge"}
	if in.ISOPath != "" {
		flat["cd0"] = "isoPath"
	}
	if in.GPUPCIAddress != "" {
		flat["pci0"] = "gpuPciAddress"
	}
	index := map[string]int{}
	var named []string
	for i, dev := range in.Devices {
		if dev.Name == "" {
			continue
		}
		f := fmt.Sprintf("devices[%d].name", i)
		if err := CheckDeviceName(f, dev.Name); err != nil {
			return nil, err
		}
		if j, ok := index[dev.Name]; ok {
			return nil, errdefs.Invalid(f, "%q is already the name of devices[%d]", dev.Name, j)
		}
		if field, ok := flat[dev.Name]; ok {
			return nil, errdefs.Invalid(f, "%q is the name of the device %s makes", dev.Name, field)
		}
		index[dev.Name] = i
		named = append(named, dev.Name)
	}
	return named, nil
}

// createSection is the spec section of an entry of a create request's
// devices list: a NIC, or a new disk or CD-ROM drive. Other types are
// added after create, through their own calls. imagePath is where a disk
// of a format keeps its image.
func createSection(f string, dev api.Device, imagePath func(format string) string) (any, error) {
	switch dev.Type {
	case api.DeviceNIC, api.DeviceDisk, api.DeviceCDROM:
	default:
		return nil, errdefs.Invalid(f+".type", "a create request adds only nic, disk and cdrom devices, got %q", dev.Type)
	}
	if err := checkSections(f, dev); err != nil {
		return nil, err
	}
	switch dev.Type {
	case api.DeviceNIC:
		nic := *dev.NIC
		var err error
		if nic.MAC, err = normalMAC(f+".nic.mac", nic.MAC); err != nil {
			return nil, err
		}
		return nic, nil
	case api.DeviceDisk:
		disk := *dev.Disk
		if disk.Path != "" {
			return nil, errdefs.Invalid(f+".disk.path", "is chosen by the agent: a new disk's image goes in the VM's directory, named by the disk; leave it empty")
		}
		if disk.Format == "" {
			disk.Format = "qcow2"
		}
		disk.Clone = cloneOrLinked(disk.Image, disk.Clone)
		disk.Path = imagePath(disk.Format)
		return disk, nil
	}
	return *dev.CDROM, nil
}

// cloneOrLinked is how a disk is made from image: as asked, a linked clone
// when not asked.
func cloneOrLinked(image string, clone api.DiskClone) api.DiskClone {
	if image != "" && clone == "" {
		return api.CloneLinked
	}
	return clone
}

// normalMAC is a request's MAC address in the spec's form, generated when empty.
func normalMAC(field, mac string) (string, error) {
	if mac == "" {
		return netdev.GenerateMAC().String(), nil
	}
	hw, err := netdev.ParseMAC(mac)
	if err != nil {
		return "", errdefs.Invalid(field, "%v", err)
	}
	return hw.String(), nil
}

// Validate re-checks a loaded spec on its own terms, so that a hand-edited
// file fails loudly in the shim rather than producing a strange QEMU. The
// error names the spec field at fault (devices[0].disk.path).
func (s *Spec) Validate() error { return s.validate(true) }

// validate checks the spec; a stored one must also hold what a create
// fills in later (the display's port).
func (s *Spec) validate(stored bool) error {
	if !uuidRE.MatchString(s.ID) {
		return errdefs.Invalid("id", "must be a lower-case UUID like 0f8fad5b-d9cb-469f-a165-70867728950e, got %q", s.ID)
	}
	if err := checkName(s.Name); err != nil {
		return err
	}
	if !contains(OSes, s.OS) {
		return errdefs.Invalid("os", "must be one of %s, got %q", strings.Join(OSes, ", "), s.OS)
	}
	if err := checkPlatform(s.Platform); err != nil {
		return err
	}
	if s.CPUs < 1 || s.CPUs > MaxCPUs {
		return errdefs.Invalid("cpus", "must be between 1 and %d, got %d", MaxCPUs, s.CPUs)
	}
	if s.MemoryMiB < MinMemoryMiB || s.MemoryMiB > MaxMemoryMiB {
		return errdefs.Invalid("memoryMiB", "must be between %d MiB and %d GiB, got %d MiB", MinMemoryMiB, MaxMemoryMiB>>10, s.MemoryMiB)
	}
	if err := checkDisplay(s.Display, stored); err != nil {
		return err
	}
	if err := s.validateDevices(); err != nil {
		return err
	}
	if s.Boot != nil {
		if err := checkBoot(s.Boot); err != nil {
			return err
		}
	}
	if s.Accel != "kvm" && s.Accel != "tcg" {
		return errdefs.Invalid("accel", "must be kvm or tcg, got %q", s.Accel)
	}
	if s.ShutdownTimeoutSec < 1 || s.ShutdownTimeoutSec > MaxShutdownSec {
		return errdefs.Invalid("shutdownTimeoutSec", "must be between 1 and %d seconds, got %d", MaxShutdownSec, s.ShutdownTimeoutSec)
	}
	if !stored {
		return nil
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

func checkDisplay(d Display, stored bool) error {
	maxPass := 0
	switch d.Protocol {
	case "vnc":
		maxPass = MaxVNCPassword
		if d.Port != 0 && (d.Port < 5900 || d.Port > 65535) {
			return errdefs.Invalid("display.port", "a VNC port must be between 5900 and 65535 (or 0 to allocate), got %d", d.Port)
		}
	case "spice":
		maxPass = MaxSpicePassword
		if d.Port != 0 && (d.Port < 1024 || d.Port > 65535) {
			return errdefs.Invalid("display.port", "a SPICE port must be between 1024 and 65535 (or 0 to allocate), got %d", d.Port)
		}
	default:
		return errdefs.Invalid("display.protocol", "must be spice or vnc, got %q", d.Protocol)
	}
	if d.Password == "" {
		return errdefs.Invalid("display.password", "is required: a display without one would refuse every login")
	}
	if len(d.Password) > maxPass {
		return errdefs.Invalid("display.password", "a %s password has at most %d characters, got %d", d.Protocol, maxPass, len(d.Password))
	}
	for _, r := range d.Password {
		if r < 0x20 || r > 0x7e {
			return errdefs.Invalid("display.password", "must be printable ASCII")
		}
	}
	if !stored {
		return nil
	}
	if d.Port == 0 {
		return errdefs.Invalid("display.port", "a stored spec needs an allocated port")
	}
	if net.ParseIP(d.Listen) == nil {
		return errdefs.Invalid("display.listen", "must be an IP address, got %q", d.Listen)
	}
	return nil
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
