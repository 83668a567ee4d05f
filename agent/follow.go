package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/supervisor"
)

// follow streams the VM's shim events into the agent until the shim is gone.
// Calling it while a follower runs makes that follower look once more when
// it is done: it may be leaving after the last run's end just as the VM's
// next run starts, which would otherwise go unfollowed.
func (a *Agent) follow(rec *record) {
	rec.mu.Lock()
	rec.followAgain = true
	if rec.following {
		rec.mu.Unlock()
		return
	}
	rec.following = true
	rec.mu.Unlock()
	go func() {
		for {
			rec.mu.Lock()
			rec.followAgain = false
			rec.mu.Unlock()
			a.followLoop(rec)
			a.catchUp(rec)
			rec.mu.Lock()
			if !rec.followAgain || a.ctx.Err() != nil {
				rec.following = false
				rec.mu.Unlock()
				return
			}
			rec.mu.Unlock()
		}
	}()
}

func (a *Agent) followLoop(rec *record) {
	client := a.shim(rec.id)
	defer client.Close()
	backoff := 50 * time.Millisecond
	for a.ctx.Err() == nil {
		err := client.Events(a.ctx, rec.lastSeq(), func(e api.Event) error {
			a.apply(rec, []api.Event{e})
			return nil
		})
		if a.ctx.Err() != nil {
			return
		}
		a.catchUp(rec)
		if rec.currentStatus().Terminal() {
			return // the shim recorded its end
		}
		if active, aerr := a.unitActive(a.ctx, rec.id); aerr == nil && !active {
			return
		}
		if err != nil {
			a.log.Debug("shim stream interrupted", logging.KeyVM, rec.id, "ERROR", err.Error())
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// reattach follows every running shim after an agent start, touching no
// VM. It does not wait for any shim to answer: one that hangs must not keep
// the API down, and the health checks show it as not responding.
func (a *Agent) reattach(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	units, err := a.cfg.Units.List(lctx)
	cancel()
	if err != nil {
		a.log.Error("cannot list units; the watcher will reconcile", "ERROR", err.Error())
		return
	}
	active := map[string]bool{}
	for _, u := range units {
		if isActive(u.ActiveState) {
			active[u.VMID] = true
		}
	}
	followed := 0
	for _, rec := range a.records() {
		if !active[rec.id] {
			a.shimGone(ctx, rec, nil)
			continue
		}
		a.follow(rec)
		followed++
	}
	a.log.Info("following running shims", "COUNT", followed)
}

// watchUnits turns unit state into VM state: crash detection is unit state.
func (a *Agent) watchUnits(ctx context.Context) {
	for ev := range a.cfg.Units.Watch(ctx) {
		if ev.Reconciled || ev.VMID == "" {
			continue
		}
		a.mu.Lock()
		rec := a.vms[ev.VMID]
		a.mu.Unlock()
		if rec == nil {
			continue
		}
		switch {
		case ev.ActiveState == "active":
			a.follow(rec)
		case ev.Removed || ev.ActiveState == "failed" || ev.ActiveState == "inactive":
			a.shimGone(ctx, rec, &ev)
		}
	}
}

// shimGone runs once a VM's unit has ended (ExecStopPost included). If the
// log does not end with the VM's end, nobody recorded it: record it now.
func (a *Agent) shimGone(ctx context.Context, rec *record, ev *supervisor.UnitEvent) {
	a.catchUp(rec)
	v := rec.view()
	if v.Status.Terminal() {
		return
	}
	// Signals about a run that ended can arrive after the next run began:
	// only a unit that is not running now has lost its shim.
	if active, err := a.unitActive(ctx, rec.id); err != nil || active {
		return
	}
	msg := "the VM's unit is gone but its end was never recorded"
	if ev != nil {
		msg = fmt.Sprintf("the VM's unit ended (%s, result %s) without recording the VM's end", ev.ActiveState, ev.Result)
	}
	if err := a.appendEvent(ctx, rec, api.Event{Type: api.EventStatus, Status: api.StatusError, Reason: api.ReasonShimLost, Message: msg}); err != nil {
		a.log.Warn("cannot record a lost shim", logging.KeyVM, rec.id, "ERROR", err.Error())
	}
}

// autostart boots the VMs marked autostart once per host boot: /run is
// empty after a reboot, so a marker there tells a reboot from an agent
// restart.
func (a *Agent) autostart(ctx context.Context) {
	marker := filepath.Join(a.cfg.Layout.RunDir, "autostart.done")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	var wg sync.WaitGroup
	for _, rec := range a.records() {
		if !rec.currentSpec().Autostart || !rec.currentStatus().Terminal() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := a.lockRecord(ctx, rec)
			if err != nil {
				return
			}
			defer unlock()
			if err := a.startUnit(ctx, rec, api.ReasonAutostart); err != nil {
				a.log.Error("autostart failed", logging.KeyVM, rec.id, "ERROR", err.Error())
			}
		}()
	}
	wg.Wait()
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		a.log.Error("cannot mark autostart done: the next agent start will boot the autostart VMs again, even those powered off since",
			"PATH", marker, "ERROR", err.Error())
	}
}
