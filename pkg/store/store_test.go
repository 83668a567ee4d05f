package store

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/testbed/postgres"
)

func TestMigrationsApplyOnceAndAreIdempotent(t *testing.T) {
	dsn := freshDSN(t)
	s := openStore(t, dsn)
	ms, err := loadMigrations(embeddedMigrations)
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %d, %v", len(ms), err)
	}
	type applied struct {
		version int64
		at      time.Time
	}
	read := func(s *Store) []applied {
		rows, err := s.pool.Query(ctxT(t), `SELECT version, applied_at FROM infinivirt.schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		var out []applied
		for rows.Next() {
			var a applied
			if err := rows.Scan(&a.version, &a.at); err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := read(s)
	if len(first) != len(ms) {
		t.Fatalf("%d migrations recorded, want %d", len(first), len(ms))
	}
	s.Close()

	again := openStore(t, dsn)
	if second := read(again); !slices.Equal(first, second) {
		t.Errorf("second Open changed the migration record: %v then %v", first, second)
	}
}

func TestConcurrentOpensMigrateSafely(t *testing.T) {
	dsn := freshDSN(t)
	const agents = 4
	var wg sync.WaitGroup
	errs := make([]error, agents)
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctxT(t), dsn, Options{Host: "host-" + strconv.Itoa(i)})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("agent %d: Open: %v", i, err)
		}
	}
	s := openStore(t, dsn)
	var n int
	if err := s.pool.QueryRow(ctxT(t), `SELECT count(*) FROM infinivirt.schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations(embeddedMigrations)
	if n != len(ms) {
		t.Errorf("%d migrations recorded, want %d", n, len(ms))
	}
}

func TestEditedMigrationIsRefused(t *testing.T) {
	s := newStore(t)
	ms, _ := loadMigrations(embeddedMigrations)
	ms[0].sql += "\n-- edited\n"
	ms[0].checksum = "0123456789abcdef"
	err := s.migrate(ctxT(t), ms)
	if errCode(err) != errdefs.CodeFailedPrecondition {
		t.Fatalf("migrate with an edited file: %v, want FailedPrecondition", err)
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no version":        {"migrations/init.sql": {Data: []byte("select 1")}},
		"zero version":      {"migrations/0_init.sql": {Data: []byte("select 1")}},
		"duplicate version": {"migrations/1_a.sql": {Data: []byte("select 1")}, "migrations/01_b.sql": {Data: []byte("select 1")}},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ms, err := loadMigrations(fstest.MapFS{
		"migrations/10_c.sql": {Data: []byte("c")}, "migrations/2_b.sql": {Data: []byte("b")},
	})
	if err != nil || len(ms) != 2 || ms[0].version != 2 || ms[1].version != 10 {
		t.Errorf("ordering by version: %+v, %v", ms, err)
	}
}

func TestUpsertVMInventory(t *testing.T) {
	s := newStore(t)
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)

	vm := testVM()
	vm.Status, vm.Reason, vm.Seq, vm.QEMUPID = api.StatusRunning, api.ReasonBooted, 7, 4242
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	r := mustGet(t, s, vm.ID)
	if r.Host != "host-a" || r.Name != vm.Name || r.RAMMiB != 512 || r.DiskBytes != 3<<29 || r.GraphicPort != 5901 ||
		r.Status != api.StatusRunning || r.Reason != api.ReasonBooted || r.Seq != 7 || r.QEMUPID != 4242 {
		t.Fatalf("row after insert: %+v", r)
	}
	if got := r.VM(); got.RAMGB != vm.RAMGB || got.DiskSizeGB != vm.DiskSizeGB || got.MACAddress != vm.MACAddress {
		t.Errorf("Row.VM() = %+v", got)
	}

	// The same inventory again: no change, no NOTIFY.
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, s, ch)
	if again := mustGet(t, s, vm.ID); !again.UpdatedAt.Equal(r.UpdatedAt) {
		t.Errorf("a replayed upsert moved updated_at from %v to %v", r.UpdatedAt, again.UpdatedAt)
	}

	// New inventory with a stale status: inventory changes, status and seq stay.
	vm.Name, vm.CPUCores = "desk-02", 4
	vm.Status, vm.Reason, vm.Seq, vm.QEMUPID = api.StatusOff, api.ReasonUser, 1, 0
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	r = mustGet(t, s, vm.ID)
	if r.Name != "desk-02" || r.CPUCores != 4 {
		t.Errorf("inventory not updated: %+v", r)
	}
	if r.Status != api.StatusRunning || r.Seq != 7 || r.QEMUPID != 4242 {
		t.Errorf("UpsertVM moved status/seq: %+v", r)
	}
	// A row at seq 7 with no history: the history is still to be written.
	if seq, err := s.LastSeq(ctxT(t), vm.ID); err != nil || seq != 0 {
		t.Errorf("LastSeq of a row without events = %d, %v; want 0", seq, err)
	}
}

