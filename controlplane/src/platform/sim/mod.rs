//! The `sim` platform driver: deterministic in-memory hosts and VMs on a virtual clock,
//! with fault injection, for tests, the whole-loop simulation and benchmarks.
//!
//! [`SimWorld`] holds the state; [`SimPlatform`] is the control plane's view of it through
//! the [`Platform`] trait. Both share one world (`Arc<Mutex<SimWorld>>`; cloning a
//! `SimPlatform` clones the handle): the simulation injects faults and reads the ground
//! truth ("does this VM's agent heartbeat now?", "how many hosts run it?") through
//! [`SimPlatform::world`] while the engine probes and acts through the trait.
//!
//! Every call advances the world's [`ManualClock`] by its latency (per call kind, plus a
//! per-host extra); a call whose latency exceeds the timeout fails with
//! [`PlatformError::Timeout`] after advancing by exactly the timeout. Nothing here reads
//! the wall clock or iterates a hash map: a run replays exactly from its seed.
//!
//! Never hold the guard of [`SimPlatform::world`] across a call through the trait: the
//! call takes the same lock.

mod world;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use hsdb::Uuid;

pub use world::{
    DEFAULT_PING_NO_REPLY_MS, DEFAULT_TIMEOUT_MS, GuestFault, HostState, SimWorld, Violation,
};

use crate::clock::ManualClock;
use crate::platform::{HostInfo, Inventory, Platform, PlatformError, VmSpec, VmStatus};

/// A kind of platform call: the unit of latency, injected failures and the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// [`Platform::hosts`].
    Hosts,
    /// [`Platform::host_alive`].
    HostAlive,
    /// [`Platform::ping`].
    Ping,
    /// [`Platform::vm_status`].
    VmStatus,
    /// [`Platform::stop`].
    Stop,
    /// [`Platform::start`].
    Start,
    /// [`Platform::cleanup`].
    Cleanup,
    /// [`Platform::migrate`] (addressed to the target host).
    Migrate,
}

impl Call {
    /// Every kind, in declaration order.
    pub const ALL: [Call; 8] = [
        Call::Hosts,
        Call::HostAlive,
        Call::Ping,
        Call::VmStatus,
        Call::Stop,
        Call::Start,
        Call::Cleanup,
        Call::Migrate,
    ];

    /// The call's name (`start`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Call::Hosts => "hosts",
            Call::HostAlive => "host_alive",
            Call::Ping => "ping",
            Call::VmStatus => "vm_status",
            Call::Stop => "stop",
            Call::Start => "start",
            Call::Cleanup => "cleanup",
            Call::Migrate => "migrate",
        }
    }

    /// Stop, start, cleanup and migrate change the world; the others are probes.
    pub const fn is_action(self) -> bool {
        matches!(
            self,
            Call::Stop | Call::Start | Call::Cleanup | Call::Migrate
        )
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// The error an injected failure produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// [`PlatformError::Timeout`] after the full timeout; the action does not happen.
    Timeout,
    /// [`PlatformError::Failed`] after the call's latency; the action does not happen.
    Failed,
    /// [`PlatformError::Unreachable`] after the call's latency.
    Unreachable,
}

/// Fail the next `times` calls of kind `call` (to `host` and/or about `vm` if given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRule {
    /// The call kind.
    pub call: Call,
    /// Only calls addressed to this host.
    pub host: Option<String>,
    /// Only calls about this VM.
    pub vm: Option<Uuid>,
    /// How many matching calls fail.
    pub times: u32,
    /// How they fail.
    pub error: InjectedError,
}

/// Whether an action that timed out (latency above the timeout) took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutEffect {
    /// It did: the request reached the hypervisor and only the answer was lost.
    Applied,
    /// It did not.
    NotApplied,
}

/// One recorded platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Virtual time the call began.
    pub start_ms: i64,
    /// Virtual time it returned.
    pub end_ms: i64,
    /// The call.
    pub call: Call,
    /// The host it was addressed to.
    pub host: Option<String>,
    /// The VM it was about.
    pub vm: Option<Uuid>,
    /// For actions: whether the VM was alive ([`SimWorld::vm_alive`]) when the call began —
    /// a stop of a live VM breaks the simulation's first invariant.
    pub vm_alive_before: Option<bool>,
    /// The error, if the call failed.
    pub error: Option<PlatformError>,
}

/// A misuse of the simulation's own API (a name that was never added, a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No host of that name was added.
    #[error("sim: no host named {0}")]
    NoSuchHost(String),
    /// No VM of that UUID was added.
    #[error("sim: no VM {0}")]
    NoSuchVm(Uuid),
    /// The VM is not defined on that host.
    #[error("sim: VM {1} is not defined on host {0}")]
    NotDefined(String, Uuid),
    /// A host of that name exists already.
    #[error("sim: host {0} added twice")]
    DuplicateHost(String),
    /// A VM of that UUID exists already.
    #[error("sim: VM {0} added twice")]
    DuplicateVm(Uuid),
}

