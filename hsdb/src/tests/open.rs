//! Opening: migrations, pragmas, reopening, and every file we must refuse.

use std::time::Duration;

use super::*;
use crate::{Error, SCHEMA_VERSION, VmState};

/// Open `path` from `threads` threads at once; each one's schema version or error.
fn open_concurrently(path: &std::path::Path, threads: usize) -> Vec<Result<i64, String>> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                Hsdb::open(&path, &Options::default())
                    .and_then(|db| db.schema_version())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("opener thread"))
        .collect()
}

fn pragma_i64(db: &Hsdb, name: &str) -> i64 {
    db.raw_sqlite()
        .pragma_query_value(None, name, |row| row.get(0))
        .expect("pragma")
}

#[test]
fn test_open_migrates_empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hsdb.sqlite");
    let db = Hsdb::open(&path, &Options::default()).expect("open");
    assert_eq!(db.path(), path);
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    db.integrity_check().expect("integrity");

    let mode: String = db
        .raw_sqlite()
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    assert_eq!(pragma_i64(&db, "synchronous"), 2, "FULL by default");
    assert_eq!(pragma_i64(&db, "foreign_keys"), 1);
    assert_eq!(pragma_i64(&db, "busy_timeout"), 5_000);

    // Every table of DESIGN.md §4 exists, empty.
    for table in [
        "host",
        "hm",
        "vm",
        "vm_hm",
        "pending",
        "app",
        "event",
        "event_consumer",
        "relocation",
        "policy",
        "hm_interface",
        "hm_command",
        "param",
        "relocation_step",
        "leader_lease",
        "policy_member",
        "vm_host_exclusion",
        "flexible_capacity",
        "activity",
        "vm_discovery",
        "host_discovery",
    ] {
        let n: i64 = db
            .raw_sqlite()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect(table);
        assert_eq!(n, 0, "{table}");
    }
    let mut stmt = db
        .raw_sqlite()
        .prepare("SELECT version, name FROM schema_version ORDER BY version")
        .expect("prepare");
    let recorded: Vec<(i64, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(
        recorded,
        [
            (1, "initial schema".to_string()),
            (2, "index vm_hm by monitor and state".to_string()),
            (3, "state of each monitor interface".to_string()),
            (
                4,
                "control plane: pending columns, commands, parameters, relocation steps"
                    .to_string()
            ),
            (
                5,
                "vm_hm.last_state STOPPED: monitoring stopped by the controller".to_string()
            ),
            (
                6,
                "leader_lease: the control plane's leader per host group".to_string()
            ),
            (
                7,
                "relocation policies: VM sets with members, host exclusions, flexible capacity"
                    .to_string()
            ),
            (
                8,
                "owed cleanups, operator requests, hosts in maintenance".to_string()
            ),
            (
                9,
                "application reports: report commands with an argument, app report columns"
                    .to_string()
            ),
            (
                10,
                "index of the application-report fetches the control plane has not handled"
                    .to_string()
            ),
            (
                11,
                "discovery: activities, what discovery found of each VM and host".to_string()
            ),
            (
                12,
                "operator requests and relocations of kind MOVE, relocation reasons".to_string()
            )
        ]
    );
}