func TestApplyEventsUpdatesRowAndNotifies(t *testing.T) {
	s, ch, vm := listenedVM(t)

	exit := 0
	batch := []api.Event{
		statusEvent(vm.ID, 1, api.StatusStarting, api.ReasonUser),
		progressEvent(vm.ID, 2, "qmp handshake done"),
		{Seq: 3, VMID: vm.ID, Time: time.Now(), Type: api.EventStatus, Status: api.StatusRunning, Reason: api.ReasonBooted, QEMUPID: 999},
		{Seq: 4, VMID: vm.ID, Time: time.Now(), Type: api.EventGuest, Message: "RESET", ExitCode: &exit, Signal: "SIGTERM"},
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, batch); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	r := mustGet(t, s, vm.ID)
	if r.Status != api.StatusRunning || r.Reason != api.ReasonBooted || r.Seq != 3 || r.QEMUPID != 999 {
		t.Fatalf("row after ApplyEvents: %+v", r)
	}
	if seq, err := s.LastSeq(ctxT(t), vm.ID); err != nil || seq != 4 {
		t.Errorf("LastSeq = %d, %v; want 4", seq, err)
	}

	got, err := s.Events(ctxT(t), vm.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(batch) {
		t.Fatalf("%d events stored, want %d", len(got), len(batch))
	}
	for i, want := range batch {
		g := got[i]
		if g.Seq != want.Seq || g.VMID != vm.ID || g.Type != want.Type || g.Status != want.Status || g.Reason != want.Reason ||
			g.Message != want.Message || g.QEMUPID != want.QEMUPID || g.Signal != want.Signal ||
			!g.Time.Equal(want.Time.Truncate(time.Microsecond)) || (g.ExitCode == nil) != (want.ExitCode == nil) {
			t.Errorf("event %d: got %+v, want %+v", i, g, want)
		}
	}
	if page, err := s.Events(ctxT(t), vm.ID, 2, 1); err != nil || len(page) != 1 || page[0].Seq != 3 {
		t.Errorf("Events(after 2, limit 1) = %+v, %v; want seq 3", page, err)
	}

	// Replaying the same batch changes nothing and notifies no one.
	if err := s.ApplyEvents(ctxT(t), vm.ID, batch); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, s, ch)
	if again := mustGet(t, s, vm.ID); again != r {
		t.Errorf("replay changed the row:\n%+v\n%+v", r, again)
	}
	if again, _ := s.Events(ctxT(t), vm.ID, 0, 0); len(again) != len(batch) {
		t.Errorf("replay stored %d events, want %d", len(again), len(batch))
	}

	// Events without a status change are stored but leave the row and stay quiet.
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{progressEvent(vm.ID, 5, "still running")}); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, s, ch)
	if seq, _ := s.LastSeq(ctxT(t), vm.ID); seq != 5 {
		t.Errorf("LastSeq = %d after a progress event, want 5", seq)
	}
}

