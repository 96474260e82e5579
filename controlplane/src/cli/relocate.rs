//! `hactl relocate --dry-run [HOST|VM …]` and `hactl verify [HOST_GROUP]`: plans against
//! the current state — the HSDB's hosts, monitors, VMs, parameters and policies, and the
//! configured platform's hosts, as `hactl run` would see them — printed with, per VM, the
//! target and why, and why not each other host. Nothing is moved or written.
//!
//! Restarts a running `hactl run` has in flight are not known here (they live in its
//! memory): a plan made during a relocation counts only what the platform shows.

use serde::Serialize;

use hsdb::{HostId, HostRecord, Hsdb, Uuid, VmRow};

use super::table::Table;
use super::{CliError, Format};
use crate::cli::config::PlatformConfig;
use crate::planner::request::{GroupView, Inputs};
use crate::planner::{Placement, Plan, PlanRequest, Planner, PolicyPlanner, rank};

/// What `relocate --dry-run` is asked to plan: names resolved.
#[derive(Debug, Default)]
struct Targets {
    group: Option<String>,
    hosts: Vec<HostId>,
    vms: Vec<Uuid>,
}

/// Everything the plans of one group are made from.
struct Ground {
    view: GroupView,
}

/// The state of group `group`, as `hactl run` would see it.
fn ground(
    db: &Hsdb,
    group: &str,
    platform: &PlatformConfig,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
) -> Result<Ground, CliError> {
    let mut driver =
        crate::daemon::open_platform(platform, db).map_err(|e| CliError::Failed(e.to_string()))?;
    ground_with(db, group, driver.as_mut(), profile, now_ms)
}

/// [`ground`] with a platform driver already open.
fn ground_with(
    db: &Hsdb,
    group: &str,
    driver: &mut dyn crate::platform::Platform,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
) -> Result<Ground, CliError> {
    let infos = driver.hosts().map_err(|e| {
        CliError::Failed(format!(
            "the {} platform cannot list its hosts: {e}",
            driver.name()
        ))
    })?;
    ground_on(db, group, &infos, profile, now_ms)
}

/// [`ground`] against the platform's hosts `infos`.
fn ground_on(
    db: &Hsdb,
    group: &str,
    infos: &[crate::platform::HostInfo],
    profile: Option<crate::params::Profile>,
    now_ms: i64,
) -> Result<Ground, CliError> {
    let params = super::modify::resolve(db, group, profile)?;
    let policies = crate::policy::load(db, group)
        .map_err(|e| CliError::Failed(format!("policies of group {group}: {e}")))?;
    let hosts = db.hosts()?;
    let hms = db.hms()?;
    let vms = db.vms()?;
    let mut view = GroupView::new(&Inputs {
        group,
        hosts: &hosts,
        hms: &hms,
        vms: &vms,
        infos,
        policies: &policies,
        now_ms,
        hm_silent_after_ms: params.hm_silent_after_ms,
        max_per_host: params.max_restarts_per_host,
    });
    // Planned maintenance (hactl host evacuate): such a host receives no VM.
    for (id, _) in db.hosts_in_maintenance()? {
        view.set_ineligible(id, "in maintenance");
    }
    Ok(Ground { view })
}

fn not_found(db: &Hsdb, what: &'static str, name: &str) -> CliError {
    CliError::NotFound {
        what,
        name: name.to_owned(),
        hsdb: db.path().to_owned(),
    }
}

