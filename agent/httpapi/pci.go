package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// A VM's host PCI devices are /v1/vms/{id}/pci/{dev}, attached and
// detached while the VM is off.
var pciRoutes = []Route{{
	Method: http.MethodPost, Path: "/v1/vms/{id}/pci", OperationID: "attachPCI", Tag: "host",
	Summary: "Pass a host PCI device through to a VM that is off, with the other functions of its slot in its IOMMU group " +
		"(a GPU's audio); optionally managed (bound to vfio-pci at each start) and with an option ROM from the ROM directory",
	Description: "Refused, naming the field and changing nothing, when the IOMMU is off, the address is no device of the host, " +
		"the device is not on vfio-pci (unless managed), a member of its IOMMU group is neither passed through nor on vfio-pci " +
		"nor a bridge, another VM holds the group, or the ROM file lies outside the ROM directory.",
	Request:  typeOf[api.AttachPCIRequest](),
	Response: typeOf[api.Device](),
	Status:   []int{http.StatusCreated},
	Errors:   append([]errdefs.Code{errdefs.CodeAlreadyExists}, errsWrite...),
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.AttachPCIRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		dev, err := s.a.AttachPCI(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusCreated, dev, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/pci/{dev}", OperationID: "detachPCI", Tag: "host",
	Summary: "Take a PCI device, with its companion functions, off a VM that is off",
	Status:  []int{http.StatusNoContent},
	Errors:  errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.DetachPCI(r.Context(), r.PathValue("id"), r.PathValue("dev")))
	},
}}
