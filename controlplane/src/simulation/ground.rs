//! The simulation's ground truth: the `sim` platform's world (hosts, where each VM runs,
//! its guest fault) plus what only the guests know — whether an agent heartbeats, stopped
//! gracefully, and which of its two HA adapters is up ([`Agent`]).
//!
//! The platform's [`SimWorld`] stays the one truth for power and faults; [`Ground`] keeps
//! an agent per VM in step with it: after every change the simulation makes, and after
//! every platform action the engine took (read from the world's call history, at the
//! virtual time each took effect).

use std::collections::{BTreeMap, BTreeSet};

use hsdb::{HostId, Uuid};

use super::agents::{Agent, GuestHealth};
use crate::platform::sim::{Call, CallRecord, GuestFault, SimWorld};

/// Agents and the host index of the simulation.
#[derive(Debug)]
pub struct Ground {
    /// One agent per VM.
    pub agents: BTreeMap<Uuid, Agent>,
    /// The VMs whose guest runs on each host.
    on_host: BTreeMap<HostId, BTreeSet<Uuid>>,
    /// Host names and ids.
    ids: BTreeMap<String, HostId>,
    names: BTreeMap<HostId, String>,
    /// Agents stopped gracefully (not a platform fault: the guest runs).
    stopped: BTreeMap<Uuid, i64>,
    /// Agents whose readiness is due: (ready time, VM).
    ready: BTreeSet<(i64, Uuid)>,
    hb_period_ms: i64,
    boot_ms: i64,
    /// Hosts whose agents changed since the last [`Ground::take_dirty`].
    dirty: BTreeSet<HostId>,
}

impl Ground {
    /// An empty ground truth.
    pub fn new(hb_period_ms: i64, boot_ms: i64) -> Ground {
        Ground {
            agents: BTreeMap::new(),
            on_host: BTreeMap::new(),
            ids: BTreeMap::new(),
            names: BTreeMap::new(),
            stopped: BTreeMap::new(),
            ready: BTreeSet::new(),
            hb_period_ms,
            boot_ms,
            dirty: BTreeSet::new(),
        }
    }

    /// Name a host.
    pub fn add_host(&mut self, name: &str, id: HostId) {
        self.ids.insert(name.to_owned(), id);
        self.names.insert(id, name.to_owned());
        self.on_host.entry(id).or_default();
    }

    /// Add a VM's agent (`has_agent: false` for a VM without one) with its heartbeat
    /// grid offset.
    pub fn add_vm(&mut self, vm: Uuid, phase: i64, has_agent: bool) {
        self.agents.insert(vm, Agent::new(vm, phase, has_agent));
    }

    /// The host's id.
    pub fn host_id(&self, name: &str) -> Option<HostId> {
        self.ids.get(name).copied()
    }

    /// The host's name.
    pub fn host_name(&self, id: HostId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Every host, by id.
    pub fn host_ids(&self) -> impl Iterator<Item = HostId> + '_ {
        self.names.keys().copied()
    }

    /// The VMs whose guest runs on `host`.
    pub fn on_host(&self, host: HostId) -> impl Iterator<Item = &Uuid> {
        self.on_host.get(&host).into_iter().flatten()
    }

