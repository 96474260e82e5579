//! The board: one read of what every page and the live snapshot show — hosts, monitors,
//! VMs with their heartbeats, relocations in progress, hosts in maintenance — and what
//! the dashboard derives from it: each VM's health (docs/dashboard.md, "Health").
//!
//! Health is read from what the control plane wrote into the HSDB, never guessed from a
//! clock: a VM is FAILED while a restart or relocation for a failure is in progress, or
//! while every monitor of its host misses it and the control plane wrote a failure event
//! for it since the miss began (VM_FAILURE_DETECTED, a failed restart, no host, a spent
//! budget, …). The same state therefore reads the same on every page and in every
//! snapshot, and the browser's clock plays no part.

use std::collections::HashMap;

use hsdb::{
    EventFilter, HeartbeatState, HmRow, HmState, HostId, HostRecord, Hsdb, RelocationRow,
    RestartRecord, Uuid, VmHmRow, VmRow, VmState,
};

use crate::events::EventKind;
use crate::relocate::RestartKind;

/// Relocations in progress read at most (more would be a platform in trouble; the page
/// says how many are shown).
pub const MAX_OPEN_RELOCATIONS: u32 = 1_000;
/// Newest failure events read to judge health.
const FAILURE_EVENTS: u32 = 2_000;

/// The events that say the control plane considers a VM failed (or could not recover
/// it): while its heartbeats are still missed after one of them, the VM is FAILED.
pub const FAILURE_KINDS: &[EventKind] = &[
    EventKind::VmFailureDetected,
    EventKind::VmNonrespDetected,
    EventKind::VmLpmHangDetected,
    EventKind::AppFailureDetected,
    EventKind::VmRestartAdvised,
    EventKind::VmRestartNoHost,
    EventKind::VmRestartFailed,
    EventKind::VmRestartBudgetExhausted,
];

/// A VM's health as the dashboard shows it (`data-health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Heartbeats arrive (or the VM is not expected to send any right now).
    Ok,
    /// The control plane considers the VM failed: a restart / relocation for a failure
    /// is in progress, or it declared the failure and the heartbeats are still missed.
    Failed,
    /// A planned move (evacuate, restore, move) is in progress.
    Moving,
    /// Every monitor of its host misses its heartbeats; the control plane has not
    /// declared a failure (yet: it waits for the VM's failure detection time).
    Missing,
    /// Not managed, or heartbeat monitoring is off: the control plane never acts on it.
    Unmonitored,
    /// Its agent stopped on purpose (SUSPENDED) or monitoring was stopped.
    Idle,
    /// No monitor has seen it yet.
    Unknown,
}

impl Health {
    /// The text in `data-health`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Failed => "FAILED",
            Health::Moving => "MOVING",
            Health::Missing => "MISSING",
            Health::Unmonitored => "UNMONITORED",
            Health::Idle => "IDLE",
            Health::Unknown => "UNKNOWN",
        }
    }
}

/// A VM's health and the words behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    /// The health.
    pub health: Health,
    /// Why, for people.
    pub why: String,
}

/// A relocation in progress with its cause (`cause …` step), if it has one.
#[derive(Debug, Clone)]
pub struct OpenRelocation {
    /// The row.
    pub row: RelocationRow,
    /// `vm_failure`, `evacuate`, …
    pub cause: Option<String>,
}

/// Everything read once for a page or a snapshot.
pub struct Board {
    /// Every host, by id.
    pub hosts: Vec<HostRecord>,
    /// Every monitor.
    pub hms: Vec<HmRow>,
    /// Every VM, by UUID.
    pub vms: Vec<VmRow>,
    /// Every (VM, monitor) row, by VM.
    pub vm_hms: HashMap<Uuid, Vec<VmHmRow>>,
    /// Relocations in progress, oldest first.
    pub open: Vec<OpenRelocation>,
    /// Hosts in maintenance, since when.
    pub maintenance: HashMap<HostId, i64>,
    /// The newest failure event's time of each VM.
    failures: HashMap<Uuid, i64>,
    names: HashMap<HostId, String>,
    hm_host: HashMap<Uuid, HostId>,
}

