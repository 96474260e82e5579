//! The executor's durable state (schema v8, docs/hsdb.md §2): cleanups owed to hosts the
//! platform could not reach (the seed's CLEAN_LPARS), operator requests (`hactl host
//! evacuate | restore`) that the leading controller carries out, hosts in maintenance,
//! and the restart history the restart budgets are counted from.
//!
//! Every write is one statement or one transaction, fenced like every controller write
//! on a connection bound to a lease.

use hvha_identity::Uuid;

use crate::codec::{Columns, UuidText};
use crate::db::params;
use crate::error::{Error, Result};
use crate::model::HostId;
use crate::store::Hsdb;

/// A cleanup owed to a host (`owed_cleanup` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedCleanup {
    /// Id, increasing.
    pub id: i64,
    /// The host that keeps the VM's leftovers.
    pub host: HostId,
    /// The VM.
    pub vm: Uuid,
    /// The restart that left it owed.
    pub relocation: Option<i64>,
    /// Why it is owed.
    pub why: String,
    /// When it became owed.
    pub owed_ms: i64,
    /// Attempts made since.
    pub attempts: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was done; `None` while owed.
    pub done_ms: Option<i64>,
    /// How it ended.
    pub result: Option<String>,
}

/// What an operator asked of the leading controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Move every VM off the host and put it in maintenance.
    Evacuate,
    /// End the host's maintenance and return the VMs whose home it is.
    Restore,
    /// Move one VM (`vm`) to `target_host` or to the planner's best host.
    Move,
}

impl RequestKind {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestKind::Evacuate => "EVACUATE",
            RequestKind::Restore => "RESTORE",
            RequestKind::Move => "MOVE",
        }
    }

    /// The kind stored as `text`.
    pub fn from_text(text: &str) -> Option<RequestKind> {
        match text {
            "EVACUATE" => Some(RequestKind::Evacuate),
            "RESTORE" => Some(RequestKind::Restore),
            "MOVE" => Some(RequestKind::Move),
            _ => None,
        }
    }
}

/// Where an operator request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Written, not yet picked up by a leader.
    Pending,
    /// Being carried out.
    Running,
    /// Done.
    Done,
    /// Not carried out: its plan was incomplete or it was invalid (`result` says why).
    Refused,
    /// Carried out in part (`result` says what failed).
    Failed,
}

impl RequestState {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "PENDING",
            RequestState::Running => "RUNNING",
            RequestState::Done => "DONE",
            RequestState::Refused => "REFUSED",
            RequestState::Failed => "FAILED",
        }
    }

    /// The state stored as `text`.
    pub fn from_text(text: &str) -> Option<RequestState> {
        match text {
            "PENDING" => Some(RequestState::Pending),
            "RUNNING" => Some(RequestState::Running),
            "DONE" => Some(RequestState::Done),
            "REFUSED" => Some(RequestState::Refused),
            "FAILED" => Some(RequestState::Failed),
            _ => None,
        }
    }

    /// The request has ended.
    pub const fn ended(self) -> bool {
        matches!(
            self,
            RequestState::Done | RequestState::Refused | RequestState::Failed
        )
    }
}

/// An operator request (`operator_request` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRequest {
    /// Id, increasing.
    pub id: i64,
    /// The host group whose leader carries it out.
    pub host_group: String,
    /// What.
    pub kind: RequestKind,
    /// The host: evacuated or restored; for a MOVE, the host the VM was on when the
    /// request was written.
    pub host: HostId,
    /// The VM a MOVE moves; `None` for the other kinds.
    pub vm: Option<Uuid>,
    /// The host a MOVE goes to, if the operator named one (`None`: the planner's best).
    pub target_host: Option<HostId>,
    /// Who asked (`user@machine` as the CLI saw it).
    pub requested_by: String,
    /// When it was written.
    pub created_ms: i64,
    /// Where it is.
    pub state: RequestState,
    /// When a leader picked it up.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// The last progress line.
    pub progress: String,
    /// How it ended.
    pub result: Option<String>,
}

/// One restart or relocation with its cause, as the restart budgets count them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRecord {
    /// The `relocation` row.
    pub id: i64,
    /// The VM.
    pub vm: Uuid,
    /// Restart on the same host or relocation.
    pub kind: crate::RelocationKind,
    /// The host it left.
    pub from_host: Option<HostId>,
    /// The host it went to.
    pub to_host: Option<HostId>,
    /// The cause the executor wrote (`vm_failure`, `host_failure`, `app_restart`, …).
    pub cause: Option<String>,
    /// When it began.
    pub started_ms: i64,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// How it ended.
    pub result: Option<String>,
}

