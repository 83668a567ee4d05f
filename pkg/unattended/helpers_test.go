package unattended

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// fixedGen makes password hashes deterministic for golden files.
var fixedGen = gen{salt: func() (string, error) { return "goldensalt012345", nil }}

// fullConfig exercises every field; its strings carry XML and YAML
// metacharacters on purpose.
func fullConfig(os string) InstallConfig {
	c := InstallConfig{
		Username: "alice",
		Password: `p4ss: "word" & <stuff> #not-a-comment`,
		Locale:   "es_ES.UTF-8",
		Timezone: "Europe/Madrid",
		Hostname: "ivt-guest1",
		FirstBootScripts: []Script{
			{Name: "Say hello", Content: "#!/bin/sh\necho 'hello: world' \"# not a comment\" > /root/hello\n"},
			{Name: "YAML & XML: {tricky} [chars] <here>", Content: "key: value\n- item\n--- \n%end\n... \n<b>&amp;</b>\n"},
		},
		Applications: []Application{
			{Name: "htop"},
			{Name: "Custom tool", Command: `curl -fsS "https://example.invalid/x?a=1&b=2" | sh`},
		},
	}
	if isWindows(os) {
		c.Username = "O'Brien & Co"
		c.ProductKey = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
		c.FirstBootScripts = []Script{
			{Name: "Set wallpaper", Content: "Write-Host \"<xml> & 'quotes'\"\nSet-ItemProperty -Path 'HKCU:\\x' -Name y -Value 1\n"},
			{Name: "Legacy batch", Language: Cmd, Content: "@echo off\r\necho %PATH% > C:\\path.txt\r\n"},
		}
		c.Applications = []Application{
			{Name: "7-Zip", Command: `msiexec /i "D:\apps\7z.msi" /qn ALLUSERS=1 && echo ok > C:\7z.txt`},
		}
	}
	return c
}

// pyYAML parses YAML documents with PyYAML, the parser cloud-init and
// Subiquity use, through one long-lived Debian python3 process.
type pyYAML struct {
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Reader
	err error
}

var (
	yamlOnce   sync.Once
	yamlParser *pyYAML
)

const pyYAMLScript = `import sys, json, yaml
for line in sys.stdin:
    try:
        doc = json.loads(line)
        print(json.dumps({"ok": yaml.safe_load(doc)}), flush=True)
    except Exception as e:
        print(json.dumps({"err": "%s: %s" % (type(e).__name__, e)}), flush=True)
`

func getPyYAML(tb testing.TB) *pyYAML {
	tb.Helper()
	yamlOnce.Do(func() {
		p := &pyYAML{}
		yamlParser = p
		if _, err := os.Stat("/usr/bin/python3"); err != nil {
			p.err = fmt.Errorf("/usr/bin/python3 is missing: %w", err)
			return
		}
		if err := exec.Command("/usr/bin/python3", "-c", "import yaml").Run(); err != nil {
			p.err = fmt.Errorf("python3-yaml is not installed: %w", err)
			return
		}
		// The process lives as long as the test binary; it ends with its stdin.
		cmd := exec.CommandContext(context.Background(), "/usr/bin/python3", "-c", pyYAMLScript)
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			p.err = err
			return
		}
		p.in, p.out = in, bufio.NewReaderSize(out, 1<<20)
	})
	if yamlParser.err != nil {
		tb.Skipf("cannot parse YAML back with PyYAML: %v", yamlParser.err)
	}
	return yamlParser
}

// parse returns the document as JSON-like Go values, or PyYAML's error.
func (p *pyYAML) parse(doc []byte) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line, _ := json.Marshal(string(doc))
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		return nil, err
	}
	resp, err := p.out.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var r struct {
		OK  any     `json:"ok"`
		Err *string `json:"err"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, err
	}
	if r.Err != nil {
		return nil, fmt.Errorf("PyYAML: %s", *r.Err)
	}
	return r.OK, nil
}

func mustParseYAML(t testing.TB, doc []byte) map[string]any {
	t.Helper()
	v, err := getPyYAML(t).parse(doc)
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("document is %T, not a mapping:\n%s", v, doc)
	}
	return m
}

// dig walks nested maps and lists: dig(m, "autoinstall", "identity", "username").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// noErr fails the test at once on a setup step's error.
func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
