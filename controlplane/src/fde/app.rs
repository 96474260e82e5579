//! Application reports and the critical-application ladder (docs/controlplane.md
//! "Application reports", "Doorbells and critical applications"; docs/hvncp.md
//! "Application reports").
//!
//! The cycle, every step durable in the HSDB so that a controller (or monitor) restarted
//! half-way loses nothing — the agent keeps ringing until a report is confirmed:
//! 1. a doorbell with a report bit in NeedsAttention → `FETCH_APP_REPORT` for a monitor
//!    that has a session with the VM's agent (one open fetch per VM);
//! 2. every scan, each fetch its monitor completed: the report parsed, the VM's `app`
//!    rows replaced, events raised, `CONFIRM_APP_REPORT` with its generation queued and
//!    the fetch marked handled — one transaction (`Hsdb::handle_app_fetch`); a failed
//!    fetch is logged and the next doorbell fetches again;
//! 3. a critical application in FAILURE — learned from the doorbell's bit or from a
//!    report — drives the ladder (same-host restarts, then relocation), once per failure:
//!    evidence older than the end of the VM's last restart or relocation was already acted
//!    on (the old agent died with that restart) and is ignored.

use hsdb::{AppChange, AppFetchHandled, AppStored, HeartbeatState, HostId, Uuid, VmRow};
use hvha_appreport::{AppReport, AppState, Colour};

use super::{
    APP_SAME_HOST_RESTARTS, DBELL_APP_CRITICAL_FAILURE, Fde, FdeError, HealthStore, Subject,
    Verdict, VmAttention,
};
use crate::events::{Event, EventKind};
use crate::params::RestartPolicy;
use crate::relocate::RestartKind;

/// The doorbell bit "a new application report is available" (seed 004 L12093-12130:
/// the seed's first doorbell is `shortMsg="0x2"`).
pub const DBELL_REPORT: u64 = hvha_appreport::DBELL_REPORT;

/// An open fetch older than this is given up (completed `TIMEOUT` by the control plane)
/// and the next doorbell fetches through another monitor: the monitor's own exchange
/// gives up after 15 s (docs/hvncp.md), so one still open after a minute is held by a
/// monitor that is down or stuck (ours).
pub const APP_FETCH_GIVE_UP_MS: i64 = 60_000;

/// Completed fetches handled per scan at most; more wait for the next scan.
pub const APP_FETCHES_PER_SCAN: u32 = 64;

/// Confirmations whose outcome the engine still waits for, at most (the oldest are
/// forgotten beyond: their outcome is only logged).
const CONFIRMS_WATCHED: usize = 1_024;

/// A `FETCH_APP_REPORT` command as the engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFetch {
    /// The command's id.
    pub id: i64,
    /// The monitor that carries it out.
    pub hm: Uuid,
    /// The VM.
    pub vm: Uuid,
    /// When it was queued.
    pub created_ms: i64,
    /// When the monitor completed it (its clock).
    pub done_ms: Option<i64>,
    /// What the monitor reported: `REPORT: <body>`, or `CODE: why`.
    pub result: Option<String>,
}

impl From<hsdb::CommandRow> for AppFetch {
    fn from(c: hsdb::CommandRow) -> AppFetch {
        AppFetch {
            id: c.id,
            hm: c.hm,
            vm: c.vm,
            created_ms: c.created_ms,
            done_ms: c.done_ms,
            result: c.result,
        }
    }
}

/// A confirmation queued, whose outcome is logged when the monitor completes it.
#[derive(Debug, Clone)]
pub(super) struct Confirming {
    id: i64,
    vm: Uuid,
    name: String,
    generation: u64,
    hm: Uuid,
}

/// How a critical application failure was learned.
#[derive(Debug, Clone)]
pub(super) enum Evidence {
    /// The doorbell's bit [`DBELL_APP_CRITICAL_FAILURE`].
    Doorbell,
    /// A report listing critical application(s) in FAILURE.
    Report(Vec<String>),
}

/// A fetch's result, read.
enum Fetched {
    Report(AppReport),
    Failed(String),
}

