//! Schema v9: the application-report commands (FETCH_APP_REPORT, CONFIRM_APP_REPORT with
//! their argument, results of a report's size) and the `app` table's report columns, on
//! both backends; a v8 database's commands and applications carried over; a v11 database's
//! relocations (steps, owed cleanups naming them) and requests carried over by v12.

use super::*;
use crate::db::params;
use crate::{CommandKind, Error, SCHEMA_VERSION};

/// A report body's size as the result of a FETCH (64 KiB, the most an agent sends, plus
/// the code): stored and read back byte for byte.
fn big_result() -> String {
    let mut s = String::from("REPORT: HVHA-APPS 1 inc=1f gen=9 count=16\n");
    let mut i = 0u32;
    while s.len() < 65_536 + 16 {
        s.push_str(&format!(
            "app name=a{i} state=NORMAL detail=%C3%A9t%C3%A9\n"
        ));
        i += 1;
    }
    s
}

both!(test_report_commands_carry_their_argument);
fn test_report_commands_carry_their_argument() {
    let mut f = Fixture::new();
    let fetch =
        f.db.enqueue_command_arg(&hm1(), CommandKind::FetchAppReport, &vm1(), None, T0)
            .expect("fetch");
    let confirm =
        f.db.enqueue_command_arg(
            &hm1(),
            CommandKind::ConfirmAppReport,
            &vm1(),
            Some("18446744073709551615"),
            T0 + 1,
        )
        .expect("confirm");
    let plain =
        f.db.enqueue_command(&hm1(), CommandKind::StopMonitoring, &vm1(), T0 + 2)
            .expect("plain");
    assert!(fetch < confirm && confirm < plain);
    let open = f.db.commands_for(&hm1(), 0, 100).expect("open");
    assert_eq!(
        open.iter()
            .map(|c| (c.id, c.kind, c.vm, c.arg.as_deref(), c.created_ms))
            .collect::<Vec<_>>(),
        [
            (fetch, CommandKind::FetchAppReport, vm1(), None, T0),
            (
                confirm,
                CommandKind::ConfirmAppReport,
                vm1(),
                Some("18446744073709551615"),
                T0 + 1
            ),
            (plain, CommandKind::StopMonitoring, vm1(), None, T0 + 2),
        ]
    );
    // The text of the kinds, as the control plane and `hactl` print them.
    assert_eq!(CommandKind::FetchAppReport.as_str(), "FETCH_APP_REPORT");
    assert_eq!(CommandKind::ConfirmAppReport.as_str(), "CONFIRM_APP_REPORT");
    assert_eq!(
        CommandKind::from_text("CONFIRM_APP_REPORT"),
        Some(CommandKind::ConfirmAppReport)
    );
    // A report-sized result is kept whole.
    let body = big_result();
    assert!(f.db.complete_command(fetch, &body, T0 + 5).expect("done"));
    let row = f.db.command(fetch).expect("read").expect("row");
    assert_eq!(row.result.as_deref(), Some(body.as_str()));
    assert_eq!(row.done_ms, Some(T0 + 5));
    assert!(
        f.db.complete_command(confirm, "CLEARED: gen=18446744073709551615", T0 + 6)
            .expect("done")
    );
    assert_eq!(
        f.db.commands_for(&hm1(), 0, 100)
            .expect("open")
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [plain]
    );
    // As for the other kinds, a monitor that is not registered is refused.
    let err =
        f.db.enqueue_command_arg(&vm_n(9), CommandKind::FetchAppReport, &vm1(), None, T0)
            .expect_err("unknown monitor");
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "host monitor",
                ..
            }
        ),
        "{err}"
    );
    // The store refuses a kind it does not know, on both backends.
    let bad = f.db.conn.execute(
        "test",
        "INSERT INTO hm_command (hm, kind, vm, created_ms) VALUES (?1, 'REBOOT', ?2, 1)",
        params![hm1().to_string(), vm1().to_string()],
    );
    assert!(bad.is_err(), "an unknown kind must be refused");
}