impl Board {
    /// Read the board.
    pub fn load(db: &Hsdb) -> hsdb::Result<Board> {
        let hosts = db.hosts()?;
        let hms = db.hms()?;
        let vms = db.vms()?;
        let mut vm_hms: HashMap<Uuid, Vec<VmHmRow>> = HashMap::new();
        for hm in &hms {
            for row in db.vm_hms_of(&hm.uuid)? {
                vm_hms.entry(row.vm).or_default().push(row);
            }
        }
        let mut open = Vec::new();
        for id in db.open_relocation_ids(MAX_OPEN_RELOCATIONS)? {
            if let Some(row) = db.relocation(id)? {
                let cause = db
                    .relocation_steps(id)?
                    .into_iter()
                    .find_map(|s| s.phase.strip_prefix("cause ").map(str::to_owned));
                open.push(OpenRelocation { row, cause });
            }
        }
        let maintenance = db.hosts_in_maintenance()?.into_iter().collect();
        let mut failures: HashMap<Uuid, i64> = HashMap::new();
        let filter = EventFilter {
            kinds: Some(FAILURE_KINDS.iter().map(|k| k.name().to_owned()).collect()),
            limit: FAILURE_EVENTS,
            ..EventFilter::default()
        };
        for e in db.events_newest(&filter)? {
            if let Some(vm) = e.vm {
                let t = failures.entry(vm).or_insert(e.created_ms);
                *t = (*t).max(e.created_ms);
            }
        }
        let names = hosts.iter().map(|h| (h.id, h.name.clone())).collect();
        let hm_host = hms.iter().map(|h| (h.uuid, h.host)).collect();
        Ok(Board {
            hosts,
            hms,
            vms,
            vm_hms,
            open,
            maintenance,
            failures,
            names,
            hm_host,
        })
    }

