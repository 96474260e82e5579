//! Application reports and the critical-application ladder on a real HSDB file, with a
//! fake agent and fake monitors: the test completes the monitors' `hm_command` rows as
//! `hmd` would (FETCH_APP_REPORT with `REPORT: ` and a body built by
//! `AppReport::encode`, CONFIRM_APP_REPORT with `CLEARED: gen=N`), and the agent rings
//! its doorbell as docs/hvncp.md says: at once when its report changes, then every 10 s
//! until a generation at least as new is confirmed.

use hsdb::{CommandKind, HostId, Hsdb, RelocationKind, Transition};
use hvha_appreport::{AppReport, AppState, AppStatus};

use super::maintenance::empty_hsdb;
use super::on_hsdb::{managed_vm, populate_group};
use super::{FakePlatform, T0, hm, uuid};
use crate::fde::{DBELL_APP_CRITICAL_FAILURE, DBELL_REPORT, Fde, Verdict};
use crate::params::GroupParams;
use crate::platform::HostInfo;

const S: i64 = 1_000;

/// The agent of VM 1, as the control plane sees it through its monitors.
#[derive(Debug)]
struct Agent {
    inc: u64,
    generation: u64,
    apps: Vec<AppStatus>,
    confirmed: u64,
    /// Its VM runs (it dies with a stop, a new one starts with a start).
    alive: bool,
    /// The host it runs on.
    host: i64,
    last_ring: Option<i64>,
    /// Rings, for the test's assertions.
    rings: Vec<(i64, u64)>,
}

impl Agent {
    fn new(host: i64, apps: Vec<AppStatus>) -> Agent {
        Agent {
            inc: 0x1000,
            generation: 1,
            apps,
            confirmed: 0,
            alive: true,
            host,
            last_ring: None,
            rings: Vec::new(),
        }
    }

    fn report(&self) -> AppReport {
        AppReport {
            inc: self.inc,
            generation: self.generation,
            apps: self.apps.clone(),
        }
    }

    /// The applications changed: a new generation, rung at once.
    fn set(&mut self, apps: Vec<AppStatus>) {
        self.apps = apps;
        self.generation += 1;
        self.last_ring = None;
    }

    fn vector(&self) -> u64 {
        let critical = self
            .apps
            .iter()
            .any(|a| a.critical && a.state == AppState::Failure);
        DBELL_REPORT
            | if critical {
                DBELL_APP_CRITICAL_FAILURE
            } else {
                0
            }
    }
}

/// An HSDB with hosts 1 and 2 (two monitors each), VM 1 managed on host 1 with an agent,
/// the engine, the fake platform, the fake agent.
struct Lab {
    _dir: tempfile::TempDir,
    db: Hsdb,
    fde: Fde,
    platform: FakePlatform,
    agent: Agent,
    now: i64,
    /// The monitors complete nothing before this time (slow, or their host is busy).
    hold_until: i64,
    /// Platform calls already seen by the agent model.
    calls_seen: usize,
}

fn params() -> GroupParams {
    // A scan every second, NeedsAttention every 3 s; the executor waits up to 30 s for
    // the monitors to stop watching before it stops the VM.
    GroupParams {
        command_timeout_ms: 30 * S,
        ..GroupParams::fast("hg")
    }
}

fn app(name: &str, state: AppState, critical: bool) -> AppStatus {
    let mut a = AppStatus::new(name, state);
    a.critical = critical;
    a.monitor = hvha_appreport::MonitorKind::Http;
    a.since_ms = u64::try_from(T0).unwrap();
    a
}

impl Lab {
    fn new(apps: Vec<AppStatus>) -> Lab {
        Lab::on(None, apps).unwrap()
    }

    /// On SQLite, or on a fresh PostgreSQL database when `pg` names the test (`None`
    /// when this machine has no PostgreSQL outside CI: the test is skipped).
    fn on(pg: Option<&str>, apps: Vec<AppStatus>) -> Option<Lab> {
        let dir = tempfile::tempdir().unwrap();
        let mut db = populate_group(empty_hsdb(&dir, pg)?, 2);
        managed_vm(&mut db, 1, 1, true);
        let mut platform = FakePlatform::default();
        for id in 1..=2 {
            platform.hosts.push(HostInfo {
                name: format!("host-{id}"),
                cpu_milli: 8000,
                memory_mb: 16384,
                vms: Vec::new(),
            });
        }
        Some(Lab {
            _dir: dir,
            db,
            fde: Fde::new(params()),
            platform,
            agent: Agent::new(1, apps),
            now: T0,
            hold_until: 0,
            calls_seen: 0,
        })
    }