both!(test_app_report_columns);
fn test_app_report_columns() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("vm");
    // A row written with v1's columns only gets the defaults of the new ones.
    f.exec(
        "INSERT INTO app (vm, name, state, updated_ms) VALUES (?1, 'db', 'NORMAL', ?2)",
        params![vm1().to_string(), T0],
    );
    let defaults = f.int(
        "SELECT COUNT(*) FROM app WHERE name = 'db' AND monitored = 1 AND monitor = 'script' \
         AND colour = 'YELLOW' AND detail = '' AND since_ms IS NULL AND report_inc IS NULL \
         AND report_gen IS NULL",
        &[],
    );
    assert_eq!(defaults, 1);
    f.exec(
        "INSERT INTO app (vm, name, state, critical, restart_count, max_restart, updated_ms, \
         monitored, monitor, colour, detail, since_ms, report_inc, report_gen) \
         VALUES (?1, 'web', 'FAILURE', 1, 3, 3, ?2, 0, 'http', 'RED', 'HTTP 503', ?2, \
         '1f', 9223372036854775807)",
        params![vm1().to_string(), T0],
    );
    assert_eq!(
        f.int(
            "SELECT report_gen FROM app WHERE name = 'web' AND colour = 'RED' \
             AND monitor = 'http' AND monitored = 0 AND report_inc = '1f'",
            &[]
        ),
        i64::MAX
    );
    // Values outside their sets are refused.
    for (column, value) in [
        ("colour", "'BLUE'"),
        ("monitor", "'ping'"),
        ("monitored", "2"),
    ] {
        let sql = format!(
            "INSERT INTO app (vm, name, state, updated_ms, {column}) \
             VALUES (?1, 'x', 'NORMAL', 1, {value})"
        );
        assert!(
            f.db.conn
                .execute("test", &sql, params![vm1().to_string()])
                .is_err(),
            "{column} = {value} must be refused"
        );
    }
}

/// Rows a v8 build left: a monitor, a VM with an application, three commands of which
/// the newest was pruned (so the id counter is above the highest id left).
const V8_ROWS: &str = "
    INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb, host_group)
        VALUES (1, 'h1', '', '', '', 0, 0, '');
    INSERT INTO hm (uuid, host_id, mac, state, last_hb_ms, incarnation, version)
        VALUES ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 1, '02:00:00:00:00:01', 'UP', 1,
                '1.2.3', '2.0');
    INSERT INTO vm (uuid, state, updated_ms)
        VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1', 'STARTED', 1);
    INSERT INTO app (vm, name, state, critical, restart_count, max_restart, updated_ms)
        VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1', 'db', 'FAILING', 1, 2, 3, 5);
    INSERT INTO hm_command (hm, kind, vm, created_ms, done_ms, result) VALUES
        ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 'STOP_MONITORING',
         '61be20f0-09a8-4753-b5e5-564f8a545ed1', 10, 11, 'STOPPED: done'),
        ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 'START_MONITORING',
         '61be20f0-09a8-4753-b5e5-564f8a545ed1', 12, NULL, NULL),
        ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 'FORGET_VM',
         '61be20f0-09a8-4753-b5e5-564f8a545ed1', 13, 14, 'FORGOTTEN: gone');
    DELETE FROM hm_command WHERE kind = 'FORGET_VM';
";

/// After the migration: the commands and the application kept, the new columns at their
/// defaults, and the next id above every id ever given (3 was pruned, not reused).
fn check_v8_migrated(mut db: Hsdb) {
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let hm = uuid("5c3196a3-c41f-4b5c-9861-dee6077081c6");
    let vm = uuid("61be20f0-09a8-4753-b5e5-564f8a545ed1");
    let stop = db.command(1).expect("read").expect("row 1");
    assert_eq!(
        (
            stop.kind,
            stop.arg.as_deref(),
            stop.done_ms,
            stop.result.as_deref()
        ),
        (
            CommandKind::StopMonitoring,
            None,
            Some(11),
            Some("STOPPED: done")
        )
    );
    let open = db.commands_for(&hm, 0, 10).expect("open");
    assert_eq!(
        open.iter().map(|c| (c.id, c.kind)).collect::<Vec<_>>(),
        [(2, CommandKind::StartMonitoring)]
    );
    let next = db
        .enqueue_command_arg(&hm, CommandKind::ConfirmAppReport, &vm, Some("4"), 20)
        .expect("enqueue after migration");
    assert_eq!(next, 4, "an id is never reused, even a pruned one");
    let kept = db
        .conn
        .query_int(
            "test",
            "SELECT COUNT(*) FROM app WHERE name = 'db' AND state = 'FAILING' \
             AND critical = 1 AND restart_count = 2 AND monitored = 1 AND monitor = 'script' \
             AND colour = 'YELLOW' AND detail = '' AND report_gen IS NULL",
            &[],
        )
        .expect("app")
        .expect("count");
    assert_eq!(kept, 1);
    db.integrity_check().expect("integrity");
}

#[test]
fn test_v8_database_is_migrated_with_its_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v8.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        for m in crate::schema::MIGRATIONS.iter().take(8) {
            conn.execute_batch(m.sqlite).expect("script");
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (?1, ?2)",
                rusqlite::params![m.version, m.name],
            )
            .expect("version");
        }
        conn.execute_batch(V8_ROWS).expect("v8 rows");
    }
    check_v8_migrated(Hsdb::open(&path, &Options::default()).expect("migrate"));
}

#[test]
fn test_pg_v8_database_is_migrated_with_its_commands() {
    let test = "test_pg_v8_database_is_migrated_with_its_commands";
    let Some(url) = fresh_postgres_url(test) else {
        return;
    };
    {
        let mut raw = pglab::client(&url);
        for m in crate::schema::MIGRATIONS.iter().take(8) {
            raw.batch_execute(m.postgres).expect("script");
            raw.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .expect("version");
        }
        raw.batch_execute(V8_ROWS).expect("v8 rows");
    }
    let target = crate::Target::parse(&url).expect("valid URL");
    check_v8_migrated(Hsdb::connect(&target, &Options::default()).expect("migrate"));
}

