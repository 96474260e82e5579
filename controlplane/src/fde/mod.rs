//! The Failure Detection Engine (DESIGN.md §6, seed-controlplane.md §3): one engine per
//! host group, decides from QuickQuery and NeedsAttention whether a host or a VM failed,
//! and has the [`relocate`](crate::relocate) executor restart what failed, on targets a
//! [`Planner`] picks.
//!
//! Sans-IO in spirit: the engine holds no thread, no socket and no clock. The caller
//! (the `hactl run` daemon, or the simulation on a virtual clock) calls
//! [`Fde::tick`] with the time, the store and the platform, and calls again at the time
//! it returns. Each due tick runs one scan: one request, QuickQuery or NeedsAttention
//! (NeedsAttention iff `scan % na_every == 0`, the seed's QQ, QQ, NA; scan 1 is a QQ and
//! runs at the first tick, with no wait — seed-controlplane.md §2.6), then host decisions
//! before VM decisions (seed 004 L4729-4733), then one step of every restart in progress.
//!
//! Rules (each decision is logged with its reason and numbers, and kept in
//! [`Fde::decisions`]; docs/controlplane.md has the tables):
//! - **Host** (QuickQuery): failed only when *every* monitor of it is unhealthy (DOWN, or
//!   silent longer than `hm_silent_after`) continuously for `host_failure_detection_time`
//!   *and* the platform says its hypervisor is gone (`host_alive` = false; an error or
//!   timeout is not a confirmation). Every monitor stopped on purpose (DOWN, reason 0x40)
//!   and the host gone is a planned shutdown, not a failure (gap 3).
//! - **VM** (NeedsAttention): `missedHb − HBoffset` below VMFDT → no action; at or above
//!   → ping; pingable → ignored; not pingable → VM_FAILURE_DETECTED and the platform's
//!   state decides (seed 004 L4804-4871): Running with an OS that had started → recover;
//!   Not Activated → HBoffset := missedHb, and a VM that crashed off is recovered at
//!   2 × VMFDT; Open Firmware → recover; Migrating - Running a day → VM_LPM_HANG_DETECTED;
//!   the other states at 2 × VMFDT → VM_NONRESP_DETECTED.
//! - A probe error is never evidence of failure: decided again at the next scan.
//! - Misses are no evidence while a monitor of the VM's host has an HA interface DOWN
//!   (docs/architecture.md, "The monitor's own health") or while no monitor of the host
//!   is healthy (the host decision covers it).
//! - A VM being restarted (or queued for it) is never decided on again.

mod app;
mod budget;
mod cleanup;
mod host;
mod log;
mod maintenance;
mod place;
mod store;
mod takeover;
mod verify;
mod view;
mod vm;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use hsdb::{HostId, Uuid};

use crate::events::Event;
use crate::params::GroupParams;
use crate::planner::{Planner, Policies, PolicyPlanner};
use crate::platform::Platform;
use crate::relocate::{Executor, Ledger, Restart};

pub use app::{APP_FETCH_GIVE_UP_MS, APP_FETCHES_PER_SCAN, AppFetch, DBELL_REPORT};
pub use budget::{BUDGET_CAUSES, app_ladder, budget_used, counts_in_budget, show_window};
pub use log::{Decision, DecisionLog, Subject, Verdict};
pub use place::PlacementJob;
pub use store::LosingAcks;
pub use takeover::{OpenRelocation, TAKE_OVER_MAX_AGE_MS, TakeOver};
pub use view::{HostView, MonitorView, NaView, NodeData, NodeEvent, REASON_SHUTDOWN, VmAttention};

/// The doorbell bit that says "a critical application of this VM is in FAILURE" (ours:
/// the seed's agent answers an application-info request instead, seed 004 L13631-13651,
/// and its vectors' bits are not documented). The agent's application engine rings it
/// with [`DBELL_REPORT`] while a critical application is in FAILURE; a report listing one
/// escalates the same way (fde/app.rs).
pub const DBELL_APP_CRITICAL_FAILURE: u64 = hvha_appreport::DBELL_APP_CRITICAL_FAILURE;

/// Same-host VM restarts for a failed critical application before the VM is relocated
/// (seed 004 L13767-13771: hard-coded 3).
pub const APP_SAME_HOST_RESTARTS: u32 = 3;

/// Same-host restarts older than this do not count toward [`APP_SAME_HOST_RESTARTS`]
/// (ours, gap 17): an application that failed once a month is not relocated on its
/// fourth failure of the year.
pub const APP_RESTART_WINDOW_MS: i64 = 24 * 3_600_000;

