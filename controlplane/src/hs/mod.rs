//! QuickQuery, NeedsAttention and Acknowledge: the requests the Failure Detection Engine
//! sends and the replies it reads, with the seed's element and attribute names
//! (seed-controlplane.md §2.2-§2.5; seed 004 L12281-12298, L12600-12607, L13016-13037,
//! L7533-7564, L7609-7655).
//!
//! The model here is what every other part of the control plane speaks:
//!
//! - replies: [`QuickQuery`], [`NeedsAttention`], [`NodeData`] (and [`Reply`], any of them
//!   or the empty reply to an acknowledgement);
//! - requests: [`Request`] ([`RequestKind`]: `VIO_HS_QUICK_QUERY`,
//!   `VIO_HS_NEEDS_ATTENTION`, `VIO_HS_ACKNOWLEDGE`, `VIO_HS_QUERY_NODE_DATA`).
//!
//! Submodules: [`xml`] writes and parses both in the seed's XML (untrusted input: typed
//! errors, bounded memory), [`json`] gives their JSON form, [`build`] builds replies from
//! the HSDB (and tags / acknowledges the items reported), [`mod@serve`] answers a request
//! written in the seed's XML with the seed's reply, [`tag`] makes `hsTag` values.
//!
//! What this module never does: decide anything about a failure. It reports what the
//! HSDB holds; the Failure Detection Engine judges.

use hsdb::{Uuid, VmState};
use serde::{Deserialize, Serialize};

pub mod build;
pub mod json;
pub mod serve;
pub mod tag;
pub mod xml;

pub use build::{
    Acknowledged, NaConfig, NaReply, NodeDataReply, acknowledge, acknowledge_node_data,
    needs_attention, node_data, quick_query,
};
pub use serve::{ServeError, serve};
pub use tag::{RandomTags, SequenceTags, TagSource, random_tag};

/// How a reply names a host: `viosStatus` / `vmList` / `nodeList` attributes
/// `machine_type model serial` (seed 004 L12281-12298).
///
/// JSON: `{"machineType": "8408", "model": "E8E", "serial": "212424W"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostKey {
    /// `machine_type`, e.g. `8408`.
    pub machine_type: String,
    /// `model`, e.g. `E8E`.
    pub model: String,
    /// `serial`, e.g. `212424W`.
    pub serial: String,
}

/// A monitor's (the seed's VIOS) state in a reply: `state="UP"` or `"DOWN"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ViosState {
    /// `UP`.
    #[serde(rename = "UP")]
    Up,
    /// `DOWN`.
    #[serde(rename = "DOWN")]
    Down,
}

impl ViosState {
    /// The text of the `state` attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            ViosState::Up => "UP",
            ViosState::Down => "DOWN",
        }
    }
}

/// One monitor in a reply: `<viosStat uuid state hmResponsive hmResponseSec hasData reason
/// syncMsg/>` (seed 004 L4695-4706, L12374-12389).
///
/// JSON: `{"uuid", "state", "hmResponsive", "hmResponseSec", "hasData", "reason",
/// "syncMsg"}` with booleans as `true`/`false` and `reason` as a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ViosStat {
    /// The monitor's UUID (lower case in replies).
    #[serde(with = "json::uuid_text")]
    pub uuid: Uuid,
    /// `state`.
    pub state: ViosState,
    /// `hmResponsive`: the monitor heart-beats into the HSDB.
    pub hm_responsive: bool,
    /// `hmResponseSec`: seconds since its last heartbeat in the HSDB.
    pub hm_response_sec: u64,
    /// `hasData`: event data about this monitor is pending (fetched with
    /// `VIO_HS_QUERY_NODE_DATA`).
    pub has_data: bool,
    /// `reason`: the reason code of its last state change (`0x00000040` = shutdown).
    pub reason: u32,
    /// `syncMsg`: "used internally" by the seed; we always send 0 (gap 19).
    pub sync_msg: u32,
}

/// The monitors of one host: `<viosStatList><viosStatus machine_type model serial>`.
///
/// JSON: `{"host": {…}, "stats": [ViosStat…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViosStatus {
    /// The host.
    pub host: HostKey,
    /// Its monitors.
    pub stats: Vec<ViosStat>,
}

/// A QuickQuery reply: one `<quickQuery>` per host of the group, every monitor listed
/// (seed 004 L4690-4693, L5264-5281).
///
/// JSON: `{"hosts": [ViosStatus…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickQuery {
    /// One entry per host.
    pub hosts: Vec<ViosStatus>,
}