    /// The name of host `id` (`#id` for a host the table lacks, `-` for none).
    pub fn host_name(&self, id: Option<HostId>) -> String {
        match id {
            None => "-".to_owned(),
            Some(id) => self
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("#{id}")),
        }
    }

    /// The host a monitor runs on.
    pub fn hm_host(&self, hm: &Uuid) -> Option<HostId> {
        self.hm_host.get(hm).copied()
    }

    /// The host record of `id`.
    pub fn host(&self, id: HostId) -> Option<&HostRecord> {
        self.hosts.iter().find(|h| h.id == id)
    }

    /// The host group of a VM: its current host's, else its home host's.
    pub fn vm_group(&self, vm: &VmRow) -> Option<&str> {
        vm.current_host
            .or(vm.home_host)
            .and_then(|h| self.host(h))
            .map(|h| h.host_group.as_str())
    }

    /// The monitors' rows of `vm`.
    pub fn heartbeats(&self, vm: &Uuid) -> &[VmHmRow] {
        self.vm_hms.get(vm).map_or(&[], Vec::as_slice)
    }

    /// When every monitor of the VM's current host misses it: the earliest miss.
    pub fn missed_since(&self, vm: &VmRow) -> Option<i64> {
        let host = vm.current_host?;
        let on_host: Vec<&VmHmRow> = self
            .heartbeats(&vm.uuid)
            .iter()
            .filter(|r| self.hm_host(&r.hm) == Some(host))
            .collect();
        if on_host.is_empty() || !on_host.iter().all(|r| r.hb_missed_ms.is_some()) {
            return None;
        }
        on_host.iter().filter_map(|r| r.hb_missed_ms).min()
    }

    /// The relocation in progress of `vm`, if any.
    pub fn open_of(&self, vm: &Uuid) -> Option<&OpenRelocation> {
        self.open.iter().rev().find(|o| o.row.vm == *vm)
    }

    /// The health of `vm` (rules in the module doc and docs/dashboard.md).
    pub fn health(&self, vm: &VmRow) -> HealthView {
        let view = |health, why: String| HealthView { health, why };
        if let Some(o) = self.open_of(&vm.uuid) {
            let planned = o
                .cause
                .as_deref()
                .and_then(RestartKind::from_name)
                .is_some_and(RestartKind::is_planned)
                || o.row.kind == hsdb::RelocationKind::Move;
            let what = format!(
                "{} {} in progress (phase {}{})",
                o.row.kind.as_str().to_ascii_lowercase(),
                o.row.id,
                o.row.phase,
                o.cause
                    .as_deref()
                    .map(|c| format!(", cause {c}"))
                    .unwrap_or_default()
            );
            return if planned {
                view(Health::Moving, what)
            } else {
                view(Health::Failed, what)
            };
        }
        let missed = self.missed_since(vm);
        if let (Some(since), Some(failed_at)) = (missed, self.failures.get(&vm.uuid))
            && *failed_at >= since
        {
            return view(
                Health::Failed,
                "the control plane declared it failed and its heartbeats are still missed"
                    .to_owned(),
            );
        }
        if !vm.managed {
            return view(
                Health::Unmonitored,
                "not managed: the control plane never restarts it".to_owned(),
            );
        }
        if !vm.ha_monitor {
            return view(
                Health::Unmonitored,
                "heartbeat monitoring is disabled for it".to_owned(),
            );
        }
        if missed.is_some() {
            return view(
                Health::Missing,
                "every monitor of its host misses its heartbeats; no failure declared yet"
                    .to_owned(),
            );
        }
        let rows = self.heartbeats(&vm.uuid);
        match vm.state {
            VmState::Suspended | VmState::Stopped | VmState::Stopping | VmState::Removing => {
                return view(
                    Health::Idle,
                    format!("state {}: not heartbeating on purpose", vm.state),
                );
            }
            VmState::Added | VmState::Starting | VmState::Unknown if rows.is_empty() => {
                return view(Health::Unknown, "no monitor has seen it yet".to_owned());
            }
            _ => {}
        }
        if !rows.is_empty()
            && rows.iter().all(|r| {
                matches!(
                    r.last_state,
                    HeartbeatState::Suspended | HeartbeatState::Stopped
                )
            })
        {
            return view(
                Health::Idle,
                "every monitor has it suspended or stopped".to_owned(),
            );
        }
        view(Health::Ok, "heartbeats arrive".to_owned())
    }

    /// Monitors UP and in all.
    pub fn monitors_up(&self) -> (usize, usize) {
        let up = self.hms.iter().filter(|h| h.state == HmState::Up).count();
        (up, self.hms.len())
    }

    /// Is the monitor silent: its last heartbeat older than `silent_after_ms`?
    pub fn silent(hm: &HmRow, now_ms: i64, silent_after_ms: i64) -> bool {
        now_ms.saturating_sub(hm.last_hb_ms) > silent_after_ms
    }

    /// Host groups, sorted, each with its hosts.
    pub fn groups(&self) -> Vec<(String, Vec<&HostRecord>)> {
        let mut out: std::collections::BTreeMap<String, Vec<&HostRecord>> = Default::default();
        for h in &self.hosts {
            out.entry(h.host_group.clone()).or_default().push(h);
        }
        out.into_iter().collect()
    }
}

/// The restart budgets of one VM as `hactl query vm` counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// Restarts for its own failures within the window.
    pub used: u32,
    /// `vm_restart_limit`.
    pub limit: u32,
    /// `vm_restart_window`, for people.
    pub window: String,
    /// Same-host restarts since the last relocation (the application ladder).
    pub ladder: u32,
    /// Same-host restarts before the next relocates.
    pub ladder_limit: u32,
}

