package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestInstallFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "install.json")
	if err := os.WriteFile(cfg, []byte(`{"username":"alice","password":"pw"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var in api.CreateVMInput
	if err := (&installFlags{}).apply(&in); err != nil || in.Install != nil {
		t.Fatalf("no install flags: %v %+v", err, in.Install)
	}
	f := installFlags{configFile: cfg, os: "ubuntu", timeoutMinutes: 30, kernelArgs: "console=ttyS0", noBootAfter: true, virtioWin: "/isos/virtio-win.iso"}
	if err := f.apply(&in); err != nil {
		t.Fatal(err)
	}
	i := in.Install
	if i == nil || i.OS != "ubuntu" || i.Config == nil || !reflect.DeepEqual(*i.Config, api.InstallConfig{Username: "alice", Password: "pw"}) || i.TimeoutMinutes != 30 ||
		i.KernelArgs != "console=ttyS0" || i.BootFromDiskAfter == nil || *i.BootFromDiskAfter || in.VirtioWinPath != "/isos/virtio-win.iso" {
		t.Fatalf("install %+v", i)
	}
	var e *errdefs.Error
	if err := (&installFlags{os: "fedora"}).apply(&in); !errors.As(err, &e) || e.Field != "install-config" {
		t.Fatalf("--install-os without a config: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"username":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&installFlags{configFile: bad}).apply(&in); !errors.As(err, &e) || e.Field != "install-config" {
		t.Fatalf("a config that is not JSON: %v", err)
	}
	// Decoded strictly: a field the agent does not know must not be
	// dropped on the way, nor a value of the wrong type.
	for body, field := range map[string]string{
		`{"username":"alice","passwd":"pw"}`:          "install-config.passwd",
		`{"username":"alice","hostname":7}`:           "install-config.hostname",
		`{"applications":[{"name":"vim","cmd":"x"}]}`: "install-config.applications.cmd",
		`{"username":"alice"} {"password":"pw"}`:      "install-config",
	} {
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := (&installFlags{configFile: bad}).apply(&in); !errors.As(err, &e) || e.Field != field {
			t.Errorf("%s: got %v, want the field %s", body, err, field)
		}
	}
}
