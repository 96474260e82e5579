//! From a host failure decision to the last of its VMs started elsewhere: 1,000 VMs on the
//! `sim` platform, the real engine, its planner and executor with the per-target
//! concurrency cap, a real HSDB file and simulated monitors that carry out the engine's
//! commands (docs/perf.md, "Relocating a host's VMs").
//!
//! The group: 11 hosts (`setup::standard`, the seed's timing); host 0 runs 1,000 managed
//! VMs (1 CPU, 2 GiB each), the 10 others are empty with room for 110 VMs each. Host 0 is
//! lost 2 virtual minutes in; the run goes on until the engine decides the host failure
//! (untimed), then until every one of the 1,000 VMs runs on another host (timed). Cases
//! (`relocation/<case>/1000`; 100 VMs as a test):
//! - `platform_starts_only`: the baseline — the same number of `start` calls on the sim
//!   platform alone, no engine, no HSDB, no monitors;
//! - `host_failure_to_last_start`: the engine's part, wall time.
//!
//! Each run also prints the *virtual* time from the decision to the last start (what an
//! operator would wait on a platform with the sim driver's latencies: 5 s per start,
//! 2 s per stop) and the restarts' spread over the target hosts.
//! Run: `cargo bench -p controlplane --bench relocation`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use controlplane::clock::ManualClock;
use controlplane::fde::Verdict;
use controlplane::platform::sim::{Call, SimPlatform, SimWorld};
use controlplane::platform::{Platform, VmSpec};
use controlplane::simulation::engine::FdeEngine;
use controlplane::simulation::faults::{FaultKind, ScheduledFault};
use controlplane::simulation::run::{Simulation, host_name};
use controlplane::simulation::setup;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hsdb::Uuid;
use tempfile::TempDir;

const HOSTS: usize = 11;
const VM_CPU: u32 = 1_000;
const VM_MEM: u32 = 2_048;

/// 1,000 VMs under `cargo bench`; 100 as a test (`cargo test --benches` passes no
/// `--bench`), so the run-once test mode stays fast.
fn vms() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1_000
    } else {
        100
    }
}

/// The group, run up to the engine's host failure decision. Returns the virtual time of
/// the decision.
fn to_decision(vms: usize, seed: u64) -> (TempDir, Simulation<FdeEngine>, i64) {
    let (mut cfg, params) = setup::standard(seed, HOSTS, 0);
    cfg.host_vms = vec![vms];
    // Room for 11 % of the failed host's VMs on each of the 10 others.
    let room = u32::try_from(vms.div_ceil(HOSTS - 1) * 11 / 10).unwrap_or(u32::MAX);
    cfg.host_cpu_milli = VM_CPU * room.max(1);
    cfg.host_memory_mb = VM_MEM * room.max(1);
    cfg.vm_cpu_milli = VM_CPU;
    cfg.vm_memory_mb = VM_MEM;
    let start = cfg.start_ms;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = setup::with_fde(cfg, params, dir.path()).expect("simulation");
    sim.schedule([ScheduledFault {
        at: start + 120_000,
        kind: FaultKind::HostLoss {
            host: 0,
            repaired_after: 24 * 3_600_000,
        },
    }]);
    let deadline = start + 3_600_000;
    loop {
        sim.run_for(1_000).expect("no invariant broken");
        let decided = sim
            .engine
            .fde
            .decisions()
            .iter()
            .find(|d| d.verdict == Verdict::HostFailure)
            .map(|d| d.at_ms);
        if let Some(at) = decided {
            return (dir, sim, at);
        }
        assert!(
            sim.now_ms() < deadline,
            "no host failure decided within an hour"
        );
    }
}

/// VMs of the failed host running elsewhere now.
fn moved(sim: &Simulation<FdeEngine>) -> usize {
    let world = sim.platform().world();
    (1..HOSTS)
        .map(|h| world.vms_on_host(&host_name(h)).len())
        .sum()
}

/// Run from the decision until every VM runs elsewhere; the virtual time it took.
fn to_last_start(sim: &mut Simulation<FdeEngine>, vms: usize, decided_ms: i64) -> i64 {
    let deadline = decided_ms + 24 * 3_600_000;
    while moved(sim) < vms {
        sim.run_for(1_000).expect("no invariant broken");
        assert!(sim.now_ms() < deadline, "not every VM restarted in a day");
    }
    sim.now_ms() - decided_ms
}

fn spread(sim: &Simulation<FdeEngine>) -> Vec<usize> {
    let world = sim.platform().world();
    (1..HOSTS)
        .map(|h| world.vms_on_host(&host_name(h)).len())
        .collect()
}

/// The baseline: `vms` starts on an idle sim platform, spread over 10 hosts.
fn platform_only(vms: usize) -> Duration {
    let clock = ManualClock::new(setup::EPOCH_MS);
    let mut world = SimWorld::new(clock, 1);
    world.set_latency(Call::Start, 0);
    for h in 1..HOSTS {
        world
            .add_host(&host_name(h), u32::MAX, u32::MAX)
            .expect("host");
    }
    let mut platform = SimPlatform::new(world);
    let specs: Vec<VmSpec> = (0..vms)
        .map(|i| {
            let mut b = [0x42; 16];
            b[8..].copy_from_slice(&(i as u64).to_be_bytes());
            VmSpec {
                uuid: Uuid(b),
                name: format!("vm-{i}"),
                cpu_milli: VM_CPU,
                memory_mb: VM_MEM,
            }
        })
        .collect();
    let t = Instant::now();
    for (i, spec) in specs.iter().enumerate() {
        platform
            .start(&host_name(1 + i % (HOSTS - 1)), spec)
            .expect("start");
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let vms = vms();
    let mut g = c.benchmark_group("relocation");
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("platform_starts_only", vms), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| platform_only(black_box(vms))).sum());
    });
    let mut seed = 0;
    let mut virtual_ms = Vec::new();
    g.bench_function(BenchmarkId::new("host_failure_to_last_start", vms), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seed += 1;
                let (_dir, mut sim, decided) = to_decision(vms, seed);
                let t = Instant::now();
                let took = to_last_start(&mut sim, vms, decided);
                total += t.elapsed();
                virtual_ms.push(took);
                if virtual_ms.len() == 1 {
                    println!(
                        "relocation: {vms} VMs, decision to last start {} virtual s; per target host {:?}",
                        took / 1_000,
                        spread(&sim)
                    );
                }
            }
            total
        });
    });
    g.finish();
    virtual_ms.sort_unstable();
    if let Some(m) = virtual_ms.get(virtual_ms.len() / 2) {
        println!(
            "relocation: median virtual time from the host failure decision to the last of {vms} starts: {} s ({} runs)",
            m / 1_000,
            virtual_ms.len()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
