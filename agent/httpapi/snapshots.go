package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// A snapshot is /v1/vms/{id}/snapshots/{snapshot}, by its name; reverting
// to it is a verb on it.
var snapshotRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/snapshots", OperationID: "listSnapshots", Tag: "storage",
	Summary:  "List a VM's snapshots, oldest first, as its disks hold them",
	Response: typeOf[api.Snapshots](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		list, err := s.a.Snapshots(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, list, err)
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms/{id}/snapshots", OperationID: "createSnapshot", Tag: "storage",
	Summary:  "Take a snapshot of all of a VM's disks (each a qcow2 image) at one instant, with memory the running guest's RAM too; the guest runs on after",
	Request:  typeOf[api.CreateSnapshotRequest](),
	Response: typeOf[api.Snapshot](),
	Status:   []int{http.StatusCreated},
	Errors:   append([]errdefs.Code{errdefs.CodeAlreadyExists}, errsWrite...),
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.CreateSnapshotRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		sn, err := s.a.CreateSnapshot(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusCreated, sn, err)
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms/{id}/snapshots/{snapshot}/revert", OperationID: "revertSnapshot", Tag: "storage",
	Summary:  "Go back to a snapshot, losing what was written since: a memory snapshot loads into the running guest, which goes on where it was; any other needs the VM off, or force powers it off first",
	Params:   []Param{{Name: "force", In: "query", Type: typeOf[bool](), Description: "power a running VM off first"}},
	Response: typeOf[api.Snapshot](),
	Status:   []int{http.StatusOK},
	Errors:   errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		force, err := boolParam(r, "force")
		if err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		sn, err := s.a.RevertSnapshot(r.Context(), r.PathValue("id"), r.PathValue("snapshot"), force)
		respond(w, http.StatusOK, sn, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/snapshots/{snapshot}", OperationID: "deleteSnapshot", Tag: "storage",
	Summary: "Delete a snapshot from every disk it covers, live while the VM runs; the VM's disks as they are stay",
	Status:  []int{http.StatusNoContent},
	Errors:  errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.DeleteSnapshot(r.Context(), r.PathValue("id"), r.PathValue("snapshot")))
	},
}}
