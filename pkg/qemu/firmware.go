package qemu

import (
	"fmt"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Firmware is UEFI (OVMF) on the two pflash drives of q35: the read-only
// code and the VM's own writable variable store.
type Firmware struct {
	// Code is the firmware image, for example OVMF_CODE_4M.secboot.fd.
	Code string
	// Vars is the VM's copy of a variable store such as OVMF_VARS_4M.ms.fd
	// (Microsoft's Secure Boot keys enrolled); QEMU writes to it.
	Vars string
	// SecureBoot runs a Secure Boot build of Code: it needs SMM, and the
	// pflash must be writable only from SMM, or the guest could rewrite the
	// key store and defeat Secure Boot.
	SecureBoot bool
}

// TPM is a TPM 2.0 on the CRB interface (what Windows 11 expects), backed by
// swtpm. The caller runs swtpm with its control channel on one end of a
// socketpair (swtpm socket --tpm2 --ctrl type=unixio,clientfd=N) and gives
// QEMU the other end; QEMU passes swtpm the data channel over it.
type TPM struct {
	// CtrlFD is the child's fd of the socket to swtpm's control channel.
	CtrlFD int
}

// IDs this package gives the firmware and TPM objects. Like the other IDs
// it adds itself, the device's contains a '-'.
const (
	FirmwareCodeNode = "fw-code"
	FirmwareVarsNode = "fw-vars"
	TPMChardev       = "tpm"
	TPMBackend       = "tpm0"
	tpmDevice        = "tpm-0"
)

// PeripheralPath is the QOM path of a device the configuration named, for
// qom-get and qom-set.
func PeripheralPath(id string) string { return "/machine/peripheral/" + id }

// BootOnceRestore says how to end a boot-once: after the first boot, the
// device named by Config.BootOnce must get back its own boot index (-1 when
// it is not bootable). Set it with qom-set on PeripheralPath(id), property
// "bootindex", before the CPUs run: QEMU rewrites the boot order it gives
// the firmware only at the next reset, so the first boot keeps the
// boot-once device first and every later boot starts from the others.
//
// QEMU's own -boot once= sets an order in CMOS that OVMF never reads and
// SeaBIOS ignores for devices with a bootindex, so it cannot do this.
func (c *Config) BootOnceRestore() (id string, bootIndex int, ok bool) {
	if c.BootOnce == "" {
		return "", 0, false
	}
	for _, d := range c.Disks {
		if d.ID == c.BootOnce {
			return d.ID, restoredIndex(d.BootIndex), true
		}
	}
	for _, cd := range c.CDROMs {
		if cd.ID == c.BootOnce {
			return cd.ID, restoredIndex(cd.BootIndex), true
		}
	}
	return "", 0, false
}

func restoredIndex(i int) int {
	if i == 0 {
		return -1
	}
	return i
}

// bootIndexOf is the bootindex a drive gets in argv: 0, ahead of every
// index a caller can give, for the boot-once device; its own otherwise.
// nil leaves the property out.
func (c *Config) bootIndexOf(id string, own int) *int {
	if c.BootOnce != "" && id == c.BootOnce {
		zero := 0
		return &zero
	}
	if own == 0 {
		return nil
	}
	return &own
}

// machineOption is -machine's value: q35, with the pflash drives for UEFI.
// Windows gets no HPET: with the Hyper-V timers it does not need one, and
// an emulated HPET only costs exits (libvirt and Proxmox leave it out too).
func (c *Config) machineOption() string {
	m := "q35"
	if f := c.Firmware; f != nil {
		if f.SecureBoot {
			m += ",smm=on"
		}
		m += ",pflash0=" + FirmwareCodeNode + ",pflash1=" + FirmwareVarsNode
	}
	if c.Windows {
		m += ",hpet=off"
	}
	return m
}

func (c *Config) firmwareArgs(a *argv) {
	f := c.Firmware
	if f == nil {
		return
	}
	a.blockdev(Blockdev{Driver: "file", NodeName: FileNodeName(FirmwareCodeNode), Filename: f.Code, ReadOnly: true})
	a.blockdev(Blockdev{Driver: FormatRaw, NodeName: FirmwareCodeNode, File: FileNodeName(FirmwareCodeNode), ReadOnly: true})
	a.blockdev(Blockdev{Driver: "file", NodeName: FileNodeName(FirmwareVarsNode), Filename: f.Vars})
	a.blockdev(Blockdev{Driver: FormatRaw, NodeName: FirmwareVarsNode, File: FileNodeName(FirmwareVarsNode)})
	if f.SecureBoot {
		a.add("-global", "driver=cfi.pflash01,property=secure,value=on")
	}
}

func (c *Config) tpmArgs(a *argv) {
	if c.TPM == nil {
		return
	}
	a.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", TPMChardev, c.TPM.CtrlFD))
	a.add("-tpmdev", "emulator,id="+TPMBackend+",chardev="+TPMChardev)
	a.device(Device{Driver: "tpm-crb", ID: tpmDevice, TPMDev: TPMBackend})
}

// validatePlatform checks the firmware, the TPM and the boot-once device.
func (c *Config) validatePlatform(v *validator) error {
	if f := c.Firmware; f != nil {
		if err := checkPath("Firmware.Code", f.Code); err != nil {
			return err
		}
		if err := checkPath("Firmware.Vars", f.Vars); err != nil {
			return err
		}
		if f.Code == f.Vars {
			return errdefs.Invalid("Firmware.Vars", "must be the VM's own copy, not the firmware code %q", f.Code)
		}
	}
	if c.TPM != nil {
		if err := v.fd("TPM.CtrlFD", c.TPM.CtrlFD); err != nil {
			return err
		}
	}
	if c.BootOnce != "" {
		if _, _, ok := c.BootOnceRestore(); !ok {
			return errdefs.Invalid("BootOnce", "must be the ID of one of the disks or CD-ROMs, got %q", c.BootOnce)
		}
	}
	return nil
}
