package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/agent/httpapi"
	"github.com/infinibay/infinivirt/agent/httpapi/internal/openapigen"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestDocumentIsGenerated fails when openapi.json is stale: regenerate it
// with go generate ./agent/httpapi.
func TestDocumentIsGenerated(t *testing.T) {
	fresh, err := openapigen.Generate(httpapi.Routes(), "../..")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, httpapi.OpenAPIDocument()) {
		t.Fatal("openapi.json is stale: run go generate ./agent/httpapi and commit the result")
	}
}

type document struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string   `json:"operationId"`
		Tags        []string `json:"tags"`
		Parameters  []struct {
			Name   string         `json:"name"`
			Schema map[string]any `json:"schema"`
		} `json:"parameters"`
		RequestBody *struct {
			Content map[string]struct {
				Schema map[string]any `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
		Responses map[string]map[string]any `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas   map[string]map[string]any `json:"schemas"`
		Responses map[string]any            `json:"responses"`
	} `json:"components"`
}

func load(t *testing.T) document {
	var doc document
	dec := json.NewDecoder(bytes.NewReader(httpapi.OpenAPIDocument()))
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	return doc
}

// TestEveryOperationIsTyped: each operation has an operationId and a tag,
// a typed body when it takes one, its success answers, and its declared
// error classes answered with the ErrorBody.
func TestEveryOperationIsTyped(t *testing.T) {
	doc := load(t)
	for _, rt := range httpapi.Routes() {
		name := rt.Method + " " + rt.Path
		op, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s is not documented", name)
			continue
		}
		if op.OperationID != rt.OperationID || !slices.Equal(op.Tags, []string{rt.Tag}) {
			t.Errorf("%s: operationId %q tags %v", name, op.OperationID, op.Tags)
		}
		if (rt.Request != nil) != (op.RequestBody != nil) {
			t.Errorf("%s: request body documented %t, declared %t", name, op.RequestBody != nil, rt.Request != nil)
		}
		if op.RequestBody != nil && op.RequestBody.Content["application/json"].Schema["$ref"] == nil {
			t.Errorf("%s: the request body is not a named schema", name)
		}
		for _, s := range rt.Status {
			if _, ok := op.Responses[fmt.Sprint(s)]; !ok {
				t.Errorf("%s: no %d answer", name, s)
			}
		}
		for _, c := range rt.Errors {
			r, ok := op.Responses[fmt.Sprint(c.HTTPStatus())]
			if !ok {
				t.Errorf("%s: no %d answer for %s", name, c.HTTPStatus(), c)
				continue
			}
			refName := strings.TrimPrefix(fmt.Sprint(r["$ref"]), "#/components/responses/")
			if !strings.Contains(refName, string(c)) || doc.Components.Responses[refName] == nil {
				t.Errorf("%s: the %d answer %v does not carry %s", name, c.HTTPStatus(), r, c)
			}
		}
	}
}

