//! The invariants the simulation checks at every step, and the failures it is owed action
//! on (docs/controlplane.md, "Simulation").
//!
//! 1. **No live VM is restarted or relocated.** A VM is *alive* when it runs on a host
//!    that is up, its guest has booted, and the guest is neither hung nor crashed: it
//!    answers a ping, and its agent heartbeats unless only the agent is stopped, hung or
//!    cut off (exactly [`SimWorld::vm_alive`]). At the instant the engine begins a stop or
//!    a cleanup of a VM on a host where it is alive, or a start of a VM alive anywhere,
//!    the invariant is broken. So is any stop or start of a VM the engine itself started
//!    and whose guest is still booting (a VM decided on twice).
//! 2. **No VM runs on two hosts at once** (two hosts that are up with its domain Running).
//! 3. **Every real failure is acted on within its bound.** A real failure is a managed
//!    VM whose guest hangs or crashes for good, or a host lost with its managed VMs. It
//!    is acted on when the engine started the VM again (on any host); its deadline is
//!    computed by [`Bounds`] from the engine's and the monitors' parameters.
//!
//! A violation carries the seed, the step, the VM and the history of the run's last
//! events, and prints them all.

use std::collections::BTreeMap;
use std::fmt;

use hsdb::{HostId, Uuid};

use crate::platform::sim::SimWorld;

/// Which invariant was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A live VM was stopped, cleaned up or started again.
    LiveVmRestarted,
    /// A VM the engine had just started was acted on again while booting.
    BootingVmRestarted,
    /// A VM ran on two hosts at once.
    RunningTwice,
    /// A real failure was not acted on by its deadline.
    FailureNotActedOn,
    /// The engine acted on a VM whose host is in a planned shutdown.
    PlannedShutdownActedOn,
    /// The simulation's own machinery failed (HSDB error, engine error).
    Machinery,
}

impl Rule {
    /// Its name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::LiveVmRestarted => "a live VM was restarted or relocated",
            Rule::BootingVmRestarted => "a VM still booting from a restart was acted on again",
            Rule::RunningTwice => "a VM ran on two hosts at once",
            Rule::FailureNotActedOn => "a real failure was not acted on within its bound",
            Rule::PlannedShutdownActedOn => "a VM of a host in planned shutdown was acted on",
            Rule::Machinery => "the simulation's machinery failed",
        }
    }
}

/// A broken invariant, with everything needed to replay and understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimViolation {
    /// The run's seed: `Simulation::new` with it replays the run exactly.
    pub seed: u64,
    /// The step number at which it was seen.
    pub step: u64,
    /// Virtual time, ms since the epoch.
    pub at_ms: i64,
    /// The rule.
    pub rule: Rule,
    /// The VM concerned, if any.
    pub vm: Option<Uuid>,
    /// What exactly happened.
    pub detail: String,
    /// The last lines of the run's trace, oldest first.
    pub history: Vec<String>,
    /// The last lines about the VM, oldest first.
    pub vm_history: Vec<String>,
}

