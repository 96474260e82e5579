-- v4, PostgreSQL: the same result as ../v4.sql, by ALTER TABLE where SQLite rebuilds.
--
-- `pending`: its ids already come from a sequence (never reused); the foreign key on
-- `hm` goes; the old state, new state and previous host become columns, split out of
-- the v1-v3 `data` text (`old=<S>:new=<S>[:from_host=<id>]`, `old=NONE` → NULL), and
-- `updated_ms` is added.

ALTER TABLE pending DROP CONSTRAINT pending_hm_fkey;
ALTER TABLE pending
    ADD COLUMN old_state TEXT COLLATE "C" NULL CHECK (old_state IN ('ADDED', 'STARTING',
        'STARTED', 'STOPPING', 'STOPPED', 'REMOVING', 'SUSPENDED', 'UNKNOWN')),
    ADD COLUMN new_state TEXT COLLATE "C" NULL CHECK (new_state IN ('ADDED', 'STARTING',
        'STARTED', 'STOPPING', 'STOPPED', 'REMOVING', 'SUSPENDED', 'UNKNOWN')),
    ADD COLUMN from_host BIGINT NULL,
    ADD COLUMN updated_ms BIGINT NULL;

UPDATE pending SET
    old_state = CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') AND data LIKE 'old=%:new=%'
        AND split_part(substr(data, 5), ':new=', 1) <> 'NONE'
        THEN split_part(substr(data, 5), ':new=', 1) END,
    new_state = CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') AND data LIKE 'old=%:new=%'
        THEN split_part(split_part(data, ':new=', 2), ':from_host=', 1) END,
    from_host = CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED')
        AND strpos(data, ':from_host=') > 0
        THEN CAST(split_part(data, ':from_host=', 2) AS BIGINT) END,
    data = CASE WHEN kind IN ('STATE_CHANGE', 'DISCOVERED') THEN '' ELSE data END,
    updated_ms = created_ms;
ALTER TABLE pending ALTER COLUMN updated_ms SET NOT NULL;

DROP INDEX pending_by_vm;
CREATE INDEX pending_by_kind ON pending (kind, id);
CREATE INDEX pending_by_vm ON pending (vm, kind);

CREATE TABLE hm_command (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hm TEXT COLLATE "C" NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('STOP_MONITORING', 'START_MONITORING', 'FORGET_VM')),
    vm TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT NULL,
    result TEXT COLLATE "C" NULL
);
CREATE INDEX hm_command_open ON hm_command (hm, id) WHERE done_ms IS NULL;

CREATE TABLE param (
    scope TEXT COLLATE "C" NOT NULL CHECK (scope IN ('SYSTEM', 'HOST_GROUP', 'HOST', 'VM')),
    target TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (scope, target, name)
);

ALTER TABLE relocation ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'RELOCATE'
    CHECK (kind IN ('RESTART', 'RELOCATE'));
ALTER TABLE relocation ADD COLUMN phase_ms BIGINT NULL;

CREATE TABLE relocation_step (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relocation BIGINT NOT NULL REFERENCES relocation (id) ON DELETE CASCADE,
    phase TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX relocation_step_by_relocation ON relocation_step (relocation, id);
