//! PostgreSQL only: what the SQLite-only tests of `open.rs` and `read_only.rs` check, on
//! the other backend (DDL, refusals, concurrent first connections, read-only sessions,
//! the v1-v3 → v4 data migration), and what only a server can do (a connection that
//! breaks).

use super::*;
use crate::{Error, SCHEMA_VERSION, VmState};

/// A fresh database: its URL and target, or `None` (skipped) without PostgreSQL.
fn fresh(test: &str) -> Option<(String, crate::Target)> {
    let url = fresh_postgres_url(test)?;
    let target = crate::Target::parse(&url).expect("valid URL");
    Some((url, target))
}

#[test]
fn test_pg_connect_creates_the_schema() {
    let Some((url, target)) = fresh("test_pg_connect_creates_the_schema") else {
        return;
    };
    let db = Hsdb::connect(&target, &Options::default()).expect("connect");
    assert_eq!(db.backend(), crate::Backend::Postgres);
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    db.integrity_check().expect("integrity");
    assert!(!db.is_broken());
    // The target names the database, never a password.
    assert!(
        db.path().to_string_lossy().starts_with("postgres://"),
        "{:?}",
        db.path()
    );

    let mut raw = pglab::client(&url);
    let recorded: Vec<(i64, String)> = raw
        .query(
            "SELECT version, name FROM schema_version ORDER BY version",
            &[],
        )
        .expect("versions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i64, String)> = crate::schema::MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect();
    assert_eq!(recorded, expected);
    // BIGINT everywhere, every text column byte-ordered like SQLite.
    let odd: Vec<(String, String, String, Option<String>)> = raw
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, collation_name::text \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND (data_type IN ('integer', 'smallint', 'numeric') \
                  OR (data_type = 'text' AND collation_name IS DISTINCT FROM 'C')) \
             ORDER BY 1, 2",
            &[],
        )
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    // The v5 CHECK: a STOPPED row has no miss time (as on SQLite).
    let tables: i64 = raw
        .query_one(
            "SELECT COUNT(*) FROM pg_constraint WHERE conname = 'vm_hm_stopped_no_miss'",
            &[],
        )
        .expect("constraint")
        .get(0);
    assert_eq!(tables, 1);
}

