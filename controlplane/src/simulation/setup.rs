//! Ready-made simulated host groups with the real engine: the seed's timing (`standard`)
//! and the fast profile, and the bounds derived from their parameters.

use std::path::Path;

use hsdb::DetectionSpeed;

use super::engine::FdeEngine;
use super::faults::FaultRates;
use super::invariants::{Bounds, Rule, SimViolation};
use super::monitor::MonitorTimers;
use super::rng::SimRng;
use super::run::{SimConfig, SimReport, SimSetupError, Simulation};
use crate::clock::ManualClock;
use crate::fde::Fde;
use crate::params::GroupParams;
use crate::platform::sim::{Call, DEFAULT_PING_NO_REPLY_MS, SimWorld};

/// The virtual epoch every ready-made simulation starts at (2023-11-14 22:13:20 UTC).
pub const EPOCH_MS: i64 = 1_700_000_000_000;

/// How often the engine's executor looks at a restart waiting for its monitors
/// (relocate.rs: `command_timeout / 10`, between 50 ms and 1 s).
pub fn executor_poll_ms(params: &GroupParams) -> i64 {
    (params.command_timeout_ms / 10).clamp(50, 1_000)
}

/// The bounds of a group run with `params` and monitors with `timers` on the `sim`
/// platform's default latencies (docs/controlplane.md, "Simulation").
pub fn bounds(params: &GroupParams, timers: &MonitorTimers) -> Bounds {
    let world = SimWorld::new(ManualClock::new(0), 0);
    let ms = |c: Call| i64::try_from(world.latency(c)).unwrap_or(i64::MAX);
    let ping_no_reply = i64::try_from(DEFAULT_PING_NO_REPLY_MS).unwrap_or(i64::MAX);
    let poll = executor_poll_ms(params);
    let action_ms = ping_no_reply
        + ms(Call::VmStatus)
        + timers.command_poll_ms
        + poll
        + ms(Call::Stop)
        + ms(Call::Start)
        + poll;
    Bounds {
        miss_ms: timers.vm_miss_after_ms,
        hello_ms: timers.hello_period_ms,
        scan_interval_ms: params.scan_interval_ms,
        na_every: i64::from(params.na_every.max(1)),
        host_fdt_ms: params.host_fdt_ms,
        hm_silent_after_ms: params.hm_silent_after_ms,
        action_ms,
        per_vm_ms: ms(Call::Start) + poll,
    }
}

/// A group of `hosts` × `vms_per_host` VMs judged with `params` (all at `speed`), its
/// monitors on `timers`.
pub fn config(
    seed: u64,
    params: &GroupParams,
    timers: MonitorTimers,
    speed: DetectionSpeed,
    hosts: usize,
    vms_per_host: usize,
) -> SimConfig {
    SimConfig {
        seed,
        group: params.group.clone(),
        hosts,
        vms_per_host,
        host_vms: Vec::new(),
        unmanaged_every: 0,
        // Room for every VM of the group twice over on any two hosts.
        host_cpu_milli: 1_000 * u32::try_from(vms_per_host * 3).unwrap_or(u32::MAX),
        host_memory_mb: 2_048 * u32::try_from(vms_per_host * 3).unwrap_or(u32::MAX),
        vm_cpu_milli: 1_000,
        vm_memory_mb: 2_048,
        detection_speed: speed,
        timers,
        boot_ms: 3 * timers.hb_period_ms,
        start_ms: EPOCH_MS,
        engine_delay_ms: timers.hello_period_ms + timers.hb_period_ms,
        bounds: bounds(params, &timers),
        vmfdt_ms: params.vmfdt_ms(speed),
        history_lines: 60,
        full_trace: false,
    }
}

/// The seed's timing: `standard` engine parameters, `hmd`'s default timers.
pub fn standard(seed: u64, hosts: usize, vms_per_host: usize) -> (SimConfig, GroupParams) {
    let params = GroupParams::standard("hg1");
    let cfg = config(
        seed,
        &params,
        MonitorTimers::seed(),
        DetectionSpeed::Normal,
        hosts,
        vms_per_host,
    );
    (cfg, params)
}

/// The fast profile: engine and monitors in seconds.
pub fn fast(seed: u64, hosts: usize, vms_per_host: usize) -> (SimConfig, GroupParams) {
    let params = GroupParams::fast("hg1");
    let cfg = config(
        seed,
        &params,
        MonitorTimers::fast(),
        DetectionSpeed::Normal,
        hosts,
        vms_per_host,
    );
    (cfg, params)
}

/// A simulation of `cfg` with the real engine on `params`, its HSDB in `dir`.
pub fn with_fde(
    cfg: SimConfig,
    params: GroupParams,
    dir: &Path,
) -> Result<Simulation<FdeEngine>, SimSetupError> {
    Simulation::new(
        cfg,
        FdeEngine::new(Fde::new(params)),
        &dir.join("hsdb.sqlite"),
    )
}

/// The fault mix of a campaign on `cfg` (durations drawn around its thresholds).
pub fn fault_rates(cfg: &SimConfig) -> FaultRates {
    let t = &cfg.timers;
    // The earliest the engine may act on a real failure: the last heartbeat left up to a
    // period before it, MISSING a vm_miss_after later, then VMFDT of misses.
    let detect_min = t.vm_miss_after_ms - t.hb_period_ms + cfg.vmfdt_ms;
    let vms = i64::try_from(cfg.vms_per_host).unwrap_or(i64::MAX);
    FaultRates::mix(
        t.vm_miss_after_ms,
        t.hb_period_ms,
        detect_min,
        cfg.bounds.host_deadline(0, vms),
    )
}

/// A campaign: `cfg`'s group with the real engine on `params`, faults drawn from the
/// seed for `hours` (after the first engine scans), run to the end or to the first
/// broken invariant.
pub fn run_campaign(
    cfg: SimConfig,
    params: GroupParams,
    hours: f64,
    dir: &Path,
) -> Result<SimReport, Box<SimViolation>> {
    let rates = fault_rates(&cfg);
    let seed = cfg.seed;
    let start = cfg.start_ms;
    let settle = cfg.engine_delay_ms + 3 * params.scan_interval_ms;
    let mut sim = with_fde(cfg, params, dir).map_err(|e| {
        Box::new(SimViolation {
            seed,
            step: 0,
            at_ms: start,
            rule: Rule::Machinery,
            vm: None,
            detail: e.to_string(),
            history: Vec::new(),
            vm_history: Vec::new(),
        })
    })?;
    #[allow(clippy::cast_possible_truncation)]
    let length = (hours * 3_600_000.0) as i64;
    let vms = sim.vms().to_vec();
    let hosts = sim.host_names().len();
    let mut rng = SimRng::new(seed ^ 0x6661_756c_7473);
    sim.schedule(rates.schedule(&mut rng, &vms, hosts, start + settle, start + length));
    sim.run_for(length)?;
    Ok(sim.report())
}
