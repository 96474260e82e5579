//! Events: the catalogue of what the control plane reports (the seed's names, seed
//! 004 L16475-16579 and the traces, plus ours where the seed has none), how an event is
//! written to the HSDB's durable outbox, and a log notifier that reads the outbox with
//! its own consumer offset.
//!
//! Delivery is at-least-once: a notifier records its offset after it has handled a
//! batch, so one that stops in between handles those events again after a restart;
//! within one run, an id at or below the last one handled is dropped.

use std::fmt;

use hsdb::{EventRow, Hsdb, Transition, Uuid};

/// How much an event matters (gap 18: the seed has `notification_level` but no mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Normal operation worth recording (a monitor back, a restart step).
    Info,
    /// Something an operator should look at; nothing was lost.
    Warning,
    /// A failure was detected or an action failed.
    Error,
    /// A VM or host is down and the control plane could not or would not recover it.
    Critical,
}

impl Severity {
    /// The name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `name` (`info`, `warning`, `error`, `critical`).
    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! catalogue {
    ($(
        $(#[$meta:meta])*
        $variant:ident => $name:literal, $severity:ident, $seed_type:expr;
    )+) => {
        /// Every event the control plane writes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$meta])* $variant,)+
        }

        impl EventKind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The name written in the outbox (`event.kind`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }

            /// Its severity.
            pub const fn severity(self) -> Severity {
                match self {
                    $(EventKind::$variant => Severity::$severity,)+
                }
            }

            /// The seed's event type number where it gives one (1 failure, 3 up, 4 HM
            /// response; seed 004 L3796, L3803, L7335-7341).
            pub const fn seed_type(self) -> Option<u8> {
                match self {
                    $(EventKind::$variant => $seed_type,)+
                }
            }
        }
    };
}

