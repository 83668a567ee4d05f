package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
)

var healthRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/health", OperationID: "getHealth", Tag: "health",
	Summary:  "The agent's health: VM count, database state, accelerator",
	Response: typeOf[api.Health](),
	Status:   []int{http.StatusOK},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.a.Health())
	},
}}
