//! Where VMs to restart go: the [`Planner`] interface and [`PolicyPlanner`], the placement
//! with the host group's policies (priority order, collocation, anticollocation,
//! workgroups, host exclusions, home host, best fit, flexible capacity, the per-target
//! cap — DESIGN.md §6, seed-controlplane.md §4.2-§4.3; the rules are written in
//! docs/controlplane.md "Planner").
//!
//! A planner only decides; it never acts and never reads the store or the platform. Every
//! VM of the request comes back exactly once: placed (host, the size it is started with,
//! its wave) or [`Placement::Nowhere`] with the reason. The plan is explainable: for each
//! VM, why its host, and for every other host why not ([`HostVerdict`], structured;
//! rendered to text only when asked, [`Plan::why`], [`Plan::why_not`]).
//!
//! [`request`] builds a [`PlanRequest`] from the HSDB's rows and the platform's hosts,
//! without an engine (`hactl relocate --dry-run`, `hactl verify`, evacuation).

use std::collections::BTreeMap;

use hsdb::{HostId, Priority, Uuid};

mod explain;
mod policy;
mod policy_planner;
pub mod request;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use self::policy::{Flex, FlexibleCapacity, Policies, VmSet};
pub use self::policy_planner::{MAX_VERDICTS, PolicyPlanner};

/// A VM to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmToPlace {
    /// The VM.
    pub uuid: Uuid,
    /// Its name (for reasons).
    pub name: String,
    /// Restart order: High first (seed 004 L15907-15917).
    pub priority: Priority,
    /// Nominal CPU, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Nominal memory, MiB.
    pub memory_mb: u32,
    /// Its home host (seed 004 L15957-15966): preferred, and started there at its nominal
    /// size; `None` when unknown (every host is then "away from home").
    pub home: Option<HostId>,
    /// The host it failed on (a host failure's host, a failed VM's host): never a target.
    pub source: Option<HostId>,
    /// Other hosts it must not go to (targets that failed to start it).
    pub exclude: Vec<HostId>,
}

impl VmToPlace {
    /// The CPU and memory it is started with on `host` under `flex`: nominal on its home
    /// host, its priority's share elsewhere (seed 004 L15639-15724), rounded up, at least
    /// 1 of a nonzero nominal.
    pub fn size_on(&self, host: HostId, flex: &FlexibleCapacity) -> (u32, u32) {
        if self.home == Some(host) {
            (self.cpu_milli, self.memory_mb)
        } else {
            self.size_away(flex)
        }
    }

    /// The CPU and memory it is started with away from its home host.
    pub fn size_away(&self, flex: &FlexibleCapacity) -> (u32, u32) {
        let f = flex.of(self.priority);
        (
            scale(self.cpu_milli, f.cpu_pct),
            scale(self.memory_mb, f.memory_pct),
        )
    }
}

/// `n` × `pct` / 100 rounded up; `pct` is clamped to 1..=100.
fn scale(n: u32, pct: u8) -> u32 {
    let pct = u64::from(pct.clamp(1, 100));
    let v = (u64::from(n) * pct).div_ceil(100);
    u32::try_from(v).unwrap_or(n)
}

/// A host of the group with its capacity, its load and what runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLoad {
    /// The host.
    pub id: HostId,
    /// Its name.
    pub name: String,
    /// Able to take VMs: the platform knows it, a monitor of it is healthy.
    pub eligible: bool,
    /// Why not, when not eligible.
    pub why_not: String,
    /// CPU capacity, thousandths.
    pub cpu_milli: u64,
    /// Memory capacity, MiB.
    pub memory_mb: u64,
    /// CPU in use (running VMs and restarts in progress toward it).
    pub used_cpu_milli: u64,
    /// Memory in use.
    pub used_memory_mb: u64,
    /// The VMs running on it that this plan does not move (anticollocation and
    /// collocation are checked against them).
    pub running: Vec<Uuid>,
    /// Restarts already in progress or queued toward it (the per-target cap counts them).
    pub in_flight: u32,
}

/// What to place, and where it may go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanRequest {
    /// The VMs, in any order.
    pub vms: Vec<VmToPlace>,
    /// Every host of the group.
    pub hosts: Vec<HostLoad>,
    /// Hosts that failed (or are being emptied): never a target; what runs on them is not
    /// "already running" for the policies.
    pub failed: Vec<HostId>,
    /// The group's policies.
    pub policies: Policies,
    /// Restarts at once toward one target (`max_restarts_per_host`); 0 = no cap.
    pub max_per_host: u32,
    /// Names of VMs that are not placed (running partners), for the explanations only.
    pub names: BTreeMap<Uuid, String>,
}

/// Why a VM went to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Its home host (of a collocation: the home of the most members), eligible and with
    /// room.
    Home,
    /// The best fit of the hosts with room.
    BestFit,
    /// Its collocation set's members already run there (`set` indexes
    /// [`Policies::collocations`]).
    Pinned {
        /// The collocation set.
        set: u32,
    },
}

