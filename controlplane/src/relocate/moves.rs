//! Moving one VM on an operator's request (`hactl vm move`, the dashboard's "move a VM",
//! docs/operators.md "Moving one VM"): the plan shown before anything is written
//! ([`plan_move`]), and the rules the leader applies again when it carries the MOVE
//! request out (fde/maintenance.rs), so both say the same thing.
//!
//! A move is planned like a planned maintenance move (seed-controlplane.md §4.3): the
//! group's policies without flexible capacity (a live migration moves the VM as it runs,
//! at its full size); the VM's current host is never the target; hosts in maintenance,
//! down or without a healthy monitor receive nothing; with a named target, only that
//! host may be chosen, and when it cannot take the VM the move is refused with that
//! host's reason (no room, an exclusion list, anticollocation).

use hsdb::{HostId, Hsdb, Uuid};

use crate::cli::config::{Config, PlatformConfig};
use crate::planner::request::{GroupView, Inputs};
use crate::planner::{FlexibleCapacity, Placement, Plan, PlanRequest, Planner, PolicyPlanner};

/// Why a host the operator did not name is not the target of a move to a named host.
pub const NOT_ASKED: &str = "not the host asked for";
/// Why the VM's current host is not the target.
pub const RUNS_THERE: &str = "the VM runs there now";

/// The plan for moving one VM (contract D of issue 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    /// The VM.
    pub vm: Uuid,
    /// Its name (its UUID when it has none).
    pub vm_name: String,
    /// Its host group.
    pub group: String,
    /// The host it runs on.
    pub from: HostId,
    /// That host's name.
    pub from_name: String,
    /// The target: always `Some` in a plan [`plan_move`] returns (a move that finds no
    /// target is refused, [`MoveError::Refused`]).
    pub to: Option<HostId>,
    /// The target's name.
    pub to_name: Option<String>,
    /// By live migration (the platform can), else by a stop and a start.
    pub live: bool,
    /// The decision in lines, as `hactl relocate --dry-run` prints a VM's (target and
    /// why, why not each other host) and a last line saying how it moves: what `hactl vm
    /// move` prints and what the MOVE relocation row keeps as its reasons.
    pub explanation: Vec<String>,
}

/// Why a VM cannot be moved (now).
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// No such VM or host.
    #[error("no {what} {name} in the HSDB")]
    NotFound {
        /// `VM` or `host`.
        what: &'static str,
        /// As given.
        name: String,
    },
    /// The move cannot be done: why, and the plan's lines when there was a plan.
    #[error("{why}")]
    Refused {
        /// One line.
        why: String,
        /// The plan's explanation when the planner was asked (empty otherwise).
        explanation: Vec<String>,
    },
    /// The HSDB failed.
    #[error(transparent)]
    Hsdb(#[from] hsdb::Error),
    /// The platform or the configuration failed.
    #[error("{0}")]
    Failed(String),
}

fn refused(why: impl Into<String>) -> MoveError {
    MoveError::Refused {
        why: why.into(),
        explanation: Vec::new(),
    }
}

/// Shape a one-VM plan request (its VM at index 0) into a move's: no flexible capacity,
/// the source host not a target (`RUNS_THERE`), with `to` only that host. The VM is no
/// failed host's (no source).
pub(crate) fn shape_move_request(req: &mut PlanRequest, from: HostId, to: Option<HostId>) {
    req.policies.flexible = FlexibleCapacity::default();
    for v in &mut req.vms {
        v.source = None;
    }
    for h in &mut req.hosts {
        let why = if h.id == from {
            Some(RUNS_THERE)
        } else if to.is_some_and(|t| t != h.id) {
            Some(NOT_ASKED)
        } else {
            None
        };
        if let (Some(why), true) = (why, h.eligible) {
            h.eligible = false;
            h.why_not = why.to_owned();
        }
    }
}

