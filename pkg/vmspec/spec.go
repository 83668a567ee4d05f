package vmspec

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
)

// CurrentVersion is the spec file format this build writes.
const CurrentVersion = 1

// Spec is a VM's definition as persisted in spec.json (mode 0600: it holds
// the display password). The agent writes it; the shim only reads it.
type Spec struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	OS        string          `json:"os"`
	CPUs      int             `json:"cpus"`
	MemoryMiB int             `json:"memoryMiB"`
	Disk      Disk            `json:"disk"`
	NIC       NIC             `json:"nic"`
	Display   Display         `json:"display"`
	GPU       string          `json:"gpuPciAddress,omitempty"`
	ISOPath   string          `json:"isoPath,omitempty"`
	Boot      *api.DirectBoot `json:"boot,omitempty"`
	Accel     string          `json:"accel"` // kvm or tcg
	// ShutdownTimeoutSec is how long the ACPI ladder waits before quit.
	ShutdownTimeoutSec int       `json:"shutdownTimeoutSec"`
	Autostart          bool      `json:"autostart"`
	CreatedAt          time.Time `json:"createdAt"`
	// Firmware is UEFI; nil boots with the BIOS.
	Firmware *Firmware `json:"firmware,omitempty"`
	TPM      *TPM      `json:"tpm,omitempty"`
	// Install is the VM's unattended install, while it runs and after.
	Install *Install `json:"install,omitempty"`
}

// Disk is the VM's system disk.
type Disk struct {
	Path      string `json:"path"`
	Format    string `json:"format"` // qcow2 or raw, never probed
	SizeBytes int64  `json:"sizeBytes"`
}

// NIC is the VM's network interface.
type NIC struct {
	MAC    string `json:"mac"`
	Bridge string `json:"bridge"`
}

// Display is the VM's remote console.
type Display struct {
	Protocol string `json:"protocol"` // vnc or spice
	Listen   string `json:"listen"`   // IP literal
	Port     int    `json:"port"`
	Password string `json:"password"`
}

// Load reads and checks a spec file.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	if s.Version != CurrentVersion {
		return nil, fmt.Errorf("spec %s: version %d, this build reads %d", path, s.Version, CurrentVersion)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	return &s, nil
}

// Save writes the spec atomically with mode 0600.
func (s *Spec) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// View is the spec as the API shows it: everything but the password.
func (s *Spec) View() api.VM {
	v := api.VM{
		ID:              s.ID,
		Name:            s.Name,
		OS:              s.OS,
		CPUCores:        s.CPUs,
		RAMGB:           float64(s.MemoryMiB) / 1024,
		DiskSizeGB:      float64(s.Disk.SizeBytes) / (1 << 30),
		DiskFormat:      s.Disk.Format,
		MACAddress:      s.NIC.MAC,
		NetworkBridge:   s.NIC.Bridge,
		GraphicProtocol: s.Display.Protocol,
		GraphicListen:   s.Display.Listen,
		GraphicPort:     s.Display.Port,
		GPUPCIAddress:   s.GPU,
		ISOPath:         s.ISOPath,
		Accel:           s.Accel,
		Boot:            s.Boot,
		Autostart:       s.Autostart,
		Unit:            UnitName(s.ID),
		Firmware:        s.FirmwareName(),
		TPM:             s.TPM != nil,
	}
	if s.Install != nil {
		v.Install = s.Install.Status()
	}
	return v
}
