//! Application status reported by agents (`app` table, schema v9; docs/hsdb.md §2 `app`
//! and §8.8): a VM's rows are replaced from one parsed report
//! ([`hvha_appreport::AppReport`]) in one transaction, and the control plane's handling of
//! a completed `FETCH_APP_REPORT` command — store the report, queue its
//! `CONFIRM_APP_REPORT`, mark the fetch handled — is one transaction too, so a controller
//! that stops half-way leaves nothing half-done (docs/hvncp.md "Application reports").
//!
//! Every write is fenced like every controller write on a connection bound to a lease.

use hvha_appreport::{AppReport, AppState, AppStatus, Colour, MonitorKind};
use hvha_identity::Uuid;

use crate::codec::{Columns, UuidText};
use crate::control_model::{CommandKind, CommandRow};
use crate::db::{Conn, params};
use crate::error::Result;
use crate::store::Hsdb;

/// One application of one VM as stored (`app` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// The VM.
    pub vm: Uuid,
    /// The application's name, unique within the VM.
    pub name: String,
    /// Its state in the agent's engine.
    pub state: AppState,
    /// The colour of that state (GREEN, YELLOW, RED), as the agent reported it.
    pub colour: Colour,
    /// A FAILURE is escalated (VM restart, then relocation).
    pub critical: bool,
    /// `false`: the operator suspended its monitoring in the guest.
    pub monitored: bool,
    /// Local restart cycles done (`restart_count`).
    pub restarts: u32,
    /// Local restart cycles allowed before FAILURE.
    pub max_restart: u32,
    /// How the agent watches it.
    pub monitor: MonitorKind,
    /// When its state last changed, by the agent's clock (ms since the Unix epoch);
    /// `None` when the agent did not say (0) or for rows written before v9.
    pub since_ms: Option<i64>,
    /// Why: the last failure or message (at most 256 bytes).
    pub detail: String,
    /// The agent incarnation of the report the row comes from (`None` before v9).
    pub report_inc: Option<u64>,
    /// The generation of that report.
    pub report_gen: Option<u64>,
    /// When the control plane stored it (its clock).
    pub updated_ms: i64,
}

/// One application whose row a report added, changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChange {
    /// The row before (`None`: the report added the application).
    pub before: Option<AppRow>,
    /// The row after (`None`: the report no longer lists it; the row was deleted).
    pub after: Option<AppRow>,
}

impl AppChange {
    /// The application's name.
    pub fn name(&self) -> &str {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .map_or("", |r| r.name.as_str())
    }

    /// Its state changed (or it was added or deleted); `false` when only other fields
    /// (restarts, detail, monitored, …) changed.
    pub fn state_changed(&self) -> bool {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => b.state != a.state,
            _ => true,
        }
    }
}

/// What storing a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppStored {
    /// The VM's rows are now the report's; `changes` lists every application whose row
    /// was added, changed or deleted (empty for the same report stored again).
    Stored {
        /// Added, changed and deleted rows, by name.
        changes: Vec<AppChange>,
        /// The generation stored before (same incarnation), if any.
        previous_gen: Option<u64>,
    },
    /// Ignored: the stored rows come from a newer report of the same agent incarnation
    /// (same `inc`, higher `gen`). Nothing was written.
    Stale {
        /// The generation stored.
        stored_gen: u64,
    },
}

/// How the control plane handled a completed `FETCH_APP_REPORT` command
/// ([`Hsdb::handle_app_fetch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppFetchHandled {
    /// The command was already handled (by this or another controller), or is not a
    /// completed fetch: nothing was written.
    AlreadyHandled,
    /// Handled: the report's outcome, and the `CONFIRM_APP_REPORT` queued (its id), if
    /// one was.
    Done {
        /// What storing the report did; `None` when there was no report to store (the
        /// fetch failed).
        stored: Option<AppStored>,
        /// The confirmation queued, if any.
        confirm: Option<i64>,
    },
}

/// The columns [`app_row`] decodes.
const APP_SELECT: &str = "SELECT vm, name, state, colour, critical, monitored, restart_count, \
    max_restart, monitor, since_ms, detail, report_inc, report_gen, updated_ms FROM app";

