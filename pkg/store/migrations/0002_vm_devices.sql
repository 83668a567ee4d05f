-- Each VM's devices (pkg/api Device), one row per device, for the Infinibay
-- backend. The agent rewrites a VM's devices with its inventory in one
-- transaction: rows of devices the VM no longer has are deleted, and a
-- change to any of them moves vms.updated_at and sends the VM's NOTIFY.
--
-- config is the device exactly as the API spells it; the typed columns copy
-- the values a query filters or joins on, NULL when the device's type has no
-- such value or it is empty. Devices follow their VM: a soft-deleted VM keeps
-- them, a purged one loses them (ON DELETE CASCADE).
--
-- Like status, type is pkg/api's closed vocabulary (a test keeps the CHECK
-- in sync; a new type needs a new migration). A name is also the device's
-- QEMU id, so its CHECK enforces the spelling.

CREATE TABLE infinivirt.vm_devices (
    vm_id          uuid        NOT NULL REFERENCES infinivirt.vms (id) ON DELETE CASCADE,
    name           text        NOT NULL,
    type           text        NOT NULL,
    ordinal        integer     NOT NULL,
    path           text,
    format         text,
    size_bytes     bigint,
    boot_index     integer,
    mac            text,
    bridge         text,
    pci_host       text,
    usb_vendor_id  text,
    usb_product_id text,
    port           text,
    config         jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (vm_id, name),
    CONSTRAINT vm_devices_name_check       CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT vm_devices_type_check       CHECK (type IN (
        'disk', 'cdrom', 'nic', 'pci', 'usb', 'tpm', 'balloon', 'channel')),
    CONSTRAINT vm_devices_ordinal_check    CHECK (ordinal >= 0),
    CONSTRAINT vm_devices_size_bytes_check CHECK (size_bytes >= 0),
    CONSTRAINT vm_devices_boot_index_check CHECK (boot_index > 0),
    CONSTRAINT vm_devices_config_check     CHECK (
        jsonb_typeof(config) = 'object' AND config->>'name' = name AND config->>'type' = type)
);

COMMENT ON TABLE infinivirt.vm_devices IS
    'One row per device of each VM in infinivirt.vms; the rows follow the VM''s (kept on soft delete, gone on purge).';
COMMENT ON COLUMN infinivirt.vm_devices.name IS 'Stable device name, also its QEMU id: disk0, cd0, net0, pci0, ...';
COMMENT ON COLUMN infinivirt.vm_devices.type IS 'disk, cdrom, nic, pci, usb, tpm, balloon or channel.';
COMMENT ON COLUMN infinivirt.vm_devices.ordinal IS 'Position in the VM''s device list, from 0; the first of a type is the one the VM row shows.';
COMMENT ON COLUMN infinivirt.vm_devices.path IS 'disk: image file; cdrom: ISO in the drive (NULL: no disc); tpm: state directory.';
COMMENT ON COLUMN infinivirt.vm_devices.format IS 'disk: qcow2 or raw.';
COMMENT ON COLUMN infinivirt.vm_devices.size_bytes IS 'disk: virtual size in bytes.';
COMMENT ON COLUMN infinivirt.vm_devices.boot_index IS 'disk, cdrom: boot order, lowest first; NULL when not bootable.';
COMMENT ON COLUMN infinivirt.vm_devices.mac IS 'nic: MAC address, lower-case colon form.';
COMMENT ON COLUMN infinivirt.vm_devices.bridge IS 'nic: host bridge the interface''s TAP is in.';
COMMENT ON COLUMN infinivirt.vm_devices.pci_host IS 'pci: host PCI address passed through, like 0000:01:00.0.';
COMMENT ON COLUMN infinivirt.vm_devices.usb_vendor_id IS 'usb: vendor ID, four hex digits.';
COMMENT ON COLUMN infinivirt.vm_devices.usb_product_id IS 'usb: product ID, four hex digits.';
COMMENT ON COLUMN infinivirt.vm_devices.port IS 'channel: virtio-serial port name the guest sees (org.qemu.guest_agent.0).';
COMMENT ON COLUMN infinivirt.vm_devices.config IS 'The whole device as pkg/api''s Device spells it in JSON.';
COMMENT ON COLUMN infinivirt.vm_devices.updated_at IS 'Last time any column changed; unchanged by replays.';
COMMENT ON COLUMN infinivirt.vms.updated_at IS 'Last time any column, or any of the VM''s devices, changed; unchanged by replays.';

-- The primary key serves "devices of VM x"; these serve the backend's
-- lookups across VMs: which VM has this MAC, which holds this host device.
CREATE INDEX vm_devices_mac_idx ON infinivirt.vm_devices (mac) WHERE mac IS NOT NULL;
CREATE INDEX vm_devices_pci_host_idx ON infinivirt.vm_devices (pci_host) WHERE pci_host IS NOT NULL;
