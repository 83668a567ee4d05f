package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// waitParam answers an image import once it ended rather than once it began.
var waitParam = Param{Name: "wait", In: "query", Type: typeOf[bool](), Description: "answer once the import ended (200), not once it began (202)"}

// The image store: /v1/images/{image}. Imports (and a disk's capture)
// answer 202 with the image importing and its progress, which GET
// /v1/images/{image} follows; with wait=true, 200 once they ended.
var imageRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/images", OperationID: "listImages", Tag: "images",
	Summary:  "List the store's images, with the disks backed by each, and the imports under way or failed",
	Response: typeOf[api.Images](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		imgs, err := s.a.Images(r.Context())
		respond(w, http.StatusOK, imgs, err)
	},
}, {
	Method: http.MethodPost, Path: "/v1/images", OperationID: "importImage", Tag: "images",
	Summary:     "Import an image file (raw, qcow2, vmdk or vhdx) into the store as qcow2",
	Description: "The file must be self-contained (no backing file, data file or other extent). Answers 202 once the import began; GET /v1/images/{image} shows its progress. With wait=true, 200 once it ended; a failed import leaves nothing in the store.",
	Params:      []Param{waitParam},
	Request:     typeOf[api.ImportImageRequest](),
	Response:    typeOf[api.Image](),
	Status:      []int{http.StatusAccepted, http.StatusOK},
	Errors:      []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeAlreadyExists, errdefs.CodeInternal, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		answerImageJob(w, r, func(req api.ImportImageRequest, wait bool) (api.Image, error) {
			return s.a.ImportImage(r.Context(), req, wait)
		})
	},
}, {
	Method: http.MethodGet, Path: "/v1/images/{image}", OperationID: "getImage", Tag: "images",
	Summary:  "Get one image of the store, or the state and progress of its import",
	Response: typeOf[api.Image](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		img, err := s.a.Image(r.Context(), r.PathValue("image"))
		respond(w, http.StatusOK, img, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/images/{image}", OperationID: "deleteImage", Tag: "images",
	Summary: "Delete an image, refused while any disk is backed by it (the error names the VMs); a failed import's record goes too",
	Status:  []int{http.StatusNoContent},
	Errors:  []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeFailedPrecondition, errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.DeleteImage(r.Context(), r.PathValue("image")))
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms/{id}/disks/{disk}/image", OperationID: "captureDiskImage", Tag: "images",
	Summary:     "Turn a disk of a VM that is off into a new store image, flattened",
	Description: "Answers as importImage does; the VM cannot boot until the copy ended.",
	Params:      []Param{waitParam},
	Request:     typeOf[api.CaptureImageRequest](),
	Response:    typeOf[api.Image](),
	Status:      []int{http.StatusAccepted, http.StatusOK},
	Errors:      append([]errdefs.Code{errdefs.CodeAlreadyExists}, errsWrite...),
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		answerImageJob(w, r, func(req api.CaptureImageRequest, wait bool) (api.Image, error) {
			return s.a.CaptureDiskImage(r.Context(), r.PathValue("id"), r.PathValue("disk"), req.Name, wait)
		})
	},
}}

func imageJobStatus(wait bool) int {
	if wait {
		return http.StatusOK
	}
	return http.StatusAccepted
}

// answerImageJob decodes a request that starts an image copy and its wait
// flag, runs it, and answers as an import does: 202 while it runs, 200 once
// it ended.
func answerImageJob[Req any](w http.ResponseWriter, r *http.Request, run func(req Req, wait bool) (api.Image, error)) {
	var req Req
	if err := decodeStrict(r, &req); err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	wait, err := boolParam(r, "wait")
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	img, err := run(req, wait)
	respond(w, imageJobStatus(wait), img, err)
}