    /// The agent rings every monitor of its host while its report is unconfirmed: at
    /// once after a change, then every 10 s.
    fn agent_turn(&mut self) {
        let a = &mut self.agent;
        if !a.alive || a.generation <= a.confirmed {
            return;
        }
        if a.last_ring.is_some_and(|t| self.now - t < 10 * S) {
            return;
        }
        a.last_ring = Some(self.now);
        let vector = a.vector();
        a.rings.push((self.now, vector));
        let host = a.host;
        let batch: Vec<Transition> = (1..=2)
            .map(|n| Transition::Doorbell {
                vm: uuid(1),
                hm: hm(host, n),
                vector,
                at: self.now,
            })
            .collect();
        self.db.apply(&batch).unwrap();
    }

    /// Every monitor heart-beats into the HSDB.
    fn heartbeats(&mut self) {
        let now = self.now;
        let beats: Vec<Transition> = (1..=2)
            .flat_map(|h| {
                (1..=2).map(move |n| Transition::HmHeartbeat {
                    hm: hm(h, n),
                    at: now,
                })
            })
            .collect();
        self.db.apply(&beats).unwrap();
    }

    /// What `hmd` would do with each open command of each monitor.
    fn monitors_turn(&mut self) {
        self.heartbeats();
        if self.now < self.hold_until {
            return;
        }
        for h in 1..=2 {
            for n in 1..=2 {
                for c in self.db.commands_for(&hm(h, n), 0, 100).unwrap() {
                    let reachable = self.agent.alive && self.agent.host == h;
                    let result = match c.kind {
                        CommandKind::FetchAppReport if reachable => {
                            format!("REPORT: {}", self.agent.report().encode())
                        }
                        CommandKind::ConfirmAppReport if reachable => {
                            let g: u64 = c.arg.as_deref().unwrap().parse().unwrap();
                            let a = &mut self.agent;
                            a.confirmed = a.confirmed.max(g.min(a.generation));
                            format!("CLEARED: gen={g}")
                        }
                        CommandKind::FetchAppReport | CommandKind::ConfirmAppReport => {
                            "NO_SESSION: no session with the VM's agent".to_owned()
                        }
                        _ => "OK".to_owned(),
                    };
                    self.db.complete_command(c.id, &result, self.now).unwrap();
                }
            }
        }
    }

    /// The platform's stops and starts kill the agent and start a new one (its
    /// applications start NORMAL, a new incarnation, generation 1).
    fn platform_turn(&mut self) {
        let vm = uuid(1).to_string();
        for call in &self.platform.calls[self.calls_seen..] {
            if call.starts_with("stop ") && call.ends_with(&vm) {
                self.agent.alive = false;
            } else if let Some(rest) = call.strip_prefix("start host-")
                && rest.ends_with(&vm)
            {
                let host: i64 = rest.split(' ').next().unwrap().parse().unwrap();
                let apps = self
                    .agent
                    .apps
                    .iter()
                    .map(|a| AppStatus {
                        state: AppState::Normal,
                        restarts: 0,
                        detail: String::new(),
                        ..a.clone()
                    })
                    .collect();
                let inc = self.agent.inc + 1;
                self.agent = Agent {
                    inc,
                    rings: std::mem::take(&mut self.agent.rings),
                    ..Agent::new(host, apps)
                };
            }
        }
        self.calls_seen = self.platform.calls.len();
    }

    /// Run the world until `until`, at most a second per step.
    fn run_until(&mut self, until: i64) {
        while self.now < until {
            self.platform_turn();
            self.agent_turn();
            self.monitors_turn();
            let t = self
                .fde
                .tick(self.now, &mut self.db, &mut self.platform)
                .unwrap();
            self.platform_turn();
            self.now = t
                .next_wake_ms
                .min(self.now + S)
                .min(until.max(self.now + 1));
        }
    }

