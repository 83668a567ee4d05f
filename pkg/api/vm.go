package api

import "time"

// CreateVMInput is the body of POST /v1/vms. The first block of fields is
// Infinibay's CreateVMInput (seed §1.1) with its JSON names; the second block
// holds Infinivirt's optional extensions.
type CreateVMInput struct {
	Name            string  `json:"name"`
	InternalName    string  `json:"internalName"` // the VM's UUID
	OS              string  `json:"os"`           // windows10, windows11, ubuntu, fedora or linux
	CPUCores        int     `json:"cpuCores"`
	RAMGB           float64 `json:"ramGB"`                 // GiB; fractions allowed (0.125 = 128 MiB)
	DiskSizeGB      float64 `json:"diskSizeGB"`            // GiB; fractions allowed
	MACAddress      string  `json:"macAddress" default:""` // generated when empty
	NetworkBridge   string  `json:"networkBridge"`
	GraphicProtocol string  `json:"graphicProtocol"`         // spice or vnc
	GraphicPort     int     `json:"graphicPort" default:"0"` // 0 allocates a free one
	GraphicPassword string  `json:"graphicPassword"`
	GPUPCIAddress   string  `json:"gpuPciAddress,omitempty"`
	ISOPath         string  `json:"isoPath,omitempty"`

	DiskFormat string `json:"diskFormat,omitempty"` // qcow2 (default) or raw
	// DiskImage makes the first disk from a store image, by its name; the
	// disk is then at least as large as the image (diskSizeGB may grow it).
	DiskImage string `json:"diskImage,omitempty"`
	// DiskClone is how: "linked" (default; a qcow2 overlay) or "full".
	DiskClone          DiskClone   `json:"diskClone,omitempty"`
	Accel              string      `json:"accel,omitempty"` // kvm or tcg; empty takes the host's setting
	Boot               *DirectBoot `json:"boot,omitempty"`
	ShutdownTimeoutSec int         `json:"shutdownTimeoutSec,omitempty" default:"120"` // ACPI grace before quit
	Autostart          bool        `json:"autostart,omitempty"`
	// DepartmentID puts the VM in a department's firewall; empty is "default".
	DepartmentID string `json:"departmentId,omitempty"`
	Start        *bool  `json:"start,omitempty" default:"true"` // boot right after create
	// Install runs an unattended OS install from isoPath (required with it).
	Install *InstallRequest `json:"install,omitempty"`
	// VirtioWinPath is the virtio-win driver ISO a Windows install attaches;
	// empty takes the agent's setting or searches the usual places.
	VirtioWinPath string `json:"virtioWinPath,omitempty"`
	// Devices adds devices beyond those the flat fields above make (disk0,
	// cd0, net0, pci0): more NICs, disks and CD-ROM drives. A disk is a new
	// thin image in the VM's directory (sizeBytes; format qcow2 or raw;
	// bootIndex; image and clone as diskImage and diskClone), its path left
	// empty; a drive has an optional ISO path and bootIndex. An entry
	// without a name takes the lowest free one (disk1, cd1, net1).
	Devices []Device `json:"devices,omitempty"`
	// Audio gives the VM a sound card (Intel HDA), played through SPICE
	// when SPICE is the display. Empty takes the OS's default: on for
	// windows10, windows11, ubuntu and fedora, off for linux.
	Audio *bool `json:"audio,omitempty"`
	// Balloon gives the VM a virtio memory balloon, balloon0; false leaves
	// it out, and the VM's memory can then not be reclaimed while it runs.
	Balloon *bool `json:"balloon,omitempty" default:"true"`
}

// DirectBoot boots a kernel and initrd without firmware, as the test guest
// and the Ubuntu installer do.
type DirectBoot struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// VM is what the API answers for one VM. Secrets are never in it.
type VM struct {
	ID              string      `json:"id"`
	Name            string      `json:"name"`
	OS              string      `json:"os"`
	CPUCores        int         `json:"cpuCores"`
	RAMGB           float64     `json:"ramGB"`
	DiskSizeGB      float64     `json:"diskSizeGB"`
	DiskFormat      string      `json:"diskFormat"`
	MACAddress      string      `json:"macAddress"`
	NetworkBridge   string      `json:"networkBridge"`
	GraphicProtocol string      `json:"graphicProtocol"`
	GraphicListen   string      `json:"graphicListen"`
	GraphicPort     int         `json:"graphicPort"`
	GPUPCIAddress   string      `json:"gpuPciAddress,omitempty"`
	ISOPath         string      `json:"isoPath,omitempty"`
	Accel           string      `json:"accel"`
	Boot            *DirectBoot `json:"boot,omitempty"`
	Autostart       bool        `json:"autostart"`
	// Firmware is "bios", "uefi" or "uefi-secure-boot".
	Firmware string         `json:"firmware"`
	TPM      bool           `json:"tpm,omitempty"` // an emulated TPM 2.0 (swtpm)
	Install  *InstallStatus `json:"install,omitempty"`
	// Platform is "windows" for the platform Windows expects of a
	// hypervisor (Hyper-V enlightenments, the RTC in local time, no HPET),
	// empty for a plain PC; it follows os at create.
	Platform string `json:"platform,omitempty"`
	// Audio says whether the VM has a sound card.
	Audio bool `json:"audio"`
	// Devices are all of the VM's devices; the flat fields above show the
	// first disk, CD-ROM, NIC and PCI device.
	Devices []Device `json:"devices"`
	// Memory is what the VM's balloon says of its memory: only in GET
	// /v1/vms/{id}, and only for a VM with a balloon.
	Memory *VMMemory `json:"memory,omitempty"`

	Status    Status    `json:"status"`
	Reason    Reason    `json:"reason"`
	Message   string    `json:"message,omitempty"`
	Seq       uint64    `json:"seq"`
	QEMUPID   int       `json:"qemuPid,omitempty"`
	Unit      string    `json:"unit"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Responding says whether the VM's shim and its QEMU answer the agent's
	// periodic checks; absent while no shim runs and before the first
	// check of a run.
	Responding    *bool          `json:"responding,omitempty"`
	NotResponding *NotResponding `json:"notResponding,omitempty"`
}

// NotResponding says which part of a running VM stopped answering, and
// since when, as libvirt's "domain is not responding".
type NotResponding struct {
	Since time.Time `json:"since"`
	// Component is "shim" (its control socket does not answer) or "qemu"
	// (QMP does not answer the shim).
	Component string `json:"component"`
	Error     string `json:"error"`
}
