//! What one Failure Detection Engine scan of a 10,000-VM host group costs, on a real HSDB
//! file and the `sim` platform.
//!
//! The group: 10 hosts with two monitors each, 1,000 VMs per host, every VM discovered by
//! both monitors of its host, pending discoveries already acknowledged (the steady state).
//! Cases (`fde_scan/<case>/10000`; 1,000 VMs as a test):
//! - `store_na_healthy`: the baseline — the store's NeedsAttention for the group alone
//!   (`Hsdb::needs_attention_group`, the read-and-tag transaction), no engine;
//! - `na_healthy`: one engine scan that is a NeedsAttention (the third of a QQ, QQ, NA
//!   cycle; the two QuickQueries before it are not timed), every VM heart-beating;
//! - `store_na_1pct_missed`: the baseline of the next case, the store's NeedsAttention
//!   alone;
//! - `na_1pct_missed`: the same with 1 % of the VMs (100), managed, missed on both monitors 50 s ago, below
//!   their VMFDT (190 s): 100 "Missed HB count 50 … less than its VMFDT 190" decisions;
//! - `qq`: one engine scan that is a QuickQuery.
//!
//! The file lives under Cargo's target tmp dir with `synchronous=NORMAL` for the set-up;
//! the engine's writes (events, tags) are what the scan pays.
//! Run: `cargo bench -p controlplane --bench fde`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use controlplane::clock::ManualClock;
use controlplane::fde::{Fde, Request};
use controlplane::params::GroupParams;
use controlplane::platform::VmSpec;
use controlplane::platform::sim::SimPlatform;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, NaLimits, Options, Synchronous,
    Transition, Uuid, Version, VmSettings,
};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;
const HOSTS: u32 = 10;

/// 10,000 VMs under `cargo bench`; 1,000 as a test (`cargo test --benches` passes no
/// `--bench`), so the run-once test mode stays fast.
fn vms() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        1_000
    }
}
const V2_0: Version = Version { major: 2, minor: 0 };