/// Migrating for longer than this with missed heartbeats: VM_LPM_HANG_DETECTED
/// (seed 004 L4866-4867).
pub const LPM_HANG_AFTER_S: u64 = 86_400;

/// Decisions the engine keeps in memory.
pub const DECISION_LOG_CAPACITY: usize = 4_096;

/// Bounds NeedsAttention is asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaLimits {
    /// Items one reply carries at most.
    pub max_items: u32,
    /// A monitor silent longer than this is listed.
    pub hm_silent_after_ms: i64,
}

/// What the engine reads from the store (and, through [`Ledger`], writes).
/// Implemented for [`hsdb::Hsdb`]; tests use a fake.
pub trait HealthStore: Ledger {
    /// QuickQuery: the hosts of `group` with every monitor of each.
    fn quick_query(&mut self, now_ms: i64, group: &str) -> hsdb::Result<Vec<HostView>>;
    /// NeedsAttention for the hosts of `group`; tags the reported items with `new_tag`.
    fn needs_attention(
        &mut self,
        now_ms: i64,
        group: &str,
        limits: NaLimits,
        new_tag: i64,
    ) -> hsdb::Result<NaView>;
    /// Acknowledge a NeedsAttention tag; returns the items cleared.
    fn acknowledge(&mut self, tag: i64) -> hsdb::Result<usize>;
    /// Pending node events of the monitors of `group`, tagged with `new_tag`.
    fn node_data(&mut self, group: &str, new_tag: i64) -> hsdb::Result<NodeData>;
    /// Acknowledge a node-data tag.
    fn acknowledge_node_data(&mut self, tag: i64) -> hsdb::Result<usize>;
    /// One VM.
    fn vm(&mut self, uuid: &Uuid) -> hsdb::Result<Option<hsdb::VmRow>>;
    /// The VMs on `host`: its current host, or, for a VM no monitor ever placed (an
    /// agent-less VM the operator added), its home host.
    fn vms_on_host(&mut self, host: HostId) -> hsdb::Result<Vec<hsdb::VmRow>>;
    /// Names of the monitor's HA interfaces that are DOWN now.
    fn deaf_interfaces(&mut self, hm: &Uuid) -> hsdb::Result<Vec<String>>;
    /// The VM's same-host restarts since its last relocation to another host, counting
    /// only those begun at or after `since_ms` (from its `relocation` rows).
    fn same_host_restarts(&mut self, vm: &Uuid, since_ms: i64) -> hsdb::Result<u32>;
    /// Restarts and relocations not ended, with their steps (what a new term takes
    /// over). A store without `relocation` rows has none.
    fn open_relocations(&mut self) -> hsdb::Result<Vec<OpenRelocation>> {
        Ok(Vec::new())
    }
    /// Cleanups owed to hosts, not yet done (`owed_cleanup`). A store without them has
    /// none (the engine then keeps them in memory only).
    fn owed_cleanups(&mut self) -> hsdb::Result<Vec<hsdb::OwedCleanup>> {
        Ok(Vec::new())
    }
    /// Record a cleanup owed to `host`; its id, or `None` when the store keeps none.
    fn owe_cleanup(
        &mut self,
        host: HostId,
        vm: &Uuid,
        relocation: Option<i64>,
        why: &str,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        let _ = (host, vm, relocation, why, at);
        Ok(None)
    }
    /// Owed cleanup `id` ended (`done`, `text` its result) or failed again (`text` why).
    fn owed_cleanup_outcome(
        &mut self,
        id: i64,
        done: bool,
        text: &str,
        at: i64,
    ) -> hsdb::Result<()> {
        let _ = (id, done, text, at);
        Ok(())
    }
    /// Hosts in planned maintenance, with the time it began.
    fn hosts_in_maintenance(&mut self) -> hsdb::Result<Vec<(HostId, i64)>> {
        Ok(Vec::new())
    }
    /// Put `host` in maintenance (`at`) or end it (`None`).
    fn set_host_maintenance(
        &mut self,
        host: HostId,
        at: Option<i64>,
        request: Option<i64>,
    ) -> hsdb::Result<()> {
        let _ = (host, at, request);
        Ok(())
    }
    /// Operator requests of `group` not ended, oldest first.
    fn open_operator_requests(&mut self, group: &str) -> hsdb::Result<Vec<hsdb::OperatorRequest>> {
        let _ = group;
        Ok(Vec::new())
    }
    /// Progress or end of an operator request.
    fn update_operator_request(
        &mut self,
        id: i64,
        state: hsdb::RequestState,
        progress: &str,
        result: Option<&str>,
        at: i64,
    ) -> hsdb::Result<()> {
        let _ = (id, state, progress, result, at);
        Ok(())
    }
    /// Restarts and relocations of `vm` begun at or after `since_ms`, newest first, with
    /// their causes (the restart budget counts them). A store without `relocation` rows
    /// has none.
    fn restarts_since(
        &mut self,
        vm: &Uuid,
        since_ms: i64,
    ) -> hsdb::Result<Vec<hsdb::RestartRecord>> {
        let _ = (vm, since_ms);
        Ok(Vec::new())
    }
    /// When the VM's last restart or relocation ended (its start while it has not); the
    /// critical-application ladder ignores evidence older than that. `None`: never.
    fn last_restart_end(&mut self, vm: &Uuid) -> hsdb::Result<Option<i64>> {
        let _ = vm;
        Ok(None)
    }
    /// Each monitor's last word on the VM's heartbeats (`vm_hm`): who has a session with
    /// its agent.
    fn vm_sessions(&mut self, vm: &Uuid) -> hsdb::Result<Vec<(Uuid, hsdb::HeartbeatState)>> {
        let _ = vm;
        Ok(Vec::new())
    }
    /// The VM's open `FETCH_APP_REPORT`, if any. A store without application reports has
    /// none (and the engine fetches none).
    fn app_fetch_open(&mut self, vm: &Uuid) -> hsdb::Result<Option<AppFetch>> {
        let _ = vm;
        Ok(None)
    }
    /// Queue `FETCH_APP_REPORT` about `vm` for monitor `hm`; its id, or `None` when the
    /// store keeps no application reports.
    fn app_fetch_request(&mut self, hm: &Uuid, vm: &Uuid, at: i64) -> hsdb::Result<Option<i64>> {
        let _ = (hm, vm, at);
        Ok(None)
    }
    /// Queue `CONFIRM_APP_REPORT` of report generation `generation` for monitor `hm`;
    /// its id, or `None` when the store keeps no application reports.
    fn app_confirm_request(
        &mut self,
        hm: &Uuid,
        vm: &Uuid,
        generation: u64,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        let _ = (hm, vm, generation, at);
        Ok(None)
    }
    /// Complete an open fetch the monitor never carried out, with `why`; false if it was
    /// completed meanwhile.
    fn app_fetch_give_up(&mut self, id: i64, why: &str, at: i64) -> hsdb::Result<bool> {
        let _ = (id, why, at);
        Ok(false)
    }
    /// Fetches the monitors of `group` completed and the control plane has not handled,
    /// oldest first, at most `limit`.
    fn app_fetches_done(&mut self, group: &str, limit: u32) -> hsdb::Result<Vec<AppFetch>> {
        let _ = (group, limit);
        Ok(Vec::new())
    }
    /// Handle completed fetch `id` in one transaction: store `report`, queue its
    /// confirmation for `confirm_hm`, mark the fetch handled with `note`
    /// (`Hsdb::handle_app_fetch`).
    fn app_fetch_handle(
        &mut self,
        id: i64,
        report: Option<&hvha_appreport::AppReport>,
        confirm_hm: Option<&Uuid>,
        note: &str,
        at: i64,
    ) -> hsdb::Result<hsdb::AppFetchHandled> {
        let _ = (id, report, confirm_hm, note, at);
        Ok(hsdb::AppFetchHandled::AlreadyHandled)
    }
}

