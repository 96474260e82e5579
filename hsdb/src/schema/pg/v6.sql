-- v6, PostgreSQL: as ../v6.sql, the control plane's leader lease per host group.
CREATE TABLE leader_lease (
    host_group TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    token BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
