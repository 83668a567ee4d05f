package api

import "time"

// DatabaseState says whether the agent's PostgreSQL aggregate is in use and
// reachable.
type DatabaseState string

// The database states Health reports.
const (
	DatabaseNone        DatabaseState = "none"        // no database configured: the embedded default
	DatabaseOK          DatabaseState = "ok"          // the last write succeeded
	DatabaseUnavailable DatabaseState = "unavailable" // the last write failed; the agent retries
)

// Health is the body of GET /v1/health.
type Health struct {
	// VMs counts the VMs the agent holds.
	VMs      int           `json:"vms"`
	Database DatabaseState `json:"database"`
	// DatabaseLag is how far the database is behind the VMs' event logs;
	// absent without a database.
	DatabaseLag *DatabaseLag `json:"databaseLag,omitempty"`
	// Accel is the host's accelerator for VMs that do not choose: kvm or tcg.
	Accel string `json:"accel"`
}

// DatabaseLag is how far the database is behind the VMs' event logs, which
// it catches up from once it answers again.
type DatabaseLag struct {
	// PendingVMs counts the VMs with changes not yet written.
	PendingVMs int `json:"pendingVMs"`
	// Since is when the database fell behind: the first write of the
	// outage that failed. Absent while it keeps up.
	Since *time.Time `json:"since,omitempty"`
	// Seconds is how long it has been behind; 0 while it keeps up.
	Seconds float64 `json:"seconds"`
}
