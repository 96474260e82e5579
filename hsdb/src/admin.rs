//! The control plane's writes other than NeedsAttention: VM and host settings,
//! parameters, relocation rows, commands to monitors, events, retiring a monitor, and
//! pruning (docs/hsdb.md §8).
//!
//! Values are stored as given: checking them against their ranges is the control
//! plane's job (`controlplane::params`). Every statement is portable DML (RETURNING,
//! COALESCE, ON CONFLICT), see docs/hsdb.md §6. Each write is one statement or one
//! transaction that is safe with concurrent writers: upserts by `ON CONFLICT`, ids by
//! `RETURNING`, and an outbox insert takes the outbox lock on PostgreSQL.

use hvha_identity::Uuid;

use crate::apply::{OUTBOX_LOCK, PG_OUTBOX_LOCK};
use crate::codec::{Columns, UuidText, opt_uuid};
use crate::control_model::{
    CommandDone, CommandKind, CommandRow, ParamRow, ParamScope, RelocationKind, RelocationRow,
    RelocationStep, VmSettings,
};
use crate::db::{Conn, params};
use crate::error::{Error, Result};
use crate::model::{HostId, VmState};
use crate::store::Hsdb;

/// The columns [`relocation_row`] decodes.
const RELOCATION_SELECT: &str = "SELECT id, vm, kind, from_host, to_host, phase, started_ms, \
    phase_ms, ended_ms, result, reasons FROM relocation";

/// The most bytes of a relocation's reasons kept (`relocation.reasons`): a longer text
/// is cut at a character boundary and ends with `… (truncated)`. 8 KiB holds the
/// explanation for a group of a few dozen hosts; the rest is one line per further host.
pub const REASONS_MAX: usize = 8 * 1024;

/// The marker ending reasons cut to [`REASONS_MAX`].
const REASONS_TRUNCATED: &str = "\n… (truncated)";

