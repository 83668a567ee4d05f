// Package qemu turns a typed VM configuration into the argv of
// qemu-system-x86_64 (QEMU 7.2, q35). Everything the VM needs from the host
// arrives as file descriptors numbered in the child (QMP socket, serial
// socket, TAP queues), so QEMU needs no paths to sockets and no privileges.
//
// Values that carry names or paths go through JSON -device, -blockdev and
// -netdev arguments, where a comma is just a character and can never start
// a new option. The few values that must travel in QEMU's comma syntax are
// validated so that they cannot hold a comma.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package qemu

// Accel is the accelerator QEMU runs the guest with.
type Accel string

const (
	// AccelKVM is hardware virtualisation, the default on real hosts.
	AccelKVM Accel = "kvm"
	// AccelTCG is QEMU's software emulator, for hosts where KVM does not work.
	AccelTCG Accel = "tcg"
)

// Disk image formats. The format is always explicit, never probed.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// DiskBus is what a disk is attached to in the guest.
type DiskBus string

// The disk buses; empty is BusVirtioBlk.
const (
	// BusVirtioBlk is a virtio-blk-pci device of its own.
	BusVirtioBlk DiskBus = "virtio-blk"
	// BusVirtioSCSI is a scsi-hd on the VM's one virtio-scsi controller
	// (SCSIController), which sits behind a root port of its own.
	BusVirtioSCSI DiskBus = "virtio-scsi"
	// BusSATA is an ide-hd on a port of q35's built-in AHCI controller,
	// which has no hot-plug.
	BusSATA DiskBus = "sata"
)

// CacheMode is how a disk's image is cached, as QEMU's -drive cache=
// names the three switches it sets: the guest sees a write cache, the host's
// page cache is bypassed (O_DIRECT), flushes are ignored.
type CacheMode string

// The cache modes; empty leaves QEMU's defaults, which are writeback's.
const (
	CacheWriteback    CacheMode = "writeback"    // write cache on, page cache, flushes honoured
	CacheNone         CacheMode = "none"         // write cache on, O_DIRECT
	CacheWritethrough CacheMode = "writethrough" // no write cache, page cache
	CacheDirectSync   CacheMode = "directsync"   // no write cache, O_DIRECT
	CacheUnsafe       CacheMode = "unsafe"       // write cache on, flushes ignored
)

// DiscardMode is what becomes of the guest's discard requests.
type DiscardMode string

// The discard modes; empty is DiscardUnmap for a writable disk.
const (
	DiscardUnmap  DiscardMode = "unmap"  // passed to the image, which stays thin
	DiscardIgnore DiscardMode = "ignore" // dropped
)

// DisplayProtocol is the remote console a VM offers.
type DisplayProtocol string

// The display protocols.
const (
	DisplayNone  DisplayProtocol = "none"
	DisplayVNC   DisplayProtocol = "vnc"
	DisplaySPICE DisplayProtocol = "spice"
)

// VNCBasePort is the TCP port of VNC display :0.
const VNCBasePort = 5900

// Limits of what Validate accepts.
const (
	MaxCPUs         = 288      // q35's limit in QEMU 7.2
	MinMemoryMiB    = 16       // less will not boot anything
	MaxMemoryMiB    = 16 << 20 // 16 TiB
	MaxNICQueues    = 256      // the kernel's limit of queues per TAP
	MaxCDROMs       = 6        // one per port of q35's built-in AHCI controller, sata disks included
	MaxHotplugPorts = 32
	// RootBusSlots are the slots of q35's PCIe root bus a device can take:
	// 1 to 30 (0 is the host bridge, 31 the ICH9 functions: LPC, AHCI, SMBus).
	RootBusSlots  = 30
	MaxBootIndex  = 99
	maxIDLen      = 20
	maxCmdlineLen = 4096
)

