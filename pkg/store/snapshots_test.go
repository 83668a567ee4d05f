package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// testSnapshot is a snapshot of vmID's disk0 as the agent lists it.
func testSnapshot(vmID, name string, at time.Time) api.Snapshot {
	return api.Snapshot{
		ID: uuid.NewString(), VMID: vmID, Name: name, Description: "before " + name,
		CreatedAt: at, PowerState: api.StatusRunning, Disks: []string{"disk0"},
	}
}

// asStored is what the database gives back: times to the microsecond.
func asStored(snaps []api.Snapshot) []api.Snapshot {
	out := make([]api.Snapshot, len(snaps))
	for i, sn := range snaps {
		sn.CreatedAt = sn.CreatedAt.Truncate(time.Microsecond).UTC()
		out[i] = sn
	}
	return out
}

func mustSnapshots(t *testing.T, s *Store, vmID string) []api.Snapshot {
	t.Helper()
	snaps, err := s.Snapshots(ctxT(t), vmID)
	if err != nil {
		t.Fatalf("Snapshots: %v", err)
	}
	for i := range snaps {
		snaps[i].CreatedAt = snaps[i].CreatedAt.UTC()
	}
	return snaps
}

func wantSnapshots(t *testing.T, s *Store, vmID string, want []api.Snapshot) {
	t.Helper()
	if got := mustSnapshots(t, s, vmID); !reflect.DeepEqual(got, asStored(want)) {
		t.Errorf("stored snapshots:\n%+v\nwant\n%+v", got, asStored(want))
	}
}

