package unattended

import (
	"bufio"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unattended/sha512crypt"
)

// fuzzGen hashes with a fixed salt and remembers hashes: the fuzz targets
// are about escaping, and SHA-512 crypt's 5000 rounds would slow them down.
var (
	fuzzHashes sync.Map
	fuzzGen    = gen{
		salt: fixedGen.salt,
		crypt: func(pw, setting string) string {
			key := pw + "\x00" + setting
			if h, ok := fuzzHashes.Load(key); ok {
				return h.(string)
			}
			h := sha512crypt.Crypt(pw, setting)
			fuzzHashes.Store(key, h)
			return h
		},
	}
)

// checkRejected asserts that a config the generator refused was refused
// with a typed, field-naming error.
func checkRejected(t *testing.T, err error) {
	t.Helper()
	var ae *errdefs.Error
	if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field == "" {
		t.Fatalf("refused without a field-naming InvalidArgument: %v", err)
	}
}

func FuzzQuoteYAML(f *testing.F) {
	for _, s := range []string{"", "plain", "a: b", "- x", "#c", "'q'", `"dq"`, "\\", "\x00\x1f\x7f", "\u0085\u2028\u2029\ufeff",
		"yes", "~", "null", "0x1F", "1e3", "&anchor *alias !tag", "---\n...", "\t lead", "trail ", "🙂", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip()
		}
		doc := "k: " + quoteYAML(s) + "\n"
		got, err := getPyYAML(t).parse([]byte(doc))
		if err != nil {
			t.Fatalf("PyYAML refused %q: %v", doc, err)
		}
		if v := dig(got, "k"); v != s {
			t.Fatalf("round trip of %q gave %q (document %q)", s, v, doc)
		}
	})
}

func FuzzCloudConfigEscaping(f *testing.F) {
	f.Add("Say hello", "#!/bin/sh\necho 'hi: there' # not a comment\n", "tool", "curl -fsS https://x/?a=1&b=2 | sh", "ivt-1")
	f.Add("YAML: {a} [b] &c *d !e |f >g", "key: value\n- item\n---\n...\n%end\n", "x", "echo \"\\\"\"", "h")
	f.Add("tab\tname", "\t\r\n\\\"'`$()", "n", "a\nb", "a-b")
	f.Fuzz(func(t *testing.T, scriptName, content, appName, appCmd, hostname string) {
		cfg := InstallConfig{Username: "alice", Password: "pw: \"x\" & <y>", Locale: "en_US", Timezone: "UTC", Hostname: hostname,
			Applications:     []Application{{Name: appName, Command: appCmd}},
			FirstBootScripts: []Script{{Name: scriptName, Content: content}}}
		cc, err := fuzzGen.cloudConfig(cfg, CloudOptions{PowerOff: true})
		if err != nil {
			checkRejected(t, err)
			return
		}
		ud, md, err := fuzzGen.ubuntuAutoinstall(cfg)
		if err != nil {
			t.Fatalf("CloudConfig accepted what UbuntuAutoinstall refused: %v", err)
		}
		steps := cfg.linuxSteps()
		for name, doc := range map[string][]byte{"cloud-config": cc, "autoinstall": ud} {
			m, err := getPyYAML(t).parse(doc)
			if err != nil {
				t.Fatalf("%s does not parse: %v\n%s", name, err, doc)
			}
			if name == "autoinstall" {
				if dig(m, "autoinstall", "identity", "hostname") != hostname {
					t.Fatalf("hostname changed: %v", dig(m, "autoinstall", "identity"))
				}
				m = dig(m, "autoinstall", "user-data")
			} else if dig(m, "hostname") != hostname || dig(m, "users", 0, "name") != "alice" {
				t.Fatalf("cloud-config identity changed: %v", m)
			}
			for i, s := range steps {
				if got := dig(m, "write_files", i, "content"); got != s.content {
					t.Fatalf("%s: step %d content %q, want %q", name, i, got, s.content)
				}
				if got := dig(m, "write_files", i, "path"); got != s.path {
					t.Fatalf("%s: step %d path %q, want %q", name, i, got, s.path)
				}
			}
		}
		if meta, err := getPyYAML(t).parse(md); err != nil || dig(meta, "local-hostname") != hostname {
			t.Fatalf("meta-data %q: %v", md, err)
		}
	})
}

