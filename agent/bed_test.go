package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/agent/agenttest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// The fakes are what the agent takes.
var (
	_ Units   = (*agenttest.Host)(nil)
	_ Shim    = (*agenttest.ShimClient)(nil)
	_ Store   = (*agenttest.Store)(nil)
	_ Network = (*agenttest.Network)(nil)
)

// waitLimit bounds every wait on the agent's background work; it is a
// deadline for a hung test, not a measure of speed.
const waitLimit = 30 * time.Second

// bed is one host for agents on fakes: systemd and shims, the database and
// the network live across agent restarts, as on a real host.
type bed struct {
	t      *testing.T
	dir    string
	layout vmspec.Layout
	host   *agenttest.Host
	store  *agenttest.Store
	net    *agenttest.Network
	// qemuImg is a stand-in for qemu-img that creates an empty image.
	qemuImg string
}

func newBed(t *testing.T) *bed {
	t.Helper()
	dir := t.TempDir()
	b := &bed{
		t:      t,
		dir:    dir,
		layout: vmspec.Layout{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")},
		store:  agenttest.NewStore(),
		net:    agenttest.NewNetwork("br0", "br1"),
	}
	b.host = agenttest.NewHost(b.layout)
	// qemu-img create ... PATH SIZE: create PATH. Nothing else is faked.
	b.qemuImg = b.script("qemu-img", `[ "$1" = create ] || { echo "fake qemu-img does only create, not $1" >&2; exit 2; }
while [ $# -gt 2 ]; do shift; done; : > "$1"`)
	return b
}

// script writes an executable shell script and returns its path.
func (b *bed) script(name, body string) string {
	b.t.Helper()
	p := filepath.Join(b.dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func (b *bed) config() Config {
	return Config{
		Layout:   b.layout,
		ISODirs:  []string{b.dir},
		Accel:    "tcg",
		Firewall: "off",
		QEMUImg:  b.qemuImg,
		Units:    b.host,
		Store:    b.store,
		Network:  b.net,
		Shims:    func(id string) Shim { return b.host.Dial(id) },
		Logger:   logging.New("agent-test", os.Stderr, slog.LevelInfo),
		// A roomy host, whatever the one the tests run on has.
		Resources: fakeResources{memoryMiB: 1 << 20, cpus: 64},
	}
}

// start brings an agent up on the bed; stop (also at cleanup) takes it down
// as a restart would, leaving every unit running.
func (b *bed) start(cfg Config) (a *Agent, stop func()) {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a = New(cfg)
	if err := a.Start(ctx); err != nil {
		cancel()
		b.t.Fatal(err)
	}
	b.t.Cleanup(cancel)
	return a, cancel
}

func createInput(id string, start bool) api.CreateVMInput {
	return api.CreateVMInput{
		Name: "vm-" + id[:4], InternalName: id, OS: "linux", CPUCores: 1, RAMGB: 1, DiskSizeGB: 1,
		NetworkBridge: "br0", GraphicProtocol: "vnc", GraphicPassword: "pw", Start: &start,
	}
}

// waitVM waits until the VM's view satisfies ok and returns it.
func waitVM(t *testing.T, a *Agent, id string, what string, ok func(api.VM) bool) api.VM {
	t.Helper()
	var v api.VM
	if !agenttest.WaitFor(waitLimit, func() bool {
		var err error
		v, err = a.Get(id)
		return err == nil && ok(v)
	}) {
		t.Fatalf("VM %s never became %s; last seen %s (%s) %q seq %d", id, what, v.Status, v.Reason, v.Message, v.Seq)
	}
	return v
}

func status(st api.Status, r api.Reason) func(api.VM) bool {
	return func(v api.VM) bool { return v.Status == st && v.Reason == r }
}
