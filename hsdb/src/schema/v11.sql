-- v11: discovery from the platform and the activities that carry it out (issue 12;
-- docs/hsdb.md §11, docs/operators.md "Discovery").
--
-- `activity`: a quick discovery, a deep discovery (discovery + verification, seed 004
-- L4607-4609) or a verification of a host group. The dashboard (and `hactl discover`)
-- write them; the leader of the group carries out the REQUESTED ones, and its schedule
-- writes its own (hourly quick, daily deep: seed 004 L4475). REQUESTED → RUNNING →
-- DONE | FAILED. `runner` names who carries it out; `heartbeat_ms` is the last time it
-- wrote progress: a RUNNING row whose runner stopped writing is failed as abandoned.
CREATE TABLE activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_group TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('QUICK_DISCOVERY', 'DEEP_DISCOVERY', 'VERIFY')),
    state TEXT NOT NULL CHECK (state IN ('REQUESTED', 'RUNNING', 'DONE', 'FAILED')),
    requested_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT NULL,
    ended_ms BIGINT NULL,
    runner TEXT NULL,
    heartbeat_ms BIGINT NULL,
    progress TEXT NOT NULL DEFAULT '',
    summary TEXT NULL
);
CREATE INDEX activity_open ON activity (host_group, id) WHERE ended_ms IS NULL;
CREATE INDEX activity_by_group ON activity (host_group, id);

-- `vm_discovery`: what the last discovery that listed the VM's host found of it. The
-- size is the platform's; `vm.cpu_milli` / `vm.memory_mb` follow it only while they
-- are unset (0) or still equal to the size discovery wrote before (an operator's value
-- is never overwritten). `vanished_ms` is set when a discovery that heard from the
-- VM's last host found it nowhere in the group, cleared when it is found again.
CREATE TABLE vm_discovery (
    vm TEXT NOT NULL PRIMARY KEY REFERENCES vm (uuid) ON DELETE CASCADE,
    host BIGINT NULL REFERENCES host (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    power TEXT NOT NULL DEFAULT '',
    cpu_milli BIGINT NOT NULL CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL CHECK (memory_mb >= 0),
    first_seen_ms BIGINT NULL,
    last_seen_ms BIGINT NULL,
    vanished_ms BIGINT NULL
);

-- `host_discovery`: the capacity the platform last reported for each host, with the
-- same rule for `host.cpu_milli` / `host.memory_mb`.
CREATE TABLE host_discovery (
    host BIGINT NOT NULL PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    cpu_milli BIGINT NOT NULL CHECK (cpu_milli >= 0),
    memory_mb BIGINT NOT NULL CHECK (memory_mb >= 0),
    vms BIGINT NOT NULL CHECK (vms >= 0),
    last_seen_ms BIGINT NOT NULL
);