impl fmt::Display for SimViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant broken: {} (seed {}, step {}, t={} ms{})",
            self.rule.as_str(),
            self.seed,
            self.step,
            self.at_ms,
            self.vm.map(|v| format!(", vm {v}")).unwrap_or_default()
        )?;
        writeln!(f, "  {}", self.detail)?;
        if !self.vm_history.is_empty() {
            writeln!(
                f,
                "  the VM's history (last {} lines):",
                self.vm_history.len()
            )?;
            for line in &self.vm_history {
                writeln!(f, "    {line}")?;
            }
        }
        writeln!(f, "  history (last {} lines):", self.history.len())?;
        for line in &self.history {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// The detection and action bounds, from the engine's and the monitors' parameters
/// ([`super::setup::bounds`] derives them; docs/controlplane.md, "Simulation").
///
/// ```text
/// VM failure (hang, OS crash) at t — or, if a monitor of its host was restarting or deaf,
/// its hypervisor cut off or a host slow after t, the end of that impairment, t':
///   deadline = t + miss + VMFDT + NA cycle + 1 s + action          (t' adds hello)
///   miss     = vm_miss_after            (the last heartbeat left at most at t)
///   NA cycle = na_every × scan_interval (missedHb is refreshed only by NeedsAttention)
///   1 s      = missedHb counts whole seconds
///   action   = ping without reply + vm_status + command pickup + executor poll
///              + stop + start          (the start is the action that counts)
/// host lost at t with n managed VMs:
///   deadline = t + max(host_fdt, hm_silent_after) + 2 × scan_interval
///              + action + n × (start + executor poll)
///   (silence counts from the monitors' last heartbeat, at most t; host decisions are
///   taken on QuickQuery scans, at most two scan intervals apart)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `vm_miss_after` of the monitors, ms.
    pub miss_ms: i64,
    /// Hello period of the monitors, ms (re-pairing after a restart).
    pub hello_ms: i64,
    /// The engine's scan interval, ms.
    pub scan_interval_ms: i64,
    /// NeedsAttention every this many scans.
    pub na_every: i64,
    /// `host_failure_detection_time`, ms.
    pub host_fdt_ms: i64,
    /// A monitor is silent after this long without a heartbeat, ms.
    pub hm_silent_after_ms: i64,
    /// The longest one VM's restart takes from the decision to its start, ms.
    pub action_ms: i64,
    /// What each more VM of a lost host adds (restarts are carried out one after the
    /// other on the platform), ms.
    pub per_vm_ms: i64,
}

impl Bounds {
    /// Deadline to act on a VM failure whose evidence starts at `from` (the failure, or
    /// the end of an impairment of its monitors, `impaired`), for a VM judged with
    /// `vmfdt_ms`.
    pub const fn vm_deadline(&self, from: i64, impaired: bool, vmfdt_ms: i64) -> i64 {
        let rejoin = if impaired { self.hello_ms } else { 0 };
        from + self.miss_ms
            + rejoin
            + vmfdt_ms
            + self.na_every * self.scan_interval_ms
            + 1_000
            + self.action_ms
    }

    /// Deadline to act on a host lost at `from` with `vms` managed VMs on it.
    pub const fn host_deadline(&self, from: i64, vms: i64) -> i64 {
        let fdt = if self.host_fdt_ms > self.hm_silent_after_ms {
            self.host_fdt_ms
        } else {
            self.hm_silent_after_ms
        };
        from + fdt + 2 * self.scan_interval_ms + self.action_ms + vms * self.per_vm_ms
    }
}

/// What kind of real failure an episode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest hangs for good.
    VmHang,
    /// The kernel panicked.
    OsCrash,
    /// Its host was lost.
    HostLoss,
}

/// How recent the engine's last probe of a VM must be for an action on it, alive again,
/// to count as a race rather than a violation: longer than the engine waits for its
/// monitors before a stop (`command_timeout`, 30 s by default).
pub const RACE_WINDOW_MS: i64 = 60_000;

/// An action on a VM that was dead at the engine's last probe and alive again when the
/// action began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Race {
    /// The VM.
    pub vm: Uuid,
    /// When the action began.
    pub at_ms: i64,
    /// When the engine's last probe, which found it dead, returned.
    pub probed_ms: i64,
    /// The action.
    pub action: &'static str,
}

/// A real failure awaiting action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// What failed.
    pub kind: FailureKind,
    /// The host the VM ran on.
    pub host: HostId,
    /// When.
    pub at_ms: i64,
    /// By when the engine must have started the VM again.
    pub deadline_ms: i64,
    /// The VMFDT the VM is judged with (to recompute the deadline); for a host loss,
    /// the number of managed VMs the host had.
    pub vmfdt_ms: i64,
    /// Time the engine spent on other VMs' and hosts' platform calls meanwhile (added to
    /// the deadline).
    pub queued_ms: i64,
}

