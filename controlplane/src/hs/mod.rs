//! QuickQuery, NeedsAttention and Acknowledge: the replies the Failure Detection Engine reads,
//! with the seed's element and attribute names (seed-controlplane.md §2.3-§2.5; seed 004
//! L12281-12298, L12600-12607, L13016-13037, L7533-7564).
//!
//! The model here is what every other part of the control plane speaks; the XML and JSON
//! forms and the builders from HSDB rows live in submodules.

use hsdb::{Uuid, VmState};

/// How a reply names a host: `viosStatus` / `vmList` attributes `machine_type model serial`
/// (seed 004 L12281-12298).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostKey {
    /// `machine_type`, e.g. `8408`.
    pub machine_type: String,
    /// `model`, e.g. `E8E`.
    pub model: String,
    /// `serial`, e.g. `212424W`.
    pub serial: String,
}

/// A monitor's (the seed's VIOS) state in a reply: `state="UP"` or `"DOWN"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViosState {
    /// `UP`.
    Up,
    /// `DOWN`.
    Down,
}

/// One monitor in a reply: `<viosStat uuid state hmResponsive hmResponseSec hasData reason
/// syncMsg/>` (seed 004 L4695-4706, L12374-12389).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViosStat {
    /// The monitor's UUID (lower case in replies).
    pub uuid: Uuid,
    /// `state`.
    pub state: ViosState,
    /// `hmResponsive`: the monitor heart-beats into the HSDB.
    pub hm_responsive: bool,
    /// `hmResponseSec`: seconds since its last heartbeat in the HSDB.
    pub hm_response_sec: u64,
    /// `hasData`: event data about this monitor is pending.
    pub has_data: bool,
    /// `reason`: the reason code of its last state change (`0x00000040` = shutdown).
    pub reason: u32,
    /// `syncMsg`: "used internally" by the seed; we always send 0.
    pub sync_msg: u32,
}

/// The monitors of one host: `<viosStatList><viosStatus machine_type model serial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViosStatus {
    /// The host.
    pub host: HostKey,
    /// Its monitors.
    pub stats: Vec<ViosStat>,
}

/// A QuickQuery reply: one `<quickQuery>` per host of the group, every monitor listed
/// (seed 004 L4690-4693, L5264-5281).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuickQuery {
    /// One entry per host.
    pub hosts: Vec<ViosStatus>,
}

/// `discoveryInfo type=…` (seed 004 L12518-12531, L13170-13184).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiscoveryType {
    /// `MOVED`: a managed VM moved to another host (live migration).
    Moved,
    /// `MANAGED`.
    Managed,
    /// `UNMANAGED`: a VM discovered that the controller does not manage.
    Unmanaged,
    /// `CANNOT_MANAGE`.
    CannotManage,
}

/// One VM in a NeedsAttention reply: `<vmStat uuid><VM state [stateChg] [missedHb]
/// [shortMsg] [missedHMEntry]>[<discoveryInfo type/>]</VM></vmStat>` (seed 004
/// L13126-13184).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStat {
    /// The VM's UUID.
    pub uuid: Uuid,
    /// `state`: its monitoring state in the HSDB.
    pub state: VmState,
    /// `stateChg='1'`: an unacknowledged state change.
    pub state_chg: bool,
    /// `missedHb`: seconds since the earliest miss, present only when every monitor of the
    /// VM's host missed it (seed 004 L12928-12935).
    pub missed_hb: Option<u64>,
    /// `shortMsg`: unacknowledged doorbell vector (`0x28`).
    pub short_msg: Option<u64>,
    /// `missedHMEntry`: a monitor of the VM's host with no row for the VM (seen after a
    /// move, seed 004 L13079-13103).
    pub missed_hm_entry: Option<Uuid>,
    /// `discoveryInfo type`.
    pub discovery: Option<DiscoveryType>,
}

/// One `<needsAtt>` element: either the VMs of one host or the monitors of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedsAttEntry {
    /// `<vmStatList><vmList machine_type model serial>…</vmList></vmStatList>`; an empty
    /// list for a healthy host with monitored VMs (seed 004 L12600-12610).
    Vms {
        /// The host.
        host: HostKey,
        /// VMs that need attention.
        vms: Vec<VmStat>,
    },
    /// `<viosStatList>`: monitors DOWN, silent or holding event data (seed 004 L7126-7144).
    Vios(ViosStatus),
}

/// A NeedsAttention reply (seed 004 L13016-13037): every `<needsAtt>` of a reply carries the
/// same `hsTag` when any item must be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NeedsAttention {
    /// `hsTag`, when the reply carries items to acknowledge.
    pub tag: Option<i64>,
    /// The `<needsAtt>` elements, in order.
    pub entries: Vec<NeedsAttEntry>,
}