/// Check the named target before planning: refused with a precise reason when it is
/// not a host of the group, is the VM's host, or cannot take VMs (maintenance, down,
/// no healthy monitor: the host's `why_not`).
pub(crate) fn check_target(
    req: &PlanRequest,
    group: &str,
    vm_name: &str,
    from: HostId,
    to: HostId,
) -> Result<(), String> {
    let Some(h) = req.hosts.iter().find(|h| h.id == to) else {
        return Err(format!("host #{to} is not in host group {group}"));
    };
    if to == from {
        return Err(format!("VM {vm_name} already runs on host {}", h.name));
    }
    if !h.eligible {
        return Err(format!(
            "host {} cannot take VMs now: {}",
            h.name, h.why_not
        ));
    }
    Ok(())
}

/// The outcome of a move's plan (VM at index 0): the target and the explanation lines
/// (the last saying how it moves), or why not with the lines.
pub(crate) fn conclude(
    req: &PlanRequest,
    plan: &Plan,
    to: Option<HostId>,
    live: bool,
) -> Result<(HostId, Vec<String>), (String, Vec<String>)> {
    let mut lines = plan.explanation(req, 0);
    match plan.vms.first().map(|p| p.placement) {
        Some(Placement::Host { host, .. }) => {
            lines.push(format!("moved {}", super::move_way(live)));
            Ok((host, lines))
        }
        _ => {
            let why = match to.and_then(|t| req.hosts.iter().position(|h| h.id == t)) {
                Some(h) => format!(
                    "host {} cannot take it: {}",
                    req.hosts[h].name,
                    plan.verdict_text(req, 0, h)
                ),
                None => plan.why_brief(req, 0),
            };
            Err((why, lines))
        }
    }
}

/// Plan moving `vm` to `target` (or to the planner's best host) against the current
/// state — the HSDB's hosts, monitors, VMs, parameters and policies, and the configured
/// platform's hosts — as the leader will plan it again when it carries the request out.
/// Nothing is written.
pub fn plan_move(
    db: &mut Hsdb,
    config: &Config,
    vm: &Uuid,
    target: Option<HostId>,
    now_ms: i64,
) -> Result<MovePlan, MoveError> {
    plan_move_with(
        db,
        &config.platform,
        Some(crate::daemon::profile(config)),
        vm,
        target,
        now_ms,
    )
}

/// [`plan_move`] with the platform and the profile given apart (the CLI without a
/// configuration file).
pub fn plan_move_with(
    db: &Hsdb,
    platform: &PlatformConfig,
    profile: Option<crate::params::Profile>,
    vm: &Uuid,
    target: Option<HostId>,
    now_ms: i64,
) -> Result<MovePlan, MoveError> {
    let (row, vm_name) = vm_checks(db, vm, target)?;
    let mut driver =
        crate::daemon::open_platform(platform, db).map_err(|e| MoveError::Failed(e.to_string()))?;
    let infos = driver.hosts().map_err(|e| {
        MoveError::Failed(format!(
            "the {} platform cannot list its hosts: {e}",
            driver.name()
        ))
    })?;
    plan_move_on(
        db,
        &infos,
        driver.live_migration(),
        profile,
        (vm, &row, vm_name),
        target,
        now_ms,
    )
}

/// [`plan_move_with`] against the platform's hosts `infos` (`live`: it can
/// live-migrate), for a caller that has them (tests against a simulated platform).
#[cfg(test)]
pub(crate) fn plan_move_against(
    db: &Hsdb,
    infos: &[crate::platform::HostInfo],
    live: bool,
    profile: Option<crate::params::Profile>,
    vm: &Uuid,
    target: Option<HostId>,
    now_ms: i64,
) -> Result<MovePlan, MoveError> {
    let (row, vm_name) = vm_checks(db, vm, target)?;
    plan_move_on(
        db,
        infos,
        live,
        profile,
        (vm, &row, vm_name),
        target,
        now_ms,
    )
}

