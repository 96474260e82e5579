//! SQLite and PostgreSQL side by side, in the same run (issue 9): what a mass failure
//! costs to commit, and what the control plane's two reads cost, on each backend.
//!
//! Cases (`<case>/<backend>/<size>`, backend `sqlite` or `postgres`):
//! - `missing_one_monitor/<backend>/10000`: one `apply` of 10,000 `Missing` from one
//!   monitor (a host loses its HA network), on VMs discovered beforehand;
//! - `discovered_one_monitor/<backend>/10000`: one `apply` of 10,000 `Discovered` of VMs
//!   new to the store from one monitor (10,000 agents pairing with a monitor, or a
//!   monitor restarting on a store that lost them);
//! - `missing_six_monitors/<backend>/10000`: six monitors (six hosts, one thread and one
//!   connection each) each commit a 10,000-VM failure at the same moment; the time is
//!   from the start signal to the last commit;
//! - `quick_query/<backend>/<n>` and `needs_attention/<backend>/<n>`: a group at rest (10
//!   hosts × 2 monitors, every VM discovered through both monitors of its host and
//!   acknowledged), n = 10,000 and 100,000.
//!
//! Between two timed failures the rows are set back to DETECTED by one SQL statement
//! (not timed). SQLite: a file under Cargo's target tmp dir, WAL, `synchronous=FULL`.
//! PostgreSQL: a fresh database on pglab's server (`HVHA_PG_URL`, or a throw-away
//! cluster of this process, which pglab starts with `fsync=off` — so the PostgreSQL
//! numbers are without a disk flush at commit, the SQLite ones with: say so when quoting
//! them); skipped with a message when there is none. `cargo bench -p hsdb --bench
//! backends`. Run once as a test (`cargo test --benches`), every case runs with 1,000
//! VMs (per monitor), never 100,000: building a 100,000-VM group on PostgreSQL takes
//! a minute.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, NaLimits, Options, Target, Transition,
    Uuid, Version,
};
use tempfile::TempDir;

const T0: i64 = 1_556_303_548_719;
const V2_0: Version = Version { major: 2, minor: 0 };

fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn hm(host: u32, side: u8) -> Uuid {
    let mut bytes = [0x31; 16];
    bytes[0] = side;
    bytes[12..].copy_from_slice(&host.to_be_bytes());
    Uuid(bytes)
}

fn vm(i: u32) -> Uuid {
    let mut bytes = [0x5a; 16];
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(bytes)
}

/// One database of one backend: where it is, and how to set it back between runs.
struct Place {
    target: Target,
    /// The SQLite file's directory (kept until the end).
    _dir: Option<TempDir>,
    /// PostgreSQL: the database's URL, for a raw client.
    url: Option<String>,
}

impl Place {
    fn sqlite() -> Place {
        let dir = tempfile::tempdir_in(PathBuf::from(env!("CARGO_TARGET_TMPDIR"))).expect("dir");
        Place {
            target: Target::Sqlite(dir.path().join("hsdb.sqlite")),
            _dir: Some(dir),
            url: None,
        }
    }

    fn postgres(hint: &str) -> Option<Place> {
        let server = match pglab::server() {
            Ok(server) => server,
            Err(missing) => {
                eprintln!("SKIPPED the PostgreSQL cases of {hint}: {missing}");
                return None;
            }
        };
        let url = server.fresh_database(hint);
        Some(Place {
            target: Target::parse(&url).expect("pglab URL"),
            _dir: None,
            url: Some(url),
        })
    }

    fn connect(&self) -> Hsdb {
        Hsdb::connect(&self.target, &Options::default()).expect("connect")
    }

    /// Every (VM, monitor) row back to DETECTED, in one statement (not timed).
    fn reset(&self) {
        self.run("UPDATE vm_hm SET hb_missed_ms = NULL, last_state = 'DETECTED'");
    }

