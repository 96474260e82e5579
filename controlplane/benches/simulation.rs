//! How fast the whole-loop simulation runs: simulated VM-hours per second of wall time
//! (docs/controlplane.md, "Simulation").
//!
//! The group: 10 hosts × 50 VMs on the seed's timing (`setup::standard`: 10 s heartbeats,
//! 20 s miss, 20 s scans, VMFDT 190 s), the real engine, a real HSDB file with
//! `synchronous=NORMAL`. One iteration simulates 2 hours of the group, 1,000 VM-hours
//! (criterion's `elem/s` is VM-hours per second). Cases (`simulation/<case>`):
//! - `quiet`: the baseline — no fault: monitors heartbeat, the engine scans, nothing fails;
//! - `faults`: the campaign's fault mix (`setup::fault_rates`), invariants checked at every
//!   step as in CI.
//!
//! Building the group (HSDB file, 500 VMs, 20 monitors) is outside the timed part.
//! Run: `cargo bench -p controlplane --bench simulation`.

use std::hint::black_box;

use controlplane::simulation::engine::FdeEngine;
use controlplane::simulation::rng::SimRng;
use controlplane::simulation::run::Simulation;
use controlplane::simulation::setup;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

const HOSTS: usize = 10;
const VMS_PER_HOST: usize = 50;

/// Simulated hours per iteration: 2 under `cargo bench`, a tenth of an hour as a test
/// (`cargo test --benches` passes no `--bench`), so the run-once test mode stays fast.
fn hours() -> i64 {
    if std::env::args().any(|a| a == "--bench") {
        2
    } else {
        0
    }
}

fn length_ms() -> i64 {
    match hours() {
        0 => 360_000,
        h => h * 3_600_000,
    }
}

/// A group ready to run, with faults for the run's length when `faults`.
fn group(seed: u64, faults: bool) -> (TempDir, Simulation<FdeEngine>) {
    let (cfg, params) = setup::standard(seed, HOSTS, VMS_PER_HOST);
    let rates = setup::fault_rates(&cfg);
    let start = cfg.start_ms;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = setup::with_fde(cfg, params, dir.path()).expect("simulation");
    if faults {
        let vms = sim.vms().to_vec();
        let mut rng = SimRng::new(seed);
        sim.schedule(rates.schedule(&mut rng, &vms, HOSTS, start + 120_000, start + length_ms()));
    }
    (dir, sim)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulation");
    g.sample_size(10);
    let vm_hours = u64::try_from(HOSTS * VMS_PER_HOST).unwrap_or(0)
        * u64::try_from(hours().max(1)).unwrap_or(1);
    g.throughput(Throughput::Elements(vm_hours));
    for (case, faults) in [("quiet", false), ("faults", true)] {
        let mut seed = 1;
        g.bench_function(case, |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    group(seed, faults)
                },
                |(dir, mut sim)| {
                    if let Err(v) = sim.run_for(length_ms()) {
                        panic!("{v}");
                    }
                    black_box(sim.report().steps);
                    // Dropped outside the timed part (the HSDB file and its directory).
                    (dir, sim)
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