/// The columns `command_row` of admin.rs decodes, with the host join for group scoping.
const FETCH_SELECT: &str = "SELECT c.id, c.hm, c.kind, c.vm, c.arg, c.created_ms, c.done_ms, \
    c.result FROM hm_command c";

/// Completed fetches not handled yet. The kind is a literal: the partial index
/// `hm_command_fetch_unhandled` (v10) names it, and a planner uses a partial index only
/// for a query it can prove implies the index's condition.
pub(crate) const UNHANDLED_FETCHES_SQL: &str = "SELECT c.id, c.hm, c.kind, c.vm, c.arg, \
    c.created_ms, c.done_ms, c.result FROM hm_command c WHERE c.kind = 'FETCH_APP_REPORT' \
    AND c.arg IS NULL AND c.done_ms IS NOT NULL";

fn app_row(c: &Columns<'_, '_>) -> Result<AppRow> {
    Ok(AppRow {
        vm: c.uuid(0, "vm")?,
        name: c.text(1)?,
        state: c.enumeration(
            2,
            "state",
            "UNSET, NORMAL, FAILING, TO_STOP, TO_START, FAILURE or ABNORMAL",
            AppState::parse,
        )?,
        colour: c.enumeration(3, "colour", "GREEN, YELLOW or RED", Colour::parse)?,
        critical: c.bool(4, "critical")?,
        monitored: c.bool(5, "monitored")?,
        restarts: c.u32(6, "restart_count")?,
        max_restart: c.u32(7, "max_restart")?,
        monitor: c.enumeration(
            8,
            "monitor",
            "script, http, smtp or tcp",
            MonitorKind::parse,
        )?,
        since_ms: c.opt_int(9)?,
        detail: c.text(10)?,
        report_inc: match c.opt_text(11)? {
            None => None,
            Some(text) => {
                Some(
                    u64::from_str_radix(&text, 16).map_err(|_| crate::Error::Corrupt {
                        table: "app",
                        column: "report_inc",
                        value: text,
                        expected: "agent incarnation (hexadecimal)",
                    })?,
                )
            }
        },
        report_gen: c.opt_int(12)?.map(|g| u64::try_from(g).unwrap_or_default()),
        updated_ms: c.int(13)?,
    })
}

/// The row a report's application becomes.
fn row_of(vm: &Uuid, inc: u64, generation: u64, app: &AppStatus, at: i64) -> AppRow {
    AppRow {
        vm: *vm,
        name: app.name.clone(),
        state: app.state,
        colour: app.colour(),
        critical: app.critical,
        monitored: app.monitored,
        restarts: app.restarts,
        max_restart: app.max_restart,
        monitor: app.monitor,
        // 0: the agent did not say.
        since_ms: i64::try_from(app.since_ms).ok().filter(|&ms| ms > 0),
        detail: app.detail.clone(),
        report_inc: Some(inc),
        report_gen: Some(generation),
        updated_ms: at,
    }
}

/// The fields a report sets, compared (not the report's inc/gen, not `updated_ms`).
fn same_status(a: &AppRow, b: &AppRow) -> bool {
    (
        a.state,
        a.colour,
        a.critical,
        a.monitored,
        a.restarts,
        a.max_restart,
        a.monitor,
        a.since_ms,
        &a.detail,
    ) == (
        b.state,
        b.colour,
        b.critical,
        b.monitored,
        b.restarts,
        b.max_restart,
        b.monitor,
        b.since_ms,
        &b.detail,
    )
}

/// A generation as stored: BIGINT. The control plane refuses reports whose generation
/// does not fit (2^63 changes never happen); a larger one is stored as the largest.
fn gen_sql(generation: u64) -> i64 {
    i64::try_from(generation).unwrap_or(i64::MAX)
}

fn vm_apps(conn: &Conn, op: &'static str, vm: &Uuid) -> Result<Vec<AppRow>> {
    let sql = format!("{APP_SELECT} WHERE vm = ?1 ORDER BY name");
    conn.query(op, "app", &sql, params![UuidText::new(vm)], app_row)
}

