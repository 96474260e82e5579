//! A simulated host monitor: writes into the HSDB what `hmd` writes, when `hmd` writes it.
//!
//! What it mirrors of `hmd` (hmd/src/runtime, dataplane/src/heartbeat.rs):
//! - at start, `register_hm` with a new incarnation, one `HmInterface` row for its HA
//!   link, and the previous run's DETECTED VMs watched again: MISSING unless they re-pair
//!   within one Hello period plus `vm_miss_after` (seed 004 L8365-8367, vioHmRestartVMs);
//! - its own heartbeat (`HmHeartbeat`) at start and every `hm_heartbeat_period`;
//! - an agent pairs at the monitor's next Hello once it runs, is ready and its adapter is
//!   up: `Discovered` (which also records DETECTED), then `Detected` on its first
//!   heartbeat, sent at once;
//! - `Missing` at the first instant `last heartbeat + vm_miss_after` has passed (seed
//!   004 L12733-12735: ~19-20 s with the seed's 10 s heartbeat); `Detected` when
//!   heartbeats resume; `Suspended` on a graceful agent stop;
//! - a link without carrier (`HmInterface` DOWN): the monitor hears nothing, its misses
//!   are withheld, and once it hears again every VM is owed a full `vm_miss_after`;
//! - a kill writes nothing; a graceful stop writes `HmEvent` DOWN with the seed's
//!   node-shutdown reason 0x40 (seed 004 L7012-7014);
//! - commands from the control plane: stop watching a VM, start again, forget it.
//!
//! The monitor is stepped by the simulation at the times it asks for
//! ([`SimMonitor::next_due`]) and whenever the agents of its host changed; it never reads
//! a clock.

use std::collections::{BTreeMap, BTreeSet};

use hsdb::{
    HeartbeatState, HelloId, HmRecord, HmState, HostId, Hsdb, InterfaceState, MacAddr, Transition,
    Uuid, Version,
};

use super::agents::{Agent, Side, next_tick};

/// The seed's reason code for a node shut down on purpose (CAA `REASON=NODE_SHUTDOWN`,
/// seed 004 L7012-7014); `hmd` writes it on a graceful stop.
pub const NODE_SHUTDOWN: u32 = 0x40;

/// The HVNCP version the simulated monitors and agents speak.
const VERSION: Version = Version { major: 1, minor: 0 };

/// The name of each simulated monitor's HA interface.
pub const INTERFACE: &str = "ent1";

/// The heartbeat timers of the monitors and agents (`hmd.toml`, docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorTimers {
    /// Agent heartbeat period (`hb_period_ms`; seed 004 L12594-12595: 10 s).
    pub hb_period_ms: i64,
    /// Silence after which a VM is MISSING (`vm_miss_after_ms`; default 2 × hb period,
    /// the seed's "around 19 seconds", seed 004 L12733-12735).
    pub vm_miss_after_ms: i64,
    /// Hello broadcast period (`hello_period_ms`; seed 004 L8313: 30 s).
    pub hello_period_ms: i64,
    /// The monitor's own heartbeat into the HSDB (`hm_heartbeat_period_ms`; 30 s).
    pub hm_heartbeat_period_ms: i64,
    /// How long `hmd` takes at most to pick up a command from the HSDB queue (the
    /// commands path's stated bound, ≤ 1 s).
    pub command_poll_ms: i64,
    /// From a VM's start on a host to its agent answering Hellos (guest boot).
    pub agent_boot_ms: i64,
}

impl MonitorTimers {
    /// `hmd`'s and `vmmd`'s defaults: the seed's numbers.
    pub const fn seed() -> MonitorTimers {
        MonitorTimers {
            hb_period_ms: 10_000,
            vm_miss_after_ms: 20_000,
            hello_period_ms: 30_000,
            hm_heartbeat_period_ms: 30_000,
            command_poll_ms: 1_000,
            agent_boot_ms: 30_000,
        }
    }

    /// The fast profile of docs/hvncp.md §5: heartbeat 1 s, missing after 3 s, Hello 2 s.
    pub const fn fast() -> MonitorTimers {
        MonitorTimers {
            hb_period_ms: 1_000,
            vm_miss_after_ms: 3_000,
            hello_period_ms: 2_000,
            hm_heartbeat_period_ms: 1_000,
            command_poll_ms: 500,
            agent_boot_ms: 3_000,
        }
    }

