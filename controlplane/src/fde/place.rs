//! From a decision to restart to running restarts: placement jobs, the planner, the
//! executor.
//!
//! A job waits here until the planner finds it a target; a VM that fits nowhere is
//! reported once (VM_RESTART_NO_HOST) and tried again at every scan — a host failure's
//! VMs stay until placed; a failed VM's job is dropped if its heartbeats resume. A
//! restart whose start failed on its target is placed again elsewhere, at most
//! [`MAX_TARGETS`] targets in all.

use std::collections::BTreeMap;

use hsdb::{HostId, VmRow};

use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::planner::request::host_load;
use crate::planner::{HostLoad, Placement, PlanRequest, VmToPlace};
use crate::platform::{HostInfo, Platform, PowerState, VmSpec};
use crate::relocate::{HostRef, Outcome, RestartKind, RestartRequest};

/// Targets tried for one VM before its restart is given up.
pub const MAX_TARGETS: usize = 3;

/// A VM decided for a restart, waiting for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementJob {
    /// The VM as the HSDB knows it.
    pub vm: VmRow,
    /// Its host when it was decided.
    pub from: HostId,
    /// Why.
    pub kind: RestartKind,
    /// The source host is confirmed gone.
    pub source_gone: bool,
    /// The batch its outcome counts in.
    pub batch: u64,
    /// Hosts it must not go to (the source, targets that failed to start it).
    pub exclude: Vec<HostId>,
    /// VM_RESTART_NO_HOST was written for it.
    pub no_host_reported: bool,
    /// A failed host's VM did not answer a ping: it may be restarted.
    pub ping_checked: bool,
}

impl Fde {
    pub(super) fn queue_job(
        &mut self,
        vm: VmRow,
        from: HostId,
        kind: RestartKind,
        source_gone: bool,
        batch: u64,
    ) {
        let exclude = if kind == RestartKind::AppRestart {
            Vec::new()
        } else {
            vec![from]
        };
        self.jobs.push(PlacementJob {
            vm,
            from,
            kind,
            source_gone,
            batch,
            exclude,
            no_host_reported: false,
            ping_checked: kind != RestartKind::HostFailure || !self.params.host_failure_ping_vms,
        });
    }