#[test]
fn test_v1_database_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v1.sqlite");
    {
        // A database as a v1 build left it, with a monitor, a VM and its row.
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(include_str!("../schema/v1.sql"))
            .expect("v1 schema");
        conn.execute_batch(
            "INSERT INTO schema_version (version, name) VALUES (1, 'initial schema');
             INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb,
                               host_group)
                 VALUES (1, 'h1', '', '', '', 0, 0, '');
             INSERT INTO hm (uuid, host_id, mac, state, last_hb_ms, incarnation, version)
                 VALUES ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 1, '02:00:00:00:00:01',
                         'UP', 1, '1.2.3', '2.0');
             INSERT INTO vm (uuid, state, updated_ms)
                 VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1', 'STARTED', 1);
             INSERT INTO vm_hm (vm, hm, last_state, updated_ms)
                 VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1',
                         '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'MISSING', 1);
             INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb,
                               host_group)
                 VALUES (-42, 'h2', '', '', '', 0, 0, '');
             INSERT INTO pending (id, tag, vm, hm, kind, code, data, created_ms) VALUES
                 (1, NULL, '61be20f0-09a8-4753-b5e5-564f8a545ed1',
                  '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'DISCOVERED', 0,
                  'old=NONE:new=STARTED', 5),
                 (2, 7, '61be20f0-09a8-4753-b5e5-564f8a545ed1',
                  '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'STATE_CHANGE', 0,
                  'old=STARTED:new=SUSPENDED', 6),
                 (3, NULL, '61be20f0-09a8-4753-b5e5-564f8a545ed1',
                  '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'DISCOVERED', 0,
                  'old=SUSPENDED:new=STARTED:from_host=-42', 7),
                 (4, NULL, '61be20f0-09a8-4753-b5e5-564f8a545ed1',
                  '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'DOORBELL', 40, '0x28', 8),
                 (9, NULL, NULL, '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'HM_EVENT', 64,
                  'EVENT_TYPE=NODE_DOWN', 9);
             INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb,
                               host_group)
                 VALUES (7, 'h7', '', '', '', 0, 0, 'hg7');
             INSERT INTO vm (uuid, home_host, state, updated_ms)
                 VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed7', 7, 'STARTED', 1);
             INSERT INTO policy (id, kind, name, members) VALUES
                 (5, 'COLLOCATION', 'pair', ' 61BE20F0-09A8-4753-B5E5-564F8A545ED7 ,garbage,,\
61be20f0-09a8-4753-b5e5-564f8a545ed8,61be20f0-09a8-4753-b5e5-564f8a545ed7'),
                 (6, 'HOST_EXCLUSION', 'x', '1'),
                 (8, 'WORKGROUP', 'lone', '61be20f0-09a8-4753-b5e5-564f8a545ed8');",
        )
        .expect("v1 rows");
    }
    let db = Hsdb::open(&path, &Options::default()).expect("migrate");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let hm = Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid");
    let counts = db.vm_hm_counts(&hm).expect("counts");
    assert_eq!((counts.missing, counts.total()), (1, 1));
    let indexes: Vec<String> = db
        .raw_sqlite()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'vm_hm'")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert!(
        indexes.contains(&"vm_hm_by_hm_state".to_string()),
        "{indexes:?}"
    );
    assert!(!indexes.contains(&"vm_hm_by_hm".to_string()), "{indexes:?}");
    // v5 rebuilt vm_hm: its row, its indexes (v1's partial index of missed rows too) and
    // its foreign keys are as before, and STOPPED is a state it takes.
    assert!(indexes.contains(&"vm_hm_missed".to_string()), "{indexes:?}");
    let vm = Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed1").expect("uuid");
    let row = db
        .vm_hm(&vm, &hm)
        .expect("read")
        .expect("the v1 row survived");
    assert_eq!(
        (row.last_state, row.updated_ms),
        (crate::HeartbeatState::Missing, 1)
    );
    let fk_problems: i64 = db
        .raw_sqlite()
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check");
    assert_eq!(fk_problems, 0);
    let fks: Vec<String> = db
        .raw_sqlite()
        .prepare("SELECT \"table\" FROM pragma_foreign_key_list('vm_hm') ORDER BY 1")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(fks, ["hm", "vm"]);
    // A STOPPED row with a miss time is refused by the schema itself.
    let refused = db.raw_sqlite().execute(
        "UPDATE vm_hm SET last_state = 'STOPPED', hb_missed_ms = 5",
        [],
    );
    assert!(
        refused.is_err(),
        "a STOPPED row keeps no miss time: {refused:?}"
    );
    // v3: the monitor's interfaces, empty until the monitor reports them.
    assert_eq!(db.hm_interfaces(&hm).expect("hm_interface exists"), []);
    // v4: the pending rows' `old=…:new=…:from_host=…` text became columns.
    let pending: Vec<(i64, Option<i64>, String, String, u64)> = db
        .pending()
        .expect("pending")
        .into_iter()
        .map(|p| (p.id, p.tag, p.describe(), p.data, p.code))
        .collect();
    let s = |t: &str| t.to_string();
    assert_eq!(
        pending,
        [
            (1, None, s("old=NONE:new=STARTED"), s(""), 0),
            (2, Some(7), s("old=STARTED:new=SUSPENDED"), s(""), 0),
            (
                3,
                None,
                s("old=SUSPENDED:new=STARTED:from_host=-42"),
                s(""),
                0
            ),
            (4, None, s("0x28"), s("0x28"), 0x28),
            (
                9,
                None,
                s("EVENT_TYPE=NODE_DOWN"),
                s("EVENT_TYPE=NODE_DOWN"),
                0x40
            ),
        ]
    );
    let first = db.pending().expect("pending");
    assert_eq!(
        (first[0].old_state, first[0].new_state, first[2].from_host),
        (None, Some(VmState::Started), Some(crate::HostId(-42)))
    );
    // AUTOINCREMENT continues above the highest id copied, even once it is deleted.
    drop(db);
    let mut db = Hsdb::open(&path, &Options::default()).expect("reopen");
    db.retire_hm(&hm)
        .expect("retire deletes the HM_EVENT row 9");
    db.apply(&[crate::Transition::Doorbell {
        vm: Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed2").expect("uuid"),
        hm: Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid"),
        vector: 1,
        at: 10,
    }])
    .expect_err("the monitor is retired");
    db.register_hm(&crate::HmRecord {
        uuid: hm,
        host: crate::HostId(1),
        mac: crate::MacAddr([2, 0, 0, 0, 0, 1]),
        incarnation: crate::HelloId::parse(b"1556303548.719328000.38").expect("hello"),
        version: crate::Version { major: 2, minor: 0 },
        at: 10,
    })
    .expect("register again");
    db.apply(&[crate::Transition::Doorbell {
        vm: Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed2").expect("uuid"),
        hm,
        vector: 1,
        at: 10,
    }])
    .expect("apply");
    let ids: Vec<i64> = db
        .pending()
        .expect("pending")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        ids.last(),
        Some(&11),
        "{ids:?}: 10 is the new VM's DISCOVERED item"
    );
    // v7: the v1 sets carried over with their members split, in their first member's
    // host group; the v1 exclusion row (no defined layout) dropped; ids go on above.
    super::policy::check_v1_policies_migrated(&mut db);
    db.integrity_check().expect("integrity");
}