    fn kinds(&self) -> Vec<String> {
        self.db
            .events_after(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.kinds().iter().filter(|k| *k == kind).count()
    }

    fn commands(&self, kind: CommandKind) -> Vec<hsdb::CommandRow> {
        (1..=500)
            .filter_map(|id| self.db.command(id).unwrap())
            .filter(|c| c.kind == kind)
            .collect()
    }

    fn decisions(&self, verdict: Verdict) -> Vec<String> {
        self.fde
            .decisions()
            .iter()
            .filter(|d| d.verdict == verdict)
            .map(|d| d.reason.clone())
            .collect()
    }

    fn states(&self) -> Vec<(String, AppState)> {
        self.db
            .apps(&uuid(1))
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.state))
            .collect()
    }
}

/// Doorbell → FETCH_APP_REPORT queued → completed → `app` rows stored, events raised →
/// CONFIRM_APP_REPORT with the generation → the agent stops ringing; then a change:
/// an application deleted, one failing (not critical: notified only).
#[test]
fn test_doorbell_fetch_store_confirm() {
    doorbell_fetch_store_confirm(None);
}

#[test]
fn test_doorbell_fetch_store_confirm_on_postgres() {
    doorbell_fetch_store_confirm(Some("fde_app_doorbell_fetch_store_confirm"));
}

fn doorbell_fetch_store_confirm(pg: Option<&str>) {
    let Some(mut lab) = Lab::on(
        pg,
        vec![
            app("web", AppState::Normal, true),
            app("batch", AppState::Normal, false),
        ],
    ) else {
        return;
    };
    lab.run_until(T0 + 8 * S);
    // Fetched through a monitor of its host, stored, confirmed.
    let fetches = lab.commands(CommandKind::FetchAppReport);
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0].vm, uuid(1));
    assert!([hm(1, 1), hm(1, 2)].contains(&fetches[0].hm));
    assert_eq!(
        fetches[0].arg.as_deref(),
        Some("report inc=1000 gen=1 apps=2"),
        "handled"
    );
    let confirms = lab.commands(CommandKind::ConfirmAppReport);
    assert_eq!(confirms.len(), 1);
    assert_eq!(
        (confirms[0].arg.as_deref(), confirms[0].hm),
        (Some("1"), fetches[0].hm)
    );
    assert_eq!(confirms[0].result.as_deref(), Some("CLEARED: gen=1"));
    assert_eq!(lab.agent.confirmed, 1);
    assert_eq!(
        lab.states(),
        [
            ("batch".to_owned(), AppState::Normal),
            ("web".to_owned(), AppState::Normal)
        ]
    );
    let rows = lab.db.apps(&uuid(1)).unwrap();
    assert_eq!(
        (rows[1].report_inc, rows[1].report_gen, rows[1].critical),
        (Some(0x1000), Some(1), true)
    );
    assert_eq!(lab.count("APP_STATE_CHANGED"), 2, "{:?}", lab.kinds());
    // Confirmed: no more rings, no more fetches.
    lab.run_until(T0 + 40 * S);
    assert_eq!(lab.agent.rings.len(), 1, "{:?}", lab.agent.rings);
    assert_eq!(lab.commands(CommandKind::FetchAppReport).len(), 1);
    let log = lab.decisions(Verdict::AppReport);
    assert!(
        log.iter().any(|r| r.contains("confirmed to its agent")),
        "{log:#?}"
    );

    // web is removed from the agent's configuration; batch (not critical) fails.
    let mut batch = app("batch", AppState::Failure, false);
    batch.detail = "GET / answered 503 three times".into();
    lab.agent.set(vec![batch]);
    lab.run_until(T0 + 50 * S);
    assert_eq!(lab.states(), [("batch".to_owned(), AppState::Failure)]);
    assert_eq!(lab.count("APP_REMOVED"), 1);
    assert_eq!(lab.count("APP_FAILURE"), 1);
    let text = lab
        .db
        .events_after(0, 1000)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "APP_FAILURE")
        .unwrap()
        .text;
    assert!(text.contains("GET / answered 503 three times"), "{text}");
    assert!(text.contains("notified only, no VM action"), "{text}");
    // Only notified: no escalation, no restart.
    assert_eq!(lab.count("APP_FAILURE_DETECTED"), 0);
    assert!(lab.db.relocations(Some(&uuid(1)), 10).unwrap().is_empty());
    assert_eq!(lab.agent.confirmed, 2);
    assert_eq!(
        crate::events::severity_of("APP_FAILURE").as_str(),
        "warning"
    );
}

