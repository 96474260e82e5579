//! The rows and settings the control plane's side of the HSDB speaks: QuickQuery and
//! NeedsAttention selections, node data, administrative settings, parameters, relocation
//! rows and monitor commands (docs/hsdb.md §8).

use core::fmt;

use hvha_identity::Uuid;

use crate::model::{DetectionSpeed, HmRow, HostId, HostRecord, Priority, VmState};

text_enum! {
    /// A command from the control plane to one monitor (`hm_command.kind`).
    CommandKind {
        /// Stop watching the VM's heartbeats (TC-1's "Stopping HA monitoring"): its
        /// silence is no longer a failure.
        StopMonitoring => "STOP_MONITORING",
        /// Watch the VM again ("HA monitoring started").
        StartMonitoring => "START_MONITORING",
        /// The VM moved to another host: forget it (stop watching, drop its session and
        /// state) so this monitor does not keep reporting a VM that lives elsewhere.
        ForgetVm => "FORGET_VM",
        /// Ask the VM's agent for its application report (PMSG_REQ … PMSG_RSP,
        /// docs/hvncp.md "Application reports"); the result is `REPORT: <the body>`.
        FetchAppReport => "FETCH_APP_REPORT",
        /// Tell the VM's agent that the control plane stored report generation `arg`
        /// (GMSG … CLRDB): it stops ringing for it. The result is `CLEARED: gen=<arg>`.
        ConfirmAppReport => "CONFIRM_APP_REPORT",
    }
}

text_enum! {
    /// What a relocation row records (`relocation.kind`).
    RelocationKind {
        /// The VM is restarted on the host it was on.
        Restart => "RESTART",
        /// The VM is restarted on another host.
        Relocate => "RELOCATE",
        /// An operator moved the VM to another host (`hactl vm move`): live migration
        /// where the platform has it, else stop + start.
        Move => "MOVE",
    }
}

/// A monitor as QuickQuery reports it: its row and how long it has been silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmStatus {
    /// The monitor's row.
    pub hm: HmRow,
    /// `now − last_hb_ms`, never negative (a writer whose clock runs ahead of the
    /// reader's reads as 0, not as a negative age).
    pub silent_ms: i64,
}

impl HmStatus {
    /// `hmResponseSec`: whole seconds of silence (seed 004 L7099-7110).
    pub fn response_sec(&self) -> u64 {
        u64::try_from(self.silent_ms / 1000).unwrap_or(0)
    }
}

/// One host in a QuickQuery: the host and every monitor registered on it, by UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QqHost {
    /// The host.
    pub host: HostRecord,
    /// Its monitors, by UUID; empty for a host no monitor registered on yet.
    pub hms: Vec<HmStatus>,
}

/// Bounds of one NeedsAttention reply ([`Hsdb::needs_attention`](crate::Hsdb::needs_attention)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaLimits {
    /// At most this many pending items in one reply (at least 1); the rest come in the
    /// next replies ([`NaRows::more`]). Missed-heartbeat VMs are not counted: they are a
    /// present condition, never acknowledged, and the FDE needs all of them.
    pub max_items: usize,
    /// A monitor silent for longer than this (`now − last_hb_ms`) is listed as not
    /// responsive.
    pub hm_silent_after_ms: i64,
}

impl Default for NaLimits {
    /// 1,000 items; a monitor is silent after 30 s.
    fn default() -> Self {
        NaLimits {
            max_items: 1000,
            hm_silent_after_ms: 30_000,
        }
    }
}

/// How a VM was discovered (`discoveryInfo type`, seed 004 L12518-12531, L13170-13184).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiscoveryKind {
    /// The VM was first seen on another host than the one it was on (live migration):
    /// `MOVED`.
    Moved,
    /// A VM first seen that the controller manages: `MANAGED`.
    Managed,
    /// A VM first seen that the controller does not manage: `UNMANAGED`.
    Unmanaged,
}

