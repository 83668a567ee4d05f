package testbed

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	data := []byte(`22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid master:9 - cgroup2 cgroup2 rw
40 22 0:40 / /mnt/with\040space rw - tmpfs my\134src rw
garbage line
`)
	got := parseMountinfo(data)
	want := []mountEntry{
		{mountPoint: "/", fsType: "ext4", source: "/dev/vda"},
		{mountPoint: "/sys/fs/cgroup/unified", fsType: "cgroup2", source: "cgroup2"},
		{mountPoint: "/mnt/with space", fsType: "tmpfs", source: `my\src`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestUnifiedCgroupPath(t *testing.T) {
	for in, want := range map[string]string{
		"9:name=systemd:/\n0::/\n":            "/",
		"0::/user.slice/session-1.scope\n":    "/user.slice/session-1.scope",
		"4:memory:/x\n0::/a/../b\n":           "/b",
		"1:cpu:/\n":                           "",
		"0::relative\n":                       "",
		"0::/infinivirt-testbed-x/init.scope": "/infinivirt-testbed-x/init.scope",
	} {
		got, ok := unifiedCgroupPath([]byte(in))
		if got != want || ok != (want != "") {
			t.Errorf("unifiedCgroupPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParseStatStartTime(t *testing.T) {
	line := "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n"
	got, err := parseStatStartTime([]byte(line))
	if err != nil || got != 987654 {
		t.Errorf("start time = %d, %v; want 987654", got, err)
	}
	if _, err := parseStatStartTime([]byte("1 (x) S 1 2")); err == nil {
		t.Error("a short line was accepted")
	}
	self, err := processStartTime(os.Getpid())
	if err != nil || self == 0 {
		t.Errorf("own start time = %d, %v", self, err)
	}
}

func TestShellQuoteSurvivesTheShell(t *testing.T) {
	for _, s := range []string{"plain", "with space", `it's`, `$(echo pwned)`, "back`tick`", "new\nline", `\`, ""} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh printed %q (%v) for %q", out, err, s)
		}
	}
}

func TestSetupScriptIsValidShell(t *testing.T) {
	p := setupPlan{
		workDir: "/tmp/it's here", hostname: "h", machineID: "0123", systemd: systemdPath,
		files: []stagedFile{{target: "/etc/a b", source: "/tmp/$x", mode: 0o755}},
		binds: []Bind{{Source: "/srv/s", Target: "/mnt/t"}},
	}
	script := p.script()
	if out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v: %s", err, out)
	}
	for _, want := range []string{
		`lowerdir=/,upperdir='/tmp/it'\''s here/fs/upper'`,
		`ln -sf /dev/null "$R/etc/tmpfiles.d/tmp.conf"`,
		`ln -sf /dev/null "$R/etc/systemd/system/systemd-udevd.service"`,
		`install -D -m 0755 '/tmp/$x' "$R"'/etc/a b'`,
		`mount --rbind '/srv/s' "$R"'/mnt/t'`,
		`pivot_root . .`,
		`exec '/lib/systemd/systemd' --unit=basic.target`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "run/dbus"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "var"), 0o755))
	must(os.Symlink("/run", filepath.Join(root, "var/run")))         // absolute: stays in root
	must(os.Symlink("../run/dbus", filepath.Join(root, "var/dbus"))) // relative
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	for in, want := range map[string]string{
		"/var/run/dbus/system_bus_socket": "/run/dbus/system_bus_socket",
		"/var/dbus/x":                     "/run/dbus/x",
		"/../../etc":                      "/etc",
		"relative/x":                      "/relative/x",
		"/loop/x":                         "/loop/x",
		"/":                               "/",
	} {
		if got := resolveInRoot(root, in); got != want {
			t.Errorf("resolveInRoot(%q) = %q, want %q", in, got, want)
		}
	}
}

func validState() hostState {
	return hostState{
		Version: stateVersion, Name: "demo", ID: "demo-0011aabb", PID: 4242, StartTime: 99, LauncherPID: 4241,
		Cgroup:  "/sys/fs/cgroup/unified/infinivirt-testbed-demo-0011aabb",
		WorkDir: "/tmp/infinivirt-testbed-demo-0011aabb-123",
	}
}

func TestParseState(t *testing.T) {
	good, _ := json.Marshal(validState())
	if _, err := parseState(good); err != nil {
		t.Fatalf("valid state rejected: %v", err)
	}
	for name, mutate := range map[string]func(*hostState){
		"version":       func(s *hostState) { s.Version = 99 },
		"name":          func(s *hostState) { s.Name = "../x" },
		"id":            func(s *hostState) { s.ID = "other-0011aabb" },
		"pid":           func(s *hostState) { s.PID = 1 },
		"cgroup":        func(s *hostState) { s.Cgroup = "/sys/fs/cgroup/unified" },
		"cgroup escape": func(s *hostState) { s.Cgroup = "/sys/fs/cgroup/../../etc/infinivirt-testbed-demo-0011aabb" },
		"workdir":       func(s *hostState) { s.WorkDir = "/" },
		"workdir other": func(s *hostState) { s.WorkDir = "/home/user" },
	} {
		st := validState()
		mutate(&st)
		data, _ := json.Marshal(st)
		if _, err := parseState(data); err == nil {
			t.Errorf("%s: bad state accepted: %s", name, data)
		}
	}
}

func TestParseJournalJSON(t *testing.T) {
	data := []byte(`{"MESSAGE":"hello","_SYSTEMD_UNIT":"a.service","PRIORITY":"6"}
{"MESSAGE":[104,105],"_PID":"7"}

`)
	entries, err := parseJournalJSON(data)
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries = %v, %v", entries, err)
	}
	if entries[0].Field("MESSAGE") != "hello" || entries[0].Field("_SYSTEMD_UNIT") != "a.service" {
		t.Errorf("entry 0 = %v", entries[0])
	}
	if entries[1].Field("MESSAGE") != "" || entries[1].Field("_PID") != "7" {
		t.Errorf("binary field should read as empty: %v", entries[1])
	}
	if _, err := parseJournalJSON([]byte("{not json}\n")); err == nil {
		t.Error("bad JSON accepted")
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"))
	f.Add([]byte(`40 22 0:40 / /mnt/a\040b rw - tmpfs x\1 rw`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range parseMountinfo(data) {
			if m.fsType == "" {
				t.Errorf("entry without a file system type: %+v", m)
			}
		}
	})
}

func FuzzParseStatStartTime(f *testing.F) {
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 42 1 1\n"))
	f.Add([]byte("1 ()) S"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseStatStartTime(data)
	})
}

func FuzzParseState(f *testing.F) {
	good, _ := json.Marshal(validState())
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			return
		}
		// Whatever is accepted must name only test-bed paths: Stop removes them.
		if !strings.HasPrefix(filepath.Base(st.Cgroup), "infinivirt-testbed-") ||
			!strings.HasPrefix(filepath.Base(st.WorkDir), "infinivirt-testbed-") ||
			filepath.Clean(st.Cgroup) != st.Cgroup || filepath.Clean(st.WorkDir) != st.WorkDir {
			t.Errorf("accepted dangerous paths: %+v", st)
		}
	})
}

func FuzzParseJournalJSON(f *testing.F) {
	f.Add([]byte(`{"MESSAGE":"x","_SYSTEMD_UNIT":"u"}` + "\n"))
	f.Add([]byte(`{"MESSAGE":[1,2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := parseJournalJSON(data)
		for _, e := range entries {
			_ = e.Field("MESSAGE")
		}
	})
}

func FuzzUnifiedCgroupPath(f *testing.F) {
	f.Add([]byte("0::/a/b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, ok := unifiedCgroupPath(data); ok && !filepath.IsAbs(p) {
			t.Errorf("relative path %q", p)
		}
	})
}
