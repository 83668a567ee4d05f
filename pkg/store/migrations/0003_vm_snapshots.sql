-- Each VM's snapshots (pkg/api Snapshot), one row per snapshot, for the
-- Infinibay backend. The agent rewrites a VM's snapshots after each change
-- (take, revert, delete) and when it starts, in one statement: rows of
-- snapshots the VM no longer has are deleted, and a change to any of them
-- moves vms.updated_at and sends the VM's NOTIFY, as a device change does.
--
-- Snapshots follow their VM: a soft-deleted VM keeps them, a purged one
-- loses them (ON DELETE CASCADE). The name is the tag in each disk's
-- qcow2, unique within the VM; the CHECK enforces the spelling qemu-img
-- is given. power_state is pkg/api's status vocabulary, as vms.status (a
-- test keeps the CHECK in sync). At most one snapshot of a VM is current;
-- both that rule and the name's uniqueness are checked at commit, so that
-- one statement can move the mark or replace a snapshot by its name.

CREATE TABLE infinivirt.vm_snapshots (
    id          uuid        PRIMARY KEY,
    vm_id       uuid        NOT NULL REFERENCES infinivirt.vms (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    size_bytes  bigint      NOT NULL DEFAULT 0,
    is_current  boolean     NOT NULL DEFAULT false,
    memory      boolean     NOT NULL DEFAULT false,
    power_state text        NOT NULL,
    disks       text[]      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT vm_snapshots_name_key UNIQUE (vm_id, name) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT vm_snapshots_is_current_key EXCLUDE (vm_id WITH =) WHERE (is_current) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT vm_snapshots_name_check       CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
    CONSTRAINT vm_snapshots_size_bytes_check CHECK (size_bytes >= 0),
    CONSTRAINT vm_snapshots_power_state_check CHECK (power_state IN (
        'building', 'starting', 'running', 'off', 'suspended', 'paused',
        'updating_hardware', 'powering_off_update', 'error')),
    CONSTRAINT vm_snapshots_disks_check CHECK (
        cardinality(disks) > 0 AND array_position(disks, NULL) IS NULL)
);

COMMENT ON TABLE infinivirt.vm_snapshots IS
    'One row per snapshot of each VM in infinivirt.vms; the rows follow the VM''s (kept on soft delete, gone on purge).';
COMMENT ON COLUMN infinivirt.vm_snapshots.id IS 'The snapshot''s own UUID, as the API gives it.';
COMMENT ON COLUMN infinivirt.vm_snapshots.name IS 'Unique within the VM: the internal snapshot''s tag in each of its disks.';
COMMENT ON COLUMN infinivirt.vm_snapshots.created_at IS 'When the snapshot was taken (not when the row was written).';
COMMENT ON COLUMN infinivirt.vm_snapshots.size_bytes IS 'Saved RAM and device state in bytes; 0 for a disk-only snapshot.';
COMMENT ON COLUMN infinivirt.vm_snapshots.is_current IS 'The snapshot the VM''s disks last started from: the one last taken or reverted to.';
COMMENT ON COLUMN infinivirt.vm_snapshots.memory IS 'The snapshot holds the running guest''s RAM, so a revert resumes it.';
COMMENT ON COLUMN infinivirt.vm_snapshots.power_state IS 'The VM''s status when the snapshot was taken.';
COMMENT ON COLUMN infinivirt.vm_snapshots.disks IS 'Names of the disks the snapshot covers (infinivirt.vm_devices.name).';
COMMENT ON COLUMN infinivirt.vm_snapshots.updated_at IS 'Last time any column changed; unchanged by replays.';
COMMENT ON COLUMN infinivirt.vms.updated_at IS 'Last time any column, or any of the VM''s devices or snapshots, changed; unchanged by replays.';
