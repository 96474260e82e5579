//! The daemon's housekeeping: what the HSDB would otherwise keep forever, and the
//! outbox's consumers watched.
//!
//! Once an hour (and once after the first turn) `hactl run` deletes:
//! - events every consumer has handled once they are older than `keep_days` (30) or
//!   beyond the newest `keep_rows` (100,000) — never one a consumer has not handled yet
//!   (the store does not prune past the slowest consumer's offset);
//! - events past the retention bound — older than `max_age_days` (90) or beyond the
//!   newest `max_rows` (1,000,000) — even if a consumer has not handled them: each
//!   consumer that loses events this way is logged at error with how many, counted in
//!   its notifier's status (`lost`), and a `NOTIFIER_EVENTS_LOST` event says so (never
//!   silent). The settings are `[event_retention]` (docs/operators.md, Notifications);
//! - commands to the monitors completed more than [`COMMAND_RETENTION_MS`] (1 day) ago;
//! - VMs gone for good: unmanaged, watched by no monitor and unchanged for
//!   [`VM_GONE_AFTER_MS`] (7 days) — a VM that moved away and an agent-less VM the
//!   operator manages are never pruned (docs/hsdb.md, pruning).
//!
//! Every [`BEHIND_CHECK_EVERY_MS`] (30 s) it looks at each consumer's backlog: one more
//! than `behind_events` events or `behind_age_s` behind is warned about (log at warn and a
//! `NOTIFIER_BEHIND` event, again every hour while it stays behind), and its return is
//! logged with a `NOTIFIER_CAUGHT_UP` event.
//!
//! Each pass logs what it deleted at info when it deleted anything. A failed pass is
//! reported by the loop like any other after-turn task and retried at the next turn.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use hsdb::{ConsumerLoss, EventPrune, Hsdb};

use super::runner::AfterTurn;
use super::status::DaemonStatus;
use crate::clock::Clock;
use crate::events::{Event, EventKind, record};
use crate::notify::config::Retention;
use crate::notify::worker::SharedStatuses;

/// How often housekeeping runs.
pub const HOUSEKEEPING_EVERY_MS: i64 = 3_600_000;
/// Completed commands are kept this long.
pub const COMMAND_RETENTION_MS: i64 = 86_400_000;
/// An unmanaged VM no monitor watches is forgotten after this long unchanged.
pub const VM_GONE_AFTER_MS: i64 = 7 * 86_400_000;
/// How often the consumers' backlogs are looked at.
pub const BEHIND_CHECK_EVERY_MS: i64 = 30_000;
/// A consumer that stays behind is warned about again this often.
pub const BEHIND_REPEAT_MS: i64 = 3_600_000;

/// What one pass deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Events.
    pub events: usize,
    /// Among them, per consumer, the events it had not handled (the retention bound).
    pub lost: Vec<ConsumerLoss>,
    /// Completed commands.
    pub commands: usize,
    /// VMs gone for good.
    pub vms: usize,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The housekeeping task the daemon's loop runs after its turns.
pub struct Housekeeping {
    clock: Arc<dyn Clock>,
    retention: Retention,
    statuses: Option<SharedStatuses>,
    next_ms: Option<i64>,
    next_behind_ms: Option<i64>,
    /// Consumers warned about as behind, with when.
    behind: BTreeMap<String, i64>,
}

impl Housekeeping {
    /// Housekeeping on `clock` with the default retention; its first pass comes after
    /// the loop's first turn.
    pub fn new(clock: Arc<dyn Clock>) -> Housekeeping {
        Housekeeping::with(clock, Retention::default(), None)
    }

    /// Housekeeping with `retention`, counting the losses of the notifiers in
    /// `statuses`.
    pub fn with(
        clock: Arc<dyn Clock>,
        retention: Retention,
        statuses: Option<SharedStatuses>,
    ) -> Housekeeping {
        Housekeeping {
            clock,
            retention,
            statuses,
            next_ms: None,
            next_behind_ms: None,
            behind: BTreeMap::new(),
        }
    }

