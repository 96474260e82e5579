//! Planned maintenance (seed 004 §1.2.1, §4.4; seed-controlplane.md §4.3 "Planned HA:
//! host evacuation by LPM and single-operation return to the original host").
//!
//! `hactl host evacuate HOST` and `hactl host restore HOST` write an operator request to
//! the HSDB (`operator_request`); the engine leading the host's group picks the oldest
//! open one at a QuickQuery scan and carries it out, one at a time, writing its progress
//! into the row:
//!
//! - **Evacuate**: every VM the platform shows on the host (not Not Activated) must be
//!   known to the HSDB, not being restarted, and placed by the planner on another
//!   eligible host of the group (not in maintenance, not failed, a healthy monitor). If
//!   any VM finds no place, the request is REFUSED with the reason of each such VM and
//!   nothing moves (HOST_MAINTENANCE_REFUSED). Otherwise the host enters maintenance at
//!   once (it receives no VM from then on) and every VM is moved through the executor —
//!   the per-VM lock and the per-target cap like any restart — by live migration where
//!   the platform can (`Platform::live_migration`), else by a stop and a start, which the
//!   `relocation` row (`move by …`), its result and the progress say. The request ends
//!   DONE (HOST_MAINTENANCE_STARTED) or, when a move failed, FAILED naming the VMs still
//!   on the host; the host stays in maintenance either way (the operator asked for it).
//! - **Restore**: the host must answer (`host_alive`) and have a healthy monitor. Its
//!   maintenance ends, and the VMs whose home host it is (`vm.home_host`) and that run
//!   elsewhere are moved back in one request; those the host has no room for stay where
//!   they are and are named in the result (FAILED); HOST_MAINTENANCE_ENDED.
//!
//! While a host is in maintenance its monitors' silence or loss is not a host failure
//! (host decisions, fde/host.rs: decided `maintenance`, once per episode an event-free
//! decision), and the planner never picks it. A moved VM is never a failure: it is locked
//! while it moves, then recorded where it went (a MOVED discovery from the target's
//! monitors, and misses on the old host's monitors, are the move's — TC-13).
//!
//! A request found RUNNING by a new engine (a daemon restart, a new leader) is ended
//! FAILED ("interrupted"): its moves are taken over from their `relocation` rows
//! (fde/takeover.rs) and the operator runs the command again to finish.

use std::collections::HashMap;

use hsdb::{HostId, OperatorRequest, RequestKind, RequestState, Uuid};

use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::planner::request::host_load;
use crate::planner::{HostLoad, Placement, PlanRequest, VmToPlace};
use crate::platform::{HostInfo, Platform, PowerState, VmSpec};
use crate::relocate::{Finished, HostRef, Outcome, RestartKind, RestartRequest};

/// The request being carried out.
#[derive(Debug, Clone)]
pub(super) struct Active {
    id: i64,
    kind: RequestKind,
    host: HostId,
    host_name: String,
    /// The VMs being moved.
    vms: Vec<(Uuid, String)>,
    moved: Vec<String>,
    failed: Vec<String>,
    /// Named at the start: VMs that stay (restore: no room at home).
    left: Vec<String>,
    live: bool,
    /// A MOVE's target host (empty for the other kinds).
    target_name: String,
}

fn running(p: PowerState) -> bool {
    !matches!(
        p,
        PowerState::NotActivated | PowerState::MigratingNotActivated
    )
}

impl Fde {
    /// Whether `host` is in planned maintenance (as of the last scan).
    pub fn in_maintenance(&self, host: HostId) -> bool {
        self.maintenance.contains_key(&host)
    }

