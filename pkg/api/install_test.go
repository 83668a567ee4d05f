package api

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestInstallConfigPrintsRedacted: however the config is printed or
// logged, alone or inside its request, its secrets stay out.
func TestInstallConfigPrintsRedacted(t *testing.T) {
	cfg := InstallConfig{Username: "alice", Password: "Secr3t-pass", ProductKey: "KEY-12345", Hostname: "desk1",
		Applications:     []Application{{Name: "tool", Command: "install --token=app-token"}},
		FirstBootScripts: []Script{{Name: "setup", Content: "echo script-token"}}}
	req := InstallRequest{OS: "fedora", Config: &cfg}
	secrets := []string{"Secr3t-pass", "KEY-12345", "app-token", "script-token"}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, &cfg), fmt.Sprintf(verb, req), fmt.Sprintf(verb, &req))
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("install", "config", cfg, "ptr", &cfg, "request", req)
	out = append(out, buf.String())
	for _, s := range out {
		if !strings.Contains(s, "alice") && !strings.Contains(s, "616c696365") && !strings.Contains(s, "0x") {
			t.Errorf("printed nothing of the config: %s", s)
		}
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("printed %s: %s", secret, s)
			}
		}
	}
	if !strings.Contains(buf.String(), "config.password=[REDACTED]") {
		t.Errorf("slog does not use LogValue: %s", buf.String())
	}
}
