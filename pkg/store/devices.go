package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// deviceNameRE is the spelling vm_devices_name_check enforces: a device
// name is also its QEMU id. It is wider than what vmspec accepts, so that a
// name the spec allows is never refused here.
var deviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Length caps of the devices' text, so that one bad value cannot bloat a row.
const (
	maxPathBytes  = 4096
	maxShortBytes = 64
)

// deviceColumns holds a VM's devices as one array per column, for unnest.
// Every slice is non-nil: a NULL array would make the delete keep everything.
type deviceColumns struct {
	name, typ                         []string
	ordinal                           []int32
	path, format                      []*string
	sizeBytes                         []*int64
	bootIndex                         []*int32
	mac, bridge, pciHost, usbVendorID []*string
	usbProductID, port                []*string
	config                            []string
}

func (c deviceColumns) args() []any {
	return []any{c.name, c.typ, c.ordinal, c.path, c.format, c.sizeBytes, c.bootIndex,
		c.mac, c.bridge, c.pciHost, c.usbVendorID, c.usbProductID, c.port, c.config}
}

// deviceColumnsOf checks a VM's devices and makes them storable. It checks
// only what storing needs (a name, a known type with its section, values
// the columns hold); the rest is vmspec's job. Fields are named as api.VM
// spells them: devices[2].disk.sizeBytes.
func deviceColumnsOf(devs []api.Device) (deviceColumns, error) {
	n := len(devs)
	c := deviceColumns{
		name: make([]string, 0, n), typ: make([]string, 0, n), ordinal: make([]int32, 0, n),
		path: make([]*string, 0, n), format: make([]*string, 0, n), sizeBytes: make([]*int64, 0, n),
		bootIndex: make([]*int32, 0, n), mac: make([]*string, 0, n), bridge: make([]*string, 0, n),
		pciHost: make([]*string, 0, n), usbVendorID: make([]*string, 0, n), usbProductID: make([]*string, 0, n),
		port: make([]*string, 0, n), config: make([]string, 0, n),
	}
	if n > math.MaxInt32 {
		return c, errdefs.Invalid("devices", "%d devices is too many", n)
	}
	names := map[string]int{}
	for i, d := range devs {
		f := fmt.Sprintf("devices[%d]", i)
		switch {
		case d.Name == "":
			return c, errdefs.Invalid(f+".name", "is required")
		case !deviceNameRE.MatchString(d.Name):
			return c, errdefs.Invalid(f+".name", "must be a lower-case letter then up to 63 letters, digits or '_', got %q", d.Name)
		}
		if j, dup := names[d.Name]; dup {
			return c, errdefs.Invalid(f+".name", "%q is already the name of devices[%d]", d.Name, j)
		}
		names[d.Name] = i
		d, err := cleanDevice(f, d)
		if err != nil {
			return c, err
		}
		config, err := json.Marshal(d)
		if err != nil {
			return c, errdefs.Invalid(f, "%v", err)
		}
		var path, format, mac, bridge, pciHost, usbVendorID, usbProductID, port string
		var sizeBytes *int64
		var bootIndex int
		switch d.Type {
		case api.DeviceDisk:
			path, format, bootIndex = d.Disk.Path, d.Disk.Format, d.Disk.BootIndex
			sizeBytes = &d.Disk.SizeBytes
		case api.DeviceCDROM:
			path, bootIndex = d.CDROM.Path, d.CDROM.BootIndex
		case api.DeviceNIC:
			mac, bridge = d.NIC.MAC, d.NIC.Bridge
		case api.DevicePCI:
			pciHost = d.PCI.Host
		case api.DeviceUSB:
			usbVendorID, usbProductID = d.USB.VendorID, d.USB.ProductID
		case api.DeviceTPM:
			path = d.TPM.StateDir
		case api.DeviceChannel:
			port = d.Channel.Port
		}
		c.name = append(c.name, d.Name)
		c.typ = append(c.typ, string(d.Type))
		c.ordinal = append(c.ordinal, int32(i))
		c.path = append(c.path, nullText(path))
		c.format = append(c.format, nullText(format))
		c.sizeBytes = append(c.sizeBytes, sizeBytes)
		c.bootIndex = append(c.bootIndex, nullPositive(bootIndex))
		c.mac = append(c.mac, nullText(mac))
		c.bridge = append(c.bridge, nullText(bridge))
		c.pciHost = append(c.pciHost, nullText(pciHost))
		c.usbVendorID = append(c.usbVendorID, nullText(usbVendorID))
		c.usbProductID = append(c.usbProductID, nullText(usbProductID))
		c.port = append(c.port, nullText(port))
		c.config = append(c.config, string(config))
	}
	return c, nil
}

