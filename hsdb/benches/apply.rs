//! What the monitor's writer thread pays to land a batch of transitions in the HSDB.
//!
//! Each iteration applies one batch of `Missing` transitions (the mass-failure case: a
//! host loses its HA network and every VM goes MISSING at once) to a fresh database file
//! whose VMs were discovered beforehand, so every transition updates an existing
//! `vm_hm` row. Fresh files per iteration (`iter_batched`): no case benefits from another
//! one's pages in the cache or from a checkpointed WAL.
//!
//! Cases (`missing/<synchronous>/<batch size>`):
//! - `missing/full/1`, `missing/full/100`, `missing/full/1000`, `missing/full/10000`:
//!   the default durability, one fsync of the WAL per commit;
//! - `missing/normal/1`, `missing/normal/10000`: `synchronous=NORMAL`, no fsync at
//!   commit: the difference from `full` at the same size is the price of durability.
//!
//! Files live under Cargo's target tmp dir (a real disk, not tmpfs, so fsync is real).
//! Run: `cargo bench -p hsdb --bench apply`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, Synchronous, Transition, Uuid,
    Version,
};
use tempfile::TempDir;

const T0: i64 = 1_556_303_548_719;
const HOST: HostId = HostId(1);
const V2_0: Version = Version { major: 2, minor: 0 };

fn hm() -> Uuid {
    Uuid([0x31; 16])
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

/// A fresh database with one host, one monitor and `n` discovered VMs; plus the batch of
/// `n` Missing transitions to apply to it.
fn setup(synchronous: Synchronous, n: u32) -> (TempDir, Hsdb, Vec<Transition>) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let options = Options {
        synchronous,
        ..Options::default()
    };
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).expect("open");
    db.upsert_host(&HostRecord {
        id: HOST,
        name: "host".to_string(),
        machine_type: "8408".to_string(),
        model: "E8E".to_string(),
        serial: "212424W".to_string(),
        cpu_milli: 48_000,
        memory_mb: 1 << 20,
        host_group: "hg".to_string(),
    })
    .expect("host");
    db.register_hm(&HmRecord {
        uuid: hm(),
        host: HOST,
        mac: MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]),
        incarnation: HelloId {
            secs: 1_556_303_548,
            nanos: 719_328_000,
            suffix: 38,
        },
        version: V2_0,
        at: T0,
    })
    .expect("register");
    let discovered: Vec<Transition> = (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            Transition::Discovered {
                vm: vm(i),
                hm: hm(),
                mac: MacAddr([0x6a, 0, b[0], b[1], b[2], b[3]]),
                ostype: "linux".to_string(),
                ver_lower: V2_0,
                ver_upper: V2_0,
                at: T0,
            }
        })
        .collect();
    db.apply(&discovered).expect("discover");
    let batch = (0..n)
        .map(|i| Transition::Missing {
            vm: vm(i),
            hm: hm(),
            at: T0 + 19_000,
        })
        .collect();
    (dir, db, batch)
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("missing");
    let cases = [
        (Synchronous::Full, "full", 1),
        (Synchronous::Full, "full", 100),
        (Synchronous::Full, "full", 1_000),
        (Synchronous::Full, "full", 10_000),
        (Synchronous::Normal, "normal", 1),
        (Synchronous::Normal, "normal", 10_000),
    ];
    for (synchronous, name, n) in cases {
        group.throughput(Throughput::Elements(u64::from(n)));
        if n >= 1_000 {
            group.sample_size(20);
        } else {
            group.sample_size(50);
        }
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            b.iter_batched(
                || setup(synchronous, n),
                |(dir, mut db, batch)| {
                    let applied = db.apply(black_box(&batch)).expect("apply");
                    (dir, db, applied)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
