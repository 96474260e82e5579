-- v3, PostgreSQL: as ../v3.sql.
CREATE TABLE hm_interface (
    hm TEXT COLLATE "C" NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN ('UP', 'DOWN')),
    changed_ms BIGINT NOT NULL,
    PRIMARY KEY (hm, name)
);