    /// Place the waiting jobs and submit their restarts. Returns the restarts submitted.
    pub(super) fn place(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<usize, FdeError> {
        // A failed VM whose heartbeats resumed (no longer watched) needs no restart.
        let resumed: Vec<PlacementJob> = self
            .jobs
            .iter()
            .filter(|j| j.kind == RestartKind::VmFailure && !self.vm_watch.contains_key(&j.vm.uuid))
            .cloned()
            .collect();
        for j in resumed {
            self.jobs.retain(|x| x.vm.uuid != j.vm.uuid);
            self.decide(
                now_ms,
                Subject::Vm {
                    uuid: j.vm.uuid,
                    name: super::vm::display_name(&j.vm),
                },
                Verdict::NoAction,
                "heartbeats resumed before a target was found: restart dropped".into(),
            );
            self.executor.batch_shortfall(j.batch, 1, now_ms, store)?;
        }
        if self.jobs.is_empty() && self.advice.is_empty() {
            return Ok(0);
        }
        let infos = match platform.hosts() {
            Ok(h) => h,
            Err(e) => {
                for (row, host, why) in std::mem::take(&mut self.advice) {
                    let plan = format!(
                        "no plan: cannot read the hosts' capacities ({e}); restart it on \
                         another host of group {} by hand, or set restart_policy=auto",
                        self.params.group
                    );
                    self.advise_now(now_ms, &row, host, &why, &plan);
                }
                for j in self.jobs.clone() {
                    self.decide(
                        now_ms,
                        Subject::Vm {
                            uuid: j.vm.uuid,
                            name: super::vm::display_name(&j.vm),
                        },
                        Verdict::ProbeFailed,
                        format!("cannot read the hosts' capacities ({e}): placed at the next scan"),
                    );
                }
                return Ok(0);
            }
        };
        if !self.advice.is_empty() {
            self.advise_with_plan(now_ms, &infos);
        }
        if self.jobs.is_empty() {
            return Ok(0);
        }
        let mut submitted = 0;
        // A failed host's VM that answers a ping is alive behind a partition (its host's
        // monitors silent, its hypervisor unreachable): restarting it would run it twice.
        // Pinged at every scan until it does not answer; a ping that fails is no
        // evidence either way: the VM waits.
        for i in 0..self.jobs.len() {
            if self.jobs[i].ping_checked {
                continue;
            }
            let uuid = self.jobs[i].vm.uuid;
            let subject = Subject::Vm {
                uuid,
                name: super::vm::display_name(&self.jobs[i].vm),
            };
            let from = self.host_name(self.jobs[i].from);
            match platform.ping(&uuid) {
                Ok(false) => self.jobs[i].ping_checked = true,
                Ok(true) => self.decide(
                    now_ms,
                    subject,
                    Verdict::Pingable,
                    format!(
                        "host {from} failed but its VM answers a ping: alive, not restarted; \
                         pinged again at the next scan"
                    ),
                ),
                Err(e) => self.decide(
                    now_ms,
                    subject,
                    Verdict::ProbeFailed,
                    format!(
                        "host {from} failed; ping of its VM failed ({e}): not restarted yet, \
                         pinged again at the next scan"
                    ),
                ),
            }
        }
        // Never a second copy: a VM the platform shows running on a live host other than
        // the one it failed on is not restarted (an earlier restart, or an operator, did it).
        let failed = self.failed_hosts();
        for job in self.jobs.clone() {
            if job.kind == RestartKind::AppRestart {
                continue;
            }
            let elsewhere = infos.iter().find(|h| {
                let id = self.hosts.iter().find(|v| v.name == h.name).map(|v| v.id);
                id.is_some_and(|id| id != job.from && !failed.contains(&id))
                    && h.vms.iter().any(|(s, st)| {
                        s.uuid == job.vm.uuid
                            && matches!(
                                st.power,
                                PowerState::Running | PowerState::MigratingRunning
                            )
                    })
            });
            let Some(info) = elsewhere else { continue };
            let Some(id) = self
                .hosts
                .iter()
                .find(|v| v.name == info.name)
                .map(|v| v.id)
            else {
                continue;
            };
            let name = info.name.clone();
            self.jobs.retain(|j| j.vm.uuid != job.vm.uuid);
            self.relocated.insert(job.vm.uuid, id);
            self.decide(
                now_ms,
                Subject::Vm {
                    uuid: job.vm.uuid,
                    name: super::vm::display_name(&job.vm),
                },
                Verdict::NoAction,
                format!("already running on host {name}: not restarted"),
            );
            self.executor.batch_shortfall(job.batch, 1, now_ms, store)?;
        }
        // Same-host restarts need no planner: the target is the VM's host, if it is up.
        for job in self.jobs.clone() {
            if job.kind != RestartKind::AppRestart {
                continue;
            }
            self.jobs.retain(|j| j.vm.uuid != job.vm.uuid);
            let spec = spec_of(&job.vm, &infos);
            // No plan: the target is the VM's own host; the reasons say so.
            let reasons = format!(
                "{}: to {} (its own host, cpu {} milli, memory {} MiB) — a critical \
                 application failed: restarted on the host it runs on before any relocation \
                 (seed 004 L13767-13771); no other host considered",
                super::vm::display_name(&job.vm),
                self.host_name(job.from),
                spec.cpu_milli,
                spec.memory_mb
            );
            self.submit(now_ms, &job, job.from, spec, Some(reasons), store)?;
            submitted += 1;
        }
        if self.jobs.is_empty() {
            return Ok(submitted);
        }
        let placing: Vec<hsdb::Uuid> = self.jobs.iter().map(|j| j.vm.uuid).collect();
        let hosts = self.host_loads(&infos, &placing);
        let request = PlanRequest {
            vms: self
                .jobs
                .iter()
                .filter(|j| j.ping_checked)
                .map(|j| {
                    let spec = spec_of(&j.vm, &infos);
                    let source = j.exclude.contains(&j.from).then_some(j.from);
                    VmToPlace {
                        uuid: j.vm.uuid,
                        name: super::vm::display_name(&j.vm),
                        priority: j.vm.priority,
                        cpu_milli: spec.cpu_milli,
                        memory_mb: spec.memory_mb,
                        home: j.vm.home_host,
                        source,
                        exclude: j
                            .exclude
                            .iter()
                            .copied()
                            .filter(|h| Some(*h) != source)
                            .collect(),
                    }
                })
                .collect(),
            hosts,
            failed,
            policies: self.policies.clone(),
            max_per_host: self.params.max_restarts_per_host,
            names: names_of(&infos),
        };
        let plan = self.planner.plan(&request);
        for (i, planned) in plan.vms.iter().enumerate() {
            let uuid = planned.uuid;
            let Some(pos) = self.jobs.iter().position(|j| j.vm.uuid == uuid) else {
                continue;
            };
            let subject = Subject::Vm {
                uuid,
                name: super::vm::display_name(&self.jobs[pos].vm),
            };
            match planned.placement {
                Placement::Host {
                    host: target,
                    cpu_milli,
                    memory_mb,
                    ..
                } => {
                    let job = self.jobs.remove(pos);
                    let mut spec = spec_of(&job.vm, &infos);
                    // Started with the planned size (flexible capacity away from home).
                    spec.cpu_milli = cpu_milli;
                    spec.memory_mb = memory_mb;
                    self.decide(
                        now_ms,
                        subject,
                        Verdict::Recover,
                        format!(
                            "{} planner: restart on host {} (cpu {} milli, memory {} MiB): {}",
                            self.planner.name(),
                            self.host_name(target),
                            spec.cpu_milli,
                            spec.memory_mb,
                            plan.why(&request, i)
                        ),
                    );
                    let reasons = plan.explanation(&request, i).join("\n");
                    self.submit(now_ms, &job, target, spec, Some(reasons), store)?;
                    submitted += 1;
                }
                Placement::Nowhere(_) => {
                    let text = format!(
                        "VM {} fits on no host of group {}: {}; tried again at every scan",
                        super::vm::display_name(&self.jobs[pos].vm),
                        self.params.group,
                        plan.why(&request, i)
                    );
                    self.decide(now_ms, subject, Verdict::NoHost, text.clone());
                    if !self.jobs[pos].no_host_reported {
                        self.jobs[pos].no_host_reported = true;
                        self.event(Event {
                            kind: EventKind::VmRestartNoHost,
                            vm: Some(uuid),
                            hm: None,
                            text,
                            at: now_ms,
                        });
                        // Its batch's summary counts it as not restarted; if it is placed
                        // later, it counts in a batch of its own.
                        let old = self.jobs[pos].batch;
                        self.jobs[pos].batch = self.executor.open_batch(1);
                        self.executor.batch_shortfall(old, 1, now_ms, store)?;
                    }
                }
            }
        }
        Ok(submitted)
    }

    /// Every host of the group as the planner sees it: capacity, load (with the restarts
    /// toward it), eligibility, what runs there and stays (`placing` moves).
    pub(super) fn host_loads(&self, infos: &[HostInfo], placing: &[hsdb::Uuid]) -> Vec<HostLoad> {
        self.hosts
            .iter()
            .map(|h| {
                let info = infos.iter().find(|i| i.name == h.name);
                let healthy = h.monitors.iter().any(|m| self.healthy(m));
                // What runs there and stays (anticollocation / collocation partners): what
                // the platform shows running, the restarts toward it and the VMs this
                // engine restarted there (a start the platform does not show yet).
                let mut running: Vec<hsdb::Uuid> = info
                    .map(|i| {
                        i.vms
                            .iter()
                            .filter(|(s, st)| {
                                matches!(
                                    st.power,
                                    PowerState::Running | PowerState::MigratingRunning
                                ) && !placing.contains(&s.uuid)
                            })
                            .map(|(s, _)| s.uuid)
                            .collect()
                    })
                    .unwrap_or_default();
                let coming = self
                    .executor
                    .toward(h.id)
                    .map(|r| r.request.spec.uuid)
                    .chain(
                        self.relocated
                            .iter()
                            .filter(|(_, at)| **at == h.id)
                            .map(|(vm, _)| *vm),
                    );
                for vm in coming {
                    if !placing.contains(&vm) && !running.contains(&vm) {
                        running.push(vm);
                    }
                }
                // Restarts in progress or queued toward it.
                let in_flight: Vec<(hsdb::Uuid, u32, u32)> = self
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
                    running,
                    &in_flight,
                );
                // Planned maintenance (fde/maintenance.rs): it receives no VM.
                if load.eligible && self.in_maintenance(h.id) {
                    load.eligible = false;
                    load.why_not = "in maintenance".to_owned();
                }
                load
            })
            .collect()
    }