/// SplitMix64: a small, fast, seedable generator (Steele, Lea, Flood 2014); enough for
/// failure draws, and identical on every platform.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The control plane's view of a [`SimWorld`]: a [`Platform`]. Cheap to clone; clones
/// share the world.
#[derive(Debug, Clone)]
pub struct SimPlatform {
    world: Arc<Mutex<SimWorld>>,
}

impl SimPlatform {
    /// A platform over `world`.
    pub fn new(world: SimWorld) -> SimPlatform {
        SimPlatform {
            world: Arc::new(Mutex::new(world)),
        }
    }

    /// An empty world on `clock` with `seed` (see [`SimWorld::new`]).
    pub fn empty(clock: ManualClock, seed: u64) -> SimPlatform {
        SimPlatform::new(SimWorld::new(clock, seed))
    }

    /// The shared world, for fault injection and ground truth. Do not hold the guard
    /// across a [`Platform`] call.
    pub fn world(&self) -> MutexGuard<'_, SimWorld> {
        // A panic while the lock was held leaves a world that is still consistent enough
        // to inspect (every mutation is a few field writes): keep going.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared world handle itself.
    pub fn shared(&self) -> Arc<Mutex<SimWorld>> {
        Arc::clone(&self.world)
    }
}

impl Platform for SimPlatform {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        self.world()
            .call(Call::Hosts, None, None, |w| Ok(w.do_hosts()))
    }

    /// The world is the ground truth of a simulation: discovery reads it.
    fn can_discover(&self) -> bool {
        true
    }

    fn host_names(&mut self) -> Result<Vec<String>, PlatformError> {
        Ok(self.world().host_names())
    }

    /// One host's part of [`Platform::hosts`], as a call addressed to the host (so a
    /// failure can be injected for one host: `Call::Hosts` with `host`); sizes as a
    /// libvirt inventory has them (a quick one only for the VMs not `known`).
    fn inventory(
        &mut self,
        host: &str,
        deep: bool,
        known: &dyn Fn(&Uuid) -> bool,
    ) -> Result<Inventory, PlatformError> {
        let info = self.world().call(Call::Hosts, Some(host), None, |w| {
            if !w.host_names().iter().any(|h| h == host) {
                return Err(PlatformError::NoSuchHost {
                    host: host.to_owned(),
                });
            }
            w.do_hosts()
                .into_iter()
                .find(|h| h.name == host)
                .ok_or_else(|| PlatformError::Unreachable {
                    host: host.to_owned(),
                    why: "its hypervisor does not answer".to_owned(),
                })
        })?;
        let mut inv = Inventory::of_host_info(info);
        for v in &mut inv.vms {
            if !deep && known(&v.uuid) {
                v.size = None;
            }
        }
        Ok(inv)
    }

    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.world()
            .call(Call::HostAlive, Some(host), None, |w| w.do_host_alive(host))
    }

    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        self.world()
            .call(Call::Ping, None, Some(*vm), |w| Ok(w.do_ping(vm)))
    }

    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.world()
            .call(Call::VmStatus, Some(host), Some(*vm), |w| {
                w.do_vm_status(host, vm)
            })
    }

    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.world()
            .call(Call::Stop, Some(host), Some(*vm), |w| w.do_stop(host, vm))
    }

    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.world()
            .call(Call::Start, Some(host), Some(vm.uuid), |w| {
                w.do_start(host, vm)
            })
    }

    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.world()
            .call(Call::Cleanup, Some(host), Some(*vm), |w| {
                w.do_cleanup(host, vm)
            })
    }

    /// Concurrent starts: every start of the batch begins at once and ends its own
    /// latency later (a hypervisor starting several VMs at a time); the clock advances by
    /// the longest, not the sum.
    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        let mut w = self.world();
        let calls: Vec<world::Concurrent<'_, Result<(), PlatformError>>> = starts
            .iter()
            .map(
                |&(host, spec)| -> world::Concurrent<'_, Result<(), PlatformError>> {
                    (
                        w.latency_to(Call::Start, host),
                        Box::new(move |w: &mut SimWorld| {
                            w.call(Call::Start, Some(host), Some(spec.uuid), |w| {
                                w.do_start(host, spec)
                            })
                        }),
                    )
                },
            )
            .collect();
        w.concurrently(&calls)
    }

    /// The sim models live migration (unless [`SimWorld::set_live_migration`] turned it
    /// off): the VM keeps running — its guest, its fault, its boot time — and moves.
    fn live_migration(&self) -> bool {
        self.world().live_migration()
    }

    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.world()
            .call(Call::Migrate, Some(to), Some(vm.uuid), |w| {
                w.do_migrate(from, to, vm)
            })
    }
}
