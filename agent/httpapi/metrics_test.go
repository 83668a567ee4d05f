package httpapi

import (
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

func TestRenderMetrics(t *testing.T) {
	no, yes := false, true
	vms := []api.VM{
		{Status: api.StatusRunning, Responding: &yes},
		{Status: api.StatusRunning, Responding: &no},
		{Status: api.StatusOff},
	}
	if got, want := string(renderMetrics(api.Health{Database: api.DatabaseNone}, vms)), `# HELP infinivirt_vms VMs the agent holds, by status.
# TYPE infinivirt_vms gauge
infinivirt_vms{status="off"} 1
infinivirt_vms{status="running"} 2
# HELP infinivirt_vms_not_responding Running VMs whose shim or QEMU did not answer the last check.
# TYPE infinivirt_vms_not_responding gauge
infinivirt_vms_not_responding 1
`; got != want {
		t.Errorf("without a database:\n%s\nwant\n%s", got, want)
	}
	since := time.Now()
	h := api.Health{Database: api.DatabaseUnavailable, DatabaseLag: &api.DatabaseLag{PendingVMs: 3, Since: &since, Seconds: 12.5}}
	if got, want := string(renderMetrics(h, nil)), `# HELP infinivirt_vms VMs the agent holds, by status.
# TYPE infinivirt_vms gauge
# HELP infinivirt_vms_not_responding Running VMs whose shim or QEMU did not answer the last check.
# TYPE infinivirt_vms_not_responding gauge
infinivirt_vms_not_responding 0
# HELP infinivirt_database_up 1 when the last database write succeeded.
# TYPE infinivirt_database_up gauge
infinivirt_database_up 0
# HELP infinivirt_database_lag_seconds How long the database has been behind the VMs' event logs.
# TYPE infinivirt_database_lag_seconds gauge
infinivirt_database_lag_seconds 12.5
# HELP infinivirt_database_pending_vms VMs with changes the database does not have yet.
# TYPE infinivirt_database_pending_vms gauge
infinivirt_database_pending_vms 3
`; got != want {
		t.Errorf("with a database behind:\n%s\nwant\n%s", got, want)
	}
}