    /// The longest a dead agent stays DETECTED on a hearing monitor: the last heartbeat
    /// left at most one period before the death, MISSING follows `vm_miss_after` after it.
    pub const fn miss_time_ms(&self) -> i64 {
        self.vm_miss_after_ms
    }
}

/// What a monitor knows of one VM it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watch {
    /// The agent run it paired with.
    run: u32,
    /// Last state written.
    state: HeartbeatState,
    /// Last heartbeat heard (or the instant monitoring started again).
    last_seen: i64,
    /// The control plane stopped HA monitoring of the VM: the session is kept, its
    /// silence is not a miss.
    stopped: bool,
}

/// A command the monitor carries out (the HSDB command queue's kinds), as `hmd` does
/// (hmd/src/runtime/commands.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorCommand {
    /// Stop watching the VM: its sessions are kept but its silence is never a miss; a
    /// session it opens meanwhile (it rebooted) is not watched either.
    StopMonitoring,
    /// Watch the VM again from now: an established session owes a heartbeat within
    /// `vm_miss_after`; without one, the VM is awaited and MISSING unless it pairs within
    /// a Hello period plus `vm_miss_after`.
    StartMonitoring,
    /// The VM moved away: drop its session and every record of it (if it still talks to
    /// this monitor it pairs again and is discovered again).
    ForgetVm,
}

/// One simulated `hmd`.
#[derive(Debug)]
pub struct SimMonitor {
    /// The monitor's UUID.
    pub uuid: Uuid,
    /// Its host.
    pub host: HostId,
    /// Which of the host's two monitors.
    pub side: Side,
    mac: MacAddr,
    timers: MonitorTimers,
    /// Runs so far (the incarnation's suffix).
    incarnation: u32,
    running: bool,
    /// Start of the current run: Hellos go out at `started_at + k × hello_period`.
    started_at: i64,
    /// The HA link has carrier.
    hearing: bool,
    /// Since when it hears (or since the start).
    hearing_since: i64,
    next_hm_heartbeat: i64,
    watches: BTreeMap<Uuid, Watch>,
    /// VMs the control plane told this monitor not to watch.
    unwatched: BTreeSet<Uuid>,
    /// VMs forgotten, and when: their agent pairs again at the first Hello after that.
    pair_after: BTreeMap<Uuid, i64>,
    /// VMs told to be watched again that had no session: MISSING unless they pair by the
    /// deadline.
    awaiting: BTreeMap<Uuid, i64>,
    /// The previous run's DETECTED VMs that have not re-paired yet, and the deadline.
    rewatch: BTreeSet<Uuid>,
    rewatch_deadline: i64,
    /// Highest command id taken from the queue.
    pub last_command: i64,
    out: Vec<Transition>,
}

impl SimMonitor {
    /// A monitor not started yet.
    pub fn new(uuid: Uuid, host: HostId, side: Side, timers: MonitorTimers) -> SimMonitor {
        let b = uuid.0;
        SimMonitor {
            uuid,
            host,
            side,
            mac: MacAddr([0x02, b[11], b[12], b[13], b[14], b[15]]),
            timers,
            incarnation: 0,
            running: false,
            started_at: 0,
            hearing: true,
            hearing_since: 0,
            next_hm_heartbeat: 0,
            watches: BTreeMap::new(),
            unwatched: BTreeSet::new(),
            pair_after: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            rewatch: BTreeSet::new(),
            rewatch_deadline: 0,
            last_command: 0,
            out: Vec::new(),
        }
    }

    /// The process runs.
    pub fn running(&self) -> bool {
        self.running
    }

    /// The HA link has carrier.
    pub fn hearing(&self) -> bool {
        self.hearing
    }

    /// The VMs this monitor currently watches, with the state last written.
    pub fn watched(&self) -> impl Iterator<Item = (&Uuid, HeartbeatState)> {
        self.watches.iter().map(|(vm, w)| (vm, w.state))
    }

