package supervisor

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// UnitSpec describes the unit that runs one VM's shim.
type UnitSpec struct {
	VMID         string
	ExecStart    []string // the shim's command line; required
	ExecStopPost []string // runs after the main process is gone, however it ended
	MemoryMax    uint64   // bytes; 0 means no limit
	TasksMax     uint64   // 0 means DefaultTasksMax
	StopTimeout  time.Duration
	// DeviceAllow are the device nodes the unit may open read-write, by
	// path, or a class of them by systemd's char-<name> (every node of a
	// driver's major in /proc/devices); everything else is denied.
	DeviceAllow []string
	// LimitMEMLOCK is the most memory the unit's processes may lock, soft
	// and hard, in bytes: vfio pins all of a guest's memory. 0 keeps
	// systemd's default.
	LimitMEMLOCK uint64
	// SuccessExitStatus lists non-zero exit codes that count as a clean end.
	SuccessExitStatus []int
	Environment       []string // K=V; VM_ID=<uuid> is always added
	Description       string
}

const (
	// DefaultStopTimeout is TimeoutStopSec when the spec leaves it 0.
	DefaultStopTimeout = 90 * time.Second
	// DefaultTasksMax is TasksMax when the spec leaves it 0: QEMU uses a
	// thread per vCPU and per I/O worker, the shim a few.
	DefaultTasksMax = 4096
)

// deviceAllowRE is a DeviceAllow entry the unit accepts: an absolute path
// without white space, or a class of character devices.
var deviceAllowRE = regexp.MustCompile(`^(/[^\s]+|char-[a-z0-9_-]+)$`)

// execCommand is one entry of an Exec*= property, D-Bus type (sasb). The
// bool is systemd's "ignore failure" flag (the '-' prefix).
type execCommand struct {
	Path          string
	Args          []string
	IgnoreFailure bool
}

// deviceAllow is one DeviceAllow= entry, D-Bus type (ss).
type deviceAllow struct {
	Path   string
	Access string
}

// exitStatusSet is SuccessExitStatus=, D-Bus type (aiai): exit codes, then
// signals. systemd 252 takes this shape for transient units.
type exitStatusSet struct {
	Codes   []int32
	Signals []int32
}

func prop(name string, v any) sddbus.Property {
	return sddbus.Property{Name: name, Value: dbus.MakeVariant(v)}
}

