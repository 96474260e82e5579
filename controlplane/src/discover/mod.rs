//! Discovery from the platform (docs/operators.md "Discovery"): what hosts and VMs the
//! platform driver has, written into the HSDB, and the activities that carry it out.
//!
//! - [`discover`]: one quick or deep discovery of a host group (or of every platform
//!   host): each host's inventory from the driver ([`Platform::inventory`]), then one
//!   HSDB transaction ([`Hsdb::apply_discovery`]) with the rules of docs/hsdb.md §11; a
//!   deep one ends with the verification (seed 004 L4607-4609: "Deep Discovery means
//!   that discovery is followed by a complete verification step").
//! - [`run_activity`]: an `activity` row carried out — progress written after each host,
//!   DONE with the summary or FAILED with the reason (and an ACTIVITY_FAILED event).
//!   `hactl discover` and `hactl run`'s discovery thread ([`worker`]) both use it.
//! - [`config`]: the `[discovery]` section.
//!
//! Nothing is written before every host's answer has been read and checked: virsh output
//! that does not parse fails that host's inventory (the host is then reported as not
//! answering and its VMs are not called vanished), and the HSDB write is one
//! transaction.

pub mod config;
pub mod worker;

use std::collections::BTreeSet;

use hsdb::{ActivityKind, DiscoveryChange, DiscoveryReport, Found, FoundHost, FoundVm, Hsdb, Uuid};
use serde::Serialize;

use crate::cli::relocate::{GroupVerify, verify_group};
use crate::params::Profile;
use crate::platform::Platform;

/// How much a discovery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The inventory: hosts, the VMs defined on each with their states; the size only of
    /// VMs new to the HSDB (seed: hourly, seed 004 L4475).
    Quick,
    /// Also every VM's details (its size), then the verification of the group (seed:
    /// daily, seed 004 L4475, L4607-4609).
    Deep,
}

impl Depth {
    /// The activity kind it is recorded as.
    pub const fn kind(self) -> ActivityKind {
        match self {
            Depth::Quick => ActivityKind::QuickDiscovery,
            Depth::Deep => ActivityKind::DeepDiscovery,
        }
    }

    /// `quick` or `deep`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Depth::Quick => "quick",
            Depth::Deep => "deep",
        }
    }
}

/// What to discover.
#[derive(Debug, Clone)]
pub struct Request {
    /// The host group (its hosts that the platform serves); `None`: every platform host.
    pub group: Option<String>,
    /// Quick or deep.
    pub depth: Depth,
    /// New VMs are managed at once.
    pub manage_new: bool,
    /// The configuration's profile (the verification plans with the parameters).
    pub profile: Option<Profile>,
}

/// Why a discovery failed (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The HSDB has no host in that group.
    #[error("host group {group:?} has no host in the HSDB")]
    NoSuchGroup {
        /// The group.
        group: String,
    },
    /// None of the group's hosts is one the platform driver serves.
    #[error(
        "the {driver} platform serves none of host group {group}'s hosts ({hosts}); its hosts: {served}"
    )]
    NotOnPlatform {
        /// The driver.
        driver: &'static str,
        /// The group.
        group: String,
        /// The group's hosts.
        hosts: String,
        /// The platform's hosts.
        served: String,
    },
    /// The driver cannot stand for a platform to discover.
    #[error(
        "the {driver} platform only mirrors the HSDB: there is nothing to discover (configure \
         [platform] driver = \"libvirt\")"
    )]
    CannotDiscover {
        /// The driver.
        driver: &'static str,
    },
    /// The platform.
    #[error("the platform failed: {0}")]
    Platform(String),
    /// No host answered.
    #[error("no host answered: {0}")]
    NoAnswer(String),
    /// The HSDB.
    #[error(transparent)]
    Hsdb(#[from] hsdb::Error),
    /// The verification of a deep discovery.
    #[error("verification: {0}")]
    Verify(String),
    /// The activity was ended from outside while it ran (found abandoned).
    #[error("stopped: {0}")]
    Stopped(String),
}

