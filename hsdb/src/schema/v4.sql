-- v4: what the control plane reads and writes (issue 8). Described in docs/hsdb.md.
--
-- 1. `pending` is rebuilt:
--    - ids AUTOINCREMENT: never reused after an acknowledgement deleted the newest rows (a
--      reused id would make "the items of reply N" ambiguous in logs and tests);
--    - a VM state item's old state, new state and the host it moved from are columns
--      (they lived inside `data` as `old=…:new=…:from_host=…`); `data` keeps the doorbell
--      vector in hex and a monitor event's text;
--    - `hm` has no foreign key: deleting (retiring) a monitor must not delete the VM items
--      it wrote; the monitor's own HM_EVENT rows are deleted by `retire_hm` explicitly;
--    - `updated_ms`: an unreported item that later transitions coalesced into.
-- 2. `hm_command`: the queue of commands from the control plane to one monitor.
-- 3. `param`: parameters at system, host-group, host and VM scope, as text.
-- 4. `relocation` gets its kind and the time of its last phase; `relocation_step` keeps
--    every phase it went through.

CREATE TABLE pending_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag BIGINT NULL,
    vm TEXT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    hm TEXT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('STATE_CHANGE', 'DISCOVERED', 'DOORBELL', 'HM_EVENT')),
    code BIGINT NOT NULL DEFAULT 0,
    old_state TEXT NULL CHECK (old_state IN ('ADDED', 'STARTING', 'STARTED', 'STOPPING',
        'STOPPED', 'REMOVING', 'SUSPENDED', 'UNKNOWN')),
    new_state TEXT NULL CHECK (new_state IN ('ADDED', 'STARTING', 'STARTED', 'STOPPING',
        'STOPPED', 'REMOVING', 'SUSPENDED', 'UNKNOWN')),
    from_host BIGINT NULL,
    data TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- v1..v3 rows: `old=<S>:new=<S>[:from_host=<id>]` split into the columns (`old=NONE`, a
-- new VM, becomes NULL). The AUTOINCREMENT counter starts above the highest id copied.
INSERT INTO pending_v4 (id, tag, vm, hm, kind, code, old_state, new_state, from_host, data,
    created_ms, updated_ms)
SELECT id, tag, vm, hm, kind, code,
    CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') AND data LIKE 'old=%:new=%'
        AND substr(data, 5, instr(data, ':new=') - 5) <> 'NONE'
        THEN substr(data, 5, instr(data, ':new=') - 5) END,
    CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') AND data LIKE 'old=%:new=%' THEN
        CASE WHEN instr(data, ':from_host=') > 0
            THEN substr(data, instr(data, ':new=') + 5,
                instr(data, ':from_host=') - instr(data, ':new=') - 5)
            ELSE substr(data, instr(data, ':new=') + 5) END END,
    CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') AND instr(data, ':from_host=') > 0
        THEN CAST(substr(data, instr(data, ':from_host=') + 11) AS INTEGER) END,
    CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') THEN '' ELSE data END,
    created_ms, created_ms
FROM pending;

DROP TABLE pending;
ALTER TABLE pending_v4 RENAME TO pending;
CREATE INDEX pending_by_tag ON pending (tag);
-- NeedsAttention reads VM items kind by kind in id order; node data reads HM_EVENT rows.
CREATE INDEX pending_by_kind ON pending (kind, id);
-- Coalescing and acknowledgement look up the items of one VM.
CREATE INDEX pending_by_vm ON pending (vm, kind);
CREATE INDEX pending_by_hm ON pending (hm);

-- Commands from the control plane to one monitor (stop / start HA monitoring of a VM,
-- forget a VM that moved away). The monitor reads its open commands in id order and
-- completes each one. `vm` has no foreign key: a command may outlive the VM row.
CREATE TABLE hm_command (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hm TEXT NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('STOP_MONITORING', 'START_MONITORING', 'FORGET_VM')),
    vm TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT NULL,
    result TEXT NULL
);
CREATE INDEX hm_command_open ON hm_command (hm, id) WHERE done_ms IS NULL;

-- Parameters. scope SYSTEM has target ''; HOST_GROUP the group's name; HOST the host id
-- in decimal; VM the VM's UUID. Values are text: the control plane validates them.
CREATE TABLE param (
    scope TEXT NOT NULL CHECK (scope IN ('SYSTEM', 'HOST_GROUP', 'HOST', 'VM')),
    target TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, target, name)
);

ALTER TABLE relocation ADD COLUMN kind TEXT NOT NULL DEFAULT 'RELOCATE'
    CHECK (kind IN ('RESTART', 'RELOCATE'));
ALTER TABLE relocation ADD COLUMN phase_ms BIGINT NULL;

CREATE TABLE relocation_step (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relocation BIGINT NOT NULL REFERENCES relocation (id) ON DELETE CASCADE,
    phase TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX relocation_step_by_relocation ON relocation_step (relocation, id);
