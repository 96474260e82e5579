//! What the placement policies cost: the engine's reload of a group's policies at each
//! scan interval, and one checked change by `hactl` (the rules run inside the HSDB's write
//! transaction), on a real HSDB file.
//!
//! The group: 10 hosts, 10,000 VMs (1,000 as a test), 1,000 sets of 4 VMs each
//! (collocations, anticollocations and workgroups in turn, VMs disjoint), 1,000 VMs with
//! an exclusion (the host after their home), flexible capacity for Low VMs. Cases (`policy/<case>/10000`):
//! - `view`: the baseline — `Hsdb::policy_view`, the one read both cases make;
//! - `load_checked`: the engine's reload (`controlplane::policy::load_checked`);
//! - `add_checked`: `hactl add anticollocation` of two VMs, checked and committed, then
//!   deleted (not checked) to leave the store as it was.
//!
//! Run: `cargo bench -p controlplane --bench policy`.

use std::hint::black_box;

use controlplane::policy::{Subject, judge, load_checked};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::{
    HostId, HostRecord, Hsdb, Options, PolicyChange, PolicyKind, Priority, Synchronous, Uuid,
    VmSettings,
};
use tempfile::TempDir;

const HOSTS: i64 = 10;

/// 10,000 VMs under `cargo bench`; 1,000 as a test.
fn vms() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        1_000
    }
}

fn vm(i: u32) -> Uuid {
    let mut b = [0x5a; 16];
    b[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(b)
}

fn store() -> (TempDir, Hsdb) {
    let dir = tempfile::Builder::new()
        .prefix("policy-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let options = Options {
        synchronous: Synchronous::Normal,
        ..Options::default()
    };
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).expect("open");
    for h in 1..=HOSTS {
        db.upsert_host(&HostRecord {
            id: HostId(h),
            name: format!("host-{h}"),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{h}"),
            cpu_milli: 256_000,
            memory_mb: 4_194_304,
            host_group: "hg1".into(),
        })
        .expect("host");
    }
    let n = vms();
    for i in 0..n {
        db.set_vm(
            &vm(i),
            &VmSettings {
                managed: Some(true),
                name: Some(format!("vm{i}")),
                home_host: Some(HostId(i64::from(i) % HOSTS + 1)),
                cpu_milli: Some(1_000),
                memory_mb: Some(4_096),
                priority: Some(Priority::Medium),
                ..VmSettings::default()
            },
            1,
        )
        .expect("vm");
    }
    let kinds = [
        PolicyKind::Collocation,
        PolicyKind::Anticollocation,
        PolicyKind::Workgroup,
    ];
    for s in 0..n / 10 {
        db.policy_apply(
            &PolicyChange::AddSet {
                kind: kinds[usize::try_from(s).unwrap_or(0) % 3],
                name: format!("set{s}"),
                host_group: "hg1".into(),
                members: (0..4).map(|k| vm(s * 4 + k)).collect(),
            },
            1,
        )
        .expect("set");
    }
    for i in (0..n).step_by(10) {
        db.policy_apply(
            &PolicyChange::AddExclusions {
                vm: vm(i),
                hosts: vec![HostId((i64::from(i) + 1) % HOSTS + 1)],
            },
            1,
        )
        .expect("exclusion");
    }
    db.policy_apply(
        &PolicyChange::SetFlexible {
            host_group: "hg1".into(),
            priority: Priority::Low,
            cpu_pct: Some(50),
            memory_pct: Some(50),
        },
        1,
    )
    .expect("flex");
    (dir, db)
}

fn bench(c: &mut Criterion) {
    let n = vms();
    let (_dir, mut db) = store();
    let loaded = load_checked(&db, "hg1").expect("load");
    assert!(
        loaded.problems.is_empty(),
        "{} problems, the first: {:?}",
        loaded.problems.len(),
        loaded.problems.first()
    );
    assert_eq!(
        loaded.policies.collocations.len()
            + loaded.policies.anticollocations.len()
            + loaded.policies.workgroups.len(),
        usize::try_from(n / 10).unwrap_or(0)
    );
    let mut g = c.benchmark_group("policy");
    g.sample_size(20);
    g.bench_with_input(BenchmarkId::new("view", n), &n, |b, _| {
        b.iter(|| black_box(db.policy_view().expect("view")));
    });
    g.bench_with_input(BenchmarkId::new("load_checked", n), &n, |b, _| {
        b.iter(|| black_box(load_checked(&db, "hg1").expect("load")));
    });
    // Two VMs of no set yet (the last ones).
    let pair = vec![vm(n - 1), vm(n - 2)];
    g.bench_with_input(BenchmarkId::new("add_checked", n), &n, |b, _| {
        b.iter(|| {
            let subject = [Subject::Set(controlplane::policy::SetRef {
                kind: PolicyKind::Anticollocation,
                name: "bench".into(),
            })];
            let outcome = db
                .policy_change(
                    &PolicyChange::AddSet {
                        kind: PolicyKind::Anticollocation,
                        name: "bench".into(),
                        host_group: "hg1".into(),
                        members: pair.clone(),
                    },
                    2,
                    |view| {
                        let (refused, _) = judge(view, &subject, false);
                        if refused.is_empty() {
                            Ok(())
                        } else {
                            Err(refused)
                        }
                    },
                )
                .expect("store");
            assert!(outcome.is_ok(), "{outcome:?}");
            db.policy_apply(
                &PolicyChange::DeleteSet {
                    kind: PolicyKind::Anticollocation,
                    name: "bench".into(),
                },
                3,
            )
            .expect("delete");
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