/// Read a completed fetch's result: `REPORT: <body>` parsed, or why there is none.
fn read_result(result: Option<&str>) -> Fetched {
    let Some(result) = result else {
        return Fetched::Failed("no result".to_owned());
    };
    let Some(body) = result.strip_prefix("REPORT:") else {
        let mut why = result.to_owned();
        if why.len() > 512 {
            let cut = (0..=512)
                .rev()
                .find(|&i| why.is_char_boundary(i))
                .unwrap_or(0);
            why.truncate(cut);
            why.push('…');
        }
        return Fetched::Failed(why);
    };
    let body = body.strip_prefix(' ').unwrap_or(body);
    match AppReport::parse(body.as_bytes()) {
        Ok(r) if i64::try_from(r.generation).is_err() => Fetched::Failed(format!(
            "BAD_REPORT (control plane): generation {} does not fit the HSDB (at most {})",
            r.generation,
            i64::MAX
        )),
        Ok(r) => Fetched::Report(r),
        Err(e) => Fetched::Failed(format!("BAD_REPORT (control plane): {e}")),
    }
}

/// `db: FAILING → FAILURE (RED)`.
fn transition(c: &AppChange) -> String {
    match (&c.before, &c.after) {
        (Some(b), Some(a)) => format!("{} → {} ({})", b.state, a.state, a.colour),
        (None, Some(a)) => format!("reported {} ({})", a.state, a.colour),
        (Some(b), None) => format!("no longer reported (was {})", b.state),
        (None, None) => String::new(),
    }
}