/// A report older than the one stored (same agent, lower generation) is ignored and not
/// confirmed; the stored rows stay.
#[test]
fn test_stale_generation_is_ignored() {
    let mut lab = Lab::new(vec![app("web", AppState::Normal, false)]);
    lab.agent.set(vec![app("web", AppState::Failing, false)]);
    lab.run_until(T0 + 8 * S);
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Failing)]);
    let confirms = lab.commands(CommandKind::ConfirmAppReport).len();
    // A fetch of generation 1 (another controller's, answered late) completes now.
    let old = AppReport {
        inc: 0x1000,
        generation: 1,
        apps: vec![app("web", AppState::Normal, false)],
    };
    let id = lab
        .db
        .enqueue_command(&hm(1, 2), CommandKind::FetchAppReport, &uuid(1), lab.now)
        .unwrap();
    lab.db
        .complete_command(id, &format!("REPORT: {}", old.encode()), lab.now)
        .unwrap();
    lab.run_until(lab.now + 3 * S);
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Failing)]);
    assert_eq!(lab.commands(CommandKind::ConfirmAppReport).len(), confirms);
    let log = lab.decisions(Verdict::AppReport);
    assert!(
        log.iter().any(|r| r.contains(
            "application report generation 1 of VM vm1 (agent 1000) ignored: generation 2"
        )),
        "{log:#?}"
    );
    assert!(
        lab.db.command(id).unwrap().unwrap().arg.is_some(),
        "handled"
    );
}

/// A failed fetch (the agent does not answer) is logged and raises APP_REPORT_FAILED;
/// the agent rings again 10 s later and the next fetch goes through the other monitor.
#[test]
fn test_failed_fetch_is_logged_and_retried_at_the_next_doorbell() {
    let mut lab = Lab::new(vec![app("web", AppState::Normal, false)]);
    // The agent answers no PMSG_REQ for 9 s: the monitors say TIMEOUT.
    let mut timed_out = 0;
    while lab.now < T0 + 9 * S {
        lab.agent_turn();
        for n in 1..=2 {
            for c in lab.db.commands_for(&hm(1, n), 0, 100).unwrap() {
                lab.db
                    .complete_command(c.id, "TIMEOUT: no PMSG_RSP within 15 s", lab.now)
                    .unwrap();
                timed_out += 1;
            }
        }
        lab.heartbeats();
        let t = lab
            .fde
            .tick(lab.now, &mut lab.db, &mut lab.platform)
            .unwrap();
        lab.now = t.next_wake_ms.min(lab.now + S);
    }
    assert_eq!(timed_out, 1);
    assert_eq!(lab.count("APP_REPORT_FAILED"), 1);
    let failed = lab.commands(CommandKind::FetchAppReport);
    assert_eq!(failed[0].arg.as_deref(), Some("failed: TIMEOUT"));
    let log = lab.decisions(Verdict::AppReport);
    assert!(
        log.iter().any(|r| r.contains("not fetched through monitor")
            && r.contains("TIMEOUT: no PMSG_RSP within 15 s; fetched again at its next doorbell")),
        "{log:#?}"
    );
    assert!(lab.states().is_empty());
    // The agent rings again at 10 s; the monitors answer now.
    lab.run_until(T0 + 18 * S);
    let fetches = lab.commands(CommandKind::FetchAppReport);
    assert_eq!(fetches.len(), 2);
    assert_ne!(fetches[1].hm, fetches[0].hm, "the other monitor");
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Normal)]);
    assert_eq!(lab.agent.confirmed, 1);
}

/// A critical application in FAILURE: the VM is restarted on its host ONCE, although
/// the agent rang three times (at once, then every 10 s while its report was not
/// confirmed: the monitors were busy and answered nothing for 25 s) and a ring of the old
/// agent reached the HSDB only after the restart had ended. The restarted VM's agent
/// reports its applications NORMAL.
#[test]
fn test_critical_failure_escalates_once_despite_rerung_doorbells() {
    critical_failure_escalates_once_despite_rerung_doorbells(None);
}