func TestOutOfOrderBatchesNeverMoveSeqBackwards(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	late := []api.Event{
		statusEvent(vm.ID, 5, api.StatusRunning, api.ReasonBooted),
		statusEvent(vm.ID, 6, api.StatusPaused, api.ReasonIOError),
	}
	early := []api.Event{
		statusEvent(vm.ID, 1, api.StatusStarting, api.ReasonUser),
		statusEvent(vm.ID, 2, api.StatusRunning, api.ReasonBooted),
		statusEvent(vm.ID, 3, api.StatusOff, api.ReasonGuestShutdown),
		progressEvent(vm.ID, 4, "restarting"),
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, late); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, early); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, s, vm.ID)
	if r.Seq != 6 || r.Status != api.StatusPaused || r.Reason != api.ReasonIOError {
		t.Errorf("row moved backwards: %+v", r)
	}
	if evs, _ := s.Events(ctxT(t), vm.ID, 0, 0); len(evs) != 6 {
		t.Errorf("%d events stored, want all 6", len(evs))
	}
	// Within one batch, the highest seq wins whatever the order.
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{
		statusEvent(vm.ID, 8, api.StatusOff, api.ReasonUser),
		statusEvent(vm.ID, 7, api.StatusRunning, api.ReasonBooted),
	}); err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, s, vm.ID); r.Seq != 8 || r.Status != api.StatusOff {
		t.Errorf("unordered batch: row %+v, want seq 8 off", r)
	}
}

// A final status clears the row's QEMU pid, as the API's view does, while
// the event keeps the pid of the QEMU that ended.
func TestFinalStatusClearsPID(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	for i, final := range []api.Status{api.StatusOff, api.StatusError} {
		seq := uint64(2*i + 1)
		running := statusEvent(vm.ID, seq, api.StatusRunning, api.ReasonBooted)
		running.QEMUPID = 4242
		if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{running}); err != nil {
			t.Fatal(err)
		}
		if r := mustGet(t, s, vm.ID); r.QEMUPID != 4242 {
			t.Fatalf("running row has pid %d, want 4242", r.QEMUPID)
		}
		ended := statusEvent(vm.ID, seq+1, final, api.ReasonCrashed)
		ended.QEMUPID = 4242
		if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{ended}); err != nil {
			t.Fatal(err)
		}
		if r := mustGet(t, s, vm.ID); r.Status != final || r.QEMUPID != 0 {
			t.Errorf("row after %s: status %s, pid %d; want no pid", final, r.Status, r.QEMUPID)
		}
		if evs, _ := s.Events(ctxT(t), vm.ID, seq, 0); len(evs) != 1 || evs[0].QEMUPID != 4242 {
			t.Errorf("the %s event lost its pid: %+v", final, evs)
		}
	}

	// A new row written off takes no pid either.
	fresh := testVM()
	fresh.Status, fresh.QEMUPID, fresh.Seq = api.StatusOff, 4343, 3
	if err := s.UpsertVM(ctxT(t), fresh); err != nil {
		t.Fatal(err)
	}
	if r := mustGet(t, s, fresh.ID); r.QEMUPID != 0 {
		t.Errorf("new off row has pid %d", r.QEMUPID)
	}
}