#[test]
fn test_pg_foreign_database_refused() {
    let Some((url, target)) = fresh("test_pg_foreign_database_refused") else {
        return;
    };
    let mut raw = pglab::client(&url);
    raw.batch_execute("CREATE TABLE invoices (id BIGINT PRIMARY KEY)")
        .expect("someone else's table");
    let err = Hsdb::connect(&target, &Options::default()).expect_err("foreign");
    assert!(
        matches!(&err, Error::ForeignDatabase { tables, .. } if tables == "invoices"),
        "{err}"
    );
    assert!(!err.is_unavailable());
    let left: i64 = raw
        .query_one(
            "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(left, 1, "nothing added to it");
}

#[test]
fn test_pg_newer_version_refused() {
    let Some((url, target)) = fresh("test_pg_newer_version_refused") else {
        return;
    };
    drop(Hsdb::connect(&target, &Options::default()).expect("create"));
    pglab::client(&url)
        .execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, 'future')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .expect("future");
    for err in [
        Hsdb::connect(&target, &Options::default()).expect_err("too new"),
        Hsdb::connect_read_only(&target, &Options::default()).expect_err("too new"),
    ] {
        assert!(
            matches!(err, Error::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(!err.to_string().contains("password"), "{err}");
    }
}

#[test]
fn test_pg_read_only_session() {
    let Some((url, target)) = fresh("test_pg_read_only_session") else {
        return;
    };
    // An empty database: a reader never creates the schema.
    let err = Hsdb::connect_read_only(&target, &Options::default()).expect_err("empty");
    assert!(matches!(err, Error::TooOld { found: 0, .. }), "{err}");
    let tables: i64 = pglab::client(&url)
        .query_one(
            "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(tables, 0);

    let mut db = Hsdb::connect(&target, &Options::default()).expect("writer");
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host");
    let mut ro = Hsdb::connect_read_only(&target, &Options::default()).expect("reader");
    assert_eq!(ro.hosts().expect("hosts").len(), 1);
    let err = ro
        .upsert_host(&host(HOST_B, "host-b", "x"))
        .expect_err("read-only session");
    assert_eq!(
        err.db_error().and_then(crate::DbError::sqlstate),
        Some("25006"),
        "{err}"
    );
    assert!(!err.is_unavailable(), "a refusal, not an outage: {err}");
    assert!(
        ro.needs_attention(T0, crate::NaLimits::default(), 1)
            .is_err()
    );
    // The peek is a read: it works there.
    ro.needs_attention_peek(T0, crate::NaLimits::default(), None)
        .expect("peek");
    assert_eq!(db.hosts().expect("hosts").len(), 1);
}

#[test]
fn test_pg_concurrent_first_connect() {
    let Some((_, target)) = fresh("test_pg_concurrent_first_connect") else {
        return;
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || {
                Hsdb::connect(&target, &Options::default())
                    .and_then(|db| db.schema_version())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), Ok(SCHEMA_VERSION));
    }
    let db = Hsdb::connect(&target, &Options::default()).expect("connect");
    db.integrity_check().expect("integrity");
}

#[test]
fn test_pg_v3_database_is_migrated_with_its_rows() {
    let Some((url, target)) = fresh("test_pg_v3_database_is_migrated_with_its_rows") else {
        return;
    };
    {
        // A database as a v3 build would have left it, with old-style pending rows.
        let mut raw = pglab::client(&url);
        for m in crate::schema::MIGRATIONS.iter().take(3) {
            raw.batch_execute(m.postgres).expect("script");
            raw.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .expect("version");
        }
        raw.batch_execute(
            "INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb,
                               host_group) VALUES (1, 'h1', '', '', '', 0, 0, '');
             INSERT INTO hm (uuid, host_id, mac, state, last_hb_ms, incarnation, version)
                 VALUES ('5c3196a3-c41f-4b5c-9861-dee6077081c6', 1, '02:00:00:00:00:01',
                         'UP', 1, '1.2.3', '2.0');
             INSERT INTO vm (uuid, state, updated_ms)
                 VALUES ('61be20f0-09a8-4753-b5e5-564f8a545ed1', 'STARTED', 1);
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
                  '5c3196a3-c41f-4b5c-9861-dee6077081c6', 'DOORBELL', 40, '0x28', 8);
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
        .expect("v3 rows");
    }
    let db = Hsdb::connect(&target, &Options::default()).expect("migrate");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    let pending = db.pending().expect("pending");
    let got: Vec<_> = pending
        .iter()
        .map(|p| {
            (
                p.id,
                p.tag,
                p.old_state,
                p.new_state,
                p.from_host,
                p.data.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, None, None, Some(VmState::Started), None, ""),
            (
                2,
                Some(7),
                Some(VmState::Started),
                Some(VmState::Suspended),
                None,
                ""
            ),
            (
                3,
                None,
                Some(VmState::Suspended),
                Some(VmState::Started),
                Some(HostId(-42)),
                ""
            ),
            (4, None, None, None, None, "0x28"),
        ]
    );
    assert!(pending.iter().all(|p| p.updated_ms == p.created_ms));
    let mut db = db;
    super::policy::check_v1_policies_migrated(&mut db);
    db.integrity_check().expect("integrity");
}

#[test]
fn test_pg_unreachable_and_broken_connections_are_unavailable() {
    let Some((url, target)) = fresh("test_pg_unreachable_and_broken_connections") else {
        return;
    };
    // Nothing listens on port 1.
    let nowhere = crate::Target::parse("postgres://hvha@127.0.0.1:1/hsdb").expect("url");
    let err = Hsdb::connect(&nowhere, &Options::default()).expect_err("nothing there");
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    // A connection the server ends (as at a restart): unavailable, and broken.
    let mut db = Hsdb::connect(&target, &Options::default()).expect("connect");
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host");
    let pid: i32 = db
        .conn
        .query_int("test", "SELECT pg_backend_pid()", crate::db::params![])
        .expect("pid")
        .and_then(|p| i32::try_from(p).ok())
        .expect("a pid");
    pglab::client(&url)
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .expect("terminate");
    let err = db.hosts().expect_err("the server closed it");
    assert!(err.is_unavailable(), "{err}");
    // The client notices at the latest on the next use.
    let _ = db.hosts();
    assert!(db.is_broken());
    // A new connection works.
    let db = Hsdb::connect(&target, &Options::default()).expect("reconnect");
    assert_eq!(db.hosts().expect("hosts").len(), 1);
}

#[test]
fn test_pg_corrupt_values_are_errors() {
    let Some((_, target)) = fresh("test_pg_corrupt_values_are_errors") else {
        return;
    };
    let mut db = Hsdb::connect(&target, &Options::default()).expect("connect");
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host");
    db.register_hm(&hm_record(hm1(), HOST_A, MacAddr([2, 0, 0, 0, 0, 1]), T0))
        .expect("register");
    db.conn
        .execute(
            "test",
            "UPDATE hm SET mac = 'not a mac' WHERE uuid = ?1",
            crate::db::params![hm1().to_string()],
        )
        .expect("edit by hand");
    let err = db.hm(&hm1()).expect_err("corrupt");
    assert!(
        matches!(
            err,
            Error::Corrupt {
                table: "hm",
                column: "mac",
                ..
            }
        ),
        "{err}"
    );
}
