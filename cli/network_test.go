package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
)

// fakeAgent answers PUT /v1/vms/{id}/bridge on a Unix socket and keeps
// each request's body.
type fakeAgent struct {
	mu   sync.Mutex
	got  []api.MoveVMRequest
	sock string
}

func startFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	f := &fakeAgent{sock: filepath.Join(t.TempDir(), "agent.sock")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/vms/{id}/bridge", func(w http.ResponseWriter, r *http.Request) {
		var req api.MoveVMRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, req)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.VM{ID: r.PathValue("id"), NetworkBridge: req.Bridge})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l) //nolint:errcheck // ends with Close below
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeAgent) requests() []api.MoveVMRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.MoveVMRequest(nil), f.got...)
}

// set-bridge moves net0 unless --nic names another NIC.
func TestSetBridgeSendsTheNIC(t *testing.T) {
	f := startFakeAgent(t)
	for _, args := range [][]string{
		{"vm", "set-bridge", "vm1", "br1"},
		{"vm", "set-bridge", "--nic", "net1", "vm1", "br2"},
	} {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append([]string{"--socket", f.sock, "-o", "json"}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []api.MoveVMRequest{{Bridge: "br1", NIC: "net0"}, {Bridge: "br2", NIC: "net1"}}
	if got := f.requests(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("requests %+v, want %+v", got, want)
	}
}
