//! Where a VM to restart goes: the [`Planner`] interface and [`FirstFit`], the placement
//! used until the policy planner (collocation, anticollocation, workgroups, best fit,
//! flexible capacity — DESIGN.md §6, seed-controlplane.md §4.2-§4.3) fills it.
//!
//! A planner only decides; it never acts and never reads the store or the platform. A VM
//! that fits nowhere comes back as [`Placement::Nowhere`] with the reason: the caller
//! reports it, never drops it.

use std::fmt;

use hsdb::{HostId, Priority, Uuid};

mod policy;

pub use self::policy::{Flex, FlexibleCapacity, Policies, VmSet};

/// A VM to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmToPlace {
    /// The VM.
    pub uuid: Uuid,
    /// Its name (for reasons).
    pub name: String,
    /// Restart order: High first (seed 004 L15907-15917).
    pub priority: Priority,
    /// CPU, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// Hosts it must not go to (its failed host, a target that failed to start it).
    pub exclude: Vec<HostId>,
}

/// A candidate host with its capacity and what is already placed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLoad {
    /// The host.
    pub id: HostId,
    /// Its name.
    pub name: String,
    /// Able to take VMs: not failed, its hypervisor answers, a monitor of it is healthy.
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
}

impl HostLoad {
    fn fits(&self, vm: &VmToPlace) -> bool {
        self.used_cpu_milli + u64::from(vm.cpu_milli) <= self.cpu_milli
            && self.used_memory_mb + u64::from(vm.memory_mb) <= self.memory_mb
    }
}

/// What to place, and where it may go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanRequest {
    /// The VMs, in any order.
    pub vms: Vec<VmToPlace>,
    /// Every host of the group.
    pub hosts: Vec<HostLoad>,
    /// Hosts that failed: never a target.
    pub failed: Vec<HostId>,
}

/// Where one VM goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// To this host.
    Host(HostId),
    /// Nowhere: the reason, with the numbers.
    Nowhere(String),
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Host(id) => write!(f, "host {id}"),
            Placement::Nowhere(why) => write!(f, "nowhere: {why}"),
        }
    }
}

/// A plan: one placement per VM, in the order restarts should start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// (VM, placement), restart order.
    pub placements: Vec<(Uuid, Placement)>,
}

/// Decides where VMs go.
pub trait Planner: Send {
    /// The planner's name for logs.
    fn name(&self) -> &'static str;

    /// Place every VM of `request`; the plan names each of them exactly once.
    fn plan(&self, request: &PlanRequest) -> Plan;
}

/// Priority order High → Medium → Low (then the request's order), each VM to the first
/// eligible host (in the request's host order) that is not failed, not excluded for it,
/// and has room for its CPU and memory after the VMs placed before it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstFit;