/// Resolve `names`: a host (name or id), a VM (name or UUID), or `host:NAME` / `vm:NAME`
/// when a host and a VM share a name. All of one host group.
fn resolve(db: &Hsdb, names: &[String]) -> Result<Targets, CliError> {
    let hosts: Vec<HostRecord> = db.hosts()?;
    let vms: Vec<VmRow> = db.vms()?;
    let host_named = |n: &str| {
        hosts
            .iter()
            .find(|h| h.name == n || h.id.0.to_string() == n)
            .cloned()
    };
    let vm_named = |n: &str| {
        vms.iter()
            .find(|v| v.name == n || v.uuid.to_string() == n)
            .cloned()
    };
    let mut t = Targets::default();
    let mut groups: Vec<(String, String)> = Vec::new();
    for name in names {
        let (host, vm) = match name.split_once(':') {
            Some(("host", n)) => (
                Some(host_named(n).ok_or_else(|| not_found(db, "host", n))?),
                None,
            ),
            Some(("vm", n)) => (
                None,
                Some(vm_named(n).ok_or_else(|| not_found(db, "VM", n))?),
            ),
            _ => match (host_named(name), vm_named(name)) {
                (Some(_), Some(_)) => {
                    return Err(CliError::Usage(format!(
                        "{name:?} names a host and a VM: write host:{name} or vm:{name}"
                    )));
                }
                (None, None) => return Err(not_found(db, "host or VM", name)),
                pair => pair,
            },
        };
        if let Some(h) = host {
            groups.push((h.host_group.clone(), format!("host {}", h.name)));
            if !t.hosts.contains(&h.id) {
                t.hosts.push(h.id);
            }
        }
        if let Some(v) = vm {
            let Some(at) = v
                .current_host
                .and_then(|id| hosts.iter().find(|h| h.id == id))
            else {
                return Err(CliError::Failed(format!(
                    "VM {name} runs on no known host: nothing to plan for it"
                )));
            };
            groups.push((at.host_group.clone(), format!("VM {name}")));
            if !t.vms.contains(&v.uuid) {
                t.vms.push(v.uuid);
            }
        }
    }
    let mut distinct: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 1 {
        let which: Vec<String> = groups.iter().map(|(g, w)| format!("{w} in {g}")).collect();
        return Err(CliError::Usage(format!(
            "the names span host groups ({}): plan one group at a time",
            which.join(", ")
        )));
    }
    t.group = distinct.first().map(|g| (*g).to_owned());
    Ok(t)
}

/// One VM of a plan, as printed.
#[derive(Debug, Serialize)]
pub struct PlannedRow {
    /// UUID.
    pub vm: String,
    /// Name.
    pub name: String,
    /// Its priority.
    pub priority: &'static str,
    /// The rank it is placed at (its workgroup's highest priority).
    pub rank: &'static str,
    /// Where it runs now (the failed host).
    pub from: String,
    /// The target; `None` when placed nowhere.
    pub to: Option<String>,
    /// CPU it is started with (after flexible capacity).
    pub cpu_milli: Option<u32>,
    /// Memory it is started with.
    pub memory_mb: Option<u32>,
    /// Its wave on the target (`max_restarts_per_host`).
    pub wave: Option<u32>,
    /// Why this host, or why none.
    pub why: String,
    /// Why not each other host.
    pub why_not: Vec<WhyNot>,
    /// The decision in lines, as printed and as a relocation row keeps it
    /// (`Plan::explanation`).
    pub explanation: Vec<String>,
}

/// One other host and why not.
#[derive(Debug, Serialize)]
pub struct WhyNot {
    /// The host.
    pub host: String,
    /// Why not.
    pub reason: String,
}

const fn prio(p: hsdb::Priority) -> &'static str {
    match rank(p) {
        0 => "High",
        1 => "Medium",
        _ => "Low",
    }
}

