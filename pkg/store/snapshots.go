package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// snapshotNameRE is the spelling vm_snapshots_name_check enforces. It is
// wider than what the agent accepts (pkg/qemuimg), so that a name the
// agent took is never refused here.
var snapshotNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// snapshotColumns holds a VM's snapshots as one array per column, for
// unnest. Every slice is non-nil: a NULL array would make the delete keep
// everything. disks holds each snapshot's disk names as a JSON array, as
// unnest would flatten an array of arrays.
type snapshotColumns struct {
	id, name, description []string
	createdAt             []time.Time
	sizeBytes             []int64
	isCurrent, memory     []bool
	powerState, disks     []string
}

func (c snapshotColumns) args() []any {
	return []any{c.id, c.name, c.description, c.createdAt, c.sizeBytes, c.isCurrent, c.memory, c.powerState, c.disks}
}

// snapshotColumnsOf checks a VM's snapshots and makes them storable. It
// checks what storing needs; fields are named as api.Snapshot spells them:
// snapshots[1].name.
func snapshotColumnsOf(vmID string, snaps []api.Snapshot) (snapshotColumns, error) {
	n := len(snaps)
	c := snapshotColumns{
		id: make([]string, 0, n), name: make([]string, 0, n), description: make([]string, 0, n),
		createdAt: make([]time.Time, 0, n), sizeBytes: make([]int64, 0, n), isCurrent: make([]bool, 0, n),
		memory: make([]bool, 0, n), powerState: make([]string, 0, n), disks: make([]string, 0, n),
	}
	if n > math.MaxInt32 {
		return c, errdefs.Invalid("snapshots", "%d snapshots is too many", n)
	}
	names, ids, current := map[string]int{}, map[string]int{}, -1
	for i, sn := range snaps {
		f := fmt.Sprintf("snapshots[%d]", i)
		id, err := parseID(f+".id", sn.ID)
		if err != nil {
			return c, err
		}
		if j, dup := ids[id]; dup {
			return c, errdefs.Invalid(f+".id", "%s is already the id of snapshots[%d]", id, j)
		}
		ids[id] = i
		if sn.VMID != "" {
			if owner, err := parseID(f+".vmId", sn.VMID); err != nil || owner != vmID {
				return c, errdefs.Invalid(f+".vmId", "%q is not VM %s", sn.VMID, vmID)
			}
		}
		if !snapshotNameRE.MatchString(sn.Name) {
			return c, errdefs.Invalid(f+".name", "must be 1 to 128 letters, digits, '-', '_' or '.', got %q", sn.Name)
		}
		if j, dup := names[sn.Name]; dup {
			return c, errdefs.Invalid(f+".name", "%q is already the name of snapshots[%d]", sn.Name, j)
		}
		names[sn.Name] = i
		if sn.CreatedAt.IsZero() {
			return c, errdefs.Invalid(f+".createdAt", "is required")
		}
		if sn.SizeBytes < 0 {
			return c, errdefs.Invalid(f+".sizeBytes", "must not be negative, got %d", sn.SizeBytes)
		}
		if sn.PowerState == "" {
			return c, errdefs.Invalid(f+".powerState", "is required")
		}
		if sn.IsCurrent {
			if current >= 0 {
				return c, errdefs.Invalid(f+".isCurrent", "snapshots[%d] is already the current one", current)
			}
			current = i
		}
		if len(sn.Disks) == 0 {
			return c, errdefs.Invalid(f+".disks", "must name at least one disk")
		}
		for j, d := range sn.Disks {
			if !deviceNameRE.MatchString(d) {
				return c, errdefs.Invalid(fmt.Sprintf("%s.disks[%d]", f, j), "must be a device name, got %q", d)
			}
		}
		disks, err := json.Marshal(sn.Disks)
		if err != nil {
			return c, errdefs.Invalid(f+".disks", "%v", err)
		}
		c.id = append(c.id, id)
		c.name = append(c.name, sn.Name)
		c.description = append(c.description, cleanText(sn.Description, maxTextBytes))
		c.createdAt = append(c.createdAt, sn.CreatedAt)
		c.sizeBytes = append(c.sizeBytes, sn.SizeBytes)
		c.isCurrent = append(c.isCurrent, sn.IsCurrent)
		c.memory = append(c.memory, sn.Memory)
		c.powerState = append(c.powerState, cleanText(string(sn.PowerState), maxShortBytes))
		c.disks = append(c.disks, string(disks))
	}
	return c, nil
}

