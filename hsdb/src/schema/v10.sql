-- v10: the control plane's poll for application-report fetches to handle (docs/hsdb.md
-- §8.8). A FETCH_APP_REPORT whose `arg` is NULL has not been handled yet (the control
-- plane writes what it did into `arg`); completed ones of them are read every scan.
-- Without this index that read scans every command kept (24 h of them, each fetch with
-- its report body); with it, only the few not handled yet.
CREATE INDEX hm_command_fetch_unhandled ON hm_command (id)
    WHERE kind = 'FETCH_APP_REPORT' AND arg IS NULL;