/// Why a VM was placed nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplaced {
    /// Every host refused it: see the verdicts.
    NoHost,
    /// A collocation and an anticollocation say opposite things about two of its VMs
    /// (indexes into [`Policies::collocations`] / [`Policies::anticollocations`] and
    /// into the request's VMs).
    Conflict {
        /// The collocation set.
        collocation: u32,
        /// The anticollocation set.
        anticollocation: u32,
        /// One VM (request index).
        a: u32,
        /// The other (request index).
        b: u32,
    },
    /// Members of its collocation already run on two different live hosts.
    SplitPin {
        /// The collocation set.
        set: u32,
    },
}

/// The verdict of one host for one VM (or one collocation unit). `vm` fields index the
/// request's VMs: the member the rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVerdict {
    /// The host chosen: what it has left free after the unit.
    Chosen {
        /// CPU left, thousandths.
        cpu_left: u64,
        /// Memory left, MiB.
        mem_left: u64,
    },
    /// The host failed.
    Failed,
    /// The VM's failed source.
    Source {
        /// The VM.
        vm: u32,
    },
    /// Excluded by the engine for the VM (a start failed there).
    Excluded {
        /// The VM.
        vm: u32,
    },
    /// On the VM's host exclusion list (policy).
    Policy {
        /// The VM.
        vm: u32,
    },
    /// Not eligible ([`HostLoad::why_not`]).
    NotEligible,
    /// The collocation is pinned to another host (index into the request's hosts) where
    /// members run.
    Pinned {
        /// The collocation set.
        set: u32,
        /// The host it is pinned to (request index).
        host: u32,
    },
    /// A VM it must not share a host with runs there or is placed there.
    Anticollocated {
        /// The anticollocation set.
        set: u32,
        /// The member of the unit.
        vm: u32,
        /// The partner.
        with: Uuid,
    },
    /// Not enough free CPU or memory: what was free.
    NoRoom {
        /// Free CPU, thousandths.
        free_cpu: u64,
        /// Free memory, MiB.
        free_mem: u64,
    },
    /// Would fit, but the VM's home host was chosen.
    HomePreferred,
    /// Would fit, but already at the per-target cap while a host under it had room.
    CapReached {
        /// Restarts toward it (in flight + planned) when the VM was placed.
        count: u32,
    },
    /// Would fit, but the unit can go nowhere (see its [`Unplaced`] reason).
    Blocked,
    /// Would fit, but the chosen host fits better: what it would leave free.
    WorseFit {
        /// CPU left, thousandths.
        cpu_left: u64,
        /// Memory left, MiB.
        mem_left: u64,
    },
}

/// Where one VM goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// To `host`, started with `cpu_milli` / `memory_mb` (after flexible capacity), in
    /// wave `wave` (0: at once; n: after n × `max_per_host` restarts toward that host).
    Host {
        /// The target.
        host: HostId,
        /// CPU it is started with.
        cpu_milli: u32,
        /// Memory it is started with.
        memory_mb: u32,
        /// Its wave on that host.
        wave: u32,
        /// Why this host.
        why: Choice,
    },
    /// Nowhere, and why.
    Nowhere(Unplaced),
}

/// One VM's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVm {
    /// The VM.
    pub uuid: Uuid,
    /// Its index in the request's VMs.
    pub vm: usize,
    /// The rank it was placed at: its own priority, or its workgroup's highest.
    pub rank: Priority,
    /// Where.
    pub placement: Placement,
    /// The unit it was placed with (one VM, or a collocation's VMs in the request).
    pub unit: usize,
}

/// A unit of placement and every host's verdict about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Request indexes of its VMs.
    pub members: Vec<usize>,
    /// One verdict per request host, in the request's host order; empty when the plan
    /// was too large to keep them all ([`MAX_VERDICTS`]).
    pub verdicts: Vec<HostVerdict>,
}

/// A plan: every VM of the request once, in restart order (placed VMs by wave, then in
/// placement order; then the VMs placed nowhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The VMs.
    pub vms: Vec<PlannedVm>,
    /// The units, with every host's verdict.
    pub units: Vec<Unit>,
}

impl Plan {
    /// The VM `uuid`'s outcome.
    pub fn get(&self, uuid: &Uuid) -> Option<&PlannedVm> {
        self.vms.iter().find(|p| p.uuid == *uuid)
    }

    /// Every host's verdict for the VM at `i` in [`Plan::vms`].
    pub fn verdicts(&self, i: usize) -> &[HostVerdict] {
        self.vms
            .get(i)
            .and_then(|p| self.units.get(p.unit))
            .map_or(&[], |u| u.verdicts.as_slice())
    }

    /// The VMs placed nowhere.
    pub fn unplaced(&self) -> impl Iterator<Item = (usize, &PlannedVm)> {
        self.vms
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.placement, Placement::Nowhere(_)))
    }
}

/// Decides where VMs go.
pub trait Planner: Send {
    /// The planner's name for logs.
    fn name(&self) -> &'static str;

    /// Place every VM of `request`; the plan names each of them exactly once.
    fn plan(&self, request: &PlanRequest) -> Plan;
}

/// Restart order: High first.
pub const fn rank(p: Priority) -> u8 {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}
