package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestEventStreamResumesFromASequence(t *testing.T) {
	b := setup(t)
	vm := b.createOff(t, "events")
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()

	got := make(chan api.Event, 100)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	// Resuming after the create's own entry: whatever happens before the
	// stream is live comes from the log, so nothing is missed or doubled.
	// It ends with stop(); the events it passed on are what is checked.
	go func() { _ = b.client.Events(sctx, vm.ID, vm.Seq, func(e api.Event) error { got <- e; return nil }) }()
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, guestTimeout); err != nil {
		t.Fatal(err)
	}
	var seen []api.Event
	for len(seen) == 0 || !(seen[len(seen)-1].IsStatus() && seen[len(seen)-1].Status == api.StatusRunning) {
		select {
		case e := <-got:
			if len(seen) > 0 && e.Seq != seen[len(seen)-1].Seq+1 {
				t.Fatalf("sequence gap: %d after %d", e.Seq, seen[len(seen)-1].Seq)
			}
			seen = append(seen, e)
		case <-ctx.Done():
			t.Fatalf("stream never showed running; saw %+v", seen)
		}
	}
	if seen[0].Status != api.StatusStarting {
		t.Fatalf("first live event %+v, want starting", seen[0])
	}
	stop()

	// A client that reconnects after a sequence gets exactly what followed.
	from := seen[0].Seq
	var replay []api.Event
	rctx, rstop := context.WithTimeout(ctx, 5*time.Second)
	defer rstop()
	err := b.client.Events(rctx, vm.ID, from, func(e api.Event) error {
		replay = append(replay, e)
		if e.Seq == seen[len(seen)-1].Seq {
			rstop()
		}
		return nil
	})
	if err != nil && rctx.Err() == nil {
		t.Fatalf("replay: %v", err)
	}
	if len(replay) != len(seen)-1 || replay[0].Seq != from+1 {
		t.Fatalf("replay after %d gave %d events starting at %d, want %d", from, len(replay), replay[0].Seq, len(seen)-1)
	}
	// PostgreSQL has the same history, from the create's entry on.
	b.waitHistory(t, vm.ID, seen[len(seen)-1].Seq)
}

// A reader of every VM's events that disconnects and resumes from the
// cursor it last had gets each of a VM's entries once: first its create's,
// replayed from its log by a per-VM cursor, then, from the host-wide cursor
// the replay ended with, those of a start made while the reader was away.
func TestAllVMStreamResumesAfterADisconnect(t *testing.T) {
	b := setup(t)
	vm := b.createOff(t, "allstream")
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()

	var seen []uint64
	cursor := ""
	read := func(after string, until func() bool) {
		t.Helper()
		rctx, stop := context.WithTimeout(ctx, guestTimeout)
		defer stop()
		err := b.client.AllEvents(rctx, after, func(c string, e api.Event) error {
			cursor = c
			if e.VMID == vm.ID {
				seen = append(seen, e.Seq)
			}
			if until() {
				stop()
			}
			return nil
		})
		if err != nil && rctx.Err() == nil || !until() {
			t.Fatalf("the stream after %s: %v; the VM's entries %v", after, err, seen)
		}
	}
	hostCursor := func() bool { return cursor != "" && !strings.Contains(cursor, ":") }
	read(vm.ID+":0", func() bool { return len(seen) > 0 && seen[len(seen)-1] >= vm.Seq && hostCursor() })

	started, err := b.client.Power(ctx, vm.ID, api.PowerOn, true, guestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	read(cursor, func() bool { return seen[len(seen)-1] >= started.Seq })
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("the VM's entries on the stream are %v, want 1..%d once each", seen, started.Seq)
		}
	}
}

func TestCLI(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "cli")
	list := b.run(t, "infinivirtctl", "vm", "list", "-o", "json")
	var vms []api.VM
	if err := json.Unmarshal([]byte(list), &vms); err != nil {
		t.Fatalf("vm list -o json: %v\n%s", err, list)
	}
	found := false
	for _, v := range vms {
		found = found || (v.ID == vm.ID && v.Status == api.StatusRunning)
	}
	if !found {
		t.Fatalf("vm list does not show %s running:\n%s", vm.ID, list)
	}
	if table := b.run(t, "infinivirtctl", "vm", "get", vm.ID); !strings.Contains(table, "running") || !strings.Contains(table, "STATUS") {
		t.Fatalf("vm get table:\n%s", table)
	}
	if out := b.run(t, "infinivirtctl", "vm", "suspend", "--wait", vm.ID); !strings.Contains(out, "suspended") {
		t.Fatalf("vm suspend --wait:\n%s", out)
	}
	if depts := b.run(t, "infinivirtctl", "department", "list"); !strings.Contains(depts, "default") || !strings.Contains(depts, "ALLOW_ALL") {
		t.Fatalf("department list:\n%s", depts)
	}
	if eff := b.run(t, "infinivirtctl", "vm", "firewall", "effective", vm.ID); !strings.Contains(eff, "department default") {
		t.Fatalf("vm firewall effective:\n%s", eff)
	}
	if comp := b.run(t, "infinivirtctl", "completion", "bash"); !strings.Contains(comp, "__start_infinivirtctl") {
		t.Fatal("no bash completion")
	}
	out, err := b.try("infinivirtctl", "vm", "create", "--name", "x", "--uuid", vm.ID, "--bridge", bridgeName, "--mac", "zz")
	var exit *exec.ExitError
	if err == nil || !errors.As(errors.Unwrap(err), &exit) && !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("bad create: err %v, out %s", err, out)
	}
	if !strings.Contains(err.Error(), "macAddress") {
		t.Fatalf("the CLI's error does not name the field: %v", err)
	}
}

