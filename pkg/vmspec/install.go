package vmspec

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Firmware is UEFI (OVMF) on two pflash drives. A spec without it boots
// with QEMU's default BIOS.
type Firmware struct {
	// Code is the read-only firmware image on the host.
	Code string `json:"code"`
	// Vars is the VM's own UEFI variable store, a copy kept in the VM's
	// directory: boot entries and Secure Boot keys live there.
	Vars string `json:"vars"`
	// SecureBoot needs a Secure Boot build of Code (SMM on, secure pflash).
	SecureBoot bool `json:"secureBoot"`
}

// Install is an unattended install: what the shim needs to run the
// installer, and where it stands. The install's secrets are not here: the
// answer ISO, mode 0600 in the VM's directory, is the only copy of them.
type Install struct {
	State api.InstallState `json:"state"`
	OS    string           `json:"os"`
	// AnswerISO is the answer medium, in the VM's install directory; it is
	// deleted, and emptied here, once the install succeeded.
	AnswerISO string `json:"answerIso"`
	// VirtioWinISO is the virtio-win driver ISO a Windows install attaches.
	VirtioWinISO string `json:"virtioWinIso,omitempty"`
	// BootOnce is BootOnceISO when the firmware boots the OS ISO first, for
	// the installer's first boot only; empty when the installer's kernel
	// boots directly (Spec.Boot, extracted into the install directory).
	BootOnce          string `json:"bootOnce,omitempty"`
	BootFromDiskAfter bool   `json:"bootFromDiskAfter"`
	TimeoutSec        int    `json:"timeoutSec"`
	// StartedAt is when the current (or last) installer run started: every
	// start of an unfinished install runs the installer from the beginning.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Message says why the install failed.
	Message string `json:"message,omitempty"`
}

// BootOnceISO names the OS ISO as the installer's first boot device.
const BootOnceISO = "iso"

// MaxInstallTimeout bounds a per-VM install timeout.
const MaxInstallTimeout = 24 * time.Hour

// InstallOSes are the operating systems with an unattended install.
var InstallOSes = []string{"windows10", "windows11", "ubuntu", "fedora"}

// DefaultInstallTimeout is how long the installer of os may run before the
// install counts as failed.
func DefaultInstallTimeout(os string) time.Duration {
	switch os {
	case "ubuntu":
		return 45 * time.Minute
	case "fedora":
		return 60 * time.Minute
	case "windows10":
		return 90 * time.Minute
	case "windows11":
		return 120 * time.Minute
	}
	return 0
}

// Files of the VM's directory that the install and the platform use.

// InstallDir holds the temporary install media: the answer ISO and, for
// Ubuntu, the installer's kernel and initrd. It is removed once installed.
func (l Layout) InstallDir(id string) string { return filepath.Join(l.VMDir(id), "install") }

// AnswerISO is the VM's answer medium.
func (l Layout) AnswerISO(id string) string { return filepath.Join(l.InstallDir(id), "answers.iso") }

// UEFIVars is the VM's own copy of the UEFI variable store.
func (l Layout) UEFIVars(id string) string { return filepath.Join(l.VMDir(id), "uefi-vars.fd") }

// TPMStateDir holds swtpm's state for the VM.
func (l Layout) TPMStateDir(id string) string { return filepath.Join(l.VMDir(id), "tpm") }

// Active reports whether the next start of the VM runs the installer.
func (i *Install) Active() bool {
	return i != nil && (i.State == api.InstallPending || i.State == api.InstallRunning)
}

// Timeout is how long an installer run may take.
func (i *Install) Timeout() time.Duration { return time.Duration(i.TimeoutSec) * time.Second }

// Begin starts an installer run at now. A pending install starts, and so
// does one that failed (a retry, with its media kept) or was cut short (the
// VM was powered off or the host went down): each run starts the installer
// from its beginning, so the clock starts again. A done install never runs.
func (i *Install) Begin(now time.Time) error {
	if i.State == api.InstallDone {
		return errdefs.FailedPrecondition("the install is already done")
	}
	i.State, i.StartedAt, i.FinishedAt, i.Message = api.InstallRunning, now.UTC(), time.Time{}, ""
	return nil
}

// End records how an installer run ended, from the reason the shim
// recorded: installed is done, install-timeout and install-reset-loop
// failed. Any other reason leaves the install running (it runs again at the
// next start) and End reports false.
func (i *Install) End(reason api.Reason, at time.Time, msg string) (bool, error) {
	if i.State != api.InstallRunning {
		return false, errdefs.FailedPrecondition("the install is %s, not running", i.State)
	}
	switch reason {
	case api.ReasonInstalled:
		i.State = api.InstallDone
	case api.ReasonInstallTimeout, api.ReasonInstallResetLoop:
		i.State, i.Message = api.InstallFailed, msg
	default:
		return false, nil
	}
	i.FinishedAt = at.UTC()
	return true, nil
}

