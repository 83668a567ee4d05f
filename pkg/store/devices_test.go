package store

import (
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// testDevices is a disk and two NICs, as a VM view lists them.
func testDevices() []api.Device {
	return []api.Device{
		{Name: "disk0", Type: api.DeviceDisk, Disk: &api.DiskDevice{
			Path: "/vms/a/disk0.qcow2", Format: "qcow2", SizeBytes: 3 << 29, BootIndex: 1}},
		{Name: "net0", Type: api.DeviceNIC, NIC: &api.NICDevice{MAC: "52:54:00:12:34:56", Bridge: "virbr0"}},
		{Name: "net1", Type: api.DeviceNIC, NIC: &api.NICDevice{MAC: "52:54:00:12:34:57", Bridge: "br-lab"}},
	}
}

// deviceRow is a vm_devices row as an SQL reader sees it.
type deviceRow struct {
	Name         string     `db:"name"`
	Type         string     `db:"type"`
	Ordinal      int32      `db:"ordinal"`
	Path         *string    `db:"path"`
	Format       *string    `db:"format"`
	SizeBytes    *int64     `db:"size_bytes"`
	BootIndex    *int32     `db:"boot_index"`
	MAC          *string    `db:"mac"`
	Bridge       *string    `db:"bridge"`
	PCIHost      *string    `db:"pci_host"`
	USBVendorID  *string    `db:"usb_vendor_id"`
	USBProductID *string    `db:"usb_product_id"`
	Port         *string    `db:"port"`
	Config       api.Device `db:"config"`
	UpdatedAt    time.Time  `db:"updated_at"`
}

// deviceRows reads a VM's rows straight from the table, by name.
func deviceRows(t *testing.T, s *Store, vmID string) map[string]deviceRow {
	t.Helper()
	rows, _ := s.pool.Query(ctxT(t), `SELECT name, type, ordinal, path, format, size_bytes, boot_index, mac, bridge,
			pci_host, usb_vendor_id, usb_product_id, port, config, updated_at
		FROM infinivirt.vm_devices WHERE vm_id = $1`, vmID)
	list, err := pgx.CollectRows(rows, pgx.RowToStructByName[deviceRow])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]deviceRow{}
	for _, r := range list {
		out[r.Name] = r
	}
	return out
}

func mustDevices(t *testing.T, s *Store, vmID string) []api.Device {
	t.Helper()
	devs, err := s.Devices(ctxT(t), vmID)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	return devs
}

func vmUpdatedAt(t *testing.T, s *Store, vmID string) time.Time {
	t.Helper()
	return mustGet(t, s, vmID).UpdatedAt
}

func str(s string) *string { return &s }

// eq compares a nullable column with what it should hold; nil is NULL.
func eq[T comparable](got *T, want *T) bool {
	if got == nil || want == nil {
		return got == want
	}
	return *got == *want
}

