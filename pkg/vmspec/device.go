package vmspec

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/imagestore"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// The device entries of a spec are the API's device types: the spec file
// and the VM view spell a device the same way.
type (
	// Device is one entry of a spec's device list.
	Device = api.Device
	// Disk is a disk entry's section.
	Disk = api.DiskDevice
	// CDROM is a CD-ROM entry's section.
	CDROM = api.CDROMDevice
	// NIC is a network interface entry's section.
	NIC = api.NICDevice
	// PCI is a PCI passthrough entry's section.
	PCI = api.PCIDevice
	// USB is a USB passthrough entry's section.
	USB = api.USBDevice
	// TPM is a TPM entry's section.
	TPM = api.TPMDevice
	// Balloon is a memory balloon entry's section.
	Balloon = api.BalloonDevice
	// Channel is a virtio-serial channel entry's section.
	Channel = api.ChannelDevice
)

// Device limits.
const (
	MaxDevices    = 64
	MaxCDROMs     = 6 // one per port of q35's AHCI controller, the install's media and sata disks included
	maxDeviceName = 20
	maxPortName   = 64
)

var (
	// A device name is also its QEMU id: QEMU's ids that Infinivirt adds
	// itself all hold a '-', so a name never clashes with them.
	deviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	fullPCIRE    = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	usbIDRE      = regexp.MustCompile(`^[0-9a-f]{4}$`)
	usbBusPortRE = regexp.MustCompile(`^[1-9][0-9]{0,2}-[1-9][0-9]?(\.[1-9][0-9]?){0,6}$`)
	portNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// NamePrefix is how the names Infinivirt gives a type's devices begin:
// disk0, cd0, net0, pci0, usb0, tpm0, balloon0, channel0.
func NamePrefix(t api.DeviceType) string {
	switch t {
	case api.DeviceCDROM:
		return "cd"
	case api.DeviceNIC:
		return "net"
	}
	return string(t)
}

// NewDevice returns a device entry of the type section is (a Disk, CDROM,
// NIC, PCI, USB, TPM, Balloon or Channel), named name.
func NewDevice(name string, section any) Device {
	d := Device{Name: name}
	switch v := section.(type) {
	case Disk:
		d.Type, d.Disk = api.DeviceDisk, &v
	case CDROM:
		d.Type, d.CDROM = api.DeviceCDROM, &v
	case NIC:
		d.Type, d.NIC = api.DeviceNIC, &v
	case PCI:
		d.Type, d.PCI = api.DevicePCI, &v
	case USB:
		d.Type, d.USB = api.DeviceUSB, &v
	case TPM:
		d.Type, d.TPM = api.DeviceTPM, &v
	case Balloon:
		d.Type, d.Balloon = api.DeviceBalloon, &v
	case Channel:
		d.Type, d.Channel = api.DeviceChannel, &v
	default:
		panic(fmt.Sprintf("vmspec: %T is not a device section", section))
	}
	return d
}

// Device is the device named name, or nil.
func (s *Spec) Device(name string) *Device {
	for i := range s.Devices {
		if s.Devices[i].Name == name {
			return &s.Devices[i]
		}
	}
	return nil
}

// DevicesOf lists the devices of type t in the spec's order. The entries
// point into the spec: changing one changes the spec.
func (s *Spec) DevicesOf(t api.DeviceType) []*Device {
	var list []*Device
	for i := range s.Devices {
		if s.Devices[i].Type == t {
			list = append(list, &s.Devices[i])
		}
	}
	return list
}

// Disks lists the disks; the first is the system disk.
func (s *Spec) Disks() []*Device { return s.DevicesOf(api.DeviceDisk) }

// CDROMs lists the CD-ROM drives.
func (s *Spec) CDROMs() []*Device { return s.DevicesOf(api.DeviceCDROM) }

// NICs lists the network interfaces.
func (s *Spec) NICs() []*Device { return s.DevicesOf(api.DeviceNIC) }

// NICNames are the names of the network interfaces, in the spec's order.
func (s *Spec) NICNames() []string {
	var names []string
	for _, d := range s.NICs() {
		names = append(names, d.Name)
	}
	return names
}

// PCIs lists the host PCI devices passed through.
func (s *Spec) PCIs() []*Device { return s.DevicesOf(api.DevicePCI) }

// USBs lists the host USB devices passed through.
func (s *Spec) USBs() []*Device { return s.DevicesOf(api.DeviceUSB) }

// Channels lists the virtio-serial channels.
func (s *Spec) Channels() []*Device { return s.DevicesOf(api.DeviceChannel) }

// TPM is the VM's TPM, or nil.
func (s *Spec) TPM() *TPM {
	if l := s.DevicesOf(api.DeviceTPM); len(l) > 0 {
		return l[0].TPM
	}
	return nil
}

// Balloon is the VM's memory balloon, or nil.
func (s *Spec) Balloon() *Balloon {
	if l := s.DevicesOf(api.DeviceBalloon); len(l) > 0 {
		return l[0].Balloon
	}
	return nil
}

// SystemDisk is the first disk, or nil.
func (s *Spec) SystemDisk() *Disk {
	if l := s.Disks(); len(l) > 0 {
		return l[0].Disk
	}
	return nil
}

// ISOPath is the first CD-ROM's ISO (the OS ISO an install boots), or "".
func (s *Spec) ISOPath() string {
	if l := s.CDROMs(); len(l) > 0 {
		return l[0].CDROM.Path
	}
	return ""
}

// DetachISO removes the first CD-ROM drive, the OS ISO's: a v1 spec had
// a drive only while it had an ISO, and a done install leaves none.
func (s *Spec) DetachISO() {
	if cds := s.CDROMs(); len(cds) > 0 {
		s.RemoveDevice(cds[0].Name)
	}
}

// FreeName is the lowest name of t's prefix that no device of the spec,
// nor any of taken, holds.
func (s *Spec) FreeName(t api.DeviceType, taken ...string) string {
	for i := 0; ; i++ {
		n := NamePrefix(t) + strconv.Itoa(i)
		if s.Device(n) == nil && !slices.Contains(taken, n) {
			return n
		}
	}
}

// AddDevice appends d, named by FreeName when its name is empty, and
// returns its name. It does not validate: Validate does.
func (s *Spec) AddDevice(d Device) string {
	if d.Name == "" {
		d.Name = s.FreeName(d.Type)
	}
	s.Devices = append(s.Devices, d)
	return d.Name
}

// RemoveDevice removes the device named name and reports whether there was one.
func (s *Spec) RemoveDevice(name string) bool {
	n := len(s.Devices)
	s.Devices = slices.DeleteFunc(s.Devices, func(d Device) bool { return d.Name == name })
	return len(s.Devices) != n
}

// cloneDevices copies the entries and their sections, so that a copy can
// be changed without touching the original.
func cloneDevices(devs []Device) []Device {
	out := make([]Device, len(devs))
	for i, d := range devs {
		out[i] = d
		out[i].Disk = clonePtr(d.Disk)
		out[i].CDROM = clonePtr(d.CDROM)
		out[i].NIC = clonePtr(d.NIC)
		out[i].PCI = clonePtr(d.PCI)
		if d.PCI != nil {
			out[i].PCI.Functions = slices.Clone(d.PCI.Functions)
		}
		out[i].USB = clonePtr(d.USB)
		out[i].TPM = clonePtr(d.TPM)
		out[i].Balloon = clonePtr(d.Balloon)
		out[i].Channel = clonePtr(d.Channel)
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// validateDevices checks the device list: names, one section of the right
// type per entry, each section's values, and what must be unique across
// devices. Fields are spec fields: devices[2].nic.mac.
func (s *Spec) validateDevices() error {
	if len(s.Devices) > MaxDevices {
		return errdefs.Invalid("devices", "at most %d devices, got %d", MaxDevices, len(s.Devices))
	}
	names := map[string]int{}
	boot := map[int]string{}
	macs := map[string]string{}
	ports := map[string]string{}
	hosts := map[string]string{}
	count := map[api.DeviceType]int{}
	for i, d := range s.Devices {
		f := fmt.Sprintf("devices[%d]", i)
		if len(d.Name) > maxDeviceName || !deviceNameRE.MatchString(d.Name) {
			return errdefs.Invalid(f+".name", "must be a lower-case letter then up to %d letters, digits or '_', got %q", maxDeviceName-1, d.Name)
		}
		if j, ok := names[d.Name]; ok {
			return errdefs.Invalid(f+".name", "%q is already the name of devices[%d]", d.Name, j)
		}
		names[d.Name] = i
		if err := checkSections(f, d); err != nil {
			return err
		}
		count[d.Type]++
		bootIndex := 0
		switch d.Type {
		case api.DeviceDisk:
			if err := checkDisk(f+".disk", d.Disk); err != nil {
				return err
			}
			bootIndex = d.Disk.BootIndex
		case api.DeviceCDROM:
			if d.CDROM.Path != "" {
				if err := CheckHostPath(f+".cdrom.path", d.CDROM.Path); err != nil {
					return err
				}
			}
			bootIndex = d.CDROM.BootIndex
		case api.DeviceNIC:
			if err := checkNIC(f+".nic", d.NIC); err != nil {
				return err
			}
			if other, ok := macs[d.NIC.MAC]; ok {
				return errdefs.Invalid(f+".nic.mac", "%s is already the MAC address of %s", d.NIC.MAC, other)
			}
			macs[d.NIC.MAC] = d.Name
		case api.DevicePCI:
			if err := checkPCI(f+".pci", d.Name, d.PCI, hosts); err != nil {
				return err
			}
		case api.DeviceUSB:
			if err := CheckUSB(f+".usb.", d.USB); err != nil {
				return err
			}
		case api.DeviceTPM:
			if err := CheckHostPath(f+".tpm.stateDir", d.TPM.StateDir); err != nil {
				return err
			}
		case api.DeviceBalloon:
			if t := d.Balloon.TargetMiB; t != 0 {
				if err := checkBalloonTarget(f+".balloon.targetMiB", t, s.MemoryMiB); err != nil {
					return err
				}
			}
		case api.DeviceChannel:
			p := d.Channel.Port
			if len(p) > maxPortName || !portNameRE.MatchString(p) {
				return errdefs.Invalid(f+".channel.port", "must be 1 to %d letters, digits, '.', '_' or '-', got %q", maxPortName, p)
			}
			if other, ok := ports[p]; ok {
				return errdefs.Invalid(f+".channel.port", "%q is already the port of %s", p, other)
			}
			ports[p] = d.Name
		}
		if bootIndex != 0 {
			if bootIndex < 0 || bootIndex > 99 {
				return errdefs.Invalid(f+"."+string(d.Type)+".bootIndex", "must be between 1 and 99, or 0 for not bootable, got %d", bootIndex)
			}
			if other, ok := boot[bootIndex]; ok {
				return errdefs.Invalid(f+"."+string(d.Type)+".bootIndex", "boot index %d is already %s's", bootIndex, other)
			}
			boot[bootIndex] = d.Name
		}
	}
	switch {
	case count[api.DeviceDisk] == 0:
		return errdefs.Invalid("devices", "a VM needs a disk")
	case count[api.DeviceNIC] == 0:
		return errdefs.Invalid("devices", "a VM needs a network interface")
	case count[api.DeviceCDROM] > MaxCDROMs:
		return errdefs.Invalid("devices", "at most %d CD-ROM drives fit on the AHCI controller, got %d", MaxCDROMs, count[api.DeviceCDROM])
	case count[api.DeviceCDROM]+s.SATADisks() > MaxCDROMs:
		return errdefs.Invalid("devices", "at most %d CD-ROM drives and sata disks fit on the AHCI controller, got %d drives and %d sata disks",
			MaxCDROMs, count[api.DeviceCDROM], s.SATADisks())
	case count[api.DeviceTPM] > 1:
		return errdefs.Invalid("devices", "a VM has at most one TPM, got %d", count[api.DeviceTPM])
	case count[api.DeviceBalloon] > 1:
		return errdefs.Invalid("devices", "a VM has at most one balloon, got %d", count[api.DeviceBalloon])
	}
	return nil
}

// checkPCI checks a passed-through device: its address and its
// functions', each passed through once across the VM's devices, on its
// slot; a ROM file is a clean absolute path.
func checkPCI(f, name string, p *PCI, hosts map[string]string) error {
	taken := func(field, addr string) error {
		if other, ok := hosts[addr]; ok {
			return errdefs.Invalid(field, "%s is already passed through as %s", addr, other)
		}
		hosts[addr] = name
		return nil
	}
	if !fullPCIRE.MatchString(p.Host) {
		return errdefs.Invalid(f+".host", "must be a PCI address like 0000:01:00.0, got %q", p.Host)
	}
	if err := taken(f+".host", p.Host); err != nil {
		return err
	}
	slot, _, _ := strings.Cut(p.Host, ".")
	for i, fn := range p.Functions {
		field := fmt.Sprintf("%s.functions[%d]", f, i)
		if !fullPCIRE.MatchString(fn) {
			return errdefs.Invalid(field, "must be a PCI address like 0000:01:00.1, got %q", fn)
		}
		if s, _, _ := strings.Cut(fn, "."); s != slot {
			return errdefs.Invalid(field, "%s is not a function of %s's slot %s", fn, p.Host, slot)
		}
		if err := taken(field, fn); err != nil {
			return err
		}
	}
	if p.ROMFile != "" {
		return CheckHostPath(f+".romFile", p.ROMFile)
	}
	return nil
}

// NormalPCIAddress is a PCI address in the spec's form: lower case, with
// its domain (01:00.0 is 0000:01:00.0). Anything else is left as it is,
// for validation to refuse.
func NormalPCIAddress(addr string) string {
	addr = strings.ToLower(addr)
	if pciRE.MatchString(addr) && !fullPCIRE.MatchString(addr) {
		return "0000:" + addr
	}
	return addr
}

// checkSections accepts an entry whose only section is its type's.
func checkSections(f string, d Device) error {
	sections := map[api.DeviceType]bool{
		api.DeviceDisk: d.Disk != nil, api.DeviceCDROM: d.CDROM != nil, api.DeviceNIC: d.NIC != nil,
		api.DevicePCI: d.PCI != nil, api.DeviceUSB: d.USB != nil, api.DeviceTPM: d.TPM != nil,
		api.DeviceBalloon: d.Balloon != nil, api.DeviceChannel: d.Channel != nil,
	}
	has, known := sections[d.Type]
	if !known {
		return errdefs.Invalid(f+".type", "must be one of %v, got %q", api.DeviceTypes, d.Type)
	}
	if !has {
		return errdefs.Invalid(f+"."+string(d.Type), "is required for a %s device", d.Type)
	}
	for t, set := range sections {
		if set && t != d.Type {
			return errdefs.Invalid(f+"."+string(t), "must be empty on a %s device", d.Type)
		}
	}
	return nil
}

func checkDisk(f string, d *Disk) error {
	if d.Format != "qcow2" && d.Format != "raw" {
		return errdefs.Invalid(f+".format", "must be qcow2 or raw, got %q", d.Format)
	}
	if d.SizeBytes < 1<<20 || d.SizeBytes > MaxDiskBytes || d.SizeBytes%(1<<20) != 0 {
		return errdefs.Invalid(f+".sizeBytes", "must be a whole number of MiB between 1 MiB and %d TiB, got %d bytes", MaxDiskBytes>>40, d.SizeBytes)
	}
	if err := checkDiskImage(f, d); err != nil {
		return err
	}
	if err := CheckDiskModes(f+".", d.Bus, d.Cache, d.Discard); err != nil {
		return err
	}
	return CheckHostPath(f+".path", d.Path)
}

// CheckDiskModes checks a disk's bus, cache and discard modes, empty being
// each one's default; the fields are prefix+"bus", prefix+"cache" and
// prefix+"discard".
func CheckDiskModes(prefix string, bus api.DiskBus, cache api.DiskCache, discard api.DiskDiscard) error {
	if err := checkMode(prefix+"bus", bus, api.DiskBuses); err != nil {
		return err
	}
	if err := checkMode(prefix+"cache", cache, api.DiskCaches); err != nil {
		return err
	}
	return checkMode(prefix+"discard", discard, api.DiskDiscards)
}

func checkMode[T ~string](field string, v T, valid []T) error {
	if v == "" || slices.Contains(valid, v) {
		return nil
	}
	return errdefs.Invalid(field, "must be one of %v (or empty for %s), got %q", valid, valid[0], v)
}

// AHCIPortsUsed counts the ports of q35's AHCI controller that a start
// of the VM takes: one per CD-ROM drive and sata disk, and the drives an
// unfinished install adds for its own media.
func (s *Spec) AHCIPortsUsed() int {
	n := len(s.CDROMs()) + s.SATADisks()
	if in := s.Install; in.Active() {
		n++ // the answer ISO
		if in.VirtioWinISO != "" {
			n++
		}
	}
	return n
}

// SATADisks counts the disks on the AHCI controller.
func (s *Spec) SATADisks() int {
	n := 0
	for _, d := range s.Disks() {
		if d.Disk.Bus == api.DiskBusSATA {
			n++
		}
	}
	return n
}

func checkNIC(f string, n *NIC) error {
	hw, err := netdev.ParseMAC(n.MAC)
	if err != nil {
		return errdefs.Invalid(f+".mac", "%v", err)
	}
	if hw.String() != n.MAC {
		return errdefs.Invalid(f+".mac", "must be in lower-case colon form like %s, got %q", hw, n.MAC)
	}
	if !bridgeRE.MatchString(n.Bridge) {
		return errdefs.Invalid(f+".bridge", "must be an interface name of 1 to 15 letters, digits, '-', '_' or '.', got %q", n.Bridge)
	}
	return nil
}

// checkDiskImage checks the store image a disk was made from: a store
// name (never a path), and a linked clone is a qcow2 overlay.
func checkDiskImage(f string, d *Disk) error {
	if d.Image == "" {
		if d.Clone != "" {
			return errdefs.Invalid(f+".clone", "is set only with image")
		}
		return nil
	}
	if err := imagestore.CheckName(f+".image", d.Image); err != nil {
		return err
	}
	switch d.Clone {
	case api.CloneLinked:
		if d.Format != "qcow2" {
			return errdefs.Invalid(f+".format", "a linked clone is a qcow2 overlay, got %q", d.Format)
		}
	case api.CloneFull:
	default:
		return errdefs.Invalid(f+".clone", "must be %q or %q, got %q", api.CloneLinked, api.CloneFull, d.Clone)
	}
	return nil
}

// CheckUSB checks a USB entry, its fields named with prefix ("usb." in a
// spec, "" in an attach): both IDs, or a bus-port, or both; a serial only
// with the IDs.
func CheckUSB(prefix string, u *USB) error {
	if u.VendorID != "" || u.ProductID != "" || u.BusPort == "" {
		if !usbIDRE.MatchString(u.VendorID) {
			return errdefs.Invalid(prefix+"vendorId", "must be four lower-case hex digits (046d), got %q; or give busPort alone", u.VendorID)
		}
		if !usbIDRE.MatchString(u.ProductID) {
			return errdefs.Invalid(prefix+"productId", "must be four lower-case hex digits (c52b), got %q", u.ProductID)
		}
	}
	if u.BusPort != "" && !usbBusPortRE.MatchString(u.BusPort) {
		return errdefs.Invalid(prefix+"busPort", "must be a bus and port path as GET /v1/host/usb lists them (1-1.2), got %q", u.BusPort)
	}
	if u.Serial != "" && (len(u.Serial) > 126 || strings.ContainsFunc(u.Serial, func(r rune) bool { return r < ' ' || r == 0x7f })) {
		return errdefs.Invalid(prefix+"serial", "must be at most 126 printable characters, got %q", u.Serial)
	}
	return nil
}

// USBBusPort splits a checked bus-port (1-1.2) into its bus (1) and port
// path (1.2).
func USBBusPort(busPort string) (int, string) {
	b, port, _ := strings.Cut(busPort, "-")
	bus, _ := strconv.Atoi(b)
	return bus, port
}

// HasUSBController reports whether the VM boots with the xHCI controller
// that USB devices plug into: a display adds it for the tablet, a USB
// device for itself. Without one a running VM cannot take USB devices.
func (s *Spec) HasUSBController() bool {
	return (s.Display.Protocol != "" && s.Display.Protocol != "none") || len(s.USBs()) > 0
}
