//! Restart budgets (docs/controlplane.md, "Executor"): how often the engine restarts one
//! VM for the VM's own failures.
//!
//! Two counters, both counted from the durable `relocation` rows (so a daemon restart
//! or a new leader forgets nothing):
//!
//! - the critical-application ladder (seed 004 L13767-13771, gap 17): same-host restarts
//!   since the VM's last relocation to another host, within
//!   [`APP_RESTART_WINDOW_MS`](super::APP_RESTART_WINDOW_MS); at
//!   [`APP_SAME_HOST_RESTARTS`](super::APP_SAME_HOST_RESTARTS) the next one relocates
//!   ([`app_ladder`]);
//! - the per-VM budget (ours, after vSphere HA's "maximum per-VM resets" 3 in a
//!   "maximum resets time window" of 1 hour): restarts caused by the VM itself
//!   (`vm_failure`, `app_restart`) begun within the last `vm_restart_window` that
//!   succeeded or are still in progress. At `vm_restart_limit` the VM is not restarted:
//!   the decision says so at every scan it fails, and VM_RESTART_BUDGET_EXHAUSTED is
//!   written once per episode (an episode ends when the budget has room again). Host
//!   failures and planned moves never count and are never refused: the VM did nothing
//!   wrong. The ladder's step to another host (`app_relocation`) is neither counted nor
//!   refused: it is the ladder's own answer to repeated failures; the same-host restarts
//!   on the new host are, so a VM whose application keeps failing stops being restarted
//!   once the budget is spent.

use hsdb::{RelocationKind, RestartRecord, Uuid, VmRow};

use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::params::show_ms;
use crate::relocate::RestartKind;

/// The causes the per-VM budget counts: the VM's own failures.
pub const BUDGET_CAUSES: [RestartKind; 2] = [RestartKind::VmFailure, RestartKind::AppRestart];

/// Does row `r` count in the per-VM budget: caused by the VM, and succeeded or still in
/// progress (a start that failed on its target did not restart the VM)?
pub fn counts_in_budget(r: &RestartRecord) -> bool {
    let cause = r.cause.as_deref().and_then(RestartKind::from_name);
    cause.is_some_and(|c| BUDGET_CAUSES.contains(&c))
        && r.result.as_deref().is_none_or(|x| x.starts_with("success"))
}

/// The rows of one VM (newest first) that count in its budget.
pub fn budget_used(rows: &[RestartRecord], vm: &Uuid, since_ms: i64) -> Vec<i64> {
    rows.iter()
        .filter(|r| r.vm == *vm && r.started_ms >= since_ms && counts_in_budget(r))
        .map(|r| r.started_ms)
        .collect()
}

/// The critical-application ladder's count for one VM: its newest rows (newest first)
/// that are same-host restarts begun at or after `since_ms`, up to the first that is not.
pub fn app_ladder(rows: &[RestartRecord], vm: &Uuid, since_ms: i64) -> u32 {
    let n = rows
        .iter()
        .filter(|r| r.vm == *vm)
        .take_while(|r| r.kind == RelocationKind::Restart && r.started_ms >= since_ms)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `1h`, `90m`, `45s`: a window for people.
pub fn show_window(ms: i64) -> String {
    if ms >= 3_600_000 && ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else {
        show_ms(ms)
    }
}

impl Fde {
    /// May `row` be restarted again for its own failure? `false` when its budget is
    /// spent: decided (and reported once per episode) here.
    pub(super) fn budget_allows(
        &mut self,
        now_ms: i64,
        row: &VmRow,
        why: &str,
        store: &mut dyn HealthStore,
    ) -> Result<bool, FdeError> {
        let limit = self.params.vm_restart_limit;
        let window = self.params.vm_restart_window_ms;
        let since = now_ms.saturating_sub(window);
        let rows = store.restarts_since(&row.uuid, since)?;
        let used = budget_used(&rows, &row.uuid, since);
        let n = u32::try_from(used.len()).unwrap_or(u32::MAX);
        if n < limit {
            self.budget_spent.remove(&row.uuid);
            return Ok(true);
        }
        let name = super::vm::display_name(row);
        let oldest = used.last().copied().unwrap_or(now_ms);
        let text = format!(
            "VM {name} needs a restart ({why}) but was restarted {n} times within \
             vm_restart_window {} (vm_restart_limit {limit}): not restarted; the budget has \
             room again in {} (or raise vm_restart_limit)",
            show_window(window),
            show_ms((oldest + window - now_ms).max(0))
        );
        tracing::error!(vm = %row.uuid, restarts = n, limit, window_ms = window, "{text}");
        self.decide(
            now_ms,
            Subject::Vm {
                uuid: row.uuid,
                name,
            },
            Verdict::BudgetExhausted,
            text.clone(),
        );
        if self.budget_spent.insert(row.uuid) {
            self.event(Event {
                kind: EventKind::VmRestartBudgetExhausted,
                vm: Some(row.uuid),
                hm: None,
                text,
                at: now_ms,
            });
        }
        Ok(false)
    }
}