type unattendDoc struct {
	Settings []struct {
		Pass       string `xml:"pass,attr"`
		Components []struct {
			Name      string `xml:"name,attr"`
			AutoLogon struct {
				Username string `xml:"Username"`
				Password string `xml:"Password>Value"`
			} `xml:"AutoLogon"`
			Commands []struct {
				CommandLine string `xml:"CommandLine"`
				Description string `xml:"Description"`
			} `xml:"FirstLogonCommands>SynchronousCommand"`
			Account struct {
				Name        string `xml:"Name"`
				DisplayName string `xml:"DisplayName"`
				Password    string `xml:"Password>Value"`
			} `xml:"UserAccounts>LocalAccounts>LocalAccount"`
			ComputerName string `xml:"ComputerName"`
		} `xml:"component"`
	} `xml:"settings"`
}

func unhidePassword(t *testing.T, v string) string {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b)%2 != 0 {
		t.Fatalf("password value %q: %v", v, err)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return strings.TrimSuffix(string(utf16.Decode(u)), "Password")
}

func FuzzAutounattendEscaping(f *testing.F) {
	f.Add("O'Brien & Co", `p"a<s>s&'w`, "7-Zip <beta>", `msiexec /i "D:\x.msi" /qn && echo ]]> <!-- -->`, "Script & <name>", "pc1")
	f.Add("user", "pw", "a", "b", "c", "h")
	f.Add("Zoë {x}", "🙂ñ", "x]]>y", "cmd /c echo %PATH% ^& more", "$(x)`y`", "h-2")
	f.Fuzz(func(t *testing.T, user, pw, appName, appCmd, scriptName, host string) {
		cfg := InstallConfig{Username: user, Password: pw, Locale: "en-US", Timezone: "Europe/Madrid", Hostname: host,
			Applications:     []Application{{Name: appName, Command: appCmd}},
			FirstBootScripts: []Script{{Name: scriptName, Content: "Write-Host ok"}}}
		x, err := WindowsAutounattend(cfg, WindowsOptions{Edition: 11})
		if err != nil {
			checkRejected(t, err)
			return
		}
		if err := CheckAutounattend(x); err != nil {
			t.Fatalf("%v\n%s", err, x)
		}
		var doc unattendDoc
		if err := xml.Unmarshal(x, &doc); err != nil {
			t.Fatal(err)
		}
		var checked int
		for _, s := range doc.Settings {
			for _, c := range s.Components {
				if c.Name != "Microsoft-Windows-Shell-Setup" {
					continue
				}
				if s.Pass == "specialize" && c.ComputerName != host {
					t.Fatalf("ComputerName %q, want %q", c.ComputerName, host)
				}
				if s.Pass != "oobeSystem" {
					continue
				}
				checked++
				if c.AutoLogon.Username != user || c.Account.Name != user || c.Account.DisplayName != user {
					t.Fatalf("user name came back as %q/%q/%q, want %q", c.AutoLogon.Username, c.Account.Name, c.Account.DisplayName, user)
				}
				if unhidePassword(t, c.AutoLogon.Password) != pw || unhidePassword(t, c.Account.Password) != pw {
					t.Fatal("password does not decode back")
				}
				if len(c.Commands) != 3 || c.Commands[0].CommandLine != "cmd.exe /c "+appCmd ||
					c.Commands[0].Description != "Install "+appName || c.Commands[1].Description != "Run first-boot script "+scriptName {
					t.Fatalf("commands came back as %+v", c.Commands)
				}
			}
		}
		if checked != 1 {
			t.Fatalf("found %d oobeSystem Shell-Setup components", checked)
		}
	})
}

