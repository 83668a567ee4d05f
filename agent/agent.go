// Package agent is the host agent: it validates requests, keeps each VM's
// spec on disk, starts and watches one systemd unit per VM, follows each
// shim's event log, serves the REST API, and aggregates into PostgreSQL when
// a database is configured.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/agent/dbsync"
	"github.com/infinibay/infinivirt/agent/installs"
	"github.com/infinibay/infinivirt/agent/netpolicy"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/hwids"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/pkg/sysfs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Config is the agent's wiring, filled by cmd/infinivirt-agent.
type Config struct {
	Layout vmspec.Layout
	// Accel is the host's accelerator for VMs that do not choose: kvm on real
	// hosts, tcg where KVM cannot run guests.
	Accel          string
	GraphicsListen string
	ShimBinary     string
	QEMUBinary     string
	QEMUImg        string
	QEMUUser       string
	// Firewall is auto (the default), conntrack, stateless or off.
	Firewall string
	Units    Units
	Store    Store // nil: no database
	Logger   *slog.Logger
	// HealthInterval is how often each running VM's shim is asked whether
	// it and its QEMU still answer; 0 is defaultHealthInterval.
	HealthInterval time.Duration
	// VirtioWin is the virtio-win ISO Windows installs attach; empty
	// searches unattended.DefaultVirtioWinPaths.
	VirtioWin string
	// UEFICode and UEFIVars are the Secure Boot OVMF build and the variable
	// store (Microsoft keys enrolled) each Windows VM gets a copy of; empty
	// means DefaultUEFICode and DefaultUEFIVars.
	UEFICode, UEFIVars string
	// Shims dials a VM's shim; nil dials its control socket in Layout.
	Shims func(vmID string) Shim
	// Network is the host's bridges and TAP devices; nil is HostNetwork.
	Network Network
	// FirewallKernel enforces the firewall; nil is the host's nftables.
	FirewallKernel FirewallKernel
	// Sysfs is where the host's devices are listed from; empty is /sys.
	Sysfs string
	// PCIIDs and USBIDs are the id databases that name host devices;
	// empty means hwids.DefaultPCIIDs and hwids.DefaultUSBIDs.
	PCIIDs, USBIDs string
	// ISODirs are the only directories CD-ROM media and install ISOs may
	// come from, links followed; empty is Layout.ISOsDir() alone.
	ISODirs []string
	// ROMDir holds the option ROM files PCI devices may be given, and no
	// other file is one; empty is Layout.ROMsDir().
	ROMDir string
	// Resources is the host's memory and CPUs the capacity checks read;
	// nil is HostResources.
	Resources Resources
	// MemoryOvercommit is how many times the host's memory the VMs that
	// run may hold together; 0 is DefaultMemoryOvercommit.
	MemoryOvercommit float64
	// MemoryReserveMiB is the host memory no VM may have; negative is
	// DefaultMemoryReserve of the host's.
	MemoryReserveMiB int
}

// Agent manages the VMs of one host.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	broker   *broker
	sync     *dbsync.Syncer
	installs installs.Settler
	net      *netpolicy.Policy

	mu    sync.Mutex // taken before a record's mu, never after
	vms   map[string]*record
	ports map[int]string // graphic ports taken, by VM id

	img images // the image store's imports and its clone lock

	pciIDs, usbIDs *hwids.File
	// pciMu is held while host PCI devices are checked and claimed.
	pciMu sync.Mutex
	// usbMu is held while host USB devices are checked and claimed.
	usbMu sync.Mutex
	// capMu is held while a start's memory is checked and held; taken
	// before mu, never after.
	capMu    sync.Mutex
	starting map[string]int // memory held by starts under way, MiB by VM id

	ctx context.Context // the agent's lifetime, for background work
}

