//! Building a [`PlanRequest`] without an engine, from the HSDB's rows and the platform's
//! hosts: what `hactl relocate --dry-run`, `hactl verify` and a host evacuation plan
//! against.
//!
//! ```text
//! let view = GroupView::new(&Inputs { group, hosts: &db.hosts()?, hms: &db.hms()?,
//!     vms: &db.vms()?, infos: &platform.hosts()?, policies: &policies, now_ms,
//!     hm_silent_after_ms: params.hm_silent_after_ms, max_per_host: params.max_restarts_per_host });
//! let plan = PolicyPlanner.plan(&view.host_failure(host_id));
//! ```
//!
//! The rules are the engine's (fde/place.rs): a host's capacity is the HSDB's when set,
//! else the platform's; its load is the platform's VMs that are not Not Activated; it is
//! eligible when the platform knows it and one of its monitors is healthy (UP, heard from
//! within `hm_silent_after`); a VM's size is the HSDB's, else the platform's; a VM runs
//! where the platform shows it running, else on the HSDB's `current_host`.

use std::collections::BTreeMap;

use hsdb::{HmRow, HmState, HostId, HostRecord, Uuid, VmRow};

use super::{HostLoad, PlanRequest, Policies, VmToPlace};
use crate::platform::{HostInfo, PowerState};

/// What the view is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The host group.
    pub group: &'a str,
    /// The HSDB's hosts (those of other groups are ignored).
    pub hosts: &'a [HostRecord],
    /// The HSDB's monitors.
    pub hms: &'a [HmRow],
    /// The HSDB's VMs.
    pub vms: &'a [VmRow],
    /// The platform's hosts.
    pub infos: &'a [HostInfo],
    /// The group's policies.
    pub policies: &'a Policies,
    /// Now, ms since the Unix epoch (monitor health).
    pub now_ms: i64,
    /// A monitor silent longer than this is not healthy (`hm_silent_after`).
    pub hm_silent_after_ms: i64,
    /// `max_restarts_per_host`.
    pub max_per_host: u32,
}

/// A VM named that the group does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No VM of that UUID or name in the group.
    #[error("no VM {0:?} on a host of group {1}")]
    UnknownVm(String, String),
    /// No host of that name or id in the group.
    #[error("no host {0:?} in group {1}")]
    UnknownHost(String, String),
}

/// One host group's state, ready to plan against.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The group.
    pub group: String,
    /// Every host of the group with its load (request order: by id).
    pub hosts: Vec<HostLoad>,
    /// The group's VMs (on one of its hosts), with where they run; sizes filled from the
    /// platform where the HSDB has none.
    pub vms: Vec<(VmRow, HostId)>,
    policies: Policies,
    max_per_host: u32,
    names: BTreeMap<Uuid, String>,
}

/// The VM's size: the HSDB's when set, else the platform's.
fn size(vm: &VmRow, infos: &[HostInfo]) -> (u32, u32) {
    let platform = infos
        .iter()
        .flat_map(|h| h.vms.iter())
        .find(|(s, _)| s.uuid == vm.uuid)
        .map(|(s, _)| (s.cpu_milli, s.memory_mb));
    (
        if vm.cpu_milli > 0 {
            vm.cpu_milli
        } else {
            platform.map_or(0, |p| p.0)
        },
        if vm.memory_mb > 0 {
            vm.memory_mb
        } else {
            platform.map_or(0, |p| p.1)
        },
    )
}

