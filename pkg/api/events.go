package api

import "time"

// EventType tells what an Event reports.
type EventType string

// The kinds of event.
const (
	EventStatus   EventType = "status"   // a status change; Status and Reason are set
	EventProgress EventType = "progress" // a step of a long operation; Message says which
	EventGuest    EventType = "guest"    // a guest-visible QEMU event (RESET, STOP, ...); Message names it
)

// Event is one entry of a VM's event log. Seq grows by one per entry and
// never repeats for a VM, across shim runs and agent restarts.
type Event struct {
	Seq     uint64    `json:"seq"`
	VMID    string    `json:"vmId"`
	Time    time.Time `json:"time"`
	Type    EventType `json:"type"`
	Status  Status    `json:"status,omitempty"`
	Reason  Reason    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
	QEMUPID int       `json:"qemuPid,omitempty"`
	// ExitCode and Signal describe how QEMU ended, on the event that says so.
	ExitCode *int   `json:"exitCode,omitempty"`
	Signal   string `json:"signal,omitempty"`
}

// IsStatus reports whether the event is a status change.
func (e Event) IsStatus() bool { return e.Type == EventStatus }

// RunningPID is the QEMU pid a VM has after this status event: none once it
// is off or failed. The event itself keeps the pid of the QEMU that ended.
func (e Event) RunningPID() int {
	if e.Status.Terminal() {
		return 0
	}
	return e.QEMUPID
}