/// Why a tick failed. The engine's state stays consistent: the next tick goes on.
#[derive(Debug, thiserror::Error)]
pub enum FdeError {
    /// The store failed.
    #[error("HSDB: {0}")]
    Store(#[from] hsdb::Error),
}

/// Which request a scan made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// QuickQuery.
    QuickQuery,
    /// NeedsAttention.
    NeedsAttention,
}

/// What one scan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The scan's number, from 1.
    pub scan: u64,
    /// Its request.
    pub request: Request,
    /// Decisions taken.
    pub decisions: u64,
    /// Restarts submitted to the executor.
    pub restarts_submitted: usize,
    /// NeedsAttention tag acknowledged.
    pub acked: Option<i64>,
    /// NeedsAttention said more items wait.
    pub more: bool,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The scan run, if one was due.
    pub scan: Option<ScanReport>,
    /// Restarts that ended in this tick.
    pub restarts_ended: usize,
    /// When to call again, ms since the Unix epoch.
    pub next_wake_ms: i64,
}

/// Per-host state across scans.
#[derive(Debug, Clone, Default)]
struct HostWatch {
    /// Each monitor's first scan seen DOWN (the HSDB keeps no time of the change).
    down_since: HashMap<Uuid, i64>,
    /// The host failure was acted on (the seed's RelocInitiated latch); reset when a
    /// monitor of it is healthy again.
    failed: bool,
    /// An event for this unhealthy episode was written (alive / planned shutdown).
    reported: bool,
}

