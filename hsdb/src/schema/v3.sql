-- v3: the state of each HA interface of a monitor.
--
-- A monitor whose interface lost its carrier hears none of the VMs behind it: the
-- control plane must be able to tell "every VM of that interface died" from "the
-- monitor went deaf there". One row per (monitor, interface), written by the monitor at
-- start and on every carrier change: UP or DOWN, and since when.
CREATE TABLE hm_interface (
    hm TEXT NOT NULL REFERENCES hm (uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('UP', 'DOWN')),
    changed_ms BIGINT NOT NULL,
    PRIMARY KEY (hm, name)
);
