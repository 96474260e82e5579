-- v7: relocation policies (issue 10). Described in docs/hsdb.md.
--
-- v1's `policy` (kind, name, members as comma-separated text) had no writer in any
-- release. It is rebuilt:
-- 1. `policy`: the named VM sets only (COLLOCATION, ANTICOLLOCATION, WORKGROUP), each in
--    one host group, names unique per kind; ids AUTOINCREMENT (never reused);
-- 2. `policy_member`: the set's VMs in the operator's order, one row each (no foreign key
--    to `vm`: a member whose VM row was pruned stays visible, and the control plane
--    reports it instead of the set shrinking silently);
-- 3. `vm_host_exclusion`: per VM, the hosts it is never relocated to (the seed's
--    blacklist_hosts, seed 004 L15846-15905);
-- 4. `flexible_capacity`: per host group and priority, the percent of its nominal CPU and
--    memory a VM is restarted with away from its home host (seed 004 L15639-15724); no
--    row = 100 %.
-- v1 rows of the three set kinds are carried over with their members split (items that
-- are not 36-character UUID texts dropped), in the host group of their first member's
-- home (else current) host, '' if none; v1 HOST_EXCLUSION and FLEXIBLE_CAPACITY rows had
-- no defined layout and are dropped.

ALTER TABLE policy RENAME TO policy_v1;

CREATE TABLE policy (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('COLLOCATION', 'ANTICOLLOCATION', 'WORKGROUP')),
    name TEXT NOT NULL CHECK (name <> ''),
    host_group TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX policy_by_group ON policy (host_group, kind, name);

CREATE TABLE policy_member (
    policy BIGINT NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    position BIGINT NOT NULL CHECK (position >= 0),
    vm TEXT NOT NULL,
    PRIMARY KEY (policy, position),
    UNIQUE (policy, vm)
);
CREATE INDEX policy_member_by_vm ON policy_member (vm);

INSERT INTO policy (id, kind, name, host_group, created_ms, updated_ms)
SELECT id, kind, name, '', 0, 0 FROM policy_v1
WHERE kind IN ('COLLOCATION', 'ANTICOLLOCATION', 'WORKGROUP') AND name <> '';

WITH RECURSIVE split (policy, n, item, rest) AS (
    SELECT p.id, 0, '', p.members || ',' FROM policy_v1 p JOIN policy ON policy.id = p.id
    UNION ALL
    SELECT policy, n + 1, lower(trim(substr(rest, 1, instr(rest, ',') - 1))),
        substr(rest, instr(rest, ',') + 1)
    FROM split WHERE rest <> ''
),
items (policy, n, item) AS (
    SELECT policy, MIN(n), item FROM split WHERE n > 0 AND length(item) = 36
    GROUP BY policy, item
)
INSERT INTO policy_member (policy, position, vm)
SELECT policy, ROW_NUMBER() OVER (PARTITION BY policy ORDER BY n) - 1, item FROM items;

UPDATE policy SET host_group = COALESCE((
    SELECT h.host_group FROM policy_member m
    JOIN vm ON vm.uuid = m.vm
    JOIN host h ON h.id = COALESCE(vm.home_host, vm.current_host)
    WHERE m.policy = policy.id AND m.position = 0), '');

DROP TABLE policy_v1;

CREATE TABLE vm_host_exclusion (
    vm TEXT NOT NULL REFERENCES vm (uuid) ON DELETE CASCADE,
    host BIGINT NOT NULL REFERENCES host (id),
    PRIMARY KEY (vm, host)
);

CREATE TABLE flexible_capacity (
    host_group TEXT NOT NULL,
    priority TEXT NOT NULL CHECK (priority IN ('HIGH', 'MEDIUM', 'LOW')),
    cpu_pct BIGINT NOT NULL CHECK (cpu_pct BETWEEN 1 AND 100),
    memory_pct BIGINT NOT NULL CHECK (memory_pct BETWEEN 1 AND 100),
    PRIMARY KEY (host_group, priority)
);