// syncSnapshotsSQL makes the VM's snapshot rows what $2.. list; a change
// notifies as vmRowsTail says. The rows are matched by id: a snapshot
// deleted and taken again under its name is a new row, which the deferred
// unique name allows in one statement.
var syncSnapshotsSQL = `
WITH s AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::boolean[],
                         $8::boolean[], $9::text[], $10::text[])
        AS s(id, name, description, created_at, size_bytes, is_current, memory, power_state, disks)
),
up AS (
    INSERT INTO infinivirt.vm_snapshots AS x (id, vm_id, name, description, created_at, size_bytes, is_current,
        memory, power_state, disks)
    SELECT s.id, $1::uuid, s.name, s.description, s.created_at, s.size_bytes, s.is_current, s.memory,
        s.power_state, ARRAY(SELECT jsonb_array_elements_text(s.disks::jsonb))
    FROM s
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name, description = EXCLUDED.description, created_at = EXCLUDED.created_at,
        size_bytes = EXCLUDED.size_bytes, is_current = EXCLUDED.is_current, memory = EXCLUDED.memory,
        power_state = EXCLUDED.power_state, disks = EXCLUDED.disks, updated_at = now()
    WHERE x.vm_id = EXCLUDED.vm_id
      AND (x.name, x.description, x.created_at, x.size_bytes, x.is_current, x.memory, x.power_state, x.disks)
        IS DISTINCT FROM
          (EXCLUDED.name, EXCLUDED.description, EXCLUDED.created_at, EXCLUDED.size_bytes, EXCLUDED.is_current,
           EXCLUDED.memory, EXCLUDED.power_state, EXCLUDED.disks)
    RETURNING 1
),` + vmRowsTail("vm_snapshots", "id <> ALL ($2::uuid[])", "false")

// SyncSnapshots makes the VM's snapshot rows the snaps given, its whole
// set: rows of snapshots not among them are deleted. A change notifies
// once; the same set again changes nothing and notifies no one. The VM
// must have been written with UpsertVM first (NotFound otherwise). A
// snapshot the store cannot hold is InvalidArgument, naming its field
// (snapshots[1].name), and nothing is written.
func (s *Store) SyncSnapshots(ctx context.Context, vmID string, snaps []api.Snapshot) error {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return s.wrap("SyncSnapshots", vmID, err)
	}
	cols, err := snapshotColumnsOf(id, snaps)
	if err != nil {
		return s.wrap("SyncSnapshots", id, err)
	}
	return s.do(ctx, "SyncSnapshots", id, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, syncSnapshotsSQL, append([]any{id}, cols.args()...)...)
			return err
		})
	})
}

// Snapshots returns a VM's snapshots as its last SyncSnapshots gave them,
// oldest first; none when the VM is unknown. A soft-deleted VM keeps its
// snapshots until it is purged.
func (s *Store) Snapshots(ctx context.Context, vmID string) ([]api.Snapshot, error) {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return nil, s.wrap("Snapshots", vmID, err)
	}
	var out []api.Snapshot
	err = s.do(ctx, "Snapshots", id, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, `SELECT id::text, name, description, created_at, size_bytes, is_current,
				memory, power_state, disks
			FROM infinivirt.vm_snapshots WHERE vm_id = $1 ORDER BY created_at, name`, id)
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (api.Snapshot, error) {
			sn := api.Snapshot{VMID: id}
			var power string
			err := row.Scan(&sn.ID, &sn.Name, &sn.Description, &sn.CreatedAt, &sn.SizeBytes, &sn.IsCurrent,
				&sn.Memory, &power, &sn.Disks)
			sn.PowerState = api.Status(power)
			return sn, err
		})
		return err
	})
	return out, err
}