// TestEnumsComeFromTheConstants: the document's enums are the Go values.
func TestEnumsComeFromTheConstants(t *testing.T) {
	doc := load(t)
	enum := func(name string) []string {
		var out []string
		for _, v := range doc.Components.Schemas[name]["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	strs := func(v any) []string {
		var out []string
		rv := reflect.ValueOf(v)
		for i := range rv.Len() {
			out = append(out, rv.Index(i).String())
		}
		return out
	}
	for name, want := range map[string][]string{
		"Code":           strs(errdefs.Codes),
		"PowerOp":        strs(api.PowerOps),
		"FirewallPreset": strs(api.FirewallPresets),
	} {
		if got := enum(name); !slices.Equal(got, want) {
			t.Errorf("%s enum %v, want %v", name, got, want)
		}
	}
	for name, some := range map[string][]string{
		"Status":         {string(api.StatusRunning), string(api.StatusPoweringOffUpdate)},
		"Reason":         {string(api.ReasonBooted), string(api.ReasonInstallResetLoop)},
		"EventType":      {string(api.EventStatus), string(api.EventGuest)},
		"FirewallAction": {string(api.FirewallAccept), string(api.FirewallReject)},
		"FirewallMode":   {string(api.FirewallStateless)},
		"DatabaseState":  {string(api.DatabaseUnavailable)},
	} {
		for _, v := range some {
			if !slices.Contains(enum(name), v) {
				t.Errorf("%s enum %v lacks %s", name, enum(name), v)
			}
		}
	}
}

// TestRequiredFollowsTheTags: a field without omitempty is required, in a
// request unless the server has a default for it.
func TestRequiredFollowsTheTags(t *testing.T) {
	doc := load(t)
	required := func(schema string) []string {
		var out []string
		for _, v := range doc.Components.Schemas[schema]["required"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	create := required("CreateVMInput")
	for _, f := range []string{"name", "internalName", "cpuCores", "ramGB"} {
		if !slices.Contains(create, f) {
			t.Errorf("CreateVMInput: %s is not required", f)
		}
	}
	for _, f := range []string{"start", "graphicPort", "install", "departmentId"} {
		if slices.Contains(create, f) {
			t.Errorf("CreateVMInput: %s is required", f)
		}
	}
	start := doc.Components.Schemas["CreateVMInput"]["properties"].(map[string]any)["start"].(map[string]any)
	if start["default"] != true {
		t.Errorf("start: default %v, want true", start["default"])
	}
	if !slices.Contains(required("VM"), "status") || slices.Contains(required("VM"), "install") {
		t.Errorf("VM required %v", required("VM"))
	}
	// A field with a default is always in answers: a type that has one, and
	// that answers carry, gets a schema of its own for requests, named
	// with Input, where the field is optional.
	for _, c := range []struct{ schema, field string }{{"FirewallRule", "priority"}, {"VMFirewall", "department"}} {
		if !slices.Contains(required(c.schema), c.field) {
			t.Errorf("%s: %s is not required in answers", c.schema, c.field)
		}
		if in := required(c.schema + "Input"); slices.Contains(in, c.field) || len(in) == 0 {
			t.Errorf("%sInput required %v; want %s optional", c.schema, in, c.field)
		}
	}
	body := func(method, path string) any {
		return doc.Paths[path][method].RequestBody.Content["application/json"].Schema["$ref"]
	}
	for _, c := range []struct{ method, path, schema string }{
		{"post", "/v1/vms", "CreateVMInput"},
		{"put", "/v1/departments/{dept}", "DepartmentInput"},
		{"put", "/v1/vms/{id}/firewall", "VMFirewallInput"},
	} {
		if got := body(c.method, c.path); got != "#/components/schemas/"+c.schema {
			t.Errorf("%s %s takes %v, want %s", c.method, c.path, got, c.schema)
		}
	}
	// A VM id is a UUID, so the document says so.
	if p := doc.Paths["/v1/vms/{id}"]["get"].Parameters; len(p) != 1 || p[0].Schema["format"] != "uuid" {
		t.Errorf("GET /v1/vms/{id} parameters %+v", p)
	}
}

// TestWireTypesAreAPITypes: every body the API sends or receives is made of
// pkg/api types, with no raw JSON or untyped value the document could not
// describe (the document itself aside).
func TestWireTypesAreAPITypes(t *testing.T) {
	apiPkg := reflect.TypeFor[api.VM]().PkgPath()
	seen := map[reflect.Type]bool{}
	var walk func(where string, typ reflect.Type)
	walk = func(where string, typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		switch {
		case typ == reflect.TypeFor[json.RawMessage]() || typ.Kind() == reflect.Interface:
			t.Errorf("%s is %s: give it a pkg/api type", where, typ)
			return
		case typ == reflect.TypeFor[time.Time]() || typ == reflect.TypeFor[netip.Addr]() || typ == reflect.TypeFor[netip.Prefix]():
			return // the document knows their text forms
		}
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			walk(where, typ.Elem())
		case reflect.Struct:
			if typ.PkgPath() != apiPkg {
				t.Errorf("%s is %s, not a pkg/api type", where, typ)
			}
			for i := range typ.NumField() {
				if f := typ.Field(i); f.IsExported() {
					walk(typ.Name()+"."+f.Name, f.Type)
				}
			}
		}
	}
	n := 0
	for _, rt := range httpapi.Routes() {
		if rt.Path == "/openapi.json" {
			continue
		}
		for _, typ := range []reflect.Type{rt.Request, rt.Response} {
			if typ != nil {
				walk(rt.Method+" "+rt.Path, typ)
				n++
			}
		}
	}
	if !seen[reflect.TypeFor[api.InstallConfig]()] || n < 10 {
		t.Fatalf("walked %d bodies and missed the install config: the check would prove nothing", n)
	}
}