    /// Run `sql` on a connection of its own (not timed).
    fn run(&self, sql: &str) {
        match &self.url {
            Some(url) => {
                pglab::client(url).batch_execute(sql).expect("reset");
            }
            None => {
                let path = self.target.sqlite_path().expect("sqlite");
                rusqlite::Connection::open(path)
                    .and_then(|c| c.execute_batch(sql))
                    .expect("reset");
            }
        }
    }
}

/// Both backends, PostgreSQL when there is one.
fn places(hint: &str) -> Vec<(&'static str, Place)> {
    let mut out = vec![("sqlite", Place::sqlite())];
    if let Some(pg) = Place::postgres(hint) {
        out.push(("postgres", pg));
    }
    out
}

fn host(h: u32) -> HostRecord {
    HostRecord {
        id: HostId(i64::from(h)),
        name: format!("host-{h}"),
        machine_type: "8408".to_string(),
        model: "E8E".to_string(),
        serial: format!("21242{h}W"),
        cpu_milli: 48_000,
        memory_mb: 1 << 20,
        host_group: "hg1".to_string(),
    }
}

fn register(db: &mut Hsdb, h: u32, side: u8) {
    db.register_hm(&HmRecord {
        uuid: hm(h, side),
        host: HostId(i64::from(h)),
        mac: MacAddr([
            0x6a,
            0x6a,
            0x08,
            side,
            0,
            u8::try_from(h).expect("few hosts"),
        ]),
        incarnation: HelloId {
            secs: 1_556_303_548,
            nanos: 719_328_000,
            suffix: 38,
        },
        version: V2_0,
        at: T0,
    })
    .expect("register");
}

fn discovered(i: u32, h: u32, side: u8) -> Transition {
    let b = i.to_be_bytes();
    Transition::Discovered {
        vm: vm(i),
        hm: hm(h, side),
        mac: MacAddr([0x6a, side, b[0], b[1], b[2], b[3]]),
        ostype: "linux".to_string(),
        ver_lower: V2_0,
        ver_upper: V2_0,
        at: T0,
    }
}

/// `hosts` hosts with `sides` monitors each, `per_host` VMs on each discovered through
/// every monitor of its host and acknowledged: a group at rest.
fn group(place: &Place, hosts: u32, sides: u8, vms: u32) -> Hsdb {
    let mut db = place.connect();
    for h in 0..hosts {
        db.upsert_host(&host(h)).expect("host");
        for side in 0..sides {
            register(&mut db, h, side);
        }
    }
    for chunk in (0..vms).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<Transition> = chunk
            .iter()
            .flat_map(|&i| (0..sides).map(move |side| discovered(i, i % hosts, side)))
            .collect();
        db.apply(&batch).expect("discover");
    }
    let limits = NaLimits {
        max_items: 10_000,
        ..NaLimits::default()
    };
    let mut tag = 1;
    loop {
        let rows = db.needs_attention(T0, limits, tag).expect("NA");
        db.acknowledge(tag).expect("ack");
        tag += 1;
        if !rows.more {
            break;
        }
    }
    db
}

