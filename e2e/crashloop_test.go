package e2e

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrashLoopingAgentComesBack: six agent crashes in a row, each as soon
// as systemd has started it again, the last one the way a Go panic ends
// (exit status 2), and the agent is back and answering: the unit's start
// limit never leaves it failed.
func TestCrashLoopingAgentComesBack(t *testing.T) {
	b := setup(t)
	const unit = "infinivirt-agent.service"
	// The bed's drop-in turns restarts off, so that the other tests decide
	// when the agent comes back; this one needs the unit's own policy.
	restart := shippedSetting(t, "Restart")
	dropIn := "/etc/systemd/system/" + unit + ".d/zz-crashloop.conf"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := b.host.WriteFile(ctx, dropIn, []byte("[Service]\nRestart="+restart+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run(t, "systemctl", "daemon-reload")
	t.Cleanup(func() {
		b.run(t, "rm", "-f", dropIn)
		b.run(t, "systemctl", "daemon-reload")
		if s, _ := b.try("systemctl", "is-active", unit); s != "active" {
			b.run(t, "systemctl", "reset-failed", unit)
			b.run(t, "systemctl", "start", unit)
		}
	})
	nrestarts := func() int {
		n, _ := strconv.Atoi(b.run(t, "systemctl", "show", "-p", "NRestarts", "--value", unit))
		return n
	}
	before := nrestarts()

	// state is the unit's ActiveState; failed (the start limit hit) ends
	// the test at once, as nothing will bring the agent back.
	state := func() string {
		s := b.run(t, "systemctl", "show", "-p", "ActiveState", "--value", unit)
		if s == "failed" {
			t.Fatalf("the agent is failed after a crash: result %s", b.run(t, "systemctl", "show", "-p", "Result", "--value", unit))
		}
		return s
	}
	// newPID waits for a main process other than old, and, when ready is
	// set, for the unit to be active (the agent has sent READY=1).
	newPID := func(old string, ready bool) string {
		var pid string
		b.eventually(t, time.Minute, func() error {
			pid = b.run(t, "systemctl", "show", "-p", "MainPID", "--value", unit)
			state := state()
			if pid == "0" || pid == old || (ready && state != "active") {
				return errorf("agent main pid %s, %s; waiting for a new one", pid, state)
			}
			return nil
		})
		return pid
	}
	began := time.Now()
	pid := newPID("", true)
	const crashes = 6
	for i := range crashes {
		signal := "KILL"
		if i > 0 {
			// Each crash comes as soon as systemd has started the agent
			// again; the last one once it is ready, since a Go program
			// ends on SIGQUIT as on a panic only once its runtime runs.
			last := i == crashes-1
			pid = newPID(pid, last)
			if last {
				signal = "QUIT"
			}
		}
		b.run(t, "kill", "-"+signal, pid)
	}
	crashed := time.Since(began)
	b.eventually(t, time.Minute, func() error {
		if s := state(); s != "active" {
			return errorf("the agent is %s", s)
		}
		hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
		defer hcancel()
		_, err := b.client.Health(hctx)
		return err
	})
	if got := nrestarts() - before; got < crashes {
		t.Fatalf("systemd restarted the agent %d times after %d crashes", got, crashes)
	}
	t.Logf("%d crashes in %s; the agent answers again after %s", crashes, crashed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// shippedSetting reads a [Service] setting of the agent's unit as shipped.
func shippedSetting(t *testing.T, key string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(moduleRoot(), "units", "infinivirt-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			return v
		}
	}
	t.Fatalf("the agent's unit sets no %s", key)
	return ""
}