/// Per-VM state while it misses heartbeats.
#[derive(Debug, Clone, Copy, Default)]
struct VmWatch {
    hb_missed_s: u64,
    hb_offset_s: u64,
    failure_reported: bool,
    nonresp_reported: bool,
    lpm_hang_reported: bool,
    advised: bool,
}

/// The engine of one host group.
pub struct Fde {
    params: GroupParams,
    planner: Box<dyn Planner>,
    /// The group's placement policies, as the engine last loaded them.
    policies: Policies,
    scan: u64,
    next_scan_ms: Option<i64>,
    /// The last QuickQuery's hosts of the group.
    hosts: Vec<HostView>,
    host_watch: HashMap<HostId, HostWatch>,
    /// Each monitor's (UP, responsive) at the last QuickQuery.
    monitors_seen: HashMap<Uuid, (bool, bool)>,
    vm_watch: HashMap<Uuid, VmWatch>,
    executor: Executor,
    jobs: Vec<PlacementJob>,
    /// When the next verify is due (`verify_interval`; None before the first scan).
    verify_next_ms: Option<i64>,
    /// The hosts whose loss the last verify found the group cannot absorb (VMs left
    /// without a place); empty when it can.
    capacity_short: std::collections::BTreeMap<HostId, usize>,
    /// Advisory mode: VMs to advise about (the VM, its host, why), planned and told at
    /// the scan's placement.
    advice: Vec<(hsdb::VmRow, HostId, String)>,
    /// Hosts excluded for each VM being restarted, kept for a re-placement.
    pending_exclude: HashMap<Uuid, Vec<HostId>>,
    /// Where the engine restarted VMs, until the HSDB's `current_host` says the same (the
    /// target's monitors write it when the agent pairs; an agent-less VM never does).
    relocated: HashMap<Uuid, HostId>,
    /// Cleanups owed to hosts until they are back (fde/cleanup.rs).
    owed_cleanups: Vec<cleanup::Owed>,
    /// The owed cleanups were read from the store.
    owed_loaded: bool,
    /// VMs whose restart budget is spent and was reported (once per episode).
    budget_spent: std::collections::HashSet<Uuid>,
    /// Hosts in planned maintenance, with the time it began (fde/maintenance.rs).
    maintenance: HashMap<HostId, i64>,
    /// The operator request being carried out.
    active_request: Option<maintenance::Active>,
    /// Per VM, the monitor whose last report fetch failed: the next goes elsewhere if it
    /// can (fde/app.rs).
    app_fetch_avoid: HashMap<Uuid, Uuid>,
    /// Report confirmations queued whose outcome is not logged yet.
    app_confirming: Vec<app::Confirming>,
    log: DecisionLog,
    tag_seq: u64,
    events: Vec<Event>,
}

impl std::fmt::Debug for Fde {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fde")
            .field("group", &self.params.group)
            .field("scan", &self.scan)
            .field("restarts", &self.executor.restarts().len())
            .finish_non_exhaustive()
    }
}

impl Fde {
    /// An engine for the host group `params.group` with the policy planner.
    pub fn new(params: GroupParams) -> Fde {
        Fde::with_planner(params, Box::new(PolicyPlanner))
    }

