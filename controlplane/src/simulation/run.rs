//! [`Simulation`]: the whole loop on one virtual clock — simulated monitors writing a real
//! HSDB, an engine reading it and acting on the `sim` platform, faults from a schedule,
//! invariants checked at every step.
//!
//! A step goes to the next time anything is due (a fault or its end, an agent finishing
//! its boot, a monitor's timer, the engine's next scan, the monitors' command pickup, a
//! failure's deadline) and, in this order: applies the faults due, lets the monitors write
//! what is due, runs the engine if due (its platform calls advance the clock by their
//! latency), follows the platform's actions into the agents, lets the monitors pick up
//! their commands, and checks the invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hsdb::{
    DetectionSpeed, HostId, HostRecord, Hsdb, Options, Priority, Synchronous, Transition, Uuid,
};

use super::agents::Side;
use super::checked::CheckedPlatform;
use super::faults::{FaultKind, ScheduledFault};
use super::ground::Ground;
use super::invariants::{Bounds, Checker, FailureKind, Recovery, Rule, SimViolation};
use super::monitor::{MonitorCommand, MonitorTimers, SimMonitor};
use super::rng::SimRng;
use super::trace::Trace;
use crate::clock::{Clock, ManualClock};
use crate::platform::sim::{CallRecord, SimPlatform, SimWorld};
use crate::platform::{Platform, VmSpec};

/// What the engine under test does in one turn.
pub trait Engine {
    /// Run what is due at `now`: read the HSDB, decide, act on `platform` (whose calls
    /// advance the shared clock). Returns when it wants to run next, and lines for the
    /// run's trace (its decisions).
    fn turn(
        &mut self,
        now: i64,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
    ) -> Result<Turn, String>;

    /// Lose the engine's next `count` acknowledgements (the items stay pending and are
    /// reported again). Returns false if the engine cannot simulate it.
    fn lose_acks(&mut self, _count: u32) -> bool {
        false
    }
}

/// The outcome of one engine turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    /// When the engine wants to run next, ms since the epoch.
    pub next_ms: i64,
    /// Lines for the trace (decisions with their reasons).
    pub notes: Vec<String>,
}

/// An engine that never acts: what the invariants see when failures are ignored.
#[derive(Debug, Clone, Copy)]
pub struct IdleEngine {
    /// How often it wakes, ms.
    pub every_ms: i64,
}

impl Engine for IdleEngine {
    fn turn(&mut self, now: i64, _: &mut Hsdb, _: &mut dyn Platform) -> Result<Turn, String> {
        Ok(Turn {
            next_ms: now + self.every_ms,
            notes: Vec::new(),
        })
    }
}

/// The group a simulation builds.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed: the same seed replays the same run.
    pub seed: u64,
    /// Host group name.
    pub group: String,
    /// Hosts.
    pub hosts: usize,
    /// VMs on each host at the start.
    pub vms_per_host: usize,
    /// Every `unmanaged_every`-th VM is not managed (0: all managed).
    pub unmanaged_every: usize,
    /// Host capacity.
    pub host_cpu_milli: u32,
    /// Host capacity.
    pub host_memory_mb: u32,
    /// VM size.
    pub vm_cpu_milli: u32,
    /// VM size.
    pub vm_memory_mb: u32,
    /// Detection speed of every VM.
    pub detection_speed: DetectionSpeed,
    /// The monitors' and agents' timers.
    pub timers: MonitorTimers,
    /// Guest boot time after a start, ms.
    pub boot_ms: i64,
    /// Virtual start time, ms since the epoch.
    pub start_ms: i64,
    /// The engine's first turn, ms after the start (the monitors pair first).
    pub engine_delay_ms: i64,
    /// Bounds of the failure deadlines.
    pub bounds: Bounds,
    /// VMFDT of the VMs, ms (for their deadlines).
    pub vmfdt_ms: i64,
    /// Trace lines kept for a violation's history.
    pub history_lines: usize,
    /// Keep every trace line (tests of determinism, scenarios).
    pub full_trace: bool,
}

/// Everything a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Virtual time simulated, ms.
    pub simulated_ms: i64,
    /// VMs × simulated hours.
    pub vm_hours: f64,
    /// Steps taken.
    pub steps: u64,
    /// Engine turns.
    pub engine_turns: u64,
    /// Platform actions (stop, start, cleanup) taken by the engine.
    pub actions: u64,
    /// Transitions the monitors wrote (heartbeats of the monitors themselves excluded).
    pub transitions: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Failures acted on, with their latency.
    pub recoveries: Vec<Recovery>,
    /// Failures that healed before any action.
    pub healed: u64,
    /// Failures still open at the end (their deadline had not come).
    pub open_at_end: usize,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Lines of the trace.
    pub trace_lines: u64,
}