impl GroupView {
    /// The group's hosts, loads and VMs.
    pub fn new(inp: &Inputs<'_>) -> GroupView {
        let mut records: Vec<&HostRecord> = inp
            .hosts
            .iter()
            .filter(|h| h.host_group == inp.group)
            .collect();
        records.sort_by_key(|h| h.id);
        let mut names = BTreeMap::new();
        for v in inp.vms {
            if !v.name.is_empty() {
                names.insert(v.uuid, v.name.clone());
            }
        }
        // Where each VM runs per the platform (first host in id order that shows it
        // running).
        let mut running_on: BTreeMap<Uuid, HostId> = BTreeMap::new();
        for r in &records {
            if let Some(info) = inp.infos.iter().find(|i| i.name == r.name) {
                for (spec, st) in &info.vms {
                    if !spec.name.is_empty() {
                        names.entry(spec.uuid).or_insert_with(|| spec.name.clone());
                    }
                    if matches!(st.power, PowerState::Running | PowerState::MigratingRunning) {
                        running_on.entry(spec.uuid).or_insert(r.id);
                    }
                }
            }
        }
        let in_group = |h: HostId| records.iter().any(|r| r.id == h);
        let mut vms: Vec<(VmRow, HostId)> = inp
            .vms
            .iter()
            .filter_map(|v| {
                let at = running_on.get(&v.uuid).copied().or(v.current_host)?;
                let mut v = v.clone();
                (v.cpu_milli, v.memory_mb) = size(&v, inp.infos);
                in_group(at).then_some((v, at))
            })
            .collect();
        vms.sort_by_key(|(v, _)| v.uuid);
        let hosts = records
            .iter()
            .map(|r| {
                let info = inp.infos.iter().find(|i| i.name == r.name);
                let healthy = inp.hms.iter().any(|m| {
                    m.host == r.id
                        && m.state == HmState::Up
                        && inp.now_ms.saturating_sub(m.last_hb_ms) <= inp.hm_silent_after_ms
                });
                let running: Vec<Uuid> = vms
                    .iter()
                    .filter(|(_, at)| *at == r.id)
                    .map(|(v, _)| v.uuid)
                    .collect();
                host_load(
                    r.id,
                    &r.name,
                    (r.cpu_milli, r.memory_mb),
                    info,
                    healthy,
                    running,
                    &[],
                )
            })
            .collect();
        GroupView {
            group: inp.group.to_owned(),
            hosts,
            vms,
            policies: inp.policies.clone(),
            max_per_host: inp.max_per_host,
            names,
        }
    }

    /// Host `id` receives no VM (`why`: e.g. in maintenance); an ineligible host keeps
    /// its first reason.
    pub fn set_ineligible(&mut self, id: HostId, why: &str) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.id == id && h.eligible) {
            h.eligible = false;
            h.why_not = why.to_owned();
        }
    }

    /// The host named `name` (or numbered: its id).
    pub fn host(&self, name: &str) -> Result<HostId, RequestError> {
        self.hosts
            .iter()
            .find(|h| h.name == name || h.id.0.to_string() == name)
            .map(|h| h.id)
            .ok_or_else(|| RequestError::UnknownHost(name.to_owned(), self.group.clone()))
    }

    /// The VM named `name` (or its UUID).
    pub fn vm(&self, name: &str) -> Result<Uuid, RequestError> {
        self.vms
            .iter()
            .find(|(v, _)| v.name == name || v.uuid.to_string() == name)
            .map(|(v, _)| v.uuid)
            .ok_or_else(|| RequestError::UnknownVm(name.to_owned(), self.group.clone()))
    }

    /// The managed VMs running on `host`.
    pub fn managed_on(&self, host: HostId) -> Vec<Uuid> {
        self.vms
            .iter()
            .filter(|(v, at)| *at == host && v.managed)
            .map(|(v, _)| v.uuid)
            .collect()
    }

    fn to_place(&self, uuid: &Uuid) -> Option<VmToPlace> {
        let (v, at) = self.vms.iter().find(|(v, _)| v.uuid == *uuid)?;
        Some(VmToPlace {
            uuid: v.uuid,
            name: if v.name.is_empty() {
                self.names.get(&v.uuid).cloned().unwrap_or_default()
            } else {
                v.name.clone()
            },
            priority: v.priority,
            cpu_milli: v.cpu_milli,
            memory_mb: v.memory_mb,
            home: v.home_host,
            source: Some(*at),
            exclude: Vec::new(),
        })
    }

    fn request(&self, vms: Vec<VmToPlace>, failed: Vec<HostId>) -> PlanRequest {
        let moving: Vec<Uuid> = vms.iter().map(|v| v.uuid).collect();
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let mut h = h.clone();
                // A VM this plan moves is not "already running" where it was.
                h.running.retain(|u| !moving.contains(u));
                h
            })
            .collect();
        PlanRequest {
            vms,
            hosts,
            failed,
            policies: self.policies.clone(),
            max_per_host: self.max_per_host,
            names: self.names.clone(),
        }
    }

    /// The failure of `hosts` (or their evacuation): every managed VM on them to place
    /// elsewhere, those hosts never a target.
    pub fn host_failure(&self, hosts: &[HostId]) -> PlanRequest {
        let vms = hosts
            .iter()
            .flat_map(|h| self.managed_on(*h))
            .filter_map(|u| self.to_place(&u))
            .collect();
        self.request(vms, hosts.to_vec())
    }

    /// The failure of `hosts` (every managed VM on them) and the restart of `vms`
    /// elsewhere, in one plan (each VM once).
    pub fn request_for(&self, hosts: &[HostId], vms: &[Uuid]) -> Result<PlanRequest, RequestError> {
        let mut out: Vec<VmToPlace> = Vec::new();
        let named = hosts.iter().flat_map(|h| self.managed_on(*h));
        for u in named.chain(vms.iter().copied()) {
            if out.iter().any(|x| x.uuid == u) {
                continue;
            }
            out.push(
                self.to_place(&u)
                    .ok_or_else(|| RequestError::UnknownVm(u.to_string(), self.group.clone()))?,
            );
        }
        Ok(self.request(out, hosts.to_vec()))
    }

    /// The restart of `vms` on another host than the one each runs on.
    pub fn vm_restart(&self, vms: &[Uuid]) -> Result<PlanRequest, RequestError> {
        let mut out = Vec::with_capacity(vms.len());
        for u in vms {
            let v = self
                .to_place(u)
                .ok_or_else(|| RequestError::UnknownVm(u.to_string(), self.group.clone()))?;
            if !out.iter().any(|x: &VmToPlace| x.uuid == v.uuid) {
                out.push(v);
            }
        }
        Ok(self.request(out, Vec::new()))
    }
}

