//! One host group's Failure Detection Engine as the daemon's loop drives it: parameters
//! re-read from the HSDB, the engine ticked, what it did copied into the group's status.

use std::time::{Duration, Instant};

use hsdb::{HmState, Hsdb};

use super::runner::GroupEngine;
use super::status::{Decision, GroupStatus, InFlight, KEPT_DECISIONS, RequestSummary};
use crate::fde::{Fde, Request};
use crate::params::{self, GroupParams, Profile};
use crate::platform::Platform;

/// [`Fde`] behind the loop's [`GroupEngine`].
pub struct FdeEngine {
    fde: Fde,
    group: String,
    /// The configuration file's profile: the system-level default.
    config_profile: Option<Profile>,
    /// When the parameters were last read.
    params_read: Option<Instant>,
    /// When the engine last scanned (monotonic).
    last_scan: Instant,
    /// The problems of the policies last loaded (logged when they change).
    policy_problems: Vec<String>,
    /// The policies are to be loaded at the next tick (at start, and after a failed
    /// load).
    policies_due: bool,
}

/// The settings of `group` with the configuration's profile as the system default.
pub fn resolve(
    db: &Hsdb,
    group: &str,
    config_profile: Option<Profile>,
) -> Result<GroupParams, String> {
    let settings = crate::cli::modify::settings(db).map_err(|e| e.to_string())?;
    GroupParams::resolve_from(
        group,
        config_profile.unwrap_or(Profile::Standard),
        &settings,
    )
    .map_err(|e| format!("parameters of {group}: {e}"))
}

/// Parameters below the seed's ranges, for `status` and the start-up warning.
pub fn below_seed(p: &GroupParams) -> Vec<String> {
    let below: Vec<params::Key> = p.below_seed_keys().collect();
    p.entries()
        .into_iter()
        .filter(|(k, _, _)| below.contains(k))
        .map(|(k, v, level)| {
            format!(
                "{}: {k} = {v} ({level}; profile {})",
                p.group,
                p.profile.as_str()
            )
        })
        .collect()
}

impl FdeEngine {
    /// An engine for `group` with the parameters the HSDB and the configuration give.
    pub fn new(
        db: &Hsdb,
        group: &str,
        config_profile: Option<Profile>,
    ) -> Result<FdeEngine, String> {
        let params = resolve(db, group, config_profile)?;
        Ok(FdeEngine {
            fde: Fde::new(params),
            group: group.to_owned(),
            config_profile,
            params_read: Some(Instant::now()),
            last_scan: Instant::now(),
            policy_problems: Vec::new(),
            policies_due: true,
        })
    }

    /// The placement policies in force.
    pub fn policies(&self) -> &crate::planner::Policies {
        self.fde.policies()
    }

    /// Load the group's placement policies from the HSDB and hand them to the engine,
    /// saying what changed; their problems go to the log (when they change) and the
    /// status. A failed load keeps the policies in force and is reported.
    fn refresh_policies(&mut self, db: &Hsdb, now_ms: i64, status: &mut GroupStatus) {
        self.policies_due = false;
        match crate::policy::load_checked(db, &self.group) {
            Ok(loaded) => {
                let changes = crate::policy::describe_change(self.fde.policies(), &loaded.policies);
                if !changes.is_empty() {
                    tracing::info!(
                        host_group = %self.group,
                        "placement policies changed; the next plan uses them: {}",
                        changes.join("; ")
                    );
                    self.fde.set_policies(loaded.policies.clone());
                }
                if loaded.problems != self.policy_problems {
                    for p in loaded
                        .problems
                        .iter()
                        .filter(|p| !self.policy_problems.contains(p))
                    {
                        tracing::warn!(host_group = %self.group, "policy problem: {p}");
                    }
                    if loaded.problems.is_empty() {
                        tracing::info!(host_group = %self.group, "the policies have no problem any more");
                    }
                    self.policy_problems = loaded.problems.clone();
                }
                let p = &loaded.policies;
                let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                status.policies = super::status::PolicyStatus {
                    collocations: count(p.collocations.len()),
                    anticollocations: count(p.anticollocations.len()),
                    workgroups: count(p.workgroups.len()),
                    vms_with_exclusions: count(p.exclusions.len()),
                    loaded_ms: now_ms,
                    problems: loaded.problems,
                    last_error: None,
                };
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(host_group = %self.group, "{why}; keeping the policies in force");
                status.policies.last_error = Some(why.clone());
                status.last_error = Some(why);
                self.policies_due = true;
            }
        }
    }

