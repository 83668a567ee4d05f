package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var powerSummaries = map[api.PowerOp]string{
	api.PowerOn:       "Boot the VM",
	api.PowerOff:      "ACPI power-off, re-pressed every 5 s, forced after the VM's shutdown timeout",
	api.ForcePowerOff: "Power the VM off at once",
	api.Suspend:       "Pause the VM's CPUs",
	api.Resume:        "Resume a suspended VM",
	api.Reset:         "Hardware reset",
	api.Restart:       "ACPI power-off followed by a fresh start",
}

// powerRoutes has one operation per power verb.
func powerRoutes() []Route {
	var out []Route
	for _, op := range api.PowerOps {
		errs, desc := errsWrite, "Answers 202 once the VM accepted the verb; with wait=true, 200 once the VM got there."
		if op == api.PowerOn {
			// Only a power-on takes memory: a restart keeps the VM's.
			errs = slices.Concat(errsWrite, []errdefs.Code{errdefs.CodeResourceExhausted})
			desc += " A start the running VMs leave no memory for is refused with ResourceExhausted, saying what is short."
		}
		out = append(out, Route{
			Method: http.MethodPost, Path: "/v1/vms/{id}/" + string(op), OperationID: string(op), Tag: "power",
			Summary:     powerSummaries[op],
			Description: desc,
			Params: []Param{
				{Name: "wait", In: "query", Type: typeOf[bool](), Description: "answer once the VM got there"},
				{Name: "timeout", In: "query", Type: typeOf[string](), Description: "bound on the request, a duration like 90s"},
			},
			Response: typeOf[api.VM](),
			Status:   []int{http.StatusAccepted, http.StatusOK},
			Errors:   errs,
			handle:   func(s *server, w http.ResponseWriter, r *http.Request) { s.power(w, r, op) },
		})
	}
	return out
}

func (s *server) power(w http.ResponseWriter, r *http.Request, op api.PowerOp) {
	wait, err := boolParam(r, "wait")
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	ctx := r.Context()
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			unixhttp.WriteError(w, errdefs.Invalid("timeout", "must be a positive duration like 90s, got %q", t))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	vm, err := s.a.Power(ctx, r.PathValue("id"), op, wait)
	code := http.StatusAccepted
	if wait {
		code = http.StatusOK
	}
	respond(w, code, vm, err)
}
