package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestDocumentMatchesTheTable: every route the table mounts is in the
// committed document, and the document has nothing the table lacks.
func TestDocumentMatchesTheTable(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, rt := range Routes() {
		key := strings.ToLower(rt.Method) + " " + rt.Path
		if inTable[key] {
			t.Errorf("the table has %s twice", key)
		}
		inTable[key] = true
		if _, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]; !ok {
			t.Errorf("openapi.json lacks %s %s", rt.Method, rt.Path)
		}
	}
	if len(inTable) < 20 {
		t.Fatalf("the table has only %d routes", len(inTable))
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if !inTable[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which no route serves", strings.ToUpper(method), path)
			}
		}
	}
}

func TestEveryRouteIsDeclaredFully(t *testing.T) {
	ids := map[string]bool{}
	for _, rt := range Routes() {
		name := rt.Method + " " + rt.Path
		if rt.OperationID == "" || rt.Tag == "" || rt.Summary == "" || len(rt.Status) == 0 || rt.handle == nil {
			t.Errorf("%s: operationId, tag, summary, status and handler are required", name)
		}
		if ids[rt.OperationID] {
			t.Errorf("%s: operationId %s is taken", name, rt.OperationID)
		}
		ids[rt.OperationID] = true
		for _, seg := range strings.Split(rt.Path, "/") {
			if p, ok := strings.CutPrefix(seg, "{"); ok && PathParams[strings.TrimSuffix(p, "}")].Type == nil {
				t.Errorf("%s: path parameter %s is not in PathParams", name, seg)
			}
		}
		if (rt.Request != nil || len(rt.Params) > 0) && !slices.Contains(rt.Errors, errdefs.CodeInvalidArgument) {
			t.Errorf("%s takes input but does not declare InvalidArgument", name)
		}
	}
}

// TestUnroutedAnswersAreTyped: a path nobody serves and a method a path
// does not take both answer with an ErrorBody, as every refusal does.
func TestUnroutedAnswersAreTyped(t *testing.T) {
	h := Handler(agent.New(agent.Config{}))
	for _, c := range []struct {
		method, path string
		status       int
		code         errdefs.Code
		allow        string
	}{
		{http.MethodGet, "/nowhere", http.StatusNotFound, errdefs.CodeNotFound, ""},
		{http.MethodGet, "/v1/vms/x/nothing/here", http.StatusNotFound, errdefs.CodeNotFound, ""},
		{http.MethodPost, "/v1/vms/x/bogus", http.StatusNotFound, errdefs.CodeNotFound, ""},
		{http.MethodPatch, "/v1/vms", http.StatusMethodNotAllowed, errdefs.CodeMethodNotAllowed, "GET, POST"},
		{http.MethodGet, "/v1/vms/x/powerOn", http.StatusMethodNotAllowed, errdefs.CodeMethodNotAllowed, "POST"},
		{http.MethodPost, "/v1/health", http.StatusMethodNotAllowed, errdefs.CodeMethodNotAllowed, "GET"},
		{http.MethodGet, "/v1//vms", http.StatusNotFound, errdefs.CodeNotFound, ""},
		{http.MethodPost, "/v1/vms/../health", http.StatusNotFound, errdefs.CodeNotFound, ""},
		{http.MethodGet, "/v1/vms/", http.StatusNotFound, errdefs.CodeNotFound, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
			t.Errorf("%s %s: %d %q is not an ErrorBody", c.method, c.path, rec.Code, rec.Body)
			continue
		}
		if rec.Code != c.status || body.Error.Code != c.code || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: got %d %s Allow %q, want %d %s Allow %q", c.method, c.path,
				rec.Code, body.Error.Code, rec.Header().Get("Allow"), c.status, c.code, c.allow)
		}
	}
}

