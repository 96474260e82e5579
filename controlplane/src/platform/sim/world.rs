//! [`SimWorld`]: the simulated hosts and VMs, their faults, and the ground truth the
//! simulation checks its invariants against.
//!
//! Everything is kept in `BTreeMap`s / `BTreeSet`s so that every list this module returns
//! is in a fixed order (host name, VM UUID): a run replays exactly from its seed.

use std::collections::{BTreeMap, BTreeSet};

use hsdb::Uuid;

use super::{Call, CallRecord, FailureRule, InjectedError, SimError, SplitMix64, TimeoutEffect};
use crate::clock::{Clock, ManualClock};
use crate::platform::{HostInfo, PlatformError, PowerState, VmSpec, VmStatus};

/// What happened to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostState {
    /// Running; its VMs may run.
    Up,
    /// Lost (crash, power failure, cut off): the host and every VM on it are gone, its
    /// hypervisor does not answer. Monitors on it fall silent without a reason.
    Lost,
    /// Powered off on purpose (a planned shutdown): its VMs were shut down first. The
    /// simulated monitors report the seed's SHUTDOWN reason for it.
    PoweredOff,
}

/// A fault inside a VM's guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestFault {
    /// The guest hangs: agent silent, ping unanswered; the platform still says Running with
    /// an OS that had started.
    Hang,
    /// The guest's kernel panicked: from the platform's view the same as a hang (the domain
    /// keeps running), agent silent, ping unanswered.
    OsCrash,
    /// Only the agent died: no heartbeats, but the guest answers ping (a VM that must never
    /// be relocated, seed 004 L4815-4816).
    AgentKilled,
}

/// One VM's definition on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Domain {
    power: PowerState,
    /// Set by [`SimWorld::set_vm_power`]; otherwise "OS started" is "running and booted".
    os_override: Option<bool>,
}

#[derive(Debug, Clone)]
struct SimHost {
    cpu_milli: u32,
    memory_mb: u32,
    state: HostState,
    hypervisor_reachable: bool,
    extra_latency_ms: u64,
    /// VMs defined here (an index of [`SimVm::domains`]).
    defined: BTreeSet<Uuid>,
}

#[derive(Debug, Clone)]
struct SimVm {
    spec: VmSpec,
    domains: BTreeMap<String, Domain>,
    fault: Option<GuestFault>,
    /// When the guest's OS finished booting (its agent heartbeats from then on).
    booted_at_ms: i64,
    has_ping_address: bool,
}

/// A broken invariant the world itself can see at the moment it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at_ms: i64,
    /// The VM.
    pub vm: Uuid,
    /// The hosts the VM ran on at that moment (two or more).
    pub running_on: Vec<String>,
}

/// One call of a concurrent batch ([`SimWorld::concurrently`]): its latency and the call.
pub(super) type Concurrent<'a, T> = (u64, Box<dyn Fn(&mut SimWorld) -> T + 'a>);

/// The simulated platform's state: hosts, VMs, faults, timing, injected failures, and the
/// history of calls. Shared between the [`super::SimPlatform`] (the control plane's view)
/// and the simulation (ground truth and fault injection).
#[derive(Debug)]
pub struct SimWorld {
    clock: ManualClock,
    hosts: BTreeMap<String, SimHost>,
    vms: BTreeMap<Uuid, SimVm>,
    latency_ms: [u64; Call::ALL.len()],
    timeout_ms: u64,
    ping_no_reply_ms: u64,
    boot_ms: u64,
    timeout_effect: TimeoutEffect,
    enforce_capacity: bool,
    record_probes: bool,
    /// While a batch of concurrent calls runs: the time they all began; each call then
    /// ends at that time plus its own latency ([`SimWorld::concurrently`]).
    batch_start: Option<i64>,
    rules: Vec<FailureRule>,
    random_failure_ppm: [u32; Call::ALL.len()],
    rng: SplitMix64,
    history: Vec<CallRecord>,
    violations: Vec<Violation>,
    live_migration: bool,
}