/// A host that did not answer, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostProblem {
    /// The host.
    pub host: String,
    /// The driver's error (names the command and the bad value).
    pub why: String,
}

/// One change, for the report and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeLine {
    /// `new_vm`, `vm_changed`, `vanished`, `reappeared`, `host_added`, `host_changed`.
    pub change: &'static str,
    /// The VM's UUID (VM changes).
    pub uuid: Option<String>,
    /// The VM's or host's name.
    pub name: String,
    /// The host concerned (where the VM is or was).
    pub host: Option<String>,
    /// What: `unmanaged`, `host host-a → host-b`, ….
    pub detail: String,
}

/// What one discovery found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The group, `None` for every platform host.
    pub group: Option<String>,
    /// `quick` or `deep`.
    pub depth: &'static str,
    /// The hosts that answered.
    pub hosts_answered: Vec<String>,
    /// The hosts that did not (their VMs were not checked, none is called vanished).
    pub hosts_unreachable: Vec<HostProblem>,
    /// The group's hosts the platform driver does not serve.
    pub hosts_not_on_platform: Vec<String>,
    /// VMs found.
    pub vms_found: usize,
    /// Every change written.
    pub changes: Vec<ChangeLine>,
    /// What was noticed and left alone (an operator's value kept, a VM skipped).
    pub notes: Vec<String>,
    /// The verification (deep discovery): one line per group.
    pub verify: Vec<String>,
}

impl Outcome {
    fn count(&self, change: &str) -> usize {
        self.changes.iter().filter(|c| c.change == change).count()
    }

    /// One line: what it found.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} discovery of {}: {} of {} hosts answered, {} VMs; {} new, {} changed, {} \
             vanished, {} found again, {} hosts added",
            self.depth,
            self.group.as_deref().map_or_else(
                || "every platform host".to_owned(),
                |g| format!("host group {g}")
            ),
            self.hosts_answered.len(),
            self.hosts_answered.len() + self.hosts_unreachable.len(),
            self.vms_found,
            self.count("new_vm"),
            self.count("vm_changed") + self.count("host_changed"),
            self.count("vanished"),
            self.count("reappeared"),
            self.count("host_added"),
        );
        if !self.notes.is_empty() {
            s.push_str(&format!(", {} notes", self.notes.len()));
        }
        for p in &self.hosts_unreachable {
            s.push_str(&format!("; {} did not answer: {}", p.host, p.why));
        }
        for v in &self.verify {
            s.push_str(&format!("; {v}"));
        }
        s
    }

    /// The report `hactl discover` prints.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let mut t = crate::cli::table::Table::new(&["CHANGE", "NAME", "UUID", "HOST", "DETAIL"]);
        for c in &self.changes {
            t.row(vec![
                c.change.to_owned(),
                c.name.clone(),
                c.uuid.clone().unwrap_or_else(|| "-".to_owned()),
                c.host.clone().unwrap_or_else(|| "-".to_owned()),
                c.detail.clone(),
            ]);
        }
        if self.changes.is_empty() {
            text.push_str("No change.\n");
        } else {
            text.push_str(&t.render());
        }
        if !self.notes.is_empty() {
            text.push_str("Noticed, left alone:\n");
            for n in &self.notes {
                text.push_str(&format!("  {n}\n"));
            }
        }
        if !self.hosts_not_on_platform.is_empty() {
            text.push_str(&format!(
                "Not served by the platform driver (not discovered): {}\n",
                self.hosts_not_on_platform.join(", ")
            ));
        }
        text.push_str(&self.summary());
        text.push('\n');
        text
    }
}

