package agent

import (
	"context"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/logging"
)

const (
	defaultHealthInterval = 5 * time.Second
	// healthProbeTimeout is longer than the shim's own wait for QEMU's
	// query-status (2 s), so that a hung QEMU is told apart from a hung
	// shim.
	healthProbeTimeout = 4 * time.Second
	// healthProbes bounds the checks in flight at once.
	healthProbes = 64
)

// The parts of a running VM that can stop answering.
const (
	componentShim = "shim"
	componentQEMU = "qemu"
)

// health is what the last check said of a running VM: both its shim and
// its QEMU answered, or which one did not, since when.
type health struct {
	checked   bool
	qemuPID   int // the run the check was of
	since     time.Time
	component string
	err       string
}

// watchHealth checks every running VM at once at start, then every
// HealthInterval, until ctx ends.
func (a *Agent) watchHealth(ctx context.Context) {
	tick := time.NewTicker(a.cfg.HealthInterval)
	defer tick.Stop()
	slots := make(chan struct{}, healthProbes)
	for {
		a.checkHealth(ctx, slots)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// checkHealth asks every running VM's shim for its status, which includes
// a query-status of its QEMU, each under its own deadline. A VM whose last
// check has not ended is left out, so that one hung shim delays no other
// VM's checks.
func (a *Agent) checkHealth(ctx context.Context, slots chan struct{}) {
	for _, rec := range a.records() {
		if !shimRuns(rec) {
			rec.setHealth(health{})
			continue
		}
		if !rec.startProbe() {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			rec.endProbe()
			return
		}
		go func() {
			defer func() { <-slots; rec.endProbe() }()
			a.probe(ctx, rec)
		}()
	}
}

func (a *Agent) probe(ctx context.Context, rec *record) {
	pctx, cancel := context.WithTimeout(ctx, healthProbeTimeout)
	defer cancel()
	rec.mu.Lock()
	pid := rec.qemuPID
	rec.mu.Unlock()
	client := a.shim(rec.id)
	st, err := client.Status(pctx)
	client.Close()
	if ctx.Err() != nil {
		return
	}
	h := health{checked: true, qemuPID: pid}
	switch {
	case err != nil:
		// A shim that just ended is the unit watcher's to report.
		if active, aerr := a.unitActive(ctx, rec.id); aerr == nil && !active || !shimRuns(rec) {
			return
		}
		h.component, h.err = componentShim, err.Error()
	case st.QMPError != "" && st.Status != api.StatusStarting:
		h.qemuPID, h.component, h.err = st.QEMUPID, componentQEMU, st.QMPError
	default:
		h.qemuPID = st.QEMUPID
	}
	if h.component != "" {
		h.since = time.Now()
	}
	was := rec.setHealth(h)
	switch {
	case h.component != "" && was.component != h.component:
		a.log.Warn("VM "+rec.id+" is not responding: its "+h.component+" does not answer", logging.KeyVM, rec.id, "COMPONENT", h.component, "ERROR", h.err)
	case h.component == "" && was.component != "":
		a.log.Info("VM "+rec.id+" responds again after its "+was.component+" did not since "+was.since.Format(time.RFC3339), logging.KeyVM, rec.id, "COMPONENT", was.component)
	}
}

// startProbe marks a check of the VM under way, unless one already is.
func (r *record) startProbe() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.probing {
		return false
	}
	r.probing = true
	return true
}

func (r *record) endProbe() {
	r.mu.Lock()
	r.probing = false
	r.mu.Unlock()
}

// setHealth records a check's outcome and returns the one before it. A
// component that goes on not answering keeps the time it stopped.
func (r *record) setHealth(h health) (was health) {
	r.mu.Lock()
	defer r.mu.Unlock()
	was = r.health
	if h.component != "" && h.component == was.component && h.qemuPID == was.qemuPID {
		h.since = was.since
	}
	r.health = h
	return was
}

// responding fills the view's responding fields; r.mu is held.
func (r *record) respondingLocked(v *api.VM) {
	h := r.health
	if !h.checked || r.status.Terminal() || h.qemuPID != r.qemuPID {
		return
	}
	ok := h.component == ""
	v.Responding = &ok
	if !ok {
		v.NotResponding = &api.NotResponding{Since: h.since, Component: h.component, Error: h.err}
	}
}
