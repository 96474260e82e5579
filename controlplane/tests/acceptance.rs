//! Acceptance scenarios TC-1…TC-14 (seed-controlplane.md §7) on the `sim` platform and a
//! real HSDB file, all on one virtual clock.
//!
//! Each test is a script: a small harness ([`Bed`]) plays the two monitors of each host
//! the way `hmd` does — registered at start, its own heartbeat into the HSDB, `Discovered`
//! when an agent pairs at a Hello, `Missing` 19 s after the last VM heartbeat (seed 004
//! L12733-12735), `Detected` when heartbeats resume, `HmEvent` DOWN 0x40 on a graceful
//! stop and silence on a crash, the engine's STOP / START / FORGET commands carried out
//! from the HSDB command queue within 0.5 s — reading the ground truth from the
//! `SimWorld` (does the VM's agent heartbeat, which host runs it). Time advances in
//! 0.5 s steps; the engine is ticked when it asks. Every scenario asserts the decisions
//! with their reasons and numbers, the event sequence, the end state (in the world and in
//! the HSDB, every VM running exactly once) and a timing bound computed from the
//! parameters. Ten virtual minutes cost a few milliseconds.
//!
//! Hosts and VMs carry the names of the seed's test bed (seed 004 L17218-17296): host
//! group `HG_TCHU`, hosts `Server-8284-22A-SN101AFDR` (monitors p18v03, p18v04) and
//! `Server-8284-22A-SN10EE85P` (p18v01, p18v02), so event texts read as the seed's.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use controlplane::clock::{Clock, ManualClock};
use controlplane::fde::{Decision, Fde, LosingAcks, Request, ScanReport, Subject, Verdict};
use controlplane::params::GroupParams;
use controlplane::platform::sim::{Call, SimPlatform};
use controlplane::platform::{Platform, VmSpec};
use hsdb::{
    CommandDone, CommandKind, CommandRow, DetectionSpeed, EventRow, HeartbeatState, HelloId,
    HmRecord, HmState, HostId, HostRecord, Hsdb, MacAddr, Options, Priority, RelocationKind,
    Synchronous, Transition, Uuid, Version,
};

/// The scenarios' epoch: 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000;
/// The harness's time step.
const STEP_MS: i64 = 500;
const S: i64 = 1_000;
const GROUP: &str = "HG_TCHU";
/// The source host of the seed's chapter 5 (command outputs, seed-controlplane.md §9).
const SRC: &str = "Server-8284-22A-SN101AFDR";
/// The target host.
const DST: &str = "Server-8284-22A-SN10EE85P";
const V2: Version = Version { major: 2, minor: 0 };
/// The seed's CAA reason for a node shut down on purpose (seed 004 L7012-7014).
const NODE_SHUTDOWN: u32 = 0x40;

/// The timers of the simulated `hmd` and `vmmd`.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// Agent heartbeat period (seed 004 L12594-12595: 10 s).
    hb_period_ms: i64,
    /// Offset of every agent's heartbeats within the period.
    hb_phase_ms: i64,
    /// Silence after the last heartbeat before MISSING (seed 004 L12733-12735: ~19 s).
    miss_after_ms: i64,
    /// Hello period: an agent pairs at its monitor's next Hello (seed 004 L8313: 30 s).
    hello_period_ms: i64,
    /// The monitor's own heartbeat into the HSDB (`hmd`'s default, docs/operations.md).
    hm_heartbeat_period_ms: i64,
    /// How long after it was queued a monitor carries out a command (`hmd` ≤ 1 s).
    command_pickup_ms: i64,
}

impl Timers {
    /// `hmd` and `vmmd` with the seed's numbers.
    const SEED: Timers = Timers {
        hb_period_ms: 10 * S,
        hb_phase_ms: S,
        miss_after_ms: 19 * S,
        hello_period_ms: 30 * S,
        hm_heartbeat_period_ms: 30 * S,
        command_pickup_ms: 500,
    };
}

/// What a monitor knows of one VM it watches.
#[derive(Debug, Clone, Copy)]
struct Watch {
    last_heard: i64,
    missing: bool,
    /// STOP_MONITORING, or a graceful agent stop: its silence is not a miss.
    stopped: bool,
}

/// One simulated `hmd`.
#[derive(Debug)]
struct Monitor {
    uuid: Uuid,
    name: String,
    host: HostId,
    host_name: String,
    running: bool,
    incarnation: u32,
    hello_phase_ms: i64,
    next_hm_beat: i64,
    last_hm_beat: i64,
    watches: BTreeMap<Uuid, Watch>,
    /// VMs whose path to this monitor is cut (it hears nothing from them).
    cut: BTreeSet<Uuid>,
    last_cmd: i64,
    picked: Vec<(CommandRow, i64)>,
}

/// How a VM of a scenario is set up.
#[derive(Debug, Clone, Copy)]
struct VmOpts {
    priority: Priority,
    speed: DetectionSpeed,
    managed: bool,
    agent: bool,
}

impl VmOpts {
    fn new() -> VmOpts {
        VmOpts {
            priority: Priority::Medium,
            speed: DetectionSpeed::Normal,
            managed: true,
            agent: true,
        }
    }
    fn priority(mut self, p: Priority) -> VmOpts {
        self.priority = p;
        self
    }
    fn speed(mut self, s: DetectionSpeed) -> VmOpts {
        self.speed = s;
        self
    }
    fn unmanaged(mut self) -> VmOpts {
        self.managed = false;
        self
    }
    fn agentless(mut self) -> VmOpts {
        self.agent = false;
        self
    }
}

/// A VM missed on a monitor: when, which VM, which monitor.
#[derive(Debug, Clone, Copy)]
struct Miss {
    at: i64,
    vm: Uuid,
    hm: Uuid,
}

/// The test bed: an HSDB file, the sim platform, the monitors, the engine, one clock.
struct Bed {
    _dir: tempfile::TempDir,
    db: Hsdb,
    clock: ManualClock,
    platform: SimPlatform,
    fde: Fde,
    params: GroupParams,
    timers: Timers,
    hosts: Vec<(HostId, String)>,
    monitors: Vec<Monitor>,
    names: BTreeMap<Uuid, String>,
    agentless: BTreeSet<Uuid>,
    next_vm: u8,
    last_step: i64,
    next_step: i64,
    next_wake: i64,
    /// The engine is running (a stopped daemon is not ticked).
    engine_running: bool,
    scans: Vec<(i64, ScanReport)>,
    misses: Vec<Miss>,
    lose_acks: u32,
}

impl Bed {
    /// The seed's two hosts, two monitors each, with `params` and the seed's timers.
    fn new(params: GroupParams) -> Bed {
        Bed::with_hosts(
            params,
            Timers::SEED,
            &[(SRC, ["p18v03", "p18v04"]), (DST, ["p18v01", "p18v02"])],
        )
    }