    /// The monitor runs and watches agent run `run` of `vm` (paired with it, monitoring
    /// not stopped, not suspended): its silence would be noticed.
    pub fn watching(&self, vm: &Uuid, run: u32) -> bool {
        self.running
            && self
                .watches
                .get(vm)
                .is_some_and(|w| w.run == run && !w.stopped && w.state != HeartbeatState::Suspended)
    }

    /// Start (or restart) at `now`: register, report the link, re-watch the VMs the
    /// previous run left DETECTED.
    pub fn start(&mut self, now: i64, hsdb: &mut Hsdb) -> hsdb::Result<()> {
        self.incarnation = self.incarnation.wrapping_add(1);
        let secs = u64::try_from(now.div_euclid(1000)).unwrap_or(0);
        let nanos = u32::try_from(now.rem_euclid(1000) * 1_000_000).unwrap_or(0);
        hsdb.register_hm(&HmRecord {
            uuid: self.uuid,
            host: self.host,
            mac: self.mac,
            incarnation: HelloId {
                secs,
                nanos,
                suffix: self.incarnation,
            },
            version: VERSION,
            at: now,
        })?;
        hsdb.apply(&[Transition::HmInterface {
            hm: self.uuid,
            interface: INTERFACE.to_string(),
            state: if self.hearing {
                InterfaceState::Up
            } else {
                InterfaceState::Down
            },
            at: now,
        }])?;
        // What the previous run left: DETECTED rows are watched again, STOPPED ones stay
        // unwatched until a START (hmd/src/runtime/start.rs).
        let rows = hsdb.vm_hms_of(&self.uuid)?;
        self.unwatched = rows
            .iter()
            .filter(|row| row.last_state == HeartbeatState::Stopped)
            .map(|row| row.vm)
            .collect();
        self.rewatch = rows
            .iter()
            .filter(|row| row.last_state == HeartbeatState::Detected)
            .map(|row| row.vm)
            .collect();
        self.rewatch_deadline = now + self.timers.hello_period_ms + self.timers.vm_miss_after_ms;
        self.watches.clear();
        self.awaiting.clear();
        self.running = true;
        self.started_at = now;
        self.hearing_since = now;
        self.next_hm_heartbeat = now;
        Ok(())
    }

    /// Killed (`kill -9`, a crash, its host lost): writes nothing, forgets its tables.
    pub fn kill(&mut self) {
        self.running = false;
        self.watches.clear();
        self.awaiting.clear();
        self.rewatch.clear();
        self.out.clear();
    }

    /// Stopped on purpose (the host's planned shutdown): the seed's node-down event.
    pub fn stop_gracefully(&mut self, now: i64) {
        if !self.running {
            return;
        }
        self.out.push(Transition::HmEvent {
            hm: self.uuid,
            state: HmState::Down,
            reason: NODE_SHUTDOWN,
            text: "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN\n".to_string(),
            at: now,
        });
        self.running = false;
        self.watches.clear();
        self.awaiting.clear();
        self.rewatch.clear();
    }

    /// The HA link lost (`up == false`) or regained its carrier at `now`.
    pub fn set_link(&mut self, up: bool, now: i64) {
        if up == self.hearing {
            return;
        }
        self.hearing = up;
        if up {
            self.hearing_since = now;
            // hmd: the re-watch deadline moves to a Hello period plus vm_miss_after from
            // now, if later.
            self.rewatch_deadline = self
                .rewatch_deadline
                .max(now + self.timers.hello_period_ms + self.timers.vm_miss_after_ms);
        }
        if self.running {
            self.out.push(Transition::HmInterface {
                hm: self.uuid,
                interface: INTERFACE.to_string(),
                state: if up {
                    InterfaceState::Up
                } else {
                    InterfaceState::Down
                },
                at: now,
            });
        }
    }

