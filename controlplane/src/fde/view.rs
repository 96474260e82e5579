//! What the engine reads from the store, in the shapes it decides on: QuickQuery as hosts
//! with their monitors, NeedsAttention as VMs and monitors needing attention, node data.
//!
//! These are the QuickQuery / NeedsAttention replies of [`crate::hs`] with the host's id
//! and name resolved and times kept in milliseconds; [`super::HealthStore`] produces
//! them.

use hsdb::{HmState, HostId, Uuid, VmState};

use crate::hs::DiscoveryType;

/// The seed's CAA reason for a node shutdown: 0x40 (seed 004 L7012-7014). `hmd` writes it
/// when it stops on purpose (docs/hsdb.md).
pub const REASON_SHUTDOWN: u32 = 0x40;

/// One monitor in a QuickQuery (`viosStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorView {
    /// The monitor.
    pub uuid: Uuid,
    /// `state`: UP or DOWN.
    pub state: HmState,
    /// `reason`: 0x40 = stopped on purpose.
    pub reason: u32,
    /// Time since its last heartbeat into the HSDB, ms, ≥ 0 (`hmResponseSec` × 1000).
    pub silent_ms: i64,
    /// `hasData`: node data is pending.
    pub has_data: bool,
}

/// One host in a QuickQuery (`quickQuery` / `viosStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// The host.
    pub id: HostId,
    /// Its name (the platform's name for it).
    pub name: String,
    /// Capacity: CPU, thousandths (the HSDB's `host.cpu_milli`).
    pub cpu_milli: u32,
    /// Capacity: memory, MiB.
    pub memory_mb: u32,
    /// Every monitor of the host.
    pub monitors: Vec<MonitorView>,
}

/// One VM in a NeedsAttention reply (`vmStat` / `VM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmAttention {
    /// The VM.
    pub uuid: Uuid,
    /// The host whose `vmList` it is in (its current host).
    pub host: HostId,
    /// `state`.
    pub state: VmState,
    /// `stateChg='1'`.
    pub state_chg: bool,
    /// `missedHb`, seconds: present only when every monitor of the host missed it.
    pub missed_hb_s: Option<u64>,
    /// `shortMsg`.
    pub short_msg: Option<u64>,
    /// When the earliest doorbell reported was written (the monitor's clock).
    pub doorbell_ms: Option<i64>,
    /// The monitor that wrote the newest doorbell reported (it has a session with the
    /// VM's agent).
    pub doorbell_hm: Option<Uuid>,
    /// `missedHMEntry`.
    pub missed_hm_entry: Option<Uuid>,
    /// `discoveryInfo type`.
    pub discovery: Option<DiscoveryType>,
}

/// A NeedsAttention reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NaView {
    /// `hsTag`, when some item must be acknowledged.
    pub tag: Option<i64>,
    /// VMs needing attention, in the reply's order.
    pub vms: Vec<VmAttention>,
    /// Monitors DOWN, silent or holding data, with their host.
    pub monitors: Vec<(HostId, MonitorView)>,
    /// Items were left for the next reply (the reply was capped).
    pub more: bool,
}

/// One pending node event (`nodeData` / `node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The monitor it is about.
    pub hm: Uuid,
    /// The event text (`EVENT_TYPE=NODE_DOWN` …).
    pub text: String,
}

/// A node-data reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeData {
    /// Tag to acknowledge, when events were returned.
    pub tag: Option<i64>,
    /// The events.
    pub events: Vec<NodeEvent>,
}
