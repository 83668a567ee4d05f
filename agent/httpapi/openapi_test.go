package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

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

// TestRequiredFollowsTheTags: a field without omitempty is required, unless
// the server has a default for it.
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
	if slices.Contains(required("FirewallRule"), "priority") || !slices.Contains(required("FirewallRule"), "action") {
		t.Errorf("FirewallRule required %v", required("FirewallRule"))
	}
	if !slices.Contains(required("VM"), "status") || slices.Contains(required("VM"), "install") {
		t.Errorf("VM required %v", required("VM"))
	}
}

// TestRawFieldsAreFields: every raw-JSON field the document describes
// exists, so that renaming one cannot silently leave it undescribed.
func TestRawFieldsAreFields(t *testing.T) {
	types := map[string]reflect.Type{"github.com/infinibay/infinivirt/pkg/api.InstallRequest": reflect.TypeFor[api.InstallRequest]()}
	for key := range httpapi.RawFields {
		at := strings.LastIndex(key, ".")
		typ, ok := types[key[:at]]
		if !ok {
			t.Errorf("%s: add its type to this test", key)
			continue
		}
		if _, ok := typ.FieldByName(key[at+1:]); !ok {
			t.Errorf("%s: no such field", key)
		}
	}
}
