//! Replies built from the HSDB: QuickQuery (a read), NeedsAttention and node data (each one
//! write transaction that reads and tags the items it reports), Acknowledge.
//!
//! The store selects (docs/hsdb.md §8: [`Hsdb::quick_query`], [`Hsdb::needs_attention`],
//! [`Hsdb::node_data`]); this module shapes the rows into the seed's replies:
//!
//! - QuickQuery: one entry per host, every monitor; `hmResponsive` = UP and heard from
//!   within [`NaConfig::hm_silent_after_ms`]; `hmResponseSec` whole seconds of silence.
//! - NeedsAttention: first one `viosStatList` entry per host with monitors needing
//!   attention (only those monitors), then one `vmList` per host with monitored VMs, empty
//!   when all is well, in host order, each VM once in the seed's item order (doorbells,
//!   missed heartbeats, state changes, discoveries; seed 004 L13117-13124). `missedHb` is
//!   written from one whole second: the seed reports a miss only when every monitor's
//!   count is positive (seed 004 L12928-12935), and a VM there for a miss younger than
//!   that and nothing else is left out. Every `needsAtt` of a reply carries its tag.
//! - Acknowledge: the seed has one verb for the tags of both replies (seed 004
//!   L7571-7575, L7674-7692): the VM items and the monitor events of that tag are
//!   acknowledged.

use hsdb::{HmStatus, HostId, HostRecord, Hsdb, NaLimits, NaRows, NaVm, NodeDataRows};
use serde::Serialize;

use crate::hs::{
    DiscoveryType, HostKey, NeedsAttEntry, NeedsAttention, NodeData, NodeEvent, NodeList,
    QuickQuery, ViosStat, ViosState, ViosStatus, VmStat,
};

/// Which hosts a reply covers and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaConfig {
    /// The host group; `None`: every host of the HSDB.
    pub group: Option<String>,
    /// At most this many pending items per NeedsAttention reply, and events per node-data
    /// reply (at least 1); the rest come in the next replies. Default 1,000.
    pub max_items: usize,
    /// A monitor silent for longer than this is not responsive (`hmResponsive='0'`) and
    /// is listed by NeedsAttention. Default 75 s: two and a half periods of `hmd`'s
    /// default 30 s heartbeat into the HSDB, so one late write is not silence.
    pub hm_silent_after_ms: i64,
}

impl Default for NaConfig {
    fn default() -> NaConfig {
        NaConfig {
            group: None,
            max_items: 1_000,
            hm_silent_after_ms: 75_000,
        }
    }
}

impl NaConfig {
    /// The store's bounds.
    pub fn limits(&self) -> NaLimits {
        NaLimits {
            max_items: self.max_items.max(1),
            hm_silent_after_ms: self.hm_silent_after_ms,
        }
    }
}

/// A NeedsAttention reply and whether items were left for the next ones.
///
/// JSON: the reply's fields (`hsTag`, `entries`) and `"more": bool`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NaReply {
    /// The reply.
    #[serde(flatten)]
    pub reply: NeedsAttention,
    /// More pending items wait than [`NaConfig::max_items`] let through: acknowledge and
    /// ask again.
    pub more: bool,
}

/// A node-data reply and whether events were left for the next ones.
///
/// JSON: the reply's fields (`hsTag`, `hosts`) and `"more": bool`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NodeDataReply {
    /// The reply.
    #[serde(flatten)]
    pub reply: NodeData,
    /// More events wait: acknowledge and ask again.
    pub more: bool,
}

/// What one acknowledgement cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledged {
    /// VM items (state changes, discoveries, doorbells) deleted.
    pub items: usize,
    /// Monitor events deleted.
    pub events: usize,
}

fn host_key(host: &HostRecord) -> HostKey {
    HostKey {
        machine_type: host.machine_type.clone(),
        model: host.model.clone(),
        serial: host.serial.clone(),
    }
}