    fn with_hosts(params: GroupParams, timers: Timers, hosts: &[(&str, [&str; 2])]) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        };
        let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).unwrap();
        let clock = ManualClock::new(T0);
        let platform = SimPlatform::empty(clock.clone(), 4);
        let mut monitors = Vec::new();
        let mut host_list = Vec::new();
        for (i, (name, hms)) in hosts.iter().enumerate() {
            let id = HostId(i64::try_from(i).unwrap() + 1);
            db.upsert_host(&HostRecord {
                id,
                name: (*name).to_owned(),
                machine_type: "8284".into(),
                model: "22A".into(),
                serial: name.rsplit('-').next().unwrap().to_owned(),
                cpu_milli: 8000,
                memory_mb: 32768,
                host_group: GROUP.into(),
            })
            .unwrap();
            platform.world().add_host(name, 8000, 32768).unwrap();
            for (n, hm_name) in hms.iter().enumerate() {
                let mut u = [0xa0; 16];
                u[0] = u8::try_from(id.0).unwrap();
                u[1] = u8::try_from(n).unwrap() + 1;
                let m = Monitor {
                    uuid: Uuid(u),
                    name: (*hm_name).to_owned(),
                    host: id,
                    host_name: (*name).to_owned(),
                    running: false,
                    incarnation: 0,
                    // The two monitors of a host send their Hellos half a period apart.
                    hello_phase_ms: i64::try_from(n).unwrap() * timers.hello_period_ms / 2,
                    next_hm_beat: T0,
                    last_hm_beat: T0,
                    watches: BTreeMap::new(),
                    cut: BTreeSet::new(),
                    last_cmd: 0,
                    picked: Vec::new(),
                };
                monitors.push(m);
            }
            host_list.push((id, (*name).to_owned()));
        }
        let mut bed = Bed {
            _dir: dir,
            db,
            clock: clock.clone(),
            platform,
            fde: Fde::new(params.clone()),
            params,
            timers,
            hosts: host_list,
            monitors,
            names: BTreeMap::new(),
            agentless: BTreeSet::new(),
            next_vm: 1,
            last_step: T0 - STEP_MS,
            next_step: T0,
            next_wake: T0,
            engine_running: true,
            scans: Vec::new(),
            misses: Vec::new(),
            lose_acks: 0,
        };
        bed.fde.set_clock(Arc::new(clock));
        for i in 0..bed.monitors.len() {
            bed.start_monitor(i);
        }
        bed
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn host_id(&self, name: &str) -> HostId {
        self.hosts.iter().find(|(_, n)| n == name).unwrap().0
    }

    fn monitor(&self, name: &str) -> usize {
        self.monitors.iter().position(|m| m.name == name).unwrap()
    }

    fn hm_uuid(&self, name: &str) -> Uuid {
        self.monitors[self.monitor(name)].uuid
    }

    fn world(&self) -> std::sync::MutexGuard<'_, controlplane::platform::sim::SimWorld> {
        self.platform.world()
    }

    /// A VM running on `host` (1000 milli-CPU, 2 GiB), set up in the HSDB as the
    /// operator and an earlier controller left it: its settings written, discovered by
    /// both monitors of its host (when it has an agent), the discovery acknowledged.
    fn add_vm(&mut self, host: &str, name: &str, opts: VmOpts) -> Uuid {
        let uuid = Uuid([self.next_vm; 16]);
        self.next_vm += 1;
        let spec = VmSpec {
            uuid,
            name: name.to_owned(),
            cpu_milli: 1000,
            memory_mb: 2048,
        };
        self.world().add_vm(host, spec).unwrap();
        let home = self.host_id(host);
        self.db
            .set_vm(
                &uuid,
                &hsdb::VmSettings {
                    managed: Some(opts.managed),
                    priority: Some(opts.priority),
                    detection_speed: Some(opts.speed),
                    cpu_milli: Some(1000),
                    memory_mb: Some(2048),
                    name: Some(name.to_owned()),
                    home_host: Some(home),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        if opts.agent {
            let mut batch = Vec::new();
            for m in self.monitors.iter_mut().filter(|m| m.host == home) {
                batch.push(Transition::Discovered {
                    vm: uuid,
                    hm: m.uuid,
                    mac: MacAddr([6, 0, 0, uuid.0[0], m.uuid.0[0], m.uuid.0[1]]),
                    ostype: "aix".into(),
                    ver_lower: V2,
                    ver_upper: V2,
                    at: T0,
                });
                m.watches.insert(
                    uuid,
                    Watch {
                        last_heard: T0,
                        missing: false,
                        stopped: false,
                    },
                );
            }
            self.db.apply(&batch).unwrap();
            // An earlier controller consumed the discovery.
            let limits = hsdb::NaLimits {
                max_items: 100_000,
                hm_silent_after_ms: self.params.hm_silent_after_ms,
            };
            self.db.needs_attention(T0, limits, 7).unwrap();
            self.db.acknowledge(7).unwrap();
        } else {
            self.agentless.insert(uuid);
        }
        self.names.insert(uuid, name.to_owned());
        uuid
    }

    fn vm_name(&self, vm: &Uuid) -> &str {
        &self.names[vm]
    }

    /// `hmd` starts: registered UP (a new incarnation), heart-beating; VMs it watched
    /// before are owed a Hello period plus the miss delay to re-pair.
    fn start_monitor(&mut self, i: usize) {
        let now = self.now();
        let grace = self.timers.hello_period_ms;
        let m = &mut self.monitors[i];
        m.incarnation += 1;
        m.running = true;
        self.db
            .register_hm(&HmRecord {
                uuid: m.uuid,
                host: m.host,
                mac: MacAddr([2, 0, 0, 0, m.uuid.0[0], m.uuid.0[1]]),
                incarnation: HelloId::parse(
                    format!("{}.000000000.{}", now / 1000, m.incarnation).as_bytes(),
                )
                .unwrap(),
                version: V2,
                at: now,
            })
            .unwrap();
        m.last_hm_beat = now;
        m.next_hm_beat = now + self.timers.hm_heartbeat_period_ms;
        for w in m.watches.values_mut() {
            if !w.stopped {
                w.last_heard = w.last_heard.max(now + grace);
            }
        }
    }

    /// `hmd` killed (or its partition crashed): it writes nothing more.
    fn kill_monitor(&mut self, name: &str) {
        let i = self.monitor(name);
        self.monitors[i].running = false;
    }

    /// `hmd` stopped gracefully: DOWN with the seed's node-shutdown reason (as
    /// hmd/src/runtime/health.rs writes it), then silence.
    fn stop_monitor(&mut self, name: &str) {
        let i = self.monitor(name);
        let now = self.now();
        self.db
            .apply(&[Transition::HmEvent {
                hm: self.monitors[i].uuid,
                state: HmState::Down,
                reason: NODE_SHUTDOWN,
                text: "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN\n".into(),
                at: now,
            }])
            .unwrap();
        self.monitors[i].running = false;
    }

    /// The VM's agent rings a doorbell: the monitor that hears it writes it.
    fn doorbell(&mut self, vm: &Uuid, vector: u64) {
        let now = self.now();
        let host = self.world().vm_running_on(vm);
        let m = self
            .monitors
            .iter()
            .find(|m| m.running && host.contains(&m.host_name))
            .unwrap();
        self.db
            .apply(&[Transition::Doorbell {
                vm: *vm,
                hm: m.uuid,
                vector,
                at: now,
            }])
            .unwrap();
    }

    /// Run every monitor and the engine until `until` (exclusive).
    fn run_until(&mut self, until: i64) {
        while self.now() < until {
            let now = self.now();
            if now >= self.next_step {
                self.step_monitors(now);
                self.next_step = now - now.rem_euclid(STEP_MS) + STEP_MS;
            }
            if self.engine_running && now >= self.next_wake {
                self.tick(now);
            }
            let mut next = self.next_step.min(until);
            if self.engine_running {
                next = next.min(self.next_wake);
            }
            self.clock.advance_to(next);
        }
    }

    /// Run until `done` holds (checked after every step), at most until `deadline`;
    /// returns when it first held.
    fn run_until_cond(&mut self, deadline: i64, mut done: impl FnMut(&Bed) -> bool) -> Option<i64> {
        while self.now() < deadline {
            if done(self) {
                return Some(self.now());
            }
            let to = (self.now() + STEP_MS).min(deadline);
            self.run_until(to);
        }
        done(self).then(|| self.now())
    }

    fn tick(&mut self, now: i64) {
        let t = if self.lose_acks > 0 {
            let mut store = LosingAcks {
                store: &mut self.db,
                lose: &mut self.lose_acks,
            };
            self.fde.tick(now, &mut store, &mut self.platform)
        } else {
            self.fde.tick(now, &mut self.db, &mut self.platform)
        }
        .unwrap();
        if let Some(s) = t.scan {
            self.scans.push((now, s));
        }
        self.next_wake = t.next_wake_ms;
    }

    /// The daemon restarts: a new engine, ticked at once.
    fn restart_engine(&mut self) {
        self.fde = Fde::new(self.params.clone());
        self.fde.set_clock(Arc::new(self.clock.clone()));
        self.engine_running = true;
        self.next_wake = self.now();
    }

    /// One step of every running monitor at `now`, from the world's ground truth.
    fn step_monitors(&mut self, now: i64) {
        let prev = self.last_step;
        self.last_step = now;
        let t = self.timers;
        let mut out = Vec::new();
        let mut done = Vec::new();
        let world = self.platform.world();
        // The latest periodic instant at or before `now`, if after `prev`.
        let instant = |period: i64, phase: i64| -> Option<i64> {
            let k = (now - T0 - phase).div_euclid(period);
            let at = T0 + k * period + phase;
            (at > prev).then_some(at)
        };
        for m in &mut self.monitors {
            if !m.running {
                continue;
            }
            if now >= m.next_hm_beat {
                out.push(Transition::HmHeartbeat {
                    hm: m.uuid,
                    at: now,
                });
                m.last_hm_beat = now;
                m.next_hm_beat = now + t.hm_heartbeat_period_ms;
            }
            // Agents of VMs running on this host, heard at their heartbeat instants.
            for vm in world.vms_on_host(&m.host_name) {
                if self.agentless.contains(&vm) || m.cut.contains(&vm) {
                    continue;
                }
                if !world.agent_heartbeats(&vm) {
                    continue;
                }
                match m.watches.get_mut(&vm) {
                    Some(w) => {
                        if let Some(beat) = instant(t.hb_period_ms, t.hb_phase_ms) {
                            if w.missing && !w.stopped {
                                out.push(Transition::Detected {
                                    vm,
                                    hm: m.uuid,
                                    at: beat,
                                });
                                w.missing = false;
                            }
                            w.last_heard = w.last_heard.max(beat);
                        }
                    }
                    None => {
                        if let Some(hello) = instant(t.hello_period_ms, m.hello_phase_ms) {
                            out.push(Transition::Discovered {
                                vm,
                                hm: m.uuid,
                                mac: MacAddr([6, 0, 0, vm.0[0], m.uuid.0[0], m.uuid.0[1]]),
                                ostype: "aix".into(),
                                ver_lower: V2,
                                ver_upper: V2,
                                at: hello,
                            });
                            m.watches.insert(
                                vm,
                                Watch {
                                    last_heard: hello,
                                    missing: false,
                                    stopped: false,
                                },
                            );
                        }
                    }
                }
            }
            for (vm, w) in &mut m.watches {
                if !w.stopped && !w.missing && now - w.last_heard >= t.miss_after_ms {
                    let at = w.last_heard + t.miss_after_ms;
                    out.push(Transition::Missing {
                        vm: *vm,
                        hm: m.uuid,
                        at,
                    });
                    w.missing = true;
                    self.misses.push(Miss {
                        at,
                        vm: *vm,
                        hm: m.uuid,
                    });
                }
            }
            // Commands from the control plane, carried out within the pickup bound.
            for c in self.db.commands_for(&m.uuid, m.last_cmd, 100).unwrap() {
                m.last_cmd = m.last_cmd.max(c.id);
                let due = c.created_ms + t.command_pickup_ms;
                m.picked.push((c, due));
            }
            let (ready, later): (Vec<_>, Vec<_>) = m.picked.drain(..).partition(|(_, d)| *d <= now);
            m.picked = later;
            for (c, due) in ready {
                let (vm, hm) = (c.vm, m.uuid);
                match c.kind {
                    CommandKind::StopMonitoring => {
                        if let Some(w) = m.watches.get_mut(&vm) {
                            w.stopped = true;
                            w.missing = false;
                        }
                        out.push(Transition::StopWatching { vm, hm, at: due });
                    }
                    CommandKind::StartMonitoring => {
                        if let Some(w) = m.watches.get_mut(&vm) {
                            w.stopped = false;
                            w.missing = false;
                            w.last_heard = due;
                        }
                        out.push(Transition::StartWatching { vm, hm, at: due });
                    }
                    CommandKind::ForgetVm => {
                        m.watches.remove(&vm);
                        out.push(Transition::Forget { vm, hm, at: due });
                    }
                    // These simulated monitors talk to no agent.
                    CommandKind::FetchAppReport | CommandKind::ConfirmAppReport => {}
                }
                done.push(CommandDone {
                    id: c.id,
                    result: "OK".into(),
                    at: due,
                });
            }
        }
        drop(world);
        if std::env::var("ACC_DEBUG").is_ok() {
            for t in &out {
                if !matches!(t, Transition::HmHeartbeat { .. }) {
                    eprintln!("DBG {} {t:?}", (now - T0) / 100);
                }
            }
        }
        if !out.is_empty() {
            self.db.apply(&out).unwrap();
        }
        if !done.is_empty() {
            self.db.complete_commands(&done).unwrap();
        }
    }

    // ---- reading what happened --------------------------------------------------------

    fn events(&self) -> Vec<EventRow> {
        self.db.events_after(0, 1_000_000).unwrap()
    }

    /// The events about `vm`, (kind, text), in order.
    fn vm_events(&self, vm: &Uuid) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter(|e| e.vm == Some(*vm))
            .map(|e| (e.kind, e.text))
            .collect()
    }

    fn decisions_about(&self, vm: &Uuid) -> Vec<Decision> {
        self.fde
            .decisions()
            .iter()
            .filter(|d| matches!(&d.subject, Subject::Vm { uuid, .. } if uuid == vm))
            .cloned()
            .collect()
    }

    /// When every monitor of `host` had written MISSING for `vm` at or after `since`:
    /// (earliest miss, the last monitor's miss).
    fn missed_on_every_monitor(&self, vm: &Uuid, host: &str, since: i64) -> (i64, i64) {
        let hms: Vec<Uuid> = self
            .monitors
            .iter()
            .filter(|m| m.host_name == host)
            .map(|m| m.uuid)
            .collect();
        let firsts: Vec<i64> = hms
            .iter()
            .map(|hm| {
                self.misses
                    .iter()
                    .filter(|x| x.vm == *vm && x.hm == *hm && x.at >= since)
                    .map(|x| x.at)
                    .min()
                    .expect("every monitor of the host missed the VM")
            })
            .collect();
        (*firsts.iter().min().unwrap(), *firsts.iter().max().unwrap())
    }

    /// The platform's actions (stop, start, cleanup): (call, host, vm).
    fn actions(&self) -> Vec<(Call, String, Uuid)> {
        self.world()
            .history()
            .iter()
            .filter(|r| r.call.is_action())
            .map(|r| {
                (
                    r.call,
                    r.host.clone().unwrap_or_default(),
                    r.vm.unwrap_or(Uuid([0; 16])),
                )
            })
            .collect()
    }

    /// The NeedsAttention scans, with their time.
    fn na_scans(&self) -> Vec<(i64, ScanReport)> {
        self.scans
            .iter()
            .filter(|(_, s)| s.request == Request::NeedsAttention)
            .cloned()
            .collect()
    }

    /// Every VM runs exactly once (or not at all), and the world saw no double run.
    fn assert_nothing_runs_twice(&self) {
        let w = self.world();
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        for vm in w.vm_uuids() {
            assert!(
                w.running_hosts_of(&vm) <= 1,
                "{vm} runs on {:?}",
                w.vm_running_on(&vm)
            );
        }
    }
}

