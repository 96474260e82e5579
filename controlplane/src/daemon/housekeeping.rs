//! The daemon's housekeeping: what the HSDB would otherwise keep forever.
//!
//! Once an hour (and once after the first turn) `hactl run` deletes:
//! - events older than [`EVENT_RETENTION_MS`] (30 days), and any beyond the newest
//!   [`EVENT_KEEP_LAST`] whatever their age — never one a consumer has not handled yet
//!   (the store does not prune past the slowest consumer's offset);
//! - commands to the monitors completed more than [`COMMAND_RETENTION_MS`] (1 day) ago;
//! - VMs gone for good: unmanaged, watched by no monitor and unchanged for
//!   [`VM_GONE_AFTER_MS`] (7 days) — a VM that moved away and an agent-less VM the
//!   operator manages are never pruned (docs/hsdb.md, pruning).
//!
//! Each pass logs what it deleted at info when it deleted anything. A failed pass is
//! reported by the loop like any other after-turn task and retried at the next turn.

use std::sync::Arc;

use hsdb::{EventPrune, Hsdb};

use super::runner::AfterTurn;
use super::status::DaemonStatus;
use crate::clock::Clock;

/// How often housekeeping runs.
pub const HOUSEKEEPING_EVERY_MS: i64 = 3_600_000;
/// Events are kept this long.
pub const EVENT_RETENTION_MS: i64 = 30 * 86_400_000;
/// The newest this many events are kept whatever their age.
pub const EVENT_KEEP_LAST: u64 = 100_000;
/// Completed commands are kept this long.
pub const COMMAND_RETENTION_MS: i64 = 86_400_000;
/// An unmanaged VM no monitor watches is forgotten after this long unchanged.
pub const VM_GONE_AFTER_MS: i64 = 7 * 86_400_000;

/// What one pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Events.
    pub events: usize,
    /// Completed commands.
    pub commands: usize,
    /// VMs gone for good.
    pub vms: usize,
}

/// The housekeeping task the daemon's loop runs after its turns.
pub struct Housekeeping {
    clock: Arc<dyn Clock>,
    next_ms: Option<i64>,
}

impl Housekeeping {
    /// Housekeeping on `clock`; its first pass comes after the loop's first turn.
    pub fn new(clock: Arc<dyn Clock>) -> Housekeeping {
        Housekeeping {
            clock,
            next_ms: None,
        }
    }

    /// One pass at `now_ms`, whatever the schedule.
    pub fn pass(hsdb: &mut Hsdb, now_ms: i64) -> hsdb::Result<Pruned> {
        // Events first: a pruned VM's events stay (they have no foreign key on purpose).
        let events = hsdb.prune_events(&EventPrune {
            before_ms: Some(now_ms - EVENT_RETENTION_MS),
            keep_last: None,
            force: false,
        })?;
        // Then the cap, among what the age rule left.
        let events = events
            + hsdb.prune_events(&EventPrune {
                before_ms: None,
                keep_last: Some(EVENT_KEEP_LAST),
                force: false,
            })?;
        let commands = hsdb.prune_commands(now_ms - COMMAND_RETENTION_MS)?;
        let vms = hsdb.prune_vms(now_ms - VM_GONE_AFTER_MS)?;
        Ok(Pruned {
            events,
            commands,
            vms,
        })
    }
}

impl AfterTurn for Housekeeping {
    fn after_turn(&mut self, hsdb: &mut Hsdb, _: &mut DaemonStatus) -> Result<(), String> {
        let now = self.clock.now_ms();
        if self.next_ms.is_some_and(|next| now < next) {
            return Ok(());
        }
        // Whatever the outcome, the next pass is an interval away: a failing store is not
        // hammered after every turn.
        self.next_ms = Some(now + HOUSEKEEPING_EVERY_MS);
        let pruned = Housekeeping::pass(hsdb, now).map_err(|e| format!("housekeeping: {e}"))?;
        if pruned != Pruned::default() {
            tracing::info!(
                events = pruned.events,
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
        let pruned = Housekeeping::pass(&mut db, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                events: 1,
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
        assert_eq!(Housekeeping::pass(&mut db, now).unwrap(), Pruned::default());
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
        let pruned = Housekeeping::pass(&mut db, T0 + 60 * DAY).unwrap();
        assert_eq!(pruned.events, 1, "only the event the mailer handled goes");
        assert_eq!(db.events_after(0, 10).unwrap().len(), 1);
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