fn vm(i: u32) -> Uuid {
    let mut b = [0x5a; 16];
    b[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(b)
}

fn hm(host: u32, n: u8) -> Uuid {
    let mut b = [0x31; 16];
    b[12..].copy_from_slice(&host.to_be_bytes());
    b[0] = n;
    Uuid(b)
}

fn mac(host: u32, n: u8, vm: u32) -> MacAddr {
    let v = vm.to_be_bytes();
    MacAddr([0x02, n, u8::try_from(host).unwrap_or(0), v[1], v[2], v[3]])
}

struct Group {
    _dir: TempDir,
    db: Hsdb,
    platform: SimPlatform,
}

/// The group's file, with `missed` VMs missed on both monitors at `T0 - 50 s`.
fn host_group(missed: u32) -> Group {
    let vms = vms();
    let dir = tempfile::Builder::new()
        .prefix("fde-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let options = Options {
        synchronous: Synchronous::Normal,
        ..Options::default()
    };
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).expect("open");
    let platform = SimPlatform::empty(ManualClock::new(T0), 1);
    let per_host = vms / HOSTS;
    for h in 0..HOSTS {
        let id = HostId(i64::from(h) + 1);
        let name = format!("host-{h}");
        db.upsert_host(&HostRecord {
            id,
            name: name.clone(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{h:05}"),
            cpu_milli: 1_000_000,
            memory_mb: 4_000_000,
            host_group: "hg".into(),
        })
        .expect("host");
        platform
            .world()
            .add_host(&name, 1_000_000, 4_000_000)
            .expect("sim host");
        for n in 1..=2 {
            db.register_hm(&HmRecord {
                uuid: hm(h, n),
                host: id,
                mac: MacAddr([0x6a, n, 0, 0, 0, u8::try_from(h).unwrap_or(0)]),
                incarnation: HelloId::parse(b"1556303548.719328000.38").expect("hello id"),
                version: V2_0,
                at: T0,
            })
            .expect("hm");
        }
        let mut batch = Vec::new();
        for i in h * per_host..(h + 1) * per_host {
            for n in 1..=2 {
                batch.push(Transition::Discovered {
                    vm: vm(i),
                    hm: hm(h, n),
                    mac: mac(h, n, i),
                    ostype: "linux".into(),
                    ver_lower: V2_0,
                    ver_upper: V2_0,
                    at: T0 - 600_000,
                });
            }
            platform
                .world()
                .add_vm(
                    &name,
                    VmSpec {
                        uuid: vm(i),
                        name: format!("vm{i}"),
                        cpu_milli: 100,
                        memory_mb: 256,
                    },
                )
                .expect("sim vm");
        }
        db.apply(&batch).expect("discover");
    }
    // Steady state: the discoveries were reported and acknowledged long ago.
    loop {
        let limits = NaLimits {
            max_items: 100_000,
            hm_silent_after_ms: 65_000,
        };
        let na = db
            .needs_attention_group("hg", T0, limits, 7)
            .expect("drain");
        db.acknowledge(7).expect("ack");
        if !na.more {
            break;
        }
    }
    let mut batch = Vec::new();
    for i in 0..missed {
        // Spread over the hosts: every 100th VM.
        let v = i * (vms / missed.max(1));
        let h = v / per_host;
        db.set_vm(
            &vm(v),
            &VmSettings {
                managed: Some(true),
                name: Some(format!("vm{v}")),
                ..VmSettings::default()
            },
            T0 - 60_000,
        )
        .expect("managed");
        for n in 1..=2 {
            batch.push(Transition::Missing {
                vm: vm(v),
                hm: hm(h, n),
                at: T0 - 50_000,
            });
        }
    }
    // Every monitor heart-beats now.
    for h in 0..HOSTS {
        for n in 1..=2 {
            batch.push(Transition::HmHeartbeat {
                hm: hm(h, n),
                at: T0,
            });
        }
    }
    db.apply(&batch).expect("missing");
    // Acknowledge the state changes set_vm may have left.
    let _ = db.needs_attention_group("hg", T0, NaLimits::default(), 8);
    db.acknowledge(8).expect("ack");
    Group {
        _dir: dir,
        db,
        platform,
    }
}

/// Time `iters` NeedsAttention scans; the two QuickQueries before each are not timed.
fn time_na(g: &mut Group, iters: u64, expect_decisions: u64) -> Duration {
    let mut fde = Fde::new(GroupParams::standard("hg"));
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        for _ in 0..2 {
            let r = fde.scan(T0, &mut g.db, &mut g.platform).expect("qq");
            assert_eq!(r.request, Request::QuickQuery);
        }
        let start = Instant::now();
        let r = fde.scan(T0, &mut g.db, &mut g.platform).expect("na");
        total += start.elapsed();
        assert_eq!(r.request, Request::NeedsAttention);
        assert_eq!(r.decisions, expect_decisions, "{r:?}");
        assert_eq!(r.restarts_submitted, 0);
        black_box(r);
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fde_scan");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));

    let vms = vms();
    let missed_vms = vms / 100;
    let mut healthy = host_group(0);
    group.bench_function(BenchmarkId::new("store_na_healthy", vms), |b| {
        let limits = NaLimits {
            max_items: 5_000,
            hm_silent_after_ms: 65_000,
        };
        b.iter(|| {
            let na = healthy
                .db
                .needs_attention_group("hg", T0, limits, 9)
                .expect("na");
            assert!(na.vms.is_empty());
            black_box(na)
        });
    });
    group.bench_function(BenchmarkId::new("na_healthy", vms), |b| {
        b.iter_custom(|iters| time_na(&mut healthy, iters, 0));
    });
    group.bench_function(BenchmarkId::new("qq", vms), |b| {
        let mut fde = Fde::new(GroupParams::standard("hg"));
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut timed = 0;
            while timed < iters {
                let start = Instant::now();
                let r = fde
                    .scan(T0, &mut healthy.db, &mut healthy.platform)
                    .expect("scan");
                let took = start.elapsed();
                // Every third scan is a NeedsAttention: not what this case measures.
                if r.request == Request::QuickQuery {
                    total += took;
                    timed += 1;
                }
                black_box(r);
            }
            total
        });
    });
    drop(healthy);

    let mut missed = host_group(missed_vms);
    group.bench_function(BenchmarkId::new("store_na_1pct_missed", vms), |b| {
        let limits = NaLimits {
            max_items: 5_000,
            hm_silent_after_ms: 65_000,
        };
        b.iter(|| {
            let na = missed
                .db
                .needs_attention_group("hg", T0, limits, 9)
                .expect("na");
            assert_eq!(na.vms.len(), usize::try_from(missed_vms).unwrap_or(0));
            black_box(na)
        });
    });
    group.bench_function(BenchmarkId::new("na_1pct_missed", vms), |b| {
        b.iter_custom(|iters| time_na(&mut missed, iters, u64::from(missed_vms)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