    /// Carry out a command from the control plane at `now`, writing what `hmd` writes
    /// for it (`StopWatching`, `StartWatching`, `Forget`: the row says it, so a restart
    /// keeps a stopped VM unwatched).
    ///
    /// Returns the result `hmd` reports (`STOPPED`, `ALREADY_STOPPED`, `STARTED`,
    /// `AWAITING_PAIRING`, `FORGOTTEN`, `UNKNOWN_VM`; hmd/src/commands.rs).
    pub fn command(&mut self, vm: Uuid, command: MonitorCommand, now: i64) -> &'static str {
        let hm = self.uuid;
        match command {
            MonitorCommand::StopMonitoring => {
                let already = !self.unwatched.insert(vm);
                if let Some(w) = self.watches.get_mut(&vm) {
                    w.stopped = true;
                }
                self.rewatch.remove(&vm);
                self.awaiting.remove(&vm);
                self.out.push(Transition::StopWatching { vm, hm, at: now });
                if already {
                    "ALREADY_STOPPED"
                } else {
                    "STOPPED"
                }
            }
            MonitorCommand::StartMonitoring => {
                self.unwatched.remove(&vm);
                self.out.push(Transition::StartWatching { vm, hm, at: now });
                match self.watches.get_mut(&vm) {
                    Some(w) => {
                        w.stopped = false;
                        w.last_seen = w.last_seen.max(now);
                        // Watched afresh, as hmd does and as the row now says (the stop
                        // cleared its miss time, StartWatching made it DETECTED): a VM
                        // that was MISSING when stopped and is still silent is declared
                        // MISSING again vm_miss_after from the command.
                        if w.state == HeartbeatState::Missing {
                            w.state = HeartbeatState::Detected;
                        }
                        "STARTED"
                    }
                    None => {
                        let deadline =
                            now + self.timers.hello_period_ms + self.timers.vm_miss_after_ms;
                        self.awaiting.insert(vm, deadline);
                        "AWAITING_PAIRING"
                    }
                }
            }
            MonitorCommand::ForgetVm => {
                let known = self.watches.remove(&vm).is_some()
                    | self.rewatch.remove(&vm)
                    | self.awaiting.remove(&vm).is_some()
                    | self.unwatched.remove(&vm);
                self.pair_after.insert(vm, now);
                self.out.push(Transition::Forget { vm, hm, at: now });
                if known { "FORGOTTEN" } else { "UNKNOWN_VM" }
            }
        }
    }

    /// The transitions written since the last call, to apply as one batch.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.out)
    }

    /// The first Hello at or after `at`.
    fn next_hello(&self, at: i64) -> i64 {
        next_tick(self.started_at, self.timers.hello_period_ms, at)
    }

    /// When the agent would pair with this monitor, if it would: at the first Hello it
    /// can hear.
    fn pair_time(&self, agent: &Agent) -> Option<i64> {
        if agent.host != Some(self.host) || !agent.can_pair(self.side) {
            return None;
        }
        if let Some(w) = self.watches.get(&agent.vm)
            && w.run == agent.run
        {
            return None;
        }
        let from = agent
            .flowing_since(self.side)
            .max(self.started_at)
            .max(self.hearing_since)
            .max(self.pair_after.get(&agent.vm).copied().unwrap_or(i64::MIN));
        Some(self.next_hello(from))
    }

    /// Step to `now`: write the transitions due. `agents` is every agent; `on_host` the
    /// VMs whose guest runs on this monitor's host.
    pub fn step<'a>(
        &mut self,
        now: i64,
        agents: &BTreeMap<Uuid, Agent>,
        on_host: impl Iterator<Item = &'a Uuid>,
    ) {
        if !self.running {
            return;
        }
        let (hm, hb) = (self.uuid, self.timers.hb_period_ms);
        if now >= self.next_hm_heartbeat {
            self.out.push(Transition::HmHeartbeat { hm, at: now });
            self.next_hm_heartbeat = now + self.timers.hm_heartbeat_period_ms;
        }
        if !self.hearing {
            // Deaf: nothing heard, every verdict withheld.
            return;
        }
        // Watched VMs: heartbeats heard, graceful stops, misses.
        for (vm, w) in &mut self.watches {
            if w.stopped {
                continue;
            }
            let agent = agents.get(vm);
            if let Some(agent) = agent
                && let Some(last) = agent.last_heartbeat(self.host, w.run, self.side, now, hb)
                && last > w.last_seen
            {
                w.last_seen = last;
                if w.state == HeartbeatState::Missing {
                    w.state = HeartbeatState::Detected;
                    self.out.push(Transition::Detected {
                        vm: *vm,
                        hm,
                        at: now,
                    });
                }
            }
            if let Some(agent) = agent
                && agent.host == Some(self.host)
                && agent.run == w.run
                && let super::agents::GuestHealth::AgentStopped { at } = agent.health
                && at <= now
                && agent.adapter_up(self.side)
                && w.state != HeartbeatState::Suspended
            {
                w.state = HeartbeatState::Suspended;
                self.out.push(Transition::Suspended {
                    vm: *vm,
                    hm,
                    at: now,
                });
                continue;
            }
            let deadline = w.last_seen.max(self.hearing_since) + self.timers.vm_miss_after_ms;
            if w.state == HeartbeatState::Detected && now >= deadline {
                w.state = HeartbeatState::Missing;
                self.out.push(Transition::Missing {
                    vm: *vm,
                    hm,
                    at: now,
                });
            }
        }
        // Agents of this host that pair now.
        for vm in on_host {
            let Some(agent) = agents.get(vm) else {
                continue;
            };
            let Some(at) = self.pair_time(agent) else {
                continue;
            };
            if now < at {
                continue;
            }
            let side_byte = u8::try_from(self.side.index()).unwrap_or(0);
            let b = vm.0;
            self.out.push(Transition::Discovered {
                vm: *vm,
                hm,
                mac: MacAddr([0x06, side_byte, b[12], b[13], b[14], b[15]]),
                ostype: "Linux".to_string(),
                ver_lower: VERSION,
                ver_upper: VERSION,
                at: now,
            });
            let stopped = self.unwatched.contains(vm);
            if !stopped {
                self.out.push(Transition::Detected {
                    vm: *vm,
                    hm,
                    at: now,
                });
            }
            self.rewatch.remove(vm);
            self.pair_after.remove(vm);
            self.awaiting.remove(vm);
            self.watches.insert(
                *vm,
                Watch {
                    run: agent.run,
                    state: HeartbeatState::Detected,
                    last_seen: now,
                    stopped,
                },
            );
        }
        // VMs told to be watched again that did not pair in time.
        let late: Vec<Uuid> = self
            .awaiting
            .iter()
            .filter(|(_, deadline)| now >= **deadline)
            .map(|(vm, _)| *vm)
            .collect();
        for vm in late {
            self.awaiting.remove(&vm);
            self.out.push(Transition::Missing { vm, hm, at: now });
        }
        // The previous run's VMs that did not re-pair.
        if !self.rewatch.is_empty() && now >= self.rewatch_deadline {
            for vm in std::mem::take(&mut self.rewatch) {
                self.out.push(Transition::Missing { vm, hm, at: now });
            }
        }
    }

    /// The next time this monitor has something to do, given the agents as they are now
    /// (the simulation steps it again whenever an agent of its host changes).
    pub fn next_due<'a>(
        &self,
        now: i64,
        agents: &BTreeMap<Uuid, Agent>,
        on_host: impl Iterator<Item = &'a Uuid>,
    ) -> Option<i64> {
        if !self.running {
            return None;
        }
        let mut due = self.next_hm_heartbeat;
        if !self.hearing {
            return Some(due);
        }
        let hb = self.timers.hb_period_ms;
        for (vm, w) in &self.watches {
            if w.stopped {
                continue;
            }
            let agent = agents.get(vm);
            let flowing = agent.is_some_and(|a| a.flowing_to(self.host, w.run, self.side));
            match w.state {
                HeartbeatState::Detected if !flowing => {
                    let last = agent
                        .and_then(|a| a.last_heartbeat(self.host, w.run, self.side, now, hb))
                        .map_or(w.last_seen, |t| t.max(w.last_seen));
                    let deadline = last.max(self.hearing_since) + self.timers.vm_miss_after_ms;
                    due = due.min(deadline);
                }
                HeartbeatState::Missing if flowing => {
                    if let Some(next) = agent.and_then(|a| a.next_heartbeat(self.side, now, hb)) {
                        due = due.min(next);
                    }
                }
                _ => {}
            }
        }
        for vm in on_host {
            if let Some(at) = agents.get(vm).and_then(|a| self.pair_time(a)) {
                due = due.min(at);
            }
        }
        if !self.rewatch.is_empty() {
            due = due.min(self.rewatch_deadline);
        }
        if let Some(first) = self.awaiting.values().min() {
            due = due.min(*first);
        }
        Some(due.max(now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::simulation::agents::GuestHealth;
    use hsdb::HostRecord;

    const T0: i64 = 1_700_000_000_000;

    fn setup() -> (Hsdb, SimMonitor, BTreeMap<Uuid, Agent>, Uuid) {
        let mut db = Hsdb::open_in_memory().unwrap();
        db.upsert_host(&HostRecord {
            id: HostId(1),
            name: "host-a".into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: "1".into(),
            cpu_milli: 8000,
            memory_mb: 8192,
            host_group: "hg".into(),
        })
        .unwrap();
        let m = SimMonitor::new(Uuid([1; 16]), HostId(1), Side::A, MonitorTimers::seed());
        let vm = Uuid([9; 16]);
        let mut agents = BTreeMap::new();
        agents.insert(vm, Agent::new(vm, 0, true));
        (db, m, agents, vm)
    }

    /// Step the monitor through every due time up to `until`, applying its writes.
    fn run(
        db: &mut Hsdb,
        m: &mut SimMonitor,
        agents: &BTreeMap<Uuid, Agent>,
        mut now: i64,
        until: i64,
        log: &mut Vec<(i64, String)>,
    ) -> i64 {
        loop {
            let on_host: Vec<Uuid> = agents
                .values()
                .filter(|a| a.host == Some(m.host))
                .map(|a| a.vm)
                .collect();
            m.step(now, agents, on_host.iter());
            for t in m.take_transitions() {
                if !matches!(
                    t,
                    Transition::HmHeartbeat { .. } | Transition::HmInterface { .. }
                ) {
                    log.push((now, t.kind().to_string()));
                }
                db.apply(&[t]).unwrap();
            }
            let next = m.next_due(now, agents, on_host.iter()).unwrap();
            let next = if next <= now { now + 1 } else { next };
            if next > until {
                return until;
            }
            now = next;
        }
    }

    #[test]
    fn test_pairs_at_next_hello_and_declares_missing_after_vm_miss_after() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        let a = agents.get_mut(&vm).unwrap();
        a.boot(HostId(1), T0 + 1_000, T0 + 5_000, 10_000);
        // The simulation refreshes the agent when it is ready.
        a.refresh(T0 + 5_000);
        let mut log = Vec::new();
        // Ready at +5 s; the monitor's Hellos go out at +0, +30 s, …: pairs at +30 s.
        let mut now = run(&mut db, &mut m, &agents, T0, T0 + 60_000, &mut log);
        assert_eq!(
            log,
            vec![
                (T0 + 30_000, "Discovered".to_string()),
                (T0 + 30_000, "Detected".to_string())
            ]
        );
        // Hang at +61 s; heartbeats at +5 s + k·10 s: the last left at +55 s → MISSING
        // at +75 s.
        let a = agents.get_mut(&vm).unwrap();
        a.refresh(now);
        a.set_health(GuestHealth::Hung, T0 + 61_000);
        now = run(
            &mut db,
            &mut m,
            &agents,
            now + 1_000,
            T0 + 200_000,
            &mut log,
        );
        assert_eq!(log[2], (T0 + 75_000, "Missing".to_string()));
        let row = db.vm_hm(&vm, &m.uuid).unwrap().unwrap();
        assert_eq!(row.hb_missed_ms, Some(T0 + 75_000));
        // Back at +205 s: the next heartbeat (+205 s is on the grid) → DETECTED.
        let a = agents.get_mut(&vm).unwrap();
        a.set_health(GuestHealth::Up, T0 + 205_000);
        run(
            &mut db,
            &mut m,
            &agents,
            now + 5_000,
            T0 + 300_000,
            &mut log,
        );
        assert_eq!(log[3], (T0 + 205_000, "Detected".to_string()));
        assert_eq!(log.len(), 4);
        assert_eq!(
            db.vm_hm(&vm, &m.uuid).unwrap().unwrap().last_state,
            HeartbeatState::Detected
        );
    }

    #[test]
    fn test_deaf_monitor_withholds_misses_and_owes_a_full_miss_time() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        agents.get_mut(&vm).unwrap().boot(HostId(1), T0, T0, 10_000);
        let mut log = Vec::new();
        let now = run(&mut db, &mut m, &agents, T0, T0 + 10_000, &mut log);
        assert_eq!(log.len(), 2, "{log:?}");
        m.set_link(false, now);
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::Crashed, now + 500);
        let now = run(&mut db, &mut m, &agents, now, T0 + 100_000, &mut log);
        assert_eq!(log.len(), 2, "no miss while deaf: {log:?}");
        m.set_link(true, now);
        run(&mut db, &mut m, &agents, now, T0 + 200_000, &mut log);
        assert_eq!(log[2], (T0 + 100_000 + 20_000, "Missing".to_string()));
        let ifaces = db.hm_interfaces(&m.uuid).unwrap();
        assert_eq!(ifaces[0].state, InterfaceState::Up);
    }

    /// A restart that failed gives the VM back to its monitors (START after STOP): one
    /// that was MISSING when stopped and is still silent is declared MISSING again, since
    /// the stop cleared its miss time (the 1,000,000-hour campaign's seed 30: a hung VM
    /// whose stop failed on an unreachable hypervisor was never reported again).
    #[test]
    fn test_start_after_stop_declares_a_still_silent_vm_missing_again() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        agents.get_mut(&vm).unwrap().boot(HostId(1), T0, T0, 10_000);
        let mut log = Vec::new();
        let now = run(&mut db, &mut m, &agents, T0, T0 + 10_000, &mut log);
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::Hung, now);
        let now = run(&mut db, &mut m, &agents, now, T0 + 100_000, &mut log);
        assert_eq!(log.last().map(|l| l.1.as_str()), Some("Missing"), "{log:?}");
        assert_eq!(
            m.command(vm, MonitorCommand::StopMonitoring, now),
            "STOPPED"
        );
        let now = run(&mut db, &mut m, &agents, now, now + 5_000, &mut log);
        assert_eq!(
            m.command(vm, MonitorCommand::StartMonitoring, now),
            "STARTED"
        );
        let started = now;
        run(&mut db, &mut m, &agents, now, now + 100_000, &mut log);
        let tail: Vec<&str> = log.iter().rev().take(3).map(|l| l.1.as_str()).collect();
        assert_eq!(
            tail,
            ["Missing", "StartWatching", "StopWatching"],
            "{log:?}"
        );
        let (at, _) = log.last().unwrap();
        assert!(*at >= started + m.timers.vm_miss_after_ms, "{log:?}");
        let row = db.vm_hm(&vm, &m.uuid).unwrap().unwrap();
        assert_eq!(row.last_state, HeartbeatState::Missing);
        assert!(row.hb_missed_ms.is_some());
    }

    #[test]
    fn test_restart_rewatches_and_declares_unpaired_vms_missing() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        agents.get_mut(&vm).unwrap().boot(HostId(1), T0, T0, 10_000);
        let mut log = Vec::new();
        let now = run(&mut db, &mut m, &agents, T0, T0 + 10_000, &mut log);
        m.kill();
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::Hung, now);
        m.start(now + 5_000, &mut db).unwrap();
        run(
            &mut db,
            &mut m,
            &agents,
            now + 5_000,
            T0 + 200_000,
            &mut log,
        );
        // Hello 30 s + miss 20 s after the restart.
        assert_eq!(log[2], (now + 5_000 + 50_000, "Missing".to_string()));
        assert_eq!(db.hm(&m.uuid).unwrap().unwrap().incarnation.suffix, 2);
    }

    #[test]
    fn test_graceful_agent_stop_is_suspended_and_restart_pairs_again() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        agents.get_mut(&vm).unwrap().boot(HostId(1), T0, T0, 10_000);
        let mut log = Vec::new();
        let now = run(&mut db, &mut m, &agents, T0, T0 + 10_000, &mut log);
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::AgentStopped { at: now }, now);
        let now = run(&mut db, &mut m, &agents, now, T0 + 100_000, &mut log);
        assert_eq!(log[2].1, "Suspended");
        assert_eq!(log.len(), 3, "no miss after a graceful stop: {log:?}");
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::Up, now);
        run(&mut db, &mut m, &agents, now, T0 + 200_000, &mut log);
        assert_eq!(log[3], (T0 + 120_000, "Discovered".to_string()));
    }

    #[test]
    fn test_commands_stop_and_start_watching() {
        let (mut db, mut m, mut agents, vm) = setup();
        m.start(T0, &mut db).unwrap();
        agents.get_mut(&vm).unwrap().boot(HostId(1), T0, T0, 10_000);
        let mut log = Vec::new();
        let now = run(&mut db, &mut m, &agents, T0, T0 + 10_000, &mut log);
        assert_eq!(log.len(), 2);
        // Stopped: the row says so, and a hang is no miss.
        assert_eq!(
            m.command(vm, MonitorCommand::StopMonitoring, now),
            "STOPPED"
        );
        agents
            .get_mut(&vm)
            .unwrap()
            .set_health(GuestHealth::Hung, now);
        let now = run(&mut db, &mut m, &agents, now, T0 + 100_000, &mut log);
        assert_eq!(log[2], (T0 + 10_000, "StopWatching".to_string()));
        assert_eq!(log.len(), 3, "{log:?}");
        let row = db.vm_hm(&vm, &m.uuid).unwrap().unwrap();
        assert_eq!(row.last_state, HeartbeatState::Stopped);
        // A restart keeps it unwatched: no re-watch verdict.
        m.kill();
        m.start(now, &mut db).unwrap();
        let now = run(&mut db, &mut m, &agents, now, T0 + 160_000, &mut log);
        assert_eq!(log.len(), 3, "{log:?}");
        // Started again: owed a heartbeat within vm_miss_after from the command; it has no
        // session with this run (the restart dropped it): awaited a Hello + vm_miss_after.
        assert_eq!(
            m.command(vm, MonitorCommand::StartMonitoring, now),
            "AWAITING_PAIRING"
        );
        let now = run(&mut db, &mut m, &agents, now, T0 + 300_000, &mut log);
        assert_eq!(log[3], (T0 + 160_000, "StartWatching".to_string()));
        assert_eq!(log[4], (T0 + 210_000, "Missing".to_string()));
        // Forgotten: its row goes.
        assert_eq!(m.command(vm, MonitorCommand::ForgetVm, now), "UNKNOWN_VM");
        run(&mut db, &mut m, &agents, now, T0 + 310_000, &mut log);
        assert_eq!(log[5], (T0 + 300_000, "Forget".to_string()));
        assert_eq!(db.vm_hm(&vm, &m.uuid).unwrap(), None);
        // A VM stopped on this monitor that pairs here is discovered, not watched.
        let other = Uuid([8; 16]);
        let mut a = Agent::new(other, 0, true);
        a.boot(HostId(1), T0 + 330_000, T0 + 330_000, 10_000);
        agents.insert(other, a);
        m.command(other, MonitorCommand::StopMonitoring, T0 + 330_000);
        let mut log2 = Vec::new();
        run(
            &mut db,
            &mut m,
            &agents,
            T0 + 330_000,
            T0 + 400_000,
            &mut log2,
        );
        assert_eq!(
            log2,
            vec![
                (T0 + 330_000, "StopWatching".to_string()),
                (T0 + 340_000, "Discovered".to_string())
            ]
        );
        // Watched once started, and owed a heartbeat from then: it heartbeats, no miss.
        m.command(other, MonitorCommand::StartMonitoring, T0 + 400_000);
        run(
            &mut db,
            &mut m,
            &agents,
            T0 + 400_000,
            T0 + 500_000,
            &mut log2,
        );
        assert_eq!(log2.len(), 3, "{log2:?}");
        assert_eq!(
            db.vm_hm(&other, &m.uuid).unwrap().unwrap().last_state,
            HeartbeatState::Detected
        );
    }

    #[test]
    fn test_graceful_monitor_stop_writes_node_shutdown() {
        let (mut db, mut m, _agents, _vm) = setup();
        m.start(T0, &mut db).unwrap();
        m.stop_gracefully(T0 + 1_000);
        db.apply(&m.take_transitions()).unwrap();
        let row = db.hm(&m.uuid).unwrap().unwrap();
        assert_eq!((row.state, row.reason), (HmState::Down, NODE_SHUTDOWN));
    }
}