/// The number after `prefix` in `text` (e.g. "missed HB count 240").
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in {text:?}"));
    text[at + prefix.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn kinds(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

/// The seed's restart sequence for one VM (seed-controlplane.md §4.4, seed 004
/// L17395-17407, L17548-17563), as the executor writes it: (event kind, text).
fn restart_sequence(name: &str, target: &str, cleanup: bool) -> Vec<(String, String)> {
    let p = "VM_RESTART_PROGRESS";
    let mut v: Vec<(&str, String)> = vec![
        (p, format!("Stopping HA monitoring for VM {name}")),
        (p, format!("HA monitoring for VM {name} stopped")),
        (p, format!("Shutdown has started for VM {name}")),
        (p, format!("Shutdown has completed for VM {name}")),
        (p, format!("Restart has started for VM {name}")),
        (p, format!("Starting HA monitoring for VM {name}")),
        (p, format!("HA monitoring for VM {name} started")),
        (
            "VM_RESTART_COMPLETED",
            format!("Restart on Target host {target} has completed for VM {name}"),
        ),
    ];
    if cleanup {
        v.push((p, format!("Configuration cleanup started for VM {name}")));
        v.push((p, format!("Configuration cleanup completed for VM {name}")));
    }
    v.into_iter().map(|(k, t)| (k.to_owned(), t)).collect()
}

/// The longest the executor's monitor waits can take when the monitors are healthy: a
/// command picked up within the pickup bound, seen at the next harness step, confirmed
/// at the executor's next poll (≤ 1 s).
fn monitor_wait_ms(bed: &Bed) -> i64 {
    bed.timers.command_pickup_ms + STEP_MS + (bed.params.command_timeout_ms / 10).clamp(50, 1_000)
}

/// TC-1 / TC-2 / TC-8: a VM of SRC failed at `fault_at` (agent silent, not pingable,
/// Running with its OS started); checks the decision, the events, the timing and the end
/// state of its relocation to DST. Returns the decision's missed-HB count.
fn assert_vm_failure_relocated(
    bed: &Bed,
    vm: &Uuid,
    fault_at: i64,
    vmfdt_s: u64,
    cleanup_expected: bool,
) -> u64 {
    let name = bed.vm_name(vm).to_owned();
    let vmfdt_ms = i64::try_from(vmfdt_s).unwrap() * S;
    let (earliest, all) = bed.missed_on_every_monitor(vm, SRC, fault_at);
    // The monitors: MISSING within one heartbeat period + 19 s of the fault.
    assert!(
        all - fault_at <= bed.timers.hb_period_ms + bed.timers.miss_after_ms,
        "missed {} ms after the fault",
        all - fault_at
    );
    // Decisions: "less than its VMFDT" at every NeedsAttention before, then one recovery.
    let decisions = bed.decisions_about(vm);
    let recover: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Recover)
        .collect();
    // The failure, then the planner's placement.
    assert_eq!(recover.len(), 2, "{decisions:#?}");
    let rec = recover[0];
    assert!(
        recover[1].reason.starts_with(&format!(
            "policy planner: restart on host {DST} (cpu 1000 milli, memory 2048 MiB): "
        )),
        "{}",
        recover[1].reason
    );
    // After them: the restart's end, then the target's monitors' discovery (MOVED).
    let after: Vec<Verdict> = decisions
        .iter()
        .filter(|d| d.seq > recover[1].seq)
        .map(|d| d.verdict)
        .collect();
    assert_eq!(
        after,
        [Verdict::RestartEnded, Verdict::Moved],
        "{decisions:#?}"
    );
    assert!(
        rec.reason.starts_with(&format!(
            "VM failure detected. Initiating recovery for VM {name}: state Running on host {SRC}, \
             OS had started, not pingable, missed HB count "
        )),
        "{}",
        rec.reason
    );
    assert!(
        rec.reason.ends_with(&format!(", VMFDT {vmfdt_s}")),
        "{}",
        rec.reason
    );
    let missed = number_after(&rec.reason, "missed HB count");
    assert_eq!(
        i64::try_from(missed).unwrap(),
        (rec.at_ms - earliest) / S,
        "missedHb counts from the earliest miss"
    );
    assert!(missed >= vmfdt_s);
    let below: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::NoAction && d.seq < rec.seq)
        .collect();
    for d in &below {
        let n = number_after(&d.reason, "Missed HB count");
        assert_eq!(
            d.reason,
            format!("Missed HB count {n} for VM {name} is less than its VMFDT {vmfdt_s}")
        );
        assert!(n < vmfdt_s);
    }
    // One NeedsAttention period apart (na_every × scan_interval).
    let na_period_s =
        u64::from(bed.params.na_every) * u64::try_from(bed.params.scan_interval_ms).unwrap() / 1000;
    let samples: Vec<u64> = below
        .iter()
        .map(|d| number_after(&d.reason, "Missed HB count"))
        .chain([missed])
        .collect();
    for w in samples.windows(2) {
        assert_eq!(w[1] - w[0], na_period_s, "{samples:?}");
    }
    // Timing: never before VMFDT from the earliest miss; at the latest at the first
    // NeedsAttention after it — within 19 s + a heartbeat period + VMFDT + one NA period
    // of the fault (seed-controlplane.md §3.4).
    let na_period_ms = i64::from(bed.params.na_every) * bed.params.scan_interval_ms;
    assert!(rec.at_ms >= earliest + vmfdt_ms, "decided too early");
    assert!(rec.at_ms <= all.max(earliest + vmfdt_ms) + na_period_ms);
    let bound = bed.timers.hb_period_ms + bed.timers.miss_after_ms + vmfdt_ms + na_period_ms;
    assert!(
        rec.at_ms - fault_at <= bound,
        "decided {} ms after the fault, bound {bound} ms",
        rec.at_ms - fault_at
    );
    // Events: VM_FAILURE_DETECTED, then the seed's restart sequence.
    let events = bed.vm_events(vm);
    let mut expected = vec![(
        "VM_FAILURE_DETECTED".to_owned(),
        format!(
            "Limit reached for VM {name}: missed HB count {missed} >= VMFDT {vmfdt_s}; not able \
             to ping VM {name}"
        ),
    )];
    expected.extend(restart_sequence(&name, DST, cleanup_expected));
    assert_eq!(events[..expected.len()], expected[..], "{events:#?}");
    let all_events = bed.events();
    let completed = all_events
        .iter()
        .find(|e| e.vm == Some(*vm) && e.kind == "VM_RESTART_COMPLETED")
        .unwrap();
    let summary: Vec<&EventRow> = all_events
        .iter()
        .filter(|e| e.kind == "RESTART_SUMMARY")
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(
        summary[0].text,
        "1 out of 1 VMs have been successfully restarted"
    );
    assert!(summary[0].id > completed.id);
    // The restart's own time: stop + start on the sim platform, two monitor waits, the
    // ping and the state probe of the decision.
    let w = bed.world();
    let action_ms = i64::try_from(
        w.latency(Call::Stop) + w.latency(Call::Start) + w.latency(Call::VmStatus),
    )
    .unwrap()
        + 1_000 // the unanswered ping (SimWorld's default no-reply wait)
        + 2 * monitor_wait_ms(bed);
    drop(w);
    assert!(
        completed.created_ms - rec.at_ms <= action_ms,
        "restart took {} ms, bound {action_ms} ms",
        completed.created_ms - rec.at_ms
    );
    // The relocation row.
    let rows = bed.db.relocations(Some(vm), 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.kind, RelocationKind::Relocate);
    assert_eq!(
        (row.from_host, row.to_host),
        (Some(bed.host_id(SRC)), Some(bed.host_id(DST)))
    );
    assert_eq!(row.result.as_deref(), Some("success"));
    let phases: Vec<String> = bed
        .db
        .relocation_steps(row.id)
        .unwrap()
        .into_iter()
        .map(|s| s.phase)
        .collect();
    assert_eq!(
        phases,
        [
            "BEGIN",
            "cause vm_failure",
            "queued",
            "stopping_ha_monitoring",
            "shutting_down",
            "restarting",
            "starting_ha_monitoring",
            "cleaning_up",
            "done"
        ]
    );
    // End state: running once, on DST; defined there only; the platform did exactly
    // stop on SRC, start on DST, cleanup on SRC.
    let w = bed.world();
    assert_eq!(w.vm_running_on(vm), [DST]);
    assert_eq!(w.vm_defined_on(vm), [DST]);
    drop(w);
    assert_eq!(
        bed.actions(),
        [
            (Call::Stop, SRC.to_owned(), *vm),
            (Call::Start, DST.to_owned(), *vm),
            (Call::Cleanup, SRC.to_owned(), *vm)
        ]
    );
    bed.assert_nothing_runs_twice();
    // The HSDB: its new host's monitors paired with it and watch it; the old ones forgot it.
    let stored = bed.db.vm(vm).unwrap().unwrap();
    assert_eq!(stored.current_host, Some(bed.host_id(DST)));
    let rows = bed.db.vm_hms(vm).unwrap();
    let dst_hms: BTreeSet<Uuid> = [bed.hm_uuid("p18v01"), bed.hm_uuid("p18v02")].into();
    assert_eq!(
        rows.iter().map(|r| r.hm).collect::<BTreeSet<_>>(),
        dst_hms,
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r.last_state == HeartbeatState::Detected),
        "{rows:?}"
    );
    assert!(!bed.fde.is_busy(vm));
    missed
}

// ---- TC-1 … TC-14 ----------------------------------------------------------------------

