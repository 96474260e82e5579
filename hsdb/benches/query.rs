//! What the control plane pays to read the HSDB: one QuickQuery, one NeedsAttention.
//!
//! Each case builds one database file (WAL, `synchronous=FULL` as in production) with
//! 10 hosts of 2 monitors each and `n` VMs spread over them, every VM discovered
//! through both monitors of its host and its discovery acknowledged — a group at rest.
//!
//! Cases:
//! - `quick_query/<n>`: every host with its monitors (does not depend on `n`: the
//!   check that it stays so);
//! - `needs_attention/healthy/<n>`: nothing to report — the empty `vmList`s of the 10
//!   hosts; the acceptance asks ≤ 5 ms median at 10,000 VMs;
//! - `needs_attention/misses/<n>`: 1 % of the VMs missed on both monitors of their host
//!   (reported with `missedHb`) and another 1 % on one monitor only (not reported, TC-9).
//!
//! - `needs_attention/healthy_writer/<n>` (10,000 only, 1,000 in test mode): healthy, while
//!   a monitor writes into the same file as `hmd` does (one batch of heartbeats every
//!   10 ms, `synchronous=FULL`): NeedsAttention takes the write lock, so it waits for
//!   the writer's commit when they meet (timed one by one, 0.5 ms apart, so the loop
//!   does not starve the writer);
//! - `baseline/schema_version`: one trivial prepared read, the floor the others are
//!   quoted against (same run, same machine).
//!
//! Sizes 1,000, 10,000 and 100,000 VMs. Run: `cargo bench -p hsdb --bench query`.
//! Without `--bench` (`cargo test --benches`, clippy) only the 1,000-VM files are built,
//! so the run-once test mode stays fast.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, NaLimits, Options, Transition, Uuid,
    Version,
};
use tempfile::TempDir;

const T0: i64 = 1_556_303_548_719;
const HOSTS: u32 = 10;
const V2_0: Version = Version { major: 2, minor: 0 };

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

/// Where the bench files go: a real file system.
fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Whether criterion measures (`cargo bench`) or runs each case once as a test.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A group at rest with `n` VMs; with `misses`, 1 % of them missed on both monitors
/// and 1 % on one.
fn setup(n: u32, misses: bool) -> (TempDir, Hsdb) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).expect("open");
    for h in 0..HOSTS {
        db.upsert_host(&HostRecord {
            id: HostId(i64::from(h)),
            name: format!("host-{h}"),
            machine_type: "8408".to_string(),
            model: "E8E".to_string(),
            serial: format!("21242{h}W"),
            cpu_milli: 48_000,
            memory_mb: 1 << 20,
            host_group: "hg1".to_string(),
        })
        .expect("host");
        for side in 0..2 {
            db.register_hm(&HmRecord {
                uuid: hm(h, side),
                host: HostId(i64::from(h)),
                mac: MacAddr([
                    0x6a,
                    0x6a,
                    0x08,
                    side,
                    0,
                    u8::try_from(h).expect("10 hosts"),
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
    }
    let mut batch = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        let b = i.to_be_bytes();
        for side in 0..2 {
            batch.push(Transition::Discovered {
                vm: vm(i),
                hm: hm(i % HOSTS, side),
                mac: MacAddr([0x6a, side, b[0], b[1], b[2], b[3]]),
                ostype: "linux".to_string(),
                ver_lower: V2_0,
                ver_upper: V2_0,
                at: T0,
            });
        }
    }
    db.apply(&batch).expect("discover");
    // The controller consumed the discoveries.
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
    if misses {
        let mut batch = Vec::new();
        for i in (0..n).step_by(50) {
            // Even multiples of 50: missed on both monitors; odd: on one.
            batch.push(Transition::Missing {
                vm: vm(i),
                hm: hm(i % HOSTS, 0),
                at: T0 + 19_000,
            });
            if (i / 50) % 2 == 0 {
                batch.push(Transition::Missing {
                    vm: vm(i),
                    hm: hm(i % HOSTS, 1),
                    at: T0 + 20_000,
                });
            }
        }
        db.apply(&batch).expect("misses");
    }
    let beats: Vec<Transition> = (0..HOSTS)
        .flat_map(|h| (0..2).map(move |side| (h, side)))
        .map(|(h, side)| Transition::HmHeartbeat {
            hm: hm(h, side),
            at: T0 + 60_000,
        })
        .collect();
    db.apply(&beats).expect("heartbeats");
    (dir, db)
}

fn bench_query(c: &mut Criterion) {
    let sizes: &[u32] = if measuring() {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000]
    };
    let now = T0 + 61_000;
    // The floor: one trivial prepared read on the same kind of file, to quote the
    // others as ratios measured in the same run.
    {
        let (_dir, db) = setup(sizes[0], false);
        c.bench_function("baseline/schema_version", |b| {
            b.iter(|| db.schema_version().expect("version"));
        });
    }
    let mut qq = c.benchmark_group("quick_query");
    for &n in sizes {
        let (_dir, db) = setup(n, false);
        qq.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| db.quick_query(black_box(now)).expect("qq"));
        });
    }
    qq.finish();

    let mut na = c.benchmark_group("needs_attention");
    for &n in sizes {
        for (name, misses) in [("healthy", false), ("misses", true)] {
            let (_dir, mut db) = setup(n, misses);
            // Check the case is what it claims before timing it.
            let rows = db.needs_attention(now, NaLimits::default(), 0).expect("NA");
            let expected = if misses { n.div_ceil(100) } else { 0 };
            assert_eq!(rows.vms.len(), expected as usize, "{name}/{n}");
            assert_eq!(rows.vm_hosts.len(), HOSTS as usize);
            assert!(rows.tag.is_none() && rows.hms.is_empty());
            let mut tag = 0;
            na.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    tag += 1;
                    db.needs_attention(black_box(now), NaLimits::default(), tag)
                        .expect("NA")
                });
            });
        }
    }
    // A monitor writing into the same file meanwhile.
    let n = if measuring() { 10_000 } else { 1_000 };
    let (dir, mut db) = setup(n, false);
    na.sample_size(20);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = Arc::clone(&stop);
        let written = Arc::clone(&written);
        let path = dir.path().join("hsdb.sqlite");
        std::thread::spawn(move || {
            let mut monitor = Hsdb::open(path, &Options::default()).expect("writer");
            let mut at = T0 + 60_000;
            let mut batches = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                at += 10;
                let beats = [
                    Transition::HmHeartbeat { hm: hm(0, 0), at },
                    Transition::HmHeartbeat { hm: hm(0, 1), at },
                ];
                monitor.apply(&beats).expect("heartbeats");
                batches += 1;
                written.store(batches, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            batches
        })
    };
    // Timed one by one with a pause between them (not timed): back to back, the loop
    // would hold the write lock nearly all the time and starve the writer, which the
    // control plane (one NeedsAttention a minute) never does.
    let mut tag = 0;
    na.bench_with_input(BenchmarkId::new("healthy_writer", n), &n, |b, _| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(Duration::from_micros(500));
                tag += 1;
                let started = Instant::now();
                black_box(
                    db.needs_attention(black_box(now), NaLimits::default(), tag)
                        .expect("NA"),
                );
                total += started.elapsed();
            }
            total
        });
    });
    // Run once as a test, the case can be over before the writer's first commit (its
    // thread starts and opens the file meanwhile): let it write at least once, so the
    // check below is about the writer working, not about who was faster.
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let batches = writer.join().expect("writer thread");
    assert!(batches > 0, "the writer wrote");
    na.finish();
}

criterion_group!(benches, bench_query);
criterion_main!(benches);