/// Default latency of every call, virtual ms: probes answer in a few ms (the seed's ping
/// answered in ~3 ms, seed 004 L13252-13256), actions take seconds.
const DEFAULT_LATENCY_MS: [u64; Call::ALL.len()] = [5, 5, 3, 5, 2_000, 5_000, 1_000, 3_000];
/// Default timeout of every call, virtual ms.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default time an unanswered ping takes (the `-W` wait of a real ping), virtual ms.
pub const DEFAULT_PING_NO_REPLY_MS: u64 = 1_000;

impl SimWorld {
    /// An empty world on `clock`; `seed` drives the random failures
    /// ([`SimWorld::set_random_failures`]) and nothing else.
    pub fn new(clock: ManualClock, seed: u64) -> SimWorld {
        SimWorld {
            clock,
            hosts: BTreeMap::new(),
            vms: BTreeMap::new(),
            latency_ms: DEFAULT_LATENCY_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            ping_no_reply_ms: DEFAULT_PING_NO_REPLY_MS,
            boot_ms: 0,
            timeout_effect: TimeoutEffect::Applied,
            enforce_capacity: true,
            record_probes: false,
            batch_start: None,
            rules: Vec::new(),
            random_failure_ppm: [0; Call::ALL.len()],
            rng: SplitMix64::new(seed),
            history: Vec::new(),
            violations: Vec::new(),
            live_migration: true,
        }
    }

    /// Whether the driver offers live migration (default true; false models a platform
    /// that moves a VM by a stop and a start).
    pub fn set_live_migration(&mut self, on: bool) {
        self.live_migration = on;
    }

    /// Whether the driver offers live migration.
    pub fn live_migration(&self) -> bool {
        self.live_migration
    }

    /// The shared virtual clock every call advances.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    // ---- building -------------------------------------------------------------------

