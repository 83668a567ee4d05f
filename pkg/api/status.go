package api

// Status is a VM status string as Infinibay's backend knows it.
type Status string

// The statuses, spelled as Infinibay's backend spells them.
const (
	StatusBuilding          Status = "building"            // running the unattended installer
	StatusStarting          Status = "starting"            // the shim is bringing QEMU up
	StatusRunning           Status = "running"             // guest CPUs run
	StatusOff               Status = "off"                 // no QEMU runs
	StatusSuspended         Status = "suspended"           // CPUs stopped by a suspend; resume continues them
	StatusPaused            Status = "paused"              // QEMU stopped the guest itself, on a disk error
	StatusUpdatingHardware  Status = "updating_hardware"   // Infinibay's; Infinivirt never sets it
	StatusPoweringOffUpdate Status = "powering_off_update" // Infinibay's; Infinivirt never sets it
	StatusError             Status = "error"               // no QEMU runs: it failed to start or ended badly
)

// Reason says, in a machine-readable word, why a VM is in its status.
type Reason string

// The reasons; a status change's event carries one.
const (
	ReasonCreated        Reason = "created"         // defined, never started
	ReasonBooted         Reason = "booted"          // guest CPUs started
	ReasonUser           Reason = "user"            // an operator asked (API, CLI or systemctl)
	ReasonGuestShutdown  Reason = "guest-shutdown"  // the guest powered itself off
	ReasonReset          Reason = "reset"           // hardware reset
	ReasonRestarted      Reason = "restarted"       // ACPI power-off followed by a fresh start
	ReasonCrashed        Reason = "crashed"         // QEMU died without a clean shutdown
	ReasonKilled         Reason = "killed"          // forced off
	ReasonPanicked       Reason = "panicked"        // the guest kernel panicked
	ReasonWatchdog       Reason = "watchdog"        // the guest watchdog fired
	ReasonIOError        Reason = "io-error"        // a disk error paused the guest
	ReasonHostShutdown   Reason = "host-shutdown"   // the host is going down
	ReasonShimLost       Reason = "shim-lost"       // the shim died; systemd took QEMU with it
	ReasonStartFailed    Reason = "start-failed"    // the shim could not bring the VM up
	ReasonAutostart      Reason = "autostart"       // booted by the agent after a host boot
	ReasonSpecUnreadable Reason = "spec-unreadable" // the VM's spec.json cannot be read, nor recovered from its shim
	ReasonResetLoop      Reason = "reset-loop"      // running, but the guest keeps resetting itself

	// Unattended installs.
	ReasonInstalling       Reason = "installing"         // building: the unattended installer runs
	ReasonInstalled        Reason = "installed"          // the installer powered the guest off: done
	ReasonInstallTimeout   Reason = "install-timeout"    // the install ran past its timeout; stopped
	ReasonInstallResetLoop Reason = "install-reset-loop" // the installer kept resetting the guest; stopped
)

// Terminal reports whether the status means no shim runs the VM.
func (s Status) Terminal() bool { return s == StatusOff || s == StatusError }
