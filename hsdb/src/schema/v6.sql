-- v6: the control plane's leader per host group (issue 9). Described in docs/hsdb.md.
--
-- Several `hactl run` may run against one PostgreSQL HSDB; per host group one leads, by
-- a lease: who holds it, the fencing token of its term (every action of the leader
-- carries it, and a write with an older token is refused), when it was acquired and
-- last renewed, and when it expires unless renewed. With SQLite there is one
-- controller and the table stays empty.
CREATE TABLE leader_lease (
    host_group TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
