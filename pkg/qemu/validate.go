package qemu

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	pciRE  = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	// Device IDs chosen by the caller have no '-': the IDs this package
	// adds itself all do, so the two can never clash.
	idRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// Validate checks the configuration on its own, without looking at the
// host. The error is an *errdefs.Error of class InvalidArgument whose Field names
// the Config field at fault, like "Disks[1].Path".
func (c *Config) Validate() error {
	if !uuidRE.MatchString(c.UUID) {
		return errdefs.Invalid("UUID", "must be a lower-case UUID, got %q", c.UUID)
	}
	switch c.accel() {
	case AccelKVM, AccelTCG:
	default:
		return errdefs.Invalid("Accel", "must be %q or %q, got %q", AccelKVM, AccelTCG, c.Accel)
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return errdefs.Invalid("CPUs", "must be between 1 and %d, got %d", MaxCPUs, c.CPUs)
	}
	if c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > MaxMemoryMiB {
		return errdefs.Invalid("MemoryMiB", "must be between %d and %d, got %d", MinMemoryMiB, MaxMemoryMiB, c.MemoryMiB)
	}
	v := validator{ids: map[string]string{}, fds: map[int]string{}, boot: map[int]string{}}
	if c.QMPFD == 0 {
		return errdefs.Invalid("QMPFD", "is required: the shim talks to QEMU only over QMP")
	}
	if err := v.fd("QMPFD", c.QMPFD); err != nil {
		return err
	}
	if c.SerialFD != 0 {
		if err := v.fd("SerialFD", c.SerialFD); err != nil {
			return err
		}
	}
	for i, d := range c.Disks {
		if err := v.disk(fmt.Sprintf("Disks[%d]", i), d); err != nil {
			return err
		}
	}
	sata := 0
	for _, d := range c.Disks {
		if d.Bus == BusSATA {
			sata++
		}
	}
	if len(c.CDROMs)+sata > MaxCDROMs {
		return errdefs.Invalid("CDROMs", "at most %d CD-ROMs and sata disks fit on the AHCI controller, got %d and %d", MaxCDROMs, len(c.CDROMs), sata)
	}
	for i, cd := range c.CDROMs {
		if err := v.cdrom(fmt.Sprintf("CDROMs[%d]", i), cd); err != nil {
			return err
		}
	}
	for i, n := range c.NICs {
		if err := v.nic(fmt.Sprintf("NICs[%d]", i), n); err != nil {
			return err
		}
	}
	if err := validateDisplay(c.Display); err != nil {
		return err
	}
	if err := c.validateExtras(&v); err != nil {
		return err
	}
	if c.Boot != nil {
		if err := validateBoot(c.Boot); err != nil {
			return err
		}
	}
	if c.HotplugPorts < 0 || c.HotplugPorts > MaxHotplugPorts {
		return errdefs.Invalid("HotplugPorts", "must be between 0 and %d, got %d", MaxHotplugPorts, c.HotplugPorts)
	}
	if err := c.CheckRootBus(); err != nil {
		return err
	}
	return c.validatePlatform(&v)
}

// rootBusUse is what Args puts on q35's PCIe root bus, one slot each, by
// kind: a virtio-blk disk is there itself (the first) or by its own root
// port (the others), as a passed-through device is, while the virtio-scsi
// disks share their controller's root port and the sata disks sit on the
// built-in AHCI controller; the display brings its video device and
// controllers, and the extras (sound card included) the controllers they
// need.
func (c *Config) rootBusUse() []slotUse {
	controllers, disks := 0, 0
	scsi := false
	for _, d := range c.Disks {
		switch d.bus() {
		case BusVirtioBlk:
			disks++
		case BusVirtioSCSI:
			scsi = true
		}
	}
	if scsi {
		controllers++ // virtio-scsi, behind its root port
	}
	switch c.Display.protocol() {
	case DisplayVNC:
		controllers += 2 // VGA, xHCI for the tablet
	case DisplaySPICE:
		controllers += 3 // qxl-vga, virtio-serial for the agent, xHCI for the tablet
	default:
		if len(c.USBHosts) > 0 {
			controllers++ // xHCI
		}
	}
	if len(c.Channels) > 0 && c.Display.protocol() != DisplaySPICE {
		controllers++ // virtio-serial
	}
	if c.Balloon != nil {
		controllers++
	}
	if c.Audio {
		controllers++ // intel-hda
	}
	return []slotUse{
		{"reserved hot-plug ports", c.HotplugPorts},
		{"disks", disks},
		{"NICs", len(c.NICs)},
		{"passed-through PCI devices", len(c.PCIs)},
		{"display, balloon and controllers", controllers},
	}
}

type slotUse struct {
	what string
	n    int
}

// RootBusDevices is how many slots of q35's PCIe root bus the
// configuration takes.
func (c *Config) RootBusDevices() int {
	n := 0
	for _, u := range c.rootBusUse() {
		n += u.n
	}
	return n
}

