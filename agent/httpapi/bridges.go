package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var errsBridge = []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeFailedPrecondition,
	errdefs.CodeInternal, errdefs.CodeUnavailable}

var bridgeRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/bridges", OperationID: "listBridges", Tag: "network",
	Summary:  "List the host's bridges",
	Response: typeOf[[]api.BridgeInfo](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInternal, errdefs.CodeUnavailable},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		bs, err := s.a.Bridges(r.Context())
		respond(w, http.StatusOK, mapSlice(bs, fromBridge), err)
	},
}, {
	Method: http.MethodPut, Path: "/v1/bridges/{name}", OperationID: "putBridge", Tag: "network",
	Summary:  "Create a bridge, or bring an existing one to the request (MAC, MTU, addresses); idempotent",
	Request:  typeOf[api.BridgeRequest](),
	Response: typeOf[api.BridgeInfo](),
	Status:   []int{http.StatusOK},
	Errors:   errsBridge,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.BridgeRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		b, err := s.a.PutBridge(r.Context(), r.PathValue("name"), toBridgeRequest(req))
		respond(w, http.StatusOK, fromBridge(b), err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/bridges/{name}", OperationID: "deleteBridge", Tag: "network",
	Summary: "Delete a bridge no VM is defined on; with force, also one with ports",
	Params:  []Param{{Name: "force", In: "query", Type: typeOf[bool](), Description: "delete it even with ports"}},
	Status:  []int{http.StatusNoContent},
	Errors:  errsBridge,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		force, err := boolParam(r, "force")
		if err == nil {
			err = s.a.DeleteBridge(r.Context(), r.PathValue("name"), force)
		}
		noContent(w, err)
	},
}, {
	Method: http.MethodPut, Path: "/v1/vms/{id}/bridge", OperationID: "moveVM", Tag: "network",
	Summary:  "Put one of a VM's NICs (net0 unless the body names one) on another bridge; a running VM's TAP moves at once",
	Request:  typeOf[api.MoveVMRequest](),
	Response: typeOf[api.VM](),
	Status:   []int{http.StatusOK},
	Errors:   errsBridge,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.MoveVMRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		vm, err := s.a.MoveVM(r.Context(), r.PathValue("id"), req.NIC, req.Bridge)
		respond(w, http.StatusOK, vm, err)
	},
}}