func TestStatusCheckRejectsGarbage(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	good := statusEvent(vm.ID, 1, api.StatusRunning, api.ReasonBooted)
	bad := statusEvent(vm.ID, 2, "exploded", api.ReasonBooted)
	err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{good, bad})
	var ae *errdefs.Error
	if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != "status" {
		t.Fatalf("garbage status: %v, want InvalidArgument on field status", err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" {
		t.Errorf("the database's CHECK should have refused it; cause: %v", err)
	}
	// The batch is one transaction: the good event went nowhere either.
	if evs, _ := s.Events(ctxT(t), vm.ID, 0, 0); len(evs) != 0 {
		t.Errorf("%d events stored from a refused batch", len(evs))
	}
	// The CHECK guards the table itself, not only this package.
	_, err = s.pool.Exec(ctxT(t), `UPDATE infinivirt.vms SET status = 'garbage' WHERE id = $1`, vm.ID)
	if !errors.As(err, &pe) || pe.ConstraintName != "vms_status_check" {
		t.Errorf("direct UPDATE to a garbage status: %v", err)
	}
	for name, e := range map[string]api.Event{
		"reason":          statusEvent(vm.ID, 3, api.StatusOff, "Not a reason!"),
		"type":            {Seq: 3, Time: time.Now(), Type: "gossip"},
		"status required": {Seq: 3, Time: time.Now(), Type: api.EventStatus},
	} {
		if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{e}); errCode(err) != errdefs.CodeInvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

func TestInvalidArgumentsNeverReachTheDatabase(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		err   error
		field string
	}{
		"bad id":      {s.UpsertVM(ctxT(t), api.VM{ID: "vm-1"}), "id"},
		"NaN ram":     {s.UpsertVM(ctxT(t), api.VM{ID: vm.ID, RAMGB: math.NaN()}), "ramGB"},
		"seq 0":       {s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, 0, api.StatusOff, "")}), "seq"},
		"huge seq":    {s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, math.MaxUint64, api.StatusOff, "")}), "seq"},
		"other VM":    {s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(uuid.NewString(), 1, api.StatusOff, "")}), "vmId"},
		"bad vm id":   {s.ApplyEvents(ctxT(t), "nope", nil), "vmId"},
		"negative":    {s.UpsertVM(ctxT(t), api.VM{ID: vm.ID, Name: "x", CPUCores: -1}), "cpuCores"},
		"port 70000":  {s.UpsertVM(ctxT(t), api.VM{ID: vm.ID, Name: "x", GraphicPort: 70000}), "graphicPort"},
		"get bad id":  {func() error { _, err := s.GetVM(ctxT(t), "x"); return err }(), "vmId"},
		"events bad":  {func() error { _, err := s.Events(ctxT(t), "x", 0, 0); return err }(), "vmId"},
		"lastseq bad": {func() error { _, err := s.LastSeq(ctxT(t), "x"); return err }(), "vmId"},
	}
	for name, c := range cases {
		var ae *errdefs.Error
		if !errors.As(c.err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != c.field {
			t.Errorf("%s: %v, want InvalidArgument on %s", name, c.err, c.field)
		}
	}
}

func TestApplyEventsForUnknownVMIsNotFound(t *testing.T) {
	s := newStore(t)
	id := uuid.NewString()
	err := s.ApplyEvents(ctxT(t), id, []api.Event{statusEvent(id, 1, api.StatusRunning, api.ReasonBooted)})
	if errCode(err) != errdefs.CodeNotFound {
		t.Fatalf("events for an unknown VM: %v, want NotFound", err)
	}
	if _, err := s.GetVM(ctxT(t), id); errCode(err) != errdefs.CodeNotFound {
		t.Errorf("GetVM of an unknown VM: %v, want NotFound", err)
	}
	if seq, err := s.LastSeq(ctxT(t), id); err != nil || seq != 0 {
		t.Errorf("LastSeq of an unknown VM = %d, %v; want 0", seq, err)
	}
}

func TestTextIsMadeStorable(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	vm.Name = "bad\x00name\xff"
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	e := statusEvent(vm.ID, 1, api.StatusError, api.ReasonCrashed)
	e.Message = "qemu said \x00\xc3"
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{e}); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, s, vm.ID)
	if r.Name != "badname\uFFFD" || r.Message != "qemu said \uFFFD" {
		t.Errorf("stored name %q, message %q", r.Name, r.Message)
	}
}