fn rows(req: &PlanRequest, plan: &Plan, view: &GroupView) -> Vec<PlannedRow> {
    let name_of = |id: HostId| {
        view.hosts
            .iter()
            .find(|h| h.id == id)
            .map_or_else(|| id.to_string(), |h| h.name.clone())
    };
    plan.vms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v = &req.vms[p.vm];
            let (to, cpu, mem, wave) = match p.placement {
                Placement::Host {
                    host,
                    cpu_milli,
                    memory_mb,
                    wave,
                    ..
                } => (
                    Some(name_of(host)),
                    Some(cpu_milli),
                    Some(memory_mb),
                    Some(wave),
                ),
                Placement::Nowhere(_) => (None, None, None, None),
            };
            PlannedRow {
                vm: v.uuid.to_string(),
                name: if v.name.is_empty() {
                    v.uuid.to_string()
                } else {
                    v.name.clone()
                },
                priority: prio(v.priority),
                rank: prio(p.rank),
                from: v.source.map(name_of).unwrap_or_default(),
                to,
                cpu_milli: cpu,
                memory_mb: mem,
                wave,
                why: match p.placement {
                    Placement::Host { .. } => plan.why(req, i),
                    Placement::Nowhere(_) => plan.why_brief(req, i),
                },
                why_not: plan
                    .why_not(req, i)
                    .into_iter()
                    .map(|(host, reason)| WhyNot { host, reason })
                    .collect(),
                explanation: plan.explanation(req, i),
            }
        })
        .collect()
}

/// `relocate --dry-run` as JSON.
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// The host group.
    pub group: String,
    /// The hosts whose failure is planned.
    pub failed_hosts: Vec<String>,
    /// The VMs whose restart elsewhere is planned (besides the failed hosts' VMs).
    pub vms: Vec<String>,
    /// VMs placed.
    pub placed: usize,
    /// VMs placed nowhere.
    pub unplaced: usize,
    /// The plan, in restart order.
    pub plan: Vec<PlannedRow>,
}

