package qemu_test

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden pins the argv of each feature, one argument per line.
func TestGolden(t *testing.T) {
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			cfg := gc.cfg(goldenFiles)
			args, err := cfg.Args()
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			got := strings.Join(args, "\n") + "\n"
			path := filepath.Join("testdata", gc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/qemu -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s (run go test ./pkg/qemu -update after checking the change)\n got:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestGoldenFilesHaveCases keeps testdata/ free of files no case writes.
func TestGoldenFilesHaveCases(t *testing.T) {
	names := map[string]bool{}
	for _, gc := range goldenCases() {
		names[gc.name+".golden"] = true
	}
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".golden") && !names[e.Name()] {
			t.Errorf("testdata/%s has no golden case", e.Name())
		}
	}
}

func TestArgsDefaultAccelIsKVM(t *testing.T) {
	cfg := base()
	cfg.Accel = ""
	args, err := cfg.Args()
	if err != nil {
		t.Fatal(err)
	}
	if !hasPair(args, "-accel", "kvm") || !hasPair(args, "-cpu", "host") {
		t.Errorf("empty Accel should mean -accel kvm -cpu host, got %q", args)
	}
}

// TestArgsSecurityBaseline checks what every configuration must carry and
// never carry, whatever the features.
func TestArgsSecurityBaseline(t *testing.T) {
	for _, gc := range goldenCases() {
		cfg := gc.cfg(goldenFiles)
		args, err := cfg.Args()
		if err != nil {
			t.Fatalf("%s: %v", gc.name, err)
		}
		for _, want := range [][2]string{
			{"-sandbox", qemu.SandboxOptions},
			{"-name", "guest=" + testUUID},
			{"-uuid", testUUID},
			{"-msg", "timestamp=on"},
		} {
			if !hasPair(args, want[0], want[1]) {
				t.Errorf("%s: missing %s %s", gc.name, want[0], want[1])
			}
		}
		if m := argAfter(args, "-machine"); m != "q35" && !strings.HasPrefix(m, "q35,") {
			t.Errorf("%s: -machine %q, want q35", gc.name, m)
		}
		for _, flag := range []string{"-S", "-nodefaults", "-no-user-config"} {
			if !slices.Contains(args, flag) {
				t.Errorf("%s: missing %s", gc.name, flag)
			}
		}
		for _, a := range args {
			// password=on only asks for one; a value would be a secret in argv.
			a = strings.ReplaceAll(a, "password=on", "")
			for _, bad := range []string{"vhost=on", `"vhost":true`, "password", "secret", "disable-ticketing", "-runas"} {
				if strings.Contains(a, bad) {
					t.Errorf("%s: argument %q contains %q", gc.name, a, bad)
				}
			}
		}
	}
}

func TestArgsMultiqueueVectors(t *testing.T) {
	for queues := 1; queues <= 8; queues++ {
		cfg := base()
		fds := make([]int, queues)
		for i := range fds {
			fds[i] = tapFD0 + i
		}
		cfg.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:00:00:01", FDs: fds}}
		args, err := cfg.Args()
		if err != nil {
			t.Fatal(err)
		}
		var dev string
		for _, a := range args {
			if strings.Contains(a, `"virtio-net-pci"`) {
				dev = a
			}
		}
		if queues == 1 {
			if strings.Contains(dev, "mq") || strings.Contains(dev, "vectors") {
				t.Errorf("single queue should not enable mq: %s", dev)
			}
			continue
		}
		want := `"mq":true,"vectors":` + strconv.Itoa(2*queues+2)
		if !strings.Contains(dev, want) {
			t.Errorf("%d queues: device %s lacks %s", queues, dev, want)
		}
	}
}

func TestCommandStripsSystemdVariables(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("INFINIVIRT_TEST_KEEP", "yes")
	cfg := base()
	cmd, err := qemu.Command(t.Context(), "", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(cmd.Path) != qemu.DefaultBinary && cmd.Args[0] != qemu.DefaultBinary {
		t.Errorf("binary = %q, want %s", cmd.Path, qemu.DefaultBinary)
	}
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "LISTEN_FDS=") {
			t.Errorf("child environment keeps %s", kv)
		}
	}
	if !slices.Contains(cmd.Env, "INFINIVIRT_TEST_KEEP=yes") {
		t.Error("child environment lost an ordinary variable")
	}
	want, _ := cfg.Args()
	if !slices.Equal(cmd.Args[1:], want) {
		t.Errorf("Command args differ from Config.Args")
	}
}

func TestCommandRefusesInvalidConfig(t *testing.T) {
	cfg := base()
	cfg.QMPFD = 0
	if _, err := qemu.Command(t.Context(), "", &cfg); err == nil {
		t.Fatal("Command accepted a configuration without QMP")
	}
}

func argAfter(args []string, opt string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == opt {
			return args[i+1]
		}
	}
	return ""
}

func hasPair(args []string, opt, val string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == opt && args[i+1] == val {
			return true
		}
	}
	return false
}

func BenchmarkArgs(b *testing.B) {
	var cfg qemu.Config
	for _, gc := range goldenCases() {
		if gc.name == "desktop" {
			cfg = gc.cfg(goldenFiles)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.Args(); err != nil {
			b.Fatal(err)
		}
	}
}

// A QEMU that waits for its state as a migration stream still starts
// stopped, so that nothing runs before the shim says cont.
func TestArgsIncomingDefer(t *testing.T) {
	cfg := base()
	cfg.IncomingDefer = true
	args, err := cfg.Args()
	if err != nil {
		t.Fatal(err)
	}
	if !hasPair(args, "-incoming", "defer") || !slices.Contains(args, "-S") {
		t.Errorf("IncomingDefer: %q", args)
	}
	cfg.IncomingDefer = false
	if args, _ = cfg.Args(); slices.Contains(args, "-incoming") {
		t.Errorf("a cold boot waits for a migration: %q", args)
	}
}

// TestMultifunctionPCIOrder: the guest's functions follow the host's
// order from 0, whichever function the device was named by, and function
// 0 comes last, as a hot-plug wants it.
func TestMultifunctionPCIOrder(t *testing.T) {
	p := qemu.HostPCI{ID: "pci0", Host: "0000:01:00.2", Functions: []string{"0000:01:00.1"}, ROMFile: "/roms/x.rom"}
	got := p.Devices("hotplug-0")
	want := []qemu.Device{
		{Driver: "vfio-pci", ID: "pci0", Bus: "hotplug-0", Host: "0000:01:00.2", Addr: "00.1", ROMFile: "/roms/x.rom"},
		{Driver: "vfio-pci", ID: "pci0-fn1", Bus: "hotplug-0", Host: "0000:01:00.1", Addr: "00.0", Multifunction: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("devices\n got %+v\nwant %+v", got, want)
	}
	if id := p.SlotID(); id != "pci0-fn1" {
		t.Errorf("slot id %q", id)
	}
	if id := (qemu.HostPCI{ID: "pci0", Host: "0000:01:00.0"}).SlotID(); id != "pci0" {
		t.Errorf("single function's slot id %q", id)
	}
}