/// `text` bounded to [`REASONS_MAX`] bytes: unchanged if it fits, else cut at a
/// character boundary with a marker saying so.
pub fn cap_reasons(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= REASONS_MAX {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = REASONS_MAX - REASONS_TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{REASONS_TRUNCATED}", &text[..end]))
}
/// The columns [`command_row`] decodes.
const COMMAND_SELECT: &str =
    "SELECT id, hm, kind, vm, arg, created_ms, done_ms, result FROM hm_command";

impl Hsdb {
    /// Change the administrative settings of VM `vm` that are `Some` in `settings`;
    /// `updated_ms = at`. A VM the store does not know yet is created (state ADDED, no
    /// current host: the controller adds a VM before any monitor saw it). Returns
    /// whether the VM was created. A `home_host` that does not exist is
    /// [`Error::NotFound`].
    pub fn set_vm(&mut self, vm: &Uuid, settings: &VmSettings, at: i64) -> Result<bool> {
        const OP: &str = "set_vm";
        self.write(OP, |tx| {
            if let Some(home) = settings.home_host {
                host_exists(tx, home, OP)?;
            }
            let created = tx.execute(
                OP,
                "INSERT INTO vm (uuid, state, updated_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (uuid) DO NOTHING",
                params![UuidText::new(vm), VmState::Added.as_str(), at],
            )? > 0;
            tx.execute(
                OP,
                "UPDATE vm SET managed = COALESCE(?2, managed), \
                 ha_monitor = COALESCE(?3, ha_monitor), priority = COALESCE(?4, priority), \
                 detection_speed = COALESCE(?5, detection_speed), \
                 cpu_milli = COALESCE(?6, cpu_milli), memory_mb = COALESCE(?7, memory_mb), \
                 name = COALESCE(?8, name), home_host = COALESCE(?9, home_host), \
                 updated_ms = ?10 WHERE uuid = ?1",
                params![
                    UuidText::new(vm),
                    settings.managed,
                    settings.ha_monitor,
                    settings.priority.map(|p| p.as_str()),
                    settings.detection_speed.map(|d| d.as_str()),
                    settings.cpu_milli,
                    settings.memory_mb,
                    settings.name.as_deref(),
                    settings.home_host,
                    at,
                ],
            )?;
            // Managing a VM the monitors discovered makes it STARTED (ADDED if no monitor
            // placed it yet); releasing it makes it UNKNOWN, the state of an unmanaged VM
            // seen by a monitor. No pending item: the controller made the change. (The
            // row is locked by the UPDATE above, so a monitor's concurrent batch sees
            // this state, or this sees its.)
            if let Some(managed) = settings.managed {
                tx.execute(
                    OP,
                    "UPDATE vm SET state = CASE \
                     WHEN ?2 = 1 AND state = 'UNKNOWN' AND current_host IS NULL THEN 'ADDED' \
                     WHEN ?2 = 1 AND state = 'UNKNOWN' THEN 'STARTED' \
                     WHEN ?2 = 0 AND state = 'STARTED' THEN 'UNKNOWN' \
                     ELSE state END WHERE uuid = ?1",
                    params![UuidText::new(vm), managed],
                )?;
            }
            Ok(created)
        })
    }

    /// Set the capacity of host `host`: thousandths of a CPU and MiB.
    pub fn set_host_capacity(
        &mut self,
        host: HostId,
        cpu_milli: u32,
        memory_mb: u32,
    ) -> Result<()> {
        const OP: &str = "set_host_capacity";
        let changed = self.autocommit(
            OP,
            "UPDATE host SET cpu_milli = ?2, memory_mb = ?3 WHERE id = ?1",
            params![host, cpu_milli, memory_mb],
        )?;
        found(changed, "host", host.to_string())
    }

    /// Put host `host` in host group `group`.
    pub fn set_host_group(&mut self, host: HostId, group: &str) -> Result<()> {
        const OP: &str = "set_host_group";
        let changed = self.autocommit(
            OP,
            "UPDATE host SET host_group = ?2 WHERE id = ?1",
            params![host, group],
        )?;
        found(changed, "host", host.to_string())
    }

    /// Store parameter `key` = `value` at `scope` (replacing the value there).
    pub fn set_param(&mut self, scope: &ParamScope, key: &str, value: &str) -> Result<()> {
        const OP: &str = "set_param";
        self.autocommit(
            OP,
            "INSERT INTO param (scope, target, name, value) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scope, target, name) DO UPDATE SET value = excluded.value",
            params![scope.kind_text(), scope.target_text(), key, value],
        )?;
        Ok(())
    }

    /// Remove parameter `key` at `scope`; returns whether it was set.
    pub fn unset_param(&mut self, scope: &ParamScope, key: &str) -> Result<bool> {
        const OP: &str = "unset_param";
        let n = self.autocommit(
            OP,
            "DELETE FROM param WHERE scope = ?1 AND target = ?2 AND name = ?3",
            params![scope.kind_text(), scope.target_text(), key],
        )?;
        Ok(n > 0)
    }

    /// The value of parameter `key` at exactly `scope`, if set there.
    pub fn param(&self, scope: &ParamScope, key: &str) -> Result<Option<String>> {
        const OP: &str = "param";
        self.conn.query_opt(
            OP,
            "param",
            "SELECT value FROM param WHERE scope = ?1 AND target = ?2 AND name = ?3",
            params![scope.kind_text(), scope.target_text(), key],
            |c| c.text(0),
        )
    }

    /// Every parameter, by scope kind, target and key.
    pub fn params(&self) -> Result<Vec<ParamRow>> {
        const OP: &str = "params";
        self.conn.query(
            OP,
            "param",
            "SELECT scope, target, name, value FROM param ORDER BY scope, target, name",
            params![],
            |c| {
                let kind = c.text(0)?;
                let target = c.text(1)?;
                let corrupt = |expected| Error::Corrupt {
                    table: "param",
                    column: "target",
                    value: target.clone(),
                    expected,
                };
                let scope = match kind.as_str() {
                    "SYSTEM" => ParamScope::System,
                    "HOST_GROUP" => ParamScope::HostGroup(target.clone()),
                    "HOST" => {
                        ParamScope::Host(HostId(target.parse().map_err(|_| corrupt("host id"))?))
                    }
                    "VM" => {
                        ParamScope::Vm(Uuid::parse(target.as_bytes()).map_err(|_| corrupt("UUID"))?)
                    }
                    _ => {
                        return Err(Error::Corrupt {
                            table: "param",
                            column: "scope",
                            value: kind,
                            expected: "SYSTEM, HOST_GROUP, HOST or VM",
                        });
                    }
                };
                Ok(ParamRow {
                    scope,
                    key: c.text(2)?,
                    value: c.text(3)?,
                })
            },
        )
    }

    /// Begin a restart or relocation of VM `vm`: a `relocation` row in phase `BEGIN`
    /// (also its first step), without reasons. Returns its id.
    pub fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from_host: Option<HostId>,
        to_host: Option<HostId>,
        kind: RelocationKind,
        at: i64,
    ) -> Result<i64> {
        self.relocation_begin_explained(vm, from_host, to_host, kind, None, at)
    }

    /// Begin a restart, relocation or move of VM `vm` as [`Hsdb::relocation_begin`],
    /// storing the decision's explanation `reasons` with it (capped by [`cap_reasons`]).
    pub fn relocation_begin_explained(
        &mut self,
        vm: &Uuid,
        from_host: Option<HostId>,
        to_host: Option<HostId>,
        kind: RelocationKind,
        reasons: Option<&str>,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "relocation_begin";
        let reasons = reasons.map(cap_reasons);
        self.write(OP, |tx| {
            if !tx.exists(
                OP,
                "SELECT 1 FROM vm WHERE uuid = ?1",
                params![UuidText::new(vm)],
            )? {
                return Err(Error::NotFound {
                    what: "vm",
                    key: vm.to_string(),
                });
            }
            for host in [from_host, to_host].into_iter().flatten() {
                host_exists(tx, host, OP)?;
            }
            let id = tx
                .query_int(
                    OP,
                    "INSERT INTO relocation (vm, kind, from_host, to_host, phase, started_ms, \
                     phase_ms, reasons) VALUES (?1, ?2, ?3, ?4, 'BEGIN', ?5, ?5, ?6) \
                     RETURNING id",
                    params![
                        UuidText::new(vm),
                        kind.as_str(),
                        from_host,
                        to_host,
                        at,
                        reasons.as_deref()
                    ],
                )?
                .unwrap_or_default();
            tx.execute(
                OP,
                "INSERT INTO relocation_step (relocation, phase, at_ms) VALUES (?1, 'BEGIN', ?2)",
                params![id, at],
            )?;
            Ok(id)
        })
    }

    /// Relocation `id` entered `phase` at `at` (kept as its last phase and as a step).
    pub fn relocation_phase(&mut self, id: i64, phase: &str, at: i64) -> Result<()> {
        const OP: &str = "relocation_phase";
        self.write(OP, |tx| {
            let changed = tx.execute(
                OP,
                "UPDATE relocation SET phase = ?2, phase_ms = ?3 WHERE id = ?1",
                params![id, phase, at],
            )?;
            found(changed, "relocation", id.to_string())?;
            tx.execute(
                OP,
                "INSERT INTO relocation_step (relocation, phase, at_ms) VALUES (?1, ?2, ?3)",
                params![id, phase, at],
            )?;
            Ok(())
        })
    }

    /// Set the target host of relocation `id` once the planner chose it.
    pub fn relocation_target(&mut self, id: i64, to_host: HostId) -> Result<()> {
        const OP: &str = "relocation_target";
        host_exists(&self.conn, to_host, OP)?;
        let changed = self.autocommit(
            OP,
            "UPDATE relocation SET to_host = ?2 WHERE id = ?1",
            params![id, to_host],
        )?;
        found(changed, "relocation", id.to_string())
    }

    /// Store the decision's explanation of relocation `id` (capped by [`cap_reasons`]),
    /// replacing any stored before: a relocation whose target is chosen after it began
    /// records the reasons of that choice.
    pub fn relocation_reasons(&mut self, id: i64, reasons: &str) -> Result<()> {
        const OP: &str = "relocation_reasons";
        let reasons = cap_reasons(reasons);
        let changed = self.autocommit(
            OP,
            "UPDATE relocation SET reasons = ?2 WHERE id = ?1",
            params![id, reasons.as_ref()],
        )?;
        found(changed, "relocation", id.to_string())
    }

    /// Relocation `id` ended at `at` with `result` (e.g. `SUCCESS`, `FAILED: …`).
    pub fn relocation_end(&mut self, id: i64, result: &str, at: i64) -> Result<()> {
        const OP: &str = "relocation_end";
        let changed = self.autocommit(
            OP,
            "UPDATE relocation SET ended_ms = ?2, result = ?3 WHERE id = ?1",
            params![id, at, result],
        )?;
        found(changed, "relocation", id.to_string())
    }

    /// The newest `limit` relocations, of VM `vm` or of every VM, newest first.
    pub fn relocations(&self, vm: Option<&Uuid>, limit: u32) -> Result<Vec<RelocationRow>> {
        const OP: &str = "relocations";
        let by_vm = format!("{RELOCATION_SELECT} WHERE vm = ?1 ORDER BY id DESC LIMIT ?2");
        let all = format!("{RELOCATION_SELECT} ORDER BY id DESC LIMIT ?1");
        match vm {
            Some(vm) => self.conn.query(
                OP,
                "relocation",
                &by_vm,
                params![UuidText::new(vm), limit],
                relocation_row,
            ),
            None => self
                .conn
                .query(OP, "relocation", &all, params![limit], relocation_row),
        }
    }

    /// Relocation `id`, if it exists.
    pub fn relocation(&self, id: i64) -> Result<Option<RelocationRow>> {
        const OP: &str = "relocation";
        let sql = format!("{RELOCATION_SELECT} WHERE id = ?1");
        self.conn
            .query_opt(OP, "relocation", &sql, params![id], relocation_row)
    }

    /// The phases relocation `id` went through, in order.
    pub fn relocation_steps(&self, id: i64) -> Result<Vec<RelocationStep>> {
        const OP: &str = "relocation_steps";
        self.conn.query(
            OP,
            "relocation_step",
            "SELECT phase, at_ms FROM relocation_step WHERE relocation = ?1 ORDER BY id",
            params![id],
            |c| {
                Ok(RelocationStep {
                    phase: c.text(0)?,
                    at_ms: c.int(1)?,
                })
            },
        )
    }

    /// Queue command `kind` about VM `vm` for monitor `hm`. Returns its id (strictly
    /// increasing, never reused). A monitor that is not registered is
    /// [`Error::NotFound`].
    pub fn enqueue_command(
        &mut self,
        hm: &Uuid,
        kind: CommandKind,
        vm: &Uuid,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "enqueue_command";
        self.write(OP, |tx| insert_command(tx, hm, kind, vm, None, at))
    }

    /// Queue command `kind` about VM `vm` for monitor `hm` with argument `arg` (as
    /// [`Hsdb::enqueue_command`]; CONFIRM_APP_REPORT takes the report generation in
    /// decimal). The argument is stored as given: the monitor validates it.
    pub fn enqueue_command_arg(
        &mut self,
        hm: &Uuid,
        kind: CommandKind,
        vm: &Uuid,
        arg: Option<&str>,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "enqueue_command";
        self.write(OP, |tx| insert_command(tx, hm, kind, vm, arg, at))
    }

    /// The open commands of monitor `hm` with an id above `after_id`, oldest first, at
    /// most `limit`. A monitor passes the last id it handled (0 at start: every open
    /// command, also those its previous run left).
    pub fn commands_for(&self, hm: &Uuid, after_id: i64, limit: u32) -> Result<Vec<CommandRow>> {
        const OP: &str = "commands_for";
        let sql = format!(
            "{COMMAND_SELECT} WHERE hm = ?1 AND id > ?2 AND done_ms IS NULL ORDER BY id LIMIT ?3"
        );
        self.conn.query(
            OP,
            "hm_command",
            &sql,
            params![UuidText::new(hm), after_id, limit],
            command_row,
        )
    }

    /// Command `id`, if it exists.
    pub fn command(&self, id: i64) -> Result<Option<CommandRow>> {
        const OP: &str = "command";
        let sql = format!("{COMMAND_SELECT} WHERE id = ?1");
        self.conn
            .query_opt(OP, "hm_command", &sql, params![id], command_row)
    }

    /// The monitor carried out command `id` at `at`: `result` is `OK` or why it failed.
    /// Returns false if the command does not exist or was already completed (the first
    /// completion is kept).
    pub fn complete_command(&mut self, id: i64, result: &str, at: i64) -> Result<bool> {
        let done = CommandDone {
            id,
            result: result.to_owned(),
            at,
        };
        Ok(self.complete_commands(std::slice::from_ref(&done))? > 0)
    }

    /// Mark every command of `done` done with its result, in ONE transaction (one
    /// commit, one fsync, however many a monitor carried out in a turn). Returns how
    /// many were newly completed: an unknown id, or one completed already (its first
    /// completion is kept), counts for nothing.
    pub fn complete_commands(&mut self, done: &[CommandDone]) -> Result<usize> {
        const OP: &str = "complete_commands";
        if done.is_empty() {
            return Ok(0);
        }
        self.write(OP, |tx| {
            let mut completed = 0;
            for d in done {
                completed += tx.execute(
                    OP,
                    "UPDATE hm_command SET done_ms = ?2, result = ?3 WHERE id = ?1 \
                     AND done_ms IS NULL",
                    params![d.id, d.at, d.result],
                )?;
            }
            Ok(completed)
        })
    }

    /// Delete the commands completed before `done_before_ms`; returns how many.
    pub fn prune_commands(&mut self, done_before_ms: i64) -> Result<usize> {
        const OP: &str = "prune_commands";
        self.autocommit(
            OP,
            "DELETE FROM hm_command WHERE done_ms IS NOT NULL AND done_ms < ?1",
            params![done_before_ms],
        )
    }

    /// Append an event to the outbox; returns its id.
    pub fn record_event(
        &mut self,
        kind: &str,
        vm: Option<&Uuid>,
        hm: Option<&Uuid>,
        text: &str,
        at: i64,
    ) -> Result<i64> {
        const OP: &str = "record_event";
        // On PostgreSQL, under the outbox lock held to commit (docs/hsdb.md §6).
        self.write(OP, |tx| {
            if tx.is_pg() {
                tx.exists(OP, PG_OUTBOX_LOCK, params![OUTBOX_LOCK])?;
            }
            Ok(tx
                .query_int(
                    OP,
                    "INSERT INTO event (kind, vm, hm, text, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    params![kind, opt_uuid(vm), opt_uuid(hm), text, at],
                )?
                .unwrap_or_default())
        })
    }

    /// Retire monitor `hm` (decommissioned, replaced): its row, its (VM, monitor) rows,
    /// interfaces and commands go, and so do its undelivered monitor events. The VM items
    /// it wrote stay pending (their `hm` still names it). Returns whether it existed.
    pub fn retire_hm(&mut self, hm: &Uuid) -> Result<bool> {
        const OP: &str = "retire_hm";
        self.write(OP, |tx| {
            tx.execute(
                OP,
                "DELETE FROM pending WHERE hm = ?1 AND kind = 'HM_EVENT'",
                params![UuidText::new(hm)],
            )?;
            let n = tx.execute(
                OP,
                "DELETE FROM hm WHERE uuid = ?1",
                params![UuidText::new(hm)],
            )?;
            Ok(n > 0)
        })
    }

    /// Delete the VMs gone for good: unmanaged, watched by no monitor (no `vm_hm` row),
    /// and unchanged since `before_ms`, and not found by a discovery since then (a VM
    /// discovery keeps finding is not gone). Their pending items, relocations and
    /// applications go with them. Returns how many VMs went.
    pub fn prune_vms(&mut self, before_ms: i64) -> Result<usize> {
        const OP: &str = "prune_vms";
        self.autocommit(
            OP,
            "DELETE FROM vm WHERE managed = 0 AND updated_ms < ?1 \
             AND NOT EXISTS (SELECT 1 FROM vm_hm WHERE vm_hm.vm = vm.uuid) \
             AND NOT EXISTS (SELECT 1 FROM vm_discovery d WHERE d.vm = vm.uuid \
             AND d.vanished_ms IS NULL AND d.last_seen_ms >= ?1)",
            params![before_ms],
        )
    }
}

