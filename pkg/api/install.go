package api

import (
	"encoding/json"
	"time"
)

// InstallRequest asks for an unattended OS install when the VM is created:
// the VM boots the OS installer once, with an answer medium, and its status
// is building until the installer powers the guest off.
type InstallRequest struct {
	// OS is windows10, windows11, ubuntu or fedora; empty takes the VM's os,
	// and a different one is refused.
	OS string `json:"os,omitempty"`
	// Config is pkg/unattended's InstallConfig in JSON: username, password,
	// productKey, locale, timezone, hostname, keyboard, applications and
	// firstBootScripts. It holds secrets: it is never stored in the spec,
	// logged or returned; only the answer ISO built from it carries them.
	Config json.RawMessage `json:"config"`
	// BootFromDiskAfter boots the installed system once the install is done;
	// nil means true.
	BootFromDiskAfter *bool `json:"bootFromDiskAfter,omitempty"`
	// TimeoutMinutes overrides the OS's install timeout (fractions allowed,
	// whole seconds count); 0 keeps the OS's default.
	TimeoutMinutes float64 `json:"timeoutMinutes,omitempty"`
	// KernelArgs are added to the kernel command line of an installer that
	// boots directly (Ubuntu), for example console=ttyS0 to follow it on the
	// serial console.
	KernelArgs string `json:"kernelArgs,omitempty"`
}

// InstallState is where an unattended install stands.
type InstallState string

const (
	InstallPending InstallState = "pending" // created, the installer has not run yet
	InstallRunning InstallState = "running" // the installer runs (or will at the next power-on)
	InstallDone    InstallState = "done"    // installed; the media are detached
	InstallFailed  InstallState = "failed"  // timed out or reset in a loop; the media are kept
)

// InstallStatus is what the API shows of a VM's unattended install. It never
// holds the install's secrets.
type InstallStatus struct {
	OS                string       `json:"os"`
	State             InstallState `json:"state"`
	BootFromDiskAfter bool         `json:"bootFromDiskAfter"`
	TimeoutSec        int          `json:"timeoutSec"`
	StartedAt         *time.Time   `json:"startedAt,omitempty"`
	FinishedAt        *time.Time   `json:"finishedAt,omitempty"`
	// DurationSec is how long the installer ran, once it finished or failed.
	DurationSec float64 `json:"durationSec,omitempty"`
	// Message says why an install failed.
	Message string `json:"message,omitempty"`
}
