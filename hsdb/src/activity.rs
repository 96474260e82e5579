//! Activities (schema v11, docs/hsdb.md §11): a quick discovery, a deep discovery or a
//! verification of a host group, requested by an operator (the dashboard, `hactl
//! discover`) or by the leader's schedule, and carried out by the leader of the group.
//!
//! A row goes REQUESTED → RUNNING → DONE | FAILED. Whoever carries it out writes its
//! name (`runner`) and, with every progress line, a heartbeat; a RUNNING row whose
//! runner stopped writing (a controller that died) is failed by
//! [`Hsdb::fail_abandoned_activities`] so the page never shows it running forever.
//!
//! Activity writes are never fenced by the leader lease: an activity is a report of
//! work, and the work's own writes (what discovery found) are checked where they are
//! made.

use crate::codec::Columns;
use crate::db::params;
use crate::error::{Error, Result};
use crate::store::Hsdb;

/// What an activity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    /// The platform's inventory: hosts, VMs, their states (seed: hourly, seed 004 L4475).
    QuickDiscovery,
    /// The inventory with every VM's details, then the verification (seed 004
    /// L4607-4609: "Deep Discovery means that discovery is followed by a complete
    /// verification step").
    DeepDiscovery,
    /// The verification alone: can the group absorb the loss of each host
    /// (`hactl verify`).
    Verify,
}

impl ActivityKind {
    /// Every kind.
    pub const ALL: [ActivityKind; 3] = [
        ActivityKind::QuickDiscovery,
        ActivityKind::DeepDiscovery,
        ActivityKind::Verify,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActivityKind::QuickDiscovery => "QUICK_DISCOVERY",
            ActivityKind::DeepDiscovery => "DEEP_DISCOVERY",
            ActivityKind::Verify => "VERIFY",
        }
    }

    /// The kind stored as `text`.
    pub fn from_text(text: &str) -> Option<ActivityKind> {
        ActivityKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an activity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityState {
    /// Written, waiting for the group's leader.
    Requested,
    /// Being carried out.
    Running,
    /// Done (`summary` says what it found).
    Done,
    /// Failed (`summary` says why).
    Failed,
}

impl ActivityState {
    /// Every state.
    pub const ALL: [ActivityState; 4] = [
        ActivityState::Requested,
        ActivityState::Running,
        ActivityState::Done,
        ActivityState::Failed,
    ];

    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActivityState::Requested => "REQUESTED",
            ActivityState::Running => "RUNNING",
            ActivityState::Done => "DONE",
            ActivityState::Failed => "FAILED",
        }
    }

    /// The state stored as `text`.
    pub fn from_text(text: &str) -> Option<ActivityState> {
        ActivityState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The activity has ended.
    pub const fn ended(self) -> bool {
        matches!(self, ActivityState::Done | ActivityState::Failed)
    }
}

impl std::fmt::Display for ActivityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An activity (`activity` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// Id, increasing.
    pub id: i64,
    /// The host group.
    pub host_group: String,
    /// What.
    pub kind: ActivityKind,
    /// Where it is.
    pub state: ActivityState,
    /// Who asked: `cli:<user>`, `dashboard:<user>`, `schedule`.
    pub requested_by: String,
    /// When it was written.
    pub created_ms: i64,
    /// When it started running.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// The last progress line.
    pub progress: String,
    /// What it found (DONE) or why it failed (FAILED).
    pub summary: Option<String>,
    /// Who carries it out (a controller's id, `hactl discover` with its process id).
    pub runner: Option<String>,
    /// The last time the runner wrote progress.
    pub heartbeat_ms: Option<i64>,
}

/// Longest progress line or summary stored, bytes (longer ones are cut at a character
/// boundary with `…`): a row stays small enough for a page that lists many.
pub const MAX_ACTIVITY_TEXT: usize = 16 * 1024;

const ACTIVITY_SELECT: &str = "SELECT id, host_group, kind, state, requested_by, created_ms, \
    started_ms, ended_ms, progress, summary, runner, heartbeat_ms FROM activity";

fn activity_row(c: &Columns<'_, '_>) -> Result<ActivityRow> {
    Ok(ActivityRow {
        id: c.int(0)?,
        host_group: c.text(1)?,
        kind: c.enumeration(
            2,
            "kind",
            "QUICK_DISCOVERY, DEEP_DISCOVERY or VERIFY",
            ActivityKind::from_text,
        )?,
        state: c.enumeration(
            3,
            "state",
            "REQUESTED, RUNNING, DONE or FAILED",
            ActivityState::from_text,
        )?,
        requested_by: c.text(4)?,
        created_ms: c.int(5)?,
        started_ms: c.opt_int(6)?,
        ended_ms: c.opt_int(7)?,
        progress: c.text(8)?,
        summary: c.opt_text(9)?,
        runner: c.opt_text(10)?,
        heartbeat_ms: c.opt_int(11)?,
    })
}

