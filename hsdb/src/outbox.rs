//! The event outbox's consumers: who reads it and how far, how far behind each is, and
//! pruning that respects them (docs/hsdb.md, pruning).
//!
//! An event is deleted only once every registered consumer (`event_consumer`) has
//! handled it, unless the prune is forced ([`EventPrune::force`]): the retention bound
//! past which events go whatever the consumers. A forced prune says, per consumer, how
//! many events it had not handled yet ([`EventPruned::lost`]), so the caller can report
//! the loss — it is never silent.

use crate::apply::{OUTBOX_LOCK, PG_OUTBOX_LOCK};
use crate::control_model::EventPrune;
use crate::db::params;
use crate::error::Result;
use crate::store::Hsdb;

/// A registered consumer of the outbox and its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConsumer {
    /// Its name.
    pub name: String,
    /// The id of the last event it has handled.
    pub last_id: i64,
}

/// The events a consumer has not handled yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventBacklog {
    /// How many.
    pub count: u64,
    /// The creation time of the oldest, ms since the Unix epoch.
    pub oldest_ms: Option<i64>,
    /// The newest event's id in the outbox (handled or not).
    pub newest_id: Option<i64>,
}

/// Events a forced prune deleted before consumer `consumer` handled them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLoss {
    /// The consumer.
    pub consumer: String,
    /// Its offset at the time.
    pub offset: i64,
    /// How many of its unhandled events were deleted.
    pub lost: u64,
    /// The newest id deleted among them.
    pub upto_id: i64,
}

/// What [`Hsdb::prune_events`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPruned {
    /// Events deleted.
    pub deleted: usize,
    /// Per consumer, the events it had not handled that went (forced prunes only).
    pub lost: Vec<ConsumerLoss>,
}

impl Hsdb {
    /// Every registered consumer, by name.
    pub fn event_consumers(&self) -> Result<Vec<EventConsumer>> {
        self.conn.query(
            "event_consumers",
            "event_consumer",
            "SELECT name, last_id FROM event_consumer ORDER BY name",
            params![],
            |c| {
                Ok(EventConsumer {
                    name: c.text(0)?,
                    last_id: c.int(1)?,
                })
            },
        )
    }

    /// Register consumer `name` if it is not yet: at the newest event (`at_end`, it will
    /// see only events written from now on) or at 0 (it will see every event still in
    /// the outbox). Returns its offset, the stored one when it was registered already.
    pub fn register_consumer(&mut self, name: &str, at_end: bool) -> Result<i64> {
        const OP: &str = "register_consumer";
        self.write(OP, |tx| {
            if tx.is_pg() {
                // The newest id read under the outbox lock is the newest committed.
                tx.exists(OP, PG_OUTBOX_LOCK, params![OUTBOX_LOCK])?;
            }
            if let Some(stored) = tx.query_int(
                OP,
                "SELECT last_id FROM event_consumer WHERE name = ?1",
                params![name],
            )? {
                return Ok(stored);
            }
            let offset = if at_end {
                tx.query_int(OP, "SELECT MAX(id) FROM event", params![])?
                    .unwrap_or(0)
                    .max(0)
            } else {
                0
            };
            tx.execute(
                OP,
                "INSERT INTO event_consumer (name, last_id) VALUES (?1, ?2)",
                params![name, offset],
            )?;
            Ok(offset)
        })
    }

    /// Forget consumer `name` (a notifier removed from the configuration): it no longer
    /// holds events back. Returns whether it was registered.
    pub fn forget_consumer(&mut self, name: &str) -> Result<bool> {
        Ok(self.autocommit(
            "forget_consumer",
            "DELETE FROM event_consumer WHERE name = ?1",
            params![name],
        )? > 0)
    }

    /// The events after `offset`: how many, the oldest's time, and the newest id.
    pub fn event_backlog(&self, offset: i64) -> Result<EventBacklog> {
        const OP: &str = "event_backlog";
        let found = self.conn.query_opt(
            OP,
            "event",
            "SELECT COUNT(*), MIN(created_ms), (SELECT MAX(id) FROM event) FROM event \
             WHERE id > ?1",
            params![offset],
            |c| Ok((c.int(0)?, c.opt_int(1)?, c.opt_int(2)?)),
        )?;
        let (count, oldest_ms, newest_id) = found.unwrap_or((0, None, None));
        Ok(EventBacklog {
            count: u64::try_from(count).unwrap_or(0),
            oldest_ms,
            newest_id,
        })
    }

    /// Delete old events: see [`EventPrune`]. Unless forced, never an event a registered
    /// consumer has not handled; a forced prune reports, per consumer, the unhandled
    /// events it deleted.
    pub fn prune_events(&mut self, prune: &EventPrune) -> Result<EventPruned> {
        const OP: &str = "prune_events";
        self.write(OP, |tx| {
            // Never past the slowest consumer's offset unless forced.
            let mut bound = i64::MAX;
            if !prune.force
                && let Some(slowest) =
                    tx.query_int(OP, "SELECT MIN(last_id) FROM event_consumer", params![])?
            {
                bound = slowest;
            }
            // The ids that go: up to `upto` (the keep-last rule), and those created
            // before `before_ms`, both at most `bound`.
            let mut upto = i64::MIN;
            if let Some(keep) = prune.keep_last
                && let Some(newest) = tx.query_int(OP, "SELECT MAX(id) FROM event", params![])?
            {
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                upto = newest.saturating_sub(keep).min(bound);
            }
            let before = prune.before_ms.unwrap_or(i64::MIN);
            let doomed = "(id <= ?1 OR created_ms < ?2) AND id <= ?3";
            let mut lost = Vec::new();
            if prune.force {
                let consumers = tx.query(
                    OP,
                    "event_consumer",
                    "SELECT name, last_id FROM event_consumer ORDER BY name",
                    params![],
                    |c| Ok((c.text(0)?, c.int(1)?)),
                )?;
                for (consumer, offset) in consumers {
                    let found = tx.query_opt(
                        OP,
                        "event",
                        &format!("SELECT COUNT(*), MAX(id) FROM event WHERE id > ?4 AND {doomed}"),
                        params![upto, before, bound, offset],
                        |c| Ok((c.int(0)?, c.opt_int(1)?)),
                    )?;
                    if let Some((n, Some(upto_id))) = found
                        && n > 0
                    {
                        lost.push(ConsumerLoss {
                            consumer,
                            offset,
                            lost: u64::try_from(n).unwrap_or(0),
                            upto_id,
                        });
                    }
                }
            }
            let deleted = tx.execute(
                OP,
                &format!("DELETE FROM event WHERE {doomed}"),
                params![upto, before, bound],
            )?;
            Ok(EventPruned { deleted, lost })
        })
    }
}