/// One host's [`HostLoad`], as the engine and [`GroupView`] compute it: capacity = the
/// HSDB's (`hsdb_cap`, CPU and memory) when nonzero, else the platform's; load = the
/// platform's VMs that are not Not Activated plus `in_flight` (restarts toward it the
/// platform does not show yet: their sizes); eligible when the platform knows it and
/// `healthy`.
pub fn host_load(
    id: HostId,
    name: &str,
    hsdb_cap: (u32, u32),
    info: Option<&HostInfo>,
    healthy: bool,
    running: Vec<Uuid>,
    in_flight: &[(Uuid, u32, u32)],
) -> HostLoad {
    let why_not = if info.is_none() {
        "not known to the platform".to_owned()
    } else if !healthy {
        "no healthy monitor".to_owned()
    } else {
        String::new()
    };
    let (mut used_cpu, mut used_mem) = (0u64, 0u64);
    if let Some(info) = info {
        for (spec, status) in &info.vms {
            if status.power != PowerState::NotActivated {
                used_cpu += u64::from(spec.cpu_milli);
                used_mem += u64::from(spec.memory_mb);
            }
        }
    }
    for (uuid, cpu, mem) in in_flight {
        let shown = info.is_some_and(|i| {
            i.vms
                .iter()
                .any(|(s, st)| s.uuid == *uuid && st.power != PowerState::NotActivated)
        });
        if !shown {
            used_cpu += u64::from(*cpu);
            used_mem += u64::from(*mem);
        }
    }
    HostLoad {
        id,
        name: name.to_owned(),
        eligible: why_not.is_empty(),
        why_not,
        cpu_milli: u64::from(if hsdb_cap.0 > 0 {
            hsdb_cap.0
        } else {
            info.map_or(0, |i| i.cpu_milli)
        }),
        memory_mb: u64::from(if hsdb_cap.1 > 0 {
            hsdb_cap.1
        } else {
            info.map_or(0, |i| i.memory_mb)
        }),
        used_cpu_milli: used_cpu,
        used_memory_mb: used_mem,
        running,
        in_flight: u32::try_from(in_flight.len()).unwrap_or(u32::MAX),
    }
}
