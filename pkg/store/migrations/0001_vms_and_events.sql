-- VM inventory with current status, and the per-VM event history, for the
-- Infinibay backend. The agent is the only writer; the backend reads and
-- LISTENs on channel infinivirt_vm (payload: the VM id).
--
-- Status is Infinibay's closed vocabulary: the CHECK lists pkg/api's values
-- (a test keeps them in sync; a new status needs a new migration). Reasons
-- grow with the code, and a reason the database refused would block the
-- agent's replay for good, so their CHECK only enforces the spelling.

CREATE TABLE infinivirt.vms (
    id               uuid        PRIMARY KEY,
    host             text        NOT NULL,
    name             text        NOT NULL,
    os               text        NOT NULL DEFAULT '',
    cpu_cores        integer     NOT NULL DEFAULT 0,
    ram_mib          bigint      NOT NULL DEFAULT 0,
    disk_bytes       bigint      NOT NULL DEFAULT 0,
    mac              text        NOT NULL DEFAULT '',
    bridge           text        NOT NULL DEFAULT '',
    graphic_protocol text        NOT NULL DEFAULT '',
    graphic_listen   text        NOT NULL DEFAULT '',
    graphic_port     integer     NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'off',
    reason           text,
    message          text,
    seq              bigint      NOT NULL DEFAULT 0,
    qemu_pid         integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,

    CONSTRAINT vms_cpu_cores_check    CHECK (cpu_cores >= 0),
    CONSTRAINT vms_ram_mib_check      CHECK (ram_mib >= 0),
    CONSTRAINT vms_disk_bytes_check   CHECK (disk_bytes >= 0),
    CONSTRAINT vms_graphic_port_check CHECK (graphic_port BETWEEN 0 AND 65535),
    CONSTRAINT vms_seq_check          CHECK (seq >= 0),
    CONSTRAINT vms_qemu_pid_check     CHECK (qemu_pid > 0),
    CONSTRAINT vms_status_check CHECK (status IN (
        'building', 'starting', 'running', 'off', 'suspended', 'paused',
        'updating_hardware', 'powering_off_update', 'error')),
    CONSTRAINT vms_reason_check CHECK (reason ~ '^[a-z][a-z0-9-]{0,62}$')
);

COMMENT ON TABLE infinivirt.vms IS
    'One row per VM known to any Infinivirt host. Soft-deleted rows keep deleted_at.';
COMMENT ON COLUMN infinivirt.vms.host IS 'Hostname of the Infinivirt agent that runs the VM.';
COMMENT ON COLUMN infinivirt.vms.status IS 'Infinibay status: building, starting, running, off, suspended, paused, updating_hardware, powering_off_update, error.';
COMMENT ON COLUMN infinivirt.vms.reason IS 'Machine-readable cause of the status (booted, user, crashed, ...).';
COMMENT ON COLUMN infinivirt.vms.seq IS 'Sequence number of the event that set status, reason and message. Never decreases.';
COMMENT ON COLUMN infinivirt.vms.qemu_pid IS 'Host PID of the QEMU process while one runs.';
COMMENT ON COLUMN infinivirt.vms.updated_at IS 'Last time any column changed; unchanged by replays.';

-- The backend's listings: live VMs per host, and live VMs by status.
CREATE INDEX vms_host_name_idx ON infinivirt.vms (host, name) WHERE deleted_at IS NULL;
CREATE INDEX vms_status_idx ON infinivirt.vms (status) WHERE deleted_at IS NULL;
-- "What changed since T", for a backend catching up after its own restart.
CREATE INDEX vms_updated_at_idx ON infinivirt.vms (updated_at);

CREATE TABLE infinivirt.vm_events (
    vm_id       uuid        NOT NULL REFERENCES infinivirt.vms (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL,
    at          timestamptz NOT NULL,
    type        text        NOT NULL,
    status      text,
    reason      text,
    message     text,
    qemu_pid    integer,
    exit_code   integer,
    signal      text,
    recorded_at timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (vm_id, seq),
    CONSTRAINT vm_events_seq_check  CHECK (seq > 0),
    CONSTRAINT vm_events_type_check CHECK (type IN ('status', 'progress', 'guest')),
    CONSTRAINT vm_events_status_required_check CHECK (type <> 'status' OR status IS NOT NULL),
    CONSTRAINT vm_events_status_check CHECK (status IN (
        'building', 'starting', 'running', 'off', 'suspended', 'paused',
        'updating_hardware', 'powering_off_update', 'error')),
    CONSTRAINT vm_events_reason_check CHECK (reason ~ '^[a-z][a-z0-9-]{0,62}$')
);

COMMENT ON TABLE infinivirt.vm_events IS
    'Each VM''s event log as its shim wrote it; (vm_id, seq) is unique, so replays insert nothing.';
COMMENT ON COLUMN infinivirt.vm_events.at IS 'When the shim recorded the event.';
COMMENT ON COLUMN infinivirt.vm_events.recorded_at IS 'When the event reached this database.';
COMMENT ON COLUMN infinivirt.vm_events.exit_code IS 'QEMU exit status, on the event that reports its end.';
COMMENT ON COLUMN infinivirt.vm_events.signal IS 'Signal that ended QEMU (SIGKILL, ...), on the event that reports its end.';

-- The primary key serves "events of VM x after seq n"; this one serves
-- time-range queries across VMs and pruning old history.
CREATE INDEX vm_events_at_idx ON infinivirt.vm_events (at);