/// Rows a v11 build left: a relocation with its steps and an owed cleanup pointing at
/// it, an evacuation request, and a pruned request (its id is not reused).
const V11_ROWS: &str = "
    INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb, host_group)
        VALUES (1, 'h1', '', '', '', 0, 0, 'hg'), (2, 'h2', '', '', '', 0, 0, 'hg');
    INSERT INTO vm (uuid, state, updated_ms, current_host)
        VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1', 'STARTED', 1, 2);
    INSERT INTO relocation (id, vm, from_host, to_host, phase, started_ms, ended_ms, result,
                            kind, phase_ms)
        VALUES (7, '61be20f0-09a8-4753-b5e5-564f8a545ed1', 1, 2, 'DONE', 100, 200,
                'success', 'RELOCATE', 200);
    INSERT INTO relocation_step (relocation, phase, at_ms) VALUES
        (7, 'BEGIN', 100), (7, 'cause host_failure', 100), (7, 'DONE', 200);
    INSERT INTO owed_cleanup (host, vm, relocation, why, owed_ms)
        VALUES (1, '61be20f0-09a8-4753-b5e5-564f8a545ed1', 7, 'h1 unreachable', 150);
    INSERT INTO operator_request (host_group, kind, host, requested_by, created_ms, state)
        VALUES ('hg', 'EVACUATE', 1, 'op@box', 300, 'PENDING'),
               ('hg', 'RESTORE', 1, 'op@box', 400, 'PENDING');
    DELETE FROM operator_request WHERE kind = 'RESTORE';
";

/// After v12: the relocation, its steps and the cleanup's link kept; the request kept
/// with no VM; MOVE rows and reasons accepted; no request id reused.
fn check_v11_migrated(mut db: Hsdb) {
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let vm = uuid("61be20f0-09a8-4753-b5e5-564f8a545ed1");
    let row = db.relocation(7).expect("read").expect("relocation kept");
    assert_eq!(
        (
            row.kind,
            row.from_host,
            row.to_host,
            row.result.as_deref(),
            row.reasons
        ),
        (
            crate::RelocationKind::Relocate,
            Some(HostId(1)),
            Some(HostId(2)),
            Some("success"),
            None
        )
    );
    let steps: Vec<String> = db
        .relocation_steps(7)
        .expect("steps")
        .into_iter()
        .map(|s| s.phase)
        .collect();
    assert_eq!(steps, ["BEGIN", "cause host_failure", "DONE"]);
    let owed = db.owed_cleanups(None).expect("owed");
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].relocation, Some(7), "the cleanup still names it");
    let evac = db.operator_request(1).expect("read").expect("request kept");
    assert_eq!(
        (evac.kind, evac.host, evac.vm, evac.target_host),
        (crate::RequestKind::Evacuate, HostId(1), None, None)
    );
    let mv = db
        .request_move("hg", &vm, Some(HostId(1)), "cli:root", 500)
        .expect("MOVE accepted");
    assert_eq!(mv, 3, "a pruned request's id is not reused");
    db.relocation_begin_explained(
        &vm,
        Some(HostId(2)),
        Some(HostId(1)),
        crate::RelocationKind::Move,
        Some("target h1"),
        600,
    )
    .expect("MOVE relocation");
    db.integrity_check().expect("integrity");
}

#[test]
fn test_v11_database_is_migrated_with_its_relocations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v11.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        for m in crate::schema::MIGRATIONS.iter().take(11) {
            conn.execute_batch(m.sqlite).expect("script");
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (?1, ?2)",
                rusqlite::params![m.version, m.name],
            )
            .expect("version");
        }
        conn.execute_batch(V11_ROWS).expect("v11 rows");
    }
    // Hsdb::open migrates with foreign keys on: dropping the old `relocation` cascades.
    let db = Hsdb::open(&path, &Options::default()).expect("migrate");
    let fk_problems: i64 = db
        .raw_sqlite()
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check");
    assert_eq!(fk_problems, 0);
    check_v11_migrated(db);
}

#[test]
fn test_pg_v11_database_is_migrated_with_its_relocations() {
    let test = "test_pg_v11_database_is_migrated_with_its_relocations";
    let Some(url) = fresh_postgres_url(test) else {
        return;
    };
    {
        let mut raw = pglab::client(&url);
        for m in crate::schema::MIGRATIONS.iter().take(11) {
            raw.batch_execute(m.postgres).expect("script");
            raw.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .expect("version");
        }
        raw.batch_execute(V11_ROWS).expect("v11 rows");
    }
    let target = crate::Target::parse(&url).expect("valid URL");
    check_v11_migrated(Hsdb::connect(&target, &Options::default()).expect("migrate"));
}
