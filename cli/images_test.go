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

	"github.com/infinibay/infinivirt/pkg/api"
)

// imageAgent answers an import as importing, then its progress at each
// read (30%, then ready), and keeps each request.
type imageAgent struct {
	mu    sync.Mutex
	got   []string
	reads int
	sock  string
}

func startImageAgent(t *testing.T) *imageAgent {
	t.Helper()
	f := &imageAgent{sock: filepath.Join(t.TempDir(), "agent.sock")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.got = append(f.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(bytes.TrimSpace(body))))
		img := api.Image{Name: "golden", State: api.ImageImporting, UsedBy: []api.ImageUser{}}
		code := http.StatusOK
		switch {
		case r.Method == http.MethodPost:
			code = http.StatusAccepted
		case r.Method == http.MethodGet:
			f.reads++
			img.Progress = 30
			if f.reads > 1 {
				img.State, img.Progress = api.ImageReady, 100
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(img)
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close below
	t.Cleanup(func() { srv.Close() })
	return f
}

// An import follows the progress on stderr and prints the ready image.
func TestImageImportFollowsProgress(t *testing.T) {
	f := startImageAgent(t)
	var out, errOut bytes.Buffer
	root := NewRoot(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"--socket", f.sock, "-o", "json", "image", "import", "golden", "/srv/golden.vmdk", "--format", "vmdk"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var img api.Image
	if err := json.Unmarshal(out.Bytes(), &img); err != nil || img.State != api.ImageReady {
		t.Fatalf("stdout %q (%v), want the ready image", out.String(), err)
	}
	if want := "importing golden: 0%\nimporting golden: 30%\n"; errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []string{
		`POST /v1/images?wait=false {"name":"golden","sourcePath":"/srv/golden.vmdk","format":"vmdk"}`,
		"GET /v1/images/golden",
		"GET /v1/images/golden",
	}
	if strings.Join(f.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(f.got, "\n"), strings.Join(want, "\n"))
	}
}
