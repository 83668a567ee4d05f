// Package supervisor runs each VM's shim as a transient systemd unit,
// infinivirt-shim@<uuid>.service, over D-Bus: start, stop, kill, read its
// state and watch its state changes.
//
// No infinivirt-shim@.service template may be installed: with a template on
// disk systemd refuses transient units of that name.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Options configure a Supervisor.
type Options struct {
	// BusAddress is the D-Bus address of the system bus; empty means
	// $DBUS_SYSTEM_BUS_ADDRESS or the standard socket.
	BusAddress string
	// CallTimeout bounds every D-Bus call; default 10 s.
	CallTimeout time.Duration
}

// Supervisor talks to systemd. It is safe for concurrent use.
type Supervisor struct {
	opts Options

	// life is the lifetime of every connection: go-systemd and godbus close
	// a connection when the context given at dial time ends.
	life   context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	conn *sddbus.Conn // nil after a drop until the next call redials

	watchers sync.WaitGroup
	drops    dropCounter
	wmu      sync.Mutex
	active   map[*watcher]struct{} // running watchers: the tests drop their connections
}

const (
	defaultCallTimeout = 10 * time.Second
	defaultSystemBus   = "unix:path=/run/dbus/system_bus_socket"

	unitPrefix = "infinivirt-shim@"
	unitSuffix = ".service"
	unitGlob   = unitPrefix + "*"
	sliceName  = "infinivirt.slice"

	systemdDest = "org.freedesktop.systemd1"
	systemdPath = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIfc  = "org.freedesktop.systemd1.Manager"
	unitIfc     = "org.freedesktop.systemd1.Unit"
	serviceIfc  = "org.freedesktop.systemd1.Service"

	errUnitExists = "org.freedesktop.systemd1.UnitExists"
	errNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"
	// A unit whose main process has ended, for example while its
	// ExecStopPost cleanup runs: there is nothing left to signal.
	errNoSuchProcess = "org.freedesktop.systemd1.NoSuchProcess"
)

// New connects to systemd. ctx bounds the first connection only; the
// connection lives until Close.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = defaultCallTimeout
	}
	if opts.BusAddress == "" {
		opts.BusAddress = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if opts.BusAddress == "" {
		opts.BusAddress = defaultSystemBus
	}
	life, cancel := context.WithCancel(context.Background())
	s := &Supervisor{opts: opts, life: life, cancel: cancel, active: map[*watcher]struct{}{}}
	if _, err := s.connection(ctx); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// Close ends every connection and waits for the watchers to stop.
func (s *Supervisor) Close() error {
	s.cancel()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	s.mu.Unlock()
	s.watchers.Wait()
	return nil
}

// dialBus opens and authenticates one bus connection that lives until the
// supervisor is closed. Authentication and Hello are bounded by ctx.
func (s *Supervisor) dialBus(ctx context.Context) (*dbus.Conn, error) {
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := dbus.Dial(s.opts.BusAddress, dbus.WithContext(s.life))
		if err == nil {
			if err = conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err == nil {
				err = conn.Hello()
			}
			if err != nil {
				conn.Close()
			}
		}
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, errdefs.Unavailable("systemd bus %s: %v", s.opts.BusAddress, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, errdefs.As(fmt.Errorf("systemd bus %s: %w", s.opts.BusAddress, ctx.Err()))
	}
}

// connection returns the method connection, redialing after a drop.
func (s *Supervisor) connection(ctx context.Context) (*sddbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.Err() != nil {
		return nil, errdefs.Unavailable("supervisor is closed")
	}
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return s.dialBus(ctx) })
	if err != nil {
		return nil, errdefs.As(err)
	}
	s.conn = conn
	return conn, nil
}

// call runs one D-Bus call with the call timeout.
func (s *Supervisor) call(ctx context.Context, f func(ctx context.Context, c *sddbus.Conn) error) error {
	c, err := s.connection(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	return f(cctx, c)
}

// UnitName is the unit of vmID, after checking that vmID is a UUID.
func UnitName(vmID string) (string, error) {
	id, err := uuid.Parse(vmID)
	if err != nil || id.String() != vmID {
		return "", errdefs.Invalid("vmId", "%q is not a UUID in canonical form", vmID)
	}
	return vmspec.UnitName(vmID), nil
}

// VMIDFromUnit returns the VM id of an infinivirt-shim@<uuid>.service unit.
func VMIDFromUnit(unit string) (string, bool) {
	if len(unit) <= len(unitPrefix)+len(unitSuffix) || unit[:len(unitPrefix)] != unitPrefix ||
		unit[len(unit)-len(unitSuffix):] != unitSuffix {
		return "", false
	}
	id := unit[len(unitPrefix) : len(unit)-len(unitSuffix)]
	if _, err := uuid.Parse(id); err != nil {
		return "", false
	}
	return id, true
}

// dbusErrorName is the D-Bus error name of err, or "".
func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Name
	}
	return ""
}

// mapError turns a D-Bus failure about unit into a typed error.
func mapError(unit, op string, err error) error {
	if err == nil {
		return nil
	}
	switch dbusErrorName(err) {
	case errUnitExists:
		return errdefs.AlreadyExists("vmId", "%s: unit %s is already loaded: %v", op, unit, err)
	case errNoSuchUnit:
		return errdefs.NotFound("%s: unit %s is not loaded: %v", op, unit, err)
	case errNoSuchProcess:
		return errdefs.NotFound("%s: unit %s has no process to signal: %v", op, unit, err)
	}
	e := errdefs.As(fmt.Errorf("%s %s: %w", op, unit, err))
	if e.Code == errdefs.CodeInternal && !isDBusError(err) {
		// Transport failures: the bus or systemd is not answering.
		e.Code = errdefs.CodeUnavailable
	}
	return e
}

func isDBusError(err error) bool { return dbusErrorName(err) != "" }