    /// Advisory mode (gap 14): plan the restarts that would be made — all the VMs advised
    /// in this scan together, as a host failure's would be — and tell the plan; nothing
    /// is stopped or started.
    fn advise_with_plan(&mut self, now_ms: i64, infos: &[HostInfo]) {
        let advice = std::mem::take(&mut self.advice);
        let placing: Vec<hsdb::Uuid> = advice.iter().map(|(r, _, _)| r.uuid).collect();
        let failed = self.failed_hosts();
        let request = PlanRequest {
            vms: advice
                .iter()
                .map(|(row, host, _)| {
                    let spec = spec_of(row, infos);
                    VmToPlace {
                        uuid: row.uuid,
                        name: super::vm::display_name(row),
                        priority: row.priority,
                        cpu_milli: spec.cpu_milli,
                        memory_mb: spec.memory_mb,
                        home: row.home_host,
                        source: Some(*host),
                        exclude: Vec::new(),
                    }
                })
                .collect(),
            hosts: self.host_loads(infos, &placing),
            failed,
            policies: self.policies.clone(),
            max_per_host: self.params.max_restarts_per_host,
            names: names_of(infos),
        };
        let plan = self.planner.plan(&request);
        for (row, host, why) in advice {
            let Some(i) = plan.vms.iter().position(|p| p.uuid == row.uuid) else {
                continue;
            };
            let text = match plan.vms[i].placement {
                Placement::Host {
                    host: target,
                    cpu_milli,
                    memory_mb,
                    ..
                } => {
                    format!(
                        "the {} planner would restart it on host {} (cpu {cpu_milli} milli, memory \
                     {memory_mb} MiB): {}",
                        self.planner.name(),
                        self.host_name(target),
                        plan.why(&request, i)
                    ) + "; restart it there by hand, or set restart_policy=auto"
                }
                Placement::Nowhere(_) => format!(
                    "the {} planner finds it no host: {}; make room or change the policies \
                     before restarting it by hand",
                    self.planner.name(),
                    plan.why(&request, i)
                ),
            };
            self.advise_now(now_ms, &row, host, &why, &text);
        }
    }

