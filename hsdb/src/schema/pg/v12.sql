-- v12, PostgreSQL: as ../v12.sql, MOVE requests and relocations, the decision's reasons.
-- The CHECK constraints are altered in place (their names are PostgreSQL's defaults).
ALTER TABLE operator_request DROP CONSTRAINT operator_request_kind_check;
ALTER TABLE operator_request ADD CONSTRAINT operator_request_kind_check
    CHECK (kind IN ('EVACUATE', 'RESTORE', 'MOVE'));
ALTER TABLE operator_request ADD COLUMN vm TEXT COLLATE "C" NULL
    REFERENCES vm (uuid) ON DELETE CASCADE;
ALTER TABLE operator_request ADD COLUMN target_host BIGINT NULL
    REFERENCES host (id) ON DELETE CASCADE;
ALTER TABLE operator_request ADD CONSTRAINT operator_request_move_vm
    CHECK ((kind = 'MOVE') = (vm IS NOT NULL));
ALTER TABLE operator_request ADD CONSTRAINT operator_request_move_target
    CHECK (kind = 'MOVE' OR target_host IS NULL);

ALTER TABLE relocation DROP CONSTRAINT relocation_kind_check;
ALTER TABLE relocation ADD CONSTRAINT relocation_kind_check
    CHECK (kind IN ('RESTART', 'RELOCATE', 'MOVE'));
ALTER TABLE relocation ADD COLUMN reasons TEXT COLLATE "C" NULL;
