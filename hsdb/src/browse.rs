//! Reads for people browsing the HSDB (the dashboard, docs/dashboard.md): the event
//! outbox newest first, filtered by kind and VM, one page at a time; one event; the
//! relocations in progress; and the one write an operator makes on a VM's reported
//! items: acknowledging them.
//!
//! Every read is one statement, bounded by its `limit`, and never takes the write lock.

use hvha_identity::Uuid;

use crate::codec::{UuidText, bits_from_sql, bits_to_sql};
use crate::db::{Param, params};
use crate::error::Result;
use crate::model::{EventRow, PendingRow};
use crate::store::{Hsdb, pending_row, pending_select};

/// Most kinds one [`EventFilter`] may name (each is one bound placeholder).
pub const MAX_FILTER_KINDS: usize = 200;

/// Which events [`Hsdb::events_newest`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only ids below this one (the next page after a page ending at this id).
    pub before: Option<i64>,
    /// Only these kinds (or, with `exclude`, every kind but these); `None`: every kind.
    /// At most [`MAX_FILTER_KINDS`] (more are ignored).
    pub kinds: Option<Vec<String>>,
    /// `kinds` lists the kinds to leave out.
    pub exclude: bool,
    /// Only events about this VM.
    pub vm: Option<Uuid>,
    /// At most this many rows.
    pub limit: u32,
}

const EVENT_SELECT: &str = "SELECT id, kind, vm, hm, text, created_ms FROM event";

fn event_row(c: &crate::codec::Columns<'_, '_>) -> Result<EventRow> {
    Ok(EventRow {
        id: c.int(0)?,
        kind: c.text(1)?,
        vm: c.opt_uuid(2, "vm")?,
        hm: c.opt_uuid(3, "hm")?,
        text: c.text(4)?,
        created_ms: c.int(5)?,
    })
}

impl Hsdb {
    /// Events matching `filter`, newest first (by id: ids grow with time on both
    /// backends). Page on by passing the last id returned as `before`.
    pub fn events_newest(&self, filter: &EventFilter) -> Result<Vec<EventRow>> {
        let vm = filter.vm.as_ref().map(UuidText::new);
        let mut sql = format!("{EVENT_SELECT} WHERE 1 = 1");
        let mut values: Vec<&dyn Param> = Vec::new();
        if let Some(before) = &filter.before {
            values.push(before);
            sql.push_str(&format!(" AND id < ?{}", values.len()));
        }
        if let Some(vm) = &vm {
            values.push(vm);
            sql.push_str(&format!(" AND vm = ?{}", values.len()));
        }
        if let Some(kinds) = &filter.kinds {
            let kinds = &kinds[..kinds.len().min(MAX_FILTER_KINDS)];
            if kinds.is_empty() {
                if !filter.exclude {
                    return Ok(Vec::new());
                }
            } else {
                let mut marks = Vec::with_capacity(kinds.len());
                for k in kinds {
                    values.push(k);
                    marks.push(format!("?{}", values.len()));
                }
                let not = if filter.exclude { "NOT " } else { "" };
                sql.push_str(&format!(" AND kind {not}IN ({})", marks.join(", ")));
            }
        }
        values.push(&filter.limit);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", values.len()));
        self.conn
            .query("events_newest", "event", &sql, &values, event_row)
    }

    /// Event `id`, if the outbox still has it.
    pub fn event(&self, id: i64) -> Result<Option<EventRow>> {
        self.conn.query_opt(
            "event",
            "event",
            &format!("{EVENT_SELECT} WHERE id = ?1"),
            params![id],
            event_row,
        )
    }

    /// The oldest `limit` items awaiting the controller, oldest first (what
    /// [`Hsdb::pending`] returns, bounded), and how many there are in all.
    pub fn pending_head(&self, limit: u32) -> Result<(Vec<PendingRow>, i64)> {
        self.read("pending_head", |tx| {
            let rows = tx.query(
                "pending_head",
                "pending",
                concat!(pending_select!(), " ORDER BY id LIMIT ?1"),
                params![limit],
                pending_row,
            )?;
            let total = tx
                .query_int("pending_head", "SELECT COUNT(*) FROM pending", params![])?
                .unwrap_or(0);
            Ok((rows, total))
        })
    }

    /// The ids of the relocations not ended yet, oldest first, at most `limit`.
    pub fn open_relocation_ids(&self, limit: u32) -> Result<Vec<i64>> {
        self.conn.query(
            "open_relocation_ids",
            "relocation",
            "SELECT id FROM relocation WHERE ended_ms IS NULL ORDER BY id LIMIT ?1",
            params![limit],
            |c| c.int(0),
        )
    }

    /// Acknowledge the items of VM `vm` that a NeedsAttention reply has reported (they
    /// carry a tag) — the operator's Acknowledge for one VM: they are deleted in one
    /// transaction and the VM's `short_msg` is recomputed from the doorbells still
    /// pending. Items no reply reported yet (no tag) are kept: the engine has not seen
    /// them. Monitor events are not VM items and are untouched. Returns the items
    /// deleted.
    pub fn acknowledge_vm(&mut self, vm: &Uuid) -> Result<usize> {
        const OP: &str = "acknowledge_vm";
        let key = UuidText::new(vm);
        self.write(OP, |tx| {
            if tx.is_pg() {
                // As in `acknowledge`: a doorbell committed meanwhile is seen below or
                // ORed in after.
                tx.exists(
                    OP,
                    "SELECT 1 FROM vm WHERE uuid = ?1 FOR UPDATE",
                    params![key],
                )?;
            }
            let deleted = tx.execute(
                OP,
                "DELETE FROM pending WHERE vm = ?1 AND tag IS NOT NULL AND kind <> 'HM_EVENT'",
                params![key],
            )?;
            let codes = tx.query(
                OP,
                "pending",
                "SELECT code FROM pending WHERE vm = ?1 AND kind = 'DOORBELL'",
                params![key],
                |c| c.int(0),
            )?;
            let short_msg = codes.into_iter().fold(0, |acc, c| acc | bits_from_sql(c));
            tx.execute(
                OP,
                "UPDATE vm SET short_msg = ?2 WHERE uuid = ?1",
                params![key, bits_to_sql(short_msg)],
            )?;
            Ok(deleted)
        })
    }
}