// snapshotUpdatedAt is each of the VM's snapshot rows' updated_at, by name.
func snapshotUpdatedAt(t *testing.T, s *Store, vmID string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	rows, _ := s.pool.Query(ctxT(t), `SELECT name, updated_at FROM infinivirt.vm_snapshots WHERE vm_id = $1`, vmID)
	var name string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&name, &at}, func() error { out[name] = at; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// A database an agent of schema version 2 left keeps its VMs, events and
// devices, and gains the snapshots table.
func TestVersion2DatabaseMigratesWithItsData(t *testing.T) {
	vm := testVM()
	s := migratedFrom(t, 2, "infinivirt.vm_snapshots", vm.ID,
		`INSERT INTO infinivirt.vms (id, host, name, status, reason, seq) VALUES ($1, 'host-a', 'old-vm', 'running', 'booted', 1)`,
		`INSERT INTO infinivirt.vm_events (vm_id, seq, at, type, status, reason) VALUES ($1, 1, now(), 'status', 'running', 'booted')`,
		`INSERT INTO infinivirt.vm_devices (vm_id, name, type, ordinal, config)
			VALUES ($1, 'disk0', 'disk', 0, '{"name": "disk0", "type": "disk", "disk": {"path": "/vms/a/disk0.qcow2"}}')`)
	if r := mustGet(t, s, vm.ID); r.Name != "old-vm" || r.Status != api.StatusRunning || r.Seq != 1 {
		t.Errorf("the version-2 row after migrating: %+v", r)
	}
	if evs, err := s.Events(ctxT(t), vm.ID, 0, 0); err != nil || len(evs) != 1 {
		t.Errorf("the version-2 events after migrating: %+v, %v", evs, err)
	}
	if devs := mustDevices(t, s, vm.ID); len(devs) != 1 || devs[0].Name != "disk0" {
		t.Errorf("the version-2 devices after migrating: %+v", devs)
	}
	if snaps := mustSnapshots(t, s, vm.ID); len(snaps) != 0 {
		t.Errorf("a version-2 VM has snapshots: %+v", snaps)
	}
	snaps := []api.Snapshot{testSnapshot(vm.ID, "first", time.Now())}
	snaps[0].IsCurrent = true
	if err := s.SyncSnapshots(ctxT(t), vm.ID, snaps); err != nil {
		t.Fatal(err)
	}
	wantSnapshots(t, s, vm.ID, snaps)
}

// Take, take, revert, delete, take again under a reused name: each change
// is the rows the agent lists and one NOTIFY, moving the VM's updated_at;
// writing the same set again changes nothing and notifies no one.
func TestSyncSnapshotsNotifiesEachChange(t *testing.T) {
	s, ch, vm := listenedVM(t)
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	change := func(what string, snaps []api.Snapshot) {
		t.Helper()
		if _, err := s.pool.Exec(ctxT(t), `UPDATE infinivirt.vms SET updated_at = $2 WHERE id = $1`, vm.ID, old); err != nil {
			t.Fatal(err)
		}
		if err := s.SyncSnapshots(ctxT(t), vm.ID, snaps); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		expectNext(t, ch, vm.ID)
		wantSnapshots(t, s, vm.ID, snaps)
		if at := vmUpdatedAt(t, s, vm.ID); at.Equal(old) {
			t.Errorf("%s left the VM's updated_at", what)
		}
		// A replay of the same set: nothing.
		rows := snapshotUpdatedAt(t, s, vm.ID)
		if err := s.SyncSnapshots(ctxT(t), vm.ID, snaps); err != nil {
			t.Fatalf("%s again: %v", what, err)
		}
		expectQuiet(t, s, ch)
		if again := snapshotUpdatedAt(t, s, vm.ID); !reflect.DeepEqual(again, rows) {
			t.Errorf("%s replayed rewrote rows: %v then %v", what, rows, again)
		}
	}

	t0 := time.Now()
	first := testSnapshot(vm.ID, "first", t0)
	first.IsCurrent = true
	change("take", []api.Snapshot{first})

	second := testSnapshot(vm.ID, "second.v2", t0.Add(time.Second))
	second.Memory, second.SizeBytes, second.Disks = true, 123<<20, []string{"disk0", "disk1"}
	first.IsCurrent, second.IsCurrent = false, true
	change("take another", []api.Snapshot{first, second})

	first.IsCurrent, second.IsCurrent = true, false
	change("revert", []api.Snapshot{first, second})

	change("delete", []api.Snapshot{first})

	// Deleted and taken again under the same name in between two syncs:
	// a new snapshot, a new row.
	again := testSnapshot(vm.ID, "first", t0.Add(2*time.Second))
	again.IsCurrent = true
	change("take again", []api.Snapshot{again})

	change("delete the last", nil)
}

// The agent starts with a set that lacks snapshots deleted while the
// database was away: their rows go, the others stay untouched.
func TestSyncSnapshotsRemovesStaleRows(t *testing.T) {
	s := newStore(t)
	vm, other := testVM(), testVM()
	t0 := time.Now()
	var snaps []api.Snapshot
	for _, v := range []api.VM{vm, other} {
		if err := s.UpsertVM(ctxT(t), v); err != nil {
			t.Fatal(err)
		}
		snaps = []api.Snapshot{testSnapshot(v.ID, "a", t0), testSnapshot(v.ID, "b", t0.Add(time.Second)), testSnapshot(v.ID, "c", t0.Add(2*time.Second))}
		if err := s.SyncSnapshots(ctxT(t), v.ID, snaps); err != nil {
			t.Fatal(err)
		}
	}
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)
	kept := snapshotUpdatedAt(t, s, other.ID)["b"]
	left := []api.Snapshot{snaps[1]}
	if err := s.SyncSnapshots(ctxT(t), other.ID, left); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, other.ID)
	wantSnapshots(t, s, other.ID, left)
	if at := snapshotUpdatedAt(t, s, other.ID)["b"]; !at.Equal(kept) {
		t.Error("removing stale rows rewrote the row that stays")
	}
	if got := mustSnapshots(t, s, vm.ID); len(got) != 3 {
		t.Errorf("the other VM's snapshots: %+v", got)
	}
	expectQuiet(t, s, ch)
}

// A VM the store does not know has no row to hang snapshots on.
func TestSnapshotsOfAnUnknownVMAreNotFound(t *testing.T) {
	s := newStore(t)
	unknown := uuid.NewString()
	err := s.SyncSnapshots(ctxT(t), unknown, []api.Snapshot{testSnapshot(unknown, "a", time.Now())})
	if errCode(err) != errdefs.CodeNotFound {
		t.Errorf("snapshots of an unknown VM: %v, want NotFound", err)
	}
	if snaps := mustSnapshots(t, s, unknown); len(snaps) != 0 {
		t.Errorf("an unknown VM has snapshots %+v", snaps)
	}
}