#[test]
fn test_critical_failure_escalates_once_despite_rerung_doorbells_on_postgres() {
    critical_failure_escalates_once_despite_rerung_doorbells(Some(
        "fde_app_critical_failure_escalates_once",
    ));
}

fn critical_failure_escalates_once_despite_rerung_doorbells(pg: Option<&str>) {
    let Some(mut lab) = Lab::on(pg, vec![app("web", AppState::Normal, true)]) else {
        return;
    };
    lab.run_until(T0 + 8 * S);
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Normal)]);
    let mut web = app("web", AppState::Failure, true);
    web.detail = "start_script failed 3 times".into();
    lab.agent.set(vec![web]);
    lab.hold_until = lab.now + 25 * S;
    let failed_at = lab.now;
    lab.run_until(failed_at + 60 * S);
    let rings: Vec<&(i64, u64)> = lab
        .agent
        .rings
        .iter()
        .filter(|(_, v)| v & DBELL_APP_CRITICAL_FAILURE != 0)
        .collect();
    assert_eq!(
        rings.iter().map(|(t, _)| t - failed_at).collect::<Vec<_>>(),
        [0, 10 * S, 20 * S],
        "three rings of the critical failure"
    );
    let rows = lab.db.relocations(Some(&uuid(1)), 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].kind, rows[0].from_host, rows[0].to_host),
        (RelocationKind::Restart, Some(HostId(1)), Some(HostId(1)))
    );
    // The same-host restart's reasons: no plan, its own host, why.
    let reasons = rows[0].reasons.as_deref().expect("reasons stored");
    assert!(
        reasons.starts_with("vm1: to host-1 (its own host, cpu ")
            && reasons.contains("a critical application failed"),
        "{reasons}"
    );
    let end = rows[0].ended_ms.expect("ended");
    assert_eq!(lab.count("APP_FAILURE_DETECTED"), 1);
    assert_eq!(lab.count("APP_CRITICAL_FAILURE"), 1, "{:?}", lab.kinds());
    let busy = lab.decisions(Verdict::Busy);
    assert!(
        busy.len() >= 2
            && busy
                .iter()
                .all(|r| r.contains("failed while the VM is being restarted")),
        "{busy:#?}"
    );
    // The new agent's report replaced the old one.
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Normal)]);
    assert_eq!(lab.db.apps(&uuid(1)).unwrap()[0].report_inc, Some(0x1001));
    // The old agent's last ring, written late by a monitor (it had kept it): stale.
    lab.db
        .apply(&[Transition::Doorbell {
            vm: uuid(1),
            hm: hm(1, 2),
            vector: DBELL_REPORT | DBELL_APP_CRITICAL_FAILURE,
            at: failed_at + 20 * S,
        }])
        .unwrap();
    lab.run_until(lab.now + 10 * S);
    assert!(lab.now > end);
    assert_eq!(lab.db.relocations(Some(&uuid(1)), 10).unwrap().len(), 1);
    assert_eq!(lab.count("APP_FAILURE_DETECTED"), 1);
    let log = lab.decisions(Verdict::NoAction);
    assert!(
        log.iter()
            .any(|r| r.contains("not escalated twice")
                && r.contains("critical application of VM vm1")),
        "{log:#?}"
    );
}

