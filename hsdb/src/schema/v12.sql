-- v12: moving one VM on an operator's request, and each relocation decision's reasons
-- (issue 12). Described in docs/hsdb.md (§2 `operator_request`, `relocation`).
--
-- `operator_request` gains MOVE (`hactl vm move`, the dashboard's "move a VM"): `vm` is
-- the VM to move, `target_host` the host the operator named (NULL: the planner's best
-- host). `host` of a MOVE is the host the VM was on when the request was written. The
-- CHECKs keep the columns of each kind consistent.
--
-- `relocation` gains MOVE (a relocation an operator asked for) and `reasons`: the
-- decision's explanation, the text `hactl relocate --dry-run` prints for that VM at that
-- moment (target and why, why not each other host), capped by the writer (8 KiB).
--
-- SQLite cannot alter a CHECK constraint, so both tables are rebuilt with their rows,
-- ids and indexes. `relocation` is the parent of `relocation_step` (ON DELETE CASCADE)
-- and `owed_cleanup` (ON DELETE SET NULL), and dropping it with foreign keys on deletes
-- its rows first (cascading): the children's rows are kept aside and put back once the
-- new table has the old name. PostgreSQL alters the constraints in place.

-- operator_request ---------------------------------------------------------------------
CREATE TABLE operator_request_v12 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_group TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('EVACUATE', 'RESTORE', 'MOVE')),
    host BIGINT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    requested_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'DONE', 'REFUSED', 'FAILED')),
    started_ms BIGINT NULL,
    ended_ms BIGINT NULL,
    progress TEXT NOT NULL DEFAULT '',
    result TEXT NULL,
    vm TEXT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    target_host BIGINT NULL REFERENCES host (id) ON DELETE CASCADE,
    CHECK ((kind = 'MOVE') = (vm IS NOT NULL)),
    CHECK (kind = 'MOVE' OR target_host IS NULL)
);
INSERT INTO operator_request_v12 (id, host_group, kind, host, requested_by, created_ms, state,
                                  started_ms, ended_ms, progress, result)
SELECT id, host_group, kind, host, requested_by, created_ms, state, started_ms, ended_ms,
       progress, result FROM operator_request;
-- AUTOINCREMENT: an id is never reused, also one whose row was pruned.
DELETE FROM sqlite_sequence WHERE name = 'operator_request_v12';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'operator_request_v12', seq FROM sqlite_sequence WHERE name = 'operator_request';
DROP TABLE operator_request;
ALTER TABLE operator_request_v12 RENAME TO operator_request;
CREATE INDEX operator_request_open ON operator_request (host_group, id) WHERE ended_ms IS NULL;

-- relocation ---------------------------------------------------------------------------
CREATE TABLE relocation_v12 (
    id INTEGER NOT NULL PRIMARY KEY,
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    from_host BIGINT NULL REFERENCES host (id),
    to_host BIGINT NULL REFERENCES host (id),
    phase TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NULL,
    result TEXT NULL,
    kind TEXT NOT NULL DEFAULT 'RELOCATE' CHECK (kind IN ('RESTART', 'RELOCATE', 'MOVE')),
    phase_ms BIGINT NULL,
    reasons TEXT NULL
);
INSERT INTO relocation_v12 (id, vm, from_host, to_host, phase, started_ms, ended_ms, result,
                            kind, phase_ms)
SELECT id, vm, from_host, to_host, phase, started_ms, ended_ms, result, kind, phase_ms
FROM relocation;
CREATE TABLE relocation_step_v12_keep AS SELECT id, relocation, phase, at_ms FROM relocation_step;
CREATE TABLE owed_cleanup_v12_keep AS
    SELECT id, relocation FROM owed_cleanup WHERE relocation IS NOT NULL;
DROP TABLE relocation;
ALTER TABLE relocation_v12 RENAME TO relocation;
CREATE INDEX relocation_by_vm ON relocation (vm, started_ms);
INSERT INTO relocation_step (id, relocation, phase, at_ms)
SELECT id, relocation, phase, at_ms FROM relocation_step_v12_keep
WHERE id NOT IN (SELECT id FROM relocation_step);
UPDATE owed_cleanup SET relocation = (
    SELECT k.relocation FROM owed_cleanup_v12_keep k WHERE k.id = owed_cleanup.id)
WHERE id IN (SELECT id FROM owed_cleanup_v12_keep);
DROP TABLE relocation_step_v12_keep;
DROP TABLE owed_cleanup_v12_keep;