/// TC-1 (seed 004 L17297-17452): the kernel of Linux VM p18lnx02 (High priority,
/// detection speed fast) panics; VMFDT = 90 + 50 = 140 s; not pingable, Running with its
/// OS started → relocated to SN10EE85P in the seed's steps.
#[test]
fn tc01_linux_kernel_crash_relocates() {
    let params = GroupParams::standard(GROUP);
    assert_eq!(params.vmfdt_ms(DetectionSpeed::Fast), 140_000);
    let mut bed = Bed::new(params);
    let lnx02 = bed.add_vm(
        SRC,
        "p18lnx02",
        VmOpts::new()
            .priority(Priority::High)
            .speed(DetectionSpeed::Fast),
    );
    let others = [
        bed.add_vm(SRC, "p18ibmi01", VmOpts::new().agentless()),
        bed.add_vm(SRC, "p18aix02", VmOpts::new()),
        bed.add_vm(SRC, "p18aix03", VmOpts::new()),
    ];
    let lnx01 = bed.add_vm(DST, "p18lnx01", VmOpts::new());
    bed.run_until(T0 + 60 * S);
    let fault_at = bed.now();
    bed.world().vm_os_crash(&lnx02).unwrap();
    let done = bed.run_until_cond(fault_at + 400 * S, |b| {
        !b.db.relocations(Some(&lnx02), 1).unwrap().is_empty()
            && !b.fde.is_busy(&lnx02)
            && b.db.vm(&lnx02).unwrap().unwrap().current_host == Some(b.host_id(DST))
    });
    assert!(
        done.is_some(),
        "not relocated: {:#?}",
        bed.decisions_about(&lnx02)
    );
    bed.run_until(bed.now() + 120 * S);
    assert_vm_failure_relocated(&bed, &lnx02, fault_at, 140, true);
    // Nothing else was touched.
    let w = bed.world();
    for vm in others {
        assert_eq!(w.vm_running_on(&vm), [SRC]);
    }
    assert_eq!(w.vm_running_on(&lnx01), [DST]);
}

/// TC-2 (seed 004 L17453-17607): AIX VM p18aix02 (Medium, detection speed normal) crashes
/// into its kernel debugger; VMFDT 190 s → relocated to SN10EE85P, which already runs
/// p18lnx01 and p18lnx02; the configuration cleanup removes it from SN101AFDR; "1 out of
/// 1 VMs have been successfully restarted".
#[test]
fn tc02_aix_kernel_crash_relocates_with_cleanup() {
    let params = GroupParams::standard(GROUP);
    assert_eq!(params.vmfdt_ms(DetectionSpeed::Normal), 190_000);
    let mut bed = Bed::new(params);
    let aix02 = bed.add_vm(SRC, "p18aix02", VmOpts::new());
    let aix03 = bed.add_vm(SRC, "p18aix03", VmOpts::new());
    bed.add_vm(DST, "p18lnx01", VmOpts::new());
    bed.add_vm(DST, "p18lnx02", VmOpts::new().priority(Priority::High));
    bed.run_until(T0 + 45 * S);
    let fault_at = bed.now();
    bed.world().vm_os_crash(&aix02).unwrap();
    let done = bed.run_until_cond(fault_at + 400 * S, |b| {
        !b.db.relocations(Some(&aix02), 1).unwrap().is_empty()
            && !b.fde.is_busy(&aix02)
            && b.db.vm(&aix02).unwrap().unwrap().current_host == Some(b.host_id(DST))
    });
    assert!(
        done.is_some(),
        "not relocated: {:#?}",
        bed.decisions_about(&aix02)
    );
    bed.run_until(bed.now() + 120 * S);
    assert_vm_failure_relocated(&bed, &aix02, fault_at, 190, true);
    let w = bed.world();
    assert_eq!(w.vms_on_host(DST).len(), 3);
    assert_eq!(w.vm_running_on(&aix03), [SRC]);
    assert!(
        !w.vms_defined_on(SRC).contains(&aix02),
        "removed from the source"
    );
}

/// Two hosts with a few VMs each, the seed's standard parameters.
fn seed_bed() -> (Bed, Uuid) {
    let mut bed = Bed::new(GroupParams::standard(GROUP));
    let aix02 = bed.add_vm(SRC, "p18aix02", VmOpts::new());
    bed.add_vm(SRC, "p18aix03", VmOpts::new());
    bed.add_vm(DST, "p18lnx01", VmOpts::new());
    bed.world().set_record_probes(true);
    (bed, aix02)
}

/// TC-4 (seed 004 L4481-4506, L12478-12480): steady state — a request every 20 s with no
/// sleep before the first, QQ, QQ, NA repeating; every monitor UP, responsive, no data,
/// reason 0; no event after the start's, no decision, no action, in ten minutes.
#[test]
fn tc04_steady_state_cadence() {
    let (mut bed, _) = seed_bed();
    bed.run_until(T0 + 600 * S);
    let scan_ms = bed.params.scan_interval_ms;
    assert_eq!(scan_ms, 20 * S);
    assert_eq!(bed.scans.len(), 30, "one request every 20 s for 600 s");
    for (i, (at, s)) in bed.scans.iter().enumerate() {
        let n = u64::try_from(i).unwrap() + 1;
        assert_eq!(s.scan, n);
        assert_eq!(
            *at,
            T0 + i64::try_from(i).unwrap() * scan_ms,
            "scan {n}: no sleep before scan 1"
        );
        let expected = if n % 3 == 0 {
            Request::NeedsAttention
        } else {
            Request::QuickQuery
        };
        assert_eq!(s.request, expected, "scan {n}");
        assert_eq!(s.decisions, 0, "scan {n}");
        assert_eq!(s.restarts_submitted, 0);
        assert_eq!(s.acked, None, "nothing to acknowledge when healthy");
        assert!(!s.more);
    }
    // The last QuickQuery's view: UP, responsive (hmResponseSec at most one heartbeat
    // period of hmd), hasData 0, reason 0.
    assert_eq!(bed.fde.hosts().len(), 2);
    for h in bed.fde.hosts() {
        assert_eq!(h.monitors.len(), 2);
        for m in &h.monitors {
            assert_eq!(m.state, HmState::Up);
            assert!(m.silent_ms <= bed.timers.hm_heartbeat_period_ms, "{m:?}");
            assert!(!m.has_data);
            assert_eq!(m.reason, 0);
        }
    }
    // Only the start's events: each monitor UP and responsive, at the first scan.
    let events = bed.events();
    assert_eq!(events.len(), 8, "{events:#?}");
    for e in &events {
        assert!(
            e.kind == "VIOS_CAA_STATE_UP_DETECTED" || e.kind == "VIOS_HM_RESP_DETECTED",
            "{e:?}"
        );
        assert_eq!(e.created_ms, T0);
    }
    assert!(
        bed.fde.decisions().is_empty(),
        "{:#?}",
        bed.fde.decisions().iter().collect::<Vec<_>>()
    );
    assert!(bed.actions().is_empty());
    // No probe either: nothing asked the platform anything but its hosts' capacities for
    // the periodic verify (docs/controlplane.md "Verify"), a scan after the first and
    // every verify_interval after that.
    let history = bed.world().history().to_vec();
    let verify_at: Vec<i64> = (0..)
        .map(|k| T0 + scan_ms + k * bed.params.verify_interval_ms)
        .take_while(|t| *t < T0 + 600 * S)
        .collect();
    assert_eq!(
        history
            .iter()
            .map(|c| (c.call, c.host.clone(), c.start_ms))
            .collect::<Vec<_>>(),
        verify_at
            .iter()
            .map(|t| (Call::Hosts, None, *t))
            .collect::<Vec<_>>(),
        "{history:?}"
    );
    bed.assert_nothing_runs_twice();
}

/// The seed's missed-heartbeat trace (seed 004 L13209-13257): the VM's agent is cut off
/// (its adapters disabled, the guest still answers ping) right after its heartbeat at
/// T0 + 91 s, so both monitors declare it MISSING at T0 + 110 s and the NeedsAttention
/// scans at T0 + 160, 220, 280, 340 s read 50, 110, 170, 230 (the seed: 50, 111, 171,
/// 232 at ~20.3 s scans).
fn agent_cut_at_91s(bed: &mut Bed, vm: &Uuid) {
    bed.run_until(T0 + 92 * S);
    bed.world().vm_agent_kill(vm).unwrap();
}

/// The "Missed HB count N for VM X is less than its VMFDT T" decisions about `vm`.
fn below_vmfdt_samples(bed: &Bed, vm: &Uuid) -> Vec<u64> {
    bed.decisions_about(vm)
        .iter()
        .filter(|d| d.verdict == Verdict::NoAction)
        .map(|d| number_after(&d.reason, "Missed HB count"))
        .collect()
}

/// TC-6 (seed 004 L13222-13249, L13405-13436): missed heartbeats below VMFDT 190 — no
/// action, the seed's "less than its VMFDT 190" at each NeedsAttention, no probe; the
/// heartbeats resume and the VM is forgotten.
#[test]
fn tc06_missed_hb_below_vmfdt_no_action() {
    let (mut bed, vm) = seed_bed();
    agent_cut_at_91s(&mut bed, &vm);
    bed.run_until(T0 + 300 * S);
    // Heartbeats come back (adapters enabled again).
    bed.world().vm_repair(&vm).unwrap();
    bed.run_until(T0 + 600 * S);
    let (earliest, all) = bed.missed_on_every_monitor(&vm, SRC, T0);
    assert_eq!((earliest, all), (T0 + 110 * S, T0 + 110 * S));
    assert_eq!(below_vmfdt_samples(&bed, &vm), [50, 110, 170]);
    let decisions = bed.decisions_about(&vm);
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
    for (d, (n, at)) in decisions.iter().zip([(50, 160), (110, 220), (170, 280)]) {
        assert_eq!(
            d.reason,
            format!("Missed HB count {n} for VM p18aix02 is less than its VMFDT 190")
        );
        assert_eq!(d.at_ms, T0 + at * S);
    }
    // Nothing else: no event about it, no ping (below VMFDT), no action, no HBoffset.
    assert!(bed.vm_events(&vm).is_empty());
    assert!(bed.world().history().iter().all(|r| r.vm != Some(vm)));
    assert!(bed.actions().is_empty());
    assert_eq!(bed.fde.hb_offset_s(&vm), 0);
    assert_eq!(bed.world().vm_running_on(&vm), [SRC]);
    let rows = bed.db.vm_hms(&vm).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.last_state == HeartbeatState::Detected),
        "{rows:?}"
    );
    // The NeedsAttention after the heartbeats resumed no longer lists it.
    assert!(
        bed.scans
            .iter()
            .any(|(at, s)| *at == T0 + 340 * S && s.request == Request::NeedsAttention)
    );
    bed.assert_nothing_runs_twice();
}