// Duration is how long the last installer run took, once it ended.
func (i *Install) Duration() time.Duration {
	if i.StartedAt.IsZero() || i.FinishedAt.IsZero() {
		return 0
	}
	return i.FinishedAt.Sub(i.StartedAt)
}

// Status is the API's view of the install.
func (i *Install) Status() *api.InstallStatus {
	st := &api.InstallStatus{
		OS: i.OS, State: i.State, BootFromDiskAfter: i.BootFromDiskAfter,
		TimeoutSec: i.TimeoutSec, DurationSec: i.Duration().Seconds(), Message: i.Message,
	}
	if !i.StartedAt.IsZero() {
		t := i.StartedAt
		st.StartedAt = &t
	}
	if !i.FinishedAt.IsZero() {
		t := i.FinishedAt
		st.FinishedAt = &t
	}
	return st
}

// FirmwareName is the API's word for the VM's firmware.
func (s *Spec) FirmwareName() string {
	switch {
	case s.Firmware == nil:
		return "bios"
	case s.Firmware.SecureBoot:
		return "uefi-secure-boot"
	default:
		return "uefi"
	}
}

// validatePlatform checks the firmware, TPM and install sections of a
// stored spec. The VM's files must lie in the VM's directory, which is the
// system disk's.
func (s *Spec) validatePlatform() error {
	vmDir := filepath.Dir(s.SystemDisk().Path)
	inVMDir := func(field, p string) error {
		if err := CheckHostPath(field, p); err != nil {
			return err
		}
		if !strings.HasPrefix(p, vmDir+"/") {
			return errdefs.Invalid(field, "must be inside the VM's directory %s, got %q", vmDir, p)
		}
		return nil
	}
	if f := s.Firmware; f != nil {
		if err := CheckHostPath("firmware.code", f.Code); err != nil {
			return err
		}
		if err := inVMDir("firmware.vars", f.Vars); err != nil {
			return err
		}
	}
	for i, d := range s.Devices {
		if d.Type == api.DeviceTPM {
			if err := inVMDir(fmt.Sprintf("devices[%d].tpm.stateDir", i), d.TPM.StateDir); err != nil {
				return err
			}
		}
	}
	i := s.Install
	if i == nil {
		return nil
	}
	switch i.State {
	case api.InstallPending, api.InstallRunning, api.InstallDone, api.InstallFailed:
	default:
		return errdefs.Invalid("install.state", "must be pending, running, done or failed, got %q", i.State)
	}
	if !contains(InstallOSes, i.OS) {
		return errdefs.Invalid("install.os", "must be one of %s, got %q", strings.Join(InstallOSes, ", "), i.OS)
	}
	if i.OS != s.OS {
		return errdefs.Invalid("install.os", "must match the VM's os %q, got %q", s.OS, i.OS)
	}
	if i.AnswerISO != "" || i.Active() {
		if err := inVMDir("install.answerIso", i.AnswerISO); err != nil {
			return err
		}
	}
	if i.VirtioWinISO != "" {
		if err := CheckHostPath("install.virtioWinIso", i.VirtioWinISO); err != nil {
			return err
		}
	}
	if i.TimeoutSec < 1 || time.Duration(i.TimeoutSec)*time.Second > MaxInstallTimeout {
		return errdefs.Invalid("install.timeoutSec", "must be between 1 s and %s, got %d s", MaxInstallTimeout, i.TimeoutSec)
	}
	switch i.BootOnce {
	case "", BootOnceISO:
	default:
		return errdefs.Invalid("install.bootOnce", "must be %q or empty, got %q", BootOnceISO, i.BootOnce)
	}
	if i.Active() {
		if s.ISOPath() == "" {
			return errdefs.Invalid("devices", "an unfinished install needs its OS ISO in the first CD-ROM drive")
		}
		if i.BootOnce == "" && s.Boot == nil {
			return errdefs.Invalid("install.bootOnce", "the installer boots neither from the ISO nor from a kernel")
		}
	}
	if i.State == api.InstallRunning && i.StartedAt.IsZero() {
		return errdefs.Invalid("install.startedAt", "a running install has a start time")
	}
	return nil
}

// String describes the install for logs; it holds no secret.
func (i *Install) String() string {
	return fmt.Sprintf("%s install (%s)", i.OS, i.State)
}
