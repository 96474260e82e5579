//! Tests against real SQLite files in a temporary directory.

mod activity;
mod admin;
mod app;
mod batch;
mod browse;
mod concurrency;
mod control;
mod equivalence;
mod events;
mod monitors;
mod open;
mod ops;
mod policy;
mod postgres;
mod read_only;
mod report_commands;
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

// Whether the fixtures of the running test use PostgreSQL: set by `both!`'s wrappers;
// SQLite otherwise (the SQLite-only tests).
std::thread_local! {
    static ON_POSTGRES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run test `test` on `backend`: on PostgreSQL every [`Fixture`] it makes is a fresh
/// database (skipped, saying so, when this machine has no PostgreSQL; failed under
/// `CI=true`).
fn run_on(backend: crate::Backend, test: &str, body: fn()) {
    match backend {
        crate::Backend::Sqlite => ON_POSTGRES.with(|b| b.set(false)),
        crate::Backend::Postgres => {
            if pglab::require(test).is_none() {
                return;
            }
            // Each fixture the test makes gets a fresh database.
            ON_POSTGRES.with(|b| b.set(true));
        }
    }
    body();
}

/// Generate `<test>::sqlite` and `<test>::postgres` for each test function named: the
/// same body on both backends ([`run_on`]).
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    crate::tests::run_on(
                        crate::Backend::Sqlite,
                        concat!(module_path!(), "::sqlite"),
                        super::$name,
                    );
                }

                #[test]
                fn postgres() {
                    crate::tests::run_on(
                        crate::Backend::Postgres,
                        concat!(module_path!(), "::postgres"),
                        super::$name,
                    );
                }
            }
        )+
    };
}
pub(crate) use both;

/// Where a fixture's database lives.
enum Place {
    Sqlite(TempDir),
    Postgres(crate::Target),
}

/// A database with hosts A and B, monitors hm1, hm2 on A and hm_b on B: an SQLite file,
/// or a fresh PostgreSQL database when the test runs on PostgreSQL ([`both!`]).
struct Fixture {
    place: Place,
    db: Hsdb,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(Synchronous::Full)
    }

    fn with(synchronous: Synchronous) -> Fixture {
        let options = Options {
            synchronous,
            ..Options::default()
        };
        let on_pg = ON_POSTGRES.with(std::cell::Cell::get);
        let (place, mut db) = if on_pg {
            let test = std::thread::current()
                .name()
                .unwrap_or("hsdb_test")
                .to_owned();
            let target = fresh_postgres(&test).expect("PostgreSQL checked by run_on");
            let db = Hsdb::connect(&target, &options).expect("connect");
            (Place::Postgres(target), db)
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).expect("open");
            (Place::Sqlite(dir), db)
        };
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
        Fixture { place, db }
    }

    /// The SQLite file (SQLite-only tests).
    fn path(&self) -> std::path::PathBuf {
        match &self.place {
            Place::Sqlite(dir) => dir.path().join("hsdb.sqlite"),
            Place::Postgres(_) => panic!("an SQLite-only test runs on SQLite"),
        }
    }

    /// The database as a target, for more connections.
    fn target(&self) -> crate::Target {
        match &self.place {
            Place::Sqlite(dir) => crate::Target::Sqlite(dir.path().join("hsdb.sqlite")),
            Place::Postgres(target) => target.clone(),
        }
    }

    /// Another read-write connection to the same database.
    fn reopen(&self, options: &Options) -> Hsdb {
        Hsdb::connect(&self.target(), options).expect("reopen")
    }

    /// A read-only connection to the same database.
    fn reopen_read_only(&self, options: &Options) -> Hsdb {
        Hsdb::connect_read_only(&self.target(), options).expect("reopen read-only")
    }

    /// Count commits of `self.db` from now on.
    fn count_commits(&mut self) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        if self.db.backend() == crate::Backend::Postgres {
            self.db.conn.count_commits(Arc::clone(&commits));
            return commits;
        }
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

    /// A raw connection to the same file, for edits the API does not allow (SQLite-only
    /// tests; shared tests use `f.db.conn`).
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).expect("raw open")
    }

    /// One integer from `sql` (`?N` placeholders), through the fixture's connection.
    fn int(&self, sql: &str, params: &[&dyn crate::db::Param]) -> i64 {
        self.db
            .conn
            .query_int("test", sql, params)
            .expect(sql)
            .expect("a value")
    }

    /// Execute `sql` through the fixture's connection; rows changed.
    fn exec(&self, sql: &str, params: &[&dyn crate::db::Param]) -> usize {
        self.db.conn.execute("test", sql, params).expect(sql)
    }
}

/// A fresh PostgreSQL database for test `test` (pglab: `HVHA_PG_URL`'s server, or a
/// throw-away cluster of this test process), as a target; `None` after saying why the
/// test is skipped when this machine has no PostgreSQL (under `CI=true` that fails).
fn fresh_postgres(test: &str) -> Option<crate::Target> {
    let url = fresh_postgres_url(test)?;
    Some(crate::Target::parse(&url).expect("pglab gives a valid URL"))
}

/// The same, as the database's URL (for a raw client: `pglab::client`).
fn fresh_postgres_url(test: &str) -> Option<String> {
    Some(pglab::require(test)?.fresh_database(test))
}