func TestMarkDeletedAndPurge(t *testing.T) {
	s := newStore(t)
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)
	vm, other := testVM(), testVM()
	other.Name = "zz-other"
	for _, v := range []api.VM{vm, other} {
		if err := s.UpsertVM(ctxT(t), v); err != nil {
			t.Fatal(err)
		}
		expectNext(t, ch, v.ID)
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, 1, api.StatusOff, api.ReasonUser)}); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)

	if err := s.MarkDeleted(ctxT(t), vm.ID); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	if r := mustGet(t, s, vm.ID); r.DeletedAt == nil {
		t.Error("deleted_at not set")
	}
	if err := s.MarkDeleted(ctxT(t), vm.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleted(ctxT(t), uuid.NewString()); err != nil {
		t.Errorf("MarkDeleted of an unknown VM: %v", err)
	}
	expectQuiet(t, s, ch)

	live, err := s.ListVMs(ctxT(t), ListOptions{})
	if err != nil || len(live) != 1 || live[0].ID != other.ID {
		t.Errorf("ListVMs = %+v, %v; want only the live VM", live, err)
	}
	all, err := s.ListVMs(ctxT(t), ListOptions{IncludeDeleted: true})
	if err != nil || len(all) != 2 || all[0].ID != vm.ID {
		t.Errorf("ListVMs(IncludeDeleted) = %+v, %v; want both, ordered by name", all, err)
	}
	if other, _ := s.ListVMs(ctxT(t), ListOptions{Host: "host-b", IncludeDeleted: true}); len(other) != 0 {
		t.Errorf("ListVMs(host-b) = %+v, want none", other)
	}

	if err := s.Purge(ctxT(t), vm.ID); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	if _, err := s.GetVM(ctxT(t), vm.ID); errCode(err) != errdefs.CodeNotFound {
		t.Errorf("GetVM after Purge: %v, want NotFound", err)
	}
	if evs, _ := s.Events(ctxT(t), vm.ID, 0, 0); len(evs) != 0 {
		t.Errorf("%d events left after Purge", len(evs))
	}
	if err := s.Purge(ctxT(t), vm.ID); err != nil {
		t.Errorf("second Purge: %v", err)
	}
	expectQuiet(t, s, ch)
}