// ksFiles decodes the files a kickstart's %post writes.
func ksFiles(t *testing.T, ks []byte) map[string]string {
	files := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(ks)))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "base64 -d > ")
		if !ok {
			continue
		}
		toks, err := splitKickstart(strings.TrimSuffix(rest, " <<'"+heredocEnd+"'"))
		if err != nil || len(toks) != 1 {
			t.Fatalf("bad here-document line %q: %v", line, err)
		}
		var b64 strings.Builder
		for sc.Scan() && sc.Text() != heredocEnd {
			b64.WriteString(sc.Text())
		}
		data, err := base64.StdEncoding.DecodeString(b64.String())
		if err != nil {
			t.Fatal(err)
		}
		files[toks[0]] = string(data)
	}
	return files
}

func FuzzKickstartEscaping(f *testing.F) {
	f.Add("Say hello", "#!/bin/sh\necho hi\n", "tool", "echo 'x' \"y\" $z", "pkg")
	f.Add("%end", "%end\n%post\nINFINIVIRT_EOF\n'\"\\", "%packages", "a\n%end\nb", "htop")
	f.Fuzz(func(t *testing.T, scriptName, content, appName, appCmd, pkg string) {
		cfg := InstallConfig{Username: "alice", Password: "secret1", Locale: "en_US", Timezone: "UTC", Hostname: "h",
			Applications:     []Application{{Name: appName, Command: appCmd}, {Name: pkg}},
			FirstBootScripts: []Script{{Name: scriptName, Content: content}}}
		ks, err := fuzzGen.fedoraKickstart(cfg)
		if err != nil {
			checkRejected(t, err)
			return
		}
		if err := CheckKickstart(ks); err != nil {
			t.Fatalf("%v\n%s", err, ks)
		}
		files := ksFiles(t, ks)
		for _, s := range cfg.linuxSteps() {
			if files[s.path] != s.content {
				t.Fatalf("%s came back as %q, want %q", s.path, files[s.path], s.content)
			}
		}
		_, body, _ := strings.Cut(string(ks), "\n%packages\n")
		body, _, _ = strings.Cut(body, "%end\n")
		if want := strings.Join(cfg.packages(), "\n"); strings.TrimSuffix(body, "\n") != want {
			t.Fatalf("%%packages holds %q, want %q", body, want)
		}
	})
}

func FuzzSplitKickstart(f *testing.F) {
	for _, s := range []string{"", "a b", "'q'", `"d\"q"`, `a\ b`, "#c", "it's", `$6$abc$def/.`, "\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = splitKickstart(s) // must not panic on anything
		if strings.ContainsAny(s, "\n\x00") {
			return
		}
		toks, err := splitKickstart("cmd --opt=" + shQuote(s) + " " + shQuote(s))
		if err != nil || len(toks) != 3 || toks[1] != "--opt="+s || toks[2] != s {
			t.Fatalf("shQuote(%q) split back as %q, %v", s, toks, err)
		}
	})
}

func goldenSeeds(f *testing.F, suffix string) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*"+suffix+".golden"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzCheckKickstart(f *testing.F) {
	goldenSeeds(f, "ks.cfg")
	f.Add([]byte("%post\n%end\n%end\nlang\n"))
	f.Fuzz(func(t *testing.T, ks []byte) {
		_ = CheckKickstart(ks) // must not panic on anything
	})
}

func FuzzCheckAutounattend(f *testing.F) {
	goldenSeeds(f, "autounattend.xml")
	f.Add([]byte(`<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="x"/></unattend>`))
	f.Fuzz(func(t *testing.T, x []byte) {
		_ = CheckAutounattend(x) // must not panic on anything
	})
}