/// TC-7 (seed 004 L13250-13256, L13338-13343): missed heartbeats at and beyond VMFDT but
/// the VM answers ping — "VM X is pingable ignoring missed HB count 230" at every
/// NeedsAttention, never relocated, no failure event.
#[test]
fn tc07_missed_hb_above_vmfdt_pingable_ignored() {
    let (mut bed, vm) = seed_bed();
    agent_cut_at_91s(&mut bed, &vm);
    bed.run_until(T0 + 470 * S);
    assert_eq!(below_vmfdt_samples(&bed, &vm), [50, 110, 170]);
    let pingable: Vec<(i64, String)> = bed
        .decisions_about(&vm)
        .into_iter()
        .filter(|d| d.verdict == Verdict::Pingable)
        .map(|d| (d.at_ms, d.reason))
        .collect();
    assert_eq!(
        pingable,
        [230, 290, 350].map(|n| (
            T0 + (n + 110) * S,
            format!("VM p18aix02 is pingable ignoring missed HB count {n}")
        ))
    );
    assert_eq!(bed.decisions_about(&vm).len(), 6);
    // One ping per decision, answered; no state probe, no action, no event.
    let calls: Vec<(Call, bool)> = bed
        .world()
        .history()
        .iter()
        .filter(|r| r.vm == Some(vm))
        .map(|r| (r.call, r.error.is_none()))
        .collect();
    assert_eq!(calls, [(Call::Ping, true); 3]);
    assert!(bed.vm_events(&vm).is_empty(), "{:?}", bed.vm_events(&vm));
    assert!(bed.actions().is_empty());
    assert!(bed.db.relocations(None, 10).unwrap().is_empty());
    assert_eq!(bed.world().vm_running_on(&vm), [SRC]);
    bed.assert_nothing_runs_twice();
}

/// TC-8 (seed 004 L13468-13498): the VM hangs (not pingable), Running with its OS
/// started, empty refcode: NeedsAttention reads 60, 120, 180 (no action), then 240 —
/// "Limit reached", VM_FAILURE_DETECTED, "Not able to ping", HBoffset 0, "VM failure
/// detected. Initiating recovery", and the recovery relocates it.
#[test]
fn tc08_missed_hb_unreachable_running_recovers() {
    let (mut bed, vm) = seed_bed();
    // Last heartbeat at T0 + 81 s: MISSING at 100 s, NeedsAttention at 160 s reads 60.
    bed.run_until(T0 + 82 * S);
    let fault_at = bed.now();
    bed.world().vm_hang(&vm).unwrap();
    bed.run_until(T0 + 500 * S);
    // The NeedsAttention at T0 + 100 s runs at the very instant of the miss; the engine
    // logs a count of 0 there, which the seed would not report (see
    // tc08_missed_hb_count_zero_is_not_reported).
    let samples: Vec<u64> = below_vmfdt_samples(&bed, &vm)
        .into_iter()
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(samples, [60, 120, 180], "{:#?}", bed.decisions_about(&vm));
    let missed = assert_vm_failure_relocated(&bed, &vm, fault_at, 190, true);
    assert_eq!(missed, 240, "the seed's number");
    assert_eq!(bed.fde.hb_offset_s(&vm), 0);
    for d in bed.decisions_about(&vm) {
        assert!(!d.reason.contains("HBoffset"), "{}", d.reason);
    }
    let rec = bed
        .decisions_about(&vm)
        .into_iter()
        .find(|d| d.verdict == Verdict::Recover)
        .unwrap();
    assert_eq!(rec.at_ms, T0 + 340 * S);
}

/// TC-8's failure, but the VM comes back to life between the engine's decision (its ping
/// found it dead) and the shutdown: the executor pings once more just before the stop,
/// finds it alive, and gives it back to its monitors — never stopped, never started
/// elsewhere (a pingable VM is never relocated).
#[test]
fn tc08_vm_alive_again_before_its_shutdown_is_left_alone() {
    let (mut bed, vm) = seed_bed();
    bed.run_until(T0 + 82 * S);
    bed.world().vm_hang(&vm).unwrap();
    let decided = bed.run_until_cond(T0 + 500 * S, |b| {
        b.decisions_about(&vm)
            .iter()
            .any(|d| d.verdict == Verdict::Recover)
    });
    assert!(decided.is_some(), "{:#?}", bed.decisions_about(&vm));
    assert!(
        bed.actions().iter().all(|(_, _, v)| *v != vm),
        "no action before the stop monitoring round trip: {:?}",
        bed.actions()
    );
    // The hang ends while the monitors are told to stop watching it.
    bed.world().vm_repair(&vm).unwrap();
    bed.run_until(T0 + 600 * S);
    assert!(
        bed.actions().iter().all(|(_, _, v)| *v != vm),
        "the VM was acted on: {:?}",
        bed.actions()
    );
    assert_eq!(bed.world().vm_running_on(&vm), [SRC]);
    let rows = bed.db.relocations(Some(&vm), 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let result = rows[0].result.clone().unwrap_or_default();
    assert!(
        result.contains("answers ping again just before its shutdown"),
        "{result}"
    );
    // Its monitors watch it again, and it heartbeats.
    let watched = bed.db.vm_hms(&vm).unwrap();
    assert_eq!(watched.len(), 2, "{watched:?}");
    assert!(
        watched
            .iter()
            .all(|r| r.last_state == HeartbeatState::Detected),
        "{watched:?}"
    );
    bed.assert_nothing_runs_twice();
}

/// The seed reports `missedHb` only when positive (seed 004 L13440-13442; hs::build does
/// the same, docs/controlplane.md "missedHb"): a VM whose last monitor declared it MISSING
/// less than a second before a NeedsAttention is not reported by it yet.
#[test]
fn tc08_missed_hb_count_zero_is_not_reported() {
    let (mut bed, vm) = seed_bed();
    bed.run_until(T0 + 82 * S);
    bed.world().vm_hang(&vm).unwrap();
    // Both monitors write MISSING at T0 + 100 s, the instant of scan 6 (NeedsAttention).
    bed.run_until(T0 + 101 * S);
    assert_eq!(
        bed.missed_on_every_monitor(&vm, SRC, T0),
        (T0 + 100 * S, T0 + 100 * S)
    );
    assert!(
        bed.scans
            .iter()
            .any(|(at, s)| *at == T0 + 100 * S && s.request == Request::NeedsAttention)
    );
    assert!(
        bed.decisions_about(&vm).is_empty(),
        "{:#?}",
        bed.decisions_about(&vm)
    );
}

/// TC-3 (seed 004 L17608-17883): both monitors of SN101AFDR die with it (an immediate
/// shutdown: no 0x40, silence) and its hypervisor is gone → host failure after hostFDT;
/// every managed VM (the agent-less IBM i one too, the High-priority p18lnx02 first) is
/// restarted on SN10EE85P; the cleanups fail on the dead host and are tolerated ("6 out
/// of 6"); an unmanaged VM stays; when the host is back its stale definitions are removed.
#[test]
fn tc03_host_failure_relocates_all_managed_vms() {
    let mut bed = Bed::new(GroupParams::standard(GROUP));
    let ibmi = bed.add_vm(SRC, "p18ibmi01", VmOpts::new().agentless());
    let mut managed = vec![ibmi];
    for n in 2..=5 {
        managed.push(bed.add_vm(SRC, &format!("p18aix0{n}"), VmOpts::new()));
    }
    let lnx02 = bed.add_vm(SRC, "p18lnx02", VmOpts::new().priority(Priority::High));
    managed.push(lnx02);
    let unmanaged = bed.add_vm(SRC, "p18aix09", VmOpts::new().unmanaged());
    let lnx01 = bed.add_vm(DST, "p18lnx01", VmOpts::new());
    bed.run_until(T0 + 70 * S);
    let fault_at = bed.now();
    bed.kill_monitor("p18v03");
    bed.kill_monitor("p18v04");
    bed.world().host_loss(SRC).unwrap();
    let last_beat = bed.monitors[bed.monitor("p18v03")]
        .last_hm_beat
        .max(bed.monitors[bed.monitor("p18v04")].last_hm_beat);
    let done = bed.run_until_cond(fault_at + 600 * S, |b| {
        b.events().iter().any(|e| e.kind == "RESTART_SUMMARY")
    });
    assert!(
        done.is_some(),
        "{:#?}",
        bed.fde.decisions().iter().collect::<Vec<_>>()
    );
    bed.run_until(bed.now() + 60 * S);
    let p = bed.params.clone();
    // The decision: once, within hostFDT + two scans of the last monitor heartbeat.
    let host_decisions: Vec<Decision> = bed
        .fde
        .decisions()
        .iter()
        .filter(|d| d.verdict == Verdict::HostFailure)
        .cloned()
        .collect();
    assert_eq!(host_decisions.len(), 1);
    let hd = &host_decisions[0];
    assert!(
        hd.reason
            .starts_with(&format!("every monitor of host {SRC} unhealthy for ")),
        "{}",
        hd.reason
    );
    assert!(
        hd.reason.ends_with(
            "and the platform says the host is gone: host failure, 6 managed VM(s) to relocate"
        ),
        "{}",
        hd.reason
    );
    assert!(
        hd.at_ms >= last_beat + p.host_fdt_ms,
        "decided before hostFDT"
    );
    assert!(
        hd.at_ms <= last_beat + p.host_fdt_ms + 2 * p.scan_interval_ms,
        "decided {} ms after the last heartbeat",
        hd.at_ms - last_beat
    );
    // Events: HOST_FAILURE_DETECTED once; each VM's sequence with the cleanup error.
    let events = bed.events();
    let failures: Vec<&EventRow> = events
        .iter()
        .filter(|e| e.kind == "HOST_FAILURE_DETECTED")
        .collect();
    assert_eq!(failures.len(), 1);
    for vm in &managed {
        let name = bed.vm_name(vm).to_owned();
        let mut expected = restart_sequence(&name, DST, false);
        expected.push((
            "VM_RESTART_PROGRESS".into(),
            format!("Configuration cleanup started for VM {name}"),
        ));
        let got = bed.vm_events(vm);
        assert_eq!(got[..expected.len()], expected[..], "{got:#?}");
        let (k, t) = &got[expected.len()];
        assert_eq!(k, "VM_RESTART_STEP_FAILED");
        assert!(
            t.starts_with(&format!(
                "ERROR: Restart has encountered an error for VM {name} during Configuration Cleanup: "
            )),
            "{t}"
        );
    }
    let summary: Vec<&EventRow> = events
        .iter()
        .filter(|e| e.kind == "RESTART_SUMMARY")
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        summary[0].text,
        "6 out of 6 VMs have been successfully restarted"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.kind == "VM_RESTART_COMPLETED")
            .all(|e| e.id < summary[0].id)
    );
    // High priority first: p18lnx02's restart starts and completes before any other.
    let first_of = |kind: &str, text: &str| -> Option<Uuid> {
        events
            .iter()
            .find(|e| e.kind == kind && e.text.starts_with(text))
            .and_then(|e| e.vm)
    };
    assert_eq!(
        first_of("VM_RESTART_PROGRESS", "Restart has started"),
        Some(lnx02)
    );
    assert_eq!(
        first_of("VM_RESTART_COMPLETED", "Restart on Target host"),
        Some(lnx02)
    );
    // The restarts: the six starts go to the platform as one batch (docs/controlplane.md,
    // Executor), and the sim runs them concurrently: they all begin at once, 5 s each.
    let last_completed = events
        .iter()
        .filter(|e| e.kind == "VM_RESTART_COMPLETED")
        .map(|e| e.created_ms)
        .max()
        .unwrap();
    let starts: Vec<(i64, i64)> = bed
        .world()
        .history()
        .iter()
        .filter(|c| c.call == Call::Start)
        .map(|c| (c.start_ms, c.end_ms))
        .collect();
    assert_eq!(starts.len(), 6);
    assert!(
        starts.iter().all(|s| *s == starts[0]),
        "one batch, all at once: {starts:?}"
    );
    // Cleanups (failing on the dead host after the call's latency) still run one after
    // another, each after its VM's completion; the confirmations of the target's
    // monitors add one wait.
    let w = bed.world();
    let (start, cleanup) = (
        i64::try_from(w.latency(Call::Start)).unwrap(),
        i64::try_from(w.latency(Call::Cleanup)).unwrap(),
    );
    drop(w);
    assert!(
        last_completed - hd.at_ms <= start + 6 * cleanup + monitor_wait_ms(&bed),
        "{}",
        last_completed - hd.at_ms
    );
    // Rows: six, each a success with the skipped shutdown and the failed cleanup noted.
    let rows = bed.db.relocations(None, 100).unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for r in &rows {
        assert!(managed.contains(&r.vm));
        assert_eq!(
            (r.from_host, r.to_host),
            (Some(bed.host_id(SRC)), Some(bed.host_id(DST)))
        );
        let result = r.result.as_deref().unwrap();
        assert!(result.starts_with("success ("), "{result}");
        assert!(
            result.contains(&format!("host {SRC} is gone: shutdown skipped")),
            "{result}"
        );
        assert!(
            result.contains(&format!("cleanup on {SRC} failed")),
            "{result}"
        );
    }
    // End state: each managed VM runs once, on DST; the unmanaged one stays behind.
    {
        let w = bed.world();
        for vm in &managed {
            assert_eq!(w.vm_running_on(vm), [DST], "{}", bed.names[vm]);
        }
        assert_eq!(w.vm_running_on(&lnx01), [DST]);
        assert!(w.vm_running_on(&unmanaged).is_empty());
        assert_eq!(w.vms_on_host(DST).len(), 7);
    }
    bed.assert_nothing_runs_twice();
    for vm in &managed {
        let stored = bed.db.vm(vm).unwrap().unwrap().current_host;
        if *vm == ibmi {
            // No monitor ever pairs with an agent-less VM: the engine's own record.
            assert_eq!(stored, None);
        } else {
            assert_eq!(stored, Some(bed.host_id(DST)), "{}", bed.names[vm]);
        }
        assert_eq!(bed.fde.current_host(vm, stored), Some(bed.host_id(DST)));
    }
    // The host comes back: HOST_ACTIVE, the owed cleanups are done; only the unmanaged
    // VM is still defined on it.
    bed.world().host_restore(SRC).unwrap();
    let i = bed.monitor("p18v03");
    bed.start_monitor(i);
    let i = bed.monitor("p18v04");
    bed.start_monitor(i);
    bed.run_until(bed.now() + 60 * S);
    assert_eq!(
        bed.events()
            .iter()
            .filter(|e| e.kind == "HOST_ACTIVE")
            .count(),
        1
    );
    assert!(bed.fde.failed_hosts().is_empty());
    let w = bed.world();
    for vm in &managed {
        assert_eq!(w.vm_defined_on(vm), [DST]);
    }
    assert_eq!(w.vms_defined_on(SRC), [unmanaged]);
}

