package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// A drive is /v1/vms/{id}/cdroms/{cd}, added and removed while the VM is
// off; its medium is /v1/vms/{id}/cdroms/{cd}/medium, put and deleted
// (ejected) live. The two DELETEs never mean each other.
var cdromRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/cdroms", OperationID: "listCDROMs", Tag: "storage",
	Summary:  "List a VM's CD-ROM drives and their media; while it runs, what QEMU has in them (query-block)",
	Response: typeOf[api.CDROMs](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		cds, err := s.a.CDROMs(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, cds, err)
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms/{id}/cdroms", OperationID: "addCDROM", Tag: "storage",
	Summary:  "Add a CD-ROM drive, empty or with an ISO, to a VM that is off (AHCI drives cannot be hot-plugged)",
	Request:  typeOf[api.AddCDROMRequest](),
	Response: typeOf[api.CDROM](),
	Status:   []int{http.StatusCreated},
	Errors:   append([]errdefs.Code{errdefs.CodeAlreadyExists}, errsWrite...),
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.AddCDROMRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		cd, err := s.a.AddCDROM(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusCreated, cd, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/cdroms/{cd}", OperationID: "removeCDROM", Tag: "storage",
	Summary: "Remove a CD-ROM drive from a VM that is off; the ISO file stays. To eject a medium, DELETE its medium",
	Status:  []int{http.StatusNoContent},
	Errors:  errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.RemoveCDROM(r.Context(), r.PathValue("id"), r.PathValue("cd")))
	},
}, {
	Method: http.MethodPut, Path: "/v1/vms/{id}/cdroms/{cd}/medium", OperationID: "insertCDROMMedium", Tag: "storage",
	Summary:  "Insert an ISO into a CD-ROM drive, or change the one it holds; live while the VM runs, where the guest sees a media change",
	Request:  typeOf[api.CDROMMedium](),
	Response: typeOf[api.CDROM](),
	Status:   []int{http.StatusOK},
	Errors:   errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.CDROMMedium
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		cd, err := s.a.InsertMedium(r.Context(), r.PathValue("id"), r.PathValue("cd"), req.ISOPath)
		respond(w, http.StatusOK, cd, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/cdroms/{cd}/medium", OperationID: "ejectCDROMMedium", Tag: "storage",
	Summary:  "Eject a CD-ROM drive's medium, leaving the drive empty; live while the VM runs",
	Response: typeOf[api.CDROM](),
	Status:   []int{http.StatusOK},
	Errors:   errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		cd, err := s.a.EjectMedium(r.Context(), r.PathValue("id"), r.PathValue("cd"))
		respond(w, http.StatusOK, cd, err)
	},
}}
