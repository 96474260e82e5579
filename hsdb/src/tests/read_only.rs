//! `Hsdb::open_read_only`: never migrates, never writes, never blocks or is blocked by a
//! writer (WAL).

use std::time::Duration;

use super::*;
use crate::{Error, SCHEMA_VERSION};

/// Options that fail at once instead of waiting for a lock.
fn no_wait() -> Options {
    Options {
        busy_timeout: Duration::ZERO,
        ..Options::default()
    }
}

#[test]
fn test_read_only_reads_and_refuses_writes() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let mut ro = Hsdb::open_read_only(f.path(), &Options::default()).expect("open ro");
    assert_eq!(ro.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(ro.quick_query(T0).expect("qq").len(), 2);
    assert!(ro.vm(&vm1()).expect("vm").is_some());
    let err = ro
        .apply(&[Transition::HmHeartbeat { hm: hm1(), at: T0 }])
        .expect_err("read-only");
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read-only"),
        "{err}"
    );
    assert!(
        ro.needs_attention(T0, crate::NaLimits::default(), 1)
            .is_err()
    );
    // Nothing was tagged through it.
    assert!(
        f.db.pending()
            .expect("pending")
            .iter()
            .all(|p| p.tag.is_none())
    );
}

#[test]
fn test_read_only_never_creates_or_migrates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.sqlite");
    let err = Hsdb::open_read_only(&missing, &Options::default()).expect_err("no file");
    assert!(matches!(err, Error::Open { .. }), "{err}");
    assert!(err.to_string().contains("absent.sqlite"), "{err}");
    assert!(!missing.exists(), "not created");

    // A v3 file (as the previous build left it): refused, left at v3.
    let old = dir.path().join("v3.sqlite");
    {
        let conn = rusqlite::Connection::open(&old).expect("create");
        for (v, sql) in [
            (1, include_str!("../schema/v1.sql")),
            (2, include_str!("../schema/v2.sql")),
            (3, include_str!("../schema/v3.sql")),
        ] {
            conn.execute_batch(sql).expect("script");
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (?1, 'x')",
                [v],
            )
            .expect("version");
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
    }
    let err = Hsdb::open_read_only(&old, &Options::default()).expect_err("too old");
    assert!(
        matches!(
            err,
            Error::TooOld {
                found: 3,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("open it read-write once"), "{err}");
    let version: i64 = rusqlite::Connection::open(&old)
        .expect("raw")
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3, "not migrated");

    // A newer file: refused.
    let f = Fixture::new();
    f.raw()
        .execute(
            "INSERT INTO schema_version (version, name) VALUES (?1, 'future')",
            [SCHEMA_VERSION + 1],
        )
        .expect("future");
    let err = Hsdb::open_read_only(f.path(), &Options::default()).expect_err("too new");
    assert!(matches!(err, Error::TooNew { .. }), "{err}");
}

#[test]
fn test_reader_and_writer_do_not_block_each_other() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let ro = Hsdb::open_read_only(f.path(), &no_wait()).expect("open ro");
    let mut writer = Hsdb::open(f.path(), &no_wait()).expect("writer");

    // A reader inside a read transaction (a snapshot taken by its first read)…
    ro.raw_sqlite().execute_batch("BEGIN").expect("begin");
    let before: i64 = ro
        .raw_sqlite()
        .query_row("SELECT COUNT(*) FROM vm", [], |r| r.get(0))
        .expect("read");
    // …does not stop a writer that never waits.
    writer
        .apply(&[discovered(vm_n(2), hm1(), mac_n(2, 0), T0 + 1)])
        .expect("write during a read transaction");
    let during: i64 = ro
        .raw_sqlite()
        .query_row("SELECT COUNT(*) FROM vm", [], |r| r.get(0))
        .expect("read");
    assert_eq!(during, before, "the reader keeps its snapshot");
    ro.raw_sqlite().execute_batch("COMMIT").expect("end read");

    // A writer holding the write lock does not stop the reader either.
    f.db.raw_sqlite()
        .execute_batch("BEGIN IMMEDIATE")
        .expect("write lock");
    f.db.raw_sqlite()
        .execute("UPDATE hm SET last_hb_ms = ?1", [T0 + 5])
        .expect("uncommitted write");
    let qq = ro
        .quick_query(T0 + 10)
        .expect("read while another holds the write lock");
    assert!(
        qq.iter()
            .flat_map(|h| &h.hms)
            .all(|s| s.hm.last_hb_ms == T0),
        "{qq:?}"
    );
    assert_eq!(ro.vms().expect("vms").len(), 2);
    // Opening another reader meanwhile is fine too (no lock at open).
    Hsdb::open_read_only(f.path(), &no_wait()).expect("open ro while locked");
    f.db.raw_sqlite().execute_batch("COMMIT").expect("commit");
    assert!(
        ro.quick_query(T0 + 10)
            .expect("qq")
            .iter()
            .flat_map(|h| &h.hms)
            .all(|s| s.hm.last_hb_ms == T0 + 5)
    );
}
