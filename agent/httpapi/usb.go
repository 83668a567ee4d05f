package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

// A VM's host USB devices are /v1/vms/{id}/usb/{dev}, attached and
// detached running (live) or off.
var usbRoutes = []Route{{
	Method: http.MethodPost, Path: "/v1/vms/{id}/usb", OperationID: "attachUSB", Tag: "host",
	Summary: "Pass a host USB device through to a VM, by vendor and product id (optionally with its serial) or by bus-port: " +
		"live on a running VM's USB controller, and kept in the spec for each start",
	Description: "A device that is not plugged in is taken when it is, and again after each unplug. Refused, naming the field " +
		"and changing nothing, when an id is not four hex digits, busPort is malformed, no plugged-in device has the serial, " +
		"or another VM holds the device; a running VM without a USB controller (no display and no USB device at boot) " +
		"gets FailedPrecondition.",
	Request:  typeOf[api.AttachUSBRequest](),
	Response: typeOf[api.Device](),
	Status:   []int{http.StatusCreated},
	Errors:   append([]errdefs.Code{errdefs.CodeAlreadyExists}, errsWrite...),
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var req api.AttachUSBRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		dev, err := s.a.AttachUSB(r.Context(), r.PathValue("id"), req)
		respond(w, http.StatusCreated, dev, err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/usb/{dev}", OperationID: "detachUSB", Tag: "host",
	Summary: "Take a USB device off a VM: unplugged at once while it runs; the host keeps the device",
	Status:  []int{http.StatusNoContent},
	Errors:  errsWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.DetachUSB(r.Context(), r.PathValue("id"), r.PathValue("dev")))
	},
}}
