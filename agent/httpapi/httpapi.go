// Package httpapi is the agent's REST API: the route table, one file per
// resource, and the handlers, which call only exported methods of
// *agent.Agent. GET /openapi.json serves the committed OpenAPI document,
// generated from the table and the pkg/api types by go generate
// (internal/openapigen); a test fails when it is stale.
package httpapi

//go:generate go run gen_openapi.go

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Route is one operation of the API. The table (Routes) is both what the
// server mounts and what the OpenAPI document describes.
type Route struct {
	Method string
	// Path is a net/http pattern path: {name} segments are path parameters.
	Path        string
	OperationID string
	Tag         string
	Summary     string
	Description string
	// Params are the operation's query and header parameters; path
	// parameters are described by PathParams.
	Params []Param
	// Request is the JSON body's type; nil when the request has none.
	Request reflect.Type
	// Response is the answer's type: a JSON body, or a string for Media
	// other than JSON; nil when the answer has no body.
	Response reflect.Type
	// Media is the answer's media type when it is not application/json.
	Media string
	// Status are the success statuses; the first is the usual one.
	Status []int
	// Errors are the classes of error the operation answers with.
	Errors []errdefs.Code

	handle func(s *server, w http.ResponseWriter, r *http.Request)
}

// Param is a path, query or header parameter.
type Param struct {
	Name        string
	In          string // "path", "query" or "header"
	Type        reflect.Type
	Description string
	// Format is the value's OpenAPI format, such as uuid; empty for none.
	Format string
	// Check, for a path parameter, refuses a malformed value before the
	// handler runs: a VM id that is no UUID names no VM, and saying
	// InvalidArgument tells the caller its request, not the VM, is wrong.
	Check func(value string) error
}

// PathParams describes every path parameter the table uses.
var PathParams = map[string]Param{
	"id": {Name: "id", In: "path", Type: typeOf[string](), Description: "the VM's UUID, in lower case", Format: "uuid",
		Check: checkVMID},
	"dept": {Name: "dept", In: "path", Type: typeOf[string](), Description: "a department id: 1 to 63 lower-case letters, digits or '-'",
		Check: func(v string) error { return vmspec.CheckDepartmentID("dept", v) }},
	"preset":   {Name: "preset", In: "path", Type: typeOf[api.FirewallPreset](), Description: "a service preset"},
	"name":     {Name: "name", In: "path", Type: typeOf[string](), Description: "a bridge name"},
	"cd":       {Name: "cd", In: "path", Type: typeOf[string](), Description: "a CD-ROM drive's name (cd0)"},
	"disk":     {Name: "disk", In: "path", Type: typeOf[string](), Description: "a disk's device name (disk0)"},
	"snapshot": {Name: "snapshot", In: "path", Type: typeOf[string](), Description: "a snapshot's name"},
	"image":    {Name: "image", In: "path", Type: typeOf[string](), Description: "an image's name in the store"},
	"dev":      {Name: "dev", In: "path", Type: typeOf[string](), Description: "a PCI or USB device's name (pci0, usb0)"},
}

// Tags groups the operations; every route's Tag is one of them.
var Tags = []struct{ Name, Description string }{
	{"vms", "Create, list, get and delete VMs"},
	{"power", "The seven power verbs"},
	{"console", "The guest's serial console"},
	{"events", "Server-sent streams of VM events"},
	{"firewall", "Department and VM firewalls, presets, effective rules"},
	{"network", "Bridges, and moving a VM between them"},
	{"storage", "A VM's disks and CD-ROM drives, and their media"},
	{"memory", "A VM's memory balloon: its target, and the guest's memory as it reports it"},
	{"images", "Golden images in the store, that disks are cloned from"},
	{"host", "The host's PCI and USB devices, and passing them through to VMs"},
	{"health", "The agent's own state"},
	{"meta", "The API's description"},
}