    /// For `hactl status`: the hosts in maintenance by name, and the operator request
    /// being carried out in words.
    pub fn maintenance_summary(&self) -> (Vec<String>, Option<String>) {
        let mut hosts: Vec<HostId> = self.maintenance.keys().copied().collect();
        hosts.sort();
        let names = hosts.into_iter().map(|h| self.host_name(h)).collect();
        let request = self.active_request.as_ref().map(|a| {
            let what = match a.kind {
                RequestKind::Evacuate => "evacuate",
                RequestKind::Restore => "restore",
                RequestKind::Move => "move a VM off",
            };
            format!(
                "request {}: {what} host {}, {} of {} VM(s) moved {}{}",
                a.id,
                a.host_name,
                a.moved.len(),
                a.vms.len(),
                crate::relocate::move_way(a.live),
                if a.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} failed", a.failed.len())
                }
            )
        });
        (names, request)
    }

    /// The operator request being carried out: (id, done, of).
    pub fn maintenance_progress(&self) -> Option<(i64, usize, usize)> {
        self.active_request
            .as_ref()
            .map(|a| (a.id, a.moved.len() + a.failed.len(), a.vms.len()))
    }

    /// Refresh the hosts in maintenance; pick up the next operator request.
    pub(super) fn maintenance_scan(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        self.maintenance = store.hosts_in_maintenance()?.into_iter().collect();
        if self.active_request.is_some() {
            return Ok(());
        }
        let ours: HashMap<HostId, String> =
            self.hosts.iter().map(|h| (h.id, h.name.clone())).collect();
        for req in store.open_operator_requests(&self.params.group)? {
            let Some(name) = ours.get(&req.host).cloned() else {
                let why = format!(
                    "host #{} is not in host group {}",
                    req.host, self.params.group
                );
                store.update_operator_request(
                    req.id,
                    RequestState::Refused,
                    &why,
                    Some(&why),
                    now_ms,
                )?;
                continue;
            };
            if req.state == RequestState::Running {
                let why = format!(
                    "interrupted (daemon restart or new leader) at: {}; its moves are taken over \
                     from their relocation rows — run the command again to finish",
                    req.progress
                );
                store.update_operator_request(
                    req.id,
                    RequestState::Failed,
                    &why,
                    Some(&why),
                    now_ms,
                )?;
                continue;
            }
            match req.kind {
                RequestKind::Evacuate => self.evacuate(now_ms, &req, &name, store, platform)?,
                RequestKind::Restore => self.restore(now_ms, &req, &name, store, platform)?,
                RequestKind::Move => self.move_vm(now_ms, &req, &name, store, platform)?,
            }
            // One request at a time: the next at a later scan.
            break;
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        now_ms: i64,
        req: &OperatorRequest,
        host_name: &str,
        why: String,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        if req.kind == RequestKind::Move {
            return self.refuse_move(now_ms, req, None, why, store);
        }
        let what = match req.kind {
            RequestKind::Evacuate => "evacuation",
            RequestKind::Restore | RequestKind::Move => "restore",
        };
        let text = format!("{what} of host {host_name} refused: {why}");
        tracing::warn!(request = req.id, "{text}");
        self.decide(
            now_ms,
            Subject::Host {
                id: req.host,
                name: host_name.to_owned(),
            },
            Verdict::Maintenance,
            text.clone(),
        );
        self.event(Event {
            kind: EventKind::HostMaintenanceRefused,
            vm: None,
            hm: None,
            text: text.clone(),
            at: now_ms,
        });
        store.update_operator_request(req.id, RequestState::Refused, &text, Some(&text), now_ms)?;
        Ok(())
    }

    /// The hosts of the group as the planner sees them for a planned move: capacity,
    /// load and health by the engine's rules (`planner::request::host_load`); `only`
    /// (restore) or every host but `not` (evacuate) may be a target, never a host in
    /// maintenance other than `only`.
    fn move_targets(
        &self,
        infos: &[HostInfo],
        not: Option<HostId>,
        only: Option<HostId>,
    ) -> Vec<HostLoad> {
        self.hosts
            .iter()
            .map(|h| {
                let info = infos.iter().find(|i| i.name == h.name);
                let healthy = h.monitors.iter().any(|m| self.healthy(m));
                let running_here: Vec<Uuid> = info
                    .map(|i| {
                        i.vms
                            .iter()
                            .filter(|(_, st)| running(st.power))
                            .map(|(s, _)| s.uuid)
                            .collect()
                    })
                    .unwrap_or_default();
                let in_flight: Vec<(Uuid, u32, u32)> = self
                    .executor
                    .toward(h.id)
                    .map(|r| {
                        (
                            r.request.spec.uuid,
                            r.request.spec.cpu_milli,
                            r.request.spec.memory_mb,
                        )
                    })
                    .collect();
                let mut load = host_load(
                    h.id,
                    &h.name,
                    (h.cpu_milli, h.memory_mb),
                    info,
                    healthy,
                    running_here,
                    &in_flight,
                );
                let why_not = if Some(h.id) == not {
                    Some("the host being evacuated")
                } else if only.is_some_and(|o| o != h.id) {
                    Some("not the home host")
                } else if only.is_none() && self.in_maintenance(h.id) {
                    Some("in maintenance")
                } else {
                    None
                };
                if let (Some(why), true) = (why_not, load.eligible) {
                    load.eligible = false;
                    load.why_not = why.to_owned();
                }
                load
            })
            .collect()
    }

    /// A plan request for planned moves: the group's policies, but no flexible capacity
    /// (a live migration moves the VM as it runs, at its full size: seed-controlplane.md
    /// §4.3).
    fn move_request(&self, vms: Vec<VmToPlace>, hosts: Vec<HostLoad>) -> PlanRequest {
        let mut policies = self.policies.clone();
        policies.flexible = crate::planner::FlexibleCapacity::default();
        PlanRequest {
            vms,
            hosts,
            failed: self.failed_hosts(),
            policies,
            max_per_host: self.params.max_restarts_per_host,
            names: std::collections::BTreeMap::new(),
        }
    }

    fn evacuate(
        &mut self,
        now_ms: i64,
        req: &OperatorRequest,
        host_name: &str,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let infos = match platform.hosts() {
            Ok(i) => i,
            Err(e) => {
                // No evidence either way: the request waits for the next scan.
                tracing::warn!(
                    request = req.id,
                    "cannot read the hosts for the evacuation ({e})"
                );
                return Ok(());
            }
        };
        let Some(info) = infos.iter().find(|i| i.name == host_name) else {
            return self.refuse(
                now_ms,
                req,
                host_name,
                format!("the platform does not show host {host_name} (down or unreachable): nothing to move"),
                store,
            );
        };
        let mut reasons = Vec::new();
        let mut todo: Vec<(hsdb::VmRow, VmSpec)> = Vec::new();
        for (spec, status) in &info.vms {
            if !running(status.power) {
                continue;
            }
            let label = if spec.name.is_empty() {
                spec.uuid.to_string()
            } else {
                spec.name.clone()
            };
            let Some(row) = store.vm(&spec.uuid)? else {
                reasons.push(format!(
                    "VM {label}: not in the HSDB (add it with hactl add vm, or move it yourself)"
                ));
                continue;
            };
            if self.is_busy(&spec.uuid) {
                reasons.push(format!(
                    "VM {label}: being restarted; try again when it is done"
                ));
                continue;
            }
            let mut s = VmSpec::of_row(&row);
            if s.cpu_milli == 0 {
                s.cpu_milli = spec.cpu_milli;
            }
            if s.memory_mb == 0 {
                s.memory_mb = spec.memory_mb;
            }
            todo.push((row, s));
        }
        let request = self.move_request(
            todo.iter()
                .map(|(row, s)| VmToPlace {
                    uuid: row.uuid,
                    name: s.name.clone(),
                    priority: row.priority,
                    cpu_milli: s.cpu_milli,
                    memory_mb: s.memory_mb,
                    home: row.home_host,
                    source: Some(req.host),
                    exclude: Vec::new(),
                })
                .collect(),
            self.move_targets(&infos, Some(req.host), None),
        );
        let plan = self.planner.plan(&request);
        let mut targets: HashMap<Uuid, (HostId, String)> = HashMap::new();
        for (i, planned) in plan.vms.iter().enumerate() {
            match planned.placement {
                Placement::Host { host, .. } => {
                    let reasons = plan.explanation(&request, i).join("\n");
                    targets.insert(planned.uuid, (host, reasons));
                }
                Placement::Nowhere(_) => {
                    let name = todo
                        .iter()
                        .find(|(r, _)| r.uuid == planned.uuid)
                        .map_or_else(|| planned.uuid.to_string(), |(_, s)| s.name.clone());
                    reasons.push(format!("VM {name}: {}", plan.why(&request, i)));
                }
            }
        }
        if !reasons.is_empty() {
            let why = format!(
                "the plan is incomplete, nothing moved — {}",
                reasons.join("; ")
            );
            return self.refuse(now_ms, req, host_name, why, store);
        }
        // The host receives nothing from now on, and its silence is not a failure.
        store.set_host_maintenance(req.host, Some(now_ms), Some(req.id))?;
        self.maintenance.insert(req.host, now_ms);
        let live = platform.live_migration();
        let way = crate::relocate::move_way(live);
        let text = format!(
            "evacuation of host {host_name}: {} VM(s) to move {way}; host in maintenance",
            todo.len()
        );
        tracing::info!(request = req.id, "{text}");
        self.decide(
            now_ms,
            Subject::Host {
                id: req.host,
                name: host_name.to_owned(),
            },
            Verdict::Maintenance,
            text.clone(),
        );
        store.update_operator_request(req.id, RequestState::Running, &text, None, now_ms)?;
        let mut active = Active {
            id: req.id,
            kind: req.kind,
            host: req.host,
            host_name: host_name.to_owned(),
            vms: Vec::new(),
            moved: Vec::new(),
            failed: Vec::new(),
            left: Vec::new(),
            live,
            target_name: String::new(),
        };
        // A batch only for moves (an empty one would never be summed up).
        let batch = if todo.is_empty() {
            0
        } else {
            self.executor
                .open_batch(u32::try_from(todo.len()).unwrap_or(u32::MAX))
        };
        for (row, spec) in todo {
            let Some((target, reasons)) = targets.remove(&row.uuid) else {
                continue;
            };
            active.vms.push((row.uuid, spec.name.clone()));
            self.submit_move(
                now_ms,
                &row,
                spec,
                (req.host, target),
                RestartKind::Evacuation,
                live,
                batch,
                reasons,
                store,
            )?;
        }
        self.active_request = Some(active);
        self.maintenance_maybe_done(now_ms, store)
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_move(
        &mut self,
        now_ms: i64,
        row: &hsdb::VmRow,
        spec: VmSpec,
        (from, to): (HostId, HostId),
        kind: RestartKind,
        live: bool,
        batch: u64,
        reasons: String,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let mut reasons = reasons;
        reasons.push('\n');
        reasons.push_str(&format!(
            "{} {}",
            match kind {
                RestartKind::Move => "moved",
                _ => "planned move",
            },
            crate::relocate::move_way(live)
        ));
        let request = RestartRequest {
            spec,
            priority: row.priority,
            kind,
            from: HostRef {
                id: from,
                name: self.host_name(from),
            },
            to: HostRef {
                id: to,
                name: self.host_name(to),
            },
            source_gone: false,
            source_monitors: self.monitors_of(from),
            target_monitors: self.monitors_of(to),
            batch,
            live,
            reasons: Some(reasons),
        };
        self.decide(
            now_ms,
            Subject::Vm {
                uuid: row.uuid,
                name: super::vm::display_name(row),
            },
            Verdict::Maintenance,
            format!(
                "planned move ({}) from host {} to host {} {}: not a failure",
                kind.as_str(),
                request.from.name,
                request.to.name,
                crate::relocate::move_way(live)
            ),
        );
        self.executor.submit(request, now_ms, store)?;
        Ok(())
    }

    fn restore(
        &mut self,
        now_ms: i64,
        req: &OperatorRequest,
        host_name: &str,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let healthy = self
            .hosts
            .iter()
            .find(|h| h.id == req.host)
            .is_some_and(|h| h.monitors.iter().any(|m| self.healthy(m)));
        match platform.host_alive(host_name) {
            Ok(true) if healthy => {}
            Ok(true) => {
                return self.refuse(
                    now_ms,
                    req,
                    host_name,
                    format!(
                        "no monitor of host {host_name} is healthy yet: start its monitors first"
                    ),
                    store,
                );
            }
            Ok(false) => {
                return self.refuse(
                    now_ms,
                    req,
                    host_name,
                    format!("host {host_name} does not answer: power it on first"),
                    store,
                );
            }
            Err(e) => {
                tracing::warn!(
                    request = req.id,
                    "host_alive {host_name} failed ({e}): next scan"
                );
                return Ok(());
            }
        }
        let infos = match platform.hosts() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    request = req.id,
                    "cannot read the hosts for the restore ({e})"
                );
                return Ok(());
            }
        };
        store.set_host_maintenance(req.host, None, None)?;
        self.maintenance.remove(&req.host);
        // The VMs whose home it is, running on another host of the group.
        let mut todo: Vec<(hsdb::VmRow, VmSpec, HostId)> = Vec::new();
        let mut left = Vec::new();
        for h in self.hosts.clone() {
            if h.id == req.host {
                continue;
            }
            let Some(info) = infos.iter().find(|i| i.name == h.name) else {
                continue;
            };
            for (spec, status) in &info.vms {
                if !running(status.power) {
                    continue;
                }
                let Some(row) = store.vm(&spec.uuid)? else {
                    continue;
                };
                if row.home_host != Some(req.host) {
                    continue;
                }
                if self.is_busy(&row.uuid) {
                    left.push(format!(
                        "VM {}: being restarted",
                        super::vm::display_name(&row)
                    ));
                    continue;
                }
                let mut s = VmSpec::of_row(&row);
                if s.cpu_milli == 0 {
                    s.cpu_milli = spec.cpu_milli;
                }
                if s.memory_mb == 0 {
                    s.memory_mb = spec.memory_mb;
                }
                todo.push((row, s, h.id));
            }
        }
        let request = self.move_request(
            todo.iter()
                .map(|(row, s, from)| VmToPlace {
                    uuid: row.uuid,
                    name: s.name.clone(),
                    priority: row.priority,
                    cpu_milli: s.cpu_milli,
                    memory_mb: s.memory_mb,
                    home: row.home_host,
                    source: Some(*from),
                    exclude: Vec::new(),
                })
                .collect(),
            self.move_targets(&infos, None, Some(req.host)),
        );
        let plan = self.planner.plan(&request);
        let live = platform.live_migration();
        let mut active = Active {
            id: req.id,
            kind: req.kind,
            host: req.host,
            host_name: host_name.to_owned(),
            vms: Vec::new(),
            moved: Vec::new(),
            failed: Vec::new(),
            left,
            live,
            target_name: String::new(),
        };
        let mut moves = Vec::new();
        for (i, planned) in plan.vms.iter().enumerate() {
            let Some((row, spec, from)) = todo
                .iter()
                .find(|(r, _, _)| r.uuid == planned.uuid)
                .cloned()
            else {
                continue;
            };
            match planned.placement {
                Placement::Host { host, .. } if host == req.host => {
                    moves.push((row, spec, from, plan.explanation(&request, i).join("\n")));
                }
                Placement::Host { .. } => {}
                Placement::Nowhere(_) => active.left.push(format!(
                    "VM {}: stays on host {} — {}",
                    spec.name,
                    self.host_name(from),
                    plan.why(&request, i)
                )),
            }
        }
        let text = format!(
            "restore of host {host_name}: maintenance ended; {} VM(s) to return {}{}",
            moves.len(),
            crate::relocate::move_way(live),
            if active.left.is_empty() {
                String::new()
            } else {
                format!("; {} stay where they are", active.left.len())
            }
        );
        tracing::info!(request = req.id, "{text}");
        self.decide(
            now_ms,
            Subject::Host {
                id: req.host,
                name: host_name.to_owned(),
            },
            Verdict::Maintenance,
            text.clone(),
        );
        store.update_operator_request(req.id, RequestState::Running, &text, None, now_ms)?;
        let batch = if moves.is_empty() {
            0
        } else {
            self.executor
                .open_batch(u32::try_from(moves.len()).unwrap_or(u32::MAX))
        };
        for (row, spec, from, reasons) in moves {
            active.vms.push((row.uuid, spec.name.clone()));
            self.submit_move(
                now_ms,
                &row,
                spec,
                (from, req.host),
                RestartKind::Return,
                live,
                batch,
                reasons,
                store,
            )?;
        }
        self.active_request = Some(active);
        self.maintenance_maybe_done(now_ms, store)
    }

    /// A restart ended: when it is a move of the request being carried out, count it.
    /// Returns whether it was one (the caller then does nothing more with it).
    pub(super) fn maintenance_finished(
        &mut self,
        now_ms: i64,
        f: &Finished,
        store: &mut dyn HealthStore,
    ) -> Result<bool, FdeError> {
        let r = &f.restart;
        if !r.request.kind.is_planned() {
            return Ok(false);
        }
        let vm = r.request.spec.uuid;
        let name = r.request.spec.name.clone();
        let ok = matches!(r.outcome, Some(Outcome::Restarted));
        if ok {
            // Where it went: a MOVED discovery there and misses on the old host's
            // monitors are the move's (TC-13).
            self.vm_watch.remove(&vm);
            self.relocated.insert(vm, r.request.to.id);
        }
        if f.cleanup_owed {
            let why = r.notes.last().cloned().unwrap_or_default();
            self.owe_cleanup(
                now_ms,
                r.request.from.id,
                vm,
                Some(r.relocation_id),
                &why,
                store,
            )?;
        }
        let Some(a) = self.active_request.as_mut() else {
            return Ok(true);
        };
        if !a.vms.iter().any(|(u, _)| *u == vm) {
            return Ok(true);
        }
        match &r.outcome {
            Some(Outcome::Restarted) => a.moved.push(name.clone()),
            Some(Outcome::Failed { why, .. }) => a.failed.push(format!("VM {name}: {why}")),
            None => {}
        }
        let progress = format!(
            "{} of {} VM(s) moved {}{}; last: VM {name} {} host {}",
            a.moved.len(),
            a.vms.len(),
            crate::relocate::move_way(a.live),
            if a.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", a.failed.len())
            },
            if ok { "on" } else { "not moved to" },
            r.request.to.name
        );
        let id = a.id;
        self.decide(
            now_ms,
            Subject::Vm {
                uuid: vm,
                name: name.clone(),
            },
            Verdict::Maintenance,
            progress.clone(),
        );
        store.update_operator_request(id, RequestState::Running, &progress, None, now_ms)?;
        self.maintenance_maybe_done(now_ms, store)?;
        Ok(true)
    }

    fn maintenance_maybe_done(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let Some(a) = self.active_request.clone() else {
            return Ok(());
        };
        if a.moved.len() + a.failed.len() < a.vms.len() {
            return Ok(());
        }
        self.active_request = None;
        let way = crate::relocate::move_way(a.live);
        let mut problems = a.failed.clone();
        problems.extend(a.left.iter().cloned());
        let (state, kind, text) = match a.kind {
            RequestKind::Evacuate if problems.is_empty() => (
                RequestState::Done,
                EventKind::HostMaintenanceStarted,
                format!(
                    "host {} evacuated: {} VM(s) moved {way}; the host is in maintenance \
                     (hactl host restore {} ends it)",
                    a.host_name,
                    a.moved.len(),
                    a.host_name
                ),
            ),
            RequestKind::Evacuate => (
                RequestState::Failed,
                EventKind::HostMaintenanceRefused,
                format!(
                    "host {} evacuated in part: {} VM(s) moved {way}, still on it — {}; the \
                     host is in maintenance",
                    a.host_name,
                    a.moved.len(),
                    problems.join("; ")
                ),
            ),
            RequestKind::Restore if problems.is_empty() => (
                RequestState::Done,
                EventKind::HostMaintenanceEnded,
                format!(
                    "host {} restored: maintenance ended, {} VM(s) returned home {way}",
                    a.host_name,
                    a.moved.len()
                ),
            ),
            RequestKind::Restore => (
                RequestState::Failed,
                EventKind::HostMaintenanceEnded,
                format!(
                    "host {} restored in part: maintenance ended, {} VM(s) returned home {way}; \
                     not returned — {}",
                    a.host_name,
                    a.moved.len(),
                    problems.join("; ")
                ),
            ),
            RequestKind::Move if problems.is_empty() => (
                RequestState::Done,
                EventKind::VmMoveDone,
                format!(
                    "VM {} moved from host {} to host {} {way}",
                    a.vms.first().map_or("", |(_, n)| n.as_str()),
                    a.host_name,
                    a.target_name
                ),
            ),
            RequestKind::Move => (
                RequestState::Failed,
                EventKind::VmMoveRefused,
                format!(
                    "VM {} not moved from host {} to host {}: {}",
                    a.vms.first().map_or("", |(_, n)| n.as_str()),
                    a.host_name,
                    a.target_name,
                    problems.join("; ")
                ),
            ),
        };
        tracing::info!(request = a.id, "{text}");
        self.decide(
            now_ms,
            Subject::Host {
                id: a.host,
                name: a.host_name.clone(),
            },
            Verdict::Maintenance,
            text.clone(),
        );
        let vm = (a.kind == RequestKind::Move)
            .then(|| a.vms.first().map(|(u, _)| *u))
            .flatten();
        self.event(Event {
            kind,
            vm,
            hm: None,
            text: text.clone(),
            at: now_ms,
        });
        store.update_operator_request(a.id, state, &text, Some(&text), now_ms)?;
        Ok(())
    }

    /// A MOVE request refused: why, in the request, an event about the VM and a
    /// decision line.
    fn refuse_move(
        &mut self,
        now_ms: i64,
        req: &OperatorRequest,
        label: Option<&str>,
        why: String,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let label = match (label, req.vm) {
            (Some(l), _) => l.to_owned(),
            (None, Some(u)) => u.to_string(),
            (None, None) => String::new(),
        };
        let text = format!("move of VM {label} refused: {why}");
        tracing::warn!(request = req.id, "{text}");
        if let Some(uuid) = req.vm {
            self.decide(
                now_ms,
                Subject::Vm {
                    uuid,
                    name: label.clone(),
                },
                Verdict::Maintenance,
                text.clone(),
            );
        }
        self.event(Event {
            kind: EventKind::VmMoveRefused,
            vm: req.vm,
            hm: None,
            text: text.clone(),
            at: now_ms,
        });
        store.update_operator_request(req.id, RequestState::Refused, &text, Some(&text), now_ms)?;
        Ok(())
    }

    /// Carry out a MOVE request: plan again now (the state may have changed since the
    /// operator saw the plan) by the rules `relocate::plan_move` shows, and refuse with
    /// the reason when the VM cannot go there any more; else one planned move through
    /// the executor (per-VM lock, per-target cap, live migration where the platform
    /// can), recorded as a MOVE relocation with the plan's explanation as its reasons.
    fn move_vm(
        &mut self,
        now_ms: i64,
        req: &OperatorRequest,
        host_name: &str,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let Some(uuid) = req.vm else {
            return self.refuse_move(now_ms, req, None, "the request names no VM".into(), store);
        };
        let Some(row) = store.vm(&uuid)? else {
            return self.refuse_move(now_ms, req, None, "the VM is not in the HSDB".into(), store);
        };
        let label = super::vm::display_name(&row);
        if !row.managed {
            return self.refuse_move(
                now_ms,
                req,
                Some(&label),
                format!("VM {label} is not managed"),
                store,
            );
        }
        if self.is_busy(&uuid) {
            return self.refuse_move(
                now_ms,
                req,
                Some(&label),
                format!("VM {label} is being restarted or moved; try again when it is done"),
                store,
            );
        }
        let infos = match platform.hosts() {
            Ok(i) => i,
            Err(e) => {
                // No evidence either way: the request waits for the next scan.
                tracing::warn!(request = req.id, "cannot read the hosts for the move ({e})");
                return Ok(());
            }
        };
        // Where it runs now (it may have moved since the request was written).
        let from = self.hosts.iter().find(|h| {
            infos.iter().any(|i| {
                i.name == h.name
                    && i.vms.iter().any(|(s, st)| {
                        s.uuid == uuid
                            && matches!(
                                st.power,
                                PowerState::Running | PowerState::MigratingRunning
                            )
                    })
            })
        });
        let Some(from) = from.map(|h| h.id) else {
            return self.refuse_move(
                now_ms,
                req,
                Some(&label),
                format!(
                    "VM {label} is not running on a host of group {} (it was on host                      {host_name} when the move was asked)",
                    self.params.group
                ),
                store,
            );
        };
        let mut spec = VmSpec::of_row(&row);
        if let Some((s, _)) = infos
            .iter()
            .flat_map(|i| i.vms.iter())
            .find(|(s, _)| s.uuid == uuid)
        {
            if spec.cpu_milli == 0 {
                spec.cpu_milli = s.cpu_milli;
            }
            if spec.memory_mb == 0 {
                spec.memory_mb = s.memory_mb;
            }
            if spec.name.is_empty() {
                spec.name.clone_from(&s.name);
            }
        }
        let mut request = self.move_request(
            vec![VmToPlace {
                uuid,
                name: label.clone(),
                priority: row.priority,
                cpu_milli: spec.cpu_milli,
                memory_mb: spec.memory_mb,
                home: row.home_host,
                source: None,
                exclude: Vec::new(),
            }],
            self.move_targets(&infos, None, None),
        );
        request.names = super::place::names_of(&infos);
        if let Some(t) = req.target_host
            && let Err(why) =
                crate::relocate::check_target(&request, &self.params.group, &label, from, t)
        {
            return self.refuse_move(now_ms, req, Some(&label), why, store);
        }
        crate::relocate::shape_move_request(&mut request, from, req.target_host);
        let plan = self.planner.plan(&request);
        let live = platform.live_migration();
        let (to, lines) = match crate::relocate::conclude(&request, &plan, req.target_host, live) {
            Ok(x) => x,
            Err((why, lines)) => {
                let why = if lines.is_empty() {
                    why
                } else {
                    format!("{why} — {}", lines.join("; "))
                };
                return self.refuse_move(now_ms, req, Some(&label), why, store);
            }
        };
        let to_name = self.host_name(to);
        let from_name = self.host_name(from);
        let text = format!(
            "move of VM {label}: from host {from_name} to host {to_name} {}",
            crate::relocate::move_way(live)
        );
        tracing::info!(request = req.id, "{text}");
        store.update_operator_request(req.id, RequestState::Running, &text, None, now_ms)?;
        let mut active = Active {
            id: req.id,
            kind: req.kind,
            host: from,
            host_name: from_name,
            vms: vec![(uuid, label)],
            moved: Vec::new(),
            failed: Vec::new(),
            left: Vec::new(),
            live,
            target_name: to_name,
        };
        let batch = self.executor.open_batch(1);
        // The explanation's last line ("moved by …") is added by `submit_move`.
        let reasons = lines[..lines.len().saturating_sub(1)].join("\n");
        if let Err(e) = self.submit_move(
            now_ms,
            &row,
            spec,
            (from, to),
            RestartKind::Move,
            live,
            batch,
            reasons,
            store,
        ) {
            active.failed.push(format!("not submitted: {e}"));
            self.active_request = Some(active);
            return self.maintenance_maybe_done(now_ms, store);
        }
        self.active_request = Some(active);
        self.maintenance_maybe_done(now_ms, store)
    }
}
