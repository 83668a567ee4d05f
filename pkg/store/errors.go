package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Error is a failed store call: the class the agent acts on (Unavailable
// means "the database is away, retry later"; anything else is a bug or bad
// input) and the driver error behind it.
//
// errors.As(err, &apiErr) finds the *errdefs.Error class, so api.AsError and
// errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable}) work, and errors.As
// still reaches the *pgconn.PgError or network error underneath.
type Error struct {
	Op    string         // the store method, e.g. "ApplyEvents"
	VMID  string         // the VM concerned, when there is one
	Class *errdefs.Error // what kind of failure
	Err   error          // the driver's error
}

func (e *Error) Error() string { return e.Class.Error() }

func (e *Error) Unwrap() []error { return []error{e.Class, e.Err} }

// IsUnavailable reports whether err means the database cannot be reached
// now, so the write should be retried (replayed) later.
func IsUnavailable(err error) bool {
	return errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable})
}

// wrap classifies err and names the operation; nil stays nil.
func (s *Store) wrap(op, vmID string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	class := classify(err)
	prefix := "store " + op
	if vmID != "" {
		prefix += " vm " + vmID
	}
	class = &errdefs.Error{Code: class.Code, Field: class.Field, Message: prefix + ": " + class.Message}
	return &Error{Op: op, VMID: vmID, Class: class, Err: err}
}

// classify maps a driver error to an API error class. The message is the
// most useful text the error carries.
func classify(err error) *errdefs.Error {
	var ae *errdefs.Error
	if errors.As(err, &ae) {
		return ae
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return &errdefs.Error{Code: errdefs.CodeUnavailable, Message: "database unreachable: " + err.Error()}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return classifyPgError(pe)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return &errdefs.Error{Code: errdefs.CodeDeadlineExceeded, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &errdefs.Error{Code: errdefs.CodeUnavailable, Message: err.Error()}
	case connectionLost(err):
		return &errdefs.Error{Code: errdefs.CodeUnavailable, Message: "database connection lost: " + err.Error()}
	}
	return &errdefs.Error{Code: errdefs.CodeInternal, Message: err.Error()}
}

// connectionLost reports errors that mean "no usable connection", as
// opposed to an answer from the server.
func connectionLost(err error) bool {
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &ce), pgconn.SafeToRetry(err):
		return true
	case errors.As(err, &pe):
		return pgUnavailable(pe.Code)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ENOENT):
		return true
	case errors.As(err, &ne):
		return true
	}
	return false
}

// pgUnavailable is true for SQLSTATEs that mean "try again later": connection
// exceptions, shutdowns, resource shortage, serialization failures.
func pgUnavailable(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection_exception
		strings.HasPrefix(code, "53"),                     // insufficient_resources (too_many_connections, disk_full)
		code == "57P01", code == "57P02", code == "57P03", // admin/crash shutdown, cannot_connect_now
		code == "40001", code == "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return false
}

func classifyPgError(pe *pgconn.PgError) *errdefs.Error {
	msg := pe.Message
	if pe.Detail != "" {
		msg += " (" + pe.Detail + ")"
	}
	msg += " [SQLSTATE " + pe.Code + "]"
	switch {
	case pgUnavailable(pe.Code):
		return &errdefs.Error{Code: errdefs.CodeUnavailable, Message: msg}
	case pe.Code == "57014": // query_canceled: statement_timeout or our deadline
		return &errdefs.Error{Code: errdefs.CodeDeadlineExceeded, Message: msg}
	case pe.Code == "23514": // check_violation
		return &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: fieldOfConstraint(pe.ConstraintName), Message: msg}
	case pe.Code == "23502": // not_null_violation
		return &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: columnField(pe.TableName, pe.ColumnName), Message: msg}
	case pe.Code == "23503": // foreign_key_violation: events for a VM the store does not know
		return &errdefs.Error{Code: errdefs.CodeNotFound, Message: msg}
	case pe.Code == "23505": // unique_violation
		return &errdefs.Error{Code: errdefs.CodeAlreadyExists, Field: fieldOfConstraint(pe.ConstraintName), Message: msg}
	case pe.Code == "23P01": // exclusion_violation: a second current snapshot
		return &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: fieldOfConstraint(pe.ConstraintName), Message: msg}
	case strings.HasPrefix(pe.Code, "22"): // data_exception: bad value or encoding
		return &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: columnField(pe.TableName, pe.ColumnName), Message: msg}
	}
	return &errdefs.Error{Code: errdefs.CodeInternal, Message: msg}
}

// fieldOfConstraint turns our constraint names (<table>_<column>_check)
// into the JSON field the caller knows.
func fieldOfConstraint(name string) string {
	for _, table := range []string{"vm_devices", "vm_events", "vm_snapshots", "vms"} {
		if rest, ok := strings.CutPrefix(name, table+"_"); ok {
			rest = strings.TrimSuffix(rest, "_check")
			rest = strings.TrimSuffix(rest, "_required")
			rest = strings.TrimSuffix(rest, "_key")
			return columnField(table, rest)
		}
	}
	return name
}

// columnField names a table's column as the caller's JSON does. The
// database cannot tell which device or snapshot broke a rule, so their
// columns are named under "devices" or "snapshots" without an index;
// UpsertVM's and SyncSnapshots' own checks name it.
func columnField(table, column string) string {
	switch table {
	case "vm_snapshots":
		return snapshotField(column)
	case "vm_devices":
	default:
		return jsonField(column)
	}
	switch column {
	case "size_bytes":
		return "devices.disk.sizeBytes"
	case "boot_index":
		return "devices.bootIndex"
	case "pci_host":
		return "devices.pci.host"
	case "usb_vendor_id":
		return "devices.usb.vendorId"
	case "usb_product_id":
		return "devices.usb.productId"
	case "mac", "bridge":
		return "devices.nic." + column
	case "format":
		return "devices.disk.format"
	case "port":
		return "devices.channel.port"
	case "vm_id":
		return "vmId"
	}
	return "devices." + column
}

// jsonField spells a column the way api.VM and api.Event do.
func jsonField(column string) string {
	switch column {
	case "cpu_cores":
		return "cpuCores"
	case "ram_mib":
		return "ramGB"
	case "disk_bytes":
		return "diskSizeGB"
	case "mac":
		return "macAddress"
	case "bridge":
		return "networkBridge"
	case "graphic_protocol":
		return "graphicProtocol"
	case "graphic_listen":
		return "graphicListen"
	case "graphic_port":
		return "graphicPort"
	case "qemu_pid":
		return "qemuPid"
	case "exit_code":
		return "exitCode"
	case "vm_id":
		return "vmId"
	case "at":
		return "time"
	}
	return column
}

// snapshotField spells a vm_snapshots column the way api.Snapshot does.
func snapshotField(column string) string {
	switch column {
	case "vm_id":
		return "vmId"
	case "created_at":
		return "snapshots.createdAt"
	case "size_bytes":
		return "snapshots.sizeBytes"
	case "is_current":
		return "snapshots.isCurrent"
	case "power_state":
		return "snapshots.powerState"
	}
	return "snapshots." + column
}