/// `text` cut to [`MAX_ACTIVITY_TEXT`] bytes at a character boundary.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ACTIVITY_TEXT {
        return text.into();
    }
    let mut end = MAX_ACTIVITY_TEXT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: "activity",
        key: id.to_string(),
    }
}

impl Hsdb {
    /// Ask the leader of `group` for activity `kind`; returns the id. An activity of the
    /// same group and kind already waiting (REQUESTED) is that request: its id is
    /// returned and nothing is written (a double click does not queue two discoveries).
    pub fn request_activity(
        &mut self,
        group: &str,
        kind: ActivityKind,
        by: &str,
        now_ms: i64,
    ) -> Result<i64> {
        const OP: &str = "request_activity";
        self.write_unfenced(OP, |tx| {
            if let Some(id) = tx.query_int(
                OP,
                "SELECT id FROM activity WHERE host_group = ?1 AND kind = ?2 \
                 AND state = 'REQUESTED' ORDER BY id LIMIT 1",
                params![group, kind.as_str()],
            )? {
                return Ok(id);
            }
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO activity (host_group, kind, state, requested_by, created_ms) \
                     VALUES (?1, ?2, 'REQUESTED', ?3, ?4) RETURNING id",
                    params![group, kind.as_str(), by, now_ms],
                )?
                .unwrap_or_default())
        })
    }

    /// Write an activity that `runner` starts at once (`hactl discover`, the schedule):
    /// RUNNING from `now_ms`. Returns its id.
    pub fn begin_activity(
        &mut self,
        group: &str,
        kind: ActivityKind,
        by: &str,
        runner: &str,
        now_ms: i64,
    ) -> Result<i64> {
        const OP: &str = "begin_activity";
        self.write_unfenced(OP, |tx| {
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO activity (host_group, kind, state, requested_by, created_ms, \
                     started_ms, runner, heartbeat_ms) \
                     VALUES (?1, ?2, 'RUNNING', ?3, ?4, ?4, ?5, ?4) RETURNING id",
                    params![group, kind.as_str(), by, now_ms, runner],
                )?
                .unwrap_or_default())
        })
    }

    /// Take the oldest REQUESTED activity of `group` for `runner`: it is RUNNING from
    /// `now_ms` and returned. `None` when nothing waits. Two controllers taking at once
    /// get different rows (or one gets none): the row changes state only if it still
    /// waits.
    pub fn claim_activity(
        &mut self,
        group: &str,
        runner: &str,
        now_ms: i64,
    ) -> Result<Option<ActivityRow>> {
        const OP: &str = "claim_activity";
        // A plain read first: the leader asks every second, and a write transaction
        // (SQLite's write lock) only when something waits.
        if !self.conn.exists(
            OP,
            "SELECT 1 FROM activity WHERE host_group = ?1 AND state = 'REQUESTED'",
            params![group],
        )? {
            return Ok(None);
        }
        self.write_unfenced(OP, |tx| {
            let ids = tx.query(
                OP,
                "activity",
                "SELECT id FROM activity WHERE host_group = ?1 AND state = 'REQUESTED' \
                 ORDER BY id LIMIT 8",
                params![group],
                |c| c.int(0),
            )?;
            for id in ids {
                let n = tx.execute(
                    OP,
                    "UPDATE activity SET state = 'RUNNING', started_ms = ?2, runner = ?3, \
                     heartbeat_ms = ?2 WHERE id = ?1 AND state = 'REQUESTED'",
                    params![id, now_ms, runner],
                )?;
                if n > 0 {
                    return tx.query_opt(
                        OP,
                        "activity",
                        &format!("{ACTIVITY_SELECT} WHERE id = ?1"),
                        params![id],
                        activity_row,
                    );
                }
            }
            Ok(None)
        })
    }

    /// Activity `id` (RUNNING) has progressed: `progress` is its last line, `now_ms` its
    /// heartbeat. An activity no longer RUNNING (ended, or failed as abandoned) is
    /// [`Error::NotFound`]: its runner should stop.
    pub fn activity_progress(&mut self, id: i64, progress: &str, now_ms: i64) -> Result<()> {
        let n = self.autocommit(
            "activity_progress",
            "UPDATE activity SET progress = ?2, heartbeat_ms = ?3 \
             WHERE id = ?1 AND state = 'RUNNING'",
            params![id, bounded(progress).as_ref(), now_ms],
        )?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Activity `id` ended: DONE (`ok`) or FAILED, with `summary`. Ending an activity
    /// that has already ended is [`Error::NotFound`] (it keeps its first end).
    pub fn finish_activity(&mut self, id: i64, ok: bool, summary: &str, now_ms: i64) -> Result<()> {
        let state = if ok {
            ActivityState::Done
        } else {
            ActivityState::Failed
        };
        let n = self.autocommit(
            "finish_activity",
            "UPDATE activity SET state = ?2, summary = ?3, ended_ms = ?4, heartbeat_ms = ?4, \
             started_ms = COALESCE(started_ms, ?4) WHERE id = ?1 AND ended_ms IS NULL",
            params![id, state.as_str(), bounded(summary).as_ref(), now_ms],
        )?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Fail every RUNNING activity (of `group`, or of every group) whose runner has not
    /// written since before `stale_before_ms`, or that `dead_runner` says is gone: the
    /// summary says who was running it and since when. Returns the ids failed.
    pub fn fail_abandoned_activities(
        &mut self,
        group: Option<&str>,
        stale_before_ms: i64,
        dead_runner: &dyn Fn(&str) -> bool,
        now_ms: i64,
    ) -> Result<Vec<i64>> {
        const OP: &str = "fail_abandoned_activities";
        // Read first (no write lock when nothing is abandoned, the usual case).
        let running = self.conn.query(
            OP,
            "activity",
            &format!("{ACTIVITY_SELECT} WHERE state = 'RUNNING' ORDER BY id"),
            params![],
            activity_row,
        )?;
        let mut doomed: Vec<(i64, Option<i64>, String)> = Vec::new();
        for row in running {
            if group.is_some_and(|g| g != row.host_group) {
                continue;
            }
            let runner = row.runner.clone().unwrap_or_default();
            let heard = row
                .heartbeat_ms
                .or(row.started_ms)
                .unwrap_or(row.created_ms);
            let why = if dead_runner(&runner) {
                format!("abandoned: its runner {runner} is gone (last progress: {heard} ms)")
            } else if heard < stale_before_ms {
                format!(
                    "abandoned: its runner {runner} stopped writing progress \
                     (last at {heard} ms, {} s before this check)",
                    (now_ms - heard) / 1000
                )
            } else {
                continue;
            };
            let why = if row.progress.is_empty() {
                why
            } else {
                format!("{why}; last progress: {}", row.progress)
            };
            doomed.push((row.id, row.heartbeat_ms, why));
        }
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        self.write_unfenced(OP, |tx| {
            let mut failed = Vec::new();
            for (id, heartbeat, why) in &doomed {
                // Only if it has not progressed since it was read.
                let n = tx.execute(
                    OP,
                    "UPDATE activity SET state = 'FAILED', summary = ?2, ended_ms = ?3 \
                     WHERE id = ?1 AND state = 'RUNNING' \
                     AND COALESCE(heartbeat_ms, -1) = COALESCE(CAST(?4 AS BIGINT), -1)",
                    params![*id, bounded(why).as_ref(), now_ms, *heartbeat],
                )?;
                if n > 0 {
                    failed.push(*id);
                }
            }
            Ok(failed)
        })
    }

    /// The newest `limit` activities (of `group`, or of every group), newest first.
    pub fn activities(&mut self, group: Option<&str>, limit: usize) -> Result<Vec<ActivityRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match group {
            Some(g) => self.conn.query(
                "activities",
                "activity",
                &format!("{ACTIVITY_SELECT} WHERE host_group = ?1 ORDER BY id DESC LIMIT ?2"),
                params![g, limit],
                activity_row,
            ),
            None => self.conn.query(
                "activities",
                "activity",
                &format!("{ACTIVITY_SELECT} ORDER BY id DESC LIMIT ?1"),
                params![limit],
                activity_row,
            ),
        }
    }

    /// Activity `id`.
    pub fn activity(&self, id: i64) -> Result<Option<ActivityRow>> {
        self.conn.query_opt(
            "activity",
            "activity",
            &format!("{ACTIVITY_SELECT} WHERE id = ?1"),
            params![id],
            activity_row,
        )
    }

    /// When the newest activity of `kind` in `group` that ran (RUNNING, DONE or FAILED)
    /// started: the schedule counts its next run from it, so a restarted controller does
    /// not discover again at once.
    pub fn last_activity_start(&self, group: &str, kind: ActivityKind) -> Result<Option<i64>> {
        const OP: &str = "last_activity_start";
        self.conn.query_int(
            OP,
            "SELECT MAX(started_ms) FROM activity WHERE host_group = ?1 AND kind = ?2 \
             AND started_ms IS NOT NULL",
            params![group, kind.as_str()],
        )
    }

    /// Delete the activities that ended before `before_ms`; returns how many.
    pub fn prune_activities(&mut self, before_ms: i64) -> Result<usize> {
        self.autocommit(
            "prune_activities",
            "DELETE FROM activity WHERE ended_ms IS NOT NULL AND ended_ms < ?1",
            params![before_ms],
        )
    }
}