// New builds an agent; Start brings it up.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = defaultHealthInterval
	}
	if cfg.GraphicsListen == "" {
		cfg.GraphicsListen = "127.0.0.1"
	}
	if cfg.Shims == nil {
		layout := cfg.Layout
		cfg.Shims = func(id string) Shim { return dialShim(layout.ShimSocket(id)) }
	}
	if cfg.Network == nil {
		cfg.Network = HostNetwork{}
	}
	if cfg.FirewallKernel == nil {
		cfg.FirewallKernel = netpolicy.HostKernel{}
	}
	if cfg.Sysfs == "" {
		cfg.Sysfs = sysfs.Root
	}
	if cfg.PCIIDs == "" {
		cfg.PCIIDs = hwids.DefaultPCIIDs
	}
	if cfg.USBIDs == "" {
		cfg.USBIDs = hwids.DefaultUSBIDs
	}
	if len(cfg.ISODirs) == 0 {
		cfg.ISODirs = []string{cfg.Layout.ISOsDir()}
	}
	if cfg.ROMDir == "" {
		cfg.ROMDir = cfg.Layout.ROMsDir()
	}
	if cfg.Resources == nil {
		cfg.Resources = HostResources{}
	}
	if cfg.MemoryOvercommit == 0 {
		cfg.MemoryOvercommit = DefaultMemoryOvercommit
	}
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Logger,
		broker:   newBroker(),
		vms:      map[string]*record{},
		ports:    map[int]string{},
		starting: map[string]int{},
		pciIDs:   &hwids.File{Path: cfg.PCIIDs},
		usbIDs:   &hwids.File{Path: cfg.USBIDs},
	}
	a.sync = dbsync.New(cfg.Store, cfg.Layout, cfg.Logger, dbsync.Views{
		VM: func(id string) (api.VM, bool) {
			vm, err := a.Get(id)
			return vm, err == nil
		},
		Snapshots: a.snapshotsToSync,
	})
	a.net = netpolicy.New(netpolicy.Options{
		Layout: cfg.Layout, Log: cfg.Logger, Kernel: cfg.FirewallKernel, Network: cfg.Network, VMs: netRegistry{a},
	})
	a.installs = installs.Settler{Layout: cfg.Layout, Log: cfg.Logger, Settled: a.sync.Resync}
	return a
}

// Start loads every VM from disk, re-attaches to running shims, records what
// happened while the agent was away, and starts watching units. It returns
// once the agent is ready to serve; background work lasts until ctx ends.
func (a *Agent) Start(ctx context.Context) error {
	a.ctx = ctx
	a.logCapacity()
	for _, dir := range []string{a.cfg.Layout.VMsDir(), filepath.Join(a.cfg.Layout.RunDir, "vms")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return err
		}
	}
	if err := a.initImages(); err != nil {
		return err
	}
	if err := a.net.Start(ctx, a.cfg.Firewall); err != nil {
		return err
	}
	if err := a.load(ctx); err != nil {
		return err
	}
	go a.sync.Run(ctx)
	for _, rec := range a.records() {
		a.sync.Resync(rec.id)
	}
	go a.watchUnits(ctx)
	a.reattach(ctx)
	go a.watchHealth(ctx)
	a.settleInstalls()
	a.net.Resync(ctx)
	// In the background: each boot may take minutes (unitStartLimit), and
	// systemd gives the agent's own start 90 s to say READY.
	go a.autostart(ctx)
	return nil
}

// load reads every VM directory: the spec, and the status its log ends with.
// A create an agent's end cut short is rolled back first.
func (a *Agent) load(ctx context.Context) error {
	a.sweepDeleted()
	entries, err := os.ReadDir(a.cfg.Layout.VMsDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		id := e.Name()
		if !vmspec.ValidID(id) {
			a.log.Warn("a directory among the VMs' that is no VM's is left alone", "PATH", filepath.Join(a.cfg.Layout.VMsDir(), id))
			continue
		}
		if a.sweepUncommitted(ctx, id) {
			continue
		}
		spec, err := vmspec.Load(a.cfg.Layout.SpecFile(id))
		specProblem := ""
		if err != nil {
			spec, specProblem = a.recoverSpec(ctx, id, err)
		}
		if spec.Upgraded() {
			// The file is rewritten in this build's version now, not at the
			// VM's next change: the shim reads either, and a downgrade is
			// not supported.
			if err := spec.Save(a.cfg.Layout.SpecFile(id)); err != nil {
				a.log.Warn("rewriting an older spec failed; it is rewritten at its next change", logging.KeyVM, id, "ERROR", err.Error())
			} else {
				a.log.Info("spec rewritten in the current version", logging.KeyVM, id, "VERSION", vmspec.CurrentVersion)
			}
		}
		rec := newRecord(spec)
		rec.committed = true
		rec.specProblem = specProblem
		evs, err := eventlog.ReadFile(a.cfg.Layout.EventsFile(id), 0)
		if err != nil {
			a.log.Error("event log unreadable", logging.KeyVM, id, "ERROR", err.Error())
		}
		rec.applyLocked(evs)
		a.vms[id] = rec
		if spec.Display.Port != 0 {
			a.ports[spec.Display.Port] = id
		}
	}
	a.log.Info("loaded VMs", "COUNT", len(a.vms))
	return nil
}