    /// One pass at `now_ms` with `retention`, whatever the schedule. Losses are
    /// reported (log, `NOTIFIER_EVENTS_LOST`) here.
    pub fn pass(hsdb: &mut Hsdb, now_ms: i64, retention: &Retention) -> hsdb::Result<Pruned> {
        // Events first: a pruned VM's events stay (they have no foreign key on purpose).
        // What every consumer handled: by age, then the cap among what is left.
        let mut events = hsdb
            .prune_events(&EventPrune {
                before_ms: Some(now_ms.saturating_sub(ms(retention.keep))),
                keep_last: None,
                force: false,
            })?
            .deleted;
        events += hsdb
            .prune_events(&EventPrune {
                before_ms: None,
                keep_last: Some(retention.keep_rows),
                force: false,
            })?
            .deleted;
        // The retention bound, whatever the consumers.
        let mut lost: Vec<ConsumerLoss> = Vec::new();
        for prune in [
            EventPrune {
                before_ms: Some(now_ms.saturating_sub(ms(retention.max_age))),
                keep_last: None,
                force: true,
            },
            EventPrune {
                before_ms: None,
                keep_last: Some(retention.max_rows),
                force: true,
            },
        ] {
            let p = hsdb.prune_events(&prune)?;
            events += p.deleted;
            for l in p.lost {
                match lost.iter_mut().find(|x| x.consumer == l.consumer) {
                    Some(x) => {
                        x.lost += l.lost;
                        x.upto_id = x.upto_id.max(l.upto_id);
                    }
                    None => lost.push(l),
                }
            }
        }
        let mut written = Vec::new();
        for l in &lost {
            let text = format!(
                "consumer {}: {} event(s) it had not handled (ids {}..={}) deleted by the                  retention bound (event_retention.max_age_days = {}, max_rows = {}): they                  will never be delivered",
                l.consumer,
                l.lost,
                l.offset + 1,
                l.upto_id,
                retention.max_age.as_secs() / 86_400,
                retention.max_rows
            );
            tracing::error!(consumer = %l.consumer, lost = l.lost, "{text}");
            written.push(Event {
                kind: EventKind::NotifierEventsLost,
                vm: None,
                hm: None,
                text,
                at: now_ms,
            });
        }
        record(hsdb, &written)?;
        let commands = hsdb.prune_commands(now_ms - COMMAND_RETENTION_MS)?;
        let vms = hsdb.prune_vms(now_ms - VM_GONE_AFTER_MS)?;
        Ok(Pruned {
            events,
            lost,
            commands,
            vms,
        })
    }

    /// Look at every consumer's backlog at `now_ms`: warn about one newly behind (or
    /// still behind an hour after the last warning), tell when one has caught up.
    /// Returns the events written.
    pub fn check_behind(&mut self, hsdb: &mut Hsdb, now_ms: i64) -> hsdb::Result<Vec<Event>> {
        let r = self.retention;
        let mut out = Vec::new();
        let consumers = hsdb.event_consumers()?;
        for c in &consumers {
            let b = hsdb.event_backlog(c.last_id)?;
            let age_ms = b.oldest_ms.map_or(0, |o| now_ms.saturating_sub(o));
            let is_behind = b.count > r.behind_events || age_ms > ms(r.behind_age);
            match (is_behind, self.behind.get(&c.name).copied()) {
                (true, last) if last.is_none_or(|t| now_ms - t >= BEHIND_REPEAT_MS) => {
                    let text = format!(
                        "consumer {} is behind: {} event(s) after its offset {}, the oldest                          {} s old (thresholds: event_retention.behind_events = {},                          behind_age_s = {}); past event_retention.max_age_days = {} or                          max_rows = {} they are deleted undelivered",
                        c.name,
                        b.count,
                        c.last_id,
                        age_ms / 1000,
                        r.behind_events,
                        r.behind_age.as_secs(),
                        r.max_age.as_secs() / 86_400,
                        r.max_rows
                    );
                    tracing::warn!(consumer = %c.name, backlog = b.count, "{text}");
                    self.behind.insert(c.name.clone(), now_ms);
                    out.push(Event {
                        kind: EventKind::NotifierBehind,
                        vm: None,
                        hm: None,
                        text,
                        at: now_ms,
                    });
                }
                (false, Some(_)) => {
                    self.behind.remove(&c.name);
                    let text = format!(
                        "consumer {} has caught up: {} event(s) after its offset {}",
                        c.name, b.count, c.last_id
                    );
                    tracing::info!(consumer = %c.name, "{text}");
                    out.push(Event {
                        kind: EventKind::NotifierCaughtUp,
                        vm: None,
                        hm: None,
                        text,
                        at: now_ms,
                    });
                }
                _ => {}
            }
        }
        // A consumer that was forgotten is no longer watched.
        self.behind
            .retain(|name, _| consumers.iter().any(|c| &c.name == name));
        record(hsdb, &out)?;
        Ok(out)
    }
}