func TestBadSnapshotsChangeNothing(t *testing.T) {
	s, ch, vm := listenedVM(t)
	t0 := time.Now()
	good := func() []api.Snapshot {
		a, b := testSnapshot(vm.ID, "a", t0), testSnapshot(vm.ID, "b", t0.Add(time.Second))
		b.IsCurrent = true
		return []api.Snapshot{a, b}
	}
	kept := good()
	if err := s.SyncSnapshots(ctxT(t), vm.ID, kept); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	before := mustGet(t, s, vm.ID)

	// Each bad set also drops snapshot a, so a partial write would show.
	bad := func(change func(sn *api.Snapshot)) []api.Snapshot {
		set := good()[1:]
		set[0].ID = kept[1].ID
		change(&set[0])
		return set
	}
	for name, c := range map[string]struct {
		snaps []api.Snapshot
		field string
	}{
		"bad id":        {bad(func(sn *api.Snapshot) { sn.ID = "nope" }), "snapshots[0].id"},
		"other VM":      {bad(func(sn *api.Snapshot) { sn.VMID = uuid.NewString() }), "snapshots[0].vmId"},
		"empty name":    {bad(func(sn *api.Snapshot) { sn.Name = "" }), "snapshots[0].name"},
		"comma":         {bad(func(sn *api.Snapshot) { sn.Name = "a,b" }), "snapshots[0].name"},
		"no time":       {bad(func(sn *api.Snapshot) { sn.CreatedAt = time.Time{} }), "snapshots[0].createdAt"},
		"negative size": {bad(func(sn *api.Snapshot) { sn.SizeBytes = -1 }), "snapshots[0].sizeBytes"},
		"no power":      {bad(func(sn *api.Snapshot) { sn.PowerState = "" }), "snapshots[0].powerState"},
		"no disks":      {bad(func(sn *api.Snapshot) { sn.Disks = nil }), "snapshots[0].disks"},
		"bad disk":      {bad(func(sn *api.Snapshot) { sn.Disks = []string{"disk0", "Disk 1"} }), "snapshots[0].disks[1]"},
		"same name":     {append(good(), testSnapshot(vm.ID, "a", t0)), "snapshots[2].name"},
		"same id": {func() []api.Snapshot {
			set := good()
			dup := set[0]
			dup.Name = "c"
			return append(set, dup)
		}(), "snapshots[2].id"},
		"two current": {func() []api.Snapshot {
			set := good()
			set[0].IsCurrent = true
			return set
		}(), "snapshots[1].isCurrent"},
		"unknown status": {bad(func(sn *api.Snapshot) { sn.PowerState = "dancing" }), "snapshots.powerState"},
	} {
		err := s.SyncSnapshots(ctxT(t), vm.ID, c.snaps)
		var ae *errdefs.Error
		if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != c.field {
			t.Errorf("%s: %v, want InvalidArgument on %s", name, err, c.field)
		}
		wantSnapshots(t, s, vm.ID, kept)
	}
	if r := mustGet(t, s, vm.ID); r != before {
		t.Errorf("a refused set changed the VM row:\n%+v\n%+v", before, r)
	}
	expectQuiet(t, s, ch)

	// The table's own rules hold against any writer: one current snapshot
	// per VM, checked at commit.
	_, err := s.pool.Exec(ctxT(t), `UPDATE infinivirt.vm_snapshots SET is_current = true WHERE vm_id = $1`, vm.ID)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.ConstraintName != "vm_snapshots_is_current_key" {
		t.Errorf("two current snapshots let through: %v", err)
	} else if e := errdefs.As(s.wrap("test", vm.ID, err)); e.Code != errdefs.CodeInvalidArgument || e.Field != "snapshots.isCurrent" {
		t.Errorf("two current snapshots are %v", e)
	}
	for constraint, insert := range map[string]string{
		"vm_snapshots_name_check":  `INSERT INTO infinivirt.vm_snapshots (id, vm_id, name, created_at, power_state, disks) VALUES (gen_random_uuid(), $1, 'a/b', now(), 'off', '{disk0}')`,
		"vm_snapshots_disks_check": `INSERT INTO infinivirt.vm_snapshots (id, vm_id, name, created_at, power_state, disks) VALUES (gen_random_uuid(), $1, 'c', now(), 'off', '{}')`,
		"vm_snapshots_name_key":    `INSERT INTO infinivirt.vm_snapshots (id, vm_id, name, created_at, power_state, disks) VALUES (gen_random_uuid(), $1, 'a', now(), 'off', '{disk0}')`,
	} {
		_, err := s.pool.Exec(ctxT(t), insert, vm.ID)
		if !errors.As(err, &pe) || pe.ConstraintName != constraint {
			t.Errorf("%s let a row through: %v", constraint, err)
		}
	}
	wantSnapshots(t, s, vm.ID, kept)
}