/// How long an episode took to be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Time the engine spent on other subjects meanwhile, ms (part of `bound_ms`).
    pub queued_ms: i64,
    /// Acted on while an impairment of its host held the deadline (`bound_ms` is then
    /// the deadline before the impairment ended, and may be exceeded).
    pub held: bool,
    /// The VM.
    pub vm: Uuid,
    /// The failure.
    pub kind: FailureKind,
    /// From the failure to the start that recovered it, ms.
    pub latency_ms: i64,
    /// The deadline it had, relative to the failure, ms.
    pub bound_ms: i64,
}

/// The invariant checker of one run.
#[derive(Debug)]
pub struct Checker {
    bounds: Bounds,
    /// Open episodes, by VM.
    open: BTreeMap<Uuid, Episode>,
    /// Episodes acted on, in order.
    recovered: Vec<Recovery>,
    /// Episodes that ended on their own (the guest recovered before any action).
    healed: u64,
    /// Broken invariants, in order.
    violations: Vec<(Rule, Option<Uuid>, i64, String)>,
    /// Hosts with impairments in progress, and how many.
    held: BTreeMap<HostId, u32>,
    /// VMs whose critical application failed: the engine may restart them (once each).
    allowed: std::collections::BTreeSet<Uuid>,
    /// The engine's last probe of each VM: when it returned, and whether the VM was
    /// alive then.
    probed: BTreeMap<Uuid, (i64, bool)>,
    /// Actions on VMs alive again since the engine's last probe.
    races: Vec<Race>,
}

impl Checker {
    /// A checker with `bounds`.
    pub fn new(bounds: Bounds) -> Checker {
        Checker {
            bounds,
            open: BTreeMap::new(),
            recovered: Vec::new(),
            healed: 0,
            violations: Vec::new(),
            held: BTreeMap::new(),
            allowed: std::collections::BTreeSet::new(),
            probed: BTreeMap::new(),
            races: Vec::new(),
        }
    }

    /// The bounds.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// A real failure of `vm` on `host` at `at`, judged with `vmfdt_ms` (for a host
    /// loss: the number of managed VMs lost with the host).
    pub fn failure(&mut self, vm: Uuid, host: HostId, kind: FailureKind, at: i64, vmfdt_ms: i64) {
        let deadline_ms = match kind {
            FailureKind::HostLoss => self.bounds.host_deadline(at, vmfdt_ms),
            FailureKind::VmHang | FailureKind::OsCrash => {
                self.bounds.vm_deadline(at, false, vmfdt_ms)
            }
        };
        // A VM that failed and then lost its host waits for the host decision: the later
        // of the two deadlines, as a host loss. Otherwise a second failure of a VM already
        // awaiting action keeps the first deadline.
        if kind == FailureKind::HostLoss
            && let Some(e) = self.open.get_mut(&vm)
        {
            e.kind = FailureKind::HostLoss;
            e.deadline_ms = e.deadline_ms.max(deadline_ms);
            return;
        }
        self.open.entry(vm).or_insert(Episode {
            kind,
            host,
            at_ms: at,
            deadline_ms,
            vmfdt_ms,
            queued_ms: 0,
        });
    }

    /// The evidence against the VMs of `host` is unavailable from now on (one of its
    /// monitors restarts or is deaf, its hypervisor does not answer, it is slow): the
    /// deadlines of its VM failures wait until [`Checker::release`].
    pub fn hold(&mut self, host: HostId) {
        *self.held.entry(host).or_insert(0) += 1;
    }

