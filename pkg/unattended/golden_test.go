package unattended

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the generators")

// goldenDocs renders every generator with the fixed salt.
func goldenDocs(t *testing.T) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{}
	must := func(name string, b []byte, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs[name] = b
	}
	ud, md, err := fixedGen.ubuntuAutoinstall(fullConfig(OSUbuntu))
	must("ubuntu-user-data", ud, err)
	must("ubuntu-meta-data", md, err)
	minimal := InstallConfig{Username: "bob", Password: "secret1", Locale: "en_US", Timezone: "UTC", Hostname: "vm1"}
	ud, _, err = fixedGen.ubuntuAutoinstall(minimal)
	must("ubuntu-minimal-user-data", ud, err)
	cc, err := fixedGen.cloudConfig(fullConfig(OSUbuntu), CloudOptions{PowerOff: true})
	must("cloud-config", cc, err)
	ks, err := fixedGen.fedoraKickstart(fullConfig(OSFedora))
	must("fedora-ks.cfg", ks, err)
	ks, err = fixedGen.fedoraKickstart(minimal)
	must("fedora-minimal-ks.cfg", ks, err)
	x, err := WindowsAutounattend(fullConfig(OSWindows10), WindowsOptions{Edition: 10})
	must("windows10-autounattend.xml", x, err)
	wmin := minimal
	wmin.Username = "Bob"
	x, err = WindowsAutounattend(wmin, WindowsOptions{Edition: 11, ImageName: "Windows 11 Pro", UILanguage: "es-ES"})
	must("windows11-minimal-autounattend.xml", x, err)
	return docs
}

func TestGolden(t *testing.T) {
	for name, got := range goldenDocs(t) {
		path := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestGolden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (run with -update if the change is intended):\n%s", name, path, got)
		}
	}
}