/// Something to do at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Agenda {
    Fault(FaultKind),
    /// A transient VM fault ends, if the guest is still the one it hit.
    VmRepair {
        vm: Uuid,
        generation: u64,
    },
    AgentRestart {
        vm: Uuid,
        generation: u64,
    },
    AdapterUp {
        vm: Uuid,
        side: Option<Side>,
    },
    MonitorStart {
        index: usize,
    },
    LinkUp {
        index: usize,
    },
    HostRestore {
        host: usize,
    },
    HostBack {
        host: usize,
        vms: Vec<Uuid>,
    },
    HypervisorBack {
        host: usize,
    },
    SlowEnd {
        host: usize,
    },
}

/// The simulation.
pub struct Simulation<E: Engine> {
    cfg: SimConfig,
    clock: ManualClock,
    /// The HSDB everyone reads and writes.
    pub hsdb: Hsdb,
    /// The platform (ground truth for power and faults).
    pub platform: SimPlatform,
    /// Agents and hosts.
    pub ground: Ground,
    /// Monitors, two per host: index `2 × host + side`.
    pub monitors: Vec<SimMonitor>,
    monitor_due: Vec<Option<i64>>,
    /// The engine under test.
    pub engine: E,
    next_engine: i64,
    checker: Checker,
    agenda: BTreeMap<(i64, u64), Agenda>,
    seq: u64,
    command_poll: Option<i64>,
    /// Hosts in a planned shutdown, by name.
    planned: Vec<String>,
    host_names: Vec<String>,
    vms: Vec<Uuid>,
    managed: BTreeSet<Uuid>,
    /// Per VM, a number bumped at every fault and every boot: a heal applies only to the
    /// fault it belongs to.
    generation: BTreeMap<Uuid, u64>,
    trace: Trace,
    step: u64,
    last_event: i64,
    report: SimReport,
    /// Double runs the world recorded that were already reported.
    world_violations: usize,
    /// The platform changed in this step (checked for double runs at its end).
    world_changed: bool,
}