/// The key of host `id` among `hosts`; a host the store no longer knows (deleted while
/// the reply was built) is named by its id as serial, never dropped.
fn key_of(hosts: &[HostRecord], id: HostId) -> HostKey {
    match hosts.iter().find(|h| h.id == id) {
        Some(h) => host_key(h),
        None => HostKey {
            machine_type: String::new(),
            model: String::new(),
            serial: id.to_string(),
        },
    }
}

fn vios_stat(s: &HmStatus, silent_after_ms: i64) -> ViosStat {
    let up = s.hm.state == hsdb::HmState::Up;
    ViosStat {
        uuid: s.hm.uuid,
        state: if up { ViosState::Up } else { ViosState::Down },
        hm_responsive: up && s.silent_ms <= silent_after_ms,
        hm_response_sec: s.response_sec(),
        has_data: s.hm.has_data,
        reason: s.hm.reason,
        // "Used internally" by the seed (gap 19): nothing of ours to say.
        sync_msg: 0,
    }
}

/// QuickQuery: every host of the group with every monitor (seed 004 L4690-4706). A read.
pub fn quick_query(db: &Hsdb, now_ms: i64, config: &NaConfig) -> hsdb::Result<QuickQuery> {
    let rows = match &config.group {
        Some(group) => db.quick_query_group(group, now_ms)?,
        None => db.quick_query(now_ms)?,
    };
    Ok(QuickQuery {
        hosts: rows
            .iter()
            .map(|row| ViosStatus {
                host: host_key(&row.host),
                stats: row
                    .hms
                    .iter()
                    .map(|s| vios_stat(s, config.hm_silent_after_ms))
                    .collect(),
            })
            .collect(),
    })
}

fn discovery(kind: hsdb::DiscoveryKind) -> DiscoveryType {
    match kind {
        hsdb::DiscoveryKind::Moved => DiscoveryType::Moved,
        hsdb::DiscoveryKind::Managed => DiscoveryType::Managed,
        hsdb::DiscoveryKind::Unmanaged => DiscoveryType::Unmanaged,
    }
}

/// The `vmStat` of a VM, or `None` for one selected only for a miss younger than a
/// second (the seed reports positive counts only).
fn vm_stat(vm: &NaVm) -> Option<VmStat> {
    let missed_hb = vm.missed_sec().filter(|&s| s > 0);
    if vm.items.is_empty() && missed_hb.is_none() {
        return None;
    }
    Some(VmStat {
        uuid: vm.uuid,
        state: vm.state,
        state_chg: vm.state_chg,
        missed_hb,
        short_msg: vm.short_msg,
        missed_hm_entry: vm.missed_hm_entry,
        discovery: vm.discovery.map(discovery),
    })
}

/// A NeedsAttention reply from the store's selection (see the module doc for the layout).
pub fn needs_attention_reply(rows: &NaRows, silent_after_ms: i64) -> NeedsAttention {
    let mut entries = Vec::new();
    // Monitors first, one entry per host (seed 004 L7533-7564).
    let mut i = 0;
    while let Some(first) = rows.hms.get(i) {
        let host = first.hm.host;
        let n = rows.hms[i..]
            .iter()
            .take_while(|s| s.hm.host == host)
            .count();
        entries.push(NeedsAttEntry::Vios(ViosStatus {
            host: key_of(&rows.hosts, host),
            stats: rows.hms[i..i + n]
                .iter()
                .map(|s| vios_stat(s, silent_after_ms))
                .collect(),
        }));
        i += n;
    }
    // Then one vmList per host with monitored VMs or VMs reported.
    for &host in &rows.vm_hosts {
        entries.push(NeedsAttEntry::Vms {
            host: key_of(&rows.hosts, host),
            vms: rows
                .vms
                .iter()
                .filter(|v| v.host == Some(host))
                .filter_map(vm_stat)
                .collect(),
        });
    }
    // A VM no monitor has placed on a host cannot be in a host's list, yet its items are
    // tagged: listed under a host with no name rather than acknowledged unseen.
    let homeless: Vec<VmStat> = rows
        .vms
        .iter()
        .filter(|v| v.host.is_none())
        .filter_map(vm_stat)
        .collect();
    if !homeless.is_empty() {
        entries.push(NeedsAttEntry::Vms {
            host: HostKey {
                machine_type: String::new(),
                model: String::new(),
                serial: String::new(),
            },
            vms: homeless,
        });
    }
    NeedsAttention {
        tag: rows.tag,
        entries,
    }
}