/// Queue one command inside an open transaction (also used by `apply` for FORGET_VM).
pub(crate) fn insert_command(
    conn: &Conn,
    hm: &Uuid,
    kind: CommandKind,
    vm: &Uuid,
    arg: Option<&str>,
    at: i64,
) -> Result<i64> {
    const OP: &str = "enqueue_command";
    if !conn.exists(
        OP,
        "SELECT 1 FROM hm WHERE uuid = ?1",
        params![UuidText::new(hm)],
    )? {
        return Err(Error::NotFound {
            what: "host monitor",
            key: hm.to_string(),
        });
    }
    Ok(conn
        .query_int(
            OP,
            "INSERT INTO hm_command (hm, kind, vm, arg, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            params![UuidText::new(hm), kind.as_str(), UuidText::new(vm), arg, at],
        )?
        .unwrap_or_default())
}

fn host_exists(conn: &Conn, host: HostId, op: &'static str) -> Result<()> {
    if conn.exists(op, "SELECT 1 FROM host WHERE id = ?1", params![host])? {
        Ok(())
    } else {
        Err(Error::NotFound {
            what: "host",
            key: host.to_string(),
        })
    }
}

fn found(changed: usize, what: &'static str, key: String) -> Result<()> {
    if changed == 0 {
        Err(Error::NotFound { what, key })
    } else {
        Ok(())
    }
}