#[test]
fn test_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        synchronous: Synchronous::Normal,
        busy_timeout: Duration::from_millis(250),
        ..Options::default()
    };
    let db = Hsdb::open(dir.path().join("normal.sqlite"), &options).expect("open");
    assert_eq!(pragma_i64(&db, "synchronous"), 1, "NORMAL");
    assert_eq!(pragma_i64(&db, "busy_timeout"), 250);

    let too_long = Options {
        busy_timeout: Duration::from_secs(601),
        ..Options::default()
    };
    let err = Hsdb::open(dir.path().join("never.sqlite"), &too_long).expect_err("refused");
    assert!(matches!(
        err,
        Error::Options {
            key: "busy_timeout",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "hsdb options: busy_timeout = 601s is out of range (0..=600 s)"
    );
    assert!(
        !dir.path().join("never.sqlite").exists(),
        "options are checked before the file is created"
    );
}

#[test]
fn test_reopen_keeps_data() {
    let mut f = Fixture::new();
    let at = T0 + 1_000;
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), at),
        Transition::Missing {
            vm: vm1(),
            hm: hm2(),
            at,
        },
    ])
    .expect("apply");
    let path = f.path();
    let before = (f.db.vms().expect("vms"), f.db.pending().expect("pending"));
    drop(f.db);

    let db = Hsdb::open(&path, &Options::default()).expect("reopen");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(
        (db.vms().expect("vms"), db.pending().expect("pending")),
        before
    );
    assert_eq!(
        db.vm_hm(&vm1(), &hm2())
            .expect("read")
            .and_then(|r| r.hb_missed_ms),
        Some(at)
    );
    assert!(db.hm(&hm1()).expect("read").is_some());
    db.integrity_check().expect("integrity");
    // Reopening did not apply the migration twice.
    let rows: i64 = db
        .raw_sqlite()
        .query_row("SELECT COUNT(*) FROM schema_version", [], |row| row.get(0))
        .expect("count");
    assert_eq!(rows, SCHEMA_VERSION);
}

