package api

// Status is a VM status string as Infinibay's backend knows it.
type Status string

const (
	StatusBuilding          Status = "building"
	StatusStarting          Status = "starting"
	StatusRunning           Status = "running"
	StatusOff               Status = "off"
	StatusSuspended         Status = "suspended"
	StatusPaused            Status = "paused"
	StatusUpdatingHardware  Status = "updating_hardware"
	StatusPoweringOffUpdate Status = "powering_off_update"
	StatusError             Status = "error"
)

// Reason says, in a machine-readable word, why a VM is in its status.
type Reason string

const (
	ReasonCreated       Reason = "created"        // defined, never started
	ReasonBooted        Reason = "booted"         // guest CPUs started
	ReasonUser          Reason = "user"           // an operator asked (API, CLI or systemctl)
	ReasonGuestShutdown Reason = "guest-shutdown" // the guest powered itself off
	ReasonReset         Reason = "reset"          // hardware reset
	ReasonRestarted     Reason = "restarted"      // ACPI power-off followed by a fresh start
	ReasonCrashed       Reason = "crashed"        // QEMU died without a clean shutdown
	ReasonKilled        Reason = "killed"         // forced off
	ReasonPanicked      Reason = "panicked"       // the guest kernel panicked
	ReasonWatchdog      Reason = "watchdog"       // the guest watchdog fired
	ReasonIOError       Reason = "io-error"       // a disk error paused the guest
	ReasonHostShutdown  Reason = "host-shutdown"  // the host is going down
	ReasonShimLost      Reason = "shim-lost"      // the shim died; systemd took QEMU with it
	ReasonStartFailed   Reason = "start-failed"   // the shim could not bring the VM up
	ReasonAutostart     Reason = "autostart"      // booted by the agent after a host boot

	// Unattended installs.
	ReasonInstalling       Reason = "installing"         // building: the unattended installer runs
	ReasonInstalled        Reason = "installed"          // the installer powered the guest off: done
	ReasonInstallTimeout   Reason = "install-timeout"    // the install ran past its timeout; stopped
	ReasonInstallResetLoop Reason = "install-reset-loop" // the installer kept resetting the guest; stopped
)

// Terminal reports whether the status means no shim runs the VM.
func (s Status) Terminal() bool { return s == StatusOff || s == StatusError }