// Config is everything that decides a VM's QEMU argv.
type Config struct {
	// UUID identifies the VM; it is also QEMU's -name, never the display name.
	UUID string
	// Accel defaults to AccelKVM when empty.
	Accel     Accel
	CPUs      int
	MemoryMiB int
	Disks     []Disk
	// CDROMs sit on q35's AHCI ports: the install ISO, later answer ISOs.
	CDROMs  []CDROM
	NICs    []NIC
	Display Display
	// PCIs are host PCI devices (GPUs) passed through with vfio-pci, each
	// behind its own root port. Whether the host can do it is checked
	// elsewhere.
	PCIs []HostPCI
	// USBHosts are host USB devices passed through, on the xHCI controller.
	USBHosts []USBHost
	// Balloon adds a virtio memory balloon.
	Balloon *Balloon
	// Channels are virtio-serial ports on sockets whose fds the shim opened.
	Channels []Channel
	Boot     *DirectBoot
	// QMPFD is the child's fd of the QMP socket (required).
	QMPFD int
	// SerialFD is the child's fd of the serial console socket; 0 means none.
	SerialFD int
	// NoShutdown keeps QEMU alive after the guest powers off, so the shim
	// decides what a guest power-off means.
	NoShutdown bool
	// HotplugPorts adds that many empty pcie-root-ports: q35 can hotplug a
	// PCIe device only into a free root port.
	HotplugPorts int
	// Firmware is UEFI; nil keeps QEMU's BIOS.
	Firmware *Firmware
	// TPM adds a TPM 2.0 backed by swtpm.
	TPM *TPM
	// BootOnce is the ID of a disk or CD-ROM the firmware boots first, on
	// the first boot only (an installer); see BootOnceRestore.
	BootOnce string
	// IncomingDefer starts QEMU waiting for its state as a migration stream
	// (-incoming defer): from a memory snapshot or a peer, whose URI QMP's
	// migrate-incoming gives later. The guest does not boot on its own.
	IncomingDefer bool
	// Windows gives the guest what Windows expects of a hypervisor: the
	// Hyper-V enlightenments (HyperVFlags), the RTC in local time and no
	// HPET.
	Windows bool
	// Audio adds a sound card, played through SPICE when SPICE is the
	// display.
	Audio bool
}

// Disk is a disk backed by an image file.
type Disk struct {
	// ID names the block node and the device, for QMP (e.g. "disk0").
	ID     string
	Path   string
	Format string // FormatQCOW2 or FormatRaw
	// ReadOnly opens the image read-only and shows the guest a read-only
	// disk; a sata disk cannot be one.
	ReadOnly bool
	// BootIndex orders boot devices, lowest first; 0 means not bootable.
	BootIndex int
	Bus       DiskBus
	Cache     CacheMode
	Discard   DiscardMode
}

// CDROM is a read-only ISO image on an AHCI CD-ROM drive; an empty Path
// is a drive without a disc.
type CDROM struct {
	ID        string
	Path      string
	BootIndex int
}

// HostPCI is a host PCI device passed through with vfio-pci.
type HostPCI struct {
	ID string
	// Host is the full PCI address, like "0000:01:00.0".
	Host string
	// Functions are other functions of Host's slot (a GPU's audio), passed
	// through with it as one multifunction device. The guest's functions
	// keep the host's order from 0 on, so the guest finds a function 0
	// and a GPU at 0 keeps its audio at 1.
	Functions []string
	// ROMFile is the option ROM the guest sees for Host; "" keeps the
	// device's own.
	ROMFile string
}

// USBHost is a host USB device passed through, by vendor and product ID,
// by where it is plugged (HostBus and HostPort, such as 1 and "1.2"), or
// by both.
type USBHost struct {
	ID                  string
	VendorID, ProductID uint16
	HostBus             int
	HostPort            string
}

// Balloon is a virtio memory balloon.
type Balloon struct {
	ID                string
	FreePageReporting bool
	DeflateOnOOM      bool
}

// Channel is a virtio-serial port the guest sees by Port's name, on a
// socket whose fd (numbered in the child) the shim holds the other end of.
type Channel struct {
	ID   string
	Port string
	FD   int
}

// NIC is a virtio-net device on a TAP whose queue fds the shim opened.
type NIC struct {
	ID  string
	MAC string
	// FDs are the TAP queue fds as numbered in the child, one per queue.
	FDs       []int
	BootIndex int
}

// Display is the VM's remote console. Passwords are never here: the shim
// sets them over QMP while QEMU is still stopped by -S.
type Display struct {
	Protocol DisplayProtocol // empty means DisplayNone
	Listen   string          // IP literal
	Port     int             // TCP port; for VNC at least VNCBasePort
}

// DirectBoot boots a kernel and initrd without firmware.
type DirectBoot struct {
	Kernel  string
	Initrd  string // optional
	Cmdline string // optional
}

func (c *Config) accel() Accel {
	if c.Accel == "" {
		return AccelKVM
	}
	return c.Accel
}

func (d Display) protocol() DisplayProtocol {
	if d.Protocol == "" {
		return DisplayNone
	}
	return d.Protocol
}