impl Fde {
    /// A doorbell in NeedsAttention: fetch the VM's report (`FETCH_APP_REPORT`) through a
    /// monitor that has a session with its agent, unless a fetch is open already. Only
    /// a doorbell with [`DBELL_REPORT`] or [`DBELL_APP_CRITICAL_FAILURE`] asks for one
    /// (an agent of another vintage rings other bits and knows no PMSG_REQ).
    pub(super) fn request_app_report(
        &mut self,
        now_ms: i64,
        a: &VmAttention,
        subject: &Subject,
        vector: u64,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        if vector & (DBELL_REPORT | DBELL_APP_CRITICAL_FAILURE) == 0 {
            return Ok(());
        }
        let name = subject_name(subject);
        if let Some(open) = store.app_fetch_open(&a.uuid)? {
            let age = now_ms.saturating_sub(open.created_ms);
            if age < APP_FETCH_GIVE_UP_MS {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::AppReport,
                    format!(
                        "application report of VM {name}: fetch {} through monitor {} already \
                         open ({} ms): not fetched twice",
                        open.id, open.hm, age
                    ),
                );
                return Ok(());
            }
            let why = format!(
                "TIMEOUT: not carried out by monitor {} within {} s (control plane)",
                open.hm,
                APP_FETCH_GIVE_UP_MS / 1000
            );
            store.app_fetch_give_up(open.id, &why, now_ms)?;
            self.app_fetch_avoid.insert(a.uuid, open.hm);
            tracing::warn!(vm = %a.uuid, fetch = open.id, hm = %open.hm, "{why}: fetching again");
        }
        let Some(hm) = self.fetch_monitor(a, store)? else {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::AppReport,
                format!(
                    "application report of VM {name} not fetched: no healthy monitor has a \
                     session with its agent (the agent rings again every 10 s)"
                ),
            );
            return Ok(());
        };
        if let Some(id) = store.app_fetch_request(&hm, &a.uuid, now_ms)? {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::AppReport,
                format!(
                    "FETCH_APP_REPORT {id} for VM {name} queued for monitor {hm} (dbell \
                     {vector:#x})"
                ),
            );
        }
        Ok(())
    }

    /// The monitor to fetch through: the one that wrote the doorbell, else one whose
    /// heartbeats from the VM arrive (DETECTED), on the VM's host first; healthy (UP and
    /// heart-beating into the HSDB) in the last QuickQuery; the one whose last fetch
    /// failed only if no other will do.
    fn fetch_monitor(
        &mut self,
        a: &VmAttention,
        store: &mut dyn HealthStore,
    ) -> Result<Option<Uuid>, FdeError> {
        let healthy = |fde: &Fde, hm: &Uuid| -> Option<HostId> {
            fde.hosts.iter().find_map(|h| {
                h.monitors
                    .iter()
                    .find(|m| m.uuid == *hm && fde.healthy(m))
                    .map(|_| h.id)
            })
        };
        let mut candidates: Vec<(u8, Uuid)> = Vec::new();
        if let Some(hm) = a.doorbell_hm
            && healthy(self, &hm).is_some()
        {
            candidates.push((0, hm));
        }
        for (hm, state) in store.vm_sessions(&a.uuid)? {
            if state != HeartbeatState::Detected || candidates.iter().any(|(_, c)| *c == hm) {
                continue;
            }
            match healthy(self, &hm) {
                Some(host) if host == a.host => candidates.push((1, hm)),
                Some(_) => candidates.push((2, hm)),
                None => {}
            }
        }
        let avoid = self.app_fetch_avoid.get(&a.uuid).copied();
        candidates.sort_by_key(|&(rank, hm)| (Some(hm) == avoid, rank, hm));
        Ok(candidates.first().map(|&(_, hm)| hm))
    }

    /// Every scan: handle the fetches their monitors completed (store, events, escalate,
    /// confirm), then log the confirmations that completed.
    pub(super) fn app_report_scan(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let done = store.app_fetches_done(&self.params.group, APP_FETCHES_PER_SCAN)?;
        for fetch in done {
            self.handle_fetch(now_ms, fetch, store)?;
        }
        let mut still = Vec::with_capacity(self.app_confirming.len());
        for c in std::mem::take(&mut self.app_confirming) {
            match store.command_result(c.id)? {
                None => still.push(c),
                Some(result) => {
                    let subject = Subject::Vm {
                        uuid: c.vm,
                        name: c.name.clone(),
                    };
                    let text = if result.starts_with("CLEARED") {
                        format!(
                            "application report generation {} of VM {} confirmed to its agent \
                             through monitor {} ({result}): it stops ringing for it",
                            c.generation, c.name, c.hm
                        )
                    } else {
                        tracing::warn!(vm = %c.vm, confirm = c.id, hm = %c.hm, %result,
                            "application report confirmation failed");
                        format!(
                            "CONFIRM_APP_REPORT {} (generation {}) of VM {} failed through \
                             monitor {}: {result}; the agent keeps ringing, a new cycle follows",
                            c.id, c.generation, c.name, c.hm
                        )
                    };
                    self.decide(now_ms, subject, Verdict::AppReport, text);
                }
            }
        }
        self.app_confirming = still;
        Ok(())
    }

    fn handle_fetch(
        &mut self,
        now_ms: i64,
        fetch: AppFetch,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let row = store.vm(&fetch.vm)?;
        let name = row
            .as_ref()
            .map_or_else(|| fetch.vm.to_string(), super::vm::display_name);
        let subject = Subject::Vm {
            uuid: fetch.vm,
            name: name.clone(),
        };
        let Some(row) = row else {
            store.app_fetch_handle(
                fetch.id,
                None,
                None,
                "not stored: VM not in the HSDB",
                now_ms,
            )?;
            self.decide(
                now_ms,
                subject,
                Verdict::AppReport,
                format!("application report of VM {name} dropped: the VM is not in the HSDB"),
            );
            return Ok(());
        };
        let report = match read_result(fetch.result.as_deref()) {
            Fetched::Report(r) => r,
            Fetched::Failed(why) => {
                let handled = store.app_fetch_handle(
                    fetch.id,
                    None,
                    None,
                    &format!("failed: {}", why.split(':').next().unwrap_or("")),
                    now_ms,
                )?;
                if handled == AppFetchHandled::AlreadyHandled {
                    return Ok(());
                }
                self.app_fetch_avoid.insert(fetch.vm, fetch.hm);
                let text = format!(
                    "application report of VM {name} not fetched through monitor {} \
                     (FETCH_APP_REPORT {}): {why}; fetched again at its next doorbell",
                    fetch.hm, fetch.id
                );
                tracing::warn!(vm = %fetch.vm, fetch = fetch.id, hm = %fetch.hm, "{text}");
                self.decide(now_ms, subject, Verdict::AppReport, text.clone());
                self.event(Event {
                    kind: EventKind::AppReportFailed,
                    vm: Some(fetch.vm),
                    hm: Some(fetch.hm),
                    text,
                    at: now_ms,
                });
                return Ok(());
            }
        };
        let note = format!(
            "report inc={:x} gen={} apps={}",
            report.inc,
            report.generation,
            report.apps.len()
        );
        let critical_failed: Vec<String> = report
            .apps
            .iter()
            .filter(|a| a.critical && a.state == AppState::Failure)
            .map(|a| a.name.clone())
            .collect();
        // A report with a critical FAILURE is confirmed only once the ladder has decided
        // (below): while a restart it decided has not begun, the agent must keep ringing.
        let confirm_now = critical_failed.is_empty().then_some(&fetch.hm);
        let handled =
            store.app_fetch_handle(fetch.id, Some(&report), confirm_now, &note, now_ms)?;
        let (stored, confirm) = match handled {
            AppFetchHandled::AlreadyHandled => return Ok(()),
            AppFetchHandled::Done { stored, confirm } => (stored, confirm),
        };
        self.app_fetch_avoid.remove(&fetch.vm);
        match stored {
            Some(AppStored::Stale { stored_gen }) => {
                self.decide(
                    now_ms,
                    subject,
                    Verdict::AppReport,
                    format!(
                        "application report generation {} of VM {name} (agent {:x}) ignored: \
                         generation {stored_gen} of the same agent is stored already",
                        report.generation, report.inc
                    ),
                );
                return Ok(());
            }
            Some(AppStored::Stored { changes, .. }) => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::AppReport,
                    format!(
                        "application report generation {} of VM {name} (agent {:x}) stored: \
                         {} application(s), {} changed{}",
                        report.generation,
                        report.inc,
                        report.apps.len(),
                        changes.len(),
                        confirm.map_or(String::new(), |id| format!(
                            "; CONFIRM_APP_REPORT {id} queued for monitor {}",
                            fetch.hm
                        ))
                    ),
                );
                for c in &changes {
                    self.app_change_event(now_ms, &row, &name, c, report.generation);
                }
                if let Some(id) = confirm {
                    self.watch_confirm(id, &fetch, &name, report.generation);
                }
                if !critical_failed.is_empty() {
                    let evidence_ms = fetch.done_ms.unwrap_or(now_ms);
                    match self.current_host(&row.uuid, row.current_host) {
                        Some(host) => self.critical_app_failure(
                            now_ms,
                            &row,
                            host,
                            evidence_ms,
                            &Evidence::Report(critical_failed),
                            store,
                        )?,
                        None => self.decide(
                            now_ms,
                            subject.clone(),
                            Verdict::NoAction,
                            format!(
                                "critical application(s) {} of VM {name} in FAILURE, but the \
                                 VM's host is not known: not escalated",
                                critical_failed.join(", ")
                            ),
                        ),
                    }
                    if self.jobs.iter().any(|j| j.vm.uuid == fetch.vm) {
                        // Decided, not begun (placement pending): the restart is in this
                        // engine's memory only. Unconfirmed, the agent rings again in
                        // 10 s, so a controller that stops now leaves the failure to be
                        // learned again by the next one.
                        self.decide(
                            now_ms,
                            subject,
                            Verdict::AppReport,
                            format!(
                                "application report generation {} of VM {name} not confirmed \
                                 yet: the restart decided for its critical application(s) \
                                 has not begun; the agent keeps ringing",
                                report.generation
                            ),
                        );
                    } else if let Some(id) = store.app_confirm_request(
                        &fetch.hm,
                        &fetch.vm,
                        report.generation,
                        now_ms,
                    )? {
                        self.decide(
                            now_ms,
                            subject,
                            Verdict::AppReport,
                            format!(
                                "CONFIRM_APP_REPORT {id} (generation {}) of VM {name} queued \
                                 for monitor {}",
                                report.generation, fetch.hm
                            ),
                        );
                        self.watch_confirm(id, &fetch, &name, report.generation);
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Log confirmation `id`'s outcome when its monitor completes it.
    fn watch_confirm(&mut self, id: i64, fetch: &AppFetch, name: &str, generation: u64) {
        if self.app_confirming.len() >= CONFIRMS_WATCHED {
            self.app_confirming.remove(0);
        }
        self.app_confirming.push(Confirming {
            id,
            vm: fetch.vm,
            name: name.to_owned(),
            generation,
            hm: fetch.hm,
        });
    }

    /// The event for one application whose row changed state (or appeared, or went).
    fn app_change_event(
        &mut self,
        now_ms: i64,
        row: &VmRow,
        vm_name: &str,
        c: &AppChange,
        generation: u64,
    ) {
        if !c.state_changed() {
            return;
        }
        let app = c.name();
        let what = transition(c);
        let (kind, text) = match &c.after {
            None => (
                EventKind::AppRemoved,
                format!(
                    "application {app} of VM {vm_name}: {what}: removed from the agent's \
                     configuration (report generation {generation})"
                ),
            ),
            Some(a) => {
                let detail = if a.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.detail)
                };
                match a.colour {
                    Colour::Green => (
                        EventKind::AppStateChanged,
                        format!("application {app} of VM {vm_name}: {what}{detail}"),
                    ),
                    Colour::Yellow => (
                        EventKind::AppStateWarning,
                        format!("application {app} of VM {vm_name}: {what}{detail}"),
                    ),
                    Colour::Red if !a.critical => (
                        EventKind::AppFailure,
                        format!(
                            "application {app} of VM {vm_name}: {what}{detail}; not critical: \
                             notified only, no VM action"
                        ),
                    ),
                    Colour::Red if a.state == AppState::Failure => (
                        EventKind::AppCriticalFailure,
                        format!(
                            "critical application {app} of VM {vm_name}: {what}{detail}; \
                             escalated (VM restart on its host, then relocation)"
                        ),
                    ),
                    Colour::Red => (
                        EventKind::AppCriticalFailure,
                        format!(
                            "critical application {app} of VM {vm_name}: {what}{detail}; needs \
                             repair in the guest (a VM restart does not mend it): not escalated"
                        ),
                    ),
                }
            }
        };
        tracing::info!(vm = %row.uuid, app, event = kind.name(), "{text}");
        self.event(Event {
            kind,
            vm: Some(row.uuid),
            hm: None,
            text,
            at: now_ms,
        });
    }

    /// A critical application of VM `row` on `host` is in FAILURE, learned at
    /// `evidence_ms` (a doorbell's time, or the time its report was fetched): the ladder —
    /// same-host restarts up to [`APP_SAME_HOST_RESTARTS`] within
    /// [`APP_RESTART_WINDOW_MS`](super::APP_RESTART_WINDOW_MS), then relocation (seed 004
    /// L13767-13771, gap 17) — once per failure: evidence older than the end of the VM's
    /// last restart or relocation was acted on already (its agent died with that
    /// restart), and a VM being restarted is not decided again.
    pub(super) fn critical_app_failure(
        &mut self,
        now_ms: i64,
        row: &VmRow,
        host: HostId,
        evidence_ms: i64,
        evidence: &Evidence,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let name = super::vm::display_name(row);
        let subject = Subject::Vm {
            uuid: row.uuid,
            name: name.clone(),
        };
        let what = match evidence {
            Evidence::Doorbell => format!("critical application of VM {name}"),
            Evidence::Report(apps) => format!(
                "critical application {} of VM {name} (from its report)",
                apps.join(", ")
            ),
        };
        if !row.managed {
            self.decide(
                now_ms,
                subject,
                Verdict::NoAction,
                format!("{what} failed, but the VM is not managed"),
            );
            return Ok(());
        }
        if self.is_busy(&row.uuid) {
            self.decide(
                now_ms,
                subject,
                Verdict::Busy,
                format!("{what} failed while the VM is being restarted"),
            );
            return Ok(());
        }
        if let Some(end) = store.last_restart_end(&row.uuid)?
            && evidence_ms < end
        {
            self.decide(
                now_ms,
                subject,
                Verdict::NoAction,
                format!(
                    "{what} in FAILURE at {} is older than the end of the VM's last restart \
                     or relocation at {}: that failure was acted on (its agent went with the \
                     restart); not escalated twice",
                    hvha_daemon::text::utc(evidence_ms),
                    hvha_daemon::text::utc(end)
                ),
            );
            return Ok(());
        }
        // Durable: counted from the VM's relocation rows, so a daemon restart forgets
        // nothing (gap 17).
        let done = store.same_host_restarts(&row.uuid, now_ms - super::APP_RESTART_WINDOW_MS)?;
        let text = format!(
            "{what} is in FAILURE; same-host restarts so far {done} of {APP_SAME_HOST_RESTARTS}"
        );
        self.event(Event {
            kind: EventKind::AppFailureDetected,
            vm: Some(row.uuid),
            hm: None,
            text: text.clone(),
            at: now_ms,
        });
        if self.params.restart_policy == RestartPolicy::Advisory {
            self.advise(now_ms, row, host, "a critical application failed");
            return Ok(());
        }
        // The ladder's relocation is its own answer to repeated failures: the budget
        // refuses only the same-host restarts (fde/budget.rs).
        if done < APP_SAME_HOST_RESTARTS
            && !self.budget_allows(now_ms, row, "a critical application failed", store)?
        {
            return Ok(());
        }
        let batch = self.executor.open_batch(1);
        if done < APP_SAME_HOST_RESTARTS {
            self.decide(
                now_ms,
                subject,
                Verdict::AppEscalation,
                format!("{text}: restart on the same host {}", self.host_name(host)),
            );
            self.queue_job(row.clone(), host, RestartKind::AppRestart, false, batch);
        } else {
            self.decide(
                now_ms,
                subject,
                Verdict::AppEscalation,
                format!("{text}: relocate to another host"),
            );
            self.queue_job(row.clone(), host, RestartKind::AppRelocation, false, batch);
        }
        Ok(())
    }
}

fn subject_name(subject: &Subject) -> String {
    match subject {
        Subject::Vm { name, .. } => name.clone(),
        other => other.to_string(),
    }
}
