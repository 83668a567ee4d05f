package agent

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestOpenAPIDocumentsEveryRoute keeps openapi.json honest: every route the
// mux serves is documented, and nothing documented is missing.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.go")
	var routes [][]string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, regexp.MustCompile(`HandleFunc\("([A-Z]+) ([^"]+)"`).FindAllStringSubmatch(string(src), -1)...)
	}
	if len(routes) < 20 {
		t.Fatalf("found only %d routes", len(routes))
	}
	for _, r := range routes {
		method, path := strings.ToLower(r[1]), r[2]
		if path == "/v1/vms/{id}/{op}" {
			for _, op := range api.PowerOps {
				if _, ok := doc.Paths["/v1/vms/{id}/"+string(op)][method]; !ok {
					t.Errorf("openapi.json lacks %s /v1/vms/{id}/%s", method, op)
				}
			}
			continue
		}
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("openapi.json lacks %s %s", method, path)
		}
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
	}
	for body, field := range cases {
		var in api.CreateVMInput
		err := decodeStrict(httptest.NewRequest(http.MethodPost, "/v1/vms", strings.NewReader(body)), &in)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || (field != "" && e.Field != field) {
			t.Errorf("%s: got %v, want InvalidArgument naming %q", body, err, field)
		}
	}
}

func TestGoalOfEachPowerVerb(t *testing.T) {
	const since = 10 // the VM's last seq when the verb was accepted
	running := api.VM{Status: api.StatusRunning, Reason: api.ReasonUser, Seq: 11}
	off := api.VM{Status: api.StatusOff, Reason: api.ReasonUser, Seq: 11}
	suspended := api.VM{Status: api.StatusSuspended, Seq: 11}
	restarted := api.VM{Status: api.StatusRunning, Reason: api.ReasonRestarted, Seq: 11}
	// Still the entry of an earlier restart: this restart has not happened yet.
	earlier := api.VM{Status: api.StatusRunning, Reason: api.ReasonRestarted, Seq: since}
	for op, want := range map[api.PowerOp][5]bool{ // running, off, suspended, restarted, earlier
		api.PowerOn:       {true, true, false, true, true},
		api.PowerOff:      {false, true, false, false, false},
		api.ForcePowerOff: {false, true, false, false, false},
		api.Suspend:       {false, true, true, false, false},
		api.Restart:       {false, true, false, true, false},
	} {
		g := goal(op, since)
		got := [5]bool{g(running), g(off), g(suspended), g(restarted), g(earlier)}
		if got != want {
			t.Errorf("%s: goal on running/off/suspended/restarted/earlier = %v, want %v", op, got, want)
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
