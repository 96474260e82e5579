-- v10, PostgreSQL: as ../v10.sql, the index of application-report fetches not handled.
CREATE INDEX hm_command_fetch_unhandled ON hm_command (id)
    WHERE kind = 'FETCH_APP_REPORT' AND arg IS NULL;
