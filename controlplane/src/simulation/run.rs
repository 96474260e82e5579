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
use crate::platform::sim::{Call, CallRecord, SimPlatform, SimWorld};
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
    /// Lines for the trace (decisions with their reasons), with the VM each is about.
    pub notes: Vec<(Option<Uuid>, String)>,
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
    /// VMs on each host at the start, host by host, when not empty (a host beyond the
    /// list has none); overrides `vms_per_host`.
    pub host_vms: Vec<usize>,
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
    /// Actions on VMs that came back to life after the engine's last probe found them
    /// dead (a check-then-act race, not a violation; see `invariants::RACE_WINDOW_MS`).
    pub races: Vec<super::invariants::Race>,
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

/// The simulation: the engine under test and everything else ([`SimState`]).
pub struct Simulation<E: Engine> {
    /// The world, the monitors, the faults, the checker, the trace.
    pub state: SimState,
    /// The engine under test.
    pub engine: E,
    /// The engine's own connection to the HSDB (the monitors have theirs).
    pub hsdb: Hsdb,
    next_engine: i64,
}

/// Everything of a simulation but the engine: it goes on while the engine waits on a
/// platform call (monitors heartbeat, pick up commands, faults happen), as it would in
/// a real group, where the monitors are other processes.
pub struct SimState {
    cfg: SimConfig,
    pub(super) clock: ManualClock,
    /// The monitors' connection to the HSDB (`hmd` has its own).
    monitor_db: Hsdb,
    /// The platform (ground truth for power and faults).
    pub platform: SimPlatform,
    /// Agents and hosts.
    pub ground: Ground,
    /// Monitors, two per host: index `2 × host + side`.
    pub monitors: Vec<SimMonitor>,
    monitor_due: Vec<Option<i64>>,
    pub(super) checker: Checker,
    agenda: BTreeMap<(i64, u64), Agenda>,
    seq: u64,
    command_poll: Option<i64>,
    /// Hosts in a planned shutdown, by name.
    pub(super) planned: Vec<String>,
    /// VMs that had failed (a failure awaiting action) when their host's planned shutdown
    /// began: the engine may still restart them.
    pub(super) failed_before_shutdown: BTreeSet<Uuid>,
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
    /// The highest command id known to exist (new ones make their monitors poll).
    commands_seen: i64,
    /// Monitors with commands to pick up at the next poll.
    command_due: BTreeSet<usize>,
    /// An invariant broke while catching up inside an engine turn.
    violation_pending: bool,
    /// Acknowledgements the engine is to lose (handed over between steps).
    lost_acks: u32,
    /// VMFDT of VMs judged otherwise than the group.
    vmfdt: BTreeMap<Uuid, i64>,
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
        let options = Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        };
        let mut monitor_db = Hsdb::open(hsdb_path, &options)?;
        let hsdb = Hsdb::open(hsdb_path, &options)?;
        let mut ground = Ground::new(cfg.timers.hb_period_ms, cfg.boot_ms);
        let rng = SimRng::new(cfg.seed);
        let mut host_names = Vec::new();
        for h in 0..cfg.hosts {
            let name = host_name(h);
            world
                .add_host(&name, cfg.host_cpu_milli, cfg.host_memory_mb)
                .map_err(|e| SimSetupError::Platform(e.to_string()))?;
            monitor_db.upsert_host(&HostRecord {
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
        let mut i = 0;
        for (h, host) in host_names.iter().enumerate() {
            let on_host = if cfg.host_vms.is_empty() {
                cfg.vms_per_host
            } else {
                cfg.host_vms.get(h).copied().unwrap_or(0)
            };
            for _ in 0..on_host {
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
                monitor_db.set_vm(
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
                i += 1;
            }
        }
        // The guests were running before the simulation began: their agents are ready.
        ground.place_running(&world, t0);
        let mut monitors = Vec::new();
        for h in 0..cfg.hosts {
            for side in Side::BOTH {
                let mut m = SimMonitor::new(monitor_uuid(h, side), host_id(h), side, cfg.timers);
                m.start(t0, &mut monitor_db)?;
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
            races: Vec::new(),
            trace_hash: 0,
            trace_lines: 0,
        };
        let state = SimState {
            cfg,
            clock,
            monitor_db,
            platform,
            ground,
            monitors,
            monitor_due,
            checker,
            agenda: BTreeMap::new(),
            seq: 0,
            command_poll: None,
            planned: Vec::new(),
            failed_before_shutdown: BTreeSet::new(),
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
            commands_seen: 0,
            command_due: BTreeSet::new(),
            violation_pending: false,
            lost_acks: 0,
            vmfdt: BTreeMap::new(),
        };
        Ok(Simulation {
            state,
            engine,
            hsdb,
            next_engine,
        })
    }

    /// The virtual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.state.clock
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.state.cfg
    }

    /// Virtual time now, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.state.clock.now_ms()
    }

    /// Every VM, in order.
    pub fn vms(&self) -> &[Uuid] {
        &self.state.vms
    }

    /// Host names, in order.
    pub fn host_names(&self) -> &[String] {
        &self.state.host_names
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.state.trace
    }

    /// The invariant checker (its open failures, its recoveries).
    pub fn checker(&self) -> &Checker {
        &self.state.checker
    }

    /// The platform (ground truth for power and faults).
    pub fn platform(&self) -> &SimPlatform {
        &self.state.platform
    }

    /// The monitors, two per host: index `2 × host + side`.
    pub fn monitors(&self) -> &[SimMonitor] {
        &self.state.monitors
    }

    /// Agents and hosts.
    pub fn ground(&self) -> &Ground {
        &self.state.ground
    }

    /// Schedule faults.
    pub fn schedule(&mut self, faults: impl IntoIterator<Item = ScheduledFault>) {
        for f in faults {
            self.state.push(f.at, Agenda::Fault(f.kind));
        }
    }

    /// Make `vm` managed or not, in the HSDB and in the simulation's obligations (an
    /// unmanaged VM's failure is not the engine's to act on).
    pub fn set_managed(&mut self, vm: &Uuid, managed: bool) -> hsdb::Result<()> {
        let now = self.state.clock.now_ms();
        self.hsdb.set_vm(
            vm,
            &hsdb::VmSettings {
                managed: Some(managed),
                ..hsdb::VmSettings::default()
            },
            now,
        )?;
        if managed {
            self.state.managed.insert(*vm);
        } else {
            self.state.managed.remove(vm);
        }
        Ok(())
    }

    /// `vm` runs without an agent (an IBM i VM of TC-3: covered by host relocation only).
    /// Call before the run starts.
    pub fn without_agent(&mut self, vm: &Uuid) {
        let now = self.state.clock.now_ms();
        if let Some(a) = self.state.ground.agents.get_mut(vm) {
            a.has_agent = false;
            a.refresh(now);
        }
    }

    /// Replace the engine now (a daemon restart: the new one starts with no state) and
    /// give it its first turn at once.
    pub fn restart_engine(&mut self, engine: E) {
        self.engine = engine;
        self.next_engine = self.state.clock.now_ms();
    }

    /// The VMFDT `vm` is judged with (for its failure deadlines), when it differs from
    /// the group's (`hsdb::VmSettings::detection_speed` set on it).
    pub fn set_vmfdt(&mut self, vm: Uuid, vmfdt_ms: i64) {
        self.state.vmfdt.insert(vm, vmfdt_ms);
    }

    /// Run until `until` (ms since the epoch) or the first broken invariant.
    pub fn run_until(&mut self, until: i64) -> Result<(), Box<SimViolation>> {
        while self.step_once(until)? {}
        Ok(())
    }

    /// Run for `ms` more.
    pub fn run_for(&mut self, ms: i64) -> Result<(), Box<SimViolation>> {
        let until = self.state.clock.now_ms() + ms;
        self.run_until(until)
    }

    /// The report of the run so far.
    pub fn report(&self) -> SimReport {
        self.state.report()
    }

    /// One step; false once `until` is reached.
    fn step_once(&mut self, until: i64) -> Result<bool, Box<SimViolation>> {
        let st = &mut self.state;
        let now = st.clock.now_ms();
        if now >= until {
            return Ok(false);
        }
        let t = st
            .next_time()
            .unwrap_or(until)
            .min(self.next_engine)
            .min(until)
            .max(now);
        st.clock.advance_to(t);
        let now = st.clock.now_ms();
        st.step += 1;
        if let Err(e) = st.step_events(now) {
            st.checker.violate(Rule::Machinery, None, now, e);
        }
        let lose = std::mem::take(&mut st.lost_acks);
        if lose > 0 && !self.engine.lose_acks(lose) {
            self.state
                .note(now, format_args!("the engine cannot lose acknowledgements"));
        }
        if now >= self.next_engine
            && !self.state.violation_pending
            && let Err(e) = self.engine_turn(now)
        {
            let at = self.state.clock.now_ms();
            self.state.checker.violate(Rule::Machinery, None, at, e);
        }
        let now = self.state.clock.now_ms();
        self.state.check(now)?;
        Ok(now < until)
    }

    /// One engine turn through the checked platform (the rest of the world catches up
    /// before each of its platform calls), then what follows it.
    fn engine_turn(&mut self, now: i64) -> Result<(), String> {
        self.state.report.engine_turns += 1;
        let turn = {
            let mut platform = CheckedPlatform::new(&mut self.state);
            self.engine.turn(now, &mut self.hsdb, &mut platform)
        };
        let turn = turn.map_err(|e| format!("engine: {e}"))?;
        let st = &mut self.state;
        let after = st.clock.now_ms();
        self.next_engine = turn.next_ms.max(after + 1);
        st.follow_platform("fde");
        for (vm, n) in &turn.notes {
            st.note_about(after, *vm, format_args!("fde {n}"));
        }
        st.catch_up(after);
        st.detect_commands(after)?;
        st.read_events()?;
        // The engine's actions and the commands changed the monitors' hosts.
        st.step_monitors(after)
    }
}

impl SimState {
    fn push(&mut self, at: i64, what: Agenda) {
        self.seq += 1;
        self.agenda.insert((at, self.seq), what);
    }

    fn note(&mut self, now: i64, text: std::fmt::Arguments<'_>) {
        self.note_about(now, None, text);
    }

    /// A trace line about `vm`: also kept in the VM's own history.
    fn note_about(&mut self, now: i64, vm: Option<Uuid>, text: std::fmt::Arguments<'_>) {
        let t = now - self.cfg.start_ms;
        self.trace
            .push_about(vm, format!("{:>10}.{:03} {text}", t / 1000, t % 1000));
    }

    /// The report of the run so far.
    fn report(&self) -> SimReport {
        let mut r = self.report.clone();
        r.simulated_ms = self.clock.now_ms() - self.cfg.start_ms;
        r.vm_hours = r.simulated_ms as f64 / 3_600_000.0 * self.vms.len() as f64;
        r.steps = self.step;
        r.recoveries = self.checker.recovered().to_vec();
        r.healed = self.checker.healed_count();
        r.open_at_end = self.checker.open_count();
        r.races = self.checker.races().to_vec();
        r.trace_hash = self.trace.hash();
        r.trace_lines = self.trace.len();
        r
    }

    /// Trace an action on a VM that came back to life after the engine's last probe.
    pub(crate) fn note_race(&mut self, now: i64, vm: &Uuid, call: Call, host: &str) {
        self.note_about(
            now,
            Some(*vm),
            format_args!(
                "race: {} {host} {}: alive again since the engine's last probe found it dead",
                call.as_str(),
                short(vm)
            ),
        );
    }

    /// The next time something other than the engine is due.
    fn next_time(&self) -> Option<i64> {
        [
            self.agenda.keys().next().map(|(at, _)| *at),
            self.ground.next_ready(),
            self.command_poll,
            self.checker.next_deadline(),
        ]
        .into_iter()
        .chain(self.monitor_due.iter().copied())
        .flatten()
        .min()
    }

    /// What is due at `now` but the engine: faults and their ends, agents ready,
    /// monitors, command pickups.
    fn step_events(&mut self, now: i64) -> Result<(), String> {
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
        // 4. Commands to the monitors.
        if self.command_poll.is_some_and(|t| now >= t) {
            self.command_poll = None;
            for i in std::mem::take(&mut self.command_due) {
                self.take_commands(i, now)?;
            }
            // The commands changed what the monitors watch.
            self.step_monitors(now)?;
        }
        Ok(())
    }

    /// Inside an engine turn, before its next platform call: everything else that fell
    /// due up to `upto` (the clock the engine's calls advanced) happens, each at its own
    /// time.
    pub(crate) fn catch_up(&mut self, upto: i64) {
        if self.violation_pending {
            return;
        }
        if let Err(e) = self.detect_commands(upto) {
            self.checker.violate(Rule::Machinery, None, upto, e);
        }
        let mut last = i64::MIN;
        while let Some(t) = self.next_time().filter(|t| *t <= upto) {
            if t == last {
                // Nothing consumed what was due at t: stop rather than spin.
                break;
            }
            last = t;
            self.step += 1;
            if let Err(e) = self.step_events(t) {
                self.checker.violate(Rule::Machinery, None, t, e);
            }
            if self.check_quiet(t) {
                self.violation_pending = true;
                return;
            }
        }
    }

    /// Step every monitor that is due or whose host changed, and write what they wrote.
    ///
    /// The monitors' batches of one instant go to the HSDB in one transaction, in
    /// monitor order: the store ends up exactly as if each monitor had applied its own
    /// (their transitions touch their own rows, in order), for one commit instead of one
    /// per monitor.
    fn step_monitors(&mut self, now: i64) -> Result<(), String> {
        let dirty = self.ground.take_dirty();
        let mut batch = Vec::new();
        let mut owners = Vec::new();
        for i in 0..self.monitors.len() {
            let host = self.monitors[i].host;
            let due = self.monitor_due[i].is_some_and(|d| d <= now);
            if !due && !dirty.contains(&host) {
                continue;
            }
            let m = &mut self.monitors[i];
            m.step(now, &self.ground.agents, self.ground.on_host(host));
            let out = m.take_transitions();
            self.monitor_due[i] = m.next_due(now, &self.ground.agents, self.ground.on_host(host));
            if self.monitor_due[i] == Some(now) {
                // Nothing can be due again at the same instant: the monitor moved past it.
                self.monitor_due[i] = Some(now + 1);
            }
            owners.extend(std::iter::repeat_n(i, out.len()));
            batch.extend(out);
        }
        self.write(&owners, now, &batch)
    }

    /// Apply the monitors' transitions (`owners[k]` wrote `batch[k]`) and trace them.
    fn write(&mut self, owners: &[usize], now: i64, batch: &[Transition]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        self.monitor_db
            .apply(batch)
            .map_err(|e| format!("monitors' batch of {} transitions: apply: {e}", batch.len()))?;
        for (t, index) in batch.iter().zip(owners.iter().copied()) {
            let about = match t {
                Transition::Discovered { vm, .. }
                | Transition::Detected { vm, .. }
                | Transition::Missing { vm, .. }
                | Transition::Suspended { vm, .. }
                | Transition::Doorbell { vm, .. }
                | Transition::StopWatching { vm, .. }
                | Transition::StartWatching { vm, .. }
                | Transition::Forget { vm, .. } => Some(*vm),
                _ => None,
            };
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
            self.note_about(now, about, format_args!("{line}"));
        }
        Ok(())
    }

    fn monitor_name(&self, index: usize) -> String {
        let side = if index.is_multiple_of(2) { 'a' } else { 'b' };
        format!("{}{side}", self.host_names[index / 2])
    }

    /// New commands (ids only grow): their monitors pick them up within their poll.
    fn detect_commands(&mut self, now: i64) -> Result<(), String> {
        while let Some(row) = self
            .monitor_db
            .command(self.commands_seen + 1)
            .map_err(|e| format!("command: {e}"))?
        {
            self.commands_seen = row.id;
            if let Some(i) = self.monitors.iter().position(|m| m.uuid == row.hm) {
                self.command_due.insert(i);
            }
        }
        if !self.command_due.is_empty() && self.command_poll.is_none() {
            self.command_poll = Some(now + self.cfg.timers.command_poll_ms);
        }
        Ok(())
    }

    /// Follow the platform's recorded actions into the agents; returns them.
    pub(crate) fn follow_platform(&mut self, by: &str) -> Vec<CallRecord> {
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
            self.note_about(
                r.end_ms,
                r.vm,
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
    fn read_events(&mut self) -> Result<(), String> {
        loop {
            let rows = self
                .monitor_db
                .events_after(self.last_event, 500)
                .map_err(|e| format!("events_after: {e}"))?;
            if rows.is_empty() {
                return Ok(());
            }
            for r in rows {
                self.last_event = r.id;
                let vm = r.vm.as_ref().map(short).unwrap_or_default();
                self.note_about(
                    r.created_ms,
                    r.vm,
                    format_args!("event {} {vm} {}", r.kind, r.text),
                );
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
            .monitor_db
            .commands_for(&hm, after, 1_000)
            .map_err(|e| format!("commands_for: {e}"))?;
        // Act, commit what the actions wrote, then mark the commands done (hmd marks a
        // command done after the transitions of its action are committed).
        let mut done = Vec::new();
        for row in rows {
            let command = match row.kind {
                hsdb::CommandKind::StopMonitoring => MonitorCommand::StopMonitoring,
                hsdb::CommandKind::StartMonitoring => MonitorCommand::StartMonitoring,
                hsdb::CommandKind::ForgetVm => MonitorCommand::ForgetVm,
                hsdb::CommandKind::FetchAppReport | hsdb::CommandKind::ConfirmAppReport => {
                    // The simulated monitors talk to no agent: no report to fetch.
                    self.monitors[index].last_command = row.id;
                    done.push((row.id, "NO_SESSION: the simulated monitor has no agents"));
                    continue;
                }
            };
            let result = self.monitors[index].command(row.vm, command, now);
            self.monitors[index].last_command = row.id;
            done.push((row.id, result));
        }
        let batch = self.monitors[index].take_transitions();
        self.write(&vec![index; batch.len()], now, &batch)?;
        for (id, result) in done {
            self.monitor_db
                .complete_command(id, result, now)
                .map_err(|e| format!("complete_command: {e}"))?;
        }
        self.monitor_due[index] = Some(now);
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

    /// The VMFDT `vm` is judged with.
    fn vmfdt_of(&self, vm: &Uuid) -> i64 {
        self.vmfdt.get(vm).copied().unwrap_or(self.cfg.vmfdt_ms)
    }

    /// The host `vm`'s guest runs on (`HostId(0)` if none: never for a VM that can fail).
    fn vm_host(&self, vm: &Uuid) -> HostId {
        self.ground
            .agents
            .get(vm)
            .and_then(|a| a.host)
            .unwrap_or(HostId(0))
    }

    /// An impairment of host number `h` begins (see [`Checker::hold`]).
    fn hold_host(&mut self, h: usize) {
        self.checker.hold(host_id(h));
    }

    /// An impairment of host number `h` ends at `now` (see [`Checker::release`]).
    fn release_host(&mut self, h: usize, now: i64) {
        self.checker.release(host_id(h), now);
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
                    self.note_about(now, Some(vm), format_args!("heal vm {}", short(&vm)));
                }
            }
            Agenda::AgentRestart { vm, generation } => {
                if self.generation.get(&vm) == Some(&generation) {
                    let world = self.platform.world();
                    self.ground.restart_agent(&vm, &world, now);
                    drop(world);
                    self.note_about(now, Some(vm), format_args!("heal agent {}", short(&vm)));
                }
            }
            Agenda::AdapterUp { vm, side } => {
                for s in Side::BOTH {
                    if side.is_none_or(|x| x == s) {
                        self.ground.set_adapter(&vm, s, true, now);
                    }
                }
                self.note_about(now, Some(vm), format_args!("heal adapters {}", short(&vm)));
            }
            Agenda::MonitorStart { index } => {
                // A monitor restarts only on a host that runs (its host may have been lost
                // or shut down while it was down; the host's return starts it).
                let host_up = {
                    let world = self.platform.world();
                    world.host_state(&self.host_names[index / 2])
                        == Some(crate::platform::sim::HostState::Up)
                };
                if !host_up || self.planned.contains(&self.host_names[index / 2]) {
                    self.release_host(index / 2, now);
                } else if !self.monitors[index].running() {
                    self.monitors[index]
                        .start(now, &mut self.monitor_db)
                        .map_err(|e| format!("monitor start: {e}"))?;
                    self.monitor_due[index] = Some(now);
                    let name = self.monitor_name(index);
                    self.note(now, format_args!("hm {name} started"));
                    self.take_commands(index, now)?;
                    self.release_host(index / 2, now);
                }
            }
            Agenda::LinkUp { index } => {
                self.monitors[index].set_link(true, now);
                self.monitor_due[index] = Some(now);
                let name = self.monitor_name(index);
                self.note(now, format_args!("hm {name} link up"));
                self.release_host(index / 2, now);
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
                        .start(now, &mut self.monitor_db)
                        .map_err(|e| format!("monitor start: {e}"))?;
                    self.monitor_due[index] = Some(now);
                    self.take_commands(index, now)?;
                }
                // The operator starts the host's VMs again.
                self.operator_power_on(host, &vms, now)?;
            }
            Agenda::HypervisorBack { host } => {
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_hypervisor_reachable(&name, true)
                    .map_err(sim_err)?;
                self.note(now, format_args!("host {name} hypervisor answers again"));
                self.release_host(host, now);
            }
            Agenda::SlowEnd { host } => {
                let name = self.host_names[host].clone();
                self.platform
                    .world()
                    .set_host_latency(&name, 0)
                    .map_err(sim_err)?;
                self.note(now, format_args!("host {name} fast again"));
                self.release_host(host, now);
            }
        }
        Ok(())
    }

    /// The operator starts the unmanaged VMs defined on `host` that run nowhere.
    fn operator_start_unmanaged(&mut self, host: usize, now: i64) -> Result<(), String> {
        let name = self.host_names[host].clone();
        let vms: Vec<Uuid> = self
            .platform
            .world()
            .vms_defined_on(&name)
            .into_iter()
            .filter(|vm| !self.managed.contains(vm))
            .collect();
        self.operator_power_on(host, &vms, now)
    }

    /// The operator powers `vms` on where they are defined on `host`, each that runs
    /// nowhere (outside the control plane: `SimWorld::vm_power_on`).
    fn operator_power_on(&mut self, host: usize, vms: &[Uuid], now: i64) -> Result<(), String> {
        let name = self.host_names[host].clone();
        let mut world = self.platform.world();
        for vm in vms {
            if !world.vm_running_on(vm).is_empty() || !world.vm_defined_on(vm).contains(&name) {
                continue;
            }
            world.vm_power_on(&name, vm).map_err(|e| e.to_string())?;
            self.ground.sync_vm(&world, vm, now, true);
            let g = self.generation.entry(*vm).or_insert(0);
            *g += 1;
            self.trace.push(format!(
                "{:>10}.{:03} operator power_on {name} {}",
                (now - self.cfg.start_ms) / 1000,
                (now - self.cfg.start_ms) % 1000,
                short(vm)
            ));
        }
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
                let host = self.vm_host(&vm);
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
                            self.checker.failure(
                                vm,
                                host,
                                FailureKind::VmHang,
                                now,
                                self.cfg.vmfdt_ms,
                            );
                        }
                    }
                }
                self.note_about(
                    now,
                    Some(vm),
                    format_args!("fault vm_hang {} heals_after={heals_after:?}", short(&vm)),
                );
            }
            FaultKind::OsCrash { vm } => {
                if !self.vm_can_fail(&vm, true) {
                    return Ok(());
                }
                let host = self.vm_host(&vm);
                self.count("os_crash");
                {
                    let mut world = self.platform.world();
                    world.vm_os_crash(&vm).map_err(sim_err)?;
                    self.ground.sync_vm(&world, &vm, now, false);
                }
                self.bump(&vm);
                if self.managed.contains(&vm) {
                    self.checker
                        .failure(vm, host, FailureKind::OsCrash, now, self.vmfdt_of(&vm));
                }
                self.note_about(now, Some(vm), format_args!("fault os_crash {}", short(&vm)));
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
                self.note_about(
                    now,
                    Some(vm),
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
                self.note_about(
                    now,
                    Some(vm),
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
                self.hold_host(host);
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
                self.hold_host(host);
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
                    self.hold_host(host);
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
                let managed = on.iter().filter(|vm| self.managed.contains(vm)).count();
                let managed = i64::try_from(managed).unwrap_or(i64::MAX);
                for vm in &on {
                    if self.managed.contains(vm) {
                        self.checker.failure(
                            *vm,
                            host_id(host),
                            FailureKind::HostLoss,
                            now,
                            managed,
                        );
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
                // A VM that failed on the host and that a restart in progress already
                // stopped there is not among the guests that shut down, yet it failed
                // before the shutdown began: the engine may go on and start it elsewhere.
                for vm in self.checker.open_on(host_id(host)) {
                    if !on.contains(&vm) {
                        self.failed_before_shutdown.insert(vm);
                    }
                }
                // The guests shut down: the agents that run say goodbye (SUSPENDED); a
                // hung or crashed guest just powers off. The operator takes the host's
                // failed VMs over: no longer the engine's to act on.
                for vm in &on {
                    let up = self
                        .ground
                        .agents
                        .get(vm)
                        .is_some_and(|a| a.health == super::agents::GuestHealth::Up);
                    if up {
                        self.ground.stop_agent(vm, now);
                    }
                    if self.checker.episode(vm).is_some() {
                        self.failed_before_shutdown.insert(*vm);
                    }
                    self.checker.healed(vm);
                    self.bump(vm);
                }
                self.step_monitors(now)?;
                // … then the monitors stop with NODE_SHUTDOWN, then the host powers off.
                for side in Side::BOTH {
                    let index = 2 * host + side.index();
                    self.monitors[index].stop_gracefully(now);
                    let batch = self.monitors[index].take_transitions();
                    self.write(&vec![index; batch.len()], now, &batch)?;
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
                self.hold_host(host);
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
                self.hold_host(host);
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
            FaultKind::Doorbell { vm, vector } => {
                let Some(host) = self.ground.agents.get(&vm).and_then(|a| a.host) else {
                    return Ok(());
                };
                let Some(index) = self
                    .monitors
                    .iter()
                    .position(|m| m.host == host && m.running())
                else {
                    return Ok(());
                };
                self.count("doorbell");
                if vector & crate::fde::DBELL_APP_CRITICAL_FAILURE != 0 {
                    // The engine restarts a VM whose critical application failed: not
                    // the restart of a live VM the invariant forbids.
                    self.checker.allow_restart(vm);
                }
                let hm = self.monitors[index].uuid;
                let batch = [Transition::Doorbell {
                    vm,
                    hm,
                    vector,
                    at: now,
                }];
                self.write(&[index], now, &batch)?;
                self.note_about(
                    now,
                    Some(vm),
                    format_args!("fault doorbell {} vector={vector:#x}", short(&vm)),
                );
            }
            FaultKind::LiveMigration { vm, to } => {
                let to_name = self.host_names[to].clone();
                let spec = {
                    let world = self.platform.world();
                    let from = world.vm_running_on(&vm);
                    if from.len() != 1 || from[0] == to_name || !world.vm_alive(&vm) {
                        return Ok(());
                    }
                    world.vm_spec(&vm).cloned()
                };
                let Some(spec) = spec else {
                    return Ok(());
                };
                self.count("live_migration");
                let from = self.platform.world().vm_running_on(&vm)[0].clone();
                {
                    // The guest keeps running: off here, on there, no boot in between.
                    let mut world = self.platform.world();
                    world.vm_power_off(&vm).map_err(sim_err)?;
                    let boot = u64::try_from(self.cfg.boot_ms).unwrap_or(0);
                    world.set_boot_ms(0);
                    drop(world);
                    let started = self.platform.start(&to_name, &spec);
                    let _ = self.platform.cleanup(&from, &vm);
                    let mut world = self.platform.world();
                    world.set_boot_ms(boot);
                    world.clear_history();
                    started.map_err(|e| format!("live migration: {e}"))?;
                    if let Some(id) = self.ground.host_id(&to_name) {
                        self.ground.migrate(&vm, id, now);
                    }
                }
                self.bump(&vm);
                self.note_about(
                    now,
                    Some(vm),
                    format_args!("fault live_migration {} {from} -> {to_name}", short(&vm)),
                );
            }
            FaultKind::MonitorStop {
                host,
                side,
                downtime,
            } => {
                let index = 2 * host + side.index();
                if !self.monitors[index].running() {
                    return Ok(());
                }
                self.count("monitor_stop");
                self.hold_host(host);
                self.monitors[index].stop_gracefully(now);
                let batch = self.monitors[index].take_transitions();
                self.write(&vec![index; batch.len()], now, &batch)?;
                self.monitor_due[index] = None;
                self.push(now + downtime, Agenda::MonitorStart { index });
                let name = self.monitor_name(index);
                self.note(
                    now,
                    format_args!("fault hm {name} stopped for {downtime} ms"),
                );
            }
            FaultKind::LostAcks { count } => {
                // Handed to the engine by the simulation after this step.
                self.lost_acks = self.lost_acks.saturating_add(count);
                self.count("lost_acks");
                self.note(now, format_args!("fault next {count} acks lost"));
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
    /// needs it managed and its agent running: a VM whose agent was stopped on purpose
    /// is not watched by heartbeats (the seed's eligibility rule, seed 004 L15479-15481),
    /// so its hang is no failure the engine can be held to.
    fn vm_can_fail(&self, vm: &Uuid, permanent: bool) -> bool {
        if self.checker.episode(vm).is_some() {
            return false;
        }
        if permanent {
            let Some(agent) = self.ground.agents.get(vm) else {
                return false;
            };
            let watched = agent.has_agent
                && agent.health == super::agents::GuestHealth::Up
                && agent.host.is_some_and(|h| {
                    self.monitors
                        .iter()
                        .any(|m| m.host == h && m.watching(vm, agent.run))
                });
            if !self.managed.contains(vm) || !watched {
                return false;
            }
        }
        let world = self.platform.world();
        world.vm_alive(vm) && world.vm_fault(vm).is_none()
    }

    /// Check the invariants at `now`; true if one is broken (kept for [`SimState::check`]).
    fn check_quiet(&mut self, now: i64) -> bool {
        if std::mem::take(&mut self.world_changed) {
            let world = self.platform.world();
            self.checker.check_running_once(&world, &self.vms, now);
        }
        self.checker.check_deadlines(now);
        self.checker.has_violations()
    }

    /// Check the invariants after a step; the first broken one ends the run.
    fn check(&mut self, now: i64) -> Result<(), Box<SimViolation>> {
        self.check_quiet(now);
        let broken = self.checker.take_violations();
        if let Some((rule, vm, at, detail)) = broken.into_iter().next() {
            return Err(Box::new(SimViolation {
                seed: self.cfg.seed,
                step: self.step,
                at_ms: at,
                rule,
                vm,
                detail,
                vm_history: vm.map(|v| self.trace.about(&v)).unwrap_or_default(),
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
