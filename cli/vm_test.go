package cli

import (
	"bytes"
	"strings"
	"testing"
)

// --audio reaches the create only when given, so that the agent's default
// for the OS holds otherwise.
func TestCreateSendsAudioOnlyWhenGiven(t *testing.T) {
	f := startDiskAgent(t)
	create := []string{"vm", "create", "--name", "desk1", "--uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", "--os", "ubuntu", "--graphic-password-file", "/dev/null"}
	for _, extra := range [][]string{nil, {"--audio=false"}, {"--audio"}} {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append(append([]string{"--socket", f.sock, "-o", "json"}, create...), extra...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", extra, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != 3 {
		t.Fatalf("requests: %q", f.got)
	}
	for i, want := range []string{"", `"audio":false`, `"audio":true`} {
		has := strings.Contains(f.got[i], `"audio"`)
		if (want == "" && has) || (want != "" && !strings.Contains(f.got[i], want)) {
			t.Errorf("request %d: %s, want audio %q", i, f.got[i], want)
		}
	}
}
