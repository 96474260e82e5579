//! The placement policies of one host group, as the planner reads them
//! (seed-controlplane.md §4.3, seed 004 L15639-15966).
//!
//! This is the in-memory model only: the HSDB's `policy` table holds them, `hactl policy`
//! edits and validates them, and the engine hands the group's set to the planner with
//! [`crate::fde::Fde::set_policies`]. Per-VM facts (priority, home host, size) travel
//! with each [`super::VmToPlace`]; what relates VMs to each other, the operator's host
//! exclusions and the group's flexible capacity are here.

use std::collections::BTreeMap;

use hsdb::{HostId, Priority, Uuid};

/// A named set of VMs: a collocation, an anticollocation or a workgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmSet {
    /// The operator's name for the set (unique per kind).
    pub name: String,
    /// Its VMs, in the order the operator gave them (no duplicates).
    pub members: Vec<Uuid>,
}

/// The share of a VM's nominal CPU and memory it is started with when restarted away
/// from its home host (seed 004 L15639-15724): 1..=100 percent each, 100 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flex {
    /// Percent of the nominal CPU, 1..=100.
    pub cpu_pct: u8,
    /// Percent of the nominal memory, 1..=100.
    pub memory_pct: u8,
}

impl Default for Flex {
    fn default() -> Flex {
        Flex {
            cpu_pct: 100,
            memory_pct: 100,
        }
    }
}

/// Flexible capacity of a host group, per priority (seed 004 L15639-15724).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlexibleCapacity {
    /// High-priority VMs.
    pub high: Flex,
    /// Medium-priority VMs.
    pub medium: Flex,
    /// Low-priority VMs.
    pub low: Flex,
}

impl FlexibleCapacity {
    /// The share for a VM of priority `p`.
    pub fn of(&self, p: Priority) -> Flex {
        match p {
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        }
    }
}

/// Every placement policy of one host group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    /// VMs that must be on one host after a relocation (seed 004 L15730-15765).
    pub collocations: Vec<VmSet>,
    /// VMs that must never share a host after a relocation (seed 004 L15766-15800).
    pub anticollocations: Vec<VmSet>,
    /// VMs restarted as one unit of work (seed 004 L15801-15835; gap 13, docs/controlplane.md).
    pub workgroups: Vec<VmSet>,
    /// Per VM, the hosts it is never relocated to (the seed's `blacklist_hosts`, seed 004
    /// L15846-15905).
    pub exclusions: BTreeMap<Uuid, Vec<HostId>>,
    /// The group's flexible capacity per priority.
    pub flexible: FlexibleCapacity,
}