fn policies_line(req: &PlanRequest) -> String {
    let p = &req.policies;
    let f = &p.flexible;
    format!(
        "policies: {} collocation(s), {} anticollocation(s), {} workgroup(s), {} host \
         exclusion list(s); flexible capacity cpu/memory High {}/{} %, Medium {}/{} %, Low \
         {}/{} %; max_restarts_per_host {}",
        p.collocations.len(),
        p.anticollocations.len(),
        p.workgroups.len(),
        p.exclusions.len(),
        f.high.cpu_pct,
        f.high.memory_pct,
        f.medium.cpu_pct,
        f.medium.memory_pct,
        f.low.cpu_pct,
        f.low.memory_pct,
        req.max_per_host
    )
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

/// `hactl relocate --dry-run NAMES…`.
pub fn dry_run(
    db: &Hsdb,
    names: &[String],
    platform: &PlatformConfig,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
    format: Format,
) -> Result<String, CliError> {
    if names.is_empty() {
        return Err(CliError::Usage(
            "name the hosts (their failure) or VMs (their restart elsewhere) to plan for; \
             `hactl verify` plans the loss of every host in turn"
                .into(),
        ));
    }
    let targets = resolve(db, names)?;
    let group = targets.group.clone().unwrap_or_default();
    let g = ground(db, &group, platform, profile, now_ms)?;
    dry_run_text(&targets, &g, format)
}

/// `hactl relocate --dry-run NAMES…` against the platform's hosts `infos` (tests
/// against a simulated platform compare it with what the engine stored).
#[cfg(test)]
pub(crate) fn dry_run_against(
    db: &Hsdb,
    names: &[String],
    infos: &[crate::platform::HostInfo],
    profile: Option<crate::params::Profile>,
    now_ms: i64,
    format: Format,
) -> Result<String, CliError> {
    let targets = resolve(db, names)?;
    let group = targets.group.clone().unwrap_or_default();
    let g = ground_on(db, &group, infos, profile, now_ms)?;
    dry_run_text(&targets, &g, format)
}

fn dry_run_text(targets: &Targets, g: &Ground, format: Format) -> Result<String, CliError> {
    let group = targets.group.clone().unwrap_or_default();
    let req = g
        .view
        .request_for(&targets.hosts, &targets.vms)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let plan = PolicyPlanner.plan(&req);
    let planned = rows(&req, &plan, &g.view);
    let host_name = |id: &HostId| {
        g.view
            .hosts
            .iter()
            .find(|h| h.id == *id)
            .map_or_else(|| id.to_string(), |h| h.name.clone())
    };
    let unplaced = plan.unplaced().count();
    let out = DryRun {
        group: group.clone(),
        failed_hosts: targets.hosts.iter().map(host_name).collect(),
        vms: targets
            .vms
            .iter()
            .filter_map(|u| req.vms.iter().find(|v| v.uuid == *u))
            .map(|v| v.name.clone())
            .collect(),
        placed: plan.vms.len() - unplaced,
        unplaced,
        plan: planned,
    };
    if format == Format::Json {
        return super::json(&out);
    }
    let mut what: Vec<String> = targets
        .hosts
        .iter()
        .map(|h| {
            format!(
                "the failure of host {} ({} managed VMs)",
                host_name(h),
                g.view.managed_on(*h).len()
            )
        })
        .collect();
    if !out.vms.is_empty() {
        what.push(format!(
            "the restart elsewhere of VM {}",
            out.vms.join(", ")
        ));
    }
    let mut text = format!(
        "dry run: nothing is moved. Plan for group {group}: {}\n{}\n\n",
        what.join(" and "),
        policies_line(&req)
    );
    if out.plan.is_empty() {
        text.push_str("No managed VM to place.\n");
        return Ok(text);
    }
    let mut t = Table::new(&[
        "VM", "PRIORITY", "FROM", "TO", "CPU", "MEMORY", "WAVE", "WHY",
    ]);
    for r in &out.plan {
        t.row(vec![
            r.name.clone(),
            if r.rank == r.priority {
                r.priority.to_owned()
            } else {
                format!("{} (as {})", r.priority, r.rank)
            },
            r.from.clone(),
            dash(r.to.clone()),
            dash(r.cpu_milli),
            dash(r.memory_mb),
            dash(r.wave),
            r.why.clone(),
        ]);
    }
    text.push_str(&t.render());
    text.push_str("\nEach VM: the target and why, why not each other host:\n");
    for r in &out.plan {
        for line in &r.explanation {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "\n{} of {} VMs placed, {} nowhere.\n",
        out.placed,
        out.plan.len(),
        out.unplaced
    ));
    Ok(text)
}

/// One host's loss, as `verify` found it.
#[derive(Debug, Serialize)]
pub struct HostLoss {
    /// The host.
    pub host: String,
    /// Its managed VMs.
    pub managed_vms: usize,
    /// Those that would find a place.
    pub placed: usize,
    /// Those that would not, and why.
    pub unplaced: Vec<PlannedRow>,
}

/// One group's verify.
#[derive(Debug, Serialize)]
pub struct GroupVerify {
    /// The group.
    pub group: String,
    /// Every host's loss.
    pub hosts: Vec<HostLoss>,
    /// The loss of any one host can be absorbed.
    pub absorbs_any_host_loss: bool,
}

/// The verification of group `group` against `driver`: the loss of each host in turn,
/// planned as `hactl run` would (used by `hactl verify` and by the deep discovery and
/// VERIFY activities).
pub fn verify_group(
    db: &Hsdb,
    group: &str,
    driver: &mut dyn crate::platform::Platform,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
) -> Result<GroupVerify, CliError> {
    let ground = ground_with(db, group, driver, profile, now_ms)?;
    let mut hosts = Vec::new();
    for h in &ground.view.hosts {
        let req = ground.view.host_failure(&[h.id]);
        let plan = PolicyPlanner.plan(&req);
        let unplaced: Vec<PlannedRow> = rows(&req, &plan, &ground.view)
            .into_iter()
            .filter(|r| r.to.is_none())
            .collect();
        hosts.push(HostLoss {
            host: h.name.clone(),
            managed_vms: req.vms.len(),
            placed: req.vms.len() - unplaced.len(),
            unplaced,
        });
    }
    Ok(GroupVerify {
        group: group.to_owned(),
        absorbs_any_host_loss: hosts.iter().all(|h| h.unplaced.is_empty()),
        hosts,
    })
}

impl GroupVerify {
    /// One line: whether the group absorbs the loss of any one host, else which hosts'
    /// loss leaves how many VMs without a place.
    pub fn summary(&self) -> String {
        if self.absorbs_any_host_loss {
            return format!(
                "verify: group {} can absorb the loss of any one host ({} hosts)",
                self.group,
                self.hosts.len()
            );
        }
        let short: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| !h.unplaced.is_empty())
            .map(|h| format!("{}: {} VM(s) without a place", h.host, h.unplaced.len()))
            .collect();
        format!(
            "verify: group {} cannot absorb the loss of every host: {}",
            self.group,
            short.join("; ")
        )
    }
}