/// TC-5 (seed 004 L3618-3641, L3784-3839): the daemon starts (and restarts): its first
/// scan is a QuickQuery with no sleep before it; each monitor UP and responsive gives
/// VIOS_CAA_STATE_UP_DETECTED + VIOS_HM_RESP_DETECTED. A VM that was missing before the
/// restart is still relocated within its bound: the misses live in the HSDB.
#[test]
fn tc05_daemon_restart_first_scan_and_monitor_events() {
    let (mut bed, vm) = seed_bed();
    bed.run_until(T0 + 82 * S);
    let fault_at = bed.now();
    bed.world().vm_hang(&vm).unwrap();
    bed.run_until(T0 + 150 * S);
    // The daemon stops at 150 s and is back at 203.5 s.
    bed.engine_running = false;
    bed.run_until(T0 + 203_500);
    let restart_at = bed.now();
    let before = bed.scans.len();
    bed.restart_engine();
    bed.run_until(T0 + 600 * S);
    let (at, first) = &bed.scans[before];
    assert_eq!(
        (*at, first.scan, first.request),
        (restart_at, 1, Request::QuickQuery)
    );
    assert_eq!(
        bed.scans[before + 1].0,
        restart_at + bed.params.scan_interval_ms
    );
    assert_eq!(bed.scans[before + 2].1.request, Request::NeedsAttention);
    // Per monitor, at each start: UP then responsive.
    for name in ["p18v01", "p18v02", "p18v03", "p18v04"] {
        let hm = bed.hm_uuid(name);
        let got: Vec<(String, i64)> = bed
            .events()
            .into_iter()
            .filter(|e| e.hm == Some(hm))
            .map(|e| (e.kind, e.created_ms))
            .collect();
        let start = |t| {
            [
                ("VIOS_CAA_STATE_UP_DETECTED".to_owned(), t),
                ("VIOS_HM_RESP_DETECTED".to_owned(), t),
            ]
        };
        assert_eq!(got, [start(T0), start(restart_at)].concat(), "{name}");
    }
    // The hung VM: relocated after the restart, within its bound from the HSDB's misses.
    let missed = assert_vm_failure_relocated(&bed, &vm, fault_at, 190, true);
    assert!(missed >= 190);
    let rec = bed
        .decisions_about(&vm)
        .into_iter()
        .find(|d| d.verdict == Verdict::Recover)
        .unwrap();
    assert!(rec.at_ms > restart_at);
}

/// TC-9 (seed 004 L12928-12935): one monitor misses the VM, the other still hears it
/// → NeedsAttention never reports it → no decision, no event, no action, for ten minutes
/// (over three VMFDTs).
#[test]
fn tc09_single_path_miss_no_action() {
    let (mut bed, vm) = seed_bed();
    bed.run_until(T0 + 60 * S);
    let i = bed.monitor("p18v03");
    bed.monitors[i].cut.insert(vm);
    bed.run_until(T0 + 660 * S);
    let rows = bed.db.vm_hms(&vm).unwrap();
    let state = |hm: &str| {
        rows.iter()
            .find(|r| r.hm == bed.hm_uuid(hm))
            .unwrap()
            .last_state
    };
    assert_eq!(
        state("p18v03"),
        HeartbeatState::Missing,
        "the miss was written"
    );
    assert_eq!(state("p18v04"), HeartbeatState::Detected);
    assert!(bed.na_scans().len() >= 10);
    assert!(
        bed.decisions_about(&vm).is_empty(),
        "{:#?}",
        bed.decisions_about(&vm)
    );
    assert!(bed.vm_events(&vm).is_empty());
    assert!(
        bed.world().history().iter().all(|r| r.vm != Some(vm)),
        "not even pinged"
    );
    assert!(bed.actions().is_empty());
    assert_eq!(bed.world().vm_running_on(&vm), [SRC]);
}

/// TC-10 (seed 004 L12561-12571, L13660-13674, L12033-12070): a state change comes with
/// an hsTag, acknowledged right after the reply, and is not reported again; a lost
/// acknowledgement's item comes back under a new tag; missed heartbeats carry no tag and
/// are reported at every NeedsAttention until they end.
#[test]
fn tc10_ack_semantics() {
    let (mut bed, vm) = seed_bed();
    let aix03 = Uuid([2; 16]);
    assert_eq!(bed.vm_name(&aix03), "p18aix03");
    // p18aix02's agent stops gracefully (SHDN) with its guest at T0 + 45 s.
    bed.run_until(T0 + 45 * S);
    let now = bed.now();
    let batch: Vec<Transition> = bed
        .monitors
        .iter()
        .filter(|m| m.host_name == SRC)
        .map(|m| Transition::Suspended {
            vm,
            hm: m.uuid,
            at: now,
        })
        .collect();
    bed.db.apply(&batch).unwrap();
    for m in bed.monitors.iter_mut() {
        if let Some(w) = m.watches.get_mut(&vm) {
            w.stopped = true;
        }
    }
    bed.world().vm_power_off(&vm).unwrap();
    bed.run_until(T0 + 101 * S);
    // The NeedsAttention at 100 s (scan 6) reported it.
    let decisions = bed.decisions_about(&vm);
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    assert_eq!(
        decisions[0].reason,
        format!("VM p18aix02 on host {SRC}: monitoring state now SUSPENDED")
    );
    assert_eq!(decisions[0].at_ms, T0 + 100 * S);
    let (_, na) = bed
        .na_scans()
        .into_iter()
        .find(|(at, _)| *at == T0 + 100 * S)
        .unwrap();
    assert!(
        na.acked.is_some(),
        "a tagged reply, acknowledged in the same scan"
    );
    assert!(
        bed.db.pending().unwrap().iter().all(|p| p.vm != Some(vm)),
        "cleared by the ack"
    );
    // p18aix03 hangs: its misses are reported untagged at every NeedsAttention.
    bed.world().vm_hang(&aix03).unwrap();
    // An acknowledgement is lost; then a doorbell rings on p18lnx01.
    let lnx01 = Uuid([3; 16]);
    bed.run_until(T0 + 150 * S);
    bed.lose_acks = 1;
    bed.doorbell(&lnx01, 0x28);
    bed.run_until(T0 + 400 * S);
    // Nothing more about the suspended VM: no decision, no restart.
    assert_eq!(bed.decisions_about(&vm).len(), 1);
    assert!(bed.db.relocations(Some(&vm), 1).unwrap().is_empty());
    // The doorbell: reported at 160 s (ack lost), again at 220 s under a new tag, then gone.
    let bells: Vec<i64> = bed
        .decisions_about(&lnx01)
        .iter()
        .filter(|d| d.verdict == Verdict::Doorbell)
        .map(|d| d.at_ms)
        .collect();
    assert_eq!(bells, [T0 + 160 * S, T0 + 220 * S]);
    let tag_at = |t: i64| {
        bed.na_scans()
            .into_iter()
            .find(|(at, _)| *at == t)
            .unwrap()
            .1
            .acked
    };
    let (t1, t2) = (tag_at(T0 + 160 * S), tag_at(T0 + 220 * S));
    assert!(t1.is_some() && t2.is_some() && t1 != t2, "{t1:?} {t2:?}");
    assert_eq!(bed.db.vm(&lnx01).unwrap().unwrap().short_msg, 0);
    // The misses: reported at every NeedsAttention, never with a tag of their own.
    let samples = below_vmfdt_samples(&bed, &aix03);
    assert!(samples.len() >= 3, "{samples:?}");
    for (at, s) in bed.na_scans() {
        if at >= T0 + 280 * S {
            assert_eq!(s.acked, None, "only misses to report at {}", (at - T0) / S);
        }
    }
}

