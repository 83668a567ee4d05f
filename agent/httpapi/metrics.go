package httpapi

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/infinibay/infinivirt/pkg/api"
)

var metricsRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/metrics", OperationID: "getMetrics", Tag: "health",
	Summary:  "The agent's gauges in Prometheus' text format: VMs by status, VMs not responding, the database's state and lag",
	Response: typeOf[string](),
	Media:    "text/plain",
	Status:   []int{http.StatusOK},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(renderMetrics(s.a.Health(), s.a.List())) // fails only when the client has gone
	},
}}

// renderMetrics writes the gauges of one scrape. The database's are absent
// when the agent runs without one.
func renderMetrics(h api.Health, vms []api.VM) []byte {
	var b bytes.Buffer
	gauge := func(name, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	byStatus := map[api.Status]int{}
	notResponding := 0
	for _, v := range vms {
		byStatus[v.Status]++
		if v.Responding != nil && !*v.Responding {
			notResponding++
		}
	}
	gauge("infinivirt_vms", "VMs the agent holds, by status.")
	for _, st := range slices.Sorted(maps.Keys(byStatus)) {
		fmt.Fprintf(&b, "infinivirt_vms{status=%q} %d\n", st, byStatus[st])
	}
	gauge("infinivirt_vms_not_responding", "Running VMs whose shim or QEMU did not answer the last check.")
	fmt.Fprintf(&b, "infinivirt_vms_not_responding %d\n", notResponding)
	if h.DatabaseLag == nil {
		return b.Bytes()
	}
	up := 0
	if h.Database == api.DatabaseOK {
		up = 1
	}
	gauge("infinivirt_database_up", "1 when the last database write succeeded.")
	fmt.Fprintf(&b, "infinivirt_database_up %d\n", up)
	gauge("infinivirt_database_lag_seconds", "How long the database has been behind the VMs' event logs.")
	fmt.Fprintf(&b, "infinivirt_database_lag_seconds %g\n", h.DatabaseLag.Seconds)
	gauge("infinivirt_database_pending_vms", "VMs with changes the database does not have yet.")
	fmt.Fprintf(&b, "infinivirt_database_pending_vms %d\n", h.DatabaseLag.PendingVMs)
	return b.Bytes()
}