/// The dedupe rule alone: a critical-failure doorbell written before the end of the VM's
/// last restart is not acted on again (without the rule, the VM is restarted a second
/// time); one written after it is a new failure and is.
#[test]
fn test_stale_critical_doorbell_never_escalates_twice() {
    let mut lab = Lab::new(vec![]);
    // No agent reports here: the doorbells alone (an agent whose reports never arrive).
    lab.agent.alive = false;
    lab.run_until(T0 + 2 * S);
    let ring = |lab: &mut Lab, at: i64| {
        lab.db
            .apply(&[Transition::Doorbell {
                vm: uuid(1),
                hm: hm(1, 1),
                vector: DBELL_APP_CRITICAL_FAILURE,
                at,
            }])
            .unwrap();
    };
    ring(&mut lab, T0 + 2 * S);
    lab.run_until(T0 + 30 * S);
    let rows = lab.db.relocations(Some(&uuid(1)), 10).unwrap();
    assert_eq!(rows.len(), 1);
    let end = rows[0].ended_ms.expect("restart ended");
    // Rung at 3 s (before the restart ended), written only now.
    ring(&mut lab, T0 + 3 * S);
    lab.run_until(lab.now + 10 * S);
    assert_eq!(
        lab.db.relocations(Some(&uuid(1)), 10).unwrap().len(),
        1,
        "a stale doorbell restarted the VM again"
    );
    // A new failure after the restart: the second rung of the ladder.
    ring(&mut lab, end + 30 * S);
    lab.run_until(end + 60 * S);
    let rows = lab.db.relocations(Some(&uuid(1)), 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].kind, RelocationKind::Restart);
    assert_eq!(lab.count("APP_FAILURE_DETECTED"), 2);
}

/// The doorbell's critical bit was missed — the controller acknowledged it, then
/// stopped before acting (here: the platform did not answer, the restart waited for a
/// target, and the controller went away) — and the agent's report was fetched and
/// confirmed: the next controller learns the critical FAILURE from the report and
/// escalates, once.
#[test]
fn test_critical_failure_learned_from_the_report_escalates_once() {
    let mut lab = Lab::new(vec![app("db", AppState::Failure, true)]);
    lab.platform.hosts_fail = true;
    // The monitors answer nothing yet.
    lab.hold_until = T0 + 8 * S;
    lab.run_until(T0 + 5 * S);
    assert_eq!(
        lab.decisions(Verdict::AppEscalation).len(),
        1,
        "decided, waiting for a target"
    );
    assert!(lab.db.relocations(Some(&uuid(1)), 10).unwrap().is_empty());
    assert_eq!(lab.commands(CommandKind::FetchAppReport).len(), 1);
    // The controller stops; a new one (same HSDB) takes over. The doorbell item was
    // acknowledged: the new controller never sees its bit.
    lab.fde = Fde::new(params());
    lab.platform.hosts_fail = false;
    lab.run_until(T0 + 60 * S);
    // Confirmed before the agent's next ring (10 s): the bit was never seen again (the
    // restarted VM's agent rings only for its new report).
    let critical = lab
        .agent
        .rings
        .iter()
        .filter(|(_, v)| v & DBELL_APP_CRITICAL_FAILURE != 0)
        .count();
    assert_eq!(critical, 1, "{:?}", lab.agent.rings);
    let rows = lab.db.relocations(Some(&uuid(1)), 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, RelocationKind::Restart);
    let esc = lab.decisions(Verdict::AppEscalation);
    assert_eq!(esc.len(), 1, "{esc:#?}");
    assert!(
        esc[0].starts_with(
            "critical application db of VM vm1 (from its report) is in FAILURE; same-host \
             restarts so far 0 of 3"
        ),
        "{esc:#?}"
    );
    assert_eq!(
        lab.count("APP_FAILURE_DETECTED"),
        2,
        "one per controller's decision"
    );
    assert_eq!(lab.states(), [("db".to_owned(), AppState::Normal)]);
}

/// A controller restarted mid-cycle (after the fetch was queued, before it was
/// completed): the new engine on the same HSDB stores and confirms the report; nothing
/// is fetched twice.
#[test]
fn test_controller_restarted_mid_cycle_finishes_the_cycle() {
    controller_restarted_mid_cycle_finishes_the_cycle(None);
}

#[test]
fn test_controller_restarted_mid_cycle_finishes_the_cycle_on_postgres() {
    controller_restarted_mid_cycle_finishes_the_cycle(Some(
        "fde_app_controller_restarted_mid_cycle",
    ));
}

