package firewall

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/<name>.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("rendering differs from %s (-update rewrites it):\n%s", path, lineDiff(string(want), got))
	}
}

var stateless = Mode{Stateless: true}

func testVM(id, tap, mac string, ips ...string) VM {
	v := VM{ID: id, TAP: tap, MAC: mac}
	for _, ip := range ips {
		v.IPs = append(v.IPs, netip.MustParseAddr(ip))
	}
	return v
}

func TestGoldenSketch(t *testing.T) {
	d := Department{ID: "eng", Policy: DepartmentPolicy{BlockAll, AllowOutbound}}
	v := testVM("a", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1")
	v.RuleSet.Presets = []Preset{PresetSSH}
	p, err := Render(stateless, d, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + p.Text())
}
