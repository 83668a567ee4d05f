package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

var hostRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/host/pci", OperationID: "listHostPCI", Tag: "host",
	Summary: "List the host's PCI devices: ids and names, class, IOMMU group and its members, driver, " +
		"whether bound to vfio-pci, and the VM each is passed through to; says whether the IOMMU is on",
	Response: typeOf[api.HostPCI](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		pci, err := s.a.HostPCI()
		respond(w, http.StatusOK, pci, err)
	},
}, {
	Method: http.MethodGet, Path: "/v1/host/usb", OperationID: "listHostUSB", Tag: "host",
	Summary:  "List the USB devices plugged into the host: ids and names, bus and port, serial",
	Response: typeOf[api.HostUSB](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		usb, err := s.a.HostUSB()
		respond(w, http.StatusOK, usb, err)
	},
}}
