package httpapi

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPIDocument is the committed OpenAPI document that GET /openapi.json
// serves.
func OpenAPIDocument() []byte { return openAPI }

var metaRoutes = []Route{{
	Method: http.MethodGet, Path: "/openapi.json", OperationID: "getOpenAPI", Tag: "meta",
	Summary:  "This document",
	Response: typeOf[map[string]any](),
	Status:   []int{http.StatusOK},
	handle: func(_ *server, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI) // fails only when the client has gone
	},
}}