// CheckRootBus refuses a configuration whose devices need more slots of
// q35's PCIe root bus than there are (QEMU would refuse it at start).
func (c *Config) CheckRootBus() error {
	n := c.RootBusDevices()
	if n <= RootBusSlots {
		return nil
	}
	var parts []string
	for _, u := range c.rootBusUse() {
		if u.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", u.n, u.what))
		}
	}
	return errdefs.Invalid("Disks", "the devices need %d slots of q35's PCIe root bus, which has %d (%s): take %d disks, NICs or PCI devices away",
		n, RootBusSlots, strings.Join(parts, ", "), n-RootBusSlots)
}

// validator remembers what earlier fields claimed, to refuse duplicates.
type validator struct {
	ids  map[string]string // device ID → field that claimed it
	fds  map[int]string
	boot map[int]string
}

func (v *validator) id(field, id string) error {
	if len(id) > maxIDLen || !idRE.MatchString(id) {
		return errdefs.Invalid(field, "must be a lower-case letter then up to %d letters, digits or '_', got %q", maxIDLen-1, id)
	}
	if other, ok := v.ids[id]; ok {
		return errdefs.Invalid(field, "%q is already the ID of %s", id, other)
	}
	v.ids[id] = field
	return nil
}

func (v *validator) fd(field string, fd int) error {
	if fd < 3 {
		return errdefs.Invalid(field, "must be a descriptor above stdin, stdout and stderr (3 or more), got %d", fd)
	}
	if other, ok := v.fds[fd]; ok {
		return errdefs.Invalid(field, "fd %d is already used by %s", fd, other)
	}
	v.fds[fd] = field
	return nil
}

func (v *validator) bootIndex(field string, idx int) error {
	if idx == 0 {
		return nil
	}
	if idx < 0 || idx > MaxBootIndex {
		return errdefs.Invalid(field, "must be between 1 and %d, or 0 for not bootable, got %d", MaxBootIndex, idx)
	}
	if other, ok := v.boot[idx]; ok {
		return errdefs.Invalid(field, "boot index %d is already taken by %s", idx, other)
	}
	v.boot[idx] = field
	return nil
}

func (v *validator) disk(field string, d Disk) error {
	if err := v.id(field+".ID", d.ID); err != nil {
		return err
	}
	if err := checkPath(field+".Path", d.Path); err != nil {
		return err
	}
	if d.Format != FormatQCOW2 && d.Format != FormatRaw {
		return errdefs.Invalid(field+".Format", "must be %q or %q (never probed), got %q", FormatQCOW2, FormatRaw, d.Format)
	}
	switch d.bus() {
	case BusVirtioBlk, BusVirtioSCSI:
	case BusSATA:
		if d.ReadOnly {
			return errdefs.Invalid(field+".ReadOnly", "an ide-hd cannot be read-only; use another bus")
		}
	default:
		return errdefs.Invalid(field+".Bus", "must be %q, %q or %q, got %q", BusVirtioBlk, BusVirtioSCSI, BusSATA, d.Bus)
	}
	if _, ok := cacheSwitches[d.Cache]; !ok && d.Cache != "" {
		return errdefs.Invalid(field+".Cache", "must be a cache mode like %q, got %q", CacheWriteback, d.Cache)
	}
	if d.Discard != "" && d.Discard != DiscardUnmap && d.Discard != DiscardIgnore {
		return errdefs.Invalid(field+".Discard", "must be %q or %q, got %q", DiscardUnmap, DiscardIgnore, d.Discard)
	}
	return v.bootIndex(field+".BootIndex", d.BootIndex)
}

func (v *validator) cdrom(field string, cd CDROM) error {
	if err := v.id(field+".ID", cd.ID); err != nil {
		return err
	}
	if cd.Path != "" {
		if err := checkPath(field+".Path", cd.Path); err != nil {
			return err
		}
	}
	return v.bootIndex(field+".BootIndex", cd.BootIndex)
}

func (v *validator) nic(field string, n NIC) error {
	if err := v.id(field+".ID", n.ID); err != nil {
		return err
	}
	mac, err := netdev.ParseMAC(n.MAC)
	if err != nil {
		return errdefs.Invalid(field+".MAC", "%v", err)
	}
	if mac.String() != n.MAC {
		return errdefs.Invalid(field+".MAC", "must be lower-case, got %q", n.MAC)
	}
	if len(n.FDs) == 0 || len(n.FDs) > MaxNICQueues {
		return errdefs.Invalid(field+".FDs", "needs between 1 and %d TAP queue fds, got %d", MaxNICQueues, len(n.FDs))
	}
	for i, fd := range n.FDs {
		if err := v.fd(fmt.Sprintf("%s.FDs[%d]", field, i), fd); err != nil {
			return err
		}
	}
	return v.bootIndex(field+".BootIndex", n.BootIndex)
}

