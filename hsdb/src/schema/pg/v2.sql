-- v2, PostgreSQL: as ../v2.sql.
CREATE INDEX vm_hm_by_hm_state ON vm_hm (hm, last_state);
DROP INDEX vm_hm_by_hm;