// specRecoverTimeout bounds asking a running shim for its spec at start.
const specRecoverTimeout = 3 * time.Second

// recoverSpec stands in for a spec.json that does not load. A VM whose
// unit runs gets it back from its shim, which holds the spec it started
// with, and the file is rewritten. Otherwise the VM is kept with a stand-in
// spec and the problem returned, so that it stays listed (as error,
// spec-unreadable) and can be powered off and deleted.
func (a *Agent) recoverSpec(ctx context.Context, id string, loadErr error) (*vmspec.Spec, string) {
	problem := fmt.Sprintf("spec.json does not load: %v", loadErr)
	if state, err := a.unitActiveState(ctx, id); err == nil && isActive(state) {
		spec, err := a.specFromShim(ctx, id)
		if err == nil {
			a.log.Warn("spec.json did not load; rewritten from the spec the VM's shim runs it with",
				logging.KeyVM, id, "ERROR", loadErr.Error())
			return spec, ""
		}
		problem += fmt.Sprintf("; its shim did not give it back: %v", err)
	}
	a.log.Error("a VM whose spec cannot be read is kept as spec-unreadable: it can be powered off and deleted",
		logging.KeyVM, id, "ERROR", problem)
	return &vmspec.Spec{ID: id, Name: id}, problem
}

func (a *Agent) specFromShim(ctx context.Context, id string) (*vmspec.Spec, error) {
	ctx, cancel := context.WithTimeout(ctx, specRecoverTimeout)
	defer cancel()
	sh := a.shim(id)
	defer sh.Close()
	cp, err := shimclient.Call(ctx, sh, shimapi.RouteSpec, shimapi.SpecRequest{})
	if err != nil {
		return nil, err
	}
	spec, err := vmspec.Parse(cp.Spec)
	if err != nil {
		return nil, err
	}
	if spec.ID != id {
		return nil, fmt.Errorf("the shim runs VM %s", spec.ID)
	}
	return spec, spec.Save(a.cfg.Layout.SpecFile(id))
}

// sweepUncommitted rolls back what a create left when the agent ended in
// it: the directory of a VM whose create never committed (its marker is
// there, or it has no spec at all), with its unit if it got one. A
// directory without a spec whose unit runs is left alone: that VM lives,
// and its spec comes back from its shim. It reports whether the directory
// is gone (or is being removed).
func (a *Agent) sweepUncommitted(ctx context.Context, id string) bool {
	_, markErr := os.Stat(a.cfg.Layout.CreatingMarker(id))
	_, specErr := os.Stat(a.cfg.Layout.SpecFile(id))
	marked, noSpec := markErr == nil, errors.Is(specErr, os.ErrNotExist)
	if !marked && !noSpec {
		return false
	}
	if !marked {
		if state, err := a.unitActiveState(ctx, id); err != nil || isActive(state) {
			a.log.Warn("a VM directory without a spec, whose unit runs or cannot be read, is left as it is",
				logging.KeyVM, id, "UNIT", state)
			return false
		}
	}
	if err := a.removeUnit(ctx, id); err != nil {
		a.log.Error("cannot remove the unit of a create the agent's end cut short; the next start tries again",
			logging.KeyVM, id, "ERROR", err.Error())
		return true
	}
	removeFiles, err := a.buryVMDir(id)
	if err != nil {
		a.log.Error("cannot remove what a create the agent's end cut short left", logging.KeyVM, id, "ERROR", err.Error())
		return true
	}
	removeFiles()
	a.log.Warn("rolled back a create the agent's end cut short", logging.KeyVM, id, "HAD_SPEC", !noSpec)
	return true
}

// sweepDeleted finishes deletions that a crash interrupted.
func (a *Agent) sweepDeleted() {
	matches, _ := filepath.Glob(filepath.Join(a.cfg.Layout.VMsDir(), ".deleting-*"))
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			a.log.Warn("leftover VM files", "PATH", m, "ERROR", err.Error())
		}
	}
}

func (a *Agent) get(id string) (*record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, ok := a.vms[id]
	if !ok || !rec.isCommitted() {
		return nil, errdefs.NotFound("VM %s does not exist", id)
	}
	return rec, nil
}

// lockRecord takes the VM's operation lock. The VM may have been deleted
// while the caller waited for it, so once the lock is held the record must
// still be the VM's; if not, the lock is let go and the VM does not exist.
func (a *Agent) lockRecord(ctx context.Context, rec *record) (unlock func(), err error) {
	if unlock, err = rec.lock(ctx); err != nil {
		return nil, err
	}
	if cur, err := a.get(rec.id); err != nil || cur != rec {
		unlock()
		return nil, errdefs.NotFound("VM %s does not exist", rec.id)
	}
	return unlock, nil
}