// validateExtras checks the passed-through devices, the balloon and the channels.
func (c *Config) validateExtras(v *validator) error {
	for i, p := range c.PCIs {
		f := fmt.Sprintf("PCIs[%d]", i)
		if err := v.id(f+".ID", p.ID); err != nil {
			return err
		}
		if !pciRE.MatchString(p.Host) {
			return errdefs.Invalid(f+".Host", "must be a full PCI address like 0000:01:00.0, got %q", p.Host)
		}
		fns := map[int]bool{pciFunction(p.Host): true}
		for j, fn := range p.Functions {
			field := fmt.Sprintf("%s.Functions[%d]", f, j)
			if !pciRE.MatchString(fn) || fn[:len(fn)-2] != p.Host[:len(p.Host)-2] {
				return errdefs.Invalid(field, "must be a full PCI address on %s's slot, got %q", p.Host, fn)
			}
			if fns[pciFunction(fn)] {
				return errdefs.Invalid(field, "function %d of the slot is already passed through", pciFunction(fn))
			}
			fns[pciFunction(fn)] = true
		}
		if p.ROMFile != "" {
			if err := checkPath(f+".ROMFile", p.ROMFile); err != nil {
				return err
			}
		}
	}
	for i, u := range c.USBHosts {
		f := fmt.Sprintf("USBHosts[%d]", i)
		if err := v.id(f+".ID", u.ID); err != nil {
			return err
		}
		if u.VendorID == 0 && u.HostBus == 0 {
			return errdefs.Invalid(f+".VendorID", "is required unless HostBus and HostPort are set")
		}
		if (u.HostBus == 0) != (u.HostPort == "") {
			return errdefs.Invalid(f+".HostPort", "HostBus and HostPort go together")
		}
	}
	if b := c.Balloon; b != nil {
		if err := v.id("Balloon.ID", b.ID); err != nil {
			return err
		}
	}
	ports := map[string]bool{}
	for i, ch := range c.Channels {
		f := fmt.Sprintf("Channels[%d]", i)
		if err := v.id(f+".ID", ch.ID); err != nil {
			return err
		}
		if ch.Port == "" || ports[ch.Port] || strings.ContainsAny(ch.Port, "\x00\n") {
			return errdefs.Invalid(f+".Port", "must be a port name of its own, got %q", ch.Port)
		}
		ports[ch.Port] = true
		if err := v.fd(f+".FD", ch.FD); err != nil {
			return err
		}
	}
	return nil
}

func validateDisplay(d Display) error {
	switch d.protocol() {
	case DisplayNone:
		if d.Listen != "" || d.Port != 0 {
			return errdefs.Invalid("Display.Protocol", "is none, so Listen and Port must be empty")
		}
		return nil
	case DisplayVNC:
		if d.Port < VNCBasePort || d.Port > 65535 {
			return errdefs.Invalid("Display.Port", "a VNC port must be between %d and 65535, got %d", VNCBasePort, d.Port)
		}
	case DisplaySPICE:
		if d.Port < 1 || d.Port > 65535 {
			return errdefs.Invalid("Display.Port", "a SPICE port must be between 1 and 65535, got %d", d.Port)
		}
	default:
		return errdefs.Invalid("Display.Protocol", "must be %q, %q or %q, got %q", DisplayNone, DisplayVNC, DisplaySPICE, d.Protocol)
	}
	// The address travels in QEMU's comma syntax, so only a plain IP
	// literal (no zone, no brackets) may pass.
	ip, err := netip.ParseAddr(d.Listen)
	if err != nil || ip.Zone() != "" || ip.String() != d.Listen {
		return errdefs.Invalid("Display.Listen", "must be an IP address in canonical form, got %q", d.Listen)
	}
	return nil
}

func validateBoot(b *DirectBoot) error {
	// -kernel and -initrd are plain values today, but a comma in them
	// would be one QEMU version away from an injected option.
	if err := checkPath("Boot.Kernel", b.Kernel); err != nil {
		return err
	}
	if strings.Contains(b.Kernel, ",") {
		return errdefs.Invalid("Boot.Kernel", "must not contain a comma, got %q", b.Kernel)
	}
	if b.Initrd != "" {
		if err := checkPath("Boot.Initrd", b.Initrd); err != nil {
			return err
		}
		if strings.Contains(b.Initrd, ",") {
			return errdefs.Invalid("Boot.Initrd", "must not contain a comma, got %q", b.Initrd)
		}
	}
	if len(b.Cmdline) > maxCmdlineLen {
		return errdefs.Invalid("Boot.Cmdline", "is longer than %d bytes", maxCmdlineLen)
	}
	for _, r := range b.Cmdline {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errdefs.Invalid("Boot.Cmdline", "must not contain control characters or invalid UTF-8")
		}
	}
	return nil
}

// checkPath accepts an absolute, clean path. Commas are fine here: paths of
// images travel in JSON arguments.
func checkPath(field, p string) error {
	switch {
	case p == "":
		return errdefs.Invalid(field, "is empty")
	case !filepath.IsAbs(p):
		return errdefs.Invalid(field, "must be an absolute path, got %q", p)
	case filepath.Clean(p) != p:
		return errdefs.Invalid(field, "must be a clean path, got %q", p)
	case strings.ContainsAny(p, "\x00\n\r") || !utf8.ValidString(p):
		return errdefs.Invalid(field, "must be valid UTF-8 without NUL or line breaks, got %q", p)
	}
	return nil
}