const fn rank(p: Priority) -> u8 {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

impl Planner for FirstFit {
    fn name(&self) -> &'static str {
        "first-fit"
    }

    fn plan(&self, request: &PlanRequest) -> Plan {
        let mut order: Vec<&VmToPlace> = request.vms.iter().collect();
        // Stable: equal priorities keep the request's order.
        order.sort_by_key(|v| rank(v.priority));
        let mut hosts = request.hosts.clone();
        let mut placements = Vec::with_capacity(order.len());
        for vm in order {
            let mut reasons = Vec::new();
            let mut chosen = None;
            for h in hosts.iter_mut() {
                if request.failed.contains(&h.id) {
                    reasons.push(format!("{}: failed", h.name));
                } else if vm.exclude.contains(&h.id) {
                    reasons.push(format!("{}: excluded", h.name));
                } else if !h.eligible {
                    reasons.push(format!("{}: {}", h.name, h.why_not));
                } else if !h.fits(vm) {
                    reasons.push(format!(
                        "{}: free cpu {} milli / memory {} MiB, needs {} / {}",
                        h.name,
                        h.cpu_milli.saturating_sub(h.used_cpu_milli),
                        h.memory_mb.saturating_sub(h.used_memory_mb),
                        vm.cpu_milli,
                        vm.memory_mb
                    ));
                } else {
                    h.used_cpu_milli += u64::from(vm.cpu_milli);
                    h.used_memory_mb += u64::from(vm.memory_mb);
                    chosen = Some(h.id);
                    break;
                }
            }
            let placement = match chosen {
                Some(id) => Placement::Host(id),
                None if reasons.is_empty() => Placement::Nowhere("no host in the group".into()),
                None => Placement::Nowhere(reasons.join("; ")),
            };
            placements.push((vm.uuid, placement));
        }
        Plan { placements }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vm(n: u8, priority: Priority, cpu: u32, mem: u32) -> VmToPlace {
        VmToPlace {
            uuid: Uuid([n; 16]),
            name: format!("vm{n}"),
            priority,
            cpu_milli: cpu,
            memory_mb: mem,
            exclude: vec![HostId(1)],
        }
    }

    fn host(id: i64, cpu: u64, mem: u64) -> HostLoad {
        HostLoad {
            id: HostId(id),
            name: format!("host-{id}"),
            eligible: true,
            why_not: String::new(),
            cpu_milli: cpu,
            memory_mb: mem,
            used_cpu_milli: 0,
            used_memory_mb: 0,
        }
    }

    #[test]
    fn test_priority_order_then_first_host_with_room() {
        let req = PlanRequest {
            vms: vec![
                vm(1, Priority::Low, 1000, 1000),
                vm(2, Priority::High, 1500, 1000),
                vm(3, Priority::Medium, 1000, 1000),
            ],
            hosts: vec![
                host(1, 8000, 8000),
                host(2, 2000, 4000),
                host(3, 4000, 4000),
            ],
            failed: vec![HostId(1)],
        };
        let plan = FirstFit.plan(&req);
        let got: Vec<(u8, Placement)> = plan
            .placements
            .iter()
            .map(|(u, p)| (u.0[0], p.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (2, Placement::Host(HostId(2))),
                // Host 2 has 500 milli left: the Medium VM goes on to host 3.
                (3, Placement::Host(HostId(3))),
                (1, Placement::Host(HostId(3))),
            ]
        );
    }

    #[test]
    fn test_fits_nowhere_is_reported_with_reasons() {
        let mut down = host(3, 64000, 64000);
        down.eligible = false;
        down.why_not = "hypervisor does not answer".into();
        let req = PlanRequest {
            vms: vec![
                vm(1, Priority::Medium, 4000, 1000),
                vm(2, Priority::Medium, 100, 100),
            ],
            hosts: vec![host(1, 64000, 64000), host(2, 2000, 64000), down],
            failed: vec![HostId(1)],
        };
        let plan = FirstFit.plan(&req);
        assert_eq!(plan.placements.len(), 2, "every VM is in the plan");
        let Placement::Nowhere(why) = &plan.placements[0].1 else {
            panic!("{:?}", plan.placements[0]);
        };
        assert!(why.contains("host-1: failed"), "{why}");
        assert!(why.contains("host-2: free cpu 2000 milli"), "{why}");
        assert!(why.contains("host-3: hypervisor does not answer"), "{why}");
        assert_eq!(plan.placements[1].1, Placement::Host(HostId(2)));
        let empty = FirstFit.plan(&PlanRequest {
            vms: vec![vm(9, Priority::High, 1, 1)],
            ..PlanRequest::default()
        });
        assert_eq!(
            empty.placements[0].1,
            Placement::Nowhere("no host in the group".into())
        );
    }

    #[test]
    fn test_exact_fit_and_exclusion() {
        let mut v = vm(1, Priority::High, 2000, 2048);
        v.exclude.push(HostId(2));
        let mut full = host(2, 4000, 4096);
        full.used_cpu_milli = 2000;
        full.used_memory_mb = 2048;
        let plan = FirstFit.plan(&PlanRequest {
            vms: vec![v],
            hosts: vec![full.clone(), {
                let mut h = full.clone();
                h.id = HostId(3);
                h
            }],
            failed: vec![],
        });
        assert_eq!(
            plan.placements[0].1,
            Placement::Host(HostId(3)),
            "exactly full fits"
        );
    }
}