// properties renders the transient unit's properties. Every value has the
// exact D-Bus type systemd checks (uint64 for 't', int32 for 'i' ...).
func (spec UnitSpec) properties() ([]sddbus.Property, error) {
	if len(spec.ExecStart) == 0 || spec.ExecStart[0] == "" {
		return nil, errdefs.Invalid("execStart", "the shim's command line is empty")
	}
	desc := spec.Description
	if desc == "" {
		desc = "Infinivirt VM " + spec.VMID
	}
	stop := spec.StopTimeout
	if stop <= 0 {
		stop = DefaultStopTimeout
	}
	tasks := spec.TasksMax
	if tasks == 0 {
		tasks = DefaultTasksMax
	}
	props := []sddbus.Property{
		sddbus.PropDescription(desc),
		sddbus.PropType("notify"),
		prop("NotifyAccess", "main"),
		sddbus.PropSlice(sliceName),
		prop("KillMode", "mixed"),
		prop("TimeoutStopUSec", uint64(stop/time.Microsecond)),
		// false: a failing shim must fail the unit (true means "ignore failure").
		sddbus.PropExecStart(spec.ExecStart, false),
		prop("DevicePolicy", "closed"),
		prop("TasksMax", tasks),
		prop("StandardOutput", "journal"),
		prop("StandardError", "journal"),
		prop("SyslogIdentifier", "infinivirt-shim"),
		prop("Environment", append([]string{"VM_ID=" + spec.VMID}, spec.Environment...)),
		prop("Restart", "no"),
	}
	if len(spec.ExecStopPost) > 0 {
		if spec.ExecStopPost[0] == "" {
			return nil, errdefs.Invalid("execStopPost", "empty command")
		}
		props = append(props, prop("ExecStopPost", []execCommand{{Path: spec.ExecStopPost[0], Args: spec.ExecStopPost}}))
	}
	devs := make([]deviceAllow, 0, len(spec.DeviceAllow))
	for i, d := range spec.DeviceAllow {
		if !deviceAllowRE.MatchString(d) {
			return nil, errdefs.Invalid(fmt.Sprintf("deviceAllow[%d]", i), "%q is neither an absolute device path nor char-<name>", d)
		}
		devs = append(devs, deviceAllow{Path: d, Access: "rw"})
	}
	if len(devs) > 0 {
		props = append(props, prop("DeviceAllow", devs))
	}
	if spec.MemoryMax > 0 {
		props = append(props, prop("MemoryMax", spec.MemoryMax))
	}
	if spec.LimitMEMLOCK > 0 {
		// Each half on its own: systemd sets the hard limit from
		// LimitMEMLOCK and the soft one from LimitMEMLOCKSoft.
		props = append(props, prop("LimitMEMLOCK", spec.LimitMEMLOCK), prop("LimitMEMLOCKSoft", spec.LimitMEMLOCK))
	}
	if len(spec.SuccessExitStatus) > 0 {
		set := exitStatusSet{Signals: []int32{}}
		for i, c := range spec.SuccessExitStatus {
			if c < 0 || c > 255 {
				return nil, errdefs.Invalid(fmt.Sprintf("successExitStatus[%d]", i), "exit code %d is out of 0..255", c)
			}
			set.Codes = append(set.Codes, int32(c))
		}
		props = append(props, prop("SuccessExitStatus", set))
	}
	return props, nil
}

// Start creates and starts the VM's unit and returns once systemd's start
// job is done, which for Type=notify means the shim sent READY=1. A failed
// unit left from an earlier run is reset first. An active or otherwise
// loaded unit gives AlreadyExists. A start job that does not end in "done"
// gives a *StartError carrying the unit's state. If ctx ends first, the
// unit keeps starting and the error is DeadlineExceeded or Unavailable.
func (s *Supervisor) Start(ctx context.Context, spec UnitSpec) error {
	unit, err := UnitName(spec.VMID)
	if err != nil {
		return err
	}
	props, err := spec.properties()
	if err != nil {
		return err
	}
	// Try at once: a start is the common case and a look first costs two
	// round trips. Only when the name is taken, find out by what.
	err = s.startTransient(ctx, unit, props)
	if !errors.Is(err, errTaken) {
		return err
	}
	st, err := s.unitState(ctx, unit)
	if err != nil && !isNotFound(err) {
		return err
	}
	switch {
	case st.LoadState == "not-found" || st.LoadState == "":
	case st.ActiveState == "failed":
		// A failed unit left from the last run keeps its name until reset.
		if err := s.ResetFailed(ctx, spec.VMID); err != nil && !isNotFound(err) {
			return err
		}
	case st.ActiveState == "inactive":
		// A transient unit still loaded while inactive (for example held by
		// a reference): StartTransientUnit will say whether it can be reused.
	default:
		return errdefs.AlreadyExists("vmId", "unit %s is %s/%s", unit, st.ActiveState, st.SubState)
	}
	err = s.startTransient(ctx, unit, props)
	if errors.Is(err, errTaken) {
		return errdefs.AlreadyExists("vmId", "unit %s is already loaded", unit)
	}
	return err
}

// errTaken marks a start refused because the unit name is loaded.
var errTaken = errors.New("unit name taken")

