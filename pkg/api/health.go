package api

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
	// Accel is the host's accelerator for VMs that do not choose: kvm or tcg.
	Accel string `json:"accel"`
}