/// `discoveryInfo type=…` (seed 004 L12518-12531, L13170-13184).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiscoveryType {
    /// `MOVED`: a managed VM moved to another host (live migration).
    #[serde(rename = "MOVED")]
    Moved,
    /// `MANAGED`.
    #[serde(rename = "MANAGED")]
    Managed,
    /// `UNMANAGED`: a VM discovered that the controller does not manage.
    #[serde(rename = "UNMANAGED")]
    Unmanaged,
    /// `CANNOT_MANAGE`.
    #[serde(rename = "CANNOT_MANAGE")]
    CannotManage,
}

impl DiscoveryType {
    /// Every value.
    pub const ALL: [DiscoveryType; 4] = [
        DiscoveryType::Moved,
        DiscoveryType::Managed,
        DiscoveryType::Unmanaged,
        DiscoveryType::CannotManage,
    ];

    /// The text of the `type` attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            DiscoveryType::Moved => "MOVED",
            DiscoveryType::Managed => "MANAGED",
            DiscoveryType::Unmanaged => "UNMANAGED",
            DiscoveryType::CannotManage => "CANNOT_MANAGE",
        }
    }

    /// The value whose text is `text`.
    pub fn from_text(text: &str) -> Option<DiscoveryType> {
        DiscoveryType::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// One VM in a NeedsAttention reply: `<vmStat uuid><VM state [stateChg] [missedHb]
/// [shortMsg] [missedHMEntry]>[<discoveryInfo type/>]</VM></vmStat>` (seed 004
/// L13126-13184).
///
/// JSON: `{"uuid", "state", "stateChg", "missedHb", "shortMsg", "missedHMEntry",
/// "discoveryInfo"}`; the optional ones are `null` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmStat {
    /// The VM's UUID.
    #[serde(with = "json::uuid_text")]
    pub uuid: Uuid,
    /// `state`: its monitoring state in the HSDB.
    #[serde(with = "json::vm_state_text")]
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
    #[serde(rename = "missedHMEntry", with = "json::opt_uuid_text", default)]
    pub missed_hm_entry: Option<Uuid>,
    /// `discoveryInfo type`.
    #[serde(rename = "discoveryInfo")]
    pub discovery: Option<DiscoveryType>,
}

/// One `<needsAtt>` element: either the VMs of one host or the monitors of one host.
///
/// JSON: `{"kind": "vms", "host": {…}, "vms": [VmStat…]}` or `{"kind": "vios", "host":
/// {…}, "stats": [ViosStat…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NeedsAttEntry {
    /// `<vmStatList><vmList machine_type model serial>…</vmList></vmStatList>`; an empty
    /// list for a healthy host with monitored VMs (seed 004 L12600-12610).
    Vms {
        /// The host.
        host: HostKey,
        /// VMs that need attention.
        vms: Vec<VmStat>,
    },
    /// `<viosStatList>`: monitors DOWN, silent or holding event data (seed 004 L7126-7144);
    /// only those monitors of the host are listed (seed 004 L7533-7539).
    Vios(ViosStatus),
}

/// A NeedsAttention reply (seed 004 L13016-13037): every `<needsAtt>` of a reply carries the
/// same `hsTag` when any item must be acknowledged.
///
/// A tag needs at least one entry to be written in XML; the builders never tag an empty
/// reply.
///
/// JSON: `{"hsTag": "-8403607219422560833" | null, "entries": [NeedsAttEntry…]}` — the
/// tag as a string, so that JSON readers with 53-bit numbers (JavaScript, older `jq`)
/// cannot round it into a tag that acknowledges nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedsAttention {
    /// `hsTag`, when the reply carries items to acknowledge.
    #[serde(rename = "hsTag", with = "json::opt_tag_text", default)]
    pub tag: Option<i64>,
    /// The `<needsAtt>` elements, in order.
    pub entries: Vec<NeedsAttEntry>,
}

/// One pending monitor event: `<node uuid event/>` (seed 004 L7609-7655).
///
/// JSON: `{"uuid", "event"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEvent {
    /// The monitor the event is about.
    #[serde(with = "json::uuid_text")]
    pub uuid: Uuid,
    /// The event text, several lines (`BEGIN_EVENT_INFO … END_EVENT_INFO`).
    pub event: String,
}

/// The pending events of the monitors of one host: `<nodeList machine_type model serial>`.
///
/// JSON: `{"host": {…}, "nodes": [NodeEvent…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeList {
    /// The host.
    pub host: HostKey,
    /// Its monitors' events, oldest first.
    pub nodes: Vec<NodeEvent>,
}