fn relocation_row(c: &Columns<'_, '_>) -> Result<RelocationRow> {
    Ok(RelocationRow {
        id: c.int(0)?,
        vm: c.uuid(1, "vm")?,
        kind: c.enumeration(
            2,
            "kind",
            "RESTART, RELOCATE or MOVE",
            RelocationKind::from_text,
        )?,
        from_host: c.opt_int(3)?.map(HostId),
        to_host: c.opt_int(4)?.map(HostId),
        phase: c.text(5)?,
        started_ms: c.int(6)?,
        phase_ms: c.opt_int(7)?,
        ended_ms: c.opt_int(8)?,
        result: c.opt_text(9)?,
        reasons: c.opt_text(10)?,
    })
}

pub(crate) fn command_row(c: &Columns<'_, '_>) -> Result<CommandRow> {
    Ok(CommandRow {
        id: c.int(0)?,
        hm: c.uuid(1, "hm")?,
        kind: c.enumeration(
            2,
            "kind",
            "STOP_MONITORING, START_MONITORING, FORGET_VM, FETCH_APP_REPORT or \
             CONFIRM_APP_REPORT",
            CommandKind::from_text,
        )?,
        vm: c.uuid(3, "vm")?,
        arg: c.opt_text(4)?,
        created_ms: c.int(5)?,
        done_ms: c.opt_int(6)?,
        result: c.opt_text(7)?,
    })
}
