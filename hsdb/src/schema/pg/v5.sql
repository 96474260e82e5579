-- v5, PostgreSQL: as ../v5.sql, by replacing the CHECK constraint where SQLite rebuilds
-- the table: `vm_hm.last_state` gains STOPPED, and a STOPPED row has no miss time.
ALTER TABLE vm_hm DROP CONSTRAINT vm_hm_last_state_check;
ALTER TABLE vm_hm
    ADD CONSTRAINT vm_hm_last_state_check
        CHECK (last_state IN ('DETECTED', 'MISSING', 'SUSPENDED', 'STOPPED')),
    ADD CONSTRAINT vm_hm_stopped_no_miss CHECK (last_state <> 'STOPPED' OR hb_missed_ms IS NULL);