/// One VM in a NeedsAttention reply: everything the reply says about it, merged from its
/// missed heartbeats and its pending items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaVm {
    /// The VM.
    pub uuid: Uuid,
    /// Its current host (`vmList serial`); `None` for a VM no monitor placed yet.
    pub host: Option<HostId>,
    /// Its monitoring state now.
    pub state: VmState,
    /// Managed by the controller.
    pub managed: bool,
    /// `stateChg='1'`: a state change or a move is among the items reported.
    pub state_chg: bool,
    /// `missedHb`: every monitor of its host that knows it has a miss time; milliseconds
    /// since the earliest one, never negative.
    pub missed_ms: Option<i64>,
    /// `shortMsg`: the doorbell vectors of the items reported, OR-ed.
    pub short_msg: Option<u64>,
    /// When the earliest doorbell item reported was written (its monitor's clock); with
    /// `short_msg`. The control plane tells a stale doorbell from a new one with it.
    pub doorbell_ms: Option<i64>,
    /// The monitor that wrote the newest doorbell item reported: it has a session with
    /// the VM's agent (the doorbell came over it).
    pub doorbell_hm: Option<Uuid>,
    /// `missedHMEntry`: a monitor of its current host with no row for the VM (the lowest
    /// UUID if several).
    pub missed_hm_entry: Option<Uuid>,
    /// `discoveryInfo type`, when a discovery is among the items reported.
    pub discovery: Option<DiscoveryKind>,
    /// The state before the first state change or discovery reported (`None`: a new VM,
    /// or no such item).
    pub old_state: Option<VmState>,
    /// The state after the last state change or discovery reported.
    pub new_state: Option<VmState>,
    /// The host it moved from, for a move.
    pub from_host: Option<HostId>,
    /// The pending items reported for this VM, tagged with the reply's tag.
    pub items: Vec<i64>,
}

impl NaVm {
    /// `missedHb`: whole seconds since the earliest miss.
    pub fn missed_sec(&self) -> Option<u64> {
        self.missed_ms
            .map(|ms| u64::try_from(ms / 1000).unwrap_or(0))
    }
}

/// What one NeedsAttention read selected and tagged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NaRows {
    /// The tag given to the items of this reply: `Some(new_tag)` when any item was
    /// tagged, `None` otherwise (a reply with nothing to acknowledge carries no `hsTag`).
    pub tag: Option<i64>,
    /// More pending items wait than [`NaLimits::max_items`] let through: ask again.
    pub more: bool,
    /// Every host the reply mentions, by id.
    pub hosts: Vec<HostRecord>,
    /// The hosts that get a `vmList`: those with monitored VMs (an empty list when all
    /// is well) and those of the VMs reported; by id.
    pub vm_hosts: Vec<HostId>,
    /// The VMs that need attention, in the seed's order: doorbells, missed heartbeats,
    /// state changes, discoveries (seed 004 L13117-13124); each VM once.
    pub vms: Vec<NaVm>,
    /// Monitors DOWN, silent for longer than [`NaLimits::hm_silent_after_ms`], or holding
    /// event data; by host, then UUID.
    pub hms: Vec<HmStatus>,
}

/// One monitor event of a node-data reply (seed 004 L7609-7655).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The pending item's id.
    pub id: i64,
    /// The monitor it is about.
    pub hm: Uuid,
    /// The monitor's host.
    pub host: HostId,
    /// The reason code (0x40 for a node shutdown).
    pub reason: u64,
    /// The event text.
    pub text: String,
    /// When it happened.
    pub created_ms: i64,
}

/// What one node-data read selected and tagged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeDataRows {
    /// The tag given to the events returned, when any.
    pub tag: Option<i64>,
    /// More events wait: ask again.
    pub more: bool,
    /// The hosts of the events, by id.
    pub hosts: Vec<HostRecord>,
    /// The events, oldest first.
    pub events: Vec<NodeEvent>,
}

/// Administrative settings of a VM ([`Hsdb::set_vm`](crate::Hsdb::set_vm)): `None`
/// leaves a setting as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmSettings {
    /// Managed by the controller.
    pub managed: Option<bool>,
    /// Heartbeat monitoring wanted.
    pub ha_monitor: Option<bool>,
    /// Relocation priority.
    pub priority: Option<Priority>,
    /// Failure detection speed.
    pub detection_speed: Option<DetectionSpeed>,
    /// CPU entitlement, thousandths of a CPU.
    pub cpu_milli: Option<u32>,
    /// Memory, MiB.
    pub memory_mb: Option<u32>,
    /// Name.
    pub name: Option<String>,
    /// Home host.
    pub home_host: Option<HostId>,
}

