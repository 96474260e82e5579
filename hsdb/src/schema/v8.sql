-- v8: the executor's durable state (issue 10): cleanups owed to hosts that could not be
-- reached, operator requests the leading controller carries out, hosts in maintenance.
-- Described in docs/hsdb.md (§2) and docs/controlplane.md ("Executor", "Planned
-- maintenance").
--
-- `owed_cleanup`: the seed's CLEAN_LPARS list (seed 004 L3784-3801). A VM restarted away
-- from a host the platform could not reach leaves its definition (and perhaps a running
-- copy) there; the cleanup is owed until the host is back. Open while `done_ms` is NULL;
-- `result` says how it ended (`cleaned`, `stopped and cleaned`, `obsolete: …`).
CREATE TABLE owed_cleanup (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host BIGINT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    relocation BIGINT NULL REFERENCES relocation (id) ON DELETE SET NULL,
    why TEXT NOT NULL,
    owed_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_try_ms BIGINT NULL,
    last_error TEXT NULL,
    done_ms BIGINT NULL,
    result TEXT NULL
);
CREATE INDEX owed_cleanup_open ON owed_cleanup (host, vm) WHERE done_ms IS NULL;

-- `operator_request`: `hactl host evacuate | restore` written by the CLI, carried out by
-- the controller leading the host's group (PENDING → RUNNING → DONE | REFUSED | FAILED);
-- `progress` is the last line the controller wrote, `result` the end.
CREATE TABLE operator_request (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_group TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('EVACUATE', 'RESTORE')),
    host BIGINT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    requested_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'DONE', 'REFUSED', 'FAILED')),
    started_ms BIGINT NULL,
    ended_ms BIGINT NULL,
    progress TEXT NOT NULL DEFAULT '',
    result TEXT NULL
);
CREATE INDEX operator_request_open ON operator_request (host_group, id) WHERE ended_ms IS NULL;

-- `host_maintenance`: a host in planned maintenance receives no VMs, and its monitors'
-- silence is not a failure. Set by an evacuation, removed by the restore.
CREATE TABLE host_maintenance (
    host BIGINT NOT NULL PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    since_ms BIGINT NOT NULL,
    request BIGINT NULL
);
