package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/agent/httpapi"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// smallHost is a host of 24032 MiB and 2 CPUs.
type smallHost struct{}

func (smallHost) MemoryMiB() (int, error) { return 24032, nil }
func (smallHost) CPUs() int               { return 2 }

// TestCapacityAnswers429: a create beyond the host answers 429 with
// ResourceExhausted naming the field, and the document says that a create
// and a power-on may answer it.
func TestCapacityAnswers429(t *testing.T) {
	layout := vmspec.Layout{StateDir: t.TempDir(), RunDir: t.TempDir()}
	h := httpapi.Handler(agent.New(agent.Config{Layout: layout, Accel: "tcg", Resources: smallHost{}}))
	body, _ := json.Marshal(api.CreateVMInput{Name: "big", InternalName: "0f8fad5b-d9cb-469f-a165-70867728950e", OS: "linux",
		CPUCores: 1, RAMGB: 4097, DiskSizeGB: 1, NetworkBridge: "br0", GraphicProtocol: "vnc", GraphicPassword: "pw"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/vms", bytes.NewReader(body)))
	var eb api.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	if rec.Code != http.StatusTooManyRequests || eb.Error.Code != errdefs.CodeResourceExhausted || eb.Error.Field != "ramGB" {
		t.Fatalf("%d %+v, want 429 ResourceExhausted on ramGB", rec.Code, eb.Error)
	}

	doc := load(t)
	for _, p := range []string{"/v1/vms", "/v1/vms/{id}/powerOn"} {
		r := doc.Paths[p]["post"].Responses["429"]
		if r["$ref"] != "#/components/responses/ResourceExhausted" {
			t.Errorf("POST %s: 429 answer %v", p, r)
		}
	}
	if r := doc.Paths["/v1/vms/{id}/restart"]["post"].Responses["429"]; r != nil {
		t.Errorf("a restart answers 429: %v", r)
	}
}