/// The VM's own checks: known, managed, no relocation in progress, no move request
/// open; a named target known to the HSDB.
fn vm_checks(
    db: &Hsdb,
    vm: &Uuid,
    target: Option<HostId>,
) -> Result<(hsdb::VmRow, String), MoveError> {
    let Some(row) = db.vm(vm)? else {
        return Err(MoveError::NotFound {
            what: "VM",
            name: vm.to_string(),
        });
    };
    let vm_name = if row.name.is_empty() {
        vm.to_string()
    } else {
        row.name.clone()
    };
    if !row.managed {
        return Err(refused(format!(
            "VM {vm_name} is not managed: the control plane moves only managed VMs (hactl \
             modify vm {vm_name} managed=yes)"
        )));
    }
    if let Some(r) = db
        .relocations(Some(vm), 1)?
        .into_iter()
        .find(|r| r.ended_ms.is_none())
    {
        return Err(refused(format!(
            "a relocation of VM {vm_name} is in progress (relocation {}, {}, phase {}): try \
             again when it has ended",
            r.id,
            r.kind.as_str(),
            r.phase
        )));
    }
    if let Some(r) = db
        .move_requests_of(vm, 1)?
        .into_iter()
        .find(|r| !r.state.ended())
    {
        return Err(refused(format!(
            "move request {} of VM {vm_name} is already {} (by {})",
            r.id,
            r.state.as_str(),
            r.requested_by
        )));
    }
    if let Some(t) = target
        && !db.hosts()?.iter().any(|h| h.id == t)
    {
        return Err(MoveError::NotFound {
            what: "host",
            name: t.to_string(),
        });
    }
    Ok((row, vm_name))
}

/// The plan against the platform's hosts `infos` (`live`: it can live-migrate), after
/// the VM's own checks.
pub(crate) fn plan_move_on(
    db: &Hsdb,
    infos: &[crate::platform::HostInfo],
    live: bool,
    profile: Option<crate::params::Profile>,
    (vm, row, vm_name): (&Uuid, &hsdb::VmRow, String),
    target: Option<HostId>,
    now_ms: i64,
) -> Result<MovePlan, MoveError> {
    let hosts = db.hosts()?;
    // Where it runs: the platform's word (running on a host of the HSDB).
    let running_on = infos.iter().find_map(|i| {
        i.vms
            .iter()
            .any(|(s, st)| {
                s.uuid == *vm
                    && matches!(
                        st.power,
                        crate::platform::PowerState::Running
                            | crate::platform::PowerState::MigratingRunning
                    )
            })
            .then(|| hosts.iter().find(|h| h.name == i.name))
            .flatten()
    });
    let Some(from) = running_on else {
        return Err(refused(format!(
            "VM {vm_name} is not running on any host the platform shows (state {}): only a \
             running VM is moved",
            row.state.as_str()
        )));
    };
    let group = from.host_group.clone();
    let params = crate::cli::modify::resolve(db, &group, profile)
        .map_err(|e| MoveError::Failed(e.to_string()))?;
    let policies = crate::policy::load(db, &group)
        .map_err(|e| MoveError::Failed(format!("policies of group {group}: {e}")))?;
    let hms = db.hms()?;
    let vms = db.vms()?;
    let mut view = GroupView::new(&Inputs {
        group: &group,
        hosts: &hosts,
        hms: &hms,
        vms: &vms,
        infos,
        policies: &policies,
        now_ms,
        hm_silent_after_ms: params.hm_silent_after_ms,
        max_per_host: params.max_restarts_per_host,
    });
    for (id, _) in db.hosts_in_maintenance()? {
        view.set_ineligible(id, "in maintenance");
    }
    let mut req = view
        .vm_restart(&[*vm])
        .map_err(|e| MoveError::Failed(e.to_string()))?;
    if let Some(t) = target {
        check_target(&req, &group, &vm_name, from.id, t).map_err(refused)?;
    }
    shape_move_request(&mut req, from.id, target);
    let plan = PolicyPlanner.plan(&req);
    let (to, explanation) = conclude(&req, &plan, target, live)
        .map_err(|(why, explanation)| MoveError::Refused { why, explanation })?;
    let to_name = req
        .hosts
        .iter()
        .find(|h| h.id == to)
        .map(|h| h.name.clone());
    Ok(MovePlan {
        vm: *vm,
        vm_name,
        group,
        from: from.id,
        from_name: from.name.clone(),
        to: Some(to),
        to_name,
        live,
        explanation,
    })
}