// migratedTo brings an empty database to the given schema version only,
// as an agent of that version would have left it.
func migratedTo(t *testing.T, dsn string, version int64) {
	t.Helper()
	pool, err := pgxpool.New(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ms, err := loadMigrations(embeddedMigrations)
	if err != nil {
		t.Fatal(err)
	}
	ms = slices.DeleteFunc(ms, func(m migration) bool { return m.version > version })
	s := &Store{pool: pool, log: slog.New(slog.DiscardHandler)}
	if err := s.migrate(ctxT(t), ms); err != nil {
		t.Fatalf("migrating to version %d: %v", version, err)
	}
}

func migrationVersions(t *testing.T, s *Store) []int64 {
	t.Helper()
	rows, _ := s.pool.Query(ctxT(t), `SELECT version FROM infinivirt.schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

// embeddedVersions are the versions of this build's migrations.
func embeddedVersions(t *testing.T) []int64 {
	t.Helper()
	ms, err := loadMigrations(embeddedMigrations)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, m := range ms {
		out = append(out, m.version)
	}
	return out
}

// migratedFrom opens this build's store on a database an agent of schema
// version left, holding the rows inserts write ($1 is vmID) and not yet the
// table later (schema-qualified) that a newer version adds.
func migratedFrom(t *testing.T, version int64, later, vmID string, inserts ...string) *Store {
	t.Helper()
	dsn := freshDSN(t)
	migratedTo(t, dsn, version)
	pool, err := pgxpool.New(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, q := range inserts {
		if _, err := pool.Exec(ctxT(t), q, vmID); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var table *string
	if err := pool.QueryRow(ctxT(t), `SELECT to_regclass($1)::text`, later).Scan(&table); err != nil {
		t.Fatal(err)
	}
	if table != nil {
		t.Fatalf("a version-%d database already has %s", version, later)
	}
	pool.Close()
	s := openStore(t, dsn)
	if got, want := migrationVersions(t, s), embeddedVersions(t); !slices.Equal(got, want) {
		t.Fatalf("versions applied: %v, want %v", got, want)
	}
	return s
}

func TestEmptyDatabaseMigratesToTheLatest(t *testing.T) {
	s := newStore(t)
	if got, want := migrationVersions(t, s), embeddedVersions(t); !slices.Equal(got, want) || len(want) < 3 {
		t.Fatalf("versions applied: %v, want %v", got, want)
	}
	// The foreign keys to the VM row cascade a purge.
	for _, table := range []string{"infinivirt.vm_devices", "infinivirt.vm_snapshots"} {
		var cascades bool
		err := s.pool.QueryRow(ctxT(t), `SELECT count(*) = 1 FROM pg_constraint
			WHERE conrelid = $1::regclass AND contype = 'f'
				AND confrelid = 'infinivirt.vms'::regclass AND confdeltype = 'c'`, table).Scan(&cascades)
		if err != nil {
			t.Fatal(err)
		}
		if !cascades {
			t.Errorf("%s has no foreign key to vms with ON DELETE CASCADE", table)
		}
	}
}

func TestVersion1DatabaseMigratesWithItsData(t *testing.T) {
	vm := testVM()
	s := migratedFrom(t, 1, "infinivirt.vm_devices", vm.ID,
		`INSERT INTO infinivirt.vms (id, host, name, status, reason, seq, updated_at)
			VALUES ($1, 'host-a', 'old-vm', 'running', 'booted', 2, '2001-02-03 04:05:06+00')`,
		`INSERT INTO infinivirt.vm_events (vm_id, seq, at, type, status, reason)
			VALUES ($1, 1, now(), 'status', 'starting', 'user'), ($1, 2, now(), 'status', 'running', 'booted')`)
	r := mustGet(t, s, vm.ID)
	if r.Name != "old-vm" || r.Status != api.StatusRunning || r.Seq != 2 ||
		!r.UpdatedAt.Equal(time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Errorf("the version-1 row after migrating: %+v", r)
	}
	if evs, err := s.Events(ctxT(t), vm.ID, 0, 0); err != nil || len(evs) != 2 {
		t.Errorf("the version-1 events after migrating: %+v, %v", evs, err)
	}
	if devs := mustDevices(t, s, vm.ID); len(devs) != 0 {
		t.Errorf("a version-1 VM has devices: %+v", devs)
	}

	// The first upsert of the new version gives the old VM its devices.
	vm.Name, vm.Devices = "old-vm", testDevices()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	if devs := mustDevices(t, s, vm.ID); !reflect.DeepEqual(devs, vm.Devices) {
		t.Errorf("devices after the upsert: %+v", devs)
	}
}

func TestUpsertVMWritesDevices(t *testing.T) {
	s := newStore(t)
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)

	vm := testVM()
	vm.Devices = testDevices()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	rows := deviceRows(t, s, vm.ID)
	if len(rows) != 3 {
		t.Fatalf("%d device rows, want 3: %+v", len(rows), rows)
	}
	disk, net0, net1 := rows["disk0"], rows["net0"], rows["net1"]
	size := int64(3 << 29)
	boot := int32(1)
	if disk.Type != "disk" || disk.Ordinal != 0 || !eq(disk.Path, str("/vms/a/disk0.qcow2")) ||
		!eq(disk.Format, str("qcow2")) || !eq(disk.SizeBytes, &size) || !eq(disk.BootIndex, &boot) ||
		disk.MAC != nil || disk.Bridge != nil {
		t.Errorf("disk row: %+v", disk)
	}
	if net0.Type != "nic" || net0.Ordinal != 1 || !eq(net0.MAC, str("52:54:00:12:34:56")) ||
		!eq(net0.Bridge, str("virbr0")) || net0.Path != nil || net0.SizeBytes != nil || net0.BootIndex != nil {
		t.Errorf("net0 row: %+v", net0)
	}
	if net1.Ordinal != 2 || !eq(net1.MAC, str("52:54:00:12:34:57")) || !eq(net1.Bridge, str("br-lab")) {
		t.Errorf("net1 row: %+v", net1)
	}
	for i, d := range vm.Devices {
		if got := rows[d.Name].Config; !reflect.DeepEqual(got, d) {
			t.Errorf("config of devices[%d] = %+v, want %+v", i, got, d)
		}
	}
	if got := mustDevices(t, s, vm.ID); !reflect.DeepEqual(got, vm.Devices) {
		t.Errorf("Devices = %+v, want %+v", got, vm.Devices)
	}

	// The same VM again: nothing changes, no one is notified.
	vmAt := vmUpdatedAt(t, s, vm.ID)
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, s, ch)
	if at := vmUpdatedAt(t, s, vm.ID); !at.Equal(vmAt) {
		t.Errorf("a replayed upsert moved the VM's updated_at from %v to %v", vmAt, at)
	}
	if again := deviceRows(t, s, vm.ID); !reflect.DeepEqual(again, rows) {
		t.Errorf("a replayed upsert changed device rows:\n%+v\n%+v", rows, again)
	}

	// Only a device goes (the VM's own columns show the first NIC, which
	// stays): its row is deleted, the VM is notified and its updated_at moves.
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.pool.Exec(ctxT(t), `UPDATE infinivirt.vms SET updated_at = $2 WHERE id = $1`, vm.ID, old); err != nil {
		t.Fatal(err)
	}
	vm.Devices = vm.Devices[:2]
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	after := deviceRows(t, s, vm.ID)
	if _, ok := after["net1"]; ok || len(after) != 2 {
		t.Errorf("rows after removing net1: %+v", after)
	}
	if !reflect.DeepEqual(after["disk0"], rows["disk0"]) || !reflect.DeepEqual(after["net0"], rows["net0"]) {
		t.Errorf("removing net1 rewrote the devices that stay:\n%+v\n%+v", rows, after)
	}
	if at := vmUpdatedAt(t, s, vm.ID); at.Equal(old) {
		t.Error("removing a device left the VM's updated_at")
	}
	if got := mustDevices(t, s, vm.ID); !reflect.DeepEqual(got, vm.Devices) {
		t.Errorf("Devices = %+v, want %+v", got, vm.Devices)
	}

	// A device's value changes: its row follows, once.
	vm.Devices[0].Disk.SizeBytes = 4 << 30
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	if got := deviceRows(t, s, vm.ID)["disk0"]; got.SizeBytes == nil || *got.SizeBytes != 4<<30 ||
		got.Config.Disk.SizeBytes != 4<<30 {
		t.Errorf("disk0 after resizing: %+v", got)
	}
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, s, ch)

	// No devices at all: every row goes.
	vm.Devices = nil
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	if got := deviceRows(t, s, vm.ID); len(got) != 0 {
		t.Errorf("rows left after an upsert without devices: %+v", got)
	}
}

func TestEveryDeviceTypeIsStored(t *testing.T) {
	s := newStore(t)
	vm := testVM()
	vm.Devices = []api.Device{
		{Name: "disk0", Type: api.DeviceDisk, Disk: &api.DiskDevice{Path: "/vms/a/\x00disk0\xff.raw", Format: "raw", SizeBytes: 1 << 20}},
		{Name: "cd0", Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{}},
		{Name: "cd1", Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: "/isos/ubuntu.iso", BootIndex: 2}},
		{Name: "net0", Type: api.DeviceNIC, NIC: &api.NICDevice{MAC: "52:54:00:00:00:01", Bridge: "virbr0"}},
		{Name: "pci0", Type: api.DevicePCI, PCI: &api.PCIDevice{Host: "0000:01:00.0"}},
		{Name: "usb0", Type: api.DeviceUSB, USB: &api.USBDevice{VendorID: "046d", ProductID: "c52b"}},
		{Name: "tpm0", Type: api.DeviceTPM, TPM: &api.TPMDevice{StateDir: "/vms/a/tpm"}},
		{Name: "balloon0", Type: api.DeviceBalloon, Balloon: &api.BalloonDevice{FreePageReporting: true}},
		{Name: "channel0", Type: api.DeviceChannel, Channel: &api.ChannelDevice{Port: "org.qemu.guest_agent.0"}},
	}
	var types []string
	for _, d := range vm.Devices {
		types = append(types, string(d.Type))
	}
	slices.Sort(types)
	if want := slices.Compact(slices.Clone(types)); len(want) != len(api.DeviceTypes) {
		t.Fatalf("the test covers %v, pkg/api has %v", want, api.DeviceTypes)
	}
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	rows := deviceRows(t, s, vm.ID)
	for name, c := range map[string]struct{ got, want *string }{
		"disk path (made storable)": {rows["disk0"].Path, str("/vms/a/disk0\uFFFD.raw")},
		"empty drive":               {rows["cd0"].Path, nil},
		"ISO":                       {rows["cd1"].Path, str("/isos/ubuntu.iso")},
		"PCI host":                  {rows["pci0"].PCIHost, str("0000:01:00.0")},
		"USB vendor":                {rows["usb0"].USBVendorID, str("046d")},
		"USB product":               {rows["usb0"].USBProductID, str("c52b")},
		"TPM state":                 {rows["tpm0"].Path, str("/vms/a/tpm")},
		"channel port":              {rows["channel0"].Port, str("org.qemu.guest_agent.0")},
		"balloon path":              {rows["balloon0"].Path, nil},
	} {
		if !eq(c.got, c.want) {
			t.Errorf("%s: %v, want %v", name, deref(c.got), deref(c.want))
		}
	}
	if b := rows["cd1"].BootIndex; b == nil || *b != 2 {
		t.Errorf("cd1 boot index %v, want 2", b)
	}
	if b := rows["disk0"].BootIndex; b != nil {
		t.Errorf("a disk that does not boot has boot index %d", *b)
	}

	// config and the column hold the same cleaned text; the rest comes back as sent.
	got := mustDevices(t, s, vm.ID)
	want := slices.Clone(vm.Devices)
	disk := *want[0].Disk
	disk.Path = "/vms/a/disk0\uFFFD.raw"
	want[0].Disk = &disk
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Devices =\n%+v\nwant\n%+v", got, want)
	}

	// The type CHECK lists exactly pkg/api's device types, and the name
	// CHECK is the spelling UpsertVM checks first.
	defs := map[string]string{}
	for _, c := range []string{"vm_devices_type_check", "vm_devices_name_check"} {
		var def string
		if err := s.pool.QueryRow(ctxT(t), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conname = $1 AND connamespace = 'infinivirt'::regnamespace`, c).Scan(&def); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		defs[c] = def
	}
	var checked []string
	for _, m := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(defs["vm_devices_type_check"], -1) {
		checked = append(checked, m[1])
	}
	slices.Sort(checked)
	if want := slices.Compact(types); !slices.Equal(checked, want) {
		t.Errorf("vm_devices_type_check lists %v;\npkg/api has %v: add a migration", checked, want)
	}
	if !strings.Contains(defs["vm_devices_name_check"], "'"+deviceNameRE.String()+"'") {
		t.Errorf("vm_devices_name_check is %s; UpsertVM checks %s", defs["vm_devices_name_check"], deviceNameRE)
	}
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// A VM's devices and snapshots follow its row: kept on soft delete, gone
// with a purge, and only its own.
func TestDevicesAndSnapshotsFollowTheVMRow(t *testing.T) {
	s := newStore(t)
	vm, other := testVM(), testVM()
	vm.Devices, other.Devices = testDevices(), testDevices()[:1]
	for _, v := range []api.VM{vm, other} {
		if err := s.UpsertVM(ctxT(t), v); err != nil {
			t.Fatal(err)
		}
		if err := s.SyncSnapshots(ctxT(t), v.ID, []api.Snapshot{testSnapshot(v.ID, "a", time.Now())}); err != nil {
			t.Fatal(err)
		}
	}
	counts := func(v api.VM) (devices, snapshots int) {
		return len(mustDevices(t, s, v.ID)), len(mustSnapshots(t, s, v.ID))
	}
	// A soft-deleted VM keeps them, as it keeps its events.
	if err := s.MarkDeleted(ctxT(t), vm.ID); err != nil {
		t.Fatal(err)
	}
	if devs, snaps := counts(vm); devs != 3 || snaps != 1 {
		t.Errorf("%d devices and %d snapshots after MarkDeleted, want 3 and 1", devs, snaps)
	}
	if err := s.Purge(ctxT(t), vm.ID); err != nil {
		t.Fatal(err)
	}
	if devs, snaps := counts(vm); devs != 0 || snaps != 0 {
		t.Errorf("%d devices and %d snapshots left after Purge", devs, snaps)
	}
	if devs, snaps := counts(other); devs != 1 || snaps != 1 {
		t.Errorf("the other VM has %d devices and %d snapshots after a purge, want 1 and 1", devs, snaps)
	}
	if _, err := s.Devices(ctxT(t), "x"); errCode(err) != errdefs.CodeInvalidArgument {
		t.Errorf("Devices of a bad id: %v, want InvalidArgument", err)
	}
	if _, err := s.Snapshots(ctxT(t), "x"); errCode(err) != errdefs.CodeInvalidArgument {
		t.Errorf("Snapshots of a bad id: %v, want InvalidArgument", err)
	}
}

func TestBadDevicesChangeNothing(t *testing.T) {
	s := newStore(t)
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)
	vm := testVM()
	vm.Devices = testDevices()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	before, beforeRows := mustGet(t, s, vm.ID), deviceRows(t, s, vm.ID)

	// Each bad VM also renames the VM, so a partial write would show.
	bad := func(change func(devs []api.Device) []api.Device) api.VM {
		v := vm
		v.Name = "renamed"
		v.Devices = change(testDevices())
		return v
	}
	unchanged := func(name string) {
		t.Helper()
		if r := mustGet(t, s, vm.ID); r != before {
			t.Errorf("%s: the VM row changed:\n%+v\n%+v", name, before, r)
		}
		if rows := deviceRows(t, s, vm.ID); !reflect.DeepEqual(rows, beforeRows) {
			t.Errorf("%s: device rows changed:\n%+v\n%+v", name, beforeRows, rows)
		}
	}
	for name, c := range map[string]struct {
		vm    api.VM
		field string
	}{
		"empty name": {bad(func(d []api.Device) []api.Device { d[1].Name = ""; return d }), "devices[1].name"},
		"bad name":   {bad(func(d []api.Device) []api.Device { d[2].Name = "Net 1"; return d }), "devices[2].name"},
		"same name":  {bad(func(d []api.Device) []api.Device { d[2].Name = "net0"; return d }), "devices[2].name"},
		"bad type":   {bad(func(d []api.Device) []api.Device { d[1].Type = "floppy"; return d }), "devices[1].type"},
		"no section": {bad(func(d []api.Device) []api.Device { d[1].NIC = nil; return d }), "devices[1].nic"},
		"two sections": {bad(func(d []api.Device) []api.Device {
			d[1].Disk = &api.DiskDevice{}
			return d
		}), "devices[1].disk"},
		"negative size": {bad(func(d []api.Device) []api.Device { d[0].Disk.SizeBytes = -1; return d }), "devices[0].disk.sizeBytes"},
		"negative boot": {bad(func(d []api.Device) []api.Device { d[0].Disk.BootIndex = -1; return d }), "devices[0].disk.bootIndex"},
	} {
		err := s.UpsertVM(ctxT(t), c.vm)
		var ae *errdefs.Error
		if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != c.field {
			t.Errorf("%s: %v, want InvalidArgument on %s", name, err, c.field)
		}
		unchanged(name)
	}
	expectQuiet(t, s, ch)

	// A device the database itself refuses, after the VM row was written in
	// the same transaction: the transaction is rolled back whole.
	if _, err := s.pool.Exec(ctxT(t), `ALTER TABLE infinivirt.vm_devices
		ADD CONSTRAINT vm_devices_bridge_check CHECK (bridge <> 'br-refused')`); err != nil {
		t.Fatal(err)
	}
	err := s.UpsertVM(ctxT(t), bad(func(d []api.Device) []api.Device { d[2].NIC.Bridge = "br-refused"; return d }))
	var ae *errdefs.Error
	var pe *pgconn.PgError
	if !errors.As(err, &ae) || ae.Code != errdefs.CodeInvalidArgument || ae.Field != "devices.nic.bridge" ||
		!errors.As(err, &pe) || pe.ConstraintName != "vm_devices_bridge_check" {
		t.Errorf("a device the database refuses: %v, want InvalidArgument on devices.nic.bridge", err)
	}
	unchanged("refused by the database")
	expectQuiet(t, s, ch)

	// The table's own CHECKs hold against any writer.
	for constraint, insert := range map[string]string{
		"vm_devices_name_check":   `INSERT INTO infinivirt.vm_devices (vm_id, name, type, ordinal, config) VALUES ($1, '', 'nic', 5, '{"name": "", "type": "nic"}')`,
		"vm_devices_type_check":   `INSERT INTO infinivirt.vm_devices (vm_id, name, type, ordinal, config) VALUES ($1, 'fd0', 'floppy', 5, '{"name": "fd0", "type": "floppy"}')`,
		"vm_devices_config_check": `INSERT INTO infinivirt.vm_devices (vm_id, name, type, ordinal, config) VALUES ($1, 'net5', 'nic', 5, '{"name": "net6", "type": "nic"}')`,
	} {
		_, err := s.pool.Exec(ctxT(t), insert, vm.ID)
		if !errors.As(err, &pe) || pe.ConstraintName != constraint {
			t.Errorf("%s let a row through: %v", constraint, err)
		}
	}
}