fn change_line(c: &DiscoveryChange) -> ChangeLine {
    match c {
        DiscoveryChange::HostAdded {
            host,
            id,
            cpu_milli,
            memory_mb,
        } => ChangeLine {
            change: "host_added",
            uuid: None,
            name: host.clone(),
            host: Some(host.clone()),
            detail: format!(
                "id {id}, {cpu_milli} milli-CPU, {memory_mb} MiB, no host group: \
                 `hactl modify host {host} host_group=GROUP`"
            ),
        },
        DiscoveryChange::HostUpdated { host, what } => ChangeLine {
            change: "host_changed",
            uuid: None,
            name: host.clone(),
            host: Some(host.clone()),
            detail: what.join(", "),
        },
        DiscoveryChange::VmNew {
            vm,
            name,
            host,
            managed,
        } => ChangeLine {
            change: "new_vm",
            uuid: Some(vm.to_string()),
            name: name.clone(),
            host: host.clone(),
            detail: if *managed {
                "managed (manage_new)".to_owned()
            } else {
                "unmanaged".to_owned()
            },
        },
        DiscoveryChange::VmUpdated { vm, name, what } => ChangeLine {
            change: "vm_changed",
            uuid: Some(vm.to_string()),
            name: name.clone(),
            host: None,
            detail: what.join(", "),
        },
        DiscoveryChange::VmVanished {
            vm,
            name,
            last_host,
            managed,
        } => ChangeLine {
            change: "vanished",
            uuid: Some(vm.to_string()),
            name: name.clone(),
            host: last_host.clone(),
            detail: format!(
                "{}: kept, not relocated",
                if *managed { "managed" } else { "unmanaged" }
            ),
        },
        DiscoveryChange::VmReappeared { vm, name, host } => ChangeLine {
            change: "reappeared",
            uuid: Some(vm.to_string()),
            name: name.clone(),
            host: host.clone(),
            detail: "found again".to_owned(),
        },
    }
}

/// Progress of a discovery: called with the HSDB and each line; an `Err` stops it
/// (nothing written).
pub type Progress<'a> = dyn FnMut(&mut Hsdb, &str) -> Result<(), String> + 'a;

