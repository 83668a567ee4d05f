package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// errsDisk are the error classes of a disk change: a live one may also
// find the shim gone or the guest slow to release a disk.
var errsDisk = []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeAlreadyExists,
	errdefs.CodeFailedPrecondition, errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded}

var diskRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/disks", OperationID: "listDisks", Tag: "storage",
	Summary:  "A VM's disks with virtual size, allocated bytes and backing chain (from QEMU while it runs, qemu-img otherwise)",
	Response: typeOf[api.Disks](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		d, err := s.a.Disks(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, d, err)
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms/{id}/disks", OperationID: "addDisk", Tag: "storage",
	Summary:  "Add a new, empty, thin qcow2 disk; a running VM gets it at once on a free hot-plug port",
	Request:  typeOf[api.AddDiskRequest](),
	Response: typeOf[api.Disk](),
	Status:   []int{http.StatusCreated},
	Errors:   errsDisk,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.AddDiskRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		d, err := s.a.AddDisk(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusCreated, d, err)
	},
}, {
	Method: http.MethodPatch, Path: "/v1/vms/{id}/disks/{disk}", OperationID: "resizeDisk", Tag: "storage",
	Summary:  "Grow a disk (live on a running VM); shrinking needs allowShrink and the VM off",
	Request:  typeOf[api.ResizeDiskRequest](),
	Response: typeOf[api.Disk](),
	Status:   []int{http.StatusOK},
	Errors:   errsDisk,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.ResizeDiskRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		d, err := s.a.ResizeDisk(r.Context(), r.PathValue("id"), r.PathValue("disk"), req)
		respond(w, http.StatusOK, d, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/disks/{disk}", OperationID: "removeDisk", Tag: "storage",
	Summary: "Remove a disk (unplugged live from a running VM); its image stays unless deleteImage is set",
	Params:  []Param{{Name: "deleteImage", In: "query", Type: typeOf[bool](), Description: "delete the disk's image too"}},
	Status:  []int{http.StatusNoContent},
	Errors:  errsDisk,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		del, err := boolParam(r, "deleteImage")
		if err == nil {
			err = s.a.RemoveDisk(r.Context(), r.PathValue("id"), r.PathValue("disk"), del)
		}
		noContent(w, err)
	},
}}