    /// An engine with another planner.
    pub fn with_planner(params: GroupParams, planner: Box<dyn Planner>) -> Fde {
        let executor = Executor::new(
            params.max_restarts_per_host,
            params.command_timeout_ms,
            params.action_timeout_ms,
        );
        // Tags differ between groups and runs: the group's name and the first scan's
        // time seed them (see next_tag).
        let tag_seq = params
            .group
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        Fde {
            params,
            planner,
            policies: Policies::default(),
            scan: 0,
            next_scan_ms: None,
            hosts: Vec::new(),
            host_watch: HashMap::new(),
            monitors_seen: HashMap::new(),
            vm_watch: HashMap::new(),
            executor,
            jobs: Vec::new(),
            advice: Vec::new(),
            verify_next_ms: None,
            capacity_short: std::collections::BTreeMap::new(),
            pending_exclude: HashMap::new(),
            relocated: HashMap::new(),
            owed_cleanups: Vec::new(),
            owed_loaded: false,
            budget_spent: std::collections::HashSet::new(),
            maintenance: HashMap::new(),
            active_request: None,
            app_fetch_avoid: HashMap::new(),
            app_confirming: Vec::new(),
            log: DecisionLog::new(DECISION_LOG_CAPACITY),
            tag_seq,
            events: Vec::new(),
        }
    }

    /// Read `clock` after each platform call of a restart, so that its steps carry the
    /// time they happened rather than the tick's (a start may take seconds). The daemon
    /// gives its wall clock, the simulation its virtual one.
    pub fn set_clock(&mut self, clock: std::sync::Arc<dyn crate::clock::Clock>) {
        self.executor.clock = Some(clock);
    }

    /// The parameters in effect.
    pub fn params(&self) -> &GroupParams {
        &self.params
    }

    /// Replace the parameters (after an operator changed them). Restarts in progress keep
    /// going; the next scan uses the new values.
    pub fn set_params(&mut self, params: GroupParams) {
        self.executor.max_per_host = params.max_restarts_per_host.max(1);
        self.executor.command_timeout_ms = params.command_timeout_ms;
        self.executor.action_timeout_ms = params.action_timeout_ms;
        self.params = params;
    }

    /// Replace the group's placement policies (loaded from the HSDB's `policy` table);
    /// the next placement uses them.
    pub fn set_policies(&mut self, policies: Policies) {
        self.policies = policies;
    }

    /// The placement policies in effect.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Scans run so far.
    pub fn scans(&self) -> u64 {
        self.scan
    }

    /// When the next scan is due (`None` before the first: it runs at the first tick).
    pub fn next_scan_ms(&self) -> Option<i64> {
        self.next_scan_ms
    }

    /// The decision log.
    pub fn decisions(&self) -> &DecisionLog {
        &self.log
    }

    /// Restarts in progress or queued.
    pub fn restarts(&self) -> &[Restart] {
        self.executor.restarts()
    }

    /// VMs decided for a restart that wait for a target host.
    pub fn waiting_for_placement(&self) -> &[PlacementJob] {
        &self.jobs
    }

    /// The hosts of the last QuickQuery.
    pub fn hosts(&self) -> &[HostView] {
        &self.hosts
    }