    /// The engine's parameters.
    pub fn params(&self) -> &GroupParams {
        self.fde.params()
    }

    /// Re-read the parameters and the placement policies once per scan interval; a bad
    /// setting keeps the old ones (and says so).
    fn refresh_params(&mut self, db: &Hsdb, now_ms: i64, status: &mut GroupStatus) {
        let interval = self.scan_interval();
        if self.params_read.is_some_and(|t| t.elapsed() < interval) {
            if self.policies_due {
                self.refresh_policies(db, now_ms, status);
            }
            return;
        }
        self.params_read = Some(Instant::now());
        self.refresh_policies(db, now_ms, status);
        match resolve(db, &self.group, self.config_profile) {
            Ok(p) if p != *self.fde.params() => {
                tracing::info!(
                    host_group = %self.group,
                    profile = p.profile.as_str(),
                    scan_interval_ms = p.scan_interval_ms,
                    host_fdt_ms = p.host_fdt_ms,
                    "parameters changed; the next scan uses them"
                );
                for line in below_seed(&p) {
                    tracing::warn!("below the seed's range: {line}");
                }
                self.fde.set_params(p);
            }
            Ok(_) => {}
            Err(why) => {
                tracing::error!(host_group = %self.group, "{why}; keeping the parameters in force");
                status.last_error = Some(why);
            }
        }
    }
}

impl GroupEngine for FdeEngine {
    fn host_group(&self) -> &str {
        &self.group
    }

