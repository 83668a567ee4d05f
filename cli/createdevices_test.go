package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// vm create sends its --disk and --cdrom flags as the devices list, in
// order, disks first; a bad value is refused before the agent is asked.
func TestCreateSendsDisksAndCDROMs(t *testing.T) {
	f := startDiskAgent(t)
	t.Setenv("INFINIVIRT_GRAPHIC_PASSWORD", "pw")
	run := func(args ...string) error {
		root := NewRoot(&bytes.Buffer{})
		root.SetArgs(append([]string{"--socket", f.sock, "-o", "json", "vm", "create", "--name", "x", "--bridge", "br0"}, args...))
		return root.Execute()
	}
	if err := run("--cdrom", "path=/isos/tools.iso,boot=4", "--disk", "size=10G", "--disk", "size=512MiB,format=raw,name=data,boot=3,bus=sata,cache=none,discard=ignore",
		"--disk", "size=1.5,image=golden,clone=full", "--cdrom", ""); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.got
	f.got = nil
	f.mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "POST /v1/vms ") {
		t.Fatalf("requests %q", got)
	}
	var in api.CreateVMInput
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got[0], "POST /v1/vms ")), &in); err != nil {
		t.Fatal(err)
	}
	devs, _ := json.Marshal(in.Devices)
	want := `[{"type":"disk","disk":{"path":"","format":"","sizeBytes":10737418240}},` +
		`{"name":"data","type":"disk","disk":{"path":"","format":"raw","sizeBytes":536870912,"bootIndex":3,"bus":"sata","cache":"none","discard":"ignore"}},` +
		`{"type":"disk","disk":{"path":"","format":"","sizeBytes":1610612736,"image":"golden","clone":"full"}},` +
		`{"type":"cdrom","cdrom":{"path":"/isos/tools.iso","bootIndex":4}},` +
		`{"type":"cdrom","cdrom":{}}]`
	if string(devs) != want {
		t.Errorf("devices\n%s\nwant\n%s", devs, want)
	}

	for _, args := range [][]string{
		{"--disk", "format=raw"},
		{"--disk", "size=10X"},
		{"--disk", "size=-1G"},
		{"--disk", "size=1G,speed=fast"},
		{"--disk", "size=1G,size=2G"},
		{"--disk", "size=1G,boot=first"},
		{"--cdrom", "/isos/tools.iso"},
	} {
		var e *errdefs.Error
		if err := run(args...); !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != strings.TrimPrefix(args[0], "--") {
			t.Errorf("%v: %v", args, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != 0 {
		t.Errorf("refused flags reached the agent: %q", f.got)
	}
}