    /// One impairment of `host` ended at `now`: its VM failures' deadlines count from
    /// now (plus a Hello period to re-pair) if that is later.
    pub fn release(&mut self, host: HostId, now: i64) {
        if let Some(n) = self.held.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&host);
            }
        }
        let bounds = self.bounds;
        for e in self.open.values_mut() {
            if e.host == host && e.kind != FailureKind::HostLoss {
                e.deadline_ms = e
                    .deadline_ms
                    .max(bounds.vm_deadline(now, true, e.vmfdt_ms) + e.queued_ms);
            }
        }
    }

    /// Some impairment of `host` is in progress.
    pub fn held(&self, host: HostId) -> bool {
        self.held.contains_key(&host)
    }

    /// The engine spent `ms` in a platform call about `subject` (a VM, or a host when
    /// `None`). The engine does one call at a time, so every other open failure waits
    /// that long: its deadline moves by `ms` (a queue in front of its own detection and
    /// action; docs/controlplane.md, "Simulation").
    pub fn engine_spent(&mut self, subject: Option<&Uuid>, ms: i64) {
        if ms <= 0 {
            return;
        }
        for (vm, e) in &mut self.open {
            if Some(vm) != subject {
                e.deadline_ms += ms;
                e.queued_ms += ms;
            }
        }
    }

    /// The failure of `vm` ended without action (the guest recovered by itself).
    pub fn healed(&mut self, vm: &Uuid) {
        if self.open.remove(vm).is_some() {
            self.healed += 1;
        }
    }

    /// The open episode of `vm`, if any.
    pub fn episode(&self, vm: &Uuid) -> Option<&Episode> {
        self.open.get(vm)
    }

    /// The VMs with an open episode of a failure on `host` (running there still, or
    /// already stopped there by a restart in progress).
    pub fn open_on(&self, host: HostId) -> Vec<Uuid> {
        self.open
            .iter()
            .filter(|(_, e)| e.host == host)
            .map(|(vm, _)| *vm)
            .collect()
    }

    /// A critical application of `vm` failed: the engine may stop and start it, alive as it
    /// is (the seed's same-host restarts and relocation, seed 004 L13767-13771), until its
    /// next start.
    pub fn allow_restart(&mut self, vm: Uuid) {
        self.allowed.insert(vm);
    }

    /// The engine started `vm` at `at`: its episode, if any, is acted on.
    pub fn started(&mut self, vm: &Uuid, at: i64) {
        self.allowed.remove(vm);
        if let Some(e) = self.open.remove(vm) {
            let held = e.kind != FailureKind::HostLoss && self.held.contains_key(&e.host);
            self.recovered.push(Recovery {
                queued_ms: e.queued_ms,
                held,
                vm: *vm,
                kind: e.kind,
                latency_ms: at - e.at_ms,
                bound_ms: e.deadline_ms - e.at_ms,
            });
            if at > e.deadline_ms && !held {
                self.violate(
                    Rule::FailureNotActedOn,
                    Some(*vm),
                    at,
                    format!(
                        "{:?} at {} ms was acted on at {} ms, {} ms after its deadline ({} ms \
                         after the failure)",
                        e.kind,
                        e.at_ms,
                        at,
                        at - e.deadline_ms,
                        e.deadline_ms - e.at_ms
                    ),
                );
            }
        }
    }

    /// Check before the engine stops (`Stop`), cleans up (`Cleanup`) or starts (`Start`)
    /// `vm` on `host` at `at`. `booting` says the VM is still booting from a start.
    pub fn before_action(
        &mut self,
        world: &SimWorld,
        action: crate::platform::sim::Call,
        host: &str,
        vm: &Uuid,
        booting: bool,
        at: i64,
    ) {
        use crate::platform::sim::Call;
        let running_on = world.vm_running_on(vm);
        let alive = world.vm_alive(vm);
        let runs_here = running_on.iter().any(|h| h == host);
        let allowed = self.allowed.contains(vm);
        let broken = !allowed
            && match action {
                Call::Stop | Call::Cleanup => alive && runs_here,
                Call::Start => alive,
                _ => false,
            };
        // The VM came back to life after the engine's last look at it (a probe that found
        // it dead, within RACE_WINDOW_MS): a check-then-act race no engine can close,
        // counted rather than failed.
        let raced = self
            .probed
            .get(vm)
            .is_some_and(|(t, was_alive)| !was_alive && at - t <= RACE_WINDOW_MS);
        if broken && raced {
            self.races.push(Race {
                vm: *vm,
                at_ms: at,
                probed_ms: self.probed.get(vm).map_or(at, |(t, _)| *t),
                action: action.as_str(),
            });
        } else if broken {
            self.violate(
                Rule::LiveVmRestarted,
                Some(*vm),
                at,
                format!(
                    "{} {host} {vm}: the VM is alive (running on {running_on:?}, booted, \
                     guest fault {:?}; the engine's last probe of it: {:?})",
                    action.as_str(),
                    world.vm_fault(vm),
                    self.probed.get(vm)
                ),
            );
        } else if booting && (action == Call::Start || (action == Call::Stop && runs_here)) {
            self.violate(
                Rule::BootingVmRestarted,
                Some(*vm),
                at,
                format!(
                    "{} {host} {vm}: the VM is still booting from a start (running on \
                     {running_on:?})",
                    action.as_str()
                ),
            );
        }
    }

    /// The engine probed `vm` (ping, platform state) and the call returned at `at`, when
    /// the VM was `alive` or not.
    pub fn probed(&mut self, vm: Uuid, alive: bool, at: i64) {
        self.probed.insert(vm, (at, alive));
    }

    /// Actions on a VM that came back to life after the engine's last probe found it dead.
    pub fn races(&self) -> &[Race] {
        &self.races
    }

    /// No VM of `vms` runs on two hosts.
    pub fn check_running_once(&mut self, world: &SimWorld, vms: &[Uuid], at: i64) {
        for vm in vms {
            let on = world.vm_running_on(vm);
            if on.len() > 1 {
                self.violate(
                    Rule::RunningTwice,
                    Some(*vm),
                    at,
                    format!("VM {vm} runs on {on:?}"),
                );
            }
        }
    }

    /// Every open episode whose deadline passed before `now` is a violation.
    pub fn check_deadlines(&mut self, now: i64) {
        let late: Vec<(Uuid, Episode)> = self
            .open
            .iter()
            .filter(|(_, e)| e.deadline_ms < now)
            .filter(|(_, e)| e.kind == FailureKind::HostLoss || !self.held.contains_key(&e.host))
            .map(|(v, e)| (*v, *e))
            .collect();
        for (vm, e) in late {
            self.open.remove(&vm);
            self.violate(
                Rule::FailureNotActedOn,
                Some(vm),
                now,
                format!(
                    "{:?} at {} ms not acted on by its deadline {} ms ({} ms after the failure)",
                    e.kind,
                    e.at_ms,
                    e.deadline_ms,
                    e.deadline_ms - e.at_ms
                ),
            );
        }
    }

    /// The earliest open deadline not on hold (the simulation steps there to check it).
    pub fn next_deadline(&self) -> Option<i64> {
        self.open
            .values()
            .filter(|e| e.kind == FailureKind::HostLoss || !self.held.contains_key(&e.host))
            .map(|e| e.deadline_ms + 1)
            .min()
    }

    /// Record a broken invariant.
    pub fn violate(&mut self, rule: Rule, vm: Option<Uuid>, at: i64, detail: String) {
        self.violations.push((rule, vm, at, detail));
    }

    /// Some broken invariant has not been taken yet.
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }

    /// Broken invariants not taken yet.
    pub fn take_violations(&mut self) -> Vec<(Rule, Option<Uuid>, i64, String)> {
        std::mem::take(&mut self.violations)
    }

    /// Failures acted on, in order.
    pub fn recovered(&self) -> &[Recovery] {
        &self.recovered
    }

    /// Failures that ended before any action.
    pub fn healed_count(&self) -> u64 {
        self.healed
    }

    /// Failures still awaiting action.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::clock::ManualClock;
    use crate::platform::VmSpec;
    use crate::platform::sim::Call;

    fn bounds() -> Bounds {
        Bounds {
            miss_ms: 20_000,
            hello_ms: 30_000,
            scan_interval_ms: 20_000,
            na_every: 3,
            host_fdt_ms: 90_000,
            hm_silent_after_ms: 65_000,
            action_ms: 30_000,
            per_vm_ms: 6_000,
        }
    }

    #[test]
    fn test_vm_deadline_formula() {
        let b = bounds();
        // 20 + 190 + 60 + 1 + 30 s.
        assert_eq!(b.vm_deadline(0, false, 190_000), 301_000);
        assert_eq!(b.vm_deadline(0, true, 190_000), 331_000);
        // 90 + 2 × 20 + 30 + 10 × 6 s.
        assert_eq!(b.host_deadline(0, 10), 220_000);
    }

    #[test]
    fn test_late_action_and_missed_deadline_are_violations() {
        let mut c = Checker::new(bounds());
        let (a, b) = (Uuid([1; 16]), Uuid([2; 16]));
        c.failure(a, HostId(1), FailureKind::VmHang, 0, 190_000);
        c.failure(b, HostId(1), FailureKind::OsCrash, 0, 190_000);
        c.started(&a, 300_000);
        assert!(c.take_violations().is_empty());
        assert_eq!(c.recovered()[0].latency_ms, 300_000);
        c.check_deadlines(301_000);
        assert!(c.take_violations().is_empty());
        c.check_deadlines(301_001);
        let v = c.take_violations();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].0, v[0].1), (Rule::FailureNotActedOn, Some(b)));
    }

    #[test]
    fn test_impairment_holds_then_moves_the_deadline_and_healing_closes_it() {
        let mut c = Checker::new(bounds());
        let a = Uuid([1; 16]);
        c.hold(HostId(1));
        c.failure(a, HostId(1), FailureKind::VmHang, 0, 190_000);
        c.check_deadlines(10_000_000);
        assert!(c.take_violations().is_empty(), "held: no deadline");
        assert_eq!(c.next_deadline(), None);
        c.release(HostId(1), 100_000);
        assert_eq!(c.episode(&a).unwrap().deadline_ms, 431_000);
        c.healed(&a);
        c.check_deadlines(1_000_000);
        assert!(c.take_violations().is_empty());
        assert_eq!(c.healed_count(), 1);
    }

    #[test]
    fn test_stopping_a_live_vm_is_a_violation_and_a_hung_one_is_not() {
        let clock = ManualClock::new(1_000);
        let mut w = SimWorld::new(clock, 1);
        w.add_host("a", 8_000, 8_192).unwrap();
        w.add_host("b", 8_000, 8_192).unwrap();
        let vm = Uuid([5; 16]);
        w.add_vm(
            "a",
            VmSpec {
                uuid: vm,
                name: "vm".into(),
                cpu_milli: 1_000,
                memory_mb: 1_024,
            },
        )
        .unwrap();
        let mut c = Checker::new(bounds());
        c.before_action(&w, Call::Stop, "a", &vm, false, 1_000);
        c.before_action(&w, Call::Cleanup, "b", &vm, false, 1_000);
        let v = c.take_violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, Rule::LiveVmRestarted);
        w.vm_hang(&vm).unwrap();
        c.before_action(&w, Call::Stop, "a", &vm, false, 1_000);
        assert!(c.take_violations().is_empty());
        c.before_action(&w, Call::Start, "b", &vm, true, 1_000);
        assert_eq!(c.take_violations()[0].0, Rule::BootingVmRestarted);
        // Dead at the engine's last probe, alive again at its stop: a race, counted.
        c.probed(vm, false, 1_000);
        w.vm_repair(&vm).unwrap();
        c.before_action(&w, Call::Stop, "a", &vm, false, 2_000);
        assert!(c.take_violations().is_empty());
        assert_eq!(c.races().len(), 1);
        // Alive at the last probe, or probed too long ago: a violation.
        c.probed(vm, true, 3_000);
        c.before_action(&w, Call::Stop, "a", &vm, false, 4_000);
        assert_eq!(c.take_violations()[0].0, Rule::LiveVmRestarted);
        c.probed(vm, false, 5_000);
        c.before_action(&w, Call::Stop, "a", &vm, false, 5_000 + RACE_WINDOW_MS + 1);
        assert_eq!(c.take_violations()[0].0, Rule::LiveVmRestarted);
    }
}