/// TC-11 (seed 004 L13631-13674): NeedsAttention `shortMsg="0x28"` → "SHORTMSG TASK ADDED
/// ... dbell 28", VM_DOORBELL, acknowledged in the same scan; not a critical application
/// failure, so nothing is restarted.
#[test]
fn tc11_doorbell_shortmsg_task_and_ack() {
    let (mut bed, vm) = seed_bed();
    bed.run_until(T0 + 50 * S);
    bed.doorbell(&vm, 0x28);
    assert_eq!(bed.db.vm(&vm).unwrap().unwrap().short_msg, 0x28);
    bed.run_until(T0 + 300 * S);
    let d = bed.decisions_about(&vm);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (d[0].verdict, d[0].at_ms),
        (Verdict::Doorbell, T0 + 100 * S)
    );
    assert_eq!(d[0].reason, "SHORTMSG TASK ADDED: VM p18aix02, dbell 28");
    assert_eq!(
        bed.vm_events(&vm),
        [(
            "VM_DOORBELL".to_owned(),
            "SHORTMSG TASK ADDED: VM p18aix02, dbell 28".to_owned()
        )]
    );
    let (_, na) = bed
        .na_scans()
        .into_iter()
        .find(|(at, _)| *at == T0 + 100 * S)
        .unwrap();
    assert!(na.acked.is_some());
    assert_eq!(
        bed.db.vm(&vm).unwrap().unwrap().short_msg,
        0,
        "acknowledged"
    );
    assert!(bed.actions().is_empty());
}

/// TC-12 (seed 004 L7070-7110, L7255-7369, L7595-7692): one monitor of SN101AFDR goes
/// down (CAA NODE_DOWN, reason 0x40) for four minutes, over hostFDT, its twin healthy:
/// no host relocation; its node events are delivered by node data and acknowledged
/// (VIOS_NODE_FAILURE, then NETWORK_INTERFACE_ACTIVE and VIOS_NODE_ACTIVE at recovery).
#[test]
fn tc12_one_monitor_caa_down_no_host_relocation() {
    let (mut bed, _) = seed_bed();
    bed.run_until(T0 + 60 * S);
    bed.stop_monitor("p18v03");
    bed.run_until(T0 + 300 * S);
    // Back: hmd registers again; the cluster reports the adapter and the node up.
    let i = bed.monitor("p18v03");
    bed.start_monitor(i);
    let hm = bed.hm_uuid("p18v03");
    let now = bed.now();
    bed.db
        .apply(&[
            Transition::HmEvent {
                hm,
                state: HmState::Up,
                reason: 0,
                text: "EVENT_TYPE=ADAPTER_UP\nINTERFACE_NAME=ent1\n".into(),
                at: now,
            },
            Transition::HmEvent {
                hm,
                state: HmState::Up,
                reason: 0,
                text: "EVENT_TYPE=NODE_UP\n".into(),
                at: now,
            },
        ])
        .unwrap();
    bed.run_until(T0 + 400 * S);
    let got: Vec<(String, i64)> = bed
        .events()
        .into_iter()
        .filter(|e| e.hm == Some(hm))
        .map(|e| (e.kind, (e.created_ms - T0) / S))
        .collect();
    // Silent: at the first QuickQuery after its last heartbeat + hm_silent_after.
    let last_beat = T0 + 30 * S;
    let silent_at = bed
        .scans
        .iter()
        .find(|(at, s)| {
            s.request == Request::QuickQuery && *at - last_beat > bed.params.hm_silent_after_ms
        })
        .unwrap()
        .0;
    let silent_s = (silent_at - T0) / S;
    let expected: Vec<(String, i64)> = [
        ("VIOS_CAA_STATE_UP_DETECTED", 0),
        ("VIOS_HM_RESP_DETECTED", 0),
        ("VIOS_CAA_STATE_DOWN_DETECTED", 60),
        ("VIOS_NODE_FAILURE", 60),
        ("VIOS_HM_NONRESP_DETECTED", silent_s),
        ("VIOS_CAA_STATE_UP_DETECTED", 300),
        ("VIOS_HM_RESP_DETECTED", 300),
        ("NETWORK_INTERFACE_ACTIVE", 300),
        ("VIOS_NODE_ACTIVE", 300),
    ]
    .map(|(k, t)| (k.to_owned(), t))
    .to_vec();
    assert_eq!(got, expected);
    assert_eq!(
        silent_s, 120,
        "last heartbeat at 30 s + 65 s: the QuickQuery at 120 s"
    );
    // Node data acknowledged: no data left.
    assert!(!bed.db.hm(&hm).unwrap().unwrap().has_data);
    // No host decision at all (one monitor of two down), nothing moved.
    assert!(
        bed.fde
            .decisions()
            .iter()
            .all(|d| !matches!(d.subject, Subject::Host { .. }))
    );
    assert!(bed.events().iter().all(|e| !e.kind.starts_with("HOST_")));
    assert!(bed.actions().is_empty());
    assert_eq!(bed.world().vms_on_host(SRC).len(), 2);
}

/// TC-13 (seed 004 L12995-13048): a live migration (LPM) is not a failure —
/// NeedsAttention reports `stateChg`, `discoveryInfo MOVED` with `missedHMEntry` for the
/// target's monitor that has not paired yet; acknowledged; no relocation.
#[test]
fn tc13_lpm_moved_acked_no_relocation() {
    let (mut bed, _) = seed_bed();
    let vm = Uuid([2; 16]);
    bed.run_until(T0 + 76 * S);
    // The migration: the guest continues on DST, its definition leaves SRC.
    let spec = bed.world().vm_spec(&vm).unwrap().clone();
    bed.world().vm_power_off(&vm).unwrap();
    bed.platform.start(DST, &spec).unwrap();
    bed.platform.cleanup(SRC, &vm).unwrap();
    bed.world().clear_history();
    bed.run_until(T0 + 400 * S);
    let d = bed.decisions_about(&vm);
    let moved: Vec<&Decision> = d.iter().filter(|d| d.verdict == Verdict::Moved).collect();
    assert_eq!(moved.len(), 1, "{d:#?}");
    let v02 = bed.hm_uuid("p18v02");
    assert_eq!(
        moved[0].reason,
        format!(
            "VM p18aix03 moved to host {DST} (live migration, no row yet for monitor {v02}): not a failure"
        )
    );
    // At the first NeedsAttention after p18v01 paired (its Hello at 90 s) and before
    // p18v02's (105 s).
    let first_na = bed
        .na_scans()
        .into_iter()
        .find(|(at, _)| *at >= T0 + 90 * S)
        .unwrap()
        .0;
    assert!(first_na < T0 + 105 * S);
    assert_eq!(moved[0].at_ms, first_na);
    assert!(
        d.iter()
            .all(|d| matches!(d.verdict, Verdict::Moved | Verdict::NoAction)),
        "{d:#?}"
    );
    let (_, na) = bed
        .na_scans()
        .into_iter()
        .find(|(at, _)| *at == first_na)
        .unwrap();
    assert!(na.acked.is_some(), "the move is acknowledged");
    assert_eq!(kinds(&bed.vm_events(&vm)), ["VM_MOVED"]);
    assert!(bed.db.relocations(None, 10).unwrap().is_empty());
    assert!(bed.actions().is_empty());
    assert_eq!(bed.world().vm_running_on(&vm), [DST]);
    assert_eq!(
        bed.db.vm(&vm).unwrap().unwrap().current_host,
        Some(bed.host_id(DST))
    );
    let rows: BTreeSet<Uuid> = bed.db.vm_hms(&vm).unwrap().iter().map(|r| r.hm).collect();
    assert_eq!(
        rows,
        [bed.hm_uuid("p18v01"), v02].into(),
        "the old host's rows retired"
    );
    bed.assert_nothing_runs_twice();
}

/// TC-14 (seed 004 L13767-13771, L16202-16208): a critical application in FAILURE — the
/// VM is restarted on the same host, at most 3 times; the 4th failure relocates it to
/// another host. Driven through the doorbell the engine implements (bit 0x100,
/// docs/controlplane.md "Doorbells and critical applications (gap 17)").
#[test]
fn tc14_critical_app_restarts_then_relocates() {
    let (mut bed, vm) = seed_bed();
    let bell = controlplane::fde::DBELL_APP_CRITICAL_FAILURE;
    let na_period = i64::from(bed.params.na_every) * bed.params.scan_interval_ms;
    bed.run_until(T0 + 30 * S);
    for round in 1..=4_usize {
        let rang = bed.now();
        bed.doorbell(&vm, bell);
        let done = bed.run_until_cond(rang + 300 * S, |b| {
            let rows = b.db.relocations(Some(&vm), 10).unwrap();
            rows.len() == round && rows.iter().all(|r| r.ended_ms.is_some())
        });
        assert!(
            done.is_some(),
            "round {round}: {:#?}",
            bed.decisions_about(&vm)
        );
        let rows = bed.db.relocations(Some(&vm), 10).unwrap();
        let newest = rows.iter().max_by_key(|r| r.id).unwrap();
        assert!(
            newest.started_ms - rang <= na_period,
            "round {round}: decided at the next NeedsAttention"
        );
        bed.run_until(bed.now() + 60 * S);
    }
    let mut rows = bed.db.relocations(Some(&vm), 10).unwrap();
    rows.sort_by_key(|r| r.id);
    let (src, dst) = (bed.host_id(SRC), bed.host_id(DST));
    for r in &rows[..3] {
        assert_eq!(
            (r.kind, r.from_host, r.to_host),
            (RelocationKind::Restart, Some(src), Some(src))
        );
        assert_eq!(
            r.result.as_deref(),
            Some("success (same host: no configuration cleanup)")
        );
    }
    assert_eq!(
        (rows[3].kind, rows[3].from_host, rows[3].to_host),
        (RelocationKind::Relocate, Some(src), Some(dst))
    );
    assert_eq!(rows[3].result.as_deref(), Some("success"));
    let escalations: Vec<String> = bed
        .decisions_about(&vm)
        .into_iter()
        .filter(|d| d.verdict == Verdict::AppEscalation)
        .map(|d| d.reason)
        .collect();
    let text = |n| {
        format!(
            "critical application of VM p18aix02 is in FAILURE; same-host restarts so far {n} of 3"
        )
    };
    assert_eq!(
        escalations,
        [
            format!("{}: restart on the same host {SRC}", text(0)),
            format!("{}: restart on the same host {SRC}", text(1)),
            format!("{}: restart on the same host {SRC}", text(2)),
            format!("{}: relocate to another host", text(3)),
        ]
    );
    let events = bed.vm_events(&vm);
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|k| **k == "APP_FAILURE_DETECTED")
            .count(),
        4
    );
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|k| **k == "VM_DOORBELL")
            .count(),
        4
    );
    // Each same-host restart: the seed's steps with target = source, no cleanup.
    let completed: Vec<&String> = events
        .iter()
        .filter(|(k, _)| k == "VM_RESTART_COMPLETED")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(completed.len(), 4);
    for t in &completed[..3] {
        assert_eq!(
            **t,
            format!("Restart on Target host {SRC} has completed for VM p18aix02")
        );
    }
    assert_eq!(
        *completed[3],
        format!("Restart on Target host {DST} has completed for VM p18aix02")
    );
    let same_host = [
        (Call::Stop, SRC.to_owned(), vm),
        (Call::Start, SRC.to_owned(), vm),
    ];
    let mut expected: Vec<(Call, String, Uuid)> =
        same_host.iter().cloned().cycle().take(6).collect();
    expected.extend([
        (Call::Stop, SRC.to_owned(), vm),
        (Call::Start, DST.to_owned(), vm),
        (Call::Cleanup, SRC.to_owned(), vm),
    ]);
    assert_eq!(bed.actions(), expected);
    assert_eq!(bed.world().vm_running_on(&vm), [DST]);
    bed.assert_nothing_runs_twice();
}