    /// The monitors of host `id`, each with whether it is healthy now.
    pub(super) fn monitors_of(&self, id: HostId) -> Vec<(hsdb::Uuid, bool)> {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .map(|h| {
                h.monitors
                    .iter()
                    .map(|m| (m.uuid, self.healthy(m)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn submit(
        &mut self,
        now_ms: i64,
        job: &PlacementJob,
        target: HostId,
        spec: VmSpec,
        reasons: Option<String>,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let monitors = |id: HostId| self.monitors_of(id);
        let request = RestartRequest {
            spec,
            priority: job.vm.priority,
            kind: job.kind,
            from: HostRef {
                id: job.from,
                name: self.host_name(job.from),
            },
            to: HostRef {
                id: target,
                name: self.host_name(target),
            },
            source_gone: job.source_gone,
            source_monitors: monitors(job.from),
            target_monitors: monitors(target),
            batch: job.batch,
            live: false,
            reasons,
        };
        self.pending_exclude
            .insert(job.vm.uuid, job.exclude.clone());
        self.executor.submit(request, now_ms, store)?;
        Ok(())
    }

    /// Step every restart; handle the ones that ended. A restart placed again on another
    /// target is stepped in the same call.
    pub(super) fn step_restarts(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<usize, FdeError> {
        let mut ended = 0;
        for _ in 0..=MAX_TARGETS {
            if self.executor.restarts().is_empty() {
                break;
            }
            let (n, placed) = self.step_once(now_ms, store, platform)?;
            ended += n;
            if placed == 0 {
                break;
            }
        }
        Ok(ended)
    }

    fn step_once(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(usize, usize), FdeError> {
        let finished = self.executor.step(now_ms, store, platform)?;
        let n = finished.len();
        for f in finished {
            // A planned move (evacuate, restore) is the maintenance's (fde/maintenance.rs).
            if self.maintenance_finished(now_ms, &f, store)? {
                continue;
            }
            let r = f.restart;
            let vm = r.request.spec.uuid;
            let exclude = self.pending_exclude.remove(&vm).unwrap_or_default();
            let subject = Subject::Vm {
                uuid: vm,
                name: if r.request.spec.name.is_empty() {
                    vm.to_string()
                } else {
                    r.request.spec.name.clone()
                },
            };
            match r.outcome {
                Some(Outcome::Restarted) => {
                    // A restarted VM starts afresh: no HBoffset, no reported events (gap 8).
                    self.vm_watch.remove(&vm);
                    if r.request.to.id != r.request.from.id {
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
                    let notes = if r.notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.notes.join("; "))
                    };
                    self.decide(
                        now_ms,
                        subject,
                        Verdict::RestartEnded,
                        format!(
                            "restarted on host {} in {}{notes}",
                            r.request.to.name,
                            crate::params::show_ms(now_ms - r.submitted_ms)
                        ),
                    );
                }
                Some(Outcome::Failed {
                    why,
                    retry_elsewhere,
                }) => {
                    let mut exclude = exclude;
                    exclude.push(r.request.to.id);
                    let tried = exclude.iter().filter(|h| **h != r.request.from.id).count();
                    if retry_elsewhere && tried < MAX_TARGETS {
                        self.decide(
                            now_ms,
                            subject,
                            Verdict::RestartEnded,
                            format!("{why}; placing it on another host ({tried} tried)"),
                        );
                        let row = store.vm(&vm)?;
                        if let Some(row) = row {
                            self.jobs.push(PlacementJob {
                                vm: row,
                                from: r.request.from.id,
                                kind: r.request.kind,
                                source_gone: r.request.source_gone,
                                batch: r.request.batch,
                                exclude,
                                no_host_reported: false,
                                ping_checked: true,
                            });
                        } else {
                            self.executor
                                .batch_shortfall(r.request.batch, 1, now_ms, store)?;
                        }
                    } else {
                        if retry_elsewhere {
                            self.executor
                                .batch_shortfall(r.request.batch, 1, now_ms, store)?;
                        }
                        self.decide(
                            now_ms,
                            subject,
                            Verdict::RestartEnded,
                            format!("restart failed: {why}"),
                        );
                    }
                }
                None => {}
            }
        }
        let events = std::mem::take(&mut self.events);
        store.record_events(&events)?;
        let mut placed = 0;
        if !self.jobs.is_empty() {
            // Re-placements go out at once rather than at the next scan.
            placed = self.place(now_ms, store, platform)?;
            let events = std::mem::take(&mut self.events);
            store.record_events(&events)?;
        }
        Ok((n, placed))
    }
}

/// The names the platform gives the VMs it runs (the planner's explanations name a
/// partner by them).
pub(super) fn names_of(infos: &[HostInfo]) -> BTreeMap<hsdb::Uuid, String> {
    infos
        .iter()
        .flat_map(|h| h.vms.iter())
        .filter(|(s, _)| !s.name.is_empty())
        .map(|(s, _)| (s.uuid, s.name.clone()))
        .collect()
}

/// The VM's size for the planner and the target's `start`: the HSDB's when set, else
/// what the platform reports for it, else zero.
pub(super) fn spec_of(vm: &VmRow, infos: &[HostInfo]) -> VmSpec {
    let platform = infos
        .iter()
        .flat_map(|h| h.vms.iter())
        .find(|(s, _)| s.uuid == vm.uuid)
        .map(|(s, _)| s.clone());
    let name = if vm.name.is_empty() {
        platform
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    } else {
        vm.name.clone()
    };
    VmSpec {
        uuid: vm.uuid,
        name,
        cpu_milli: if vm.cpu_milli > 0 {
            vm.cpu_milli
        } else {
            platform.as_ref().map_or(0, |s| s.cpu_milli)
        },
        memory_mb: if vm.memory_mb > 0 {
            vm.memory_mb
        } else {
            platform.as_ref().map_or(0, |s| s.memory_mb)
        },
    }
}
