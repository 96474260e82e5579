-- v11, PostgreSQL: as ../v11.sql, activities and what discovery found.
CREATE TABLE activity (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_group TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL
        CHECK (kind IN ('QUICK_DISCOVERY', 'DEEP_DISCOVERY', 'VERIFY')),
    state TEXT COLLATE "C" NOT NULL
        CHECK (state IN ('REQUESTED', 'RUNNING', 'DONE', 'FAILED')),
    requested_by TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT NULL,
    ended_ms BIGINT NULL,
    runner TEXT COLLATE "C" NULL,
    heartbeat_ms BIGINT NULL,
    progress TEXT COLLATE "C" NOT NULL DEFAULT '',
    summary TEXT COLLATE "C" NULL
);
CREATE INDEX activity_open ON activity (host_group, id) WHERE ended_ms IS NULL;
CREATE INDEX activity_by_group ON activity (host_group, id);

CREATE TABLE vm_discovery (
    vm TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES vm (uuid) ON DELETE CASCADE,
    host BIGINT NULL REFERENCES host (id) ON DELETE SET NULL,
    name TEXT COLLATE "C" NOT NULL,
    power TEXT COLLATE "C" NOT NULL DEFAULT '',
    cpu_milli BIGINT NOT NULL CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL CHECK (memory_mb >= 0),
    first_seen_ms BIGINT NULL,
    last_seen_ms BIGINT NULL,
    vanished_ms BIGINT NULL
);

CREATE TABLE host_discovery (
    host BIGINT NOT NULL PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    cpu_milli BIGINT NOT NULL CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL CHECK (memory_mb >= 0),
    vms BIGINT NOT NULL CHECK (vms >= 0),
    last_seen_ms BIGINT NOT NULL
);