/// `hactl verify [GROUP]`: `Ok` when every group can absorb the loss of any one host;
/// [`CliError::Findings`] (exit 7) with the same report when some cannot.
pub fn verify(
    db: &Hsdb,
    group: Option<&str>,
    platform: &PlatformConfig,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
    format: Format,
) -> Result<String, CliError> {
    let all = super::query::groups(db)?;
    let groups: Vec<String> = match group {
        Some(g) if all.contains_key(g) => vec![g.to_owned()],
        Some(g) => return Err(not_found(db, "host group", &format!("{g:?}"))),
        None => all.keys().cloned().collect(),
    };
    if groups.is_empty() {
        return Err(CliError::Failed("the HSDB has no host group".into()));
    }
    let mut driver =
        crate::daemon::open_platform(platform, db).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut report: Vec<GroupVerify> = Vec::new();
    for g in &groups {
        report.push(verify_group(db, g, driver.as_mut(), profile, now_ms)?);
    }
    let text = if format == Format::Json {
        super::json(&report)?
    } else {
        let mut text = String::new();
        for g in &report {
            text.push_str(&format!(
                "Group {}: the loss of each host in turn\n",
                g.group
            ));
            let mut t = Table::new(&["HOST", "MANAGED_VMS", "PLACED", "NOWHERE"]);
            for h in &g.hosts {
                t.row(vec![
                    h.host.clone(),
                    h.managed_vms.to_string(),
                    h.placed.to_string(),
                    h.unplaced.len().to_string(),
                ]);
            }
            text.push_str(&t.render());
            if g.absorbs_any_host_loss {
                text.push_str(&format!(
                    "Group {} can absorb the loss of any one host.\n\n",
                    g.group
                ));
                continue;
            }
            text.push_str("\nVMs that would find no place:\n");
            let mut t = Table::new(&["LOST_HOST", "VM", "PRIORITY", "WHY"]);
            for h in &g.hosts {
                for r in &h.unplaced {
                    t.row(vec![
                        h.host.clone(),
                        r.name.clone(),
                        r.priority.into(),
                        r.why.clone(),
                    ]);
                }
            }
            text.push_str(&t.render());
            for h in g.hosts.iter().filter(|h| !h.unplaced.is_empty()) {
                for r in &h.unplaced {
                    text.push_str(&format!("  {} (loss of {}):\n", r.name, h.host));
                    for w in &r.why_not {
                        text.push_str(&format!("    {}: {}\n", w.host, w.reason));
                    }
                }
            }
            let short: Vec<&str> = g
                .hosts
                .iter()
                .filter(|h| !h.unplaced.is_empty())
                .map(|h| h.host.as_str())
                .collect();
            text.push_str(&format!(
                "Group {} cannot absorb the loss of host {}.\n\n",
                g.group,
                short.join(", ")
            ));
        }
        text
    };
    if report.iter().all(|g| g.absorbs_any_host_loss) {
        Ok(text)
    } else {
        let short: Vec<&str> = report
            .iter()
            .filter(|g| !g.absorbs_any_host_loss)
            .map(|g| g.group.as_str())
            .collect();
        Err(CliError::Findings {
            report: text,
            summary: format!(
                "host group {} cannot absorb the loss of every host (exit 7)",
                short.join(", ")
            ),
        })
    }
}