fn bench_missing(c: &mut Criterion) {
    let n: u32 = if measuring() { 10_000 } else { 1_000 };
    let mut g = c.benchmark_group("missing_one_monitor");
    g.sample_size(10);
    for (name, place) in places("bench_missing_one") {
        let mut db = group(&place, 1, 1, n);
        let batch: Vec<Transition> = (0..n)
            .map(|i| Transition::Missing {
                vm: vm(i),
                hm: hm(0, 0),
                at: T0 + 19_000,
            })
            .collect();
        // Whether the case ran (a filter on the command line may skip it).
        let mut ran = false;
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            ran = true;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    place.reset();
                    let started = Instant::now();
                    let applied = db.apply(black_box(&batch)).expect("apply");
                    total += started.elapsed();
                    assert_eq!(applied.missing, batch.len());
                    assert_eq!(applied.missing_ignored, 0);
                }
                total
            });
        });
        if ran {
            assert_eq!(
                db.vm_hm_counts(&hm(0, 0)).expect("counts").missing,
                u64::from(n)
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("discovered_one_monitor");
    g.sample_size(10);
    for (name, place) in places("bench_discovered_one") {
        let mut db = group(&place, 1, 1, 0);
        let batch: Vec<Transition> = (0..n).map(|i| discovered(i, 0, 0)).collect();
        let mut ran = false;
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            ran = true;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // The VMs are new to the store at every run.
                    place.run("DELETE FROM pending; DELETE FROM vm_hm; DELETE FROM vm");
                    let started = Instant::now();
                    let applied = db.apply(black_box(&batch)).expect("apply");
                    total += started.elapsed();
                    assert_eq!(
                        (applied.discovered, applied.vms_created),
                        (batch.len(), batch.len())
                    );
                    assert_eq!(applied.pending_added, batch.len());
                }
                total
            });
        });
        if ran {
            assert_eq!(
                db.vm_hm_counts(&hm(0, 0)).expect("counts").detected,
                u64::from(n)
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("missing_six_monitors");
    g.sample_size(10);
    for (name, place) in places("bench_missing_six") {
        // Six hosts with one monitor each, n VMs per host.
        drop(group(&place, 6, 1, 6 * n));
        let writers: Vec<Hsdb> = (0..6).map(|_| place.connect()).collect();
        let mut writers: Vec<Option<Hsdb>> = writers.into_iter().map(Some).collect();
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    place.reset();
                    let start = Arc::new(Barrier::new(7));
                    let handles: Vec<_> = (0..6u32)
                        .map(|h| {
                            let mut db = writers[h as usize].take().expect("writer");
                            let start = Arc::clone(&start);
                            let batch: Vec<Transition> = (0..6 * n)
                                .filter(|i| i % 6 == h)
                                .map(|i| Transition::Missing {
                                    vm: vm(i),
                                    hm: hm(h, 0),
                                    at: T0 + 19_000,
                                })
                                .collect();
                            std::thread::spawn(move || {
                                start.wait();
                                let applied = db.apply(&batch).expect("apply");
                                assert_eq!(applied.missing - applied.missing_ignored, batch.len());
                                (db, Instant::now())
                            })
                        })
                        .collect();
                    start.wait();
                    let started = Instant::now();
                    let mut last = started;
                    for (h, handle) in handles.into_iter().enumerate() {
                        let (db, done) = handle.join().expect("writer");
                        last = last.max(done);
                        writers[h] = Some(db);
                    }
                    total += last - started;
                }
                total
            });
        });
    }
    g.finish();
}

fn bench_reads(c: &mut Criterion) {
    let sizes: &[u32] = if measuring() {
        &[10_000, 100_000]
    } else {
        &[1_000]
    };
    let now = T0 + 61_000;
    let mut groups = Vec::new();
    for &n in sizes {
        for (name, place) in places(&format!("bench_reads_{n}")) {
            let mut db = group(&place, 10, 2, n);
            let rows = db.needs_attention(now, NaLimits::default(), 0).expect("NA");
            assert!(rows.vms.is_empty() && rows.tag.is_none(), "at rest");
            assert_eq!(rows.vm_hosts.len(), 10);
            groups.push((name, n, place, db));
        }
    }
    let mut qq = c.benchmark_group("quick_query");
    for (name, n, _, db) in &groups {
        qq.bench_with_input(BenchmarkId::new(*name, n), n, |b, _| {
            b.iter(|| db.quick_query(black_box(now)).expect("qq"));
        });
    }
    qq.finish();
    let mut na = c.benchmark_group("needs_attention");
    for (name, n, _, db) in &mut groups {
        let mut tag = 0;
        na.bench_with_input(BenchmarkId::new(*name, *n), n, |b, _| {
            b.iter(|| {
                tag += 1;
                db.needs_attention(black_box(now), NaLimits::default(), tag)
                    .expect("NA")
            });
        });
    }
    na.finish();
}

criterion_group!(benches, bench_missing, bench_reads);
criterion_main!(benches);