// ---- TC-1, TC-2, TC-3, TC-14 with the policy planner (policies on) ----------------------

/// A third host of the group for the policy scenarios: with two hosts every placement is
/// forced; with three the policies choose.
const THIRD: &str = "Server-8284-22A-SN10EE86Q";

/// The seed's two hosts and a third one (monitors p18v05, p18v06), standard parameters.
fn three_host_bed() -> Bed {
    Bed::with_hosts(
        GroupParams::standard(GROUP),
        Timers::SEED,
        &[
            (SRC, ["p18v03", "p18v04"]),
            (DST, ["p18v01", "p18v02"]),
            (THIRD, ["p18v05", "p18v06"]),
        ],
    )
}

fn vm_set(name: &str, members: &[Uuid]) -> controlplane::planner::VmSet {
    controlplane::planner::VmSet {
        name: name.to_owned(),
        members: members.to_vec(),
    }
}

/// The host a VM's one relocation went to, from its `relocation` row.
fn relocated_to(bed: &Bed, vm: &Uuid) -> HostId {
    let rows = bed.db.relocations(Some(vm), 10).unwrap();
    assert_eq!(rows.len(), 1, "{}: {rows:?}", bed.vm_name(vm));
    assert_eq!(
        rows[0].result.as_deref().map(|r| r.starts_with("success")),
        Some(true)
    );
    rows[0].to_host.unwrap()
}

/// TC-1 with policies: p18lnx02's home host is the third host (the seed's test bed gives
/// the VM a home host other than the one it runs on, seed 004 L17309-17319); SN10EE85P is
/// both the first host in order and the tighter fit (first fit and best fit would both
/// pick it), yet the VM goes home: the home host is preferred when eligible and it fits.
#[test]
fn tc01_with_policies_home_host_preferred_over_best_fit() {
    let mut bed = three_host_bed();
    let lnx02 = bed.add_vm(
        SRC,
        "p18lnx02",
        VmOpts::new()
            .priority(Priority::High)
            .speed(DetectionSpeed::Fast),
    );
    bed.add_vm(THIRD, "p18lnx01", VmOpts::new());
    for n in 1..=4 {
        bed.add_vm(DST, &format!("p18aix1{n}"), VmOpts::new());
    }
    let home = bed.host_id(THIRD);
    bed.db
        .set_vm(
            &lnx02,
            &hsdb::VmSettings {
                home_host: Some(home),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    bed.run_until(T0 + 60 * S);
    let fault_at = bed.now();
    bed.world().vm_os_crash(&lnx02).unwrap();
    let done = bed.run_until_cond(fault_at + 400 * S, |b| {
        b.db.relocations(Some(&lnx02), 1)
            .unwrap()
            .first()
            .is_some_and(|r| r.ended_ms.is_some())
    });
    assert!(done.is_some(), "{:#?}", bed.decisions_about(&lnx02));
    assert_eq!(relocated_to(&bed, &lnx02), home);
    assert_eq!(bed.world().vm_running_on(&lnx02), [THIRD]);
    bed.assert_nothing_runs_twice();
}

/// TC-2 with policies: p18aix02 is anticollocated with p18lnx01, which runs on
/// SN10EE85P (its home host and the best fit): it goes to the third host instead.
#[test]
fn tc02_with_policies_anticollocation_with_a_running_vm() {
    let mut bed = three_host_bed();
    let aix02 = bed.add_vm(SRC, "p18aix02", VmOpts::new());
    let lnx01 = bed.add_vm(DST, "p18lnx01", VmOpts::new());
    bed.add_vm(DST, "p18lnx02", VmOpts::new().priority(Priority::High));
    let home = bed.host_id(DST);
    bed.db
        .set_vm(
            &aix02,
            &hsdb::VmSettings {
                home_host: Some(home),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    bed.fde.set_policies(controlplane::planner::Policies {
        anticollocations: vec![vm_set("apart", &[aix02, lnx01])],
        ..Default::default()
    });
    bed.run_until(T0 + 45 * S);
    let fault_at = bed.now();
    bed.world().vm_os_crash(&aix02).unwrap();
    let done = bed.run_until_cond(fault_at + 400 * S, |b| {
        b.db.relocations(Some(&aix02), 1)
            .unwrap()
            .first()
            .is_some_and(|r| r.ended_ms.is_some())
    });
    assert!(done.is_some(), "{:#?}", bed.decisions_about(&aix02));
    assert_eq!(relocated_to(&bed, &aix02), bed.host_id(THIRD));
    assert_eq!(bed.world().vm_running_on(&aix02), [THIRD]);
    assert_eq!(bed.world().vm_running_on(&lnx01), [DST]);
    bed.assert_nothing_runs_twice();
}

/// TC-3 with policies: the host fails with six managed VMs; p18aix02 and p18aix03 are
/// collocated, p18aix04 and p18aix05 anticollocated, p18ibmi01 excludes SN10EE85P.
/// Every VM is restarted (6 out of 6), the High-priority one first, and every policy
/// holds on the two surviving hosts.
#[test]
fn tc03_with_policies_host_failure() {
    let mut bed = three_host_bed();
    let ibmi = bed.add_vm(SRC, "p18ibmi01", VmOpts::new().agentless());
    let aix: Vec<Uuid> = (2..=5)
        .map(|n| bed.add_vm(SRC, &format!("p18aix0{n}"), VmOpts::new()))
        .collect();
    let lnx02 = bed.add_vm(SRC, "p18lnx02", VmOpts::new().priority(Priority::High));
    bed.add_vm(DST, "p18lnx01", VmOpts::new());
    let mut exclusions = std::collections::BTreeMap::new();
    exclusions.insert(ibmi, vec![bed.host_id(DST)]);
    bed.fde.set_policies(controlplane::planner::Policies {
        collocations: vec![vm_set("pair", &[aix[0], aix[1]])],
        anticollocations: vec![vm_set("apart", &[aix[2], aix[3]])],
        exclusions,
        ..Default::default()
    });
    bed.run_until(T0 + 70 * S);
    bed.kill_monitor("p18v03");
    bed.kill_monitor("p18v04");
    bed.world().host_loss(SRC).unwrap();
    let fault_at = bed.now();
    let done = bed.run_until_cond(fault_at + 600 * S, |b| {
        b.events().iter().any(|e| e.kind == "RESTART_SUMMARY")
    });
    assert!(
        done.is_some(),
        "{:#?}",
        bed.fde.decisions().iter().collect::<Vec<_>>()
    );
    bed.run_until(bed.now() + 60 * S);
    let events = bed.events();
    let summary: Vec<&EventRow> = events
        .iter()
        .filter(|e| e.kind == "RESTART_SUMMARY")
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        summary[0].text,
        "6 out of 6 VMs have been successfully restarted"
    );
    let first_started = events
        .iter()
        .find(|e| e.kind == "VM_RESTART_PROGRESS" && e.text.starts_with("Restart has started"))
        .and_then(|e| e.vm);
    assert_eq!(first_started, Some(lnx02), "High priority first");
    let (dst, third) = (bed.host_id(DST), bed.host_id(THIRD));
    assert_eq!(
        relocated_to(&bed, &ibmi),
        third,
        "its exclusion list names SN10EE85P"
    );
    assert_eq!(
        relocated_to(&bed, &aix[0]),
        relocated_to(&bed, &aix[1]),
        "collocated: one host"
    );
    assert_ne!(
        relocated_to(&bed, &aix[2]),
        relocated_to(&bed, &aix[3]),
        "anticollocated: two hosts"
    );
    for vm in aix.iter().chain([&ibmi, &lnx02]) {
        let to = relocated_to(&bed, vm);
        assert!(to == dst || to == third, "{}", bed.vm_name(vm));
        let host = if to == dst { DST } else { THIRD };
        assert_eq!(bed.world().vm_running_on(vm), [host], "{}", bed.vm_name(vm));
    }
    bed.assert_nothing_runs_twice();
}

/// TC-14 with policies: after three same-host restarts the critical application's VM is
/// relocated, and that relocation obeys the placement policies like any other: its
/// exclusion list names SN10EE85P, so it goes to the third host.
#[test]
fn tc14_with_policies_relocation_obeys_exclusions() {
    let mut bed = three_host_bed();
    let vm = bed.add_vm(SRC, "p18aix02", VmOpts::new());
    bed.add_vm(SRC, "p18aix03", VmOpts::new());
    bed.add_vm(DST, "p18lnx01", VmOpts::new());
    let mut exclusions = std::collections::BTreeMap::new();
    exclusions.insert(vm, vec![bed.host_id(DST)]);
    bed.fde.set_policies(controlplane::planner::Policies {
        exclusions,
        ..Default::default()
    });
    let bell = controlplane::fde::DBELL_APP_CRITICAL_FAILURE;
    bed.run_until(T0 + 30 * S);
    for round in 1..=4_usize {
        let rang = bed.now();
        bed.doorbell(&vm, bell);
        let done = bed.run_until_cond(rang + 300 * S, |b| {
            let rows = b.db.relocations(Some(&vm), 10).unwrap();
            rows.len() == round && rows.iter().all(|r| r.ended_ms.is_some())
        });
        assert!(
            done.is_some(),
            "round {round}: {:#?}",
            bed.decisions_about(&vm)
        );
        bed.run_until(bed.now() + 60 * S);
    }
    let mut rows = bed.db.relocations(Some(&vm), 10).unwrap();
    rows.sort_by_key(|r| r.id);
    let (src, third) = (bed.host_id(SRC), bed.host_id(THIRD));
    for r in &rows[..3] {
        assert_eq!(
            (r.kind, r.from_host, r.to_host),
            (RelocationKind::Restart, Some(src), Some(src))
        );
    }
    assert_eq!(
        (rows[3].kind, rows[3].from_host, rows[3].to_host),
        (RelocationKind::Relocate, Some(src), Some(third))
    );
    assert_eq!(bed.world().vm_running_on(&vm), [THIRD]);
    bed.assert_nothing_runs_twice();
}