func TestAPISocketChecksPeers(t *testing.T) {
	b := setup(t)
	sock := vmspec.DefaultLayout.AgentSocket()
	if mode := b.run(t, "stat", "-c", "%a %G", sock); mode != "660 infinivirt" {
		t.Fatalf("socket mode/group %q, want 660 infinivirt", mode)
	}
	// Open the file mode up: the credential check alone must keep nobody out.
	b.run(t, "chmod", "0666", sock)
	defer b.run(t, "chmod", "0660", sock)
	_, err := b.try("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "infinivirtctl", "health")
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("nobody got in, or was refused for another reason: %v", err)
	}
	if _, err := b.try("infinivirtctl", "health"); err != nil {
		t.Fatalf("root was refused: %v", err)
	}
}

func TestDatabaseOutageConverges(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "db-outage")
	b.waitDB(t, vm.ID, api.StatusRunning, "")
	if err := b.pg.StopServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := b.pg.StartServer(); err != nil {
				t.Errorf("restart PostgreSQL: %v", err)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if _, err := b.client.Power(ctx, vm.ID, api.Suspend, true, time.Minute); err != nil {
		t.Fatalf("the agent stopped working without its database: %v", err)
	}
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, guestTimeout); err != nil {
		t.Fatal(err)
	}
	// Health and the metrics show the database behind, since when.
	b.eventually(t, time.Minute, func() error {
		return b.databaseLag(ctx, func(h api.Health, metrics string) bool {
			return h.Database == api.DatabaseUnavailable && h.DatabaseLag != nil && h.DatabaseLag.Since != nil &&
				h.DatabaseLag.PendingVMs >= 1 && strings.Contains(metrics, "\ninfinivirt_database_up 0\n")
		})
	})
	if err := b.pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	row := b.waitDB(t, vm.ID, api.StatusOff, api.ReasonUser)
	b.eventually(t, time.Minute, func() error {
		return b.databaseLag(ctx, func(h api.Health, metrics string) bool {
			return h.Database == api.DatabaseOK && h.DatabaseLag != nil && h.DatabaseLag.Since == nil &&
				h.DatabaseLag.PendingVMs == 0 && strings.Contains(metrics, "\ninfinivirt_database_lag_seconds 0\n")
		})
	})
	evs, err := b.db.Events(ctx, vm.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sawSuspended := false
	for _, e := range evs {
		sawSuspended = sawSuspended || e.Status == api.StatusSuspended
	}
	if !sawSuspended || evs[len(evs)-1].Seq != row.Seq && evs[len(evs)-1].Seq < row.Seq {
		t.Fatalf("history after the outage misses transitions: %+v", evs)
	}
}

// databaseLag checks what health and the metrics say of the database.
func (b *bed) databaseLag(ctx context.Context, ok func(api.Health, string) bool) error {
	h, err := b.client.Health(ctx)
	if err != nil {
		return err
	}
	code, metrics, err := b.client.RawRequest(ctx, http.MethodGet, "/v1/metrics", nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("metrics: %d %v", code, err)
	}
	if !ok(h, string(metrics)) {
		lag, _ := json.Marshal(h)
		return fmt.Errorf("health %s, metrics:\n%s", lag, metrics)
	}
	return nil
}

// The embedded default: no database configured, everything else the same.
func TestWithoutDatabase(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	env := b.run(t, "cat", "/etc/default/infinivirt")
	restartAgent := func(content string) {
		t.Helper()
		if err := b.host.WriteFile(ctx, "/etc/default/infinivirt", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b.run(t, "systemctl", "restart", "infinivirt-agent.service")
	}
	var kept []string
	for _, line := range strings.Split(env, "\n") {
		if !strings.HasPrefix(line, "INFINIVIRT_DATABASE_URL=") {
			kept = append(kept, line)
		}
	}
	restartAgent(strings.Join(kept, "\n") + "\n")
	withDB := false
	defer func() {
		if !withDB {
			restartAgent(env + "\n")
		}
	}()

	h, err := b.client.Health(ctx)
	if err != nil || h.Database != api.DatabaseNone {
		t.Fatalf("health %v (%v), want database none", h, err)
	}
	vm := b.createVM(t, "no-db")
	b.waitStatus(t, vm.ID, api.StatusRunning, api.ReasonBooted)
	if _, err := b.client.Power(ctx, vm.ID, api.PowerOff, true, guestTimeout); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, vm.ID, api.StatusOff, api.ReasonUser)
	if _, err := b.db.GetVM(ctx, vm.ID); err == nil {
		t.Fatal("the VM reached PostgreSQL although no database was configured")
	}

	// The database enabled later gets the VM's whole history, not only its row.
	restartAgent(env + "\n")
	withDB = true
	row := b.waitDB(t, vm.ID, api.StatusOff, api.ReasonUser)
	b.waitHistory(t, vm.ID, row.Seq)
}

// waitHistory waits until PostgreSQL holds every entry of the VM's log from
// seq 1 to last, each once, the first being its create.
func (b *bed) waitHistory(t *testing.T, id string, last uint64) {
	t.Helper()
	b.eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		evs, err := b.db.Events(ctx, id, 0, 1000)
		if err != nil {
			return err
		}
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		if uint64(len(evs)) < last || evs[0].Seq != 1 || evs[0].Reason != api.ReasonCreated || evs[last-1].Seq != last {
			return fmt.Errorf("vm_events holds seqs %v, want 1..%d from the create on", seqs, last)
		}
		return nil
	})
}