const OWED_SELECT: &str = "SELECT id, host, vm, relocation, why, owed_ms, attempts, \
    last_error, done_ms, result FROM owed_cleanup";
const REQUEST_SELECT: &str = "SELECT id, host_group, kind, host, requested_by, created_ms, \
    state, started_ms, ended_ms, progress, result, vm, target_host FROM operator_request";
const RESTART_SELECT: &str = "SELECT r.id, r.vm, r.kind, r.from_host, r.to_host, \
    (SELECT s.phase FROM relocation_step s WHERE s.relocation = r.id \
     AND s.phase LIKE 'cause %' ORDER BY s.id LIMIT 1), r.started_ms, r.ended_ms, r.result \
    FROM relocation r";

fn owed_row(c: &Columns<'_, '_>) -> Result<OwedCleanup> {
    Ok(OwedCleanup {
        id: c.int(0)?,
        host: HostId(c.int(1)?),
        vm: c.uuid(2, "vm")?,
        relocation: c.opt_int(3)?,
        why: c.text(4)?,
        owed_ms: c.int(5)?,
        attempts: c.int(6)?,
        last_error: c.opt_text(7)?,
        done_ms: c.opt_int(8)?,
        result: c.opt_text(9)?,
    })
}

fn request_row(c: &Columns<'_, '_>) -> Result<OperatorRequest> {
    Ok(OperatorRequest {
        id: c.int(0)?,
        host_group: c.text(1)?,
        kind: c.enumeration(
            2,
            "kind",
            "EVACUATE, RESTORE or MOVE",
            RequestKind::from_text,
        )?,
        host: HostId(c.int(3)?),
        requested_by: c.text(4)?,
        created_ms: c.int(5)?,
        state: c.enumeration(
            6,
            "state",
            "PENDING, RUNNING, DONE, REFUSED or FAILED",
            RequestState::from_text,
        )?,
        started_ms: c.opt_int(7)?,
        ended_ms: c.opt_int(8)?,
        progress: c.text(9)?,
        result: c.opt_text(10)?,
        vm: c.opt_uuid(11, "vm")?,
        target_host: c.opt_int(12)?.map(HostId),
    })
}

fn restart_row(c: &Columns<'_, '_>) -> Result<RestartRecord> {
    Ok(RestartRecord {
        id: c.int(0)?,
        vm: c.uuid(1, "vm")?,
        kind: c.enumeration(
            2,
            "kind",
            "RESTART, RELOCATE or MOVE",
            crate::RelocationKind::from_text,
        )?,
        from_host: c.opt_int(3)?.map(HostId),
        to_host: c.opt_int(4)?.map(HostId),
        cause: c
            .opt_text(5)?
            .and_then(|s| s.strip_prefix("cause ").map(str::to_owned)),
        started_ms: c.int(6)?,
        ended_ms: c.opt_int(7)?,
        result: c.opt_text(8)?,
    })
}

