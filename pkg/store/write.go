package store

import (
	"context"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Each write announces a change in the statement that makes it: the
// data-modifying CTE returns a row only when something changed, and
// pg_notify runs once per returned row. NOTIFY is delivered at commit.

// upsertVMSQL affects a row only when the inventory changed; UpsertVM's
// device statement that follows sends the NOTIFY.
const upsertVMSQL = `
    INSERT INTO infinivirt.vms AS v (id, host, name, os, cpu_cores, ram_mib, disk_bytes, mac, bridge,
        graphic_protocol, graphic_listen, graphic_port, status, reason, message, seq, qemu_pid)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    ON CONFLICT (id) DO UPDATE SET
        host = EXCLUDED.host, name = EXCLUDED.name, os = EXCLUDED.os,
        cpu_cores = EXCLUDED.cpu_cores, ram_mib = EXCLUDED.ram_mib, disk_bytes = EXCLUDED.disk_bytes,
        mac = EXCLUDED.mac, bridge = EXCLUDED.bridge, graphic_protocol = EXCLUDED.graphic_protocol,
        graphic_listen = EXCLUDED.graphic_listen, graphic_port = EXCLUDED.graphic_port,
        updated_at = now()
    WHERE (v.host, v.name, v.os, v.cpu_cores, v.ram_mib, v.disk_bytes, v.mac, v.bridge,
           v.graphic_protocol, v.graphic_listen, v.graphic_port)
        IS DISTINCT FROM
          (EXCLUDED.host, EXCLUDED.name, EXCLUDED.os, EXCLUDED.cpu_cores, EXCLUDED.ram_mib, EXCLUDED.disk_bytes,
           EXCLUDED.mac, EXCLUDED.bridge, EXCLUDED.graphic_protocol, EXCLUDED.graphic_listen, EXCLUDED.graphic_port)`

// UpsertVM records a VM's inventory: name, sizes, network, display, host,
// and its devices (one vm_devices row each; rows of devices vm no longer
// has are deleted), in one transaction. A new row also takes vm's status,
// reason, message, seq and QEMU PID; an existing row keeps them, since only
// ApplyEvents moves status, and only forward. Writing the same inventory
// again changes nothing and notifies no one. A soft-deleted row stays
// deleted. A device the store cannot hold is InvalidArgument, naming its
// field (devices[1].name), and nothing is written.
func (s *Store) UpsertVM(ctx context.Context, vm api.VM) error {
	id, err := parseID("id", vm.ID)
	if err != nil {
		return s.wrap("UpsertVM", vm.ID, err)
	}
	ramMiB, err := toUnits("ramGB", vm.RAMGB, 1024)
	if err != nil {
		return s.wrap("UpsertVM", id, err)
	}
	diskBytes, err := toUnits("diskSizeGB", vm.DiskSizeGB, 1<<30)
	if err != nil {
		return s.wrap("UpsertVM", id, err)
	}
	if vm.Seq > math.MaxInt64 {
		return s.wrap("UpsertVM", id, errdefs.Invalid("seq", "%d does not fit a bigint", vm.Seq))
	}
	status := vm.Status
	if status == "" {
		status = api.StatusOff
	}
	args := []any{id, cleanText(s.opts.Host, 255), cleanText(vm.Name, 255), cleanText(vm.OS, 64),
		vm.CPUCores, ramMiB, diskBytes, cleanText(vm.MACAddress, 64), cleanText(vm.NetworkBridge, 64),
		cleanText(vm.GraphicProtocol, 32), cleanText(vm.GraphicListen, 255), vm.GraphicPort,
		string(status), nullText(string(vm.Reason)), nullText(vm.Message), int64(vm.Seq), nullPID(api.Event{Status: status, QEMUPID: vm.QEMUPID}.RunningPID())}
	devices, err := deviceColumnsOf(vm.Devices)
	if err != nil {
		return s.wrap("UpsertVM", id, err)
	}
	return s.do(ctx, "UpsertVM", id, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, upsertVMSQL, args...)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, syncDevicesSQL, append([]any{id, tag.RowsAffected() > 0}, devices.args()...)...)
			return err
		})
	})
}

const insertEventsSQL = `
INSERT INTO infinivirt.vm_events (vm_id, seq, at, type, status, reason, message, qemu_pid, exit_code, signal)
SELECT $1, e.seq, coalesce(e.at, now()), e.type, e.status, e.reason, e.message, e.qemu_pid, e.exit_code, e.signal
FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::integer[], $9::integer[], $10::text[])
     AS e(seq, at, type, status, reason, message, qemu_pid, exit_code, signal)
ON CONFLICT (vm_id, seq) DO NOTHING`

const applyStatusSQL = `
WITH up AS (
    UPDATE infinivirt.vms
    SET status = $2, reason = $3, message = $4, qemu_pid = $5, seq = $6, updated_at = now()
    WHERE id = $1 AND seq < $6
    RETURNING id
)
SELECT pg_notify('` + NotifyChannel + `', id::text) FROM up`