func (a *Agent) records() []*record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*record, 0, len(a.vms))
	for _, r := range a.vms {
		if r.isCommitted() {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// allIDs lists every VM the agent holds, those being created included.
func (a *Agent) allIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.vms))
	for id := range a.vms {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// allSpecs returns the spec of every VM the agent holds, those being
// created included, sorted by id.
func (a *Agent) allSpecs() []*vmspec.Spec {
	a.mu.Lock()
	specs := make([]*vmspec.Spec, 0, len(a.vms))
	for _, rec := range a.vms {
		specs = append(specs, rec.currentSpec())
	}
	a.mu.Unlock()
	sort.Slice(specs, func(i, j int) bool { return specs[i].ID < specs[j].ID })
	return specs
}

// List returns every VM.
func (a *Agent) List() []api.VM {
	recs := a.records()
	out := make([]api.VM, len(recs))
	for i, r := range recs {
		out[i] = r.view()
	}
	return out
}

// Get returns one VM.
func (a *Agent) Get(id string) (api.VM, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.VM{}, err
	}
	return rec.view(), nil
}

// apply takes log entries into the VM's view and passes the new ones on to
// event streams and the database. Several goroutines apply a VM's entries
// (its shim's stream, catch-ups after a unit event or an append), so the
// new ones are handed on under the record's lock: in sequence order, as
// streams drop anything older than what they last sent.
func (a *Agent) apply(rec *record, evs []api.Event) {
	rec.mu.Lock()
	fresh := rec.applyLocked(evs)
	if len(fresh) > 0 && rec.committed {
		a.broker.publish(fresh)
		a.sync.Push(rec.id, fresh)
	}
	rec.mu.Unlock()
	a.watchInstall(rec, fresh)
}

// commit makes a created VM visible. The entries its create recorded
// before (created, starting, running) go to the event streams now, and the
// database replays them from the log, so that every consumer sees the VM
// from its first entry.
func (a *Agent) commit(rec *record) {
	rec.mu.Lock()
	evs, err := eventlog.ReadFile(a.cfg.Layout.EventsFile(rec.id), 0)
	if err != nil {
		a.log.Warn("event log unreadable; a new VM's first entries reach only the database", logging.KeyVM, rec.id, "ERROR", err.Error())
	}
	early := evs[:0]
	for _, e := range evs {
		if e.Seq <= rec.seq {
			early = append(early, e)
		}
	}
	rec.committed = true
	a.broker.publish(early)
	rec.mu.Unlock()
	a.sync.Resync(rec.id)
}

// catchUp applies whatever the VM's log holds beyond what the agent saw.
func (a *Agent) catchUp(rec *record) {
	evs, err := eventlog.ReadFile(a.cfg.Layout.EventsFile(rec.id), rec.lastSeq())
	if err != nil {
		a.log.Warn("event log unreadable", logging.KeyVM, rec.id, "ERROR", err.Error())
		return
	}
	a.apply(rec, evs)
}

// appendEvent records an entry in a VM's log on the agent's behalf. Only
// valid while no shim runs the VM: the shim holds the log while it lives.
func (a *Agent) appendEvent(ctx context.Context, rec *record, e api.Event) error {
	// An agent that is stopping records nothing more: the next one will.
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, a.cfg.Layout.EventsFile(rec.id), rec.id)
	if err != nil {
		if errors.Is(err, eventlog.ErrLocked) {
			return errdefs.FailedPrecondition("VM %s: its shim is still running", rec.id)
		}
		return err
	}
	defer l.Close()
	a.catchUp(rec)
	if _, err := l.Append(e); err != nil {
		return err
	}
	a.catchUp(rec)
	return nil
}

// waitFor blocks until the VM's status satisfies ok, ctx ends, or the VM is
// deleted. It returns the VM as last seen.
func (a *Agent) waitFor(ctx context.Context, rec *record, ok func(api.VM) bool) (api.VM, error) {
	sub := a.broker.subscribe(rec.id)
	defer a.broker.unsubscribe(sub)
	for {
		v := rec.view()
		if ok(v) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, &errdefs.Error{Code: errdefs.CodeDeadlineExceeded,
				Message: fmt.Sprintf("VM %s is still %s (%s)", rec.id, v.Status, v.Reason)}
		case _, open := <-sub.ch:
			if !open {
				return rec.view(), nil
			}
		}
	}
}
