package agent

import (
	"net/http"

	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// networkRoutes adds the firewall and bridge endpoints.
func (a *Agent) networkRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/firewall", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Firewall())
	})
	mux.HandleFunc("GET /v1/departments", func(w http.ResponseWriter, r *http.Request) {
		ds, err := a.Departments()
		respond(w, http.StatusOK, ds, err)
	})
	mux.HandleFunc("GET /v1/departments/{dept}", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.Department(r.PathValue("dept"))
		respond(w, http.StatusOK, d, err)
	})
	mux.HandleFunc("PUT /v1/departments/{dept}", func(w http.ResponseWriter, r *http.Request) {
		var d firewall.Department
		if err := decodeStrict(r, &d); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		d.ID = r.PathValue("dept")
		d, err := a.PutDepartment(r.Context(), d)
		respond(w, http.StatusOK, d, err)
	})
	mux.HandleFunc("DELETE /v1/departments/{dept}", func(w http.ResponseWriter, r *http.Request) {
		noContent(w, a.DeleteDepartment(r.Context(), r.PathValue("dept")))
	})
	mux.HandleFunc("PUT /v1/departments/{dept}/presets/{preset}", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.SetDepartmentPreset(r.Context(), r.PathValue("dept"), firewall.Preset(r.PathValue("preset")), true)
		respond(w, http.StatusOK, d, err)
	})
	mux.HandleFunc("DELETE /v1/departments/{dept}/presets/{preset}", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.SetDepartmentPreset(r.Context(), r.PathValue("dept"), firewall.Preset(r.PathValue("preset")), false)
		respond(w, http.StatusOK, d, err)
	})
	mux.HandleFunc("GET /v1/vms/{id}/firewall", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.VMFirewall(r.PathValue("id"))
		respond(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("PUT /v1/vms/{id}/firewall", func(w http.ResponseWriter, r *http.Request) {
		var st vmspec.VMFirewall
		if err := decodeStrict(r, &st); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		if st.Department == "" {
			st.Department = vmspec.DefaultDepartment
		}
		st, err := a.PutVMFirewall(r.Context(), r.PathValue("id"), st)
		respond(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("PUT /v1/vms/{id}/firewall/presets/{preset}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.SetVMPreset(r.Context(), r.PathValue("id"), firewall.Preset(r.PathValue("preset")), true)
		respond(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("DELETE /v1/vms/{id}/firewall/presets/{preset}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.SetVMPreset(r.Context(), r.PathValue("id"), firewall.Preset(r.PathValue("preset")), false)
		respond(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("GET /v1/vms/{id}/firewall/effective", func(w http.ResponseWriter, r *http.Request) {
		eff, err := a.EffectiveFirewall(r.Context(), r.PathValue("id"))
		respond(w, http.StatusOK, eff, err)
	})
	mux.HandleFunc("PUT /v1/vms/{id}/bridge", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Bridge string `json:"bridge"`
		}
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		vm, err := a.MoveVM(r.Context(), r.PathValue("id"), req.Bridge)
		respond(w, http.StatusOK, vm, err)
	})
	mux.HandleFunc("GET /v1/bridges", func(w http.ResponseWriter, r *http.Request) {
		bs, err := a.Bridges(r.Context())
		respond(w, http.StatusOK, bs, err)
	})
	mux.HandleFunc("PUT /v1/bridges/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req BridgeRequest
		if err := decodeStrict(r, &req); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		b, err := a.PutBridge(r.Context(), r.PathValue("name"), req)
		respond(w, http.StatusOK, b, err)
	})
	mux.HandleFunc("DELETE /v1/bridges/{name}", func(w http.ResponseWriter, r *http.Request) {
		force, err := boolParam(r, "force")
		if err == nil {
			err = a.DeleteBridge(r.Context(), r.PathValue("name"), force)
		}
		noContent(w, err)
	})
}

func noContent(w http.ResponseWriter, err error) {
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