/// Replace `vm`'s rows with `report`'s inside an open transaction (see
/// [`Hsdb::store_app_report`]).
fn store_report(
    conn: &Conn,
    op: &'static str,
    vm: &Uuid,
    report: &AppReport,
    at: i64,
) -> Result<AppStored> {
    // PostgreSQL (READ COMMITTED): the VM's row lock serialises two writers of one VM's
    // reports, so each reads the rows the other committed.
    let lock = if conn.is_pg() {
        "SELECT 1 FROM vm WHERE uuid = ?1 FOR UPDATE"
    } else {
        "SELECT 1 FROM vm WHERE uuid = ?1"
    };
    if !conn.exists(op, lock, params![UuidText::new(vm)])? {
        return Err(crate::Error::NotFound {
            what: "vm",
            key: vm.to_string(),
        });
    }
    let stored = vm_apps(conn, op, vm)?;
    // The newest report the rows come from (they all come from one, but rows written
    // before v9 carry none).
    let previous = stored
        .iter()
        .filter_map(|r| Some((r.report_inc?, r.report_gen?)))
        .max_by_key(|&(_, stored)| stored);
    let previous_gen = match previous {
        Some((inc, stored_gen)) if inc == report.inc => {
            if report.generation < stored_gen {
                return Ok(AppStored::Stale { stored_gen });
            }
            Some(stored_gen)
        }
        _ => None,
    };
    let inc_text = format!("{:x}", report.inc);
    let mut changes = Vec::new();
    for before in &stored {
        if !report.apps.iter().any(|a| a.name == before.name) {
            conn.execute(
                op,
                "DELETE FROM app WHERE vm = ?1 AND name = ?2",
                params![UuidText::new(vm), before.name],
            )?;
            changes.push(AppChange {
                before: Some(before.clone()),
                after: None,
            });
        }
    }
    for app in &report.apps {
        let after = row_of(vm, report.inc, report.generation, app, at);
        let before = stored.iter().find(|r| r.name == app.name);
        conn.execute(
            op,
            "INSERT INTO app (vm, name, state, colour, critical, monitored, restart_count, \
             max_restart, monitor, since_ms, detail, report_inc, report_gen, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (vm, name) DO UPDATE SET state = excluded.state, \
             colour = excluded.colour, critical = excluded.critical, \
             monitored = excluded.monitored, restart_count = excluded.restart_count, \
             max_restart = excluded.max_restart, monitor = excluded.monitor, \
             since_ms = excluded.since_ms, detail = excluded.detail, \
             report_inc = excluded.report_inc, report_gen = excluded.report_gen, \
             updated_ms = excluded.updated_ms",
            params![
                UuidText::new(vm),
                after.name,
                after.state.as_str(),
                after.colour.as_str(),
                after.critical,
                after.monitored,
                after.restarts,
                after.max_restart,
                after.monitor.as_str(),
                after.since_ms,
                after.detail,
                inc_text,
                gen_sql(report.generation),
                at
            ],
        )?;
        if before.is_none_or(|b| !same_status(b, &after)) {
            changes.push(AppChange {
                before: before.cloned(),
                after: Some(after),
            });
        }
    }
    changes.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(AppStored::Stored {
        changes,
        previous_gen,
    })
}

impl Hsdb {
    /// Replace VM `vm`'s application rows with those of `report`, in one transaction:
    /// an application the report lists is inserted or updated, one it no longer lists is
    /// deleted. A report of the same agent incarnation (`inc`) with a lower generation
    /// than the rows stored is ignored ([`AppStored::Stale`], nothing written); the same
    /// generation again is stored again (no change). A report of another incarnation
    /// (the agent restarted, generations start again at 1) always replaces the rows.
    ///
    /// A VM without a row is [`Error::NotFound`](crate::Error::NotFound).
    pub fn store_app_report(
        &mut self,
        vm: &Uuid,
        report: &AppReport,
        at: i64,
    ) -> Result<AppStored> {
        const OP: &str = "store_app_report";
        self.write(OP, |tx| store_report(tx, OP, vm, report, at))
    }

    /// The applications of VM `vm`, by name.
    pub fn apps(&self, vm: &Uuid) -> Result<Vec<AppRow>> {
        vm_apps(&self.conn, "apps", vm)
    }

    /// Every application of every VM, by VM, then name.
    pub fn all_apps(&self) -> Result<Vec<AppRow>> {
        const OP: &str = "all_apps";
        let sql = format!("{APP_SELECT} ORDER BY vm, name");
        self.conn.query(OP, "app", &sql, params![], app_row)
    }