catalogue! {
    /// A monitor's state is UP (at the engine's first scan, and DOWN → UP) (seed 004 L3795-3797).
    ViosCaaStateUpDetected => "VIOS_CAA_STATE_UP_DETECTED", Info, Some(3);
    /// A monitor's state went DOWN (ours).
    ViosCaaStateDownDetected => "VIOS_CAA_STATE_DOWN_DETECTED", Warning, None;
    /// A monitor heart-beats into the HSDB (first scan, and silent → responsive) (seed 004 L3802-3804).
    ViosHmRespDetected => "VIOS_HM_RESP_DETECTED", Info, Some(4);
    /// A monitor stopped heart-beating for longer than `hm_silent_after` (ours).
    ViosHmNonrespDetected => "VIOS_HM_NONRESP_DETECTED", Warning, None;
    /// Node data: NODE_DOWN (seed 004 L7334-7336).
    ViosNodeFailure => "VIOS_NODE_FAILURE", Error, Some(1);
    /// Node data: NODE_UP (seed 004 L7340-7342).
    ViosNodeActive => "VIOS_NODE_ACTIVE", Info, Some(3);
    /// Node data: ADAPTER_UP (seed 004 L7337-7339).
    NetworkInterfaceActive => "NETWORK_INTERFACE_ACTIVE", Info, Some(3);
    /// Node data: ADAPTER_DOWN (ours; the seed shows only ADAPTER_UP's event).
    NetworkInterfaceFailure => "NETWORK_INTERFACE_FAILURE", Warning, None;
    /// Node data of another type (ours).
    ViosNodeEvent => "VIOS_NODE_EVENT", Info, None;
    /// Every monitor of a host unhealthy for hostFDT and the platform confirms it gone.
    HostFailureDetected => "HOST_FAILURE_DETECTED", Critical, Some(1);
    /// Every monitor of a host stopped on purpose and the host is off: not a failure (gap 3).
    HostShutdownDetected => "HOST_SHUTDOWN_DETECTED", Warning, None;
    /// Every monitor of a host unhealthy for hostFDT but the host answers: not relocated (ours).
    HostMonitorsUnresponsive => "HOST_MONITORS_UNRESPONSIVE", Error, None;
    /// A host whose failure was acted on has healthy monitors again (seed: "CEC IS UP,
    /// READY FOR RELOCATION", seed 004 L3784-3801).
    HostActive => "HOST_ACTIVE", Info, Some(3);
    /// missedHb ≥ VMFDT and the VM does not answer a ping (seed 004 L13484-13492).
    VmFailureDetected => "VM_FAILURE_DETECTED", Error, Some(1);
    /// Not running, and silent ≥ 2 × VMFDT (seed 004 L4869-4871; gap 9).
    VmNonrespDetected => "VM_NONRESP_DETECTED", Error, None;
    /// Migrating for more than a day with no heartbeat (seed 004 L4866-4867).
    VmLpmHangDetected => "VM_LPM_HANG_DETECTED", Error, None;
    /// A critical application failed and the ladder acts on it (ours: the doorbell bit
    /// `DBELL_APP_CRITICAL_FAILURE`, or a report listing it in FAILURE).
    AppFailureDetected => "APP_FAILURE_DETECTED", Error, None;
    /// An application reported GREEN (NORMAL) after another state, or first reported so
    /// (ours; docs/controlplane.md "Application reports").
    AppStateChanged => "APP_STATE_CHANGED", Info, None;
    /// An application reported YELLOW (UNSET, FAILING, TO_STOP, TO_START): in transition
    /// or not judged (ours).
    AppStateWarning => "APP_STATE_WARNING", Warning, None;
    /// A non-critical application reported RED (FAILURE, ABNORMAL): notified only, no VM
    /// action (ours; issue 11).
    AppFailure => "APP_FAILURE", Warning, None;
    /// A critical application reported RED: FAILURE (escalated, see
    /// APP_FAILURE_DETECTED) or ABNORMAL (needs repair in the guest; not escalated) (ours).
    AppCriticalFailure => "APP_CRITICAL_FAILURE", Critical, None;
    /// An application is no longer in its VM's report: removed from the agent's
    /// configuration (ours).
    AppRemoved => "APP_REMOVED", Info, None;
    /// An application report could not be fetched (NO_SESSION, TIMEOUT, BAD_REPORT):
    /// fetched again at the VM's next doorbell (ours).
    AppReportFailed => "APP_REPORT_FAILED", Warning, None;
    /// An application doorbell (`shortMsg`) arrived (seed: SHORTMSG task, seed 004 L13649-13651).
    VmDoorbell => "VM_DOORBELL", Info, None;
    /// A managed VM moved (live migration): not a failure (seed 004 L13016-13037).
    VmMoved => "VM_MOVED", Info, None;
    /// Advisory mode: a restart the engine would have run (gap 14).
    VmRestartAdvised => "VM_RESTART_ADVISED", Critical, None;
    /// A VM to restart fits on no host (never dropped silently).
    VmRestartNoHost => "VM_RESTART_NO_HOST", Critical, None;
    /// One step of a restart (the seed's progress lines, seed 004 L17395-17407).
    VmRestartProgress => "VM_RESTART_PROGRESS", Info, None;
    /// A restart completed on its target host.
    VmRestartCompleted => "VM_RESTART_COMPLETED", Info, None;
    /// A restart failed; the VM is not running on the target.
    VmRestartFailed => "VM_RESTART_FAILED", Critical, None;
    /// A step that does not fail the restart failed (cleanup on a dead host, seed 004
    /// L17716-17746; gap 16).
    VmRestartStepFailed => "VM_RESTART_STEP_FAILED", Warning, None;
    /// "N out of N VMs have been successfully restarted" (seed 004 L17746).
    RestartSummary => "RESTART_SUMMARY", Info, None;
    /// A cleanup owed to a host that was unreachable was done when it came back (the
    /// seed's CLEAN_LPARS, seed 004 L3784-3801; ours: its outcome).
    VmCleanupDone => "VM_CLEANUP_DONE", Info, None;
    /// A copy of a VM restarted elsewhere was found running on a returning host and was
    /// stopped there: a VM never runs on two hosts (ours).
    VmDuplicateStopped => "VM_DUPLICATE_STOPPED", Error, None;
    /// A VM failed again after `vm_restart_limit` restarts within `vm_restart_window`:
    /// not restarted (ours; vSphere HA's maximum per-VM resets).
    VmRestartBudgetExhausted => "VM_RESTART_BUDGET_EXHAUSTED", Critical, None;
    /// `hactl host evacuate`: every VM moved off, the host is in maintenance (ours,
    /// seed 004 §1.2.1).
    HostMaintenanceStarted => "HOST_MAINTENANCE_STARTED", Info, None;
    /// `hactl host restore`: maintenance ended, the home VMs returned (ours).
    HostMaintenanceEnded => "HOST_MAINTENANCE_ENDED", Info, None;
    /// An evacuation or restore was refused or failed in part; nothing is hidden (ours).
    HostMaintenanceRefused => "HOST_MAINTENANCE_REFUSED", Warning, None;
    /// `hactl vm move` (or the dashboard): the VM runs on the target now (ours; the
    /// seed's dashboard moves a VM, seed 004 L16710-17200).
    VmMoveDone => "VM_MOVE_DONE", Info, None;
    /// A move of one VM was refused (the VM cannot go there now: the reason) or failed
    /// (ours).
    VmMoveRefused => "VM_MOVE_REFUSED", Warning, None;
    /// The periodic verify: the loss of some host would leave VMs without a place (ours;
    /// the seed's verification, seed 004 L4612-4619; vSphere's admission control).
    GroupCapacityShort => "GROUP_CAPACITY_SHORT", Warning, None;
    /// The periodic verify: the group can absorb the loss of any one host again (ours).
    GroupCapacityOk => "GROUP_CAPACITY_OK", Info, None;
    /// Discovery found a VM the HSDB did not have (ours; the seed reports discovery
    /// changes to the user, seed 004 L4612-4613). Unmanaged unless `manage_new`.
    VmDiscovered => "VM_DISCOVERED", Info, None;
    /// Discovery no longer finds a VM on the host it was known on nor on any other host
    /// that answered: kept in the HSDB, not relocated (ours).
    VmVanished => "VM_VANISHED", Warning, None;
    /// A VM discovery had called vanished was found again (ours).
    VmReappeared => "VM_REAPPEARED", Info, None;
    /// Discovery found a platform host the HSDB did not have; added without a host
    /// group (ours).
    HostDiscovered => "HOST_DISCOVERED", Info, None;
    /// A discovery or verification activity failed (ours; seed 004 L4612-4619: issues
    /// found during a discovery are reported).
    ActivityFailed => "ACTIVITY_FAILED", Warning, None;
    /// A notifier (an outbox consumer) is more than `behind_events` events or
    /// `behind_age_s` behind (ours; docs/operators.md, Notifications).
    NotifierBehind => "NOTIFIER_BEHIND", Warning, None;
    /// A notifier that was behind has caught up (ours).
    NotifierCaughtUp => "NOTIFIER_CAUGHT_UP", Info, None;
    /// The retention bound deleted events a notifier had not delivered (ours).
    NotifierEventsLost => "NOTIFIER_EVENTS_LOST", Error, None;
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl EventKind {
    /// The kind named `name` in the catalogue.
    pub fn by_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// Severity of an outbox row by its kind name; a name not in the catalogue (written by
/// another writer) is `Info`.
pub fn severity_of(name: &str) -> Severity {
    EventKind::ALL
        .iter()
        .find(|k| k.name() == name)
        .map_or(Severity::Info, |k| k.severity())
}

/// An event to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What.
    pub kind: EventKind,
    /// The VM concerned.
    pub vm: Option<Uuid>,
    /// The monitor concerned.
    pub hm: Option<Uuid>,
    /// Words for a human, with the numbers behind them.
    pub text: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

impl Event {
    /// The outbox transition that writes it.
    pub fn transition(&self) -> Transition {
        Transition::Event {
            kind: self.kind.name().to_owned(),
            vm: self.vm,
            hm: self.hm,
            text: self.text.clone(),
            at: self.at,
        }
    }
}

/// Write events to the outbox in one transaction.
pub fn record(db: &mut Hsdb, events: &[Event]) -> hsdb::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let batch: Vec<Transition> = events.iter().map(Event::transition).collect();
    db.apply(&batch).map(|_| ())
}

/// A notifier that logs each event of the outbox once, through `tracing`, at a level that
/// follows its severity; it keeps its own consumer offset in the HSDB.
#[derive(Debug)]
pub struct LogNotifier {
    consumer: String,
    last_id: Option<i64>,
    batch: u32,
}

impl LogNotifier {
    /// A notifier recording its offset as consumer `consumer`.
    pub fn new(consumer: &str) -> LogNotifier {
        LogNotifier {
            consumer: consumer.to_owned(),
            last_id: None,
            batch: 500,
        }
    }

    /// Log every event after the recorded offset, in batches of at most 500, and record
    /// the new offset after each batch. Returns the events logged.
    pub fn poll(&mut self, db: &mut Hsdb) -> hsdb::Result<Vec<EventRow>> {
        let stored = db.consumer_offset(&self.consumer)?.unwrap_or(0);
        let mut from = self.last_id.map_or(stored, |l| l.max(stored));
        let mut logged = Vec::new();
        loop {
            let rows = db.events_after(from, self.batch)?;
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            for row in rows {
                if self.last_id.is_some_and(|l| row.id <= l) {
                    continue;
                }
                log_event(&row);
                self.last_id = Some(row.id);
                logged.push(row);
            }
            db.set_consumer_offset(&self.consumer, last)?;
            from = last;
        }
        Ok(logged)
    }
}

fn log_event(row: &EventRow) {
    let vm = row.vm.map(|u| u.to_string()).unwrap_or_default();
    let hm = row.hm.map(|u| u.to_string()).unwrap_or_default();
    let severity = severity_of(&row.kind);
    match severity {
        Severity::Info => tracing::info!(
            target: "hactl::event", id = row.id, kind = %row.kind, %severity, vm, hm,
            at_ms = row.created_ms, "{}", row.text
        ),
        Severity::Warning => tracing::warn!(
            target: "hactl::event", id = row.id, kind = %row.kind, %severity, vm, hm,
            at_ms = row.created_ms, "{}", row.text
        ),
        Severity::Error | Severity::Critical => tracing::error!(
            target: "hactl::event", id = row.id, kind = %row.kind, %severity, vm, hm,
            at_ms = row.created_ms, "{}", row.text
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ev(kind: EventKind, text: &str, at: i64) -> Event {
        Event {
            kind,
            vm: Some(Uuid([1; 16])),
            hm: None,
            text: text.to_owned(),
            at,
        }
    }

    #[test]
    fn test_catalogue_names_are_unique_and_seed_names_kept() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
        for seed in [
            "VIOS_CAA_STATE_UP_DETECTED",
            "VIOS_HM_RESP_DETECTED",
            "VIOS_NODE_FAILURE",
            "NETWORK_INTERFACE_ACTIVE",
            "VIOS_NODE_ACTIVE",
            "VM_FAILURE_DETECTED",
            "VM_NONRESP_DETECTED",
            "VM_LPM_HANG_DETECTED",
        ] {
            assert!(names.contains(&seed), "{seed}");
        }
        assert_eq!(severity_of("VM_FAILURE_DETECTED"), Severity::Error);
        assert_eq!(severity_of("SOMETHING_ELSE"), Severity::Info);
        assert_eq!(EventKind::ViosHmRespDetected.seed_type(), Some(4));
        // The kinds the HSDB writes inside a discovery's transaction are catalogued.
        for (hsdb_name, kind) in [
            (hsdb::EVENT_VM_DISCOVERED, EventKind::VmDiscovered),
            (hsdb::EVENT_VM_VANISHED, EventKind::VmVanished),
            (hsdb::EVENT_VM_REAPPEARED, EventKind::VmReappeared),
            (hsdb::EVENT_HOST_DISCOVERED, EventKind::HostDiscovered),
        ] {
            assert_eq!(EventKind::by_name(hsdb_name), Some(kind));
        }
    }

    #[test]
    fn test_log_notifier_logs_each_event_once_and_resumes_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsdb.sqlite");
        let mut db = Hsdb::open(&path, &hsdb::Options::default()).unwrap();
        record(
            &mut db,
            &[
                ev(EventKind::VmFailureDetected, "one", 1),
                ev(EventKind::VmRestartProgress, "two", 2),
            ],
        )
        .unwrap();
        let mut n = LogNotifier::new("log");
        let got: Vec<String> = n
            .poll(&mut db)
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(got, ["one", "two"]);
        assert!(n.poll(&mut db).unwrap().is_empty(), "nothing twice");
        record(&mut db, &[ev(EventKind::RestartSummary, "three", 3)]).unwrap();
        // A new notifier (a restart) starts from the stored offset.
        drop(db);
        let mut db = Hsdb::open(&path, &hsdb::Options::default()).unwrap();
        let mut again = LogNotifier::new("log");
        let got: Vec<String> = again
            .poll(&mut db)
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(got, ["three"]);
        // A stale stored offset (crash between logging and recording) does not make a
        // running notifier log twice.
        db.set_consumer_offset("log", 0).unwrap();
        assert!(again.poll(&mut db).unwrap().is_empty());
        // Another consumer has its own offset.
        assert_eq!(LogNotifier::new("mail").poll(&mut db).unwrap().len(), 3);
    }
}
