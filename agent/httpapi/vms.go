package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var vmRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms", OperationID: "listVMs", Tag: "vms",
	Summary:  "List every VM",
	Response: typeOf[[]api.VM](),
	Status:   []int{http.StatusOK},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.a.List())
	},
}, {
	Method: http.MethodPost, Path: "/v1/vms", OperationID: "createVM", Tag: "vms",
	Summary: "Create a VM, and boot it unless start is false",
	Description: "A create either completes (directory, disk, spec, unit, TAP) or leaves nothing behind. " +
		"A VM with more vCPUs than the host has CPUs, or more memory than VMs may have, is refused with ResourceExhausted, " +
		"as is a start the running VMs leave no memory for. " +
		"With install, the VM boots the OS installer once with an answer medium, and is building until it is done.",
	Request:  typeOf[api.CreateVMInput](),
	Response: typeOf[api.VM](),
	Status:   []int{http.StatusCreated},
	Errors: []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeAlreadyExists, errdefs.CodeFailedPrecondition,
		errdefs.CodeResourceExhausted, errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded},
	handle: (*server).createVM,
}, {
	Method: http.MethodGet, Path: "/v1/vms/{id}", OperationID: "getVM", Tag: "vms",
	Summary: "Get one VM",
	Description: "With a balloon, memory shows the VM's memory and the balloon's target; while it runs also what the guest has now " +
		"and the statistics its balloon driver reports, unless its shim does not answer within 2 s.",
	Response: typeOf[api.VM](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		vm, err := s.a.GetLive(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, vm, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}", OperationID: "deleteVM", Tag: "vms",
	Summary: "Delete a VM that is off; with force, power it off first",
	Params:  []Param{{Name: "force", In: "query", Type: typeOf[bool](), Description: "power the VM off first"}},
	Status:  []int{http.StatusNoContent},
	Errors:  errsWrite,
	handle:  (*server).deleteVM,
}, {
	Method: http.MethodGet, Path: "/v1/vms/{id}/block", OperationID: "getVMBlockDevices", Tag: "vms",
	Summary:  "A running VM's block devices as QEMU has them: disks, and CD-ROMs with their media",
	Response: typeOf[api.BlockDevices](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		b, err := agent.ShimCall(r.Context(), s.a, r.PathValue("id"), shimapi.RouteBlock, shimapi.BlockRequest{})
		respond(w, http.StatusOK, b, err)
	},
}}

func (s *server) createVM(w http.ResponseWriter, r *http.Request) {
	var in api.CreateVMInput
	if err := decodeStrict(r, &in); err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	vm, err := s.a.Create(r.Context(), in)
	respond(w, http.StatusCreated, vm, err)
}

func (s *server) deleteVM(w http.ResponseWriter, r *http.Request) {
	force, err := boolParam(r, "force")
	if err == nil {
		err = s.a.Delete(r.Context(), r.PathValue("id"), force)
	}
	noContent(w, err)
}