// startTransient creates the unit and waits for its start job; Type=notify
// makes that the shim's READY=1.
func (s *Supervisor) startTransient(ctx context.Context, unit string, props []sddbus.Property) error {
	done := make(chan string, 1) // written from go-systemd's dispatch goroutine: never block it
	var jobConn *sddbus.Conn
	err := s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		jobConn = c
		_, err := c.StartTransientUnitContext(ctx, unit, "fail", props, done)
		return err
	})
	if dbusErrorName(err) == errUnitExists {
		return errTaken
	}
	if err != nil {
		return mapError(unit, "start", err)
	}
	result, err := s.waitJob(ctx, jobConn, done)
	if err != nil {
		return errdefs.As(fmt.Errorf("start %s: waiting for READY: %w", unit, err))
	}
	if result == "done" {
		return nil
	}
	st, _ := s.unitState(context.WithoutCancel(ctx), unit)
	return newStartError(unit, result, st)
}

// errBusDropped means the connection that would deliver a job's result
// dropped while waiting for it.
var errBusDropped = errdefs.Unavailable("the systemd bus connection dropped while waiting for the job")

// waitJob waits for a job result. The result arrives as a signal on the
// method connection, so a drop of that connection ends the wait too.
func (s *Supervisor) waitJob(ctx context.Context, conn *sddbus.Conn, done <-chan string) (string, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case result := <-done:
			return result, nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
			if !conn.Connected() {
				return "", errBusDropped
			}
		}
	}
}

// StartError is a start job that did not end in "done". It unwraps to the
// typed *errdefs.Error of its class.
type StartError struct {
	Unit      string
	JobResult string // failed, timeout, canceled, dependency, skipped ...
	State     UnitState
	err       *errdefs.Error
}

func newStartError(unit, result string, st UnitState) *StartError {
	msg := fmt.Sprintf("start %s: job %s; unit %s/%s result=%s exit=%s", unit, result,
		st.ActiveState, st.SubState, st.Result, st.ExitDescription())
	var e *errdefs.Error
	switch result {
	case "failed":
		e = errdefs.FailedPrecondition("%s", msg)
	case "timeout":
		e = &errdefs.Error{Code: errdefs.CodeDeadlineExceeded, Message: msg}
	case "canceled":
		e = errdefs.Unavailable("%s", msg)
	default:
		e = errdefs.Internal("%s", msg)
	}
	return &StartError{Unit: unit, JobResult: result, State: st, err: e}
}

func (e *StartError) Error() string { return e.err.Error() }
func (e *StartError) Unwrap() error { return e.err }

// Stop stops the VM's unit and waits for the stop job: SIGTERM to the shim,
// SIGKILL to all that is left after StopTimeout, then ExecStopPost.
func (s *Supervisor) Stop(ctx context.Context, vmID string) error {
	unit, err := UnitName(vmID)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	var jobConn *sddbus.Conn
	err = s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		jobConn = c
		_, err := c.StopUnitContext(ctx, unit, "replace", done)
		return err
	})
	if err != nil {
		return mapError(unit, "stop", err)
	}
	result, err := s.waitJob(ctx, jobConn, done)
	if err != nil {
		return errdefs.As(fmt.Errorf("stop %s: %w", unit, err))
	}
	if result != "done" {
		return errdefs.Internal("stop %s: job %s", unit, result)
	}
	return nil
}

// Kill sends sig to the unit's main process (the shim) only.
func (s *Supervisor) Kill(ctx context.Context, vmID string, sig syscall.Signal) error {
	unit, err := UnitName(vmID)
	if err != nil {
		return err
	}
	return mapError(unit, "kill", s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		return c.KillUnitWithTarget(ctx, unit, sddbus.Main, int32(sig))
	}))
}

// ResetFailed clears a failed unit so that its name can be started again;
// with the default CollectMode this also unloads it.
func (s *Supervisor) ResetFailed(ctx context.Context, vmID string) error {
	unit, err := UnitName(vmID)
	if err != nil {
		return err
	}
	return mapError(unit, "reset-failed", s.call(ctx, func(ctx context.Context, c *sddbus.Conn) error {
		return c.ResetFailedUnitContext(ctx, unit)
	}))
}
