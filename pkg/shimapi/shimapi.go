// Package shimapi is the contract between a VM's shim and its clients: the
// control-socket protocol, and the exit codes the shim leaves for systemd.
//
// The socket speaks HTTP/1.1 on a Unix socket. Its verbs are the Routes
// table (routes.go): each a method, a path, and typed request and response
// structs, from which both the shim's server and pkg/shimclient are built.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package shimapi

import (
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

// Status is the shim's view of its VM.
type Status struct {
	VMID      string     `json:"vmId"`
	Status    api.Status `json:"status"`
	Reason    api.Reason `json:"reason"`
	Message   string     `json:"message,omitempty"`
	QMPStatus string     `json:"qmpStatus"`          // QEMU's own run state, as query-status says
	QMPError  string     `json:"qmpError,omitempty"` // why query-status did not answer; QMPStatus is then "unknown"
	QEMUPID   int        `json:"qemuPid"`
	Seq       uint64     `json:"seq"` // the last event's sequence number
	StartedAt time.Time  `json:"startedAt"`
}

// Exit codes of `infinivirt-shim run`. The unit lists the clean ones in
// SuccessExitStatus, so a failed unit always means the VM did not end cleanly.
const (
	ExitGuestShutdown = 0  // the guest powered itself off
	ExitStartFailed   = 1  // a startup step failed; QEMU never ran the guest
	ExitUserPowerOff  = 64 // the guest powered off at an operator's ACPI request
	ExitForcedOff     = 65 // forced off: quit or SIGKILL at an operator's request or at the end of the ladder
	ExitCrashed       = 70 // QEMU died on a signal nobody sent on purpose
	ExitQEMUFailed    = 71 // QEMU exited with an error code on its own
	ExitPanicked      = 72 // the guest kernel panicked
	ExitInstallFailed = 73 // an unattended install timed out or reset in a loop; the shim stopped the VM
)

// CleanExitCodes are the non-zero codes systemd must treat as success.
var CleanExitCodes = []int{ExitUserPowerOff, ExitForcedOff}

// FirewallMode is how a shim filters its VM's traffic. The agent probes the
// kernel once and passes the mode to every shim it starts.
type FirewallMode string

// The firewall modes.
const (
	FirewallOff       FirewallMode = "off"       // no rules: bridges are filtered elsewhere
	FirewallConntrack FirewallMode = "conntrack" // connection state from nf_conntrack_bridge
	FirewallStateless FirewallMode = "stateless" // connection state from packet headers (see pkg/firewall STATELESS.md)
)