/// Where a parameter applies; the most specific one wins (the control plane decides).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamScope {
    /// Every host group.
    System,
    /// One host group, by name.
    HostGroup(String),
    /// One host.
    Host(HostId),
    /// One VM.
    Vm(Uuid),
}

impl ParamScope {
    /// `param.scope`.
    pub(crate) fn kind_text(&self) -> &'static str {
        match self {
            ParamScope::System => "SYSTEM",
            ParamScope::HostGroup(_) => "HOST_GROUP",
            ParamScope::Host(_) => "HOST",
            ParamScope::Vm(_) => "VM",
        }
    }

    /// `param.target`.
    pub(crate) fn target_text(&self) -> String {
        match self {
            ParamScope::System => String::new(),
            ParamScope::HostGroup(name) => name.clone(),
            ParamScope::Host(id) => id.0.to_string(),
            ParamScope::Vm(uuid) => uuid.to_string(),
        }
    }
}

impl fmt::Display for ParamScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamScope::System => f.write_str("system"),
            ParamScope::HostGroup(name) => write!(f, "host_group {name}"),
            ParamScope::Host(id) => write!(f, "host {id}"),
            ParamScope::Vm(uuid) => write!(f, "vm {uuid}"),
        }
    }
}

/// A stored parameter (`param` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRow {
    /// Where it applies.
    pub scope: ParamScope,
    /// Its name.
    pub key: String,
    /// Its value, as text.
    pub value: String,
}

/// A restart or relocation as stored (`relocation` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationRow {
    /// Id, increasing.
    pub id: i64,
    /// The VM.
    pub vm: Uuid,
    /// Restart on the same host or relocation.
    pub kind: RelocationKind,
    /// The host it left, if known.
    pub from_host: Option<HostId>,
    /// The host it goes to, once chosen.
    pub to_host: Option<HostId>,
    /// Its last phase.
    pub phase: String,
    /// When it began.
    pub started_ms: i64,
    /// When it entered its last phase.
    pub phase_ms: Option<i64>,
    /// When it ended; `None` while in progress.
    pub ended_ms: Option<i64>,
    /// How it ended.
    pub result: Option<String>,
    /// The decision's explanation (the text `hactl relocate --dry-run` prints for the
    /// VM at that moment: target and why, why not each other host), at most
    /// [`REASONS_MAX`](crate::REASONS_MAX) bytes; `None` for a row written without one
    /// (before schema v11).
    pub reasons: Option<String>,
}

/// One phase a relocation went through (`relocation_step` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationStep {
    /// The phase.
    pub phase: String,
    /// When it was entered.
    pub at_ms: i64,
}

/// A command to a monitor as stored (`hm_command` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    /// Id, strictly increasing, never reused.
    pub id: i64,
    /// The monitor that must carry it out.
    pub hm: Uuid,
    /// What to do.
    pub kind: CommandKind,
    /// The VM it is about.
    pub vm: Uuid,
    /// Its argument, for the kinds that take one (CONFIRM_APP_REPORT: the report
    /// generation in decimal); `None` otherwise.
    pub arg: Option<String>,
    /// When it was queued.
    pub created_ms: i64,
    /// When the monitor completed it; `None` while open.
    pub done_ms: Option<i64>,
    /// What the monitor reported: `CODE: detail` (for FETCH_APP_REPORT, `REPORT: ` and
    /// the report body, up to ~70 KB).
    pub result: Option<String>,
}

/// A command a monitor carried out, to be marked done
/// ([`Hsdb::complete_commands`](crate::Hsdb::complete_commands)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDone {
    /// The command's id.
    pub id: i64,
    /// What the monitor reports: `OK`, or `CODE: detail` (`hmd`'s form).
    pub result: String,
    /// When it was carried out, ms since the Unix epoch.
    pub at: i64,
}

/// Which events [`Hsdb::prune_events`](crate::Hsdb::prune_events) deletes: those older
/// than `before_ms` or beyond the newest `keep_last`, but never one a registered consumer
/// has not handled yet unless `force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventPrune {
    /// Delete events created before this time.
    pub before_ms: Option<i64>,
    /// Delete all but the newest this many events.
    pub keep_last: Option<u64>,
    /// Also delete events some consumer has not handled yet.
    pub force: bool,
}