impl Budgets {
    /// `2/3 in 1h` (`(spent)` when used up).
    pub fn text(&self) -> String {
        let spent = if self.used >= self.limit {
            " (spent)"
        } else {
            ""
        };
        format!("{}/{} in {}{spent}", self.used, self.limit, self.window)
    }
}

/// What the budgets of VMs are counted from: the restarts of the longest window and each
/// group's parameters (docs/controlplane.md, "Executor"; fde/budget.rs).
pub struct BudgetBook {
    rows: Vec<RestartRecord>,
    params: HashMap<String, crate::params::GroupParams>,
    base: crate::params::GroupParams,
}

/// Restart rows read for the budgets at most.
const BUDGET_ROWS: u32 = 100_000;

impl BudgetBook {
    /// Read the restarts of the longest window of any group in `board`.
    pub fn load(
        db: &Hsdb,
        board: &Board,
        profile: crate::params::Profile,
        now_ms: i64,
    ) -> hsdb::Result<BudgetBook> {
        let settings = db.params()?;
        let resolve = |g: &str| {
            crate::params::GroupParams::resolve_from(g, profile, &settings).unwrap_or_else(|_| {
                match profile {
                    crate::params::Profile::Fast => crate::params::GroupParams::fast(g),
                    crate::params::Profile::Standard => crate::params::GroupParams::standard(g),
                }
            })
        };
        let mut params = HashMap::new();
        let mut longest = crate::fde::APP_RESTART_WINDOW_MS;
        for (g, _) in board.groups() {
            let p = resolve(&g);
            longest = longest.max(p.vm_restart_window_ms);
            params.insert(g, p);
        }
        let base = resolve("");
        longest = longest.max(base.vm_restart_window_ms);
        let rows = db.restarts_since(None, now_ms.saturating_sub(longest), BUDGET_ROWS)?;
        Ok(BudgetBook { rows, params, base })
    }

    /// The parameters of group `g` (the system's when it has none).
    pub fn params(&self, g: Option<&str>) -> &crate::params::GroupParams {
        g.and_then(|g| self.params.get(g)).unwrap_or(&self.base)
    }

    /// The budgets of `vm` in group `group`.
    pub fn of(&self, vm: &VmRow, group: Option<&str>, now_ms: i64) -> Budgets {
        let p = self.params(group);
        let since = now_ms.saturating_sub(p.vm_restart_window_ms);
        let used = crate::fde::budget_used(&self.rows, &vm.uuid, since).len();
        let ladder = crate::fde::app_ladder(
            &self.rows,
            &vm.uuid,
            now_ms.saturating_sub(crate::fde::APP_RESTART_WINDOW_MS),
        );
        Budgets {
            used: u32::try_from(used).unwrap_or(u32::MAX),
            limit: p.vm_restart_limit,
            window: crate::fde::show_window(p.vm_restart_window_ms),
            ladder,
            ladder_limit: crate::fde::APP_SAME_HOST_RESTARTS,
        }
    }
}

/// The VM named `given` in `vms`: a UUID, or a name exactly one VM has.
pub fn find_vm<'a>(vms: &'a [VmRow], given: &str) -> Result<&'a VmRow, String> {
    if let Ok(uuid) = Uuid::parse(given.as_bytes()) {
        return vms
            .iter()
            .find(|v| v.uuid == uuid)
            .ok_or_else(|| format!("no VM with UUID {given}"));
    }
    let found: Vec<&VmRow> = vms.iter().filter(|v| v.name == given).collect();
    match found.as_slice() {
        [] => Err(format!(
            "no VM named {given:?} (neither a UUID nor a VM's name)"
        )),
        [one] => Ok(one),
        many => Err(format!(
            "{} VMs are named {given:?}: give the UUID ({})",
            many.len(),
            many.iter()
                .map(|v| v.uuid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A VM's display name: its name, or its UUID when it has none.
pub fn vm_label(vm: &VmRow) -> String {
    if vm.name.is_empty() {
        vm.uuid.to_string()
    } else {
        vm.name.clone()
    }
}
