package vmspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
)

// CurrentVersion is the spec file format this build writes. Load also reads
// version 1 (one disk, one NIC, the GPU and ISO as strings) and converts it.
const CurrentVersion = 2

// Spec is a VM's definition as persisted in spec.json (mode 0600: it holds
// the display password). The agent writes it; the shim only reads it.
type Spec struct {
	Version   int     `json:"version"`
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	OS        string  `json:"os"`
	CPUs      int     `json:"cpus"`
	MemoryMiB int     `json:"memoryMiB"`
	Display   Display `json:"display"`
	// Devices are the VM's devices, each named once and for good: the name
	// is its QEMU id.
	Devices []Device        `json:"devices"`
	Boot    *api.DirectBoot `json:"boot,omitempty"`
	Accel   string          `json:"accel"` // kvm or tcg
	// ShutdownTimeoutSec is how long the ACPI ladder waits before quit.
	ShutdownTimeoutSec int       `json:"shutdownTimeoutSec"`
	Autostart          bool      `json:"autostart"`
	CreatedAt          time.Time `json:"createdAt"`
	// Firmware is UEFI; nil boots with the BIOS.
	Firmware *Firmware `json:"firmware,omitempty"`
	// Install is the VM's unattended install, while it runs and after.
	Install *Install `json:"install,omitempty"`
	// Platform is PlatformWindows or empty, fixed at create from the OS.
	Platform string `json:"platform,omitempty"`
	// Audio gives the VM a sound card.
	Audio bool `json:"audio,omitempty"`

	// loadedVersion is the version of the file Load read.
	loadedVersion int
	// secretsInline: the file Load read held the password itself, as
	// files before secrets.json did; saving moves it out.
	secretsInline bool
}

// secrets is what spec.json must not hold, kept beside it in secrets.json
// (mode 0600): spec.json is then safe to read, copy, back up and attach to
// a bug report.
type secrets struct {
	DisplayPassword string `json:"displayPassword"`
}

// SecretsFile is where the secrets of the spec saved at specPath live.
func SecretsFile(specPath string) string {
	return filepath.Join(filepath.Dir(specPath), "secrets.json")
}

// Display is the VM's remote console.
type Display struct {
	Protocol string `json:"protocol"` // vnc or spice
	Listen   string `json:"listen"`   // IP literal
	Port     int    `json:"port"`
	// Password is kept in secrets.json, not spec.json (see Save); a file
	// of an older build may still hold it here.
	Password string `json:"password,omitempty"`
}

// Load reads and checks a spec file, converting an older version.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	if s.Display.Password != "" {
		s.secretsInline = true
	} else if err := s.loadSecrets(SecretsFile(path)); err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	return s, nil
}

// Parse reads a spec in any version this build knows, secrets included
// (as the shim hands its spec over), and validates it.
func Parse(b []byte) (*Spec, error) {
	s, err := decode(b)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func decode(b []byte) (*Spec, error) {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, err
	}
	var s *Spec
	switch head.Version {
	case 1:
		var v1 specV1
		if err := json.Unmarshal(b, &v1); err != nil {
			return nil, err
		}
		s = v1.convert()
	case CurrentVersion:
		s = new(Spec)
		if err := json.Unmarshal(b, s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("version %d, this build reads 1 to %d", head.Version, CurrentVersion)
	}
	s.loadedVersion = head.Version
	return s, nil
}

func (s *Spec) loadSecrets(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // Validate says what is missing
	}
	if err != nil {
		return err
	}
	var sec secrets
	if err := json.Unmarshal(b, &sec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s.Display.Password = sec.DisplayPassword
	return nil
}

// Upgraded reports whether Load read an older version than this build
// writes: saving the spec rewrites the file in the current version.
func (s *Spec) Upgraded() bool {
	return s.loadedVersion != 0 && s.loadedVersion < CurrentVersion || s.secretsInline
}

// Save writes the spec atomically with mode 0600, in the current version:
// its secrets to secrets.json first, then spec.json without them.
func (s *Spec) Save(path string) error {
	sec, err := json.Marshal(secrets{DisplayPassword: s.Display.Password})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(SecretsFile(path), append(sec, '\n'), 0o600); err != nil {
		return err
	}
	c := *s
	c.Version = CurrentVersion
	c.Display.Password = ""
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// Clone is a deep copy, to change without touching s.
func (s *Spec) Clone() *Spec {
	c := *s
	c.Devices = cloneDevices(s.Devices)
	c.Boot = clonePtr(s.Boot)
	c.Firmware = clonePtr(s.Firmware)
	c.Install = clonePtr(s.Install)
	return &c
}

// View is the spec as the API shows it: everything but the password. The
// flat fields show the first disk, CD-ROM, NIC and PCI device, as a v1
// spec held them.
func (s *Spec) View() api.VM {
	v := api.VM{
		ID:              s.ID,
		Name:            s.Name,
		OS:              s.OS,
		CPUCores:        s.CPUs,
		RAMGB:           float64(s.MemoryMiB) / 1024,
		GraphicProtocol: s.Display.Protocol,
		GraphicListen:   s.Display.Listen,
		GraphicPort:     s.Display.Port,
		ISOPath:         s.ISOPath(),
		Accel:           s.Accel,
		Boot:            s.Boot,
		Autostart:       s.Autostart,
		Unit:            UnitName(s.ID),
		Firmware:        s.FirmwareName(),
		TPM:             s.TPM() != nil,
		Devices:         cloneDevices(s.Devices),
		Platform:        s.Platform,
		Audio:           s.Audio,
	}
	if d := s.SystemDisk(); d != nil {
		v.DiskSizeGB, v.DiskFormat = float64(d.SizeBytes)/(1<<30), d.Format
	}
	if l := s.NICs(); len(l) > 0 {
		v.MACAddress, v.NetworkBridge = l[0].NIC.MAC, l[0].NIC.Bridge
	}
	if l := s.PCIs(); len(l) > 0 {
		v.GPUPCIAddress = l[0].PCI.Host
	}
	if s.Install != nil {
		v.Install = s.Install.Status()
	}
	return v
}

// specV1 is the version 1 file: one of everything.
type specV1 struct {
	Spec
	Version int `json:"version"`
	Disk    struct {
		Path      string `json:"path"`
		Format    string `json:"format"`
		SizeBytes int64  `json:"sizeBytes"`
	} `json:"disk"`
	NIC     NIC      `json:"nic"`
	GPU     string   `json:"gpuPciAddress,omitempty"`
	ISOPath string   `json:"isoPath,omitempty"`
	TPM     *TPM     `json:"tpm,omitempty"`
	Devices []Device `json:"-"`
}

// convert gives the devices the names and boot order today's shim gave
// them: disk0 boots first, then cd0, the OS ISO.
func (v *specV1) convert() *Spec {
	s := v.Spec
	s.Version = CurrentVersion
	s.Devices = []Device{NewDevice("disk0", Disk{Path: v.Disk.Path, Format: v.Disk.Format, SizeBytes: v.Disk.SizeBytes, BootIndex: 1})}
	if v.ISOPath != "" {
		s.Devices = append(s.Devices, NewDevice("cd0", CDROM{Path: v.ISOPath, BootIndex: 2}))
	}
	s.Devices = append(s.Devices, NewDevice("net0", v.NIC))
	if v.GPU != "" {
		s.Devices = append(s.Devices, NewDevice("pci0", PCI{Host: v.GPU}))
	}
	if v.TPM != nil {
		s.Devices = append(s.Devices, NewDevice("tpm0", *v.TPM))
	}
	return &s
}
