-- HSDB schema version 1. Described column by column in docs/hsdb.md.
--
-- Portable on purpose: BIGINT / INTEGER / TEXT only, booleans as INTEGER 0/1 with a CHECK,
-- timestamps as BIGINT milliseconds since the Unix epoch, UUIDs as 36-char lowercase text,
-- MACs as aa:bb:cc:dd:ee:ff text. The only SQLite-specific spelling is
-- `INTEGER PRIMARY KEY AUTOINCREMENT` (PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY).

-- One row per applied migration; the schema version is MAX(version).
CREATE TABLE schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL
);

-- A managed host (seed: ms). id is chosen by whoever adds the host, like the seed's signed
-- 64-bit msid.
CREATE TABLE host (
    id BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    machine_type TEXT NOT NULL,
    model TEXT NOT NULL,
    serial TEXT NOT NULL,
    cpu_milli BIGINT NOT NULL CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL CHECK (memory_mb >= 0),
    host_group TEXT NOT NULL
);

-- A host-monitor instance (seed: vios + the HM heartbeat).
CREATE TABLE hm (
    uuid TEXT NOT NULL PRIMARY KEY,
    host_id BIGINT NOT NULL REFERENCES host (id),
    mac TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('UP', 'DOWN')),
    reason BIGINT NOT NULL DEFAULT 0,
    last_hb_ms BIGINT NOT NULL,
    incarnation TEXT NOT NULL,
    version TEXT NOT NULL,
    has_data INTEGER NOT NULL DEFAULT 0 CHECK (has_data IN (0, 1))
);
CREATE INDEX hm_by_host ON hm (host_id);

-- A VM (seed: vm).
CREATE TABLE vm (
    uuid TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    current_host BIGINT NULL REFERENCES host (id),
    home_host BIGINT NULL REFERENCES host (id),
    state TEXT NOT NULL CHECK (state IN ('ADDED', 'STARTING', 'STARTED', 'STOPPING',
        'STOPPED', 'REMOVING', 'SUSPENDED', 'UNKNOWN')),
    managed INTEGER NOT NULL DEFAULT 0 CHECK (managed IN (0, 1)),
    ha_monitor INTEGER NOT NULL DEFAULT 1 CHECK (ha_monitor IN (0, 1)),
    priority TEXT NOT NULL DEFAULT 'MEDIUM' CHECK (priority IN ('HIGH', 'MEDIUM', 'LOW')),
    detection_speed TEXT NOT NULL DEFAULT 'NORMAL'
        CHECK (detection_speed IN ('FAST', 'NORMAL', 'SLOW')),
    cpu_milli BIGINT NOT NULL DEFAULT 0 CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL DEFAULT 0 CHECK (memory_mb >= 0),
    ostype TEXT NULL,
    agent_ver_lower TEXT NULL,
    agent_ver_upper TEXT NULL,
    short_msg BIGINT NOT NULL DEFAULT 0,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX vm_by_current_host ON vm (current_host);

-- One row per (VM, monitor) pair, i.e. per HA interface of the VM (seed: map). mac is the
-- VM's MAC on the interface that pairs with this monitor.
CREATE TABLE vm_hm (
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    hm TEXT NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    mac TEXT NULL,
    hb_missed_ms BIGINT NULL,
    last_state TEXT NOT NULL CHECK (last_state IN ('DETECTED', 'MISSING', 'SUSPENDED')),
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (vm, hm)
);
CREATE INDEX vm_hm_by_hm ON vm_hm (hm);
CREATE INDEX vm_hm_missed ON vm_hm (vm) WHERE hb_missed_ms IS NOT NULL;

-- Items awaiting the controller's acknowledgement (seed: trans).
CREATE TABLE pending (
    id INTEGER NOT NULL PRIMARY KEY,
    tag BIGINT NULL,
    vm TEXT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    hm TEXT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('STATE_CHANGE', 'DISCOVERED', 'DOORBELL', 'HM_EVENT')),
    code BIGINT NOT NULL DEFAULT 0,
    data TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL
);
CREATE INDEX pending_by_tag ON pending (tag);
CREATE INDEX pending_by_vm ON pending (vm);
CREATE INDEX pending_by_hm ON pending (hm);

-- Application status reported by agents.
CREATE TABLE app (
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('UNSET', 'NORMAL', 'FAILING', 'TO_STOP',
        'TO_START', 'FAILURE', 'ABNORMAL')),
    critical INTEGER NOT NULL DEFAULT 0 CHECK (critical IN (0, 1)),
    restart_count BIGINT NOT NULL DEFAULT 0 CHECK (restart_count >= 0),
    max_restart BIGINT NOT NULL DEFAULT 3 CHECK (max_restart >= 0),
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (vm, name)
);

-- Durable outbox of events. AUTOINCREMENT: ids never go back, even after old rows are
-- pruned, so a consumer's offset stays meaningful.
CREATE TABLE event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    vm TEXT NULL,
    hm TEXT NULL,
    text TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Each event consumer's position: the id of the last event it has handled.
CREATE TABLE event_consumer (
    name TEXT NOT NULL PRIMARY KEY,
    last_id BIGINT NOT NULL CHECK (last_id >= 0)
);

-- Every restart or relocation of a VM.
CREATE TABLE relocation (
    id INTEGER NOT NULL PRIMARY KEY,
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    from_host BIGINT NULL REFERENCES host (id),
    to_host BIGINT NULL REFERENCES host (id),
    phase TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NULL,
    result TEXT NULL
);
CREATE INDEX relocation_by_vm ON relocation (vm, started_ms);

-- Relocation policies: collocation / anticollocation / workgroup sets, host exclusion
-- lists, flexible capacity. members is a comma-separated list of VM UUIDs or host ids.
CREATE TABLE policy (
    id INTEGER NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('COLLOCATION', 'ANTICOLLOCATION', 'WORKGROUP',
        'HOST_EXCLUSION', 'FLEXIBLE_CAPACITY')),
    name TEXT NOT NULL,
    members TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, name)
);
