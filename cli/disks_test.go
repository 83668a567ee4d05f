package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// diskAgent answers the disk calls on a Unix socket and keeps each
// request as "METHOD path?query body".
type diskAgent struct {
	mu   sync.Mutex
	got  []string
	sock string
}

func startDiskAgent(t *testing.T) *diskAgent {
	t.Helper()
	f := &diskAgent{sock: filepath.Join(t.TempDir(), "agent.sock")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(body))))
		f.mu.Unlock()
		switch r.Method {
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"disks": []any{}})
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"name": "disk1"})
		}
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close below
	t.Cleanup(func() { srv.Close() })
	return f
}

// The disk verbs send what their flags say, to the disk's path.
func TestDiskCommandsSendTheirFlags(t *testing.T) {
	f := startDiskAgent(t)
	for _, args := range [][]string{
		{"vm", "disk", "list", "vm1"},
		{"vm", "disk", "add", "vm1", "--size-gb", "20", "--name", "data", "--boot-order", "3"},
		{"vm", "disk", "add", "vm1", "--size-gb", "1", "--bus", "virtio-scsi", "--cache", "none", "--discard", "ignore"},
		{"vm", "disk", "resize", "vm1", "data", "--size-gb", "40"},
		{"vm", "disk", "resize", "vm1", "data", "--size-gb", "10", "--allow-shrink"},
		{"vm", "disk", "remove", "vm1", "data"},
		{"vm", "disk", "remove", "--delete-image", "vm1", "data"},
	} {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append([]string{"--socket", f.sock, "-o", "json"}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		"GET /v1/vms/vm1/disks",
		`POST /v1/vms/vm1/disks {"name":"data","sizeGB":20,"bootOrder":3}`,
		`POST /v1/vms/vm1/disks {"sizeGB":1,"bus":"virtio-scsi","cache":"none","discard":"ignore"}`,
		`PATCH /v1/vms/vm1/disks/data {"sizeGB":40}`,
		`PATCH /v1/vms/vm1/disks/data {"sizeGB":10,"allowShrink":true}`,
		"DELETE /v1/vms/vm1/disks/data",
		"DELETE /v1/vms/vm1/disks/data?deleteImage=true",
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(f.got, "\n"), strings.Join(want, "\n"))
	}
}