/// One discovery (see the module documentation). `now` gives the time of the write.
pub fn discover(
    db: &mut Hsdb,
    platform: &mut dyn Platform,
    req: &Request,
    now: &dyn Fn() -> i64,
    progress: &mut Progress<'_>,
) -> Result<Outcome, DiscoverError> {
    if !platform.can_discover() {
        return Err(DiscoverError::CannotDiscover {
            driver: platform.name(),
        });
    }
    let served = platform
        .host_names()
        .map_err(|e| DiscoverError::Platform(e.to_string()))?;
    let hosts = db.hosts()?;
    let (scope, not_on_platform): (Vec<String>, Vec<String>) = match &req.group {
        Some(g) => {
            let members: Vec<String> = hosts
                .iter()
                .filter(|h| &h.host_group == g)
                .map(|h| h.name.clone())
                .collect();
            if members.is_empty() {
                return Err(DiscoverError::NoSuchGroup { group: g.clone() });
            }
            let (on, off): (Vec<String>, Vec<String>) =
                members.into_iter().partition(|m| served.contains(m));
            if on.is_empty() {
                return Err(DiscoverError::NotOnPlatform {
                    driver: platform.name(),
                    group: g.clone(),
                    hosts: off.join(", "),
                    served: served.join(", "),
                });
            }
            (on, off)
        }
        None => (served.clone(), Vec::new()),
    };
    for h in &not_on_platform {
        tracing::warn!(host = %h, group = ?req.group, "discovery: host not served by the platform driver; not discovered");
    }
    // Quick: sizes only of VMs the HSDB has no size for.
    let sized: BTreeSet<Uuid> = db
        .vms()?
        .into_iter()
        .filter(|v| v.cpu_milli > 0 && v.memory_mb > 0)
        .map(|v| v.uuid)
        .collect();
    let known = |u: &Uuid| sized.contains(u);
    let deep = req.depth == Depth::Deep;
    let mut found = Found {
        hosts: Vec::new(),
        manage_new: req.manage_new,
    };
    let mut unreachable = Vec::new();
    let total = scope.len();
    for (i, host) in scope.iter().enumerate() {
        progress(db, &format!("{}/{total} hosts: reading {host}", i + 1))
            .map_err(DiscoverError::Stopped)?;
        match platform.inventory(host, deep, &known) {
            Ok(inv) => {
                tracing::info!(host = %host, vms = inv.vms.len(), deep, "discovery: host inventory read");
                found.hosts.push(FoundHost {
                    name: inv.host,
                    cpu_milli: inv.cpu_milli,
                    memory_mb: inv.memory_mb,
                    vms: inv
                        .vms
                        .into_iter()
                        .map(|v| FoundVm {
                            uuid: v.uuid,
                            name: v.name,
                            power: v.status.power.as_str().to_owned(),
                            running: v.status.power == crate::platform::PowerState::Running,
                            size: v.size,
                        })
                        .collect(),
                });
            }
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "discovery: host did not answer; its VMs are not checked and none is called vanished");
                unreachable.push(HostProblem {
                    host: host.clone(),
                    why: e.to_string(),
                });
            }
        }
    }
    if found.hosts.is_empty() {
        let all: Vec<String> = unreachable
            .iter()
            .map(|p| format!("{}: {}", p.host, p.why))
            .collect();
        return Err(DiscoverError::NoAnswer(all.join("; ")));
    }
    progress(
        db,
        &format!(
            "{} of {total} hosts answered: writing what was found",
            found.hosts.len()
        ),
    )
    .map_err(DiscoverError::Stopped)?;
    let report: DiscoveryReport = db.apply_discovery(&found, now())?;
    for c in &report.changes {
        tracing::info!(group = ?req.group, "discovery: {}", c.describe());
    }
    for n in &report.notes {
        tracing::info!(group = ?req.group, "discovery, left alone: {n}");
    }
    let mut outcome = Outcome {
        group: req.group.clone(),
        depth: req.depth.as_str(),
        hosts_answered: found.hosts.iter().map(|h| h.name.clone()).collect(),
        hosts_unreachable: unreachable,
        hosts_not_on_platform: not_on_platform,
        vms_found: report.vms,
        changes: report.changes.iter().map(change_line).collect(),
        notes: report.notes,
        verify: Vec::new(),
    };
    if deep {
        let groups: Vec<String> = match &req.group {
            Some(g) => vec![g.clone()],
            None => {
                let mut gs: Vec<String> = db
                    .hosts()?
                    .into_iter()
                    .filter(|h| {
                        outcome.hosts_answered.contains(&h.name) && !h.host_group.is_empty()
                    })
                    .map(|h| h.host_group)
                    .collect();
                gs.sort();
                gs.dedup();
                gs
            }
        };
        for g in groups {
            progress(db, &format!("verifying host group {g}")).map_err(DiscoverError::Stopped)?;
            let v = verify(db, &g, platform, req.profile, now())?;
            outcome.verify.push(v.summary());
        }
    }
    Ok(outcome)
}

/// The verification of `group` (`hactl verify`'s, planned against `platform`).
pub fn verify(
    db: &Hsdb,
    group: &str,
    platform: &mut dyn Platform,
    profile: Option<Profile>,
    now_ms: i64,
) -> Result<GroupVerify, DiscoverError> {
    verify_group(db, group, platform, profile, now_ms)
        .map_err(|e| DiscoverError::Verify(e.to_string()))
}

/// What an activity run ended with.
#[derive(Debug)]
pub enum ActivityOutcome {
    /// A discovery.
    Discovery(Outcome),
    /// A verification.
    Verify(GroupVerify),
}

impl ActivityOutcome {
    /// The summary stored in the activity row.
    pub fn summary(&self) -> String {
        match self {
            ActivityOutcome::Discovery(o) => o.summary(),
            ActivityOutcome::Verify(v) => v.summary(),
        }
    }
}

