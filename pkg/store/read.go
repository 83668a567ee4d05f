package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Row is one VM as the database holds it.
type Row struct {
	ID              string
	Host            string
	Name            string
	OS              string
	CPUCores        int
	RAMMiB          int64
	DiskBytes       int64
	MAC             string
	Bridge          string
	GraphicProtocol string
	GraphicListen   string
	GraphicPort     int
	Status          api.Status
	Reason          api.Reason
	Message         string
	Seq             uint64 // of the event that set Status
	QEMUPID         int
	CreatedAt       time.Time
	UpdatedAt       time.Time
	DeletedAt       *time.Time // set once the VM is soft-deleted
}

// VM returns the row in API form. Fields the database does not hold
// (disk format, accelerator, boot, autostart, unit) stay empty.
func (r Row) VM() api.VM {
	return api.VM{
		ID:              r.ID,
		Name:            r.Name,
		OS:              r.OS,
		CPUCores:        r.CPUCores,
		RAMGB:           float64(r.RAMMiB) / 1024,
		DiskSizeGB:      float64(r.DiskBytes) / (1 << 30),
		MACAddress:      r.MAC,
		NetworkBridge:   r.Bridge,
		GraphicProtocol: r.GraphicProtocol,
		GraphicListen:   r.GraphicListen,
		GraphicPort:     r.GraphicPort,
		Status:          r.Status,
		Reason:          r.Reason,
		Message:         r.Message,
		Seq:             r.Seq,
		QEMUPID:         r.QEMUPID,
		UpdatedAt:       r.UpdatedAt,
	}
}

const rowColumns = `id::text, host, name, os, cpu_cores, ram_mib, disk_bytes, mac, bridge,
    graphic_protocol, graphic_listen, graphic_port, status, coalesce(reason, ''), coalesce(message, ''),
    seq, coalesce(qemu_pid, 0), created_at, updated_at, deleted_at`

func scanRow(rows pgx.CollectableRow) (Row, error) {
	var r Row
	var status, reason string
	var seq int64
	err := rows.Scan(&r.ID, &r.Host, &r.Name, &r.OS, &r.CPUCores, &r.RAMMiB, &r.DiskBytes, &r.MAC, &r.Bridge,
		&r.GraphicProtocol, &r.GraphicListen, &r.GraphicPort, &status, &reason, &r.Message,
		&seq, &r.QEMUPID, &r.CreatedAt, &r.UpdatedAt, &r.DeletedAt)
	r.Status, r.Reason, r.Seq = api.Status(status), api.Reason(reason), uint64(seq)
	return r, err
}

// GetVM returns one VM, soft-deleted or not; NotFound when unknown.
func (s *Store) GetVM(ctx context.Context, vmID string) (Row, error) {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return Row{}, s.wrap("GetVM", vmID, err)
	}
	var r Row
	err = s.do(ctx, "GetVM", id, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, `SELECT `+rowColumns+` FROM infinivirt.vms WHERE id = $1`, id)
		var err error
		r, err = pgx.CollectExactlyOneRow(rows, scanRow)
		if errors.Is(err, pgx.ErrNoRows) {
			return errdefs.NotFound("vm %s is not in the store", id)
		}
		return err
	})
	return r, err
}

// ListOptions filter ListVMs.
type ListOptions struct {
	Host           string // only this host's VMs; empty for all hosts
	IncludeDeleted bool   // also soft-deleted VMs
}

// ListVMs returns VMs ordered by host, then name, then id.
func (s *Store) ListVMs(ctx context.Context, opts ListOptions) ([]Row, error) {
	var out []Row
	err := s.do(ctx, "ListVMs", "", func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, `SELECT `+rowColumns+` FROM infinivirt.vms
			WHERE ($1 = '' OR host = $1) AND ($2 OR deleted_at IS NULL)
			ORDER BY host, name, id`, opts.Host, opts.IncludeDeleted)
		var err error
		out, err = pgx.CollectRows(rows, scanRow)
		return err
	})
	return out, err
}

// LastSeq is the highest seq of the VM's stored history, so the agent
// resumes the shim's event log after it. The row's own seq does not count:
// a row written before its history (a new VM, a database enabled on a host
// with VMs) still gets every entry. 0 when the VM or its events are
// unknown.
func (s *Store) LastSeq(ctx context.Context, vmID string) (uint64, error) {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return 0, s.wrap("LastSeq", vmID, err)
	}
	var seq int64
	err = s.do(ctx, "LastSeq", id, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM infinivirt.vm_events WHERE vm_id = $1`, id).Scan(&seq)
	})
	return uint64(seq), err
}

// maxEventsPage bounds one Events call.
const maxEventsPage = 10000

// Events returns up to limit events of a VM with seq > afterSeq, oldest
// first. limit <= 0 means 1000; it is capped at 10000.
func (s *Store) Events(ctx context.Context, vmID string, afterSeq uint64, limit int) ([]api.Event, error) {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return nil, s.wrap("Events", vmID, err)
	}
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, maxEventsPage)
	after := int64(min(afterSeq, uint64(1<<63-1)))
	var out []api.Event
	err = s.do(ctx, "Events", id, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, `SELECT seq, at, type, coalesce(status, ''), coalesce(reason, ''),
				coalesce(message, ''), coalesce(qemu_pid, 0), exit_code, coalesce(signal, '')
			FROM infinivirt.vm_events WHERE vm_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, id, after, limit)
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (api.Event, error) {
			var e api.Event
			var seq int64
			var typ, status, reason string
			var exitCode *int32
			err := row.Scan(&seq, &e.Time, &typ, &status, &reason, &e.Message, &e.QEMUPID, &exitCode, &e.Signal)
			e.Seq, e.VMID = uint64(seq), id
			e.Type, e.Status, e.Reason = api.EventType(typ), api.Status(status), api.Reason(reason)
			if exitCode != nil {
				c := int(*exitCode)
				e.ExitCode = &c
			}
			return e, err
		})
		return err
	})
	return out, err
}
