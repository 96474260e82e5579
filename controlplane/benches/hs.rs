//! What the Failure Detection Engine pays for one QuickQuery and one NeedsAttention, end to
//! end: the store's read (NeedsAttention: its write transaction), the reply model and its
//! XML, on an HSDB file in WAL mode that the monitors are writing.
//!
//! The group is the seed's largest (12 hosts of 2 monitors, seed 004 L13954-13955) and
//! healthy: every VM discovered by both monitors of its host, every item acknowledged,
//! monitors heard a second ago. A writer thread on its own connection stands for the
//! monitors: every second it writes the 24 monitors' heartbeats (`synchronous=FULL`, as
//! `hmd` does), so reads meet a live WAL and NeedsAttention's write transaction can meet
//! the writer's lock.
//!
//! Cases, for n = 1,000 / 10,000 / 100,000 VMs:
//! - `qq/<n>`: `hs::quick_query` + `xml::write_quick_query`;
//! - `qq_store/<n>`: `Hsdb::quick_query` alone — the baseline of the same run;
//! - `na/<n>`: `hs::needs_attention` (reads and tags in one write transaction) +
//!   `xml::write_needs_attention`;
//! - `na_store/<n>`: `Hsdb::needs_attention` alone — the baseline.
//!
//! The dashboard on the same HSDB (`dash` group, n = 1,000 / 10,000; 10 samples each):
//! - `dash_snapshot/<n>`: `dash::views::snapshot`, what `hactl run` computes once a second
//!   while any dashboard page is open (one for all of them, shared by the streams);
//! - `dash_overview/<n>`: `GET /` rendered by `dash::views::page`;
//! - `dash_vms/<n>`: `GET /vms`.
//!
//! Compared with `qq/<n>` of the same run (the engine's read each scan).
//!
//! Run: `cargo bench -p controlplane --bench hs`. As a test (`cargo test --benches`, each
//! case once) only n = 1,000 is set up: building 100,000 VMs takes seconds in a debug
//! build.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use controlplane::cli::config::Config;
use controlplane::dash::{self, Ctx, Method, Request, Role, User};
use controlplane::hs::{self, NaConfig, SequenceTags, TagSource};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, NaLimits, Options, Synchronous,
    Transition, Uuid, Version,
};
use tempfile::TempDir;

const T0: i64 = 1_548_296_666_000;
const HOSTS: u32 = 12;
const V2_0: Version = Version { major: 2, minor: 0 };

fn monitor(host: u32, side: u32) -> Uuid {
    let mut bytes = [0x31; 16];
    bytes[8..12].copy_from_slice(&host.to_be_bytes());
    bytes[12..].copy_from_slice(&side.to_be_bytes());
    Uuid(bytes)
}

fn vm(i: u32) -> Uuid {
    let mut bytes = [0x5a; 16];
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(bytes)
}

fn options(synchronous: Synchronous) -> Options {
    Options {
        synchronous,
        ..Options::default()
    }
}

/// The monitors' heartbeats, all at `at`.
fn heartbeats(at: i64) -> Vec<Transition> {
    (0..HOSTS)
        .flat_map(|h| {
            (0..2).map(move |s| Transition::HmHeartbeat {
                hm: monitor(h, s),
                at,
            })
        })
        .collect()
}