// cleanDevice checks that d has exactly its type's section and returns a
// copy whose text is storable. The copy is what both the typed columns and
// config hold, so the two always agree.
func cleanDevice(f string, d api.Device) (api.Device, error) {
	sections := map[api.DeviceType]bool{
		api.DeviceDisk: d.Disk != nil, api.DeviceCDROM: d.CDROM != nil, api.DeviceNIC: d.NIC != nil,
		api.DevicePCI: d.PCI != nil, api.DeviceUSB: d.USB != nil, api.DeviceTPM: d.TPM != nil,
		api.DeviceBalloon: d.Balloon != nil, api.DeviceChannel: d.Channel != nil,
	}
	has, known := sections[d.Type]
	if !known {
		return d, errdefs.Invalid(f+".type", "must be one of %v, got %q", api.DeviceTypes, d.Type)
	}
	if !has {
		return d, errdefs.Invalid(f+"."+string(d.Type), "is required for a %s device", d.Type)
	}
	for _, t := range api.DeviceTypes {
		if sections[t] && t != d.Type {
			return d, errdefs.Invalid(f+"."+string(t), "must be empty on a %s device", d.Type)
		}
	}
	out := api.Device{Name: d.Name, Type: d.Type}
	switch d.Type {
	case api.DeviceDisk:
		v := *d.Disk
		if v.SizeBytes < 0 {
			return d, errdefs.Invalid(f+".disk.sizeBytes", "must not be negative, got %d", v.SizeBytes)
		}
		if err := checkBootIndex(f+".disk.bootIndex", v.BootIndex); err != nil {
			return d, err
		}
		v.Path, v.Format = cleanText(v.Path, maxPathBytes), cleanText(v.Format, maxShortBytes)
		out.Disk = &v
	case api.DeviceCDROM:
		v := *d.CDROM
		if err := checkBootIndex(f+".cdrom.bootIndex", v.BootIndex); err != nil {
			return d, err
		}
		v.Path = cleanText(v.Path, maxPathBytes)
		out.CDROM = &v
	case api.DeviceNIC:
		v := *d.NIC
		v.MAC, v.Bridge = cleanText(v.MAC, maxShortBytes), cleanText(v.Bridge, maxShortBytes)
		out.NIC = &v
	case api.DevicePCI:
		v := *d.PCI
		v.Host = cleanText(v.Host, maxShortBytes)
		out.PCI = &v
	case api.DeviceUSB:
		v := *d.USB
		v.VendorID, v.ProductID = cleanText(v.VendorID, maxShortBytes), cleanText(v.ProductID, maxShortBytes)
		out.USB = &v
	case api.DeviceTPM:
		v := *d.TPM
		v.StateDir = cleanText(v.StateDir, maxPathBytes)
		out.TPM = &v
	case api.DeviceBalloon:
		v := *d.Balloon
		out.Balloon = &v
	case api.DeviceChannel:
		v := *d.Channel
		v.Port = cleanText(v.Port, 255)
		out.Channel = &v
	}
	return out, nil
}

// nullPositive is NULL for 0, "not bootable" (checkBootIndex bounds the rest).
func nullPositive(v int) *int32 {
	if v <= 0 || v > math.MaxInt32 {
		return nil
	}
	p := int32(v)
	return &p
}

func checkBootIndex(field string, i int) error {
	if i < 0 || i > math.MaxInt32 {
		return errdefs.Invalid(field, "must be a positive boot order, or 0 for not bootable, got %d", i)
	}
	return nil
}