/// NeedsAttention: reads the group's state and tags the pending items reported with `tag`
/// (one write transaction in the store). `tag` must be new ([`crate::hs::random_tag`]):
/// acknowledging it clears exactly the items of this reply.
pub fn needs_attention(
    db: &mut Hsdb,
    now_ms: i64,
    config: &NaConfig,
    tag: i64,
) -> hsdb::Result<NaReply> {
    let limits = config.limits();
    let rows = match &config.group {
        Some(group) => db.needs_attention_group(group, now_ms, limits, tag)?,
        None => db.needs_attention(now_ms, limits, tag)?,
    };
    let reply = needs_attention_reply(&rows, config.hm_silent_after_ms);
    tracing::debug!(
        tag = ?rows.tag,
        vms = rows.vms.len(),
        monitors = rows.hms.len(),
        hosts = rows.vm_hosts.len(),
        more = rows.more,
        "NeedsAttention built"
    );
    Ok(NaReply {
        reply,
        more: rows.more,
    })
}

/// A node-data reply from the store's selection: one entry per host, events oldest first.
pub fn node_data_reply(rows: &NodeDataRows) -> NodeData {
    let mut hosts: Vec<NodeList> = Vec::new();
    for host in &rows.hosts {
        let nodes: Vec<NodeEvent> = rows
            .events
            .iter()
            .filter(|e| e.host == host.id)
            .map(|e| NodeEvent {
                uuid: e.hm,
                event: e.text.clone(),
            })
            .collect();
        if !nodes.is_empty() {
            hosts.push(NodeList {
                host: host_key(host),
                nodes,
            });
        }
    }
    // Events of a host the store no longer knows.
    for e in &rows.events {
        if !rows.hosts.iter().any(|h| h.id == e.host) {
            let key = key_of(&rows.hosts, e.host);
            let node = NodeEvent {
                uuid: e.hm,
                event: e.text.clone(),
            };
            match hosts.iter_mut().find(|l| l.host == key) {
                Some(list) => list.nodes.push(node),
                None => hosts.push(NodeList {
                    host: key,
                    nodes: vec![node],
                }),
            }
        }
    }
    NodeData {
        tag: rows.tag,
        hosts,
    }
}

/// The seed's `VIO_HS_QUERY_NODE_DATA`: the pending monitor events, tagged with `tag`
/// (seed 004 L7147-7154, L7609-7655).
pub fn node_data(db: &mut Hsdb, config: &NaConfig, tag: i64) -> hsdb::Result<NodeDataReply> {
    let max = config.max_items.max(1);
    let rows = match &config.group {
        Some(group) => db.node_data_group(group, tag, max)?,
        None => db.node_data(tag, max)?,
    };
    tracing::debug!(tag = ?rows.tag, events = rows.events.len(), more = rows.more, "node data built");
    Ok(NodeDataReply {
        reply: node_data_reply(&rows),
        more: rows.more,
    })
}

/// The seed's `VIO_HS_ACKNOWLEDGE hsTag`: deletes the VM items (state changes,
/// discoveries, doorbells; never missed heartbeats) and the monitor events reported under
/// `tag`, recomputing `shortMsg` and `hasData` from what is still pending. An unknown or
/// already acknowledged tag clears nothing.
pub fn acknowledge(db: &mut Hsdb, tag: i64) -> hsdb::Result<Acknowledged> {
    let items = db.acknowledge(tag)?;
    let events = db.acknowledge_node_data(tag)?;
    tracing::debug!(tag, items, events, "acknowledged");
    Ok(Acknowledged { items, events })
}

/// Only the monitor events of `tag` (what [`acknowledge`] does for a node-data tag).
pub fn acknowledge_node_data(db: &mut Hsdb, tag: i64) -> hsdb::Result<usize> {
    db.acknowledge_node_data(tag)
}
