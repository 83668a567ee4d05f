package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestLoadRewritesAV1Spec: a spec written by the version 1 code is loaded
// at start and rewritten in the current version at once.
func TestLoadRewritesAV1Spec(t *testing.T) {
	l := vmspec.Layout{StateDir: t.TempDir(), RunDir: t.TempDir()}
	b, err := os.ReadFile("../pkg/vmspec/testdata/v1/iso.json")
	if err != nil {
		t.Fatal(err)
	}
	var v1 map[string]any
	if err := json.Unmarshal(b, &v1); err != nil {
		t.Fatal(err)
	}
	id := v1["id"].(string)
	// The fixture's disk lives under the packaged layout: move it into this one.
	v1["disk"].(map[string]any)["path"] = filepath.Join(l.VMDir(id), "disk0.qcow2")
	if b, err = json.Marshal(v1); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.VMDir(id), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.SpecFile(id), b, 0o600); err != nil {
		t.Fatal(err)
	}
	a := New(Config{Layout: l, Accel: "tcg"})
	if err := a.load(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, err := a.get(id)
	if err != nil {
		t.Fatal(err)
	}
	if v := rec.view(); v.ISOPath != v1["isoPath"] || len(v.Devices) != 3 {
		t.Errorf("view %+v", v)
	}
	var onDisk struct {
		Version int               `json:"version"`
		Devices []json.RawMessage `json:"devices"`
		Disk    json.RawMessage   `json:"disk"`
	}
	b, err = os.ReadFile(l.SpecFile(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.Version != vmspec.CurrentVersion || len(onDisk.Devices) != 3 || onDisk.Disk != nil {
		t.Errorf("spec on disk not rewritten as v%d:\n%s", vmspec.CurrentVersion, b)
	}
	if st, err := os.Stat(l.SpecFile(id)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("rewritten spec mode: %v %v", st.Mode(), err)
	}
}