// syncDevicesSQL makes the VM's device rows what $3.. list, after the VM
// row itself was upserted in the same transaction ($2: whether that changed
// it); a change notifies as vmRowsTail says.
var syncDevicesSQL = `
WITH d AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::integer[], $6::text[], $7::text[], $8::bigint[],
                         $9::integer[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                         $15::text[], $16::text[])
        AS d(name, type, ordinal, path, format, size_bytes, boot_index, mac, bridge, pci_host,
             usb_vendor_id, usb_product_id, port, config)
),
up AS (
    INSERT INTO infinivirt.vm_devices AS x (vm_id, name, type, ordinal, path, format, size_bytes, boot_index,
        mac, bridge, pci_host, usb_vendor_id, usb_product_id, port, config)
    SELECT $1::uuid, d.name, d.type, d.ordinal, d.path, d.format, d.size_bytes, d.boot_index, d.mac, d.bridge,
        d.pci_host, d.usb_vendor_id, d.usb_product_id, d.port, d.config::jsonb
    FROM d
    ON CONFLICT (vm_id, name) DO UPDATE SET
        type = EXCLUDED.type, ordinal = EXCLUDED.ordinal, path = EXCLUDED.path, format = EXCLUDED.format,
        size_bytes = EXCLUDED.size_bytes, boot_index = EXCLUDED.boot_index, mac = EXCLUDED.mac,
        bridge = EXCLUDED.bridge, pci_host = EXCLUDED.pci_host, usb_vendor_id = EXCLUDED.usb_vendor_id,
        usb_product_id = EXCLUDED.usb_product_id, port = EXCLUDED.port, config = EXCLUDED.config,
        updated_at = now()
    WHERE (x.type, x.ordinal, x.path, x.format, x.size_bytes, x.boot_index, x.mac, x.bridge, x.pci_host,
           x.usb_vendor_id, x.usb_product_id, x.port, x.config)
        IS DISTINCT FROM
          (EXCLUDED.type, EXCLUDED.ordinal, EXCLUDED.path, EXCLUDED.format, EXCLUDED.size_bytes,
           EXCLUDED.boot_index, EXCLUDED.mac, EXCLUDED.bridge, EXCLUDED.pci_host, EXCLUDED.usb_vendor_id,
           EXCLUDED.usb_product_id, EXCLUDED.port, EXCLUDED.config)
    RETURNING 1
),` + vmRowsTail("vm_devices", "name <> ALL ($3::text[])", "$2::boolean")

// vmRowsTail ends a statement that rewrites one VM's ($1) rows of table:
// after its CTE up upserted the rows the VM has, it deletes those for which
// stale holds. A change moves the VM's updated_at, so a backend catching up
// by updated_at sees it, unless vmChanged says the statement's transaction
// already moved it, and one NOTIFY goes out when anything changed.
func vmRowsTail(table, stale, vmChanged string) string {
	return `
gone AS (
    DELETE FROM infinivirt.` + table + ` WHERE vm_id = $1::uuid AND ` + stale + `
    RETURNING 1
),
touched AS (
    UPDATE infinivirt.vms SET updated_at = now()
    WHERE id = $1::uuid AND NOT ` + vmChanged + ` AND (EXISTS (SELECT FROM up) OR EXISTS (SELECT FROM gone))
    RETURNING 1
)
SELECT pg_notify('` + NotifyChannel + `', $1::uuid::text)
WHERE ` + vmChanged + ` OR EXISTS (SELECT FROM up) OR EXISTS (SELECT FROM gone)`
}

// Devices returns a VM's devices as its last UpsertVM gave them, in the
// VM's order; none when the VM is unknown. A soft-deleted VM keeps its
// devices until it is purged.
func (s *Store) Devices(ctx context.Context, vmID string) ([]api.Device, error) {
	id, err := parseID("vmId", vmID)
	if err != nil {
		return nil, s.wrap("Devices", vmID, err)
	}
	var out []api.Device
	err = s.do(ctx, "Devices", id, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, `SELECT config FROM infinivirt.vm_devices WHERE vm_id = $1 ORDER BY ordinal, name`, id)
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (api.Device, error) {
			var d api.Device
			err := row.Scan(&d)
			return d, err
		})
		return err
	})
	return out, err
}
