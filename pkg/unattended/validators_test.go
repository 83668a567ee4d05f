package unattended

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/unattended/internal/testassets"
	"github.com/infinibay/infinivirt/pkg/unattended/sha512crypt"
)

func cloudInitRoot(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := testassets.CloudInit(ctx)
	if errors.Is(err, testassets.ErrUnavailable) {
		t.Skipf("cloud-init validator: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestCloudInitSchema runs the real `cloud-init schema --config-file` on
// every cloud-config this package writes.
func TestCloudInitSchema(t *testing.T) {
	root := cloudInitRoot(t)
	docs := goldenDocs(t)
	nested := mustParseYAML(t, docs["ubuntu-user-data"])
	nestedJSON, err := json.Marshal(dig(nested, "autoinstall", "user-data"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"ubuntu-user-data":         docs["ubuntu-user-data"],
		"ubuntu-minimal-user-data": docs["ubuntu-minimal-user-data"],
		"cloud-config":             docs["cloud-config"],
		// JSON is YAML: the installed system's cloud-config, as Subiquity passes it on.
		"autoinstall.user-data": append([]byte("#cloud-config\n"), nestedJSON...),
	}
	dir := t.TempDir()
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, name)
			noErr(t, os.WriteFile(f, doc, 0o644))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := testassets.CloudInitSchema(ctx, root, f)
			if err != nil {
				t.Fatalf("cloud-init schema rejected %s: %v\n%s", name, err, doc)
			}
			if !strings.Contains(out, "Valid cloud-config") {
				t.Errorf("cloud-init schema said: %s", out)
			}
		})
	}
	t.Run("rejects a broken document", func(t *testing.T) {
		f := filepath.Join(dir, "broken")
		noErr(t, os.WriteFile(f, []byte("#cloud-config\nruncmd: \"x\"\nhostname: 42\n"), 0o644))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := testassets.CloudInitSchema(ctx, root, f); err == nil {
			t.Fatalf("cloud-init schema accepted a broken document: %s", out)
		}
	})
}

func TestUbuntuStructure(t *testing.T) {
	cfg := fullConfig(OSUbuntu)
	ud, md, err := UbuntuAutoinstall(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Error("user-data lacks the #cloud-config header")
	}
	doc := mustParseYAML(t, ud)
	if len(doc) != 1 || doc["autoinstall"] == nil {
		t.Errorf("top-level keys %v: only autoinstall belongs there (others would apply to the live installer)", keys(doc))
	}
	for path, want := range map[string]any{
		"version": 1.0, "locale": "es_ES.UTF-8", "timezone": "Europe/Madrid", "shutdown": "poweroff",
		"identity.username": "alice", "identity.hostname": "ivt-guest1", "keyboard.layout": "es",
		"storage.layout.name": "direct",
	} {
		p := []any{"autoinstall"}
		for _, k := range strings.Split(path, ".") {
			p = append(p, k)
		}
		if got := dig(doc, p...); got != want {
			t.Errorf("autoinstall.%s = %v, want %v", path, got, want)
		}
	}
	hash, _ := dig(doc, "autoinstall", "identity", "password").(string)
	if ok, err := sha512crypt.Verify(cfg.Password, hash); !ok || err != nil {
		t.Errorf("identity.password %q does not verify: %v", hash, err)
	}
	if strings.Contains(string(ud), cfg.Password) {
		t.Error("the plain password is in the user-data")
	}
	if got := dig(doc, "autoinstall", "packages"); !reflect.DeepEqual(got, []any{"htop"}) {
		t.Errorf("packages = %v", got)
	}
	// The installed system runs exactly CloudConfig's first-boot part.
	cc := mustParseYAML(t, must(CloudConfig(cfg, CloudOptions{})))
	nested, _ := dig(doc, "autoinstall", "user-data").(map[string]any)
	for _, k := range []string{"write_files", "runcmd"} {
		if !reflect.DeepEqual(nested[k], cc[k]) {
			t.Errorf("autoinstall.user-data.%s differs from CloudConfig's", k)
		}
	}
	for i, s := range cfg.FirstBootScripts {
		if got := dig(nested, "write_files", i+1, "content"); got != s.Content {
			t.Errorf("script %d content = %q, want %q", i, got, s.Content)
		}
	}
	meta := mustParseYAML(t, md)
	if meta["local-hostname"] != "ivt-guest1" || !strings.HasPrefix(meta["instance-id"].(string), "iid-infinivirt-") {
		t.Errorf("meta-data = %v", meta)
	}
}