    /// Hosts whose failure was acted on and whose monitors are not back.
    pub fn failed_hosts(&self) -> Vec<HostId> {
        let mut v: Vec<HostId> = self
            .host_watch
            .iter()
            .filter(|(_, w)| w.failed)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// A VM is being restarted or waits for a target (the per-VM operation lock).
    pub fn is_busy(&self, vm: &Uuid) -> bool {
        self.executor.holds(vm) || self.jobs.iter().any(|j| j.vm.uuid == *vm)
    }

    /// Where a VM runs: the host the engine restarted it on, else `stored` (the HSDB's
    /// `current_host`).
    pub fn current_host(&self, vm: &Uuid, stored: Option<HostId>) -> Option<HostId> {
        self.relocated.get(vm).copied().or(stored)
    }

    /// HBoffset of a VM, seconds (0 when it is not missing heartbeats).
    pub fn hb_offset_s(&self, vm: &Uuid) -> u64 {
        self.vm_watch.get(vm).map_or(0, |w| w.hb_offset_s)
    }

    /// Run what is due at `now_ms`: a scan if its time has come, then one step of every
    /// restart. Call again at [`Tick::next_wake_ms`] (or earlier: an early tick only steps
    /// restarts).
    pub fn tick(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<Tick, FdeError> {
        let scan = if self.next_scan_ms.is_none_or(|t| now_ms >= t) {
            Some(self.scan(now_ms, store, platform)?)
        } else {
            None
        };
        let restarts_ended = self.step_restarts(now_ms, store, platform)?;
        let next_scan = self
            .next_scan_ms
            .unwrap_or(now_ms + self.params.scan_interval_ms);
        let next_wake_ms = self
            .executor
            .next_wake(now_ms)
            .map_or(next_scan, |w| w.min(next_scan))
            .max(now_ms + 1);
        Ok(Tick {
            scan,
            restarts_ended,
            next_wake_ms,
        })
    }

    /// Run one scan now, whatever the schedule: one request and its decisions, then the
    /// placement of what was decided. The next scan is due `scan_interval` later.
    pub fn scan(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<ScanReport, FdeError> {
        self.scan += 1;
        self.next_scan_ms = Some(now_ms + self.params.scan_interval_ms);
        let before = self.log.total();
        let na = self
            .scan
            .is_multiple_of(u64::from(self.params.na_every.max(1)));
        let mut report = ScanReport {
            scan: self.scan,
            request: if na {
                Request::NeedsAttention
            } else {
                Request::QuickQuery
            },
            decisions: 0,
            restarts_submitted: 0,
            acked: None,
            more: false,
        };
        let result = if na {
            self.needs_attention_scan(now_ms, store, platform, &mut report)
        } else {
            self.quick_query_scan(now_ms, store, platform)
        };
        // The application reports the monitors fetched: stored, confirmed, escalated
        // (fde/app.rs), before the placement of what was decided.
        let result = result.and_then(|()| self.app_report_scan(now_ms, store));
        // Events gathered so far are written even when the scan failed half-way.
        let events = std::mem::take(&mut self.events);
        store.record_events(&events)?;
        result?;
        report.restarts_submitted = self.place(now_ms, store, platform)?;
        self.maybe_verify(now_ms, store, platform)?;
        let events = std::mem::take(&mut self.events);
        store.record_events(&events)?;
        report.decisions = self.log.total() - before;
        tracing::debug!(
            group = %self.params.group, scan = self.scan, request = ?report.request,
            decisions = report.decisions, restarts = report.restarts_submitted,
            "scan done"
        );
        Ok(report)
    }

    fn quick_query_scan(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let hosts = store.quick_query(now_ms, &self.params.group)?;
        self.hosts = hosts;
        self.monitor_events(now_ms);
        // Planned maintenance first: the host decisions read which hosts are in it.
        self.maintenance_scan(now_ms, store, platform)?;
        self.host_decisions(now_ms, store, platform)?;
        if self
            .hosts
            .iter()
            .flat_map(|h| &h.monitors)
            .any(|m| m.has_data)
        {
            self.node_data(now_ms, store)?;
        }
        Ok(())
    }

    fn needs_attention_scan(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
        report: &mut ScanReport,
    ) -> Result<(), FdeError> {
        let tag = self.next_tag(now_ms);
        let limits = NaLimits {
            max_items: self.params.na_max_items,
            hm_silent_after_ms: self.params.hm_silent_after_ms,
        };
        let na = store.needs_attention(now_ms, &self.params.group, limits, tag)?;
        report.more = na.more;
        self.vm_decisions(now_ms, &na, store, platform)?;
        // Acknowledge right after processing (seed 004 L13660-13674): what was decided
        // is in this engine's state and the outbox.
        if let Some(tag) = na.tag {
            let events = std::mem::take(&mut self.events);
            store.record_events(&events)?;
            let n = store.acknowledge(tag)?;
            tracing::debug!(
                scan = self.scan,
                tag,
                items = n,
                "FDE performing doAcknowledge on hsTag"
            );
            report.acked = Some(tag);
        }
        if na.monitors.iter().any(|(_, m)| m.has_data) {
            self.node_data(now_ms, store)?;
        }
        Ok(())
    }

    /// A tag for a NeedsAttention or node-data reply: distinct between groups, runs and
    /// requests (splitmix64 over the group, the time and a counter; never 0).
    fn next_tag(&mut self, now_ms: i64) -> i64 {
        self.tag_seq = self
            .tag_seq
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(now_ms.unsigned_abs());
        let mut z = self.tag_seq;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Same bits, read as the seed's signed 64-bit tag.
        let tag = i64::from_ne_bytes(z.to_ne_bytes());
        if tag == 0 { 1 } else { tag }
    }

    fn decide(&mut self, now_ms: i64, subject: Subject, verdict: Verdict, reason: String) {
        self.log.push(now_ms, self.scan, subject, verdict, reason);
    }

    fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn host_name(&self, id: HostId) -> String {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .map_or_else(|| format!("#{id}"), |h| h.name.clone())
    }

    /// A monitor is healthy: UP and heart-beating within `hm_silent_after`.
    fn healthy(&self, m: &MonitorView) -> bool {
        m.state == hsdb::HmState::Up && m.silent_ms <= self.params.hm_silent_after_ms
    }
}
