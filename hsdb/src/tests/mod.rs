//! Tests against real SQLite files in a temporary directory.

mod admin;
mod batch;
mod control;
mod events;
mod monitors;
mod open;
mod read_only;
mod review;
mod stopped;
mod transitions;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

use crate::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, Synchronous, Transition, Uuid,
    Version,
};

/// 2019-04-26 18:32:28 UTC, the seed's Hello time (seed 004 L8313), in ms.
const T0: i64 = 1_556_303_548_719;

/// Host of the two test monitors (seed serial 212424W, seed 004 L12600-12607).
const HOST_A: HostId = HostId(-5_878_939_440_565_042_805);
/// A second host, for moves.
const HOST_B: HostId = HostId(42);

/// The two monitors of host A (seed VIOS UUIDs, seed 004 L12281-12298) and one of host B.
fn hm1() -> Uuid {
    uuid("315ce56b-9ba0-46a1-b4bc-da6108574e7e")
}
fn hm2() -> Uuid {
    uuid("5ac3e0dc-13fc-4221-9617-8ef61c4cdd83")
}
fn hm_b() -> Uuid {
    uuid("4e0f6f60-214b-4d2c-a436-0eac46f7f71f")
}

/// The seed's VM (seed 004 L11447).
fn vm1() -> Uuid {
    uuid("61be20f0-09a8-4753-b5e5-564f8a545ed5")
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).expect("test uuid is valid")
}

/// VM number `i`: distinct UUIDs for mass tests.
fn vm_n(i: u32) -> Uuid {
    let mut bytes = [0x5a; 16];
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(bytes)
}

/// MAC of VM number `i` on the interface toward monitor `side` (0 or 1).
fn mac_n(i: u32, side: u8) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x6a, side, b[0], b[1], b[2], b[3]])
}

const V2_0: Version = Version { major: 2, minor: 0 };

fn host(id: HostId, name: &str, serial: &str) -> HostRecord {
    HostRecord {
        id,
        name: name.to_string(),
        machine_type: "8408".to_string(),
        model: "E8E".to_string(),
        serial: serial.to_string(),
        cpu_milli: 48_000,
        memory_mb: 1_048_576,
        host_group: "hg1".to_string(),
    }
}

fn hm_record(uuid: Uuid, host: HostId, mac: MacAddr, at: i64) -> HmRecord {
    HmRecord {
        uuid,
        host,
        mac,
        incarnation: HelloId::parse(b"1556303548.719328000.38").expect("seed Hello id"),
        version: V2_0,
        at,
    }
}

fn discovered(vm: Uuid, hm: Uuid, mac: MacAddr, at: i64) -> Transition {
    Transition::Discovered {
        vm,
        hm,
        mac,
        ostype: "linux".to_string(),
        ver_lower: V2_0,
        ver_upper: V2_0,
        at,
    }
}

/// A file database with hosts A and B, monitors hm1, hm2 on A and hm_b on B.
struct Fixture {
    dir: TempDir,
    db: Hsdb,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(Synchronous::Full)
    }

    fn with(synchronous: Synchronous) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = Options {
            synchronous,
            ..Options::default()
        };
        let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).expect("open");
        db.upsert_host(&host(HOST_A, "host-a", "212424W"))
            .expect("host a");
        db.upsert_host(&host(HOST_B, "host-b", "21282FW"))
            .expect("host b");
        let trunk = |last| MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, last]);
        for (uuid, host, mac) in [
            (hm1(), HOST_A, trunk(0x11)),
            (hm2(), HOST_A, trunk(0x12)),
            (hm_b(), HOST_B, trunk(0x13)),
        ] {
            db.register_hm(&hm_record(uuid, host, mac, T0))
                .expect("register");
        }
        Fixture { dir, db }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("hsdb.sqlite")
    }

    /// Count commits from now on.
    fn count_commits(&mut self) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&commits);
        self.db
            .raw_sqlite_mut()
            .commit_hook(Some(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                false
            }))
            .expect("commit hook");
        commits
    }

    /// A raw connection to the same file, for edits the API does not allow.
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).expect("raw open")
    }
}

/// A fresh PostgreSQL database for test `test` (pglab: `HVHA_PG_URL`'s server, or a
/// throw-away cluster of this test process), as a target; `None` after saying why the
/// test is skipped when this machine has no PostgreSQL (under `CI=true` that fails).
fn fresh_postgres(test: &str) -> Option<crate::Target> {
    let server = pglab::require(test)?;
    let url = server.fresh_database(test);
    Some(crate::Target::parse(&url).expect("pglab gives a valid URL"))
}

#[test]
fn test_postgres_smoke() {
    let Some(target) = fresh_postgres("test_postgres_smoke") else {
        return;
    };
    let mut db = Hsdb::connect(&target, &Options::default()).expect("connect");
    assert_eq!(db.backend(), crate::Backend::Postgres);
    assert_eq!(db.schema_version().expect("version"), crate::SCHEMA_VERSION);
    db.integrity_check().expect("integrity");
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host");
    let trunk = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
    db.register_hm(&hm_record(hm1(), HOST_A, trunk, T0))
        .expect("register");
    let applied = db
        .apply(&[
            discovered(vm1(), hm1(), mac_n(1, 0), T0),
            Transition::Missing {
                vm: vm1(),
                hm: hm1(),
                at: T0 + 5,
            },
            Transition::Event {
                kind: "X".into(),
                vm: Some(vm1()),
                hm: None,
                text: "t".into(),
                at: T0,
            },
        ])
        .expect("apply");
    assert_eq!(applied.vms_created, 1);
    let row = db.vm_hm(&vm1(), &hm1()).expect("read").expect("row");
    assert_eq!(row.hb_missed_ms, Some(T0 + 5));
    assert_eq!(db.pending().expect("pending").len(), 1);
    assert_eq!(db.events_after(0, 10).expect("events").len(), 1);
    drop(db);
    let again = Hsdb::connect(&target, &Options::default()).expect("reconnect");
    assert_eq!(again.vms().expect("vms").len(), 1);
}