fn controller_restarted_mid_cycle_finishes_the_cycle(pg: Option<&str>) {
    let Some(mut lab) = Lab::on(pg, vec![app("web", AppState::Failing, false)]) else {
        return;
    };
    lab.hold_until = T0 + 12 * S;
    lab.run_until(T0 + 5 * S);
    assert_eq!(lab.commands(CommandKind::FetchAppReport).len(), 1);
    assert!(lab.states().is_empty());
    lab.fde = Fde::new(params());
    lab.run_until(T0 + 30 * S);
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Failing)]);
    assert_eq!(lab.agent.confirmed, 1);
    // The agent rang at 0 and 10 s (unconfirmed), the open fetch served both.
    assert_eq!(lab.agent.rings.len(), 2, "{:?}", lab.agent.rings);
    assert_eq!(lab.commands(CommandKind::FetchAppReport).len(), 1);
    assert_eq!(lab.commands(CommandKind::ConfirmAppReport).len(), 1);
    assert_eq!(lab.count("APP_STATE_WARNING"), 1);
}

/// A report with a critical FAILURE is not confirmed while the restart decided for it
/// has not begun (here: no target can be planned, the platform does not answer). The
/// controller then stops: unconfirmed, the agent rings again, and the next controller
/// restarts the VM — the failure is not lost with the first controller's memory.
#[test]
fn test_report_of_a_failure_not_yet_acted_on_is_not_confirmed() {
    let mut lab = Lab::new(vec![app("db", AppState::Failure, true)]);
    lab.platform.hosts_fail = true;
    lab.run_until(T0 + 6 * S);
    assert_eq!(lab.states(), [("db".to_owned(), AppState::Failure)]);
    assert!(lab.commands(CommandKind::ConfirmAppReport).is_empty());
    let log = lab.decisions(Verdict::AppReport);
    assert!(
        log.iter().any(|r| r.contains(
            "application report generation 1 of VM vm1 not confirmed yet: the restart decided \
             for its critical application(s) has not begun"
        )),
        "{log:#?}"
    );
    assert!(lab.db.relocations(Some(&uuid(1)), 10).unwrap().is_empty());
    // A new controller; the platform answers again.
    lab.fde = Fde::new(params());
    lab.platform.hosts_fail = false;
    lab.run_until(T0 + 40 * S);
    let critical = lab
        .agent
        .rings
        .iter()
        .filter(|(_, v)| v & DBELL_APP_CRITICAL_FAILURE != 0)
        .count();
    assert_eq!(critical, 2, "rang again: {:?}", lab.agent.rings);
    let rows = lab.db.relocations(Some(&uuid(1)), 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, RelocationKind::Restart);
    // The restarted VM's agent reported, and was confirmed.
    assert_eq!(lab.states(), [("db".to_owned(), AppState::Normal)]);
    assert_eq!(lab.agent.confirmed, 1);
}

/// Only the leader handles reports: an engine whose connection is fenced by a term
/// that is over writes nothing (the fetch stays unhandled, nothing is stored or
/// confirmed); the leader's engine then handles it.
#[test]
fn test_a_fenced_controller_handles_no_report() {
    let mut lab = Lab::new(vec![app("web", AppState::Normal, false)]);
    lab.hold_until = T0 + 4 * S;
    lab.run_until(T0 + 4 * S);
    assert_eq!(lab.commands(CommandKind::FetchAppReport).len(), 1);
    lab.monitors_turn();
    let fetch = &lab.commands(CommandKind::FetchAppReport)[0];
    assert!(fetch.done_ms.is_some() && fetch.arg.is_none());
    // A term that is not in the lease table: every write of this engine is refused.
    lab.db.set_fence(Some(hsdb::Fence {
        host_group: "hg".into(),
        holder: "ctl-old".into(),
        token: 41,
        check: None,
    }));
    let mut fenced = Fde::new(params());
    for _ in 0..4 {
        let err = fenced.tick(lab.now, &mut lab.db, &mut lab.platform);
        assert!(
            matches!(
                err,
                Err(crate::fde::FdeError::Store(hsdb::Error::Fenced { .. }))
            ),
            "{err:?}"
        );
        lab.now += S;
    }
    assert!(lab.states().is_empty());
    assert!(lab.commands(CommandKind::ConfirmAppReport).is_empty());
    assert!(lab.commands(CommandKind::FetchAppReport)[0].arg.is_none());
    lab.db.set_fence(None);
    lab.run_until(lab.now + 3 * S);
    assert_eq!(lab.states(), [("web".to_owned(), AppState::Normal)]);
    assert_eq!(lab.commands(CommandKind::ConfirmAppReport).len(), 1);
}