    /// The hosts whose agents changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<HostId> {
        std::mem::take(&mut self.dirty)
    }

    /// The next agent readiness due, if any.
    pub fn next_ready(&self) -> Option<i64> {
        self.ready.first().map(|(at, _)| *at)
    }

    /// Agents whose boot completes at or before `now` start heartbeating.
    pub fn on_ready(&mut self, now: i64) {
        while let Some(&(at, vm)) = self.ready.first() {
            if at > now {
                break;
            }
            self.ready.pop_first();
            if let Some(a) = self.agents.get_mut(&vm) {
                a.refresh(now.max(at));
                if let Some(h) = a.host {
                    self.dirty.insert(h);
                }
            }
        }
    }

    /// The agent stops gracefully at `now` (an operator stopped `vmmd`, or the guest is
    /// shutting down): the monitors write SUSPENDED.
    pub fn stop_agent(&mut self, vm: &Uuid, now: i64) {
        self.stopped.insert(*vm, now);
        self.set_health(vm, GuestHealth::AgentStopped { at: now }, now);
    }

    /// The gracefully stopped agent starts again: a new run, it pairs again.
    pub fn restart_agent(&mut self, vm: &Uuid, world: &SimWorld, now: i64) {
        self.stopped.remove(vm);
        let health = health_of(world.vm_fault(vm), None);
        self.set_health(vm, health, now);
    }

    /// The guest's HA adapter toward `side` goes up or down.
    pub fn set_adapter(&mut self, vm: &Uuid, side: super::agents::Side, up: bool, now: i64) {
        if let Some(a) = self.agents.get_mut(vm) {
            a.set_adapter(side, up, now);
            if let Some(h) = a.host {
                self.dirty.insert(h);
            }
        }
    }

    fn set_health(&mut self, vm: &Uuid, health: GuestHealth, now: i64) {
        if let Some(a) = self.agents.get_mut(vm)
            && a.health != health
        {
            a.set_health(health, now);
            if a.ready_at > now && a.host.is_some() {
                self.ready.insert((a.ready_at, *vm));
            }
            if let Some(h) = a.host {
                self.dirty.insert(h);
            }
        }
    }

    /// Bring the VM's agent in line with the world at `now`: where the guest runs, its
    /// fault. `booted` says the guest (re)started at `now` (a platform start), so its
    /// agent is a new run, ready after the boot time.
    pub fn sync_vm(&mut self, world: &SimWorld, vm: &Uuid, now: i64, booted: bool) {
        let running = world.vm_running_on(vm);
        let host = running.first().and_then(|n| self.ids.get(n).copied());
        let Some(agent) = self.agents.get_mut(vm) else {
            return;
        };
        let before = agent.host;
        if host != before || (booted && host.is_some()) {
            if let Some(b) = before {
                if let Some(set) = self.on_host.get_mut(&b) {
                    set.remove(vm);
                }
                self.dirty.insert(b);
            }
            match host {
                Some(h) => {
                    self.stopped.remove(vm);
                    let ready_at = now + self.boot_ms;
                    agent.boot(h, now, ready_at, self.hb_period_ms);
                    if ready_at > now {
                        self.ready.insert((ready_at, *vm));
                    }
                    self.on_host.entry(h).or_default().insert(*vm);
                    self.dirty.insert(h);
                }
                None => agent.halt(now),
            }
        }
        let stopped = self.stopped.get(vm).copied();
        let health = health_of(world.vm_fault(vm), stopped);
        if agent.health != health {
            agent.set_health(health, now);
            if let Some(h) = agent.host {
                self.dirty.insert(h);
            }
        }
    }

    /// Place every VM as the world has it at the start of a run: guests that were
    /// running before the run began, their agents ready at `now`.
    pub fn place_running(&mut self, world: &SimWorld, now: i64) {
        let boot = std::mem::replace(&mut self.boot_ms, 0);
        self.sync_all(world, now);
        self.boot_ms = boot;
    }

    /// The guest moved to `host` by live migration at `now`: same agent run, its heartbeats
    /// now reach the new host's monitors (which pair with it at their next Hello).
    pub fn migrate(&mut self, vm: &Uuid, host: HostId, now: i64) {
        let Some(agent) = self.agents.get_mut(vm) else {
            return;
        };
        if let Some(b) = agent.host {
            if let Some(set) = self.on_host.get_mut(&b) {
                set.remove(vm);
            }
            self.dirty.insert(b);
        }
        agent.migrate(host, now);
        self.on_host.entry(host).or_default().insert(*vm);
        self.dirty.insert(host);
    }

    /// Bring every VM in line with the world (after a host-level change).
    pub fn sync_all(&mut self, world: &SimWorld, now: i64) {
        let vms: Vec<Uuid> = self.agents.keys().copied().collect();
        for vm in vms {
            self.sync_vm(world, &vm, now, false);
        }
    }

    /// Follow the platform actions in `records` (the world's call history since the last
    /// call), each at the time it took effect.
    pub fn follow(&mut self, world: &SimWorld, records: &[CallRecord]) {
        for r in records {
            let Some(vm) = r.vm else {
                continue;
            };
            match r.call {
                Call::Start => {
                    // A new boot when the VM now runs on that host and did not before (a
                    // start of a VM already running there changes nothing; a timed-out
                    // start may have taken effect).
                    let id = r.host.as_ref().and_then(|h| self.ids.get(h).copied());
                    let runs_there = r
                        .host
                        .as_ref()
                        .is_some_and(|h| world.vm_running_on(&vm).contains(h));
                    let was_there = id.is_some() && self.agents.get(&vm).and_then(|a| a.host) == id;
                    self.sync_vm(world, &vm, r.end_ms, runs_there && !was_there);
                }
                Call::Stop | Call::Cleanup => self.sync_vm(world, &vm, r.end_ms, false),
                Call::Migrate => {
                    // A live migration (addressed to the target): the same guest goes on
                    // running there, its agent re-pairs with that host's monitors — no
                    // new boot.
                    let id = r.host.as_ref().and_then(|h| self.ids.get(h).copied());
                    let runs_there = r
                        .host
                        .as_ref()
                        .is_some_and(|h| world.vm_running_on(&vm).contains(h));
                    if let (Some(id), true) = (id, runs_there)
                        && self.agents.get(&vm).and_then(|a| a.host) != Some(id)
                    {
                        self.migrate(&vm, id, r.end_ms);
                    }
                    self.sync_vm(world, &vm, r.end_ms, false);
                }
                _ => {}
            }
        }
    }
}

/// The agent's health from the platform's guest fault and a graceful stop.
fn health_of(fault: Option<GuestFault>, stopped: Option<i64>) -> GuestHealth {
    match fault {
        Some(GuestFault::Hang) => GuestHealth::Hung,
        Some(GuestFault::OsCrash) => GuestHealth::Crashed,
        Some(GuestFault::AgentKilled) => GuestHealth::AgentHung,
        None => match stopped {
            Some(at) => GuestHealth::AgentStopped { at },
            None => GuestHealth::Up,
        },
    }
}
