package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var consoleRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/console", OperationID: "getConsole", Tag: "console",
	Summary:  "The tail of the VM's serial console",
	Response: typeOf[string](),
	Media:    "text/plain",
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		b, err := s.a.Console(r.Context(), r.PathValue("id"))
		if err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(b) // fails only when the client has gone
	},
}}