func TestCloudConfigStructure(t *testing.T) {
	cfg := fullConfig(OSUbuntu)
	doc := mustParseYAML(t, must(CloudConfig(cfg, CloudOptions{PowerOff: true})))
	if dig(doc, "hostname") != "ivt-guest1" || dig(doc, "users", 0, "name") != "alice" ||
		dig(doc, "power_state", "mode") != "poweroff" || dig(doc, "users", 0, "lock_passwd") != false {
		t.Errorf("cloud-config = %v", doc)
	}
	hash, _ := dig(doc, "users", 0, "hashed_passwd").(string)
	if ok, _ := sha512crypt.Verify(cfg.Password, hash); !ok {
		t.Errorf("hashed_passwd %q does not verify", hash)
	}
	doc = mustParseYAML(t, must(CloudConfig(cfg, CloudOptions{})))
	if _, ok := doc["power_state"]; ok {
		t.Error("power_state without PowerOff")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func TestKickstartChecker(t *testing.T) {
	docs := goldenDocs(t)
	for _, name := range []string{"fedora-ks.cfg", "fedora-minimal-ks.cfg"} {
		if err := CheckKickstart(docs[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	base := string(docs["fedora-minimal-ks.cfg"])
	bad := map[string]string{
		"unknown command":       base + "frobnicate --now\n",
		"unknown option":        strings.Replace(base, "rootpw --lock", "rootpw --lock --bogus", 1),
		"missing value":         strings.Replace(base, "bootloader --timeout=1", "bootloader --timeout", 1),
		"unclosed section":      base + "%post\necho hi\n",
		"stray %end":            base + "%end\n",
		"nested section":        base + "%post\necho\n%pre\n%end\n",
		"missing lang":          strings.Replace(base, "lang en_US.UTF-8\n", "", 1),
		"missing keyboard":      strings.Replace(base, "keyboard --xlayouts=us\n", "", 1),
		"missing timezone":      strings.Replace(base, "timezone UTC --utc\n", "", 1),
		"nobody can log in":     strings.Replace(strings.Replace(base, "rootpw --lock\n", "", 1), "user --name", "#user --name", 1),
		"no partitioning":       strings.Replace(base, "autopart\n", "", 1),
		"no %packages":          strings.Replace(strings.Replace(base, "%packages\n", "", 1), "%end\n", "", 1),
		"twice lang":            base + "lang de_DE.UTF-8\n",
		"reboot and poweroff":   base + "reboot\n",
		"autopart and part":     base + "part / --size=1000\n",
		"unterminated quote":    base + "user --name='bob\n",
		"lang without argument": strings.Replace(base, "lang en_US.UTF-8", "lang", 1),
	}
	for name, ks := range bad {
		err := CheckKickstart([]byte(ks))
		var ke *KickstartError
		if !errors.As(err, &ke) {
			t.Errorf("%s: CheckKickstart = %v, want a *KickstartError", name, err)
		}
	}
}

func TestAutounattendChecks(t *testing.T) {
	docs := goldenDocs(t)
	xmls := []string{"windows10-autounattend.xml", "windows11-minimal-autounattend.xml"}
	for _, name := range xmls {
		if err := CheckAutounattend(docs[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	base := string(docs["windows11-minimal-autounattend.xml"])
	bad := map[string]string{
		"not well-formed":      strings.Replace(base, "</OOBE>", "</OOB>", 1),
		"wrong namespace":      strings.Replace(base, unattendNS, "urn:example", 1),
		"unknown pass":         strings.Replace(base, `pass="specialize"`, `pass="special"`, 1),
		"pass twice":           strings.Replace(base, `pass="specialize"`, `pass="oobeSystem"`, 1),
		"component wrong pass": strings.Replace(base, `<component name="Microsoft-Windows-Setup"`, `<component name="Microsoft-Windows-Shell-Setup"`, 1),
		"unknown component":    strings.Replace(base, "Microsoft-Windows-PnpCustomizationsWinPE", "Microsoft-Windows-Frobnicator", 1),
		"wrong token":          strings.Replace(base, "31bf3856ad364e35", "0000000000000000", 1),
		"unknown setting":      strings.Replace(base, "<ComputerName>", "<ComputerNom>", 1),
		"setting wrong pass":   strings.Replace(strings.Replace(base, "<ComputerName>vm1</ComputerName>", "", 1), "<OOBE>", "<ComputerName>x</ComputerName><OOBE>", 1),
		"missing wcm:action":   strings.Replace(base, `<LocalAccount wcm:action="add">`, `<LocalAccount>`, 1),
		"order gap":            strings.Replace(base, "<Order>1</Order>\n          <CommandLine>shutdown", "<Order>2</Order>\n          <CommandLine>shutdown", 1),
	}
	for name, x := range bad {
		err := CheckAutounattend([]byte(x))
		var ue *UnattendError
		if !errors.As(err, &ue) {
			t.Errorf("%s: CheckAutounattend = %v, want an *UnattendError", name, err)
		}
	}

	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint (Debian package libxml2-utils) is not installed")
	}
	dir := t.TempDir()
	for _, name := range xmls {
		f := filepath.Join(dir, name)
		noErr(t, os.WriteFile(f, docs[name], 0o644))
		xl := func(args ...string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, xmllint, append(args, f)...).CombinedOutput()
			if err != nil {
				t.Fatalf("xmllint %v %s: %v\n%s", args, name, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		xl("--noout")
		if got := xl("--xpath", `count(/*[local-name()="unattend" and namespace-uri()="`+unattendNS+`"])`); got != "1" {
			t.Errorf("%s: unattend root count %s", name, got)
		}
		passes := xl("--xpath", `//*[local-name()="settings"]/@pass`)
		for _, p := range []string{`pass="windowsPE"`, `pass="specialize"`, `pass="oobeSystem"`} {
			if !strings.Contains(passes, p) {
				t.Errorf("%s: passes %s lack %s", name, passes, p)
			}
		}
		if got := xl("--xpath", `count(//*[local-name()="FirstLogonCommands"]/*[local-name()="SynchronousCommand"])`); got == "0" {
			t.Errorf("%s: no FirstLogonCommands", name)
		}
	}
}