    fn scan_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.fde.params().scan_interval_ms).unwrap_or(1))
    }

    fn below_seed_ranges(&self) -> Vec<String> {
        below_seed(self.fde.params())
    }

    fn begin_term(
        &mut self,
        now_ms: i64,
        token: Option<i64>,
        holder: &str,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
    ) -> Result<(), String> {
        self.fde.set_actor(match token {
            Some(t) => format!("{holder} (token {t})"),
            None => holder.to_owned(),
        });
        let done = self
            .fde
            .take_over(now_ms, hsdb, platform)
            .map_err(|e| e.to_string())?;
        if done.resumed + done.closed > 0 {
            tracing::warn!(
                host_group = %self.group,
                token,
                resumed = done.resumed,
                closed = done.closed,
                "restarts left unfinished by an earlier term: {} resumed, {} closed",
                done.resumed,
                done.closed
            );
        }
        Ok(())
    }

    fn tick(
        &mut self,
        now_ms: i64,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
        status: &mut GroupStatus,
    ) -> Result<i64, String> {
        self.refresh_params(hsdb, now_ms, status);
        let interval = self.scan_interval();
        let mut tick = self
            .fde
            .tick(now_ms, hsdb, platform)
            .map_err(|e| e.to_string())?;
        // The engine schedules on the wall clock; one set back would park it. The
        // monotonic clock says when a scan is overdue: then scan now.
        if tick.scan.is_none() && self.last_scan.elapsed() > interval * 2 {
            tracing::warn!(
                host_group = %self.group,
                "no scan for {:?} (the wall clock went back?): scanning now",
                self.last_scan.elapsed()
            );
            let report = self
                .fde
                .scan(now_ms, hsdb, platform)
                .map_err(|e| e.to_string())?;
            tick.scan = Some(report);
            tick.next_wake_ms = now_ms.saturating_add(self.fde.params().scan_interval_ms);
        }
        if let Some(report) = &tick.scan {
            self.last_scan = Instant::now();
            let silent_after = self.fde.params().hm_silent_after_ms;
            let hosts = self.fde.hosts();
            let monitors = hosts.iter().flat_map(|h| &h.monitors);
            let summary = RequestSummary {
                scan: report.scan,
                at_ms: now_ms,
                hosts: u64::try_from(hosts.len()).unwrap_or(u64::MAX),
                monitors: u64::try_from(monitors.clone().count()).unwrap_or(u64::MAX),
                monitors_unhealthy: u64::try_from(
                    monitors
                        .filter(|m| m.state == HmState::Down || m.silent_ms > silent_after)
                        .count(),
                )
                .unwrap_or(u64::MAX),
                decisions: report.decisions,
                tag: report.acked,
            };
            match report.request {
                Request::QuickQuery => status.last_qq = Some(summary),
                Request::NeedsAttention => status.last_na = Some(summary),
            }
        }
        status.scans = self.fde.scans();
        (status.maintenance, status.operator_request) = self.fde.maintenance_summary();
        status.capacity_short = self.fde.capacity_short_summary();
        status.in_flight = self
            .fde
            .restarts()
            .iter()
            .map(|r| InFlight {
                vm: r.request.spec.name.clone(),
                from_host: r.request.from.name.clone(),
                to_host: Some(r.request.to.name.clone()),
                phase: r.phase.as_str().to_owned(),
                since_ms: r.submitted_ms,
            })
            .chain(self.fde.waiting_for_placement().iter().map(|j| InFlight {
                vm: j.vm.name.clone(),
                from_host: String::new(),
                to_host: None,
                phase: "waiting for a target host".to_owned(),
                since_ms: now_ms,
            }))
            .collect();
        let kept: Vec<Decision> = self
            .fde
            .decisions()
            .iter()
            .rev()
            .take(KEPT_DECISIONS)
            .map(|d| Decision {
                at_ms: d.at_ms,
                scan: d.scan,
                text: format!("{}: {}: {}", d.subject, d.verdict, d.reason),
            })
            .collect();
        status.last_decisions = kept.into_iter().rev().collect();
        Ok(tick.next_wake_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::platform::sim::SimPlatform;
    use hsdb::{HostId, HostRecord, ParamScope};

    fn group_status() -> GroupStatus {
        GroupStatus::new("hg1", 0, 0)
    }

    fn db() -> Hsdb {
        let mut db = Hsdb::open_in_memory().unwrap();
        db.upsert_host(&HostRecord {
            id: HostId(1),
            name: "host-a".into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: "S1".into(),
            cpu_milli: 8_000,
            memory_mb: 32_768,
            host_group: "hg1".into(),
        })
        .unwrap();
        db
    }

    #[test]
    fn a_wall_clock_set_back_does_not_park_the_engine() {
        let mut db = db();
        db.set_param(
            &ParamScope::HostGroup("hg1".into()),
            "scan_interval",
            "100ms",
        )
        .unwrap();
        let mut engine = FdeEngine::new(&db, "hg1", Some(Profile::Fast)).unwrap();
        let mut platform = SimPlatform::empty(ManualClock::new(0), 1);
        let mut status = group_status();
        let t0 = 1_700_000_000_000;
        engine
            .tick(t0, &mut db, &mut platform, &mut status)
            .unwrap();
        assert_eq!(status.scans, 1);
        std::thread::sleep(Duration::from_millis(300));
        // An hour earlier by the wall clock: the engine alone would wait an hour.
        engine
            .tick(t0 - 3_600_000, &mut db, &mut platform, &mut status)
            .unwrap();
        assert_eq!(status.scans, 2, "the overdue scan ran");
        assert!(status.last_qq.is_some());
    }

    #[test]
    fn parameters_changed_in_the_hsdb_reach_the_engine_and_bad_ones_are_reported() {
        let mut db = db();
        let mut engine = FdeEngine::new(&db, "hg1", None).unwrap();
        assert_eq!(engine.params().host_fdt_ms, 90_000);
        assert!(engine.below_seed_ranges().is_empty());
        let mut platform = SimPlatform::empty(ManualClock::new(0), 1);
        let mut status = group_status();
        db.set_param(&ParamScope::System, "host_failure_detection_time", "120")
            .unwrap();
        engine.params_read = None;
        engine
            .tick(1_700_000_000_000, &mut db, &mut platform, &mut status)
            .unwrap();
        assert_eq!(engine.params().host_fdt_ms, 120_000);
        // A value the standard profile refuses: kept as it was, and said.
        db.set_param(&ParamScope::System, "host_failure_detection_time", "5")
            .unwrap();
        engine.params_read = None;
        engine
            .tick(1_700_000_000_000, &mut db, &mut platform, &mut status)
            .unwrap();
        assert_eq!(engine.params().host_fdt_ms, 120_000);
        let why = status.last_error.clone().unwrap();
        assert!(why.contains("host_failure_detection_time"), "{why}");
        // The fast profile from the HSDB: below the seed's ranges, and said.
        db.set_param(&ParamScope::System, "profile", "fast")
            .unwrap();
        db.unset_param(&ParamScope::System, "host_failure_detection_time")
            .unwrap();
        engine.params_read = None;
        engine
            .tick(1_700_000_000_000, &mut db, &mut platform, &mut status)
            .unwrap();
        let below = engine.below_seed_ranges();
        assert!(
            below
                .iter()
                .any(|l| l.starts_with("hg1: host_failure_detection_time = 6s")),
            "{below:?}"
        );
    }

    /// hg1 of `db()` gains host-b; VMs a and b on host-a.
    fn two_vms(db: &mut Hsdb) -> (hsdb::Uuid, hsdb::Uuid) {
        db.upsert_host(&HostRecord {
            id: HostId(2),
            name: "host-b".into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: "S2".into(),
            cpu_milli: 8_000,
            memory_mb: 32_768,
            host_group: "hg1".into(),
        })
        .unwrap();
        let (a, b) = (hsdb::Uuid([0xa; 16]), hsdb::Uuid([0xb; 16]));
        for (vm, name) in [(a, "a"), (b, "b")] {
            db.set_vm(
                &vm,
                &hsdb::VmSettings {
                    managed: Some(true),
                    name: Some(name.into()),
                    home_host: Some(HostId(1)),
                    cpu_milli: Some(1_000),
                    memory_mb: Some(1_024),
                    ..hsdb::VmSettings::default()
                },
                1,
            )
            .unwrap();
        }
        (a, b)
    }

    fn collocation(a: hsdb::Uuid, b: hsdb::Uuid) -> hsdb::PolicyChange {
        hsdb::PolicyChange::AddSet {
            kind: hsdb::PolicyKind::Collocation,
            name: "pair".into(),
            host_group: "hg1".into(),
            members: vec![a, b],
        }
    }

    /// One tick with the parameters (and policies) due for a re-read.
    fn tick_refreshed(
        engine: &mut FdeEngine,
        db: &mut Hsdb,
        platform: &mut SimPlatform,
        status: &mut GroupStatus,
    ) {
        engine.params_read = None;
        engine
            .tick(1_700_000_000_000, db, platform, status)
            .unwrap();
    }

    #[test]
    fn a_policy_added_while_the_engine_runs_reaches_it_and_a_set_made_invalid_is_reported() {
        let mut db = db();
        let (a, b) = two_vms(&mut db);
        let mut engine = FdeEngine::new(&db, "hg1", None).unwrap();
        let mut platform = SimPlatform::empty(ManualClock::new(0), 1);
        let mut status = group_status();
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        assert_eq!(engine.policies(), &crate::planner::Policies::default());

        // Added in the HSDB (as `hactl add collocation` does) while the engine runs.
        db.policy_apply(&collocation(a, b), 2).unwrap();
        db.policy_apply(
            &hsdb::PolicyChange::SetFlexible {
                host_group: "hg1".into(),
                priority: hsdb::Priority::Low,
                cpu_pct: Some(50),
                memory_pct: None,
            },
            2,
        )
        .unwrap();
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        let p = engine.policies();
        assert_eq!(
            p.collocations,
            [crate::planner::VmSet {
                name: "pair".into(),
                members: vec![a, b]
            }]
        );
        assert_eq!(p.flexible.low.cpu_pct, 50);
        assert_eq!(status.policies.collocations, 1);
        assert_eq!(status.policies.problems, Vec::<String>::new());
        assert_eq!(status.policies.loaded_ms, 1_700_000_000_000);

        // Made invalid by a later change: b is released and pruned. The engine never
        // fails; the set, left with one VM, is left out, and the status says why.
        db.set_vm(
            &b,
            &hsdb::VmSettings {
                managed: Some(false),
                ..hsdb::VmSettings::default()
            },
            3,
        )
        .unwrap();
        assert_eq!(db.prune_vms(4).unwrap(), 1);
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        assert_eq!(engine.policies().collocations, []);
        let problems = status.policies.problems.join("\n");
        assert!(
            problems.contains(&format!(
                "collocation \"pair\": member {b} is not a VM in the HSDB"
            )),
            "{problems}"
        );
        assert!(
            problems.contains(
                "collocation \"pair\" has 1 plannable member(s) in host group \"hg1\": left out"
            ),
            "{problems}"
        );
        let text = crate::daemon::render::status(&{
            let mut s = crate::daemon::status::DaemonStatus::starting("hsdb", "sim", "standard", 0);
            s.groups.push(status.clone());
            s
        });
        assert!(
            text.contains("hg1: policy problem: collocation \"pair\""),
            "{text}"
        );
    }

    #[test]
    fn a_failed_policy_load_keeps_the_policies_in_force_and_is_reported() {
        let Some(server) = pglab::require("engine_policy_load_error") else {
            return;
        };
        let url = server.fresh_database("engine_policy_load_error");
        let target = hsdb::Target::parse(&url).unwrap();
        let mut db = Hsdb::connect(&target, &hsdb::Options::default()).unwrap();
        db.upsert_host(&HostRecord {
            id: HostId(1),
            name: "host-a".into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: "S1".into(),
            cpu_milli: 8_000,
            memory_mb: 32_768,
            host_group: "hg1".into(),
        })
        .unwrap();
        let (a, b) = two_vms(&mut db);
        db.policy_apply(&collocation(a, b), 2).unwrap();
        let mut engine = FdeEngine::new(&db, "hg1", None).unwrap();
        let mut platform = SimPlatform::empty(ManualClock::new(0), 1);
        let mut status = group_status();
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        assert_eq!(engine.policies().collocations.len(), 1);
        // A member that is not a UUID, written around the API: the load fails.
        let mut raw = pglab::client(&url);
        raw.batch_execute(
            "INSERT INTO policy_member (policy, position, vm) \
             SELECT id, 9, 'garbage' FROM policy WHERE name = 'pair'",
        )
        .unwrap();
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        assert_eq!(engine.policies().collocations.len(), 1, "the last good set");
        let why = status.policies.last_error.clone().unwrap();
        assert!(why.contains("garbage") && why.contains("hg1"), "{why}");
        assert_eq!(status.last_error.as_deref(), Some(why.as_str()));
        // Mended: loaded again, the error gone.
        raw.batch_execute("DELETE FROM policy_member WHERE vm = 'garbage'")
            .unwrap();
        tick_refreshed(&mut engine, &mut db, &mut platform, &mut status);
        assert_eq!(status.policies.last_error, None);
        assert_eq!(status.policies.collocations, 1);
    }
}