func TestServesTheDocumentAndHealth(t *testing.T) {
	h := Handler(agent.New(agent.Config{Accel: "tcg"}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != string(OpenAPIDocument()) {
		t.Fatalf("GET /openapi.json: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/health", nil))
	var health api.Health
	if err := json.Unmarshal(rec.Body.Bytes(), &health); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/health: %d %s", rec.Code, rec.Body)
	}
	if health != (api.Health{Database: api.DatabaseNone, Accel: "tcg"}) {
		t.Fatalf("health %+v", health)
	}
}

func TestDecodeStrictNamesTheField(t *testing.T) {
	cases := map[string]string{
		`{"cpuCores": "two"}`:   "cpuCores",
		`{"cpuCount": 2}`:       "cpuCount",
		`{"name": "x",`:         "body",
		`{"name": "x"} {"a":1}`: "body",
		`{"name": "x"} ]`:       "body",
		`[1, 2]`:                "body",
		`{"name": "` + strings.Repeat("x", maxBody) + `"}`: "body",
		// The install config is decoded with the body, as strictly, and
		// its errors name the field by its whole path.
		`{"install": {"config": {"username": "bob", "passwd": "abc"}}}`:                "install.config.passwd",
		`{"install": {"config": {"username": "bob", "hostname": 7}}}`:                  "install.config.hostname",
		`{"install": {"config": {"username": "bob"} {"x": 1}}}`:                        "body",
		`{"install": {"config": {"username": "bob"}}} {"x": 1}`:                        "body",
		`{"install": {"config": "alice:abc"}}`:                                         "install.config",
		`{"install": {"config": {"applications": [{"name": "vim", "cmd": "x"}]}}}`:     "install.config.applications.cmd",
		`{"install": {"config": {"firstBootScripts": [{"name": "a", "content": 7}]}}}`: "install.config.firstBootScripts.content",
		`{"install": {"os": "fedora", "cofnig": {}}}`:                                  "install.cofnig",
		`{"devices": [{"type": "nic", "nic": {"bridge": "br1", "mtu": 9000}}]}`:        "devices.nic.mtu",
	}
	for body, field := range cases {
		var in api.CreateVMInput
		err := decodeStrict(httptest.NewRequest(http.MethodPost, "/v1/vms", strings.NewReader(body)), &in)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || (field != "" && e.Field != field) {
			t.Errorf("%.40s: got %v, want InvalidArgument naming %q", body, err, field)
		}
		if e != nil && strings.Contains(e.Message, "abc") {
			t.Errorf("%.40s: the error repeats the password: %s", body, e.Message)
		}
	}
}

// TestDecodeStrictTakesTheInstallConfig: a config decodes into its typed
// fields, and an absent or null one stays nil for the agent to refuse.
func TestDecodeStrictTakesTheInstallConfig(t *testing.T) {
	decode := func(body string) api.CreateVMInput {
		t.Helper()
		var in api.CreateVMInput
		if err := decodeStrict(httptest.NewRequest(http.MethodPost, "/v1/vms", strings.NewReader(body)), &in); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return in
	}
	in := decode(`{"install": {"config": {"username": "bob", "password": "Secr3t-pass", "productKey": "K",
		"applications": [{"name": "vim"}], "firstBootScripts": [{"name": "a", "language": "shell", "content": "echo"}]}}}`)
	want := api.InstallConfig{Username: "bob", Password: "Secr3t-pass", ProductKey: "K", Applications: []api.Application{{Name: "vim"}},
		FirstBootScripts: []api.Script{{Name: "a", Language: api.ScriptShell, Content: "echo"}}}
	if in.Install == nil || in.Install.Config == nil || !reflect.DeepEqual(*in.Install.Config, want) {
		t.Errorf("decoded %+v", in.Install)
	}
	for _, body := range []string{`{"install": {}}`, `{"install": {"config": null}}`} {
		if in := decode(body); in.Install == nil || in.Install.Config != nil {
			t.Errorf("%s: decoded %+v", body, in.Install)
		}
	}
}

// FuzzCreateRequest: no request body makes the API panic, and every refusal
// is a typed InvalidArgument.
func FuzzCreateRequest(f *testing.F) {
	f.Add(`{"name":"a","internalName":"0f8fad5b-d9cb-469f-a165-70867728950e","os":"linux","cpuCores":1,"ramGB":1,"diskSizeGB":1,"networkBridge":"br0","graphicProtocol":"vnc","graphicPassword":"x"}`)
	f.Add(`{"boot":{"kernel":"/k","initrd":"/i","cmdline":"x"},"start":false}`)
	f.Add(`{"ramGB":1e400}`)
	f.Fuzz(func(t *testing.T, body string) {
		var in api.CreateVMInput
		err := decodeStrict(httptest.NewRequest(http.MethodPost, "/v1/vms", strings.NewReader(body)), &in)
		if err != nil {
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument {
				t.Fatalf("untyped refusal: %v", err)
			}
		}
	})
}

// The stream of every VM refuses a cursor it cannot honour, naming after,
// and prefers Last-Event-ID, which a reconnecting event source sends.
func TestAllEventsCursorRefusals(t *testing.T) {
	a := agent.New(agent.Config{})
	h := Handler(a)
	current := agent.Cursor{Epoch: a.StreamEpoch(), N: 0}.String()
	for _, tc := range []struct {
		after, lastEventID string
		code               errdefs.Code
	}{
		{"garbage", "", errdefs.CodeInvalidArgument},
		{"zz-3", "", errdefs.CodeFailedPrecondition},
		{current, "zz-3", errdefs.CodeFailedPrecondition},
		{a.StreamEpoch() + "-1", "", errdefs.CodeInvalidArgument},
	} {
		req := httptest.NewRequest(http.MethodGet, "/v1/events?after="+tc.after, nil)
		if tc.lastEventID != "" {
			req.Header.Set("Last-Event-ID", tc.lastEventID)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil ||
			body.Error.Code != tc.code || rec.Code != tc.code.HTTPStatus() || !strings.Contains(body.Error.Error(), "after") {
			t.Errorf("after=%q Last-Event-ID=%q: %d %s, want %s naming after", tc.after, tc.lastEventID, rec.Code, rec.Body, tc.code)
		}
	}
}