/// A reply to `VIO_HS_QUERY_NODE_DATA`: one `<nodeData hsTag>` per host with pending
/// monitor events (seed 004 L7609-7655); acknowledged with the tag like NeedsAttention,
/// which clears the events and the monitors' `hasData` (seed 004 L7674-7692).
///
/// JSON: `{"hsTag": "378617663756949861" | null, "hosts": [NodeList…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeData {
    /// `hsTag`, when the reply carries events.
    #[serde(rename = "hsTag", with = "json::opt_tag_text", default)]
    pub tag: Option<i64>,
    /// One entry per host.
    pub hosts: Vec<NodeList>,
}

/// Any reply: `<VIO><Response>…</Response></VIO>`.
///
/// An empty `<Response>` is [`Reply::Empty`], the reply to an acknowledgement (seed 004
/// L7578, L12069); a QuickQuery of no host or a NeedsAttention of no entry is written the
/// same way, so it parses back as `Empty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "body", rename_all = "camelCase")]
pub enum Reply {
    /// `<quickQuery>` elements.
    QuickQuery(QuickQuery),
    /// `<needsAtt>` elements.
    NeedsAttention(NeedsAttention),
    /// `<nodeData>` elements.
    NodeData(NodeData),
    /// Nothing: the reply to an acknowledgement.
    Empty,
}

/// `dataType` of a NeedsAttention request (seed 004 L13567-13572, L13347-13364).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// `GLOBAL_DATA`: every host of the group; the only kind the seed's FDE sends.
    #[serde(rename = "GLOBAL_DATA")]
    Global,
    /// `LOCAL_DATA`: the hosts of the polled monitor only. Our HSDB holds every host, so it
    /// is answered like `GLOBAL_DATA` (gap 11, docs/controlplane.md).
    #[serde(rename = "LOCAL_DATA")]
    Local,
}

impl DataType {
    /// The text of the `dataType` attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            DataType::Global => "GLOBAL_DATA",
            DataType::Local => "LOCAL_DATA",
        }
    }
}

/// What a request asks: the `action_str` of `<Request>` and its own attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestKind {
    /// `VIO_HS_QUICK_QUERY` (seed 004 L5256-5261).
    QuickQuery,
    /// `VIO_HS_NEEDS_ATTENTION dataType=…` (seed 004 L13567-13572).
    NeedsAttention {
        /// `dataType`.
        #[serde(rename = "dataType")]
        data_type: DataType,
    },
    /// `VIO_HS_ACKNOWLEDGE hsTag=…` (seed 004 L7571-7575).
    Acknowledge {
        /// `hsTag`.
        #[serde(rename = "hsTag", with = "json::tag_text")]
        tag: i64,
    },
    /// `VIO_HS_QUERY_NODE_DATA` (seed 004 L7239-7243).
    QueryNodeData,
}

impl RequestKind {
    /// The `action_str` text.
    pub const fn action_str(self) -> &'static str {
        match self {
            RequestKind::QuickQuery => "VIO_HS_QUICK_QUERY",
            RequestKind::NeedsAttention { .. } => "VIO_HS_NEEDS_ATTENTION",
            RequestKind::Acknowledge { .. } => "VIO_HS_ACKNOWLEDGE",
            RequestKind::QueryNodeData => "VIO_HS_QUERY_NODE_DATA",
        }
    }

    /// The `title` the seed's client sends with it (seed 004 L5256, L13567, L7571, L7239).
    pub const fn seed_title(self) -> &'static str {
        match self {
            RequestKind::QuickQuery => "Req Quick Query",
            RequestKind::NeedsAttention { .. } => "Req Needs Attention",
            RequestKind::Acknowledge { .. } => "acknowledgment to VIOS",
            RequestKind::QueryNodeData => "VIO_HS_QUERY_NODE_DATA",
        }
    }
}

/// A request: `<VIO xmlns version="2.00" author title><Request action_str …/></VIO>`
/// (seed 004 L5256-5261).
///
/// JSON: `{"author", "title", "request": {"action": "QUICK_QUERY" | "NEEDS_ATTENTION" |
/// "ACKNOWLEDGE" | "QUERY_NODE_DATA", …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `author`: who sends it (the seed's client says `LIBKREST`).
    pub author: String,
    /// `title`: free text.
    pub title: String,
    /// What it asks.
    pub request: RequestKind,
}

impl Request {
    /// The request as the seed's client writes it: author `LIBKREST` and the seed's title
    /// for that kind.
    pub fn seed(kind: RequestKind) -> Request {
        Request {
            author: SEED_AUTHOR.to_owned(),
            title: kind.seed_title().to_owned(),
            request: kind,
        }
    }
}

/// The seed client's `author` (seed 004 L5256).
pub const SEED_AUTHOR: &str = "LIBKREST";
