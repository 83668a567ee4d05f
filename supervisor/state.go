package supervisor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"syscall"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// UnitState is what systemd knows about one VM's unit.
type UnitState struct {
	VMID         string
	Unit         string
	LoadState    string // loaded, not-found ...
	ActiveState  string // active, activating, deactivating, inactive, failed
	SubState     string // running, dead, failed, stop-sigterm ...
	Result       string // success, exit-code, signal, timeout, core-dump ...
	ExecMainCode int32  // CLD_EXITED (1), CLD_KILLED (2), CLD_DUMPED (3); 0 while running
	// ExecMainStatus is the exit code, or the signal number when the main
	// process was killed.
	ExecMainStatus int32
	MainPID        uint32 // in systemd's PID namespace; 0 when not running
	StatusText     string // the shim's last STATUS= line
	InvocationID   string // hex; changes with every start
}

// Code values of ExecMainCode (waitid's si_code).
const (
	CLDExited int32 = 1
	CLDKilled int32 = 2
	CLDDumped int32 = 3
)

// ExitDescription renders ExecMainCode/ExecMainStatus as "status=N" or
// "signal=KILL".
func (u UnitState) ExitDescription() string {
	switch u.ExecMainCode {
	case CLDExited:
		return fmt.Sprintf("status=%d", u.ExecMainStatus)
	case CLDKilled, CLDDumped:
		return "signal=" + signalName(u.ExecMainStatus)
	}
	return "none"
}

func signalName(n int32) string {
	if s := syscall.Signal(n).String(); s != "" {
		return fmt.Sprintf("%d (%s)", n, s)
	}
	return fmt.Sprint(n)
}

func isNotFound(err error) bool {
	return errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound})
}

// State reads the VM's unit. A unit systemd does not know gives NotFound
// (with LoadState "not-found" in the returned state).
func (s *Supervisor) State(ctx context.Context, vmID string) (UnitState, error) {
	unit, err := UnitName(vmID)
	if err != nil {
		return UnitState{}, err
	}
	return s.unitState(ctx, unit)
}

func (s *Supervisor) unitState(ctx context.Context, unit string) (UnitState, error) {
	st := UnitState{Unit: unit}
	st.VMID, _ = VMIDFromUnit(unit)
	var unitProps, svcProps map[string]any
	err := s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		var err error
		unitProps, err = c.GetUnitPropertiesContext(ctx, unit)
		return err
	})
	if err != nil {
		return st, mapError(unit, "state", err)
	}
	fillUnitProps(&st, unitProps)
	if st.LoadState == "not-found" {
		// systemd answers for unknown names too, with LoadState not-found.
		return st, errdefs.NotFound("unit %s is not loaded", unit)
	}
	err = s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		var err error
		svcProps, err = c.GetUnitTypePropertiesContext(ctx, unit, "Service")
		return err
	})
	if err != nil {
		return st, mapError(unit, "state", err)
	}
	fillServiceProps(&st, svcProps)
	return st, nil
}

// List returns the state of every infinivirt-shim@ unit systemd has loaded.
func (s *Supervisor) List(ctx context.Context) ([]UnitState, error) {
	var units []sddbus.UnitStatus
	err := s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		var err error
		units, err = c.ListUnitsByPatternsContext(ctx, nil, []string{unitGlob})
		return err
	})
	if err != nil {
		return nil, mapError(unitGlob, "list", err)
	}
	out := make([]UnitState, 0, len(units))
	for _, u := range units {
		id, ok := VMIDFromUnit(u.Name)
		if !ok {
			continue
		}
		st := UnitState{VMID: id, Unit: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState}
		var svc map[string]any
		err := s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
			var err error
			svc, err = c.GetUnitTypePropertiesContext(ctx, u.Name, "Service")
			return err
		})
		if err := mapError(u.Name, "list", err); err != nil && !isNotFound(err) {
			return nil, err // a unit gone since the listing has no Service properties: keep what the listing said
		}
		fillServiceProps(&st, svc)
		out = append(out, st)
	}
	return out, nil
}

// fillUnitProps copies the org.freedesktop.systemd1.Unit properties we use.
// Values of an unexpected type are left empty: the input is systemd's.
func fillUnitProps(st *UnitState, p map[string]any) {
	setString(&st.LoadState, p["LoadState"])
	setString(&st.ActiveState, p["ActiveState"])
	setString(&st.SubState, p["SubState"])
	if b, ok := p["InvocationID"].([]byte); ok {
		st.InvocationID = hex.EncodeToString(b)
	}
}

// fillServiceProps copies the org.freedesktop.systemd1.Service properties.
func fillServiceProps(st *UnitState, p map[string]any) {
	setString(&st.Result, p["Result"])
	setString(&st.StatusText, p["StatusText"])
	if v, ok := p["ExecMainCode"].(int32); ok {
		st.ExecMainCode = v
	}
	if v, ok := p["ExecMainStatus"].(int32); ok {
		st.ExecMainStatus = v
	}
	if v, ok := p["MainPID"].(uint32); ok {
		st.MainPID = v
	}
}

func setString(dst *string, v any) {
	if s, ok := v.(string); ok {
		*dst = s
	}
}

// variantValues unwraps a PropertiesChanged map.
func variantValues(m map[string]dbus.Variant) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.Value()
	}
	return out
}