    /// The open `FETCH_APP_REPORT` command of VM `vm`, if any (the oldest: the control
    /// plane keeps at most one open per VM).
    pub fn open_app_fetch(&self, vm: &Uuid) -> Result<Option<CommandRow>> {
        const OP: &str = "open_app_fetch";
        let sql = format!(
            "{FETCH_SELECT} WHERE c.vm = ?1 AND c.kind = ?2 AND c.done_ms IS NULL \
             ORDER BY c.id LIMIT 1"
        );
        self.conn.query_opt(
            OP,
            "hm_command",
            &sql,
            params![UuidText::new(vm), CommandKind::FetchAppReport.as_str()],
            crate::admin::command_row,
        )
    }

    /// `FETCH_APP_REPORT` commands that their monitor completed and the control plane
    /// has not handled yet (their `arg` is still NULL), of the monitors of host group
    /// `group` (every group when `None`), oldest first, at most `limit`.
    pub fn app_fetches_done(&self, group: Option<&str>, limit: u32) -> Result<Vec<CommandRow>> {
        const OP: &str = "app_fetches_done";
        let base = UNHANDLED_FETCHES_SQL;
        match group {
            Some(group) => {
                let sql = format!(
                    "{base} AND EXISTS (SELECT 1 FROM hm JOIN host ON host.id = hm.host_id \
                     WHERE hm.uuid = c.hm AND host.host_group = ?1) ORDER BY c.id LIMIT ?2"
                );
                self.conn.query(
                    OP,
                    "hm_command",
                    &sql,
                    params![group, limit],
                    crate::admin::command_row,
                )
            }
            None => {
                let sql = format!("{base} ORDER BY c.id LIMIT ?1");
                self.conn.query(
                    OP,
                    "hm_command",
                    &sql,
                    params![limit],
                    crate::admin::command_row,
                )
            }
        }
    }

    /// Handle completed `FETCH_APP_REPORT` command `fetch` in ONE transaction: store
    /// `report` for the command's VM (as [`Hsdb::store_app_report`]) when there is one;
    /// queue `CONFIRM_APP_REPORT` with the report's generation for monitor `confirm_hm`
    /// when `confirm_hm` is given and the report was not stale; and mark the fetch handled
    /// by writing `note` into its `arg` (what the control plane did with it, for
    /// people). A fetch already handled, still open, or not a fetch is
    /// [`AppFetchHandled::AlreadyHandled`] and nothing is written: two controllers (or one
    /// restarted) never handle one report twice.
    pub fn handle_app_fetch(
        &mut self,
        fetch: i64,
        report: Option<&AppReport>,
        confirm_hm: Option<&Uuid>,
        note: &str,
        at: i64,
    ) -> Result<AppFetchHandled> {
        const OP: &str = "handle_app_fetch";
        self.write(OP, |tx| {
            let sql = format!(
                "{FETCH_SELECT} WHERE c.id = ?1 AND c.kind = ?2 AND c.done_ms IS NOT NULL \
                 AND c.arg IS NULL"
            );
            let Some(row) = tx.query_opt(
                OP,
                "hm_command",
                &sql,
                params![fetch, CommandKind::FetchAppReport.as_str()],
                crate::admin::command_row,
            )?
            else {
                return Ok(AppFetchHandled::AlreadyHandled);
            };
            // Claim it first: on PostgreSQL a second controller's claim waits for this
            // row's lock, then finds the mark and changes nothing.
            let note = if note.is_empty() { "handled" } else { note };
            let claimed = tx.execute(
                OP,
                "UPDATE hm_command SET arg = ?2 WHERE id = ?1 AND arg IS NULL",
                params![fetch, note],
            )?;
            if claimed == 0 {
                return Ok(AppFetchHandled::AlreadyHandled);
            }
            let stored = match report {
                Some(report) => Some(store_report(tx, OP, &row.vm, report, at)?),
                None => None,
            };
            let confirm = match (report, confirm_hm, &stored) {
                (Some(report), Some(hm), Some(AppStored::Stored { .. })) => {
                    Some(crate::admin::insert_command(
                        tx,
                        hm,
                        CommandKind::ConfirmAppReport,
                        &row.vm,
                        Some(&report.generation.to_string()),
                        at,
                    )?)
                }
                _ => None,
            };
            Ok(AppFetchHandled::Done { stored, confirm })
        })
    }
}
