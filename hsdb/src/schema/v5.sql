-- v5: a monitor's "HA monitoring of this VM stopped by the controller" (issue 8).
-- Described in docs/hsdb.md (§2 `vm_hm`, §3 StopWatching / StartWatching / Forget).
--
-- `vm_hm.last_state` gains STOPPED: the monitor was told to stop watching the VM
-- (STOP_MONITORING, the VM is being restarted on purpose). It is written by the monitor
-- when it carries the stop out and cleared by the start that resumes monitoring; it
-- outlives a restart of the monitor, which reads it back and does not watch the VM again.
--
-- SQLite cannot alter a CHECK constraint, so `vm_hm` is rebuilt with its rows and its
-- indexes (PostgreSQL: ALTER TABLE … DROP CONSTRAINT / ADD CONSTRAINT). A STOPPED row
-- has no miss time: the stop ends a miss, and a later start counts a new one.
CREATE TABLE vm_hm_v5 (
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    hm TEXT NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    mac TEXT NULL,
    hb_missed_ms BIGINT NULL,
    last_state TEXT NOT NULL
        CHECK (last_state IN ('DETECTED', 'MISSING', 'SUSPENDED', 'STOPPED')),
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (vm, hm),
    CHECK (last_state <> 'STOPPED' OR hb_missed_ms IS NULL)
);

INSERT INTO vm_hm_v5 (vm, hm, mac, hb_missed_ms, last_state, updated_ms)
SELECT vm, hm, mac, hb_missed_ms, last_state, updated_ms FROM vm_hm;

DROP TABLE vm_hm;
ALTER TABLE vm_hm_v5 RENAME TO vm_hm;
-- The indexes of v1 and v2, as they were.
CREATE INDEX vm_hm_missed ON vm_hm (vm) WHERE hb_missed_ms IS NOT NULL;
CREATE INDEX vm_hm_by_hm_state ON vm_hm (hm, last_state);
