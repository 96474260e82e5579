-- v9, PostgreSQL: as ../v9.sql, by replacing the CHECK constraint where SQLite rebuilds
-- the table (the identity column already never reuses an id).
ALTER TABLE hm_command DROP CONSTRAINT hm_command_kind_check;
ALTER TABLE hm_command
    ADD CONSTRAINT hm_command_kind_check
        CHECK (kind IN ('STOP_MONITORING', 'START_MONITORING', 'FORGET_VM',
            'FETCH_APP_REPORT', 'CONFIRM_APP_REPORT')),
    ADD COLUMN arg TEXT COLLATE "C" NULL;

ALTER TABLE app
    ADD COLUMN monitored BIGINT NOT NULL DEFAULT 1 CHECK (monitored IN (0, 1)),
    ADD COLUMN monitor TEXT COLLATE "C" NOT NULL DEFAULT 'script'
        CHECK (monitor IN ('script', 'http', 'smtp', 'tcp')),
    ADD COLUMN colour TEXT COLLATE "C" NOT NULL DEFAULT 'YELLOW'
        CHECK (colour IN ('GREEN', 'YELLOW', 'RED')),
    ADD COLUMN detail TEXT COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN since_ms BIGINT NULL,
    ADD COLUMN report_inc TEXT COLLATE "C" NULL,
    ADD COLUMN report_gen BIGINT NULL;