/// A simulation could not be built (a bad configuration, the HSDB cannot be opened).
#[derive(Debug, thiserror::Error)]
pub enum SimSetupError {
    /// The HSDB failed.
    #[error("simulation: HSDB: {0}")]
    Hsdb(#[from] hsdb::Error),
    /// The platform refused the group.
    #[error("simulation: platform: {0}")]
    Platform(String),
    /// A value out of range.
    #[error("simulation: {what} = {value}; allowed: {allowed}")]
    Config {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

/// The UUID of simulated VM number `i`.
pub fn vm_uuid(i: usize) -> Uuid {
    let mut b = [0u8; 16];
    b[0] = 0x5e;
    b[1] = 0x11;
    b[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    b[6] = 0x40 | (b[6] & 0x0f);
    Uuid(b)
}

/// The UUID of the monitor on `side` of host number `host`.
pub fn monitor_uuid(host: usize, side: Side) -> Uuid {
    let mut b = [0u8; 16];
    b[0] = 0x4d;
    b[1] = 0x0e;
    b[8..16].copy_from_slice(&((host as u64) << 1 | side.index() as u64).to_be_bytes());
    b[6] = 0x40;
    Uuid(b)
}

/// The name of host number `i`.
pub fn host_name(i: usize) -> String {
    format!("host-{:02}", i + 1)
}

/// The HSDB id of host number `i`.
pub fn host_id(i: usize) -> HostId {
    HostId(i64::try_from(i).unwrap_or(0) + 1)
}

impl<E: Engine> Simulation<E> {
    /// Build the group of `cfg` with its HSDB at `hsdb_path` (a fresh file), monitors
    /// started, VMs running and managed; the engine's first turn comes after
    /// `engine_delay_ms`.
    pub fn new(
        cfg: SimConfig,
        engine: E,
        hsdb_path: &Path,
    ) -> Result<Simulation<E>, SimSetupError> {
        if cfg.hosts == 0 || cfg.hosts > 250 {
            return Err(SimSetupError::Config {
                what: "hosts",
                value: cfg.hosts.to_string(),
                allowed: "1..=250",
            });
        }
        let t0 = cfg.start_ms;
        let clock = ManualClock::new(t0);
        let mut world = SimWorld::new(clock.clone(), cfg.seed);
        world.set_boot_ms(u64::try_from(cfg.boot_ms).unwrap_or(0));
        let mut hsdb = Hsdb::open(
            hsdb_path,
            &Options {
                synchronous: Synchronous::Normal,
                ..Options::default()
            },
        )?;
        let mut ground = Ground::new(cfg.timers.hb_period_ms, cfg.boot_ms);
        let rng = SimRng::new(cfg.seed);
        let mut host_names = Vec::new();
        for h in 0..cfg.hosts {
            let name = host_name(h);
            world
                .add_host(&name, cfg.host_cpu_milli, cfg.host_memory_mb)
                .map_err(|e| SimSetupError::Platform(e.to_string()))?;
            hsdb.upsert_host(&HostRecord {
                id: host_id(h),
                name: name.clone(),
                machine_type: "9080".into(),
                model: "HEX".into(),
                serial: format!("SIM{:04}", h + 1),
                cpu_milli: cfg.host_cpu_milli,
                memory_mb: cfg.host_memory_mb,
                host_group: cfg.group.clone(),
            })?;
            ground.add_host(&name, host_id(h));
            host_names.push(name);
        }
        let mut vms = Vec::new();
        let mut managed = BTreeSet::new();
        let mut phases = rng.fork(0x7068_6173);
        for (h, host) in host_names.iter().enumerate() {
            for k in 0..cfg.vms_per_host {
                let i = h * cfg.vms_per_host + k;
                let vm = vm_uuid(i);
                let name = format!("vm-{:05}", i + 1);
                let spec = VmSpec {
                    uuid: vm,
                    name: name.clone(),
                    cpu_milli: cfg.vm_cpu_milli,
                    memory_mb: cfg.vm_memory_mb,
                };
                world
                    .add_vm(host, spec)
                    .map_err(|e| SimSetupError::Platform(e.to_string()))?;
                let is_managed =
                    cfg.unmanaged_every == 0 || !(i + 1).is_multiple_of(cfg.unmanaged_every);
                hsdb.set_vm(
                    &vm,
                    &hsdb::VmSettings {
                        managed: Some(is_managed),
                        ha_monitor: Some(true),
                        priority: Some(Priority::Medium),
                        detection_speed: Some(cfg.detection_speed),
                        cpu_milli: Some(cfg.vm_cpu_milli),
                        memory_mb: Some(cfg.vm_memory_mb),
                        name: Some(name),
                        home_host: Some(host_id(h)),
                    },
                    t0,
                )?;
                if is_managed {
                    managed.insert(vm);
                }
                let phase = phases.range_i64(0, cfg.timers.hb_period_ms - 1);
                ground.add_vm(vm, phase, true);
                vms.push(vm);
            }
        }
        // The guests were running before the simulation began: their agents are ready.
        ground.place_running(&world, t0);
        let mut monitors = Vec::new();
        for h in 0..cfg.hosts {
            for side in Side::BOTH {
                let mut m = SimMonitor::new(monitor_uuid(h, side), host_id(h), side, cfg.timers);
                m.start(t0, &mut hsdb)?;
                monitors.push(m);
            }
        }
        let platform = SimPlatform::new(world);
        let monitor_due = vec![Some(t0); monitors.len()];
        let checker = Checker::new(cfg.bounds);
        let trace = Trace::new(cfg.history_lines, cfg.full_trace);
        let next_engine = t0 + cfg.engine_delay_ms;
        let report = SimReport {
            seed: cfg.seed,
            simulated_ms: 0,
            vm_hours: 0.0,
            steps: 0,
            engine_turns: 0,
            actions: 0,
            transitions: 0,
            faults: BTreeMap::new(),
            recoveries: Vec::new(),
            healed: 0,
            open_at_end: 0,
            trace_hash: 0,
            trace_lines: 0,
        };
        Ok(Simulation {
            cfg,
            clock,
            hsdb,
            platform,
            ground,
            monitors,
            monitor_due,
            engine,
            next_engine,
            checker,
            agenda: BTreeMap::new(),
            seq: 0,
            command_poll: None,
            planned: Vec::new(),
            host_names,
            vms,
            managed,
            generation: BTreeMap::new(),
            trace,
            step: 0,
            last_event: 0,
            report,
            world_violations: 0,
            world_changed: true,
        })
    }

    /// The virtual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Every VM, in order.
    pub fn vms(&self) -> &[Uuid] {
        &self.vms
    }

    /// Host names, in order.
    pub fn host_names(&self) -> &[String] {
        &self.host_names
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The invariant checker (its open failures, its recoveries).
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Schedule faults.
    pub fn schedule(&mut self, faults: impl IntoIterator<Item = ScheduledFault>) {
        for f in faults {
            self.push(f.at, Agenda::Fault(f.kind));
        }
    }

    fn push(&mut self, at: i64, what: Agenda) {
        self.seq += 1;
        self.agenda.insert((at, self.seq), what);
    }

    fn note(&mut self, now: i64, text: std::fmt::Arguments<'_>) {
        let t = now - self.cfg.start_ms;
        self.trace
            .push(format!("{:>10}.{:03} {text}", t / 1000, t % 1000));
    }

    /// Run until `until` (ms since the epoch) or the first broken invariant.
    pub fn run_until(&mut self, until: i64) -> Result<(), Box<SimViolation>> {
        while self.step_once(until)? {}
        Ok(())
    }

    /// Run for `ms` more.
    pub fn run_for(&mut self, ms: i64) -> Result<(), Box<SimViolation>> {
        let until = self.clock.now_ms() + ms;
        self.run_until(until)
    }

    /// The report of the run so far.
    pub fn report(&self) -> SimReport {
        let mut r = self.report.clone();
        r.simulated_ms = self.clock.now_ms() - self.cfg.start_ms;
        r.vm_hours = r.simulated_ms as f64 / 3_600_000.0 * self.vms.len() as f64;
        r.steps = self.step;
        r.recoveries = self.checker.recovered().to_vec();
        r.healed = self.checker.healed_count();
        r.open_at_end = self.checker.open_count();
        r.trace_hash = self.trace.hash();
        r.trace_lines = self.trace.len();
        r
    }

    /// The next time something is due, at most `until`.
    fn next_time(&self, until: i64) -> i64 {
        let mut t = until;
        let mut consider = |x: Option<i64>| {
            if let Some(x) = x {
                t = t.min(x);
            }
        };
        consider(self.agenda.keys().next().map(|(at, _)| *at));
        consider(self.ground.next_ready());
        consider(Some(self.next_engine));
        consider(self.command_poll);
        consider(self.checker.next_deadline());
        for d in &self.monitor_due {
            consider(*d);
        }
        t
    }

    /// One step; false once `until` is reached.
    fn step_once(&mut self, until: i64) -> Result<bool, Box<SimViolation>> {
        let now = self.clock.now_ms();
        if now >= until {
            return Ok(false);
        }
        let t = self.next_time(until).max(now);
        self.clock.advance_to(t);
        let now = self.clock.now_ms();
        self.step += 1;
        let result = self.step_at(now);
        if let Err(e) = result {
            let at = self.clock.now_ms();
            self.checker.violate(Rule::Machinery, None, at, e);
        }
        self.check(self.clock.now_ms())?;
        Ok(self.clock.now_ms() < until)
    }

    fn step_at(&mut self, now: i64) -> Result<(), String> {
        // 1. Faults and their ends.
        while let Some(entry) = self.agenda.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let what = entry.remove();
            self.world_changed = true;
            self.apply(now, what)?;
        }
        // 2. Agents whose boot completed.
        self.ground.on_ready(now);
        // 3. Monitors.
        self.step_monitors(now)?;
        // 4. The engine.
        if now >= self.next_engine {
            self.engine_turn(now)?;
        }
        // 5. Commands to the monitors.
        let now = self.clock.now_ms();
        if self.command_poll.is_some_and(|t| now >= t) {
            self.command_poll = None;
            for i in 0..self.monitors.len() {
                self.take_commands(i, now)?;
            }
        }
        // 6. Monitors again: the engine's actions and the commands changed their hosts.
        self.step_monitors(now)?;
        Ok(())
    }

    /// Step every monitor that is due or whose host changed, and write what they wrote.
    fn step_monitors(&mut self, now: i64) -> Result<(), String> {
        let dirty = self.ground.take_dirty();
        for i in 0..self.monitors.len() {
            let host = self.monitors[i].host;
            let due = self.monitor_due[i].is_some_and(|d| d <= now);
            if !due && !dirty.contains(&host) {
                continue;
            }
            let m = &mut self.monitors[i];
            m.step(now, &self.ground.agents, self.ground.on_host(host));
            let batch = m.take_transitions();
            self.monitor_due[i] = m.next_due(now, &self.ground.agents, self.ground.on_host(host));
            if self.monitor_due[i] == Some(now) {
                // Nothing can be due again at the same instant: the monitor moved past it.
                self.monitor_due[i] = Some(now + 1);
            }
            self.write(i, now, &batch)?;
        }
        Ok(())
    }

    /// Apply a monitor's batch and trace it.
    fn write(&mut self, index: usize, now: i64, batch: &[Transition]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        self.hsdb
            .apply(batch)
            .map_err(|e| format!("monitor {index}: apply: {e}"))?;
        for t in batch {
            let line = match t {
                Transition::HmHeartbeat { .. } => continue,
                Transition::Discovered { vm, .. }
                | Transition::Detected { vm, .. }
                | Transition::Missing { vm, .. }
                | Transition::Suspended { vm, .. }
                | Transition::Doorbell { vm, .. }
                | Transition::StopWatching { vm, .. }
                | Transition::StartWatching { vm, .. }
                | Transition::Forget { vm, .. } => {
                    format!("hm {} {} {}", self.monitor_name(index), t.kind(), short(vm))
                }
                Transition::HmEvent { state, reason, .. } => format!(
                    "hm {} HmEvent {state} reason={reason:#x}",
                    self.monitor_name(index)
                ),
                Transition::HmInterface { state, .. } => {
                    format!("hm {} HmInterface {state}", self.monitor_name(index))
                }
                Transition::Event { kind, .. } => {
                    format!("hm {} Event {kind}", self.monitor_name(index))
                }
            };
            self.report.transitions += 1;
            self.note(now, format_args!("{line}"));
        }
        Ok(())
    }

    fn monitor_name(&self, index: usize) -> String {
        let side = if index.is_multiple_of(2) { 'a' } else { 'b' };
        format!("{}{side}", self.host_names[index / 2])
    }

    /// One engine turn through the checked platform, then follow its actions.
    fn engine_turn(&mut self, now: i64) -> Result<(), String> {
        self.report.engine_turns += 1;
        let turn = {
            let mut platform = CheckedPlatform::new(
                &mut self.platform,
                &self.ground,
                &mut self.checker,
                &self.planned,
            );
            self.engine.turn(now, &mut self.hsdb, &mut platform)
        };
        let turn = turn.map_err(|e| format!("engine: {e}"))?;
        let after = self.clock.now_ms();
        self.next_engine = turn.next_ms.max(after + 1);
        for n in &turn.notes {
            self.note(after, format_args!("fde {n}"));
        }
        let records = self.follow_platform("fde");
        if !records.is_empty() {
            self.command_poll = Some(
                self.command_poll
                    .unwrap_or(i64::MAX)
                    .min(after + self.cfg.timers.command_poll_ms),
            );
        }
        self.read_events(after)?;
        Ok(())
    }

    /// Follow the platform's recorded actions into the agents; returns them.
    fn follow_platform(&mut self, by: &str) -> Vec<CallRecord> {
        let records: Vec<CallRecord> = {
            let mut world = self.platform.world();
            let records = world.history().to_vec();
            world.clear_history();
            self.ground.follow(&world, &records);
            // A start that made a VM run twice, even for an instant within the turn.
            for v in world.violations().iter().skip(self.world_violations) {
                self.checker.violate(
                    Rule::RunningTwice,
                    Some(v.vm),
                    v.at_ms,
                    format!("a start made VM {} run on {:?}", v.vm, v.running_on),
                );
            }
            self.world_violations = world.violations().len();
            self.world_changed |= !records.is_empty();
            records
        };
        for r in &records {
            if by == "fde" {
                self.report.actions += 1;
            }
            if let Some(vm) = r.vm {
                self.generation
                    .entry(vm)
                    .and_modify(|g| *g += 1)
                    .or_insert(1);
            }
            let err = r
                .error
                .as_ref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default();
            self.note(
                r.end_ms,
                format_args!(
                    "{by} {} {} {}{err}",
                    r.call.as_str(),
                    r.host.as_deref().unwrap_or("-"),
                    r.vm.as_ref().map(short).unwrap_or_default()
                ),
            );
        }
        records
    }

    /// Trace the events the engine recorded since the last look.
    fn read_events(&mut self, now: i64) -> Result<(), String> {
        loop {
            let rows = self
                .hsdb
                .events_after(self.last_event, 500)
                .map_err(|e| format!("events_after: {e}"))?;
            if rows.is_empty() {
                return Ok(());
            }
            for r in rows {
                self.last_event = r.id;
                let vm = r.vm.as_ref().map(short).unwrap_or_default();
                self.note(now, format_args!("event {} {vm} {}", r.kind, r.text));
            }
        }
    }

    /// Monitor `index` picks up its commands and carries them out.
    fn take_commands(&mut self, index: usize, now: i64) -> Result<(), String> {
        if !self.monitors[index].running() {
            return Ok(());
        }
        let hm = self.monitors[index].uuid;
        let after = self.monitors[index].last_command;
        let rows = self
            .hsdb
            .commands_for(&hm, after, 1_000)
            .map_err(|e| format!("commands_for: {e}"))?;
        for row in rows {
            let command = match row.kind {
                hsdb::CommandKind::StopMonitoring => MonitorCommand::StopMonitoring,
                hsdb::CommandKind::StartMonitoring => MonitorCommand::StartMonitoring,
                hsdb::CommandKind::ForgetVm => MonitorCommand::ForgetVm,
            };
            self.monitors[index].command(row.vm, command, now);
            self.monitors[index].last_command = row.id;
            self.hsdb
                .complete_command(row.id, "OK", now)
                .map_err(|e| format!("complete_command: {e}"))?;
            let name = self.monitor_name(index);
            self.note(
                now,
                format_args!("hm {name} command {:?} {}", command, short(&row.vm)),
            );
            self.monitor_due[index] = Some(now);
        }
        Ok(())
    }

    fn bump(&mut self, vm: &Uuid) -> u64 {
        let g = self.generation.entry(*vm).or_insert(0);
        *g += 1;
        *g
    }

    fn count(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_insert(0) += 1;
    }

    /// Open episodes of VMs on host `h` count their evidence from `now` (its monitors or
    /// its hypervisor were impaired until now).
    fn impaired_host(&mut self, h: usize, now: i64) {
        let id = host_id(h);
        let vms: Vec<Uuid> = self.ground.on_host(id).copied().collect();
        for vm in vms {
            self.checker.impaired(&vm, now);
        }
    }

    /// Carry out an agenda item.
    fn apply(&mut self, now: i64, what: Agenda) -> Result<(), String> {
        let sim_err = |e: crate::platform::sim::SimError| e.to_string();
        match what {
            Agenda::Fault(kind) => self.inject(now, kind)?,
            Agenda::VmRepair { vm, generation } => {
                if self.generation.get(&vm) == Some(&generation) {
                    let mut world = self.platform.world();
                    world.vm_repair(&vm).map_err(sim_err)?;
                    self.ground.sync_vm(&world, &vm, now, false);
                    drop(world);
                    self.checker.healed(&vm);
                    self.note(now, format_args!("heal vm {}", short(&vm)));
                }
            }
            Agenda::AgentRestart { vm, generation } => {
                if self.generation.get(&vm) == Some(&generation) {
                    let world = self.platform.world();
                    self.ground.restart_agent(&vm, &world, now);
                    drop(world);
                    self.note(now, format_args!("heal agent {}", short(&vm)));
                }
            }
            Agenda::AdapterUp { vm, side } => {
                for s in Side::BOTH {
                    if side.is_none_or(|x| x == s) {
                        self.ground.set_adapter(&vm, s, true, now);
                    }
                }
                self.note(now, format_args!("heal adapters {}", short(&vm)));
            }
            Agenda::MonitorStart { index } => {
                if !self.monitors[index].running() {
                    self.monitors[index]
                        .start(now, &mut self.hsdb)
                        .map_err(|e| format!("monitor start: {e}"))?;
                    self.monitor_due[index] = Some(now);
                    let name = self.monitor_name(index);
                    self.note(now, format_args!("hm {name} started"));
                    self.take_commands(index, now)?;
                    self.impaired_host(index / 2, now);
                }
            }
            Agenda::LinkUp { index } => {
                self.monitors[index].set_link(true, now);
                self.monitor_due[index] = Some(now);
                let name = self.monitor_name(index);
                self.note(now, format_args!("hm {name} link up"));
                self.impaired_host(index / 2, now);
            }
            Agenda::HostRestore { host } => {
                let name = self.host_names[host].clone();
                {
                    let mut world = self.platform.world();
                    world.host_restore(&name).map_err(sim_err)?;
                }
                self.note(now, format_args!("host {name} restored"));
                for side in Side::BOTH {
                    self.push(
                        now,
                        Agenda::MonitorStart {
                            index: 2 * host + side.index(),
                        },
                    );
                }
                // The operator starts the unmanaged VMs that were lost with the host.
                self.operator_start_unmanaged(host, now)?;
            }
            Agenda::HostBack { host, vms } => {
                let name = self.host_names[host].clone();
                {
                    let mut world = self.platform.world();
                    world.host_restore(&name).map_err(sim_err)?;
                }
                self.planned.retain(|p| *p != name);
                self.note(now, format_args!("host {name} back from planned shutdown"));
                for side in Side::BOTH {
                    let index = 2 * host + side.index();
                    self.monitors[index]
                        .start(now, &mut self.hsdb)
                        .map_err(|e| format!("monitor start: {e}"))?;
                    self.monitor_due[index] = Some(now);
                    self.take_commands(index, now)?;
                }
                // The operator starts the host's VMs again.
                for vm in vms {
                    let spec = self.platform.world().vm_spec(&vm).cloned();
                    if let Some(spec) = spec {
                        let _ = self.platform.start(&name, &spec);
                    }
                }
                self.follow_platform("operator");
            }
            Agenda::HypervisorBack { host } => {
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_hypervisor_reachable(&name, true)
                    .map_err(sim_err)?;
                self.note(now, format_args!("host {name} hypervisor answers again"));
                self.impaired_host(host, now);
            }
            Agenda::SlowEnd { host } => {
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_host_latency(&name, 0)
                    .map_err(sim_err)?;
                self.note(now, format_args!("host {name} fast again"));
                self.impaired_host(host, now);
            }
        }
        Ok(())
    }

    /// The operator starts the unmanaged VMs defined on `host` that run nowhere.
    fn operator_start_unmanaged(&mut self, host: usize, _now: i64) -> Result<(), String> {
        let name = self.host_names[host].clone();
        let specs: Vec<VmSpec> = {
            let world = self.platform.world();
            world
                .vms_defined_on(&name)
                .into_iter()
                .filter(|vm| !self.managed.contains(vm) && world.vm_running_on(vm).is_empty())
                .filter_map(|vm| world.vm_spec(&vm).cloned())
                .collect()
        };
        for spec in specs {
            let _ = self.platform.start(&name, &spec);
        }
        self.follow_platform("operator");
        Ok(())
    }

    /// Start a fault.
    fn inject(&mut self, now: i64, kind: FaultKind) -> Result<(), String> {
        let sim_err = |e: crate::platform::sim::SimError| e.to_string();
        match kind {
            FaultKind::VmHang { vm, heals_after } => {
                if !self.vm_can_fail(&vm, heals_after.is_none()) {
                    return Ok(());
                }
                self.count(if heals_after.is_some() {
                    "vm_hang_transient"
                } else {
                    "vm_hang"
                });
                {
                    let mut world = self.platform.world();
                    world.vm_hang(&vm).map_err(sim_err)?;
                    self.ground.sync_vm(&world, &vm, now, false);
                }
                let g = self.bump(&vm);
                match heals_after {
                    Some(d) => self.push(now + d, Agenda::VmRepair { vm, generation: g }),
                    None => {
                        if self.managed.contains(&vm) {
                            self.checker
                                .failure(vm, FailureKind::VmHang, now, self.cfg.vmfdt_ms);
                        }
                    }
                }
                self.note(
                    now,
                    format_args!("fault vm_hang {} heals_after={heals_after:?}", short(&vm)),
                );
            }
            FaultKind::OsCrash { vm } => {
                if !self.vm_can_fail(&vm, true) {
                    return Ok(());
                }
                self.count("os_crash");
                {
                    let mut world = self.platform.world();
                    world.vm_os_crash(&vm).map_err(sim_err)?;
                    self.ground.sync_vm(&world, &vm, now, false);
                }
                self.bump(&vm);
                if self.managed.contains(&vm) {
                    self.checker
                        .failure(vm, FailureKind::OsCrash, now, self.cfg.vmfdt_ms);
                }
                self.note(now, format_args!("fault os_crash {}", short(&vm)));
            }
            FaultKind::AgentKill { vm, heals_after } => {
                if !self.vm_can_fail(&vm, false) {
                    return Ok(());
                }
                self.count("agent_kill");
                {
                    let mut world = self.platform.world();
                    world.vm_agent_kill(&vm).map_err(sim_err)?;
                    self.ground.sync_vm(&world, &vm, now, false);
                }
                let g = self.bump(&vm);
                self.push(now + heals_after, Agenda::VmRepair { vm, generation: g });
                self.note(
                    now,
                    format_args!("fault agent_kill {} for {heals_after} ms", short(&vm)),
                );
            }
            FaultKind::AgentStop { vm, restarts_after } => {
                if !self.vm_can_fail(&vm, false) {
                    return Ok(());
                }
                self.count("agent_stop");
                self.ground.stop_agent(&vm, now);
                let g = self.bump(&vm);
                self.push(
                    now + restarts_after,
                    Agenda::AgentRestart { vm, generation: g },
                );
                self.note(
                    now,
                    format_args!("fault agent_stop {} for {restarts_after} ms", short(&vm)),
                );
            }
            FaultKind::AdapterDown { vm, side, duration } => {
                self.count(if side.is_some() {
                    "adapter_down"
                } else {
                    "adapters_down"
                });
                for s in Side::BOTH {
                    if side.is_none_or(|x| x == s) {
                        self.ground.set_adapter(&vm, s, false, now);
                    }
                }
                self.push(now + duration, Agenda::AdapterUp { vm, side });
                self.note(
                    now,
                    format_args!(
                        "fault adapter_down {} side={side:?} for {duration} ms",
                        short(&vm)
                    ),
                );
            }
            FaultKind::MonitorRestart {
                host,
                side,
                downtime,
            } => {
                let index = 2 * host + side.index();
                if !self.monitors[index].running() || self.host_busy(host) {
                    return Ok(());
                }
                self.count("monitor_restart");
                self.monitors[index].kill();
                self.monitor_due[index] = None;
                self.push(now + downtime, Agenda::MonitorStart { index });
                let name = self.monitor_name(index);
                self.note(
                    now,
                    format_args!("fault hm {name} killed for {downtime} ms"),
                );
            }
            FaultKind::MonitorLinkDown {
                host,
                side,
                duration,
            } => {
                let index = 2 * host + side.index();
                if !self.monitors[index].running() || !self.monitors[index].hearing() {
                    return Ok(());
                }
                self.count("monitor_link_down");
                self.monitors[index].set_link(false, now);
                self.monitor_due[index] = Some(now);
                self.push(now + duration, Agenda::LinkUp { index });
                let name = self.monitor_name(index);
                self.note(
                    now,
                    format_args!("fault hm {name} link down for {duration} ms"),
                );
            }
            FaultKind::BothMonitorsKilled { host, downtime } => {
                if self.host_busy(host) {
                    return Ok(());
                }
                self.count("both_monitors_killed");
                for side in Side::BOTH {
                    let index = 2 * host + side.index();
                    self.monitors[index].kill();
                    self.monitor_due[index] = None;
                    self.push(now + downtime, Agenda::MonitorStart { index });
                }
                let name = self.host_names[host].clone();
                self.note(
                    now,
                    format_args!("fault both monitors of {name} killed for {downtime} ms"),
                );
            }
            FaultKind::HostLoss {
                host,
                repaired_after,
            } => {
                if self.host_busy(host) {
                    return Ok(());
                }
                self.count("host_loss");
                let name = self.host_names[host].clone();
                let on: Vec<Uuid> = self.platform.world().vms_on_host(&name);
                for vm in &on {
                    if self.managed.contains(vm) {
                        self.checker.failure(*vm, FailureKind::HostLoss, now, 0);
                    }
                    self.bump(vm);
                }
                for side in Side::BOTH {
                    let index = 2 * host + side.index();
                    self.monitors[index].kill();
                    self.monitor_due[index] = None;
                }
                {
                    let mut world = self.platform.world();
                    world.host_loss(&name).map_err(sim_err)?;
                    self.ground.sync_all(&world, now);
                }
                self.push(now + repaired_after, Agenda::HostRestore { host });
                self.note(
                    now,
                    format_args!(
                        "fault host_loss {name} ({} VMs) for {repaired_after} ms",
                        on.len()
                    ),
                );
            }
            FaultKind::PlannedShutdown { host, back_after } => {
                if self.host_busy(host) {
                    return Ok(());
                }
                self.count("planned_shutdown");
                let name = self.host_names[host].clone();
                let on: Vec<Uuid> = self.platform.world().vms_on_host(&name);
                // The guests shut down: their agents say goodbye (SUSPENDED) …
                for vm in &on {
                    self.ground.stop_agent(vm, now);
                    self.bump(vm);
                }
                self.step_monitors(now)?;
                // … then the monitors stop with NODE_SHUTDOWN, then the host powers off.
                for side in Side::BOTH {
                    let index = 2 * host + side.index();
                    self.monitors[index].stop_gracefully(now);
                    let batch = self.monitors[index].take_transitions();
                    self.write(index, now, &batch)?;
                    self.monitor_due[index] = None;
                }
                {
                    let mut world = self.platform.world();
                    world.host_power_off(&name).map_err(sim_err)?;
                    self.ground.sync_all(&world, now);
                }
                self.planned.push(name.clone());
                self.push(now + back_after, Agenda::HostBack { host, vms: on });
                self.note(
                    now,
                    format_args!("fault planned_shutdown {name} for {back_after} ms"),
                );
            }
            FaultKind::HypervisorCutOff { host, duration } => {
                if self.host_busy(host) {
                    return Ok(());
                }
                self.count("hypervisor_cut_off");
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_hypervisor_reachable(&name, false)
                    .map_err(sim_err)?;
                self.push(now + duration, Agenda::HypervisorBack { host });
                self.note(
                    now,
                    format_args!("fault hypervisor of {name} cut off for {duration} ms"),
                );
            }
            FaultKind::SlowHost {
                host,
                extra_ms,
                duration,
            } => {
                self.count("slow_host");
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_host_latency(&name, extra_ms)
                    .map_err(sim_err)?;
                self.push(now + duration, Agenda::SlowEnd { host });
                self.note(
                    now,
                    format_args!("fault host {name} slow by {extra_ms} ms for {duration} ms"),
                );
            }
            FaultKind::LostAcks { count } => {
                if self.engine.lose_acks(count) {
                    self.count("lost_acks");
                    self.note(now, format_args!("fault next {count} acks lost"));
                }
            }
        }
        Ok(())
    }

    /// A host-level fault is in progress on `host` (lost, powered off, both monitors
    /// dead, hypervisor cut off): other host-level faults wait.
    fn host_busy(&self, host: usize) -> bool {
        let name = &self.host_names[host];
        let world = self.platform.world();
        world.host_state(name) != Some(crate::platform::sim::HostState::Up)
            || !world.hypervisor_reachable(name)
            || self.planned.contains(name)
            || !self.monitors[2 * host].running() && !self.monitors[2 * host + 1].running()
    }

    /// `vm` runs, alive, and has no failure awaiting action; a permanent failure also
    /// needs it managed.
    fn vm_can_fail(&self, vm: &Uuid, permanent: bool) -> bool {
        if self.checker.episode(vm).is_some() {
            return false;
        }
        if permanent && !self.managed.contains(vm) {
            return false;
        }
        let world = self.platform.world();
        world.vm_alive(vm) && world.vm_fault(vm).is_none()
    }

    /// Check the invariants after a step; the first broken one ends the run.
    fn check(&mut self, now: i64) -> Result<(), Box<SimViolation>> {
        if std::mem::take(&mut self.world_changed) {
            let world = self.platform.world();
            self.checker.check_running_once(&world, &self.vms, now);
        }
        self.checker.check_deadlines(now);
        let broken = self.checker.take_violations();
        if let Some((rule, vm, at, detail)) = broken.into_iter().next() {
            return Err(Box::new(SimViolation {
                seed: self.cfg.seed,
                step: self.step,
                at_ms: at,
                rule,
                vm,
                detail,
                history: self.trace.recent(),
            }));
        }
        Ok(())
    }
}

/// A VM's short name for trace lines: `vm-00012` for the simulation's VMs, else the
/// UUID's first 8 hex digits.
pub fn short(vm: &Uuid) -> String {
    let b = vm.0;
    if b[0] == 0x5e && b[1] == 0x11 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[8..16]);
        return format!("vm-{:05}", u64::from_be_bytes(n) + 1);
    }
    let text = vm.to_string();
    text.get(..8).unwrap_or(&text).to_string()
}