impl Hsdb {
    /// Record that `host` is owed the cleanup of VM `vm` (its definition, perhaps a
    /// running copy) once it is back. One open row per (host, VM): owing it again
    /// returns the open row's id.
    pub fn owe_cleanup(
        &mut self,
        host: HostId,
        vm: &Uuid,
        relocation: Option<i64>,
        why: &str,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "owe_cleanup";
        self.write(OP, |tx| {
            if let Some(id) = tx.query_int(
                OP,
                "SELECT id FROM owed_cleanup WHERE host = ?1 AND vm = ?2 AND done_ms IS NULL",
                params![host, UuidText::new(vm)],
            )? {
                return Ok(id);
            }
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO owed_cleanup (host, vm, relocation, why, owed_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    params![host, UuidText::new(vm), relocation, why, at],
                )?
                .unwrap_or_default())
        })
    }

    /// The cleanups still owed, to `host` or to every host, oldest first.
    pub fn owed_cleanups(&self, host: Option<HostId>) -> Result<Vec<OwedCleanup>> {
        const OP: &str = "owed_cleanups";
        match host {
            Some(h) => self.conn.query(
                OP,
                "owed_cleanup",
                &format!("{OWED_SELECT} WHERE done_ms IS NULL AND host = ?1 ORDER BY id"),
                params![h],
                owed_row,
            ),
            None => self.conn.query(
                OP,
                "owed_cleanup",
                &format!("{OWED_SELECT} WHERE done_ms IS NULL ORDER BY id"),
                params![],
                owed_row,
            ),
        }
    }

    /// Every owed cleanup of VM `vm`, open or done, newest first (at most `limit`).
    pub fn cleanup_history(&self, vm: &Uuid, limit: u32) -> Result<Vec<OwedCleanup>> {
        self.conn.query(
            "cleanup_history",
            "owed_cleanup",
            &format!("{OWED_SELECT} WHERE vm = ?1 ORDER BY id DESC LIMIT ?2"),
            params![UuidText::new(vm), limit],
            owed_row,
        )
    }

    /// An attempt at owed cleanup `id` failed with `error`; it stays owed.
    pub fn owed_cleanup_failed(&mut self, id: i64, error: &str, at: i64) -> Result<()> {
        let n = self.autocommit(
            "owed_cleanup_failed",
            "UPDATE owed_cleanup SET attempts = attempts + 1, last_try_ms = ?2, \
             last_error = ?3 WHERE id = ?1 AND done_ms IS NULL",
            params![id, at, error],
        )?;
        found(n, "owed_cleanup", id)
    }

    /// Owed cleanup `id` ended with `result` (done, or no longer needed).
    pub fn owed_cleanup_done(&mut self, id: i64, result: &str, at: i64) -> Result<()> {
        let n = self.autocommit(
            "owed_cleanup_done",
            "UPDATE owed_cleanup SET attempts = attempts + 1, last_try_ms = ?2, \
             done_ms = ?2, result = ?3 WHERE id = ?1 AND done_ms IS NULL",
            params![id, at, result],
        )?;
        found(n, "owed_cleanup", id)
    }

    /// Write an operator request for the leader of `host_group`; returns its id.
    pub fn request_operation(
        &mut self,
        host_group: &str,
        kind: RequestKind,
        host: HostId,
        requested_by: &str,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "request_operation";
        self.write_unfenced(OP, |tx| {
            if !tx.exists(OP, "SELECT 1 FROM host WHERE id = ?1", params![host])? {
                return Err(Error::NotFound {
                    what: "host",
                    key: host.to_string(),
                });
            }
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO operator_request (host_group, kind, host, requested_by, \
                     created_ms, state) VALUES (?1, ?2, ?3, ?4, ?5, 'PENDING') RETURNING id",
                    params![host_group, kind.as_str(), host, requested_by, at],
                )?
                .unwrap_or_default())
        })
    }

    /// Write a request to move VM `vm` for the leader of `host_group`: to `target` or,
    /// with `None`, to the planner's best host. The request's `host` is the VM's
    /// current host. Returns its id. An unknown VM or target is [`Error::NotFound`]; a
    /// VM on no host cannot be moved (also [`Error::NotFound`], of its "current host").
    pub fn request_move(
        &mut self,
        host_group: &str,
        vm: &Uuid,
        target: Option<HostId>,
        requested_by: &str,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "request_move";
        self.write_unfenced(OP, |tx| {
            let Some(current) = tx.query_opt(
                OP,
                "vm",
                "SELECT current_host FROM vm WHERE uuid = ?1",
                params![UuidText::new(vm)],
                |c| c.opt_int(0),
            )?
            else {
                return Err(Error::NotFound {
                    what: "vm",
                    key: vm.to_string(),
                });
            };
            let Some(from) = current else {
                return Err(Error::NotFound {
                    what: "current host of vm",
                    key: vm.to_string(),
                });
            };
            if let Some(target) = target
                && !tx.exists(OP, "SELECT 1 FROM host WHERE id = ?1", params![target])?
            {
                return Err(Error::NotFound {
                    what: "host",
                    key: target.to_string(),
                });
            }
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO operator_request (host_group, kind, host, requested_by, \
                     created_ms, state, vm, target_host) \
                     VALUES (?1, 'MOVE', ?2, ?3, ?4, 'PENDING', ?5, ?6) RETURNING id",
                    params![
                        host_group,
                        from,
                        requested_by,
                        at,
                        UuidText::new(vm),
                        target
                    ],
                )?
                .unwrap_or_default())
        })
    }

    /// The newest `limit` MOVE requests about VM `vm`, newest first.
    pub fn move_requests_of(&self, vm: &Uuid, limit: u32) -> Result<Vec<OperatorRequest>> {
        self.conn.query(
            "move_requests_of",
            "operator_request",
            &format!("{REQUEST_SELECT} WHERE vm = ?1 ORDER BY id DESC LIMIT ?2"),
            params![UuidText::new(vm), limit],
            request_row,
        )
    }

    /// Operator request `id`.
    pub fn operator_request(&self, id: i64) -> Result<Option<OperatorRequest>> {
        self.conn.query_opt(
            "operator_request",
            "operator_request",
            &format!("{REQUEST_SELECT} WHERE id = ?1"),
            params![id],
            request_row,
        )
    }

    /// The requests of `host_group` not ended, oldest first.
    pub fn open_operator_requests(&self, host_group: &str) -> Result<Vec<OperatorRequest>> {
        self.conn.query(
            "open_operator_requests",
            "operator_request",
            &format!("{REQUEST_SELECT} WHERE host_group = ?1 AND ended_ms IS NULL ORDER BY id"),
            params![host_group],
            request_row,
        )
    }

    /// The newest `limit` requests about `host`, newest first.
    pub fn operator_requests_of(&self, host: HostId, limit: u32) -> Result<Vec<OperatorRequest>> {
        self.conn.query(
            "operator_requests_of",
            "operator_request",
            &format!("{REQUEST_SELECT} WHERE host = ?1 ORDER BY id DESC LIMIT ?2"),
            params![host, limit],
            request_row,
        )
    }

    /// Request `id` is now in `state` with `progress` as its last line; an ended state
    /// records `result` and the end time, RUNNING the start time (once).
    pub fn update_operator_request(
        &mut self,
        id: i64,
        state: RequestState,
        progress: &str,
        result: Option<&str>,
        at: i64,
    ) -> Result<()> {
        let ended = state.ended().then_some(at);
        let n = self.autocommit(
            "update_operator_request",
            "UPDATE operator_request SET state = ?2, progress = ?3, \
             result = COALESCE(?4, result), ended_ms = COALESCE(?5, ended_ms), \
             started_ms = COALESCE(started_ms, ?6) WHERE id = ?1",
            params![id, state.as_str(), progress, result, ended, at],
        )?;
        found(n, "operator_request", id)
    }

    /// Put `host` in maintenance since `at` (by request `request`), or take it out
    /// (`at` = `None`).
    pub fn set_host_maintenance(
        &mut self,
        host: HostId,
        at: Option<i64>,
        request: Option<i64>,
    ) -> Result<()> {
        match at {
            Some(at) => self.autocommit(
                "set_host_maintenance",
                "INSERT INTO host_maintenance (host, since_ms, request) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (host) DO UPDATE SET request = excluded.request",
                params![host, at, request],
            ),
            None => self.autocommit(
                "set_host_maintenance",
                "DELETE FROM host_maintenance WHERE host = ?1",
                params![host],
            ),
        }
        .map(|_| ())
    }

    /// The hosts in maintenance, each with the time it began.
    pub fn hosts_in_maintenance(&self) -> Result<Vec<(HostId, i64)>> {
        self.conn.query(
            "hosts_in_maintenance",
            "host_maintenance",
            "SELECT host, since_ms FROM host_maintenance ORDER BY host",
            params![],
            |c| Ok((HostId(c.int(0)?), c.int(1)?)),
        )
    }

    /// Restarts and relocations begun at or after `since_ms`, of `vm` or of every VM,
    /// newest first, each with its cause (at most `limit`).
    pub fn restarts_since(
        &self,
        vm: Option<&Uuid>,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<RestartRecord>> {
        const OP: &str = "restarts_since";
        match vm {
            Some(vm) => self.conn.query(
                OP,
                "relocation",
                &format!(
                    "{RESTART_SELECT} WHERE r.vm = ?1 AND r.started_ms >= ?2 \
                     ORDER BY r.id DESC LIMIT ?3"
                ),
                params![UuidText::new(vm), since_ms, limit],
                restart_row,
            ),
            None => self.conn.query(
                OP,
                "relocation",
                &format!("{RESTART_SELECT} WHERE r.started_ms >= ?1 ORDER BY r.id DESC LIMIT ?2"),
                params![since_ms, limit],
                restart_row,
            ),
        }
    }
}

fn found(changed: usize, what: &'static str, id: i64) -> Result<()> {
    if changed == 0 {
        Err(Error::NotFound {
            what,
            key: id.to_string(),
        })
    } else {
        Ok(())
    }
}