/// A healthy group of `n` VMs on a fresh file; the time at which it is healthy.
fn setup(n: u32) -> (TempDir, PathBuf, i64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let path = dir.path().join("hsdb.sqlite");
    let mut db = Hsdb::open(&path, &options(Synchronous::Normal)).expect("open");
    for h in 0..HOSTS {
        db.upsert_host(&HostRecord {
            id: HostId(i64::from(h) + 1),
            name: format!("host-{h}"),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("21{h:05}W"),
            cpu_milli: 48_000,
            memory_mb: 1 << 20,
            host_group: "hg".into(),
        })
        .expect("host");
        for side in 0..2 {
            db.register_hm(&HmRecord {
                uuid: monitor(h, side),
                host: HostId(i64::from(h) + 1),
                mac: MacAddr([0x6a, 0x6a, 0, u8::try_from(h).unwrap_or(0), 0, 0]),
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
    // Each VM discovered by both monitors of its host, in batches as hmd writes them.
    let all: Vec<Transition> = (0..n)
        .flat_map(|i| {
            let h = i % HOSTS;
            let b = i.to_be_bytes();
            (0..2u8).map(move |side| Transition::Discovered {
                vm: vm(i),
                hm: monitor(h, u32::from(side)),
                mac: MacAddr([0x6a, side, b[0], b[1], b[2], b[3]]),
                ostype: "linux".into(),
                ver_lower: V2_0,
                ver_upper: V2_0,
                at: T0 + 1_000,
            })
        })
        .collect();
    for batch in all.chunks(20_000) {
        db.apply(batch).expect("discover");
    }
    // Every discovery reported and acknowledged.
    let now = T0 + 60_000;
    db.apply(&heartbeats(now)).expect("heartbeats");
    let limits = NaLimits {
        max_items: 100_000,
        hm_silent_after_ms: 75_000,
    };
    let mut tags = SequenceTags::new(1);
    loop {
        let tag = tags.next_tag();
        let rows = db.needs_attention(now, limits, tag).expect("settle");
        match rows.tag {
            Some(t) => {
                db.acknowledge(t).expect("ack");
            }
            None => break,
        }
    }
    (dir, path, now)
}

/// The monitors: a connection writing every monitor's heartbeat each second.
struct Monitors {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitors {
    fn start(path: PathBuf, now: i64) -> Monitors {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut db = Hsdb::open(&path, &options(Synchronous::Full)).expect("writer");
            let batch = heartbeats(now);
            while !flag.load(Ordering::Relaxed) {
                db.apply(&batch).expect("heartbeats");
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Monitors {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sizes() -> &'static [u32] {
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion's test
    // mode, each case run once).
    if std::env::args().any(|a| a == "--bench") {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000]
    }
}

fn bench(c: &mut Criterion) {
    for &n in sizes() {
        let (_dir, path, now) = setup(n);
        let _monitors = Monitors::start(path.clone(), now);
        let mut db = Hsdb::open(&path, &options(Synchronous::Normal)).expect("open");
        let config = NaConfig::default();
        let mut tags = SequenceTags::new(u64::from(n));

        // The group is healthy: NeedsAttention tags nothing and lists 12 empty vmLists.
        let check = hs::needs_attention(&mut db, now, &config, tags.next_tag()).expect("na");
        assert_eq!(check.reply.tag, None, "group not healthy");
        assert_eq!(check.reply.entries.len(), HOSTS as usize);

        let mut group = c.benchmark_group("hs");
        group.bench_with_input(BenchmarkId::new("qq", n), &n, |b, _| {
            b.iter(|| {
                let qq = hs::quick_query(&db, now, &config).expect("qq");
                black_box(hs::xml::write_quick_query(&qq))
            });
        });
        group.bench_with_input(BenchmarkId::new("qq_store", n), &n, |b, _| {
            b.iter(|| black_box(db.quick_query(now).expect("qq")));
        });
        group.bench_with_input(BenchmarkId::new("na", n), &n, |b, _| {
            b.iter(|| {
                let na = hs::needs_attention(&mut db, now, &config, tags.next_tag()).expect("na");
                black_box(hs::xml::write_needs_attention(&na.reply))
            });
        });
        let limits = config.limits();
        group.bench_with_input(BenchmarkId::new("na_store", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    db.needs_attention(now, limits, tags.next_tag())
                        .expect("na"),
                )
            });
        });
        group.finish();

        if n > 10_000 {
            continue;
        }
        let config = Config::parse(
            &format!("hsdb = \"{}\"\n", path.display()),
            &path.with_file_name("hactl.toml"),
        )
        .expect("config");
        let user = User {
            name: "bench".into(),
            role: Role::Operator,
        };
        let get = |path: &str| Request {
            method: Method::Get,
            path: path.into(),
            query: Vec::new(),
            form: Vec::new(),
            headers: Vec::new(),
            peer: "127.0.0.1:1".into(),
        };
        let (overview, vms) = (get("/"), get("/vms"));
        let mut group = c.benchmark_group("dash");
        group.sample_size(10);
        group.bench_with_input(BenchmarkId::new("dash_snapshot", n), &n, |b, _| {
            b.iter(|| black_box(dash::views::snapshot(&mut db, now).expect("snapshot")));
        });
        for (name, req) in [("dash_overview", &overview), ("dash_vms", &vms)] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let mut ctx = Ctx {
                        user: &user,
                        csrf: "t",
                        now_ms: now,
                        db: &mut db,
                        config: &config,
                    };
                    let page = dash::views::page(&mut ctx, req);
                    assert_eq!(page.status, 200, "{name}");
                    black_box(page)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
