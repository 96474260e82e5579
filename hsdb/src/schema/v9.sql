-- v9: application reports (issue 11). Described in docs/hsdb.md (§2 `hm_command`, `app`)
-- and docs/hvncp.md ("Application reports").
--
-- 1. `hm_command` gains two kinds and an argument:
--    - FETCH_APP_REPORT: the monitor asks the VM's agent for its application report
--      (PMSG_REQ … PMSG_RSP) and completes the command with `REPORT: <the body>`;
--    - CONFIRM_APP_REPORT: the monitor tells the agent that the control plane stored
--      report generation `arg` (GMSG … CLRDB), completing with `CLEARED: gen=<arg>`;
--    - `arg`: the command's argument as text, NULL for the kinds that take none
--      (CONFIRM_APP_REPORT: the generation in decimal). A result may be ~70 KB (a
--      report body of at most 65,536 bytes plus its code).
--    SQLite cannot alter a CHECK constraint, so the table is rebuilt with its rows, its
--    index, and its AUTOINCREMENT counter (an id is never reused, even one pruned).
-- 2. `app` gains what an agent's report says about each application beyond v1's
--    columns: monitored or not, the kind of monitor, the colour, the last failure or
--    message, when the state last changed (agent's clock, Unix ms), and which report
--    (agent incarnation, generation) the row comes from.

CREATE TABLE hm_command_v9 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hm TEXT NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('STOP_MONITORING', 'START_MONITORING', 'FORGET_VM',
        'FETCH_APP_REPORT', 'CONFIRM_APP_REPORT')),
    vm TEXT NOT NULL,
    arg TEXT NULL,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT NULL,
    result TEXT NULL
);

INSERT INTO hm_command_v9 (id, hm, kind, vm, arg, created_ms, done_ms, result)
SELECT id, hm, kind, vm, NULL, created_ms, done_ms, result FROM hm_command;

-- The counter goes on from the old table's (which may be above the highest id left,
-- after pruning); DROP TABLE deletes the old table's entry, RENAME renames the new one.
DELETE FROM sqlite_sequence WHERE name = 'hm_command_v9';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'hm_command_v9', seq FROM sqlite_sequence WHERE name = 'hm_command';

DROP TABLE hm_command;
ALTER TABLE hm_command_v9 RENAME TO hm_command;
CREATE INDEX hm_command_open ON hm_command (hm, id) WHERE done_ms IS NULL;

ALTER TABLE app ADD COLUMN monitored INTEGER NOT NULL DEFAULT 1 CHECK (monitored IN (0, 1));
ALTER TABLE app ADD COLUMN monitor TEXT NOT NULL DEFAULT 'script'
    CHECK (monitor IN ('script', 'http', 'smtp', 'tcp'));
ALTER TABLE app ADD COLUMN colour TEXT NOT NULL DEFAULT 'YELLOW'
    CHECK (colour IN ('GREEN', 'YELLOW', 'RED'));
ALTER TABLE app ADD COLUMN detail TEXT NOT NULL DEFAULT '';
ALTER TABLE app ADD COLUMN since_ms BIGINT NULL;
ALTER TABLE app ADD COLUMN report_inc TEXT NULL;
ALTER TABLE app ADD COLUMN report_gen BIGINT NULL;