/// Who carries out activity `id` and how: everything [`run_activity`] needs.
pub struct ActivityRun<'a> {
    /// The activity.
    pub id: i64,
    /// Its kind.
    pub kind: ActivityKind,
    /// Its group; `""` for every platform host (a discovery without a group).
    pub group: &'a str,
    /// New VMs managed at once.
    pub manage_new: bool,
    /// The configuration's profile.
    pub profile: Option<Profile>,
    /// Asked between hosts: `Some(why)` stops the activity (FAILED with why), nothing
    /// written (`hactl run` stopping).
    pub stop: Option<&'a dyn Fn() -> Option<String>>,
}

/// Carry out activity `run.id` (RUNNING): the discovery or verification, its progress
/// written after each host, then DONE with the summary or FAILED with the reason (and an
/// ACTIVITY_FAILED event). Returns what it found, or the error it was failed with.
pub fn run_activity(
    db: &mut Hsdb,
    platform: &mut dyn Platform,
    run: &ActivityRun<'_>,
    now: &dyn Fn() -> i64,
) -> Result<ActivityOutcome, DiscoverError> {
    let group = (!run.group.is_empty()).then(|| run.group.to_owned());
    tracing::info!(activity = run.id, kind = %run.kind, group = ?group, "activity: carrying it out");
    let result = match run.kind {
        ActivityKind::QuickDiscovery | ActivityKind::DeepDiscovery => {
            let depth = if run.kind == ActivityKind::DeepDiscovery {
                Depth::Deep
            } else {
                Depth::Quick
            };
            let req = Request {
                group,
                depth,
                manage_new: run.manage_new,
                profile: run.profile,
            };
            // Each line is the row's progress and heartbeat; a row no longer RUNNING (found
            // abandoned) or a stop request ends the discovery before it writes anything.
            let id = run.id;
            let stop = run.stop;
            let mut progress = |db: &mut Hsdb, line: &str| -> Result<(), String> {
                if let Some(why) = stop.and_then(|s| s()) {
                    return Err(why);
                }
                db.activity_progress(id, line, now())
                    .map_err(|e| format!("activity {id} is no longer running ({e})"))
            };
            let r = discover(db, platform, &req, now, &mut progress);
            r.map(ActivityOutcome::Discovery)
        }
        ActivityKind::Verify => {
            if run.group.is_empty() {
                Err(DiscoverError::Verify(
                    "a verification needs a host group".to_owned(),
                ))
            } else {
                db.activity_progress(
                    run.id,
                    &format!("verifying host group {}", run.group),
                    now(),
                )
                .map_err(|e| DiscoverError::Stopped(e.to_string()))?;
                verify(db, run.group, platform, run.profile, now()).map(ActivityOutcome::Verify)
            }
        }
    };
    match &result {
        Ok(outcome) => {
            let summary = outcome.summary();
            tracing::info!(activity = run.id, "activity done: {summary}");
            if let Err(e) = db.finish_activity(run.id, true, &summary, now()) {
                tracing::warn!(activity = run.id, "activity: its end not written: {e}");
            }
        }
        Err(e) => {
            let why = e.to_string();
            tracing::warn!(activity = run.id, "activity failed: {why}");
            let _ = db.finish_activity(run.id, false, &why, now());
            let event = crate::events::Event {
                kind: crate::events::EventKind::ActivityFailed,
                vm: None,
                hm: None,
                text: format!(
                    "{} of {} (activity {}) failed: {why}",
                    run.kind,
                    if run.group.is_empty() {
                        "every platform host"
                    } else {
                        run.group
                    },
                    run.id
                ),
                at: now(),
            };
            if let Err(e) = crate::events::record(db, &[event]) {
                tracing::warn!(activity = run.id, "ACTIVITY_FAILED not written: {e}");
            }
        }
    }
    result
}

#[cfg(test)]
mod tests;