    /// Add a running host with its capacity.
    pub fn add_host(&mut self, name: &str, cpu_milli: u32, memory_mb: u32) -> Result<(), SimError> {
        if self.hosts.contains_key(name) {
            return Err(SimError::DuplicateHost(name.to_owned()));
        }
        self.hosts.insert(
            name.to_owned(),
            SimHost {
                cpu_milli,
                memory_mb,
                state: HostState::Up,
                hypervisor_reachable: true,
                extra_latency_ms: 0,
                defined: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Add a VM defined and running on `host`, booted, healthy, with a ping address.
    /// Capacity is not checked here: a test may build an overcommitted host on purpose.
    pub fn add_vm(&mut self, host: &str, spec: VmSpec) -> Result<(), SimError> {
        self.add_vm_in(host, spec, PowerState::Running)
    }

    /// Add a VM defined on `host` but powered off (Not Activated).
    pub fn define_vm(&mut self, host: &str, spec: VmSpec) -> Result<(), SimError> {
        self.add_vm_in(host, spec, PowerState::NotActivated)
    }

    fn add_vm_in(&mut self, host: &str, spec: VmSpec, power: PowerState) -> Result<(), SimError> {
        let uuid = spec.uuid;
        if self.vms.contains_key(&uuid) {
            return Err(SimError::DuplicateVm(uuid));
        }
        let h = self
            .hosts
            .get_mut(host)
            .ok_or_else(|| SimError::NoSuchHost(host.to_owned()))?;
        h.defined.insert(uuid);
        let mut domains = BTreeMap::new();
        domains.insert(
            host.to_owned(),
            Domain {
                power,
                os_override: None,
            },
        );
        self.vms.insert(
            uuid,
            SimVm {
                spec,
                domains,
                fault: None,
                booted_at_ms: self.clock.now_ms(),
                has_ping_address: true,
            },
        );
        Ok(())
    }

    // ---- timing and injected failures -----------------------------------------------

    /// Latency of `call`, virtual ms (every call advances the clock by its latency).
    pub fn set_latency(&mut self, call: Call, ms: u64) {
        if let Some(l) = self.latency_ms.get_mut(call.index()) {
            *l = ms;
        }
    }

    /// Latency of `call`, virtual ms.
    pub fn latency(&self, call: Call) -> u64 {
        self.latency_ms.get(call.index()).copied().unwrap_or(0)
    }

    /// Extra latency of every call addressed to `host` (a slow hypervisor).
    pub fn set_host_latency(&mut self, host: &str, extra_ms: u64) -> Result<(), SimError> {
        self.host_mut(host)?.extra_latency_ms = extra_ms;
        Ok(())
    }

    /// The driver's timeout: a call whose latency exceeds it fails with
    /// [`PlatformError::Timeout`] after advancing the clock by the timeout.
    pub fn set_timeout_ms(&mut self, ms: u64) {
        self.timeout_ms = ms;
    }

    /// The driver's timeout, virtual ms.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// How long a ping that gets no reply takes (it may exceed the timeout).
    pub fn set_ping_no_reply_ms(&mut self, ms: u64) {
        self.ping_no_reply_ms = ms;
    }

    /// How long after a start the guest's OS is up (agent heartbeats, ping answered,
    /// "OS started" true). Default 0.
    pub fn set_boot_ms(&mut self, ms: u64) {
        self.boot_ms = ms;
    }

    /// Whether an action that timed out took effect anyway (default
    /// [`TimeoutEffect::Applied`]: the request reached the hypervisor, only the answer
    /// was lost — the case that can run a VM twice if the caller does not look again).
    pub fn set_timeout_effect(&mut self, effect: TimeoutEffect) {
        self.timeout_effect = effect;
    }

    /// Whether a start is refused when the host lacks free CPU or memory (default true).
    pub fn set_enforce_capacity(&mut self, enforce: bool) {
        self.enforce_capacity = enforce;
    }

    /// Whether probes are recorded in the history too (default false: actions only).
    pub fn set_record_probes(&mut self, record: bool) {
        self.record_probes = record;
    }

    /// Fail the next `rule.times` calls matching the rule.
    pub fn inject_failure(&mut self, rule: FailureRule) {
        self.rules.push(rule);
    }

    /// Fail each `call` at random with probability `ppm` / 1,000,000 (seeded).
    pub fn set_random_failures(&mut self, call: Call, ppm: u32) {
        if let Some(p) = self.random_failure_ppm.get_mut(call.index()) {
            *p = ppm.min(1_000_000);
        }
    }

    // ---- fault injection -------------------------------------------------------------

    /// The VM's guest hangs (agent silent, ping unanswered, platform: Running, OS started).
    pub fn vm_hang(&mut self, vm: &Uuid) -> Result<(), SimError> {
        self.vm_mut(vm)?.fault = Some(GuestFault::Hang);
        Ok(())
    }

    /// The VM's kernel panics (from the platform's view the same as a hang).
    pub fn vm_os_crash(&mut self, vm: &Uuid) -> Result<(), SimError> {
        self.vm_mut(vm)?.fault = Some(GuestFault::OsCrash);
        Ok(())
    }

    /// The VM's agent dies; the guest still answers ping.
    pub fn vm_agent_kill(&mut self, vm: &Uuid) -> Result<(), SimError> {
        self.vm_mut(vm)?.fault = Some(GuestFault::AgentKilled);
        Ok(())
    }

    /// The VM's guest recovers by itself (a hang ends, the agent is restarted).
    pub fn vm_repair(&mut self, vm: &Uuid) -> Result<(), SimError> {
        self.vm_mut(vm)?.fault = None;
        Ok(())
    }

    /// The VM's current fault.
    pub fn vm_fault(&self, vm: &Uuid) -> Option<GuestFault> {
        self.vms.get(vm).and_then(|v| v.fault)
    }

    /// Whether the platform driver knows a ping address for the VM (default true). A VM
    /// without one reads "not pingable" (see docs/controlplane.md, Platform drivers).
    pub fn set_ping_address(&mut self, vm: &Uuid, has: bool) -> Result<(), SimError> {
        self.vm_mut(vm)?.has_ping_address = has;
        Ok(())
    }

    /// Power the VM off wherever it runs (an operator or the guest shut it down).
    pub fn vm_power_off(&mut self, vm: &Uuid) -> Result<(), SimError> {
        let v = self.vm_mut(vm)?;
        for d in v.domains.values_mut() {
            if d.power == PowerState::Running {
                *d = Domain {
                    power: PowerState::NotActivated,
                    os_override: None,
                };
            }
        }
        Ok(())
    }

    /// Power the VM on on `host` where it is defined, outside the control plane (an
    /// operator's start: not in the history, no capacity check); its guest boots afresh.
    /// A VM then running on two hosts is recorded in [`SimWorld::violations`] as well.
    pub fn vm_power_on(&mut self, host: &str, vm: &Uuid) -> Result<(), SimError> {
        let now = self.clock.now_ms();
        let boot = i64::try_from(self.boot_ms).unwrap_or(i64::MAX);
        let v = self.vm_mut(vm)?;
        let d = v
            .domains
            .get_mut(host)
            .ok_or_else(|| SimError::NotDefined(host.to_owned(), *vm))?;
        if d.power != PowerState::Running {
            *d = Domain {
                power: PowerState::Running,
                os_override: None,
            };
            v.fault = None;
            v.booted_at_ms = now.saturating_add(boot);
        }
        self.note_double_run(vm);
        Ok(())
    }

    fn note_double_run(&mut self, vm: &Uuid) {
        let running_on = self.vm_running_on(vm);
        if running_on.len() > 1 {
            tracing::error!(vm = %vm, hosts = ?running_on, "sim: VM now runs on two hosts");
            self.violations.push(Violation {
                at_ms: self.clock.now_ms(),
                vm: *vm,
                running_on,
            });
        }
    }

    /// Set the platform's view of the VM on `host` to any state (Open Firmware, Error,
    /// Migrating - Running, …) for the engine's state table.
    pub fn set_vm_power(
        &mut self,
        host: &str,
        vm: &Uuid,
        status: VmStatus,
    ) -> Result<(), SimError> {
        let v = self.vm_mut(vm)?;
        let d = v
            .domains
            .get_mut(host)
            .ok_or_else(|| SimError::NotDefined(host.to_owned(), *vm))?;
        *d = Domain {
            power: status.power,
            os_override: Some(status.os_started),
        };
        Ok(())
    }

    /// The host is lost: it and every VM on it are gone, its hypervisor does not answer.
    /// Its definitions survive (they come back powered off with [`SimWorld::host_restore`]).
    pub fn host_loss(&mut self, host: &str) -> Result<(), SimError> {
        self.host_down(host, HostState::Lost)
    }

    /// Planned power-off: the host's VMs are shut down, then the host.
    pub fn host_power_off(&mut self, host: &str) -> Result<(), SimError> {
        self.host_down(host, HostState::PoweredOff)
    }

    fn host_down(&mut self, host: &str, state: HostState) -> Result<(), SimError> {
        let h = self.host_mut(host)?;
        h.state = state;
        let defined: Vec<Uuid> = h.defined.iter().copied().collect();
        for uuid in defined {
            if let Some(d) = self
                .vms
                .get_mut(&uuid)
                .and_then(|v| v.domains.get_mut(host))
            {
                *d = Domain {
                    power: PowerState::NotActivated,
                    os_override: None,
                };
            }
        }
        Ok(())
    }

    /// The host is back (after a loss or a power-off), its hypervisor reachable; the VMs
    /// still defined there are powered off.
    pub fn host_restore(&mut self, host: &str) -> Result<(), SimError> {
        let h = self.host_mut(host)?;
        h.state = HostState::Up;
        h.hypervisor_reachable = true;
        Ok(())
    }

    /// The host's hypervisor stops (or resumes) answering while the host and its VMs keep
    /// running. The driver then answers as libvirt does when a connection fails:
    /// `host_alive` Ok(false), every other call Unreachable.
    pub fn set_hypervisor_reachable(
        &mut self,
        host: &str,
        reachable: bool,
    ) -> Result<(), SimError> {
        self.host_mut(host)?.hypervisor_reachable = reachable;
        Ok(())
    }

    // ---- ground truth ----------------------------------------------------------------

    /// Host names, in order.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// VM UUIDs, in order.
    pub fn vm_uuids(&self) -> Vec<Uuid> {
        self.vms.keys().copied().collect()
    }

    /// The VM's spec.
    pub fn vm_spec(&self, vm: &Uuid) -> Option<&VmSpec> {
        self.vms.get(vm).map(|v| &v.spec)
    }

    /// The host's state.
    pub fn host_state(&self, host: &str) -> Option<HostState> {
        self.hosts.get(host).map(|h| h.state)
    }

    /// Whether the host's hypervisor answers (false for a host that is not up).
    pub fn hypervisor_reachable(&self, host: &str) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|h| h.state == HostState::Up && h.hypervisor_reachable)
    }

    /// Hosts on which the VM runs right now (host up, domain Running), in name order.
    pub fn vm_running_on(&self, vm: &Uuid) -> Vec<String> {
        let Some(v) = self.vms.get(vm) else {
            return Vec::new();
        };
        v.domains
            .iter()
            .filter(|(h, d)| d.power == PowerState::Running && self.host_up(h))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// How many hosts run the VM right now (more than one breaks an invariant).
    pub fn running_hosts_of(&self, vm: &Uuid) -> usize {
        self.vm_running_on(vm).len()
    }

    /// Hosts on which the VM is defined (running or not), in name order.
    pub fn vm_defined_on(&self, vm: &Uuid) -> Vec<String> {
        self.vms
            .get(vm)
            .map(|v| v.domains.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// VMs running on `host` right now, in UUID order (empty for a host that is not up).
    pub fn vms_on_host(&self, host: &str) -> Vec<Uuid> {
        let Some(h) = self.hosts.get(host) else {
            return Vec::new();
        };
        if h.state != HostState::Up {
            return Vec::new();
        }
        h.defined
            .iter()
            .filter(|u| {
                self.vms
                    .get(u)
                    .and_then(|v| v.domains.get(host))
                    .is_some_and(|d| d.power == PowerState::Running)
            })
            .copied()
            .collect()
    }

    /// VMs defined on `host` (running or not), in UUID order.
    pub fn vms_defined_on(&self, host: &str) -> Vec<Uuid> {
        self.hosts
            .get(host)
            .map(|h| h.defined.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The guest's OS is up: running somewhere and booted.
    pub fn vm_booted(&self, vm: &Uuid) -> bool {
        self.vms
            .get(vm)
            .is_some_and(|v| self.clock.now_ms() >= v.booted_at_ms && self.running_hosts_of(vm) > 0)
    }

    /// The VM is alive: running, booted, its guest neither hung nor crashed (a VM whose
    /// agent alone died is alive). Restarting or relocating such a VM breaks an invariant.
    pub fn vm_alive(&self, vm: &Uuid) -> bool {
        self.vm_booted(vm)
            && !matches!(
                self.vm_fault(vm),
                Some(GuestFault::Hang | GuestFault::OsCrash)
            )
    }

    /// The VM's agent heartbeats right now.
    pub fn agent_heartbeats(&self, vm: &Uuid) -> bool {
        self.vm_booted(vm) && self.vm_fault(vm).is_none()
    }

    /// The VM answers ping right now (whether or not the driver knows its address).
    pub fn vm_answers_ping(&self, vm: &Uuid) -> bool {
        self.vm_booted(vm) && matches!(self.vm_fault(vm), None | Some(GuestFault::AgentKilled))
    }

    /// The platform's view of the VM on `host`, without a call (no latency, no failure).
    pub fn vm_status_now(&self, host: &str, vm: &Uuid) -> Option<VmStatus> {
        let v = self.vms.get(vm)?;
        let d = v.domains.get(host)?;
        let booted = self.clock.now_ms() >= v.booted_at_ms;
        Some(VmStatus {
            power: d.power,
            os_started: d
                .os_override
                .unwrap_or(d.power == PowerState::Running && booted),
        })
    }

    /// Free CPU (thousandths) and memory (MiB) of `host`: capacity minus the VMs running
    /// there (saturating at 0).
    pub fn free_capacity(&self, host: &str) -> Option<(u32, u32)> {
        let h = self.hosts.get(host)?;
        let (mut cpu, mut mem) = (h.cpu_milli, h.memory_mb);
        for u in self.vms_on_host(host) {
            if let Some(v) = self.vms.get(&u) {
                cpu = cpu.saturating_sub(v.spec.cpu_milli);
                mem = mem.saturating_sub(v.spec.memory_mb);
            }
        }
        Some((cpu, mem))
    }

    /// Every recorded call (actions always; probes with [`SimWorld::set_record_probes`]),
    /// in order.
    pub fn history(&self) -> &[CallRecord] {
        &self.history
    }

    /// Drop the recorded history (a long campaign checks and clears it step by step).
    pub fn clear_history(&mut self) {
        self.history.clear();
    }

    /// Every moment a start made a VM run on two hosts at once.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    // ---- the driver's side -------------------------------------------------------------

    fn host_up(&self, host: &str) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|h| h.state == HostState::Up)
    }

    fn host_mut(&mut self, host: &str) -> Result<&mut SimHost, SimError> {
        self.hosts
            .get_mut(host)
            .ok_or_else(|| SimError::NoSuchHost(host.to_owned()))
    }

    fn vm_mut(&mut self, vm: &Uuid) -> Result<&mut SimVm, SimError> {
        self.vms.get_mut(vm).ok_or(SimError::NoSuchVm(*vm))
    }

    /// Run one platform call: latency, injected failures, timeout, then `effect` at the
    /// call's end time; record it.
    pub(super) fn call<T>(
        &mut self,
        call: Call,
        host: Option<&str>,
        vm: Option<Uuid>,
        effect: impl FnOnce(&mut SimWorld) -> Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let start_ms = self.batch_start.unwrap_or_else(|| self.clock.now_ms());
        let alive_before = vm.filter(|_| call.is_action()).map(|u| self.vm_alive(&u));
        let result = self.call_inner(call, host, vm, effect);
        if call.is_action() || self.record_probes {
            self.history.push(CallRecord {
                start_ms,
                end_ms: self.clock.now_ms(),
                call,
                host: host.map(str::to_owned),
                vm,
                vm_alive_before: alive_before,
                error: result.as_ref().err().cloned(),
            });
        }
        result
    }

    fn call_inner<T>(
        &mut self,
        call: Call,
        host: Option<&str>,
        vm: Option<Uuid>,
        effect: impl FnOnce(&mut SimWorld) -> Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let op = op_text(call, host, vm);
        if let Some(h) = host
            && !self.hosts.contains_key(h)
        {
            return Err(PlatformError::NoSuchHost { host: h.to_owned() });
        }
        let mut latency = self.latency(call);
        if call == Call::Ping && !vm.is_some_and(|u| self.ping_answered(&u)) {
            latency = self.ping_no_reply_ms;
        }
        if let Some(h) = host.and_then(|h| self.hosts.get(h)) {
            latency = latency.saturating_add(h.extra_latency_ms);
        }
        let timeout = self.timeout_ms;
        if let Some(err) = self.injected(call, host, vm) {
            return match err {
                InjectedError::Timeout => {
                    self.advance(timeout);
                    Err(PlatformError::Timeout {
                        op,
                        after_ms: timeout,
                    })
                }
                InjectedError::Failed => {
                    self.advance(latency.min(timeout));
                    Err(PlatformError::Failed {
                        op,
                        why: "injected failure".to_owned(),
                    })
                }
                InjectedError::Unreachable => {
                    self.advance(latency.min(timeout));
                    Err(PlatformError::Unreachable {
                        host: host.unwrap_or("-").to_owned(),
                        why: "injected failure".to_owned(),
                    })
                }
            };
        }
        if latency > timeout {
            self.advance(timeout);
            if call.is_action() && self.timeout_effect == TimeoutEffect::Applied {
                // The request reached the hypervisor; only the answer was lost.
                let _ = effect(self);
            }
            return Err(PlatformError::Timeout {
                op,
                after_ms: timeout,
            });
        }
        self.advance(latency);
        effect(self)
    }

    fn advance(&self, ms: u64) {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        match self.batch_start {
            // One of several concurrent calls: it ends `ms` after the batch began (the
            // clock never goes back: a call shorter than one already ended ends with it).
            Some(t0) => self
                .clock
                .advance_to(t0.saturating_add(ms).max(self.clock.now_ms())),
            None => self.clock.advance(ms),
        }
    }

    /// The latency a call of kind `call` to `host` has (its kind's, plus the host's
    /// extra), before injected failures and timeouts.
    pub(super) fn latency_to(&self, call: Call, host: &str) -> u64 {
        let extra = self.hosts.get(host).map_or(0, |h| h.extra_latency_ms);
        self.latency(call).saturating_add(extra)
    }

    /// Run `calls` as if they were all sent at the same moment: each begins now and ends
    /// its own latency later; they are carried out in the order they end (shortest first,
    /// ties in the given order), so the clock ends at the longest one's end instead of
    /// the sum of them all (the executor's batch of starts, [`Platform::start_many`]).
    pub(super) fn concurrently<T>(&mut self, calls: &[Concurrent<'_, T>]) -> Vec<T> {
        let t0 = self.clock.now_ms();
        let mut order: Vec<(u64, usize)> = calls
            .iter()
            .enumerate()
            .map(|(i, (latency, _))| (*latency, i))
            .collect();
        order.sort_unstable();
        self.batch_start = Some(t0);
        let mut out: Vec<(usize, T)> = order
            .into_iter()
            .filter_map(|(_, i)| calls.get(i).map(|(_, f)| (i, f(self))))
            .collect();
        self.batch_start = None;
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, t)| t).collect()
    }

    fn injected(
        &mut self,
        call: Call,
        host: Option<&str>,
        vm: Option<Uuid>,
    ) -> Option<InjectedError> {
        let hit = self.rules.iter_mut().find(|r| {
            r.times > 0
                && r.call == call
                && r.host.as_deref().is_none_or(|h| Some(h) == host)
                && r.vm.is_none_or(|u| Some(u) == vm)
        });
        if let Some(rule) = hit {
            rule.times -= 1;
            let error = rule.error;
            self.rules.retain(|r| r.times > 0);
            return Some(error);
        }
        let ppm = self
            .random_failure_ppm
            .get(call.index())
            .copied()
            .unwrap_or(0);
        if ppm > 0 && self.rng.next_u64() % 1_000_000 < u64::from(ppm) {
            return Some(InjectedError::Failed);
        }
        None
    }

    fn ping_answered(&self, vm: &Uuid) -> bool {
        self.vms.get(vm).is_some_and(|v| v.has_ping_address) && self.vm_answers_ping(vm)
    }

    /// The host answers management calls, or the error a call to it gets.
    fn reachable(&self, host: &str) -> Result<(), PlatformError> {
        let h = self
            .hosts
            .get(host)
            .ok_or_else(|| PlatformError::NoSuchHost {
                host: host.to_owned(),
            })?;
        let why = match (h.state, h.hypervisor_reachable) {
            (HostState::Up, true) => return Ok(()),
            (HostState::Up, false) => "hypervisor does not answer",
            (HostState::Lost, _) => "host lost",
            (HostState::PoweredOff, _) => "host powered off",
        };
        Err(PlatformError::Unreachable {
            host: host.to_owned(),
            why: why.to_owned(),
        })
    }

    pub(super) fn do_hosts(&self) -> Vec<HostInfo> {
        self.hosts
            .iter()
            .filter(|(name, _)| self.reachable(name).is_ok())
            .map(|(name, h)| HostInfo {
                name: name.clone(),
                cpu_milli: h.cpu_milli,
                memory_mb: h.memory_mb,
                vms: h
                    .defined
                    .iter()
                    .filter_map(|u| {
                        let spec = self.vms.get(u)?.spec.clone();
                        Some((spec, self.vm_status_now(name, u)?))
                    })
                    .collect(),
            })
            .collect()
    }

    pub(super) fn do_host_alive(&self, host: &str) -> Result<bool, PlatformError> {
        match self.reachable(host) {
            Ok(()) => Ok(true),
            Err(PlatformError::Unreachable { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn do_ping(&self, vm: &Uuid) -> bool {
        self.ping_answered(vm)
    }

    pub(super) fn do_vm_status(&self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.reachable(host)?;
        self.vm_status_now(host, vm).ok_or(PlatformError::NoSuchVm {
            host: host.to_owned(),
            vm: *vm,
        })
    }

    pub(super) fn do_stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.reachable(host)?;
        let d = self
            .vms
            .get_mut(vm)
            .and_then(|v| v.domains.get_mut(host))
            .ok_or_else(|| PlatformError::NoSuchVm {
                host: host.to_owned(),
                vm: *vm,
            })?;
        *d = Domain {
            power: PowerState::NotActivated,
            os_override: None,
        };
        Ok(())
    }

    pub(super) fn do_start(&mut self, host: &str, spec: &VmSpec) -> Result<(), PlatformError> {
        self.reachable(host)?;
        let uuid = spec.uuid;
        if self.vm_running_on(&uuid).iter().any(|h| h == host) {
            return Ok(());
        }
        if self.enforce_capacity {
            let (cpu, mem) = self.free_capacity(host).unwrap_or((0, 0));
            if spec.cpu_milli > cpu || spec.memory_mb > mem {
                return Err(PlatformError::Failed {
                    op: op_text(Call::Start, Some(host), Some(uuid)),
                    why: format!(
                        "not enough room: needs {} mCPU / {} MiB, free {cpu} mCPU / {mem} MiB",
                        spec.cpu_milli, spec.memory_mb
                    ),
                });
            }
        }
        let now = self.clock.now_ms();
        let boot = i64::try_from(self.boot_ms).unwrap_or(i64::MAX);
        let v = self.vms.entry(uuid).or_insert_with(|| SimVm {
            spec: spec.clone(),
            domains: BTreeMap::new(),
            fault: None,
            booted_at_ms: now,
            has_ping_address: true,
        });
        v.spec = spec.clone();
        v.fault = None;
        v.booted_at_ms = now.saturating_add(boot);
        v.domains.insert(
            host.to_owned(),
            Domain {
                power: PowerState::Running,
                os_override: None,
            },
        );
        if let Some(h) = self.hosts.get_mut(host) {
            h.defined.insert(uuid);
        }
        self.note_double_run(&uuid);
        Ok(())
    }

    /// Live migration: the VM running on `from` runs on `to` afterwards, the same guest
    /// (fault, boot time kept: no reboot, its agent goes on heart-beating — to the
    /// target's monitors); its definition leaves `from`. Both hosts must answer, the VM
    /// must run on `from`, and `to` must have room.
    pub(super) fn do_migrate(
        &mut self,
        from: &str,
        to: &str,
        spec: &VmSpec,
    ) -> Result<(), PlatformError> {
        let op = || op_text(Call::Migrate, Some(to), Some(spec.uuid));
        if !self.live_migration {
            return Err(PlatformError::Failed {
                op: op(),
                why: "live migration is off on this platform".to_owned(),
            });
        }
        self.reachable(from)?;
        self.reachable(to)?;
        let uuid = spec.uuid;
        if !self.vm_running_on(&uuid).iter().any(|h| h == from) {
            return Err(PlatformError::Failed {
                op: op(),
                why: format!("VM {uuid} is not running on {from}"),
            });
        }
        if from == to {
            return Ok(());
        }
        if self.enforce_capacity {
            let (cpu, mem) = self.free_capacity(to).unwrap_or((0, 0));
            if spec.cpu_milli > cpu || spec.memory_mb > mem {
                return Err(PlatformError::Failed {
                    op: op(),
                    why: format!(
                        "not enough room: needs {} mCPU / {} MiB, free {cpu} mCPU / {mem} MiB",
                        spec.cpu_milli, spec.memory_mb
                    ),
                });
            }
        }
        if let Some(v) = self.vms.get_mut(&uuid) {
            let domain = v.domains.remove(from).unwrap_or(Domain {
                power: PowerState::Running,
                os_override: None,
            });
            v.domains.insert(to.to_owned(), domain);
        }
        if let Some(h) = self.hosts.get_mut(from) {
            h.defined.remove(&uuid);
        }
        if let Some(h) = self.hosts.get_mut(to) {
            h.defined.insert(uuid);
        }
        Ok(())
    }

    pub(super) fn do_cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.reachable(host)?;
        if let Some(v) = self.vms.get_mut(vm) {
            v.domains.remove(host);
        }
        if let Some(h) = self.hosts.get_mut(host) {
            h.defined.remove(vm);
        }
        Ok(())
    }
}

/// The call with its arguments, for error messages (`start host-b 6f1c…`).
pub(super) fn op_text(call: Call, host: Option<&str>, vm: Option<Uuid>) -> String {
    let mut s = call.as_str().to_owned();
    if let Some(h) = host {
        s.push(' ');
        s.push_str(h);
    }
    if let Some(u) = vm {
        s.push(' ');
        s.push_str(&u.to_string());
    }
    s
}
