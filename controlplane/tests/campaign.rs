//! Simulation campaigns of the whole loop (issue 8 item 7; docs/controlplane.md,
//! "Simulation"): simulated monitors writing a real HSDB, the Failure Detection Engine,
//! the `sim` platform, one virtual clock, faults drawn from a seed, invariants checked at
//! every step. A broken invariant fails the test with the seed, the step, the VM and the
//! history — rerun the seed to replay it exactly.
//!
//! `campaign_million_vm_hours` is ignored in CI; run it with
//! `cargo test --release -p controlplane --test campaign -- --ignored --nocapture`
//! (`HVHA_SIM_VM_HOURS` sets the total, `HVHA_SIM_SEED` the first seed).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use controlplane::simulation::invariants::FailureKind;
use controlplane::simulation::run::SimReport;
use controlplane::simulation::setup;

/// Fault kinds every long campaign must have met (the schedule draws all of them; a
/// kind injected zero times means the campaign did not test it).
const KINDS: [&str; 15] = [
    "vm_hang",
    "vm_hang_transient",
    "os_crash",
    "agent_kill",
    "agent_stop",
    "adapter_down",
    "adapters_down",
    "monitor_restart",
    "monitor_link_down",
    "slow_host",
    "lost_acks",
    "host_loss",
    "planned_shutdown",
    "both_monitors_killed",
    "hypervisor_cut_off",
];

fn run(seed: u64, fast: bool, hosts: usize, vms_per_host: usize, hours: f64) -> SimReport {
    let (cfg, params) = if fast {
        setup::fast(seed, hosts, vms_per_host)
    } else {
        setup::standard(seed, hosts, vms_per_host)
    };
    let dir = tempfile::tempdir().unwrap();
    match setup::run_campaign(cfg, params, hours, dir.path()) {
        Ok(report) => report,
        Err(v) => panic!("{v}"),
    }
}

/// Every failure acted on was acted on within its bound, and the run met failures of
/// every kind.
fn assert_sound(r: &SimReport, kinds: &[&str]) {
    for rec in r.recoveries.iter().filter(|rec| !rec.held) {
        assert!(rec.latency_ms <= rec.bound_ms, "{rec:?}");
    }
    let met: BTreeSet<&str> = r
        .faults
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| *k)
        .collect();
    for k in kinds {
        assert!(met.contains(k), "no {k} injected: {:?}", r.faults);
    }
    let kinds_recovered: BTreeSet<String> = r
        .recoveries
        .iter()
        .map(|rec| format!("{:?}", rec.kind))
        .collect();
    for k in [FailureKind::VmHang, FailureKind::OsCrash] {
        assert!(
            kinds_recovered.contains(&format!("{k:?}")),
            "no {k:?} recovered: {kinds_recovered:?}"
        );
    }
}

/// CI's campaign: 10 hosts × 50 VMs × 20 h = 10,000 VM-hours on the seed's timing,
/// every fault kind, no broken invariant.
#[test]
fn campaign_10k_vm_hours_standard_timing() {
    let r = run(20_261_130, false, 10, 50, 20.0);
    assert!(r.vm_hours >= 10_000.0, "{}", r.vm_hours);
    assert_sound(&r, &KINDS);
    assert!(
        r.recoveries
            .iter()
            .any(|rec| rec.kind == FailureKind::HostLoss),
        "no host loss recovered: {:?}",
        r.faults
    );
    assert!(r.recoveries.len() > 100, "{}", r.recoveries.len());
}

/// The fast profile (seconds, not minutes) under the same fault mix.
#[test]
fn campaign_fast_profile() {
    let r = run(7, true, 6, 20, 6.0);
    assert!(r.vm_hours >= 720.0, "{}", r.vm_hours);
    assert_sound(&r, &["vm_hang", "os_crash", "agent_kill", "adapters_down"]);
}

/// A seed replays its run exactly: same trace, same report; another seed does not.
#[test]
fn campaign_seed_replays_exactly() {
    let a = run(99, false, 4, 10, 4.0);
    let b = run(99, false, 4, 10, 4.0);
    let c = run(100, false, 4, 10, 4.0);
    assert_eq!(a, b);
    assert!(a.trace_lines > 500, "{}", a.trace_lines);
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// 1,000,000 VM-hours (or `HVHA_SIM_VM_HOURS`): seeds from `HVHA_SIM_SEED` (default 1),
/// 10,000 VM-hours each, on the seed's timing.
#[test]
#[ignore]
fn campaign_million_vm_hours() {
    let total: f64 = std::env::var("HVHA_SIM_VM_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000.0);
    let first: u64 = std::env::var("HVHA_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let started = std::time::Instant::now();
    let (mut done, mut seed) = (0.0, first);
    let (mut recoveries, mut actions, mut worst) = (0usize, 0u64, 0.0f64);
    let mut races = Vec::new();
    let mut faults = std::collections::BTreeMap::new();
    while done < total {
        let r = run(seed, false, 10, 50, 20.0);
        done += r.vm_hours;
        recoveries += r.recoveries.len();
        actions += r.actions;
        races.extend(r.races.iter().map(|race| (seed, *race)));
        for rec in r.recoveries.iter().filter(|rec| !rec.held) {
            #[allow(clippy::cast_precision_loss)]
            let ratio = rec.latency_ms as f64 / rec.bound_ms as f64;
            worst = worst.max(ratio);
        }
        for (k, n) in &r.faults {
            *faults.entry(*k).or_insert(0u64) += n;
        }
        eprintln!(
            "seed {seed}: {:.0} VM-hours, {} recoveries, total {done:.0} VM-hours in {:.0?}",
            r.vm_hours,
            r.recoveries.len(),
            started.elapsed()
        );
        seed += 1;
    }
    eprintln!(
        "{done:.0} VM-hours, seeds {first}..{}, {recoveries} failures acted on within their \
         bound (worst latency/bound {worst:.3}), {actions} platform actions, faults {faults:?}, \
         {:.0?}, no invariant broken; {} check-then-act races: {races:?}",
        seed - 1,
        started.elapsed(),
        races.len()
    );
}