// The status CHECK lists exactly pkg/api's Status constants, and every
// Reason constant passes the reason CHECK.
func TestCheckConstraintsMatchAPI(t *testing.T) {
	s := newStore(t)
	want := apiConstants(t)
	quoted := regexp.MustCompile(`'([^']*)'`)
	for _, constraint := range []string{"vms_status_check", "vm_events_status_check", "vm_snapshots_power_state_check"} {
		var def string
		err := s.pool.QueryRow(ctxT(t), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conname = $1 AND connamespace = 'infinivirt'::regnamespace`, constraint).Scan(&def)
		if err != nil {
			t.Fatalf("%s: %v", constraint, err)
		}
		var got []string
		for _, m := range quoted.FindAllStringSubmatch(def, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		if !slices.Equal(got, want["Status"]) {
			t.Errorf("%s lists %v;\npkg/api has %v: add a migration", constraint, got, want["Status"])
		}
	}
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	var events []api.Event
	for i, st := range want["Status"] {
		events = append(events, statusEvent(vm.ID, uint64(i+1), api.Status(st), ""))
	}
	for _, r := range want["Reason"] {
		events = append(events, statusEvent(vm.ID, uint64(len(events)+1), api.StatusOff, api.Reason(r)))
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, events); err != nil {
		t.Errorf("a status or reason of pkg/api is refused: %v", err)
	}
}

// apiConstants reads the string constants of types Status and Reason from pkg/api's source.
func apiConstants(t *testing.T) map[string][]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../api/status.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			typ, ok := vs.Type.(*ast.Ident)
			if !ok || (typ.Name != "Status" && typ.Name != "Reason") {
				continue
			}
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					out[typ.Name] = append(out[typ.Name], s)
				}
			}
		}
	}
	if len(out["Status"]) == 0 || len(out["Reason"]) == 0 {
		t.Fatalf("found no Status or Reason constants in pkg/api: %v", out)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func TestUnavailableWhileDatabaseDown(t *testing.T) {
	c := postgres.New(t)
	s := openStore(t, c.DSN())
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	events := []api.Event{statusEvent(vm.ID, 1, api.StatusRunning, api.ReasonBooted)}
	for name, err := range map[string]error{
		"ApplyEvents": s.ApplyEvents(ctxT(t), vm.ID, events),
		"UpsertVM":    s.UpsertVM(ctxT(t), vm),
		"Ping":        s.Ping(ctxT(t)),
		"GetVM":       func() error { _, err := s.GetVM(ctxT(t), vm.ID); return err }(),
		"Open":        func() error { _, err := Open(ctxT(t), c.DSN(), Options{}); return err }(),
	} {
		if !IsUnavailable(err) {
			t.Errorf("%s with the server down: %v, want Unavailable", name, err)
		}
		if code := errdefs.As(err).Code; code != errdefs.CodeUnavailable {
			t.Errorf("%s: api.AsError gives %s", name, code)
		}
	}

	// The driver's error stays reachable under the class.
	var ce *pgconn.ConnectError
	if err := s.Ping(ctxT(t)); !errors.As(err, &ce) {
		t.Errorf("Ping with the server down: %v does not wrap a *pgconn.ConnectError", err)
	}

	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, events); err != nil {
		t.Fatalf("ApplyEvents after the server came back: %v", err)
	}
	if r := mustGet(t, s, vm.ID); r.Status != api.StatusRunning || r.Seq != 1 {
		t.Errorf("row after the replay: %+v", r)
	}
}

// After a restart kills every connection, a write on the pool's dead
// connection is retried on a fresh one instead of failing.
func TestWriteAfterRestartSucceeds(t *testing.T) {
	c := postgres.New(t)
	s := openStore(t, c.DSN())
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, 1, api.StatusOff, api.ReasonUser)}); err != nil {
		t.Fatalf("first write after a restart: %v", err)
	}
}

func TestListenReconnectsAfterRestart(t *testing.T) {
	c := postgres.New(t)
	s := openStore(t, c.DSN())
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, ResyncAll) // reconnected, and told to resync
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, 1, api.StatusRunning, api.ReasonBooted)}); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
}

// Many quiet periods (each ends in a liveness ping) leave the connection usable.
func TestListenSurvivesQuietPeriods(t *testing.T) {
	s := newStore(t)
	s.listenPing = time.Millisecond
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)
	time.Sleep(200 * time.Millisecond) // let many wait timeouts and pings happen
	if err := s.ApplyEvents(ctxT(t), vm.ID, []api.Event{statusEvent(vm.ID, 1, api.StatusRunning, api.ReasonBooted)}); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID) // not ResyncAll: the connection never dropped
}

func TestListenStopsWithContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	resynced := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(string) { resynced <- struct{}{} }) }()
	select {
	case <-resynced:
	case <-time.After(30 * time.Second):
		t.Fatal("Listen never connected")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Listen returned %v, want context.Canceled", err)
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	const dsn = "postgres://u:secret@/db?connect_timeout=soon"
	_, openErr := Open(context.Background(), dsn, Options{})
	for name, err := range map[string]error{"Open": openErr, "CheckDSN": CheckDSN(dsn)} {
		var ae *errdefs.Error
		if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != "databaseUrl" {
			t.Fatalf("%s of a bad DSN: %v, want InvalidArgument on databaseUrl", name, err)
		}
		if regexp.MustCompile(`secret`).MatchString(err.Error()) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	if err := CheckDSN("postgres://u:secret@/db?host=/run/postgresql"); err != nil {
		t.Errorf("CheckDSN of a good DSN: %v", err)
	}
}
