-- v8, PostgreSQL: as ../v8.sql, owed cleanups, operator requests, hosts in maintenance.
CREATE TABLE owed_cleanup (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host BIGINT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    vm TEXT COLLATE "C" NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    relocation BIGINT NULL REFERENCES relocation (id) ON DELETE SET NULL,
    why TEXT COLLATE "C" NOT NULL,
    owed_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_try_ms BIGINT NULL,
    last_error TEXT COLLATE "C" NULL,
    done_ms BIGINT NULL,
    result TEXT COLLATE "C" NULL
);
CREATE INDEX owed_cleanup_open ON owed_cleanup (host, vm) WHERE done_ms IS NULL;

CREATE TABLE operator_request (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_group TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('EVACUATE', 'RESTORE')),
    host BIGINT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    requested_by TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT COLLATE "C" NOT NULL
        CHECK (state IN ('PENDING', 'RUNNING', 'DONE', 'REFUSED', 'FAILED')),
    started_ms BIGINT NULL,
    ended_ms BIGINT NULL,
    progress TEXT COLLATE "C" NOT NULL DEFAULT '',
    result TEXT COLLATE "C" NULL
);
CREATE INDEX operator_request_open ON operator_request (host_group, id) WHERE ended_ms IS NULL;

CREATE TABLE host_maintenance (
    host BIGINT NOT NULL PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    since_ms BIGINT NOT NULL,
    request BIGINT NULL
);
