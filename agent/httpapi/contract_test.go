package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/agent/internal/wiretest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestPathParametersAreChecked: a VM id that is no UUID, or a department
// id that breaks the rule, is a bad request naming the parameter, on every
// route that takes one, before any handler runs; a well-formed id that
// names nothing is still NotFound.
func TestPathParametersAreChecked(t *testing.T) {
	h := Handler(agent.New(agent.Config{}))
	do := func(method, path string) (int, *errdefs.Error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader("{}")))
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
			t.Fatalf("%s %s: %d %q is not an ErrorBody", method, path, rec.Code, rec.Body)
		}
		return rec.Code, body.Error
	}
	good := map[string]string{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "dept": "sales", "preset": "ssh", "name": "br0",
		"cd": "cd0", "disk": "disk0", "snapshot": "s1", "image": "img"}
	bad := map[string]string{"id": "not-a-uuid", "dept": "Sales!"}
	n := 0
	for _, rt := range Routes() {
		for _, p := range checkedParams(rt.Path) {
			path := rt.Path
			for name, v := range good {
				if name == p.Name {
					v = bad[name]
				}
				path = strings.ReplaceAll(path, "{"+name+"}", v)
			}
			code, e := do(rt.Method, path)
			if code != http.StatusBadRequest || e.Code != errdefs.CodeInvalidArgument || e.Field != p.Name {
				t.Errorf("%s %s: %d %v, want 400 InvalidArgument naming %s", rt.Method, path, code, e, p.Name)
			}
			n++
		}
	}
	if n < 20 {
		t.Fatalf("only %d routes check a path parameter", n)
	}
	for _, path := range []string{"/v1/vms/not-a-uuid", "/v1/vms/0F8FAD5B-D9CB-469F-A165-70867728950E", "/v1/vms/0f8fad5b"} {
		if code, e := do(http.MethodGet, path); code != http.StatusBadRequest || e.Field != "id" {
			t.Errorf("GET %s: %d %v", path, code, e)
		}
	}
	if code, e := do(http.MethodGet, "/v1/vms/0f8fad5b-d9cb-469f-a165-70867728950e"); code != http.StatusNotFound {
		t.Errorf("GET of a VM that does not exist: %d %v", code, e)
	}
}

// TestAnswersMatchTheDocument: every answer body, empty and filled, is what
// the document says: each required field present, no null where the
// document allows none (a list that is nil in Go is an empty array), and
// nothing the document lacks.
func TestAnswersMatchTheDocument(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rt := range Routes() {
		if rt.Response == nil || rt.Path == "/openapi.json" {
			continue
		}
		media := rt.Media
		if media == "" {
			media = "application/json"
		}
		code := fmt.Sprint(rt.Status[0])
		content := doc.Paths[rt.Path][strings.ToLower(rt.Method)]["responses"].(map[string]any)[code].(map[string]any)["content"]
		schema := content.(map[string]any)[media].(map[string]any)["schema"].(map[string]any)
		if media == "text/event-stream" {
			schema = schema["x-event-data"].(map[string]any)
		}
		for _, filled := range []bool{false, true} {
			v := reflect.New(rt.Response).Elem()
			if filled {
				v = wiretest.FilledValue(rt.Response)
			}
			// Streams are encoded as they are; every other answer by writeJSON.
			if media != "text/event-stream" {
				v = emptyArrays(v)
			}
			b, err := json.Marshal(v.Interface())
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for _, problem := range conform(doc.Components.Schemas, schema, got, rt.Response.String()) {
				t.Errorf("%s %s (filled %t): %s", rt.Method, rt.Path, filled, problem)
			}
			n++
		}
	}
	if n < 30 {
		t.Fatalf("checked only %d answers", n)
	}
}

// conform lists how v breaks schema: OpenAPI 3.0 as the generator writes
// it ($ref, allOf, type, properties, required, additionalProperties,
// items, nullable).
func conform(schemas map[string]map[string]any, schema map[string]any, v any, where string) []string {
	if r, ok := schema["$ref"].(string); ok {
		return conform(schemas, schemas[strings.TrimPrefix(r, "#/components/schemas/")], v, where)
	}
	var out []string
	for _, sub := range asList(schema["allOf"]) {
		out = append(out, conform(schemas, sub.(map[string]any), v, where)...)
	}
	if v == nil {
		if schema["nullable"] != true && schema["type"] != nil {
			out = append(out, where+" is null")
		}
		return out
	}
	switch schema["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return append(out, fmt.Sprintf("%s is %T, not an object", where, v))
		}
		for _, r := range asList(schema["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				out = append(out, fmt.Sprintf("%s lacks required %s", where, r))
			}
		}
		props, _ := schema["properties"].(map[string]any)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if p, ok := props[k].(map[string]any); ok {
				out = append(out, conform(schemas, p, obj[k], where+"."+k)...)
			} else if extra, ok := schema["additionalProperties"].(map[string]any); ok {
				out = append(out, conform(schemas, extra, obj[k], where+"["+k+"]")...)
			} else if schema["additionalProperties"] == false {
				out = append(out, fmt.Sprintf("%s has %s, which the document lacks", where, k))
			}
		}
	case "array":
		list, ok := v.([]any)
		if !ok {
			return append(out, fmt.Sprintf("%s is %T, not an array", where, v))
		}
		for i, e := range list {
			out = append(out, conform(schemas, schema["items"].(map[string]any), e, fmt.Sprintf("%s[%d]", where, i))...)
		}
	case "string", "integer", "number", "boolean":
		want := map[string]string{"string": "string", "integer": "float64", "number": "float64", "boolean": "bool"}[schema["type"].(string)]
		if got := fmt.Sprintf("%T", v); got != want {
			out = append(out, fmt.Sprintf("%s is %s, want %s", where, got, schema["type"]))
		}
	}
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestEmptyArraysLeavesItsInputAlone: the agent's own values, which answers
// share, are never changed by the encoding.
func TestEmptyArraysLeavesItsInputAlone(t *testing.T) {
	in := []api.VM{{ID: "a"}}
	out := emptyArrays(reflect.ValueOf(in)).Interface().([]api.VM)
	if in[0].Devices != nil || out[0].Devices == nil || len(out[0].Devices) != 0 {
		t.Fatalf("in %#v, out %#v", in[0].Devices, out[0].Devices)
	}
	var none []api.VM
	if b, _ := json.Marshal(emptyArrays(reflect.ValueOf(none)).Interface()); string(b) != "[]" {
		t.Fatalf("a nil list encodes as %s", b)
	}
}
