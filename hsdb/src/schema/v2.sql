-- v2: count a monitor's VMs by heartbeat state from the index alone.
--
-- "How many VMs does monitor M report MISSING?" is asked often (operators, the control
-- plane's QuickQuery, the end-to-end benchmark polling for commits): with (hm,
-- last_state) it is a range count over the index, not a scan of every row of M.
-- The new index also serves every lookup by hm alone, so the v1 one goes.
CREATE INDEX vm_hm_by_hm_state ON vm_hm (hm, last_state);
DROP INDEX vm_hm_by_hm;