// eventColumns holds a batch as one array per column, for unnest.
type eventColumns struct {
	seq      []int64
	at       []*time.Time
	typ      []string
	status   []*string
	reason   []*string
	message  []*string
	qemuPID  []*int32
	exitCode []*int32
	signal   []*string
}

// ApplyEvents stores a batch of one VM's events and, in the same
// transaction, moves the VM row to the newest status event of the batch if
// that event is newer than the row (by seq), then notifies. Events already
// stored are skipped, so replaying a batch changes nothing and sends no
// NOTIFY, and an older batch arriving late never moves the row backwards.
// The VM must have been written with UpsertVM first (NotFound otherwise).
func (s *Store) ApplyEvents(ctx context.Context, vmID string, events []api.Event) error {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return s.wrap("ApplyEvents", vmID, err)
	}
	if len(events) == 0 {
		return nil
	}
	cols := eventColumns{}
	var newest *api.Event
	for i := range events {
		e := &events[i]
		if e.VMID != "" && e.VMID != vmID && e.VMID != id {
			return s.wrap("ApplyEvents", id, errdefs.Invalid("vmId", "event %d belongs to VM %s", e.Seq, e.VMID))
		}
		if e.Seq == 0 || e.Seq > math.MaxInt64 {
			return s.wrap("ApplyEvents", id, errdefs.Invalid("seq", "%d is out of range 1..2^63-1", e.Seq))
		}
		cols.seq = append(cols.seq, int64(e.Seq))
		cols.at = append(cols.at, nullTime(e.Time))
		cols.typ = append(cols.typ, cleanText(string(e.Type), 32))
		cols.status = append(cols.status, nullText(string(e.Status)))
		cols.reason = append(cols.reason, nullText(string(e.Reason)))
		cols.message = append(cols.message, nullText(e.Message))
		cols.qemuPID = append(cols.qemuPID, nullPID(e.QEMUPID))
		cols.exitCode = append(cols.exitCode, nullInt(e.ExitCode))
		cols.signal = append(cols.signal, nullText(e.Signal))
		if e.Type == api.EventStatus && (newest == nil || e.Seq > newest.Seq) {
			newest = e
		}
	}

	return s.do(ctx, "ApplyEvents", id, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// Both statements go in one round trip; the insert runs first.
			b := &pgx.Batch{}
			b.Queue(insertEventsSQL, id, cols.seq, cols.at, cols.typ, cols.status,
				cols.reason, cols.message, cols.qemuPID, cols.exitCode, cols.signal)
			if newest != nil {
				b.Queue(applyStatusSQL, id, string(newest.Status), nullText(string(newest.Reason)),
					nullText(newest.Message), nullPID(newest.RunningPID()), int64(newest.Seq))
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			if s.beforeCommit != nil {
				s.beforeCommit()
			}
			return nil
		})
	})
}

const markDeletedSQL = `
WITH up AS (
    UPDATE infinivirt.vms SET deleted_at = now(), updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL
    RETURNING id
)
SELECT pg_notify('` + NotifyChannel + `', id::text) FROM up`

// MarkDeleted soft-deletes a VM: the row and its events stay, with
// deleted_at set, so the backend can still show its history. Marking a VM
// that is already deleted, or unknown, does nothing.
func (s *Store) MarkDeleted(ctx context.Context, vmID string) error {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return s.wrap("MarkDeleted", vmID, err)
	}
	return s.do(ctx, "MarkDeleted", id, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, markDeletedSQL, id)
		return err
	})
}

const purgeSQL = `
WITH gone AS (
    DELETE FROM infinivirt.vms WHERE id = $1 RETURNING id
)
SELECT pg_notify('` + NotifyChannel + `', id::text) FROM gone`

// Purge removes a VM and its whole event history for good (the events go
// with the row, ON DELETE CASCADE). The agent uses it when a VM's files are
// gone and its history is no longer wanted; purging an unknown VM does nothing.
func (s *Store) Purge(ctx context.Context, vmID string) error {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return s.wrap("Purge", vmID, err)
	}
	return s.do(ctx, "Purge", id, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, purgeSQL, id)
		return err
	})
}

// parseID checks a VM id is a UUID and returns its canonical spelling, the
// one NOTIFY payloads and reads use.
func parseID(field, s string) (string, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return "", errdefs.Invalid(field, "%q is not a UUID", s)
	}
	return u.String(), nil
}

// toUnits converts the API's fractional GiB to whole units (MiB or bytes).
func toUnits(field string, gib float64, per float64) (int64, error) {
	v := math.Round(gib * per)
	if math.IsNaN(v) || v < 0 || v > math.MaxInt64/2 {
		return 0, errdefs.Invalid(field, "%v is out of range", gib)
	}
	return int64(v), nil
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	s = cleanText(s, maxTextBytes)
	return &s
}

func nullPID(pid int) *int32 {
	if pid <= 0 || pid > math.MaxInt32 {
		return nil
	}
	p := int32(pid)
	return &p
}

func nullInt(v *int) *int32 {
	if v == nil || *v < math.MinInt32 || *v > math.MaxInt32 {
		return nil
	}
	p := int32(*v)
	return &p
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
