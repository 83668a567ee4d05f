package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var balloonRoutes = []Route{{
	Method: http.MethodPut, Path: "/v1/vms/{id}/balloon", OperationID: "setBalloon", Tag: "memory",
	Summary: "Set the memory the VM's balloon leaves its guest (targetMiB, or targetGB)",
	Description: "The target is kept in the VM's definition, as libvirt's currentMemory: a running guest gets it at once and its " +
		"balloon driver inflates or deflates towards it (memory.actualBytes in GET /v1/vms/{id} follows); a VM that is off gets it " +
		"at its next start, and so does every later start. The VM's whole memory removes the target.",
	Request:  typeOf[api.BalloonRequest](),
	Response: typeOf[api.VMMemory](),
	Status:   []int{http.StatusOK},
	Errors:   errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.BalloonRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		m, err := s.a.SetBalloon(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusOK, m, err)
	},
}}