#[test]
fn test_newer_version_refused() {
    let f = Fixture::new();
    let path = f.path();
    f.raw()
        .execute(
            "INSERT INTO schema_version (version, name) VALUES (99, 'from the future')",
            [],
        )
        .expect("raw insert");
    drop(f.db);

    let err = Hsdb::open(&path, &Options::default()).expect_err("refused");
    assert!(
        matches!(
            &err,
            Error::TooNew {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("schema version 99"), "{msg}");
    assert!(msg.contains(&format!("version {SCHEMA_VERSION}")), "{msg}");
}

#[test]
fn test_garbage_file_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    let garbage = "this is not a database, just notes.\n".repeat(200);
    std::fs::write(&path, &garbage).expect("write");

    let err = Hsdb::open(&path, &Options::default()).expect_err("refused");
    assert!(matches!(&err, Error::NotADatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not an SQLite database"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read back"),
        garbage,
        "the file is left alone"
    );
}

#[test]
fn test_foreign_database_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
        .expect("someone else's database");

    let err = Hsdb::open(&path, &Options::default()).expect_err("refused");
    assert!(matches!(&err, Error::ForeignDatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("invoices"), "{msg}");
}

#[test]
fn test_unopenable_paths_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory that does not exist.
    let missing = dir.path().join("no/such/dir/hsdb.sqlite");
    let err = Hsdb::open(&missing, &Options::default()).expect_err("refused");
    assert!(matches!(&err, Error::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    // A directory where the file should be.
    let err = Hsdb::open(dir.path(), &Options::default()).expect_err("refused");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn test_concurrent_first_open() {
    // Two monitors starting at once on a fresh file: one migrates, the other waits for
    // it and finds nothing to do.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hsdb.sqlite");
    for version in open_concurrently(&path, 4) {
        assert_eq!(version, Ok(SCHEMA_VERSION));
    }
}

#[test]
fn test_in_memory() {
    let mut db = Hsdb::open_in_memory().expect("open");
    assert_eq!(db.path(), std::path::Path::new(":memory:"));
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host");
    db.register_hm(&hm_record(hm1(), HOST_A, MacAddr([2; 6]), T0))
        .expect("register");
    db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    assert_eq!(db.vms().expect("vms").len(), 1);
    db.integrity_check().expect("integrity");
}

#[test]
fn test_corrupt_values_are_errors() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    // An operator edits values by hand with sqlite3.
    let raw = f.raw();
    raw.execute("UPDATE hm SET mac = 'not-a-mac' WHERE host_id = 42", [])
        .expect("edit");
    raw.execute("UPDATE vm_hm SET mac = 'zz:zz:zz:zz:zz:zz'", [])
        .expect("edit");
    raw.execute("UPDATE vm SET agent_ver_lower = 'two'", [])
        .expect("edit");

    let err = f.db.hm(&hm_b()).expect_err("bad mac");
    assert_eq!(
        err.to_string(),
        "HSDB value hm.mac = \"not-a-mac\" is not a valid MAC address"
    );
    assert!(matches!(
        f.db.vm_mac(&vm1(), &hm1()),
        Err(Error::Corrupt {
            table: "vm_hm",
            column: "mac",
            ..
        })
    ));
    assert!(matches!(
        f.db.vm(&vm1()),
        Err(Error::Corrupt {
            table: "vm",
            column: "agent_ver_lower",
            ..
        })
    ));
    // The schema's CHECKs stop what the decoder would otherwise have to catch.
    assert!(
        raw.execute("UPDATE vm SET state = 'RUNNING'", []).is_err(),
        "CHECK on vm.state"
    );
}

#[test]
fn test_open_while_others_open_and_write() {
    // A monitor restarting (its killed predecessor left the WAL behind) while the
    // control plane and operators open the same file and a writer commits: opening an
    // up-to-date file takes no write lock, so none of them fails "database is locked".
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hsdb.sqlite");
    {
        let mut db = Hsdb::open(&path, &Options::default()).expect("open");
        db.upsert_host(&host(HOST_A, "host-a", "212424W"))
            .expect("host");
        std::mem::forget(db); // no clean close: the WAL stays, as after kill -9
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut db = Hsdb::open(&path, &Options::default()).map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                db.upsert_host(&host(HOST_A, "host-a", &format!("s{n}")))
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok::<u64, String>(n)
        })
    };
    let openers: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    Hsdb::open(&path, &Options::default())
                        .and_then(|db| db.schema_version())
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().expect("thread"), Ok(()));
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().expect("thread");
    assert!(commits.as_ref().is_ok_and(|n| *n > 0), "{commits:?}");
}

#[test]
fn test_migration_waits_for_a_busy_writer() {
    // Monitors migrating fresh files while another connection keeps taking the write
    // lock: each migration waits for it (up to busy_timeout) instead of failing.
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..5 {
        let path = dir.path().join(format!("fresh{round}.sqlite"));
        let locker = rusqlite::Connection::open(&path).expect("create");
        locker
            .pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    locker
                        .execute_batch("BEGIN IMMEDIATE; COMMIT;")
                        .expect("lock and release");
                    n += 1;
                }
                n
            })
        };
        for version in open_concurrently(&path, 4) {
            assert_eq!(version, Ok(SCHEMA_VERSION), "round {round}");
        }
        stop.store(true, Ordering::Relaxed);
        assert!(busy.join().expect("thread") > 0);
    }
}
