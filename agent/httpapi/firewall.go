package httpapi

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

var (
	errsFirewallRead  = []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeInternal}
	errsFirewallWrite = []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeFailedPrecondition,
		errdefs.CodeInternal, errdefs.CodeUnavailable}
)

var firewallRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/firewall", OperationID: "getFirewall", Tag: "firewall",
	Summary:  "The firewall mode and what the kernel offers",
	Response: typeOf[api.FirewallInfo](),
	Status:   []int{http.StatusOK},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, fromFirewallInfo(s.a.Firewall()))
	},
}, {
	Method: http.MethodGet, Path: "/v1/departments", OperationID: "listDepartments", Tag: "firewall",
	Summary:  "List every department's firewall, the default one included",
	Response: typeOf[[]api.Department](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInternal},
	handle: func(s *server, w http.ResponseWriter, _ *http.Request) {
		ds, err := s.a.Departments()
		respond(w, http.StatusOK, mapSlice(ds, fromDepartment), err)
	},
}, {
	Method: http.MethodGet, Path: "/v1/departments/{dept}", OperationID: "getDepartment", Tag: "firewall",
	Summary:  "One department's firewall: policy and rules",
	Response: typeOf[api.Department](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallRead,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		d, err := s.a.Department(r.PathValue("dept"))
		respond(w, http.StatusOK, fromDepartment(d), err)
	},
}, {
	Method: http.MethodPut, Path: "/v1/departments/{dept}", OperationID: "putDepartment", Tag: "firewall",
	Summary: "Create or replace a department's policy and rules, applied to its running VMs in one batch",
	Description: "Input the kernel cannot enforce (REJECT without nft_reject_bridge, connectionState when " +
		"stateless) is refused before anything changes. The id in the body, if any, is the path's.",
	Request:  typeOf[api.Department](),
	Response: typeOf[api.Department](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var d api.Department
		if err := decodeStrict(r, &d); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		d.ID = r.PathValue("dept")
		saved, err := s.a.PutDepartment(r.Context(), toDepartment(d))
		respond(w, http.StatusOK, fromDepartment(saved), err)
	},
}, {
	Method: http.MethodDelete, Path: "/v1/departments/{dept}", OperationID: "deleteDepartment", Tag: "firewall",
	Summary: "Delete a department no VM belongs to",
	Status:  []int{http.StatusNoContent},
	Errors:  errsFirewallWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		noContent(w, s.a.DeleteDepartment(r.Context(), r.PathValue("dept")))
	},
}, {
	Method: http.MethodPut, Path: "/v1/departments/{dept}/presets/{preset}", OperationID: "enableDepartmentPreset", Tag: "firewall",
	Summary:  "Turn a service preset on for a department",
	Response: typeOf[api.Department](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle:   func(s *server, w http.ResponseWriter, r *http.Request) { s.departmentPreset(w, r, true) },
}, {
	Method: http.MethodDelete, Path: "/v1/departments/{dept}/presets/{preset}", OperationID: "disableDepartmentPreset", Tag: "firewall",
	Summary:  "Turn a service preset off for a department",
	Response: typeOf[api.Department](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle:   func(s *server, w http.ResponseWriter, r *http.Request) { s.departmentPreset(w, r, false) },
}, {
	Method: http.MethodGet, Path: "/v1/vms/{id}/firewall", OperationID: "getVMFirewall", Tag: "firewall",
	Summary:  "A VM's firewall: department, rules of its own, known addresses",
	Response: typeOf[api.VMFirewall](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallRead,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		st, err := s.a.VMFirewall(r.PathValue("id"))
		respond(w, http.StatusOK, fromVMFirewall(st), err)
	},
}, {
	Method: http.MethodPut, Path: "/v1/vms/{id}/firewall", OperationID: "putVMFirewall", Tag: "firewall",
	Summary:  "Replace a VM's department, rules and known addresses; applied at once if it runs",
	Request:  typeOf[api.VMFirewall](),
	Response: typeOf[api.VMFirewall](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		var st api.VMFirewall
		if err := decodeStrict(r, &st); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		if st.Department == "" {
			st.Department = api.DefaultDepartment
		}
		saved, err := s.a.PutVMFirewall(r.Context(), r.PathValue("id"), toVMFirewall(st))
		respond(w, http.StatusOK, fromVMFirewall(saved), err)
	},
}, {
	Method: http.MethodPut, Path: "/v1/vms/{id}/firewall/presets/{preset}", OperationID: "enableVMPreset", Tag: "firewall",
	Summary:  "Turn a service preset on for one VM",
	Response: typeOf[api.VMFirewall](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle:   func(s *server, w http.ResponseWriter, r *http.Request) { s.vmPreset(w, r, true) },
}, {
	Method: http.MethodDelete, Path: "/v1/vms/{id}/firewall/presets/{preset}", OperationID: "disableVMPreset", Tag: "firewall",
	Summary:  "Turn a service preset off for one VM",
	Response: typeOf[api.VMFirewall](),
	Status:   []int{http.StatusOK},
	Errors:   errsFirewallWrite,
	handle:   func(s *server, w http.ResponseWriter, r *http.Request) { s.vmPreset(w, r, false) },
}, {
	Method: http.MethodGet, Path: "/v1/vms/{id}/firewall/effective", OperationID: "getEffectiveFirewall", Tag: "firewall",
	Summary:  "The rules a VM's traffic meets, in evaluation order, and what the kernel holds",
	Response: typeOf[api.EffectiveFirewall](),
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeNotFound, errdefs.CodeInternal, errdefs.CodeDeadlineExceeded},
	handle: func(s *server, w http.ResponseWriter, r *http.Request) {
		eff, err := s.a.EffectiveFirewall(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, fromEffective(eff), err)
	},
}}

func (s *server) departmentPreset(w http.ResponseWriter, r *http.Request, on bool) {
	d, err := s.a.SetDepartmentPreset(r.Context(), r.PathValue("dept"), firewall.Preset(r.PathValue("preset")), on)
	respond(w, http.StatusOK, fromDepartment(d), err)
}

func (s *server) vmPreset(w http.ResponseWriter, r *http.Request, on bool) {
	st, err := s.a.SetVMPreset(r.Context(), r.PathValue("id"), firewall.Preset(r.PathValue("preset")), on)
	respond(w, http.StatusOK, fromVMFirewall(st), err)
}