impl AfterTurn for Housekeeping {
    fn after_turn(&mut self, hsdb: &mut Hsdb, _: &mut DaemonStatus) -> Result<(), String> {
        let now = self.clock.now_ms();
        if self.next_behind_ms.is_none_or(|next| now >= next) {
            self.next_behind_ms = Some(now + BEHIND_CHECK_EVERY_MS);
            self.check_behind(hsdb, now)
                .map_err(|e| format!("housekeeping: consumers' backlogs: {e}"))?;
        }
        if self.next_ms.is_some_and(|next| now < next) {
            return Ok(());
        }
        // Whatever the outcome, the next pass is an interval away: a failing store is not
        // hammered after every turn.
        self.next_ms = Some(now + HOUSEKEEPING_EVERY_MS);
        let pruned = Housekeeping::pass(hsdb, now, &self.retention)
            .map_err(|e| format!("housekeeping: {e}"))?;
        if let Some(statuses) = &self.statuses {
            let mut all = statuses.lock().unwrap_or_else(PoisonError::into_inner);
            for l in &pruned.lost {
                if let Some(s) = all.iter_mut().find(|s| s.consumer == l.consumer) {
                    s.lost += l.lost;
                }
            }
        }
        if pruned != Pruned::default() {
            tracing::info!(
                events = pruned.events,
                undelivered = pruned.lost.iter().map(|l| l.lost).sum::<u64>(),
                commands = pruned.commands,
                vms = pruned.vms,
                "housekeeping: old events, completed commands and VMs gone for good deleted"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hsdb::{
        CommandKind, HelloId, HmRecord, HostId, HostRecord, MacAddr, Options, Synchronous,
        Transition, Uuid, Version,
    };

    use super::*;
    use crate::clock::ManualClock;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_700_000_000_000;

    fn uuid(last: u8) -> Uuid {
        let mut b = [0x11; 16];
        b[15] = last;
        Uuid(b)
    }

    fn store(dir: &tempfile::TempDir) -> Hsdb {
        let options = Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        };
        let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).unwrap();
        db.upsert_host(&HostRecord {
            id: HostId(1),
            name: "host-a".into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: "1".into(),
            cpu_milli: 8000,
            memory_mb: 8192,
            host_group: "hg1".into(),
        })
        .unwrap();
        db.register_hm(&HmRecord {
            uuid: uuid(0xa0),
            host: HostId(1),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            incarnation: HelloId::parse(b"1556303548.719328000.38").unwrap(),
            version: Version { major: 2, minor: 0 },
            at: T0,
        })
        .unwrap();
        db
    }

    #[test]
    fn test_a_pass_deletes_only_what_is_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let hm = uuid(0xa0);
        // Two events: one 31 days old, one a day old.
        db.record_event("HOST_FAILURE", None, None, "old", T0)
            .unwrap();
        db.record_event("HOST_FAILURE", None, None, "new", T0 + 30 * DAY)
            .unwrap();
        // A command completed 2 days before the pass, one still open.
        let done = db
            .enqueue_command(&hm, CommandKind::StopMonitoring, &uuid(1), T0)
            .unwrap();
        db.complete_command(done, "STOPPED", T0 + 29 * DAY).unwrap();
        let open = db
            .enqueue_command(&hm, CommandKind::StartMonitoring, &uuid(1), T0)
            .unwrap();
        // A VM discovered then forgotten by its only monitor (gone for good), and one the
        // monitor still watches.
        for (vm, forget) in [(uuid(1), true), (uuid(2), false)] {
            let mut batch = vec![Transition::Discovered {
                vm,
                hm,
                mac: MacAddr([2, 0, 0, 0, 1, vm.0[15]]),
                ostype: "linux".into(),
                ver_lower: Version { major: 2, minor: 0 },
                ver_upper: Version { major: 2, minor: 0 },
                at: T0,
            }];
            if forget {
                batch.push(Transition::Forget { vm, hm, at: T0 });
            }
            db.apply(&batch).unwrap();
        }
        let now = T0 + 31 * DAY;
        let pruned = Housekeeping::pass(&mut db, now, &Retention::default()).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                events: 1,
                lost: Vec::new(),
                commands: 1,
                vms: 1
            }
        );
        let texts: Vec<String> = db
            .events_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(texts, ["new"]);
        assert!(db.command(done).unwrap().is_none());
        assert!(db.command(open).unwrap().is_some());
        assert!(db.vm(&uuid(1)).unwrap().is_none());
        assert!(db.vm(&uuid(2)).unwrap().is_some());
        // Nothing left to delete: a second pass deletes nothing.
        assert_eq!(
            Housekeeping::pass(&mut db, now, &Retention::default()).unwrap(),
            Pruned::default()
        );
    }

    #[test]
    fn test_events_a_consumer_has_not_handled_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let first = db
            .record_event("HOST_FAILURE", None, None, "a", T0)
            .unwrap();
        db.record_event("HOST_FAILURE", None, None, "b", T0)
            .unwrap();
        db.set_consumer_offset("mailer", first).unwrap();
        let pruned = Housekeeping::pass(&mut db, T0 + 60 * DAY, &Retention::default()).unwrap();
        assert_eq!(pruned.events, 1, "only the event the mailer handled goes");
        assert_eq!(db.events_after(0, 10).unwrap().len(), 1);
    }

    #[test]
    fn test_past_the_retention_bound_events_go_and_the_loss_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let r = Retention {
            keep: std::time::Duration::from_secs(86_400),
            keep_rows: 2,
            max_age: std::time::Duration::from_secs(10 * 86_400),
            max_rows: 4,
            ..Retention::default()
        };
        // Six events, 20 days old; "mailer" has handled the first.
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(
                db.record_event("HOST_FAILURE", None, None, &format!("e{i}"), T0)
                    .unwrap(),
            );
        }
        db.set_consumer_offset("mailer", ids[0]).unwrap();
        // Within the bound (5 days later): only what mailer handled may go.
        let pruned = Housekeeping::pass(&mut db, T0 + 5 * DAY, &r).unwrap();
        assert_eq!(
            pruned.events, 2,
            "e0 (handled, old) and e1 (beyond max_rows 4)"
        );
        assert_eq!(pruned.lost.len(), 1, "{pruned:?}");
        assert_eq!(pruned.lost[0].consumer, "mailer");
        assert_eq!(pruned.lost[0].lost, 1, "e1 went undelivered");
        // Past max_age: everything old goes, and mailer's loss is told.
        let pruned = Housekeeping::pass(&mut db, T0 + 11 * DAY, &r).unwrap();
        assert_eq!(
            pruned.events, 4,
            "e2..e5 (the first loss event is 6 days old: kept)"
        );
        assert_eq!(pruned.lost[0].lost, 4);
        let lost_events: Vec<String> = db
            .events_after(0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "NOTIFIER_EVENTS_LOST")
            .map(|e| e.text)
            .collect();
        assert_eq!(lost_events.len(), 2, "one per pass that lost events");
        assert!(
            lost_events.iter().all(|t| t.contains("consumer mailer")),
            "{lost_events:?}"
        );
    }

    #[test]
    fn test_a_consumer_behind_is_warned_about_once_then_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let r = Retention {
            behind_events: 3,
            behind_age: std::time::Duration::from_secs(600),
            ..Retention::default()
        };
        let mut hk = Housekeeping::with(Arc::new(ManualClock::new(T0)), r, None);
        db.set_consumer_offset("hook", 0).unwrap();
        let mut last = 0;
        for i in 0..4 {
            last = db
                .record_event("VM_MOVED", None, None, &format!("m{i}"), T0)
                .unwrap();
        }
        let kinds = |evs: Vec<Event>| evs.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(hk.check_behind(&mut db, T0).unwrap()),
            [EventKind::NotifierBehind],
            "4 events > 3"
        );
        assert!(
            hk.check_behind(&mut db, T0 + 60_000).unwrap().is_empty(),
            "once"
        );
        assert_eq!(
            kinds(hk.check_behind(&mut db, T0 + BEHIND_REPEAT_MS).unwrap()),
            [EventKind::NotifierBehind],
            "again an hour later"
        );
        // It catches up (the two warnings are events too: it handles them as well).
        let newest = db.event_backlog(0).unwrap().newest_id.unwrap();
        assert!(newest > last);
        db.set_consumer_offset("hook", newest).unwrap();
        assert_eq!(
            kinds(hk.check_behind(&mut db, T0 + BEHIND_REPEAT_MS + 1).unwrap()),
            [EventKind::NotifierCaughtUp]
        );
        // By age: one event older than behind_age.
        db.record_event("VM_MOVED", None, None, "old", T0).unwrap();
        assert_eq!(
            kinds(hk.check_behind(&mut db, T0 + 601_000).unwrap()),
            [EventKind::NotifierBehind]
        );
    }

    #[test]
    fn test_the_loss_is_counted_in_the_notifier_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let statuses: SharedStatuses = Arc::default();
        statuses
            .lock()
            .unwrap()
            .push(crate::notify::worker::NotifierStatus {
                name: "pager".into(),
                consumer: "notifier:pager".into(),
                ..Default::default()
            });
        let r = Retention {
            max_rows: 2,
            keep_rows: 1,
            ..Retention::default()
        };
        let mut task = Housekeeping::with(
            Arc::new(ManualClock::new(T0)),
            r,
            Some(Arc::clone(&statuses)),
        );
        db.set_consumer_offset("notifier:pager", 0).unwrap();
        for i in 0..5 {
            db.record_event("VM_MOVED", None, None, &format!("m{i}"), T0)
                .unwrap();
        }
        let mut status = DaemonStatus::starting("hsdb.sqlite", "sim", "standard", T0);
        task.after_turn(&mut db, &mut status).unwrap();
        // The behind check ran first (5 events: not behind), then the pass: 3 of the 5
        // went past max_rows = 2.
        assert_eq!(statuses.lock().unwrap()[0].lost, 3);
        let kinds: Vec<String> = db
            .events_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["VM_MOVED", "VM_MOVED", "NOTIFIER_EVENTS_LOST"]);
    }

    #[test]
    fn test_the_task_runs_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = store(&dir);
        let clock = ManualClock::new(T0 + 31 * DAY);
        let mut task = Housekeeping::new(Arc::new(clock.clone()));
        let mut status = DaemonStatus::starting("hsdb.sqlite", "sim", "standard", T0);
        db.record_event("HOST_FAILURE", None, None, "a", T0)
            .unwrap();
        task.after_turn(&mut db, &mut status).unwrap();
        assert!(
            db.events_after(0, 10).unwrap().is_empty(),
            "first turn prunes"
        );
        db.record_event("HOST_FAILURE", None, None, "b", T0)
            .unwrap();
        clock.advance(HOUSEKEEPING_EVERY_MS - 1);
        task.after_turn(&mut db, &mut status).unwrap();
        assert_eq!(
            db.events_after(0, 10).unwrap().len(),
            1,
            "not before the interval"
        );
        clock.advance(1);
        task.after_turn(&mut db, &mut status).unwrap();
        assert!(db.events_after(0, 10).unwrap().is_empty(), "again after it");
    }
}