// Routes is the route table, in the order the document lists it. A route
// with a checked path parameter answers InvalidArgument too.
func Routes() []Route {
	routes := slices.Concat(metaRoutes, healthRoutes, metricsRoutes, vmRoutes, powerRoutes(), consoleRoutes, eventRoutes,
		firewallRoutes, bridgeRoutes, cdromRoutes, diskRoutes, snapshotRoutes, balloonRoutes, imageRoutes, hostRoutes, pciRoutes, usbRoutes)
	for i, rt := range routes {
		if len(checkedParams(rt.Path)) > 0 && !slices.Contains(rt.Errors, errdefs.CodeInvalidArgument) {
			routes[i].Errors = slices.Concat([]errdefs.Code{errdefs.CodeInvalidArgument}, rt.Errors)
		}
	}
	return routes
}

// checkedParams are the path parameters of path that have a Check.
func checkedParams(path string) []Param {
	var out []Param
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			if p := PathParams[strings.TrimSuffix(name, "}")]; p.Check != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

func checkVMID(id string) error {
	if !vmspec.ValidID(id) {
		return errdefs.Invalid("id", "path parameter id must be a VM's UUID in lower case, got %q", id)
	}
	return nil
}

// errsWrite are the error classes most operations that change a VM share.
var errsWrite = []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeFailedPrecondition,
	errdefs.CodeInternal, errdefs.CodeUnavailable, errdefs.CodeDeadlineExceeded}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// server holds what the handlers share.
type server struct{ a *agent.Agent }

// Handler serves the API of a. Peer credentials are checked by the listener
// before any of it runs (see agent.Listen). Unrouted paths and wrong methods
// answer in the typed error shape, as every other refusal does.
func Handler(a *agent.Agent) http.Handler {
	s := &server{a: a}
	mux := http.NewServeMux()
	methods := map[string]bool{}
	for _, rt := range Routes() {
		checks := checkedParams(rt.Path)
		mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			for _, p := range checks {
				if err := p.Check(r.PathValue(p.Name)); err != nil {
					unixhttp.WriteError(w, err)
					return
				}
			}
			rt.handle(s, w, r)
		})
		methods[rt.Method] = true
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for m := range methods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) == 0 {
			unixhttp.WriteError(w, errdefs.NotFound("no route for %s %s; GET /openapi.json lists the API", r.Method, r.URL.Path))
			return
		}
		slices.Sort(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		unixhttp.WriteError(w, errdefs.MethodNotAllowed("%s %s: allowed methods are %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
	})
	// net/http's mux would redirect a path with "//" or ".." in it, with an
	// HTML body; an API names each resource one way only.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clean := cleanPath(r.URL.Path); clean != r.URL.Path {
			unixhttp.WriteError(w, errdefs.NotFound("no route for %s %s; the path is spelled %s", r.Method, r.URL.Path, clean))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath is p without empty, "." or ".." segments, its trailing slash kept.
func cleanPath(p string) string {
	clean := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// maxBody bounds request bodies: a create request is well under a KiB.
const maxBody = 1 << 20

// decodeStrict reads the request body, one JSON object of at most maxBody
// bytes, and refuses unknown fields, naming them.
func decodeStrict(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errdefs.Invalid("body", "unreadable: %v", err)
	}
	if len(b) > maxBody {
		return errdefs.Invalid("body", "is larger than %d bytes", maxBody)
	}
	return api.Decode(bytes.NewReader(b), v, "")
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errdefs.Invalid(name, "must be true or false, got %q", v)
	}
	return b, nil
}

func respond(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	writeJSON(w, code, v)
}

// writeJSON answers code with v, indented, with no null for a list. v is
// encoded before anything is sent, so that a value that cannot be encoded
// still gets a typed error.
func writeJSON(w http.ResponseWriter, code int, v any) {
	if v != nil {
		v = emptyArrays(reflect.ValueOf(v)).Interface()
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		unixhttp.WriteError(w, errdefs.Internal("encode the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // fails only when the client has gone
}

func noContent(w http.ResponseWriter, err error) {
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
