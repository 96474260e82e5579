//! The control plane's reads: hosts and monitors, QuickQuery, NeedsAttention with its
//! tagging, Acknowledge, node data and its acknowledgement (seed-controlplane.md §2.3-§2.7;
//! docs/hsdb.md §8).
//!
//! NeedsAttention and node data are writes: they tag the items they return, in the same
//! `BEGIN IMMEDIATE` transaction as the read, by explicit ids, so an item that a monitor
//! writes after the read is never tagged, and so never deleted by an acknowledgement that
//! did not see it. [`Hsdb::needs_attention_peek`] runs the very same selection in a read
//! transaction and tags nothing (`hactl na` without `--consume`, on a read-only
//! connection): one code path, [`select_needs_attention`], with a tag or without.
//!
//! With concurrent writers (PostgreSQL): NeedsAttention and node data lock the items
//! they tag (`FOR UPDATE SKIP LOCKED`: an item a monitor is coalescing into right now is
//! left for the next reply rather than waited for), and acknowledgements lock the rows
//! whose summary they recompute (`vm.short_msg`, `hm.has_data`) before reading what is
//! still pending, so a doorbell or monitor event committed meanwhile is never lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hvha_identity::Uuid;

use crate::codec::{UuidText, bits_from_sql, bits_to_sql};
use crate::control_model::{
    DiscoveryKind, HmStatus, NaLimits, NaRows, NaVm, NodeDataRows, NodeEvent, QqHost,
};
use crate::db::{Conn, params};
use crate::error::{Error, Result};
use crate::model::{HmRow, HmState, HostId, HostRecord, PendingKind, PendingRow, VmState};
use crate::store::{Hsdb, hm_row, hm_select, host_row, host_select, pending_row, pending_select};

/// Candidates for "missed on every monitor": start from the partial index of rows with a
/// miss time (`vm_hm_missed`), keep the rows of monitors of the VM's current host, and
/// drop a VM if any monitor of that host still hears it. A healthy group has no such
/// row: the selection reads nothing. A STOPPED row (monitoring stopped by the
/// controller) has no miss time and does not count as hearing: it is no evidence either
/// way, so a VM whose monitors were all stopped is never reported, and one whose other
/// monitors all miss it is.
const MISSED: &str = "SELECT m.vm, MIN(m.hb_missed_ms), COUNT(*), v.state, v.current_host, \
    v.managed FROM vm_hm m \
    JOIN vm v ON v.uuid = m.vm JOIN hm h ON h.uuid = m.hm \
    WHERE m.hb_missed_ms IS NOT NULL AND h.host_id = v.current_host \
    AND NOT EXISTS (SELECT 1 FROM vm_hm m2 JOIN hm h2 ON h2.uuid = m2.hm \
        WHERE m2.vm = m.vm AND m2.hb_missed_ms IS NULL AND m2.last_state <> 'STOPPED' \
        AND h2.host_id = v.current_host) \
    GROUP BY m.vm, v.state, v.current_host, v.managed ORDER BY m.vm";
/// Does any monitor of the host watch a VM? One index probe per monitor.
const HOST_HAS_VMS: &str =
    "SELECT 1 FROM hm h JOIN vm_hm m ON m.hm = h.uuid WHERE h.host_id = ?1 LIMIT 1";
const VM_MONITORS: &str = "SELECT hm FROM vm_hm WHERE vm = ?1";
const VM_BRIEF: &str = "SELECT state, current_host, managed FROM vm WHERE uuid = ?1";
const TAG_ITEM: &str = "UPDATE pending SET tag = ?1 WHERE id = ?2";
/// PostgreSQL: lock rows (in UUID order) before recomputing what they summarise.
const PG_LOCK_VM: &str = "SELECT 1 FROM vm WHERE uuid = ?1 FOR UPDATE";
const PG_LOCK_HM: &str = "SELECT 1 FROM hm WHERE uuid = ?1 FOR UPDATE";
/// The pending VM items of one kind, oldest first: every host, or one host group; the
/// `_LOCK` variants (PostgreSQL, when tagging) lock what they return.
const PENDING_ALL: &str = concat!(
    pending_select!(),
    " WHERE kind = ?1 AND vm IS NOT NULL ORDER BY id LIMIT ?2"
);
const PENDING_ALL_LOCK: &str = concat!(
    pending_select!(),
    " WHERE kind = ?1 AND vm IS NOT NULL ORDER BY id LIMIT ?2 FOR UPDATE SKIP LOCKED"
);
const PENDING_GROUP: &str = concat!(
    pending_select!(),
    " WHERE kind = ?1 AND vm IN (SELECT v.uuid FROM vm v JOIN host s \
     ON s.id = v.current_host WHERE s.host_group = ?3) ORDER BY id LIMIT ?2"
);
const PENDING_GROUP_LOCK: &str = concat!(
    pending_select!(),
    " WHERE kind = ?1 AND vm IN (SELECT v.uuid FROM vm v JOIN host s \
     ON s.id = v.current_host WHERE s.host_group = ?3) ORDER BY id LIMIT ?2 \
     FOR UPDATE OF pending SKIP LOCKED"
);

impl Hsdb {
    /// Every host, by id.
    pub fn hosts(&self) -> Result<Vec<HostRecord>> {
        self.conn.query(
            "hosts",
            "host",
            concat!(host_select!(), " ORDER BY id"),
            params![],
            host_row,
        )
    }

    /// Every registered monitor, by host then UUID.
    pub fn hms(&self) -> Result<Vec<HmRow>> {
        self.conn.query(
            "hms",
            "hm",
            concat!(hm_select!(), " ORDER BY host_id, uuid"),
            params![],
            hm_row,
        )
    }

    /// The monitors registered on host `host`, by UUID.
    pub fn hms_of_host(&self, host: HostId) -> Result<Vec<HmRow>> {
        self.conn.query(
            "hms_of_host",
            "hm",
            concat!(hm_select!(), " WHERE host_id = ?1 ORDER BY uuid"),
            params![host],
            hm_row,
        )
    }

    /// QuickQuery over every host: each host with all its monitors, healthy or not
    /// (seed 004 L4690-4706, L5264-5281). A read; takes no write lock.
    pub fn quick_query(&self, now_ms: i64) -> Result<Vec<QqHost>> {
        self.quick_query_in(None, now_ms)
    }

    /// QuickQuery over the hosts of one host group.
    pub fn quick_query_group(&self, group: &str, now_ms: i64) -> Result<Vec<QqHost>> {
        self.quick_query_in(Some(group), now_ms)
    }

    fn quick_query_in(&self, group: Option<&str>, now_ms: i64) -> Result<Vec<QqHost>> {
        // Hosts and monitors from one snapshot (a deferred transaction takes no lock
        // until it reads, and a read never waits for a WAL writer; on PostgreSQL a
        // read-only REPEATABLE READ transaction).
        let (hosts, hms) =
            self.read("quick_query", |tx| hosts_and_hms(tx, group, "quick_query"))?;
        let mut by_host: BTreeMap<HostId, QqHost> = hosts
            .into_iter()
            .map(|host| {
                (
                    host.id,
                    QqHost {
                        host,
                        hms: Vec::new(),
                    },
                )
            })
            .collect();
        for hm in hms {
            if let Some(entry) = by_host.get_mut(&hm.host) {
                entry.hms.push(status(hm, now_ms));
            }
        }
        Ok(by_host.into_values().collect())
    }

    /// NeedsAttention over every host; see [`Hsdb::needs_attention_group`].
    pub fn needs_attention(
        &mut self,
        now_ms: i64,
        limits: NaLimits,
        new_tag: i64,
    ) -> Result<NaRows> {
        self.needs_attention_in(None, now_ms, limits, new_tag)
    }

    /// NeedsAttention over the hosts of host group `group`, in ONE write transaction:
    ///
    /// - (a) VMs whose every row on a monitor of their current host has a miss time
    ///   (`missedHb` from the earliest, never negative; never acknowledged);
    /// - (b) pending VM items (untagged, or tagged by a reply never acknowledged), in
    ///   the seed's order — doorbells, state changes, discoveries (seed 004
    ///   L13117-13124) — oldest first, at most `limits.max_items`; those exactly are
    ///   tagged `new_tag` (a lost acknowledgement's items are re-reported under the new
    ///   tag);
    /// - (c) monitors DOWN, silent for longer than `limits.hm_silent_after_ms`, or
    ///   holding event data;
    /// - (d) the hosts with monitored VMs (an empty `vmList` when healthy).
    ///
    /// Monitor events are not items of NeedsAttention: [`Hsdb::node_data`] delivers them.
    pub fn needs_attention_group(
        &mut self,
        group: &str,
        now_ms: i64,
        limits: NaLimits,
        new_tag: i64,
    ) -> Result<NaRows> {
        self.needs_attention_in(Some(group), now_ms, limits, new_tag)
    }

    /// What NeedsAttention for `group` (every host when `None`) would report at
    /// `now_ms`, tagging nothing: the selection of [`Hsdb::needs_attention_group`] — the
    /// same code, the same rules, order and cap — in a read transaction (one snapshot,
    /// no write lock), so it works on a read-only connection ([`Hsdb::open_read_only`])
    /// and never competes with the monitors. [`NaRows::tag`] is `None`;
    /// [`NaVm::items`](crate::NaVm::items) lists the items a consuming call would tag
    /// now. `hactl na` without `--consume` shows it: an operator's look must not change
    /// which tag an item carries.
    pub fn needs_attention_peek(
        &self,
        now_ms: i64,
        limits: NaLimits,
        group: Option<&str>,
    ) -> Result<NaRows> {
        self.read("needs_attention_peek", |tx| {
            select_needs_attention(tx, group, now_ms, limits, None)
        })
    }

    fn needs_attention_in(
        &mut self,
        group: Option<&str>,
        now_ms: i64,
        limits: NaLimits,
        new_tag: i64,
    ) -> Result<NaRows> {
        self.write(NA, |tx| {
            select_needs_attention(tx, group, now_ms, limits, Some(new_tag))
        })
    }

    /// Acknowledge(tag): delete the VM items reported under `tag`, in one transaction,
    /// and recompute the `short_msg` of their VMs from the doorbells still pending (a
    /// doorbell that rang after the reply survives). Missed heartbeats are not items and
    /// are untouched; monitor events are acknowledged by
    /// [`Hsdb::acknowledge_node_data`]. Returns the items deleted; an unknown or already
    /// acknowledged tag deletes nothing.
    pub fn acknowledge(&mut self, tag: i64) -> Result<usize> {
        const OP: &str = "acknowledge";
        self.write(OP, |tx| {
            let rung = tx.query_texts(
                OP,
                "SELECT DISTINCT vm FROM pending WHERE tag = ?1 AND kind = 'DOORBELL' \
                 AND vm IS NOT NULL ORDER BY vm",
                params![tag],
            )?;
            if tx.is_pg() {
                // Lock before deleting and recomputing: a doorbell a monitor commits
                // meanwhile is then either seen below or ORed in after.
                for vm in &rung {
                    tx.exists(OP, PG_LOCK_VM, params![vm])?;
                }
            }
            let deleted = tx.execute(
                OP,
                "DELETE FROM pending WHERE tag = ?1 AND kind <> 'HM_EVENT'",
                params![tag],
            )?;
            for vm in &rung {
                let codes = tx.query(
                    OP,
                    "pending",
                    "SELECT code FROM pending WHERE vm = ?1 AND kind = 'DOORBELL'",
                    params![vm],
                    |c| c.int(0),
                )?;
                let short_msg = codes.into_iter().fold(0, |acc, c| acc | bits_from_sql(c));
                tx.execute(
                    OP,
                    "UPDATE vm SET short_msg = ?2 WHERE uuid = ?1",
                    params![vm, bits_to_sql(short_msg)],
                )?;
            }
            Ok(deleted)
        })
    }

    /// Node data over every host; see [`Hsdb::node_data_group`].
    pub fn node_data(&mut self, new_tag: i64, max_items: usize) -> Result<NodeDataRows> {
        self.node_data_in(None, new_tag, max_items)
    }

    /// The seed's VIO_HS_QUERY_NODE_DATA for the monitors of host group `group`: the
    /// pending monitor events (oldest first, at most `max_items`), tagged `new_tag` in
    /// the same transaction (seed 004 L7147-7154, L7609-7655).
    pub fn node_data_group(
        &mut self,
        group: &str,
        new_tag: i64,
        max_items: usize,
    ) -> Result<NodeDataRows> {
        self.node_data_in(Some(group), new_tag, max_items)
    }

    fn node_data_in(
        &mut self,
        group: Option<&str>,
        new_tag: i64,
        max_items: usize,
    ) -> Result<NodeDataRows> {
        const OP: &str = "node_data";
        const ALL: &str = "SELECT p.id, p.hm, h.host_id, p.code, p.data, p.created_ms \
            FROM pending p JOIN hm h ON h.uuid = p.hm WHERE p.kind = 'HM_EVENT' \
            ORDER BY p.id LIMIT ?1";
        const GROUP: &str = "SELECT p.id, p.hm, h.host_id, p.code, p.data, p.created_ms \
            FROM pending p JOIN hm h ON h.uuid = p.hm JOIN host s ON s.id = h.host_id \
            WHERE p.kind = 'HM_EVENT' AND s.host_group = ?2 ORDER BY p.id LIMIT ?1";
        const ALL_LOCK: &str = "SELECT p.id, p.hm, h.host_id, p.code, p.data, p.created_ms \
            FROM pending p JOIN hm h ON h.uuid = p.hm WHERE p.kind = 'HM_EVENT' \
            ORDER BY p.id LIMIT ?1 FOR UPDATE OF p SKIP LOCKED";
        const GROUP_LOCK: &str = "SELECT p.id, p.hm, h.host_id, p.code, p.data, p.created_ms \
            FROM pending p JOIN hm h ON h.uuid = p.hm JOIN host s ON s.id = h.host_id \
            WHERE p.kind = 'HM_EVENT' AND s.host_group = ?2 ORDER BY p.id LIMIT ?1 \
            FOR UPDATE OF p SKIP LOCKED";
        let max = max_items.max(1);
        let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
        self.write(OP, |tx| {
            let decode = |c: &crate::codec::Columns<'_, '_>| {
                Ok(NodeEvent {
                    id: c.int(0)?,
                    hm: c.uuid(1, "hm")?,
                    host: HostId(c.int(2)?),
                    reason: bits_from_sql(c.int(3)?),
                    text: c.text(4)?,
                    created_ms: c.int(5)?,
                })
            };
            let pg = tx.is_pg();
            let mut events = match group {
                Some(g) => tx.query(
                    OP,
                    "pending",
                    if pg { GROUP_LOCK } else { GROUP },
                    params![limit, g],
                    decode,
                )?,
                None => tx.query(
                    OP,
                    "pending",
                    if pg { ALL_LOCK } else { ALL },
                    params![limit],
                    decode,
                )?,
            };
            let more = events.len() > max;
            events.truncate(max);
            for event in &events {
                tx.execute(OP, TAG_ITEM, params![new_tag, event.id])?;
            }
            let ids: BTreeSet<HostId> = events.iter().map(|e| e.host).collect();
            let hosts = hosts_by_id(tx, &ids, &BTreeMap::new(), OP)?;
            Ok(NodeDataRows {
                tag: (!events.is_empty()).then_some(new_tag),
                more,
                hosts,
                events,
            })
        })
    }

    /// Acknowledge a node-data reply: delete the monitor events tagged `tag` and
    /// recompute `has_data` of their monitors from the events still pending (an event
    /// written after the reply keeps `has_data` set). Returns the events deleted.
    pub fn acknowledge_node_data(&mut self, tag: i64) -> Result<usize> {
        const OP: &str = "acknowledge_node_data";
        self.write(OP, |tx| {
            let monitors = tx.query_texts(
                OP,
                "SELECT DISTINCT hm FROM pending WHERE tag = ?1 AND kind = 'HM_EVENT' \
                 AND hm IS NOT NULL ORDER BY hm",
                params![tag],
            )?;
            if tx.is_pg() {
                // As for doorbells: an event committed meanwhile keeps has_data set.
                for hm in &monitors {
                    tx.exists(OP, PG_LOCK_HM, params![hm])?;
                }
            }
            let deleted = tx.execute(
                OP,
                "DELETE FROM pending WHERE tag = ?1 AND kind = 'HM_EVENT'",
                params![tag],
            )?;
            for hm in &monitors {
                tx.execute(
                    OP,
                    "UPDATE hm SET has_data = CASE WHEN EXISTS (SELECT 1 FROM pending \
                     WHERE hm = ?1 AND kind = 'HM_EVENT') THEN 1 ELSE 0 END WHERE uuid = ?1",
                    params![hm],
                )?;
            }
            Ok(deleted)
        })
    }
}

/// A monitor's QuickQuery status at `now_ms`.
fn status(hm: HmRow, now_ms: i64) -> HmStatus {
    HmStatus {
        silent_ms: now_ms.saturating_sub(hm.last_hb_ms).max(0),
        hm,
    }
}

/// The name NeedsAttention's errors carry.
const NA: &str = "needs_attention";

/// NeedsAttention's selection, inside the caller's transaction: with `tag`, the items
/// selected are tagged with it (the caller's write transaction commits them); without,
/// nothing is written (a peek). One code path for both, so the two cannot drift.
///
/// - (a) VMs whose every row on a monitor of their current host has a miss time
///   (`missedHb` from the earliest, never negative; STOPPED rows count neither way);
/// - (b) pending VM items (untagged, or tagged by a reply never acknowledged), in the
///   seed's order — doorbells, state changes, discoveries (seed 004 L13117-13124) —
///   oldest first, at most `limits.max_items`;
/// - (c) monitors DOWN, silent for longer than `limits.hm_silent_after_ms`, or holding
///   event data;
/// - (d) the hosts with monitored VMs (an empty `vmList` when healthy).
pub(crate) fn select_needs_attention(
    conn: &Conn,
    group: Option<&str>,
    now_ms: i64,
    limits: NaLimits,
    tag: Option<i64>,
) -> Result<NaRows> {
    let (hosts, hms) = hosts_and_hms(conn, group, NA)?;
    let hosts: BTreeMap<HostId, HostRecord> = hosts.into_iter().map(|h| (h.id, h)).collect();
    let mut monitors: HashMap<HostId, Vec<Uuid>> = HashMap::new();
    for hm in &hms {
        monitors.entry(hm.host).or_default().push(hm.uuid);
    }
    let mut reply = Reply {
        conn,
        hosts: &hosts,
        monitors: &monitors,
        group: group.is_some(),
        vms: Vec::new(),
        index: HashMap::new(),
        spans: HashMap::new(),
    };

    // (b) first, so that the order of the reply can follow the seed's.
    let mut items = Vec::new();
    let mut more = false;
    for kind in [
        PendingKind::Doorbell,
        PendingKind::StateChange,
        PendingKind::Discovered,
    ] {
        let room = limits.max_items.max(1).saturating_sub(items.len());
        let found = pending_of_kind(conn, group, kind, room + 1, tag.is_some())?;
        if found.len() > room {
            more = true;
        }
        items.extend(found.into_iter().take(room));
        if more {
            break;
        }
    }
    // (a): the missed VMs, with what their entry needs.
    let missed = conn.query(NA, "vm_hm", MISSED, params![], |c| {
        Ok(Missed {
            vm: c.uuid(0, "vm")?,
            earliest: c.int(1)?,
            rows: usize::try_from(c.int(2)?).unwrap_or(0),
            state: c.enumeration(3, "state", "VM state", VmState::from_text)?,
            host: c.opt_int(4)?.map(HostId),
            managed: c.bool(5, "managed")?,
        })
    })?;

    // The reply's order: doorbells, missed heartbeats, state changes, discoveries.
    for item in items.iter().filter(|i| i.kind == PendingKind::Doorbell) {
        reply.add_item(item)?;
    }
    for m in missed {
        let missed_ms = Some(now_ms.saturating_sub(m.earliest).max(0));
        if let Some(&i) = reply.index.get(&m.vm) {
            if let Some(entry) = reply.vms.get_mut(i) {
                entry.missed_ms = missed_ms;
            }
        } else if let Some(entry) = reply.insert(m.vm, m.state, m.host, m.managed, Some(m.rows))? {
            entry.missed_ms = missed_ms;
        }
    }
    for item in items.iter().filter(|i| i.kind != PendingKind::Doorbell) {
        reply.add_item(item)?;
    }

    let mut tagged = 0;
    if let Some(tag) = tag {
        for item in &items {
            tagged += conn.execute(NA, TAG_ITEM, params![tag, item.id])?;
        }
    }

    // (d): hosts with monitored VMs, and those of the VMs reported.
    let mut vm_hosts: BTreeSet<HostId> = reply.vms.iter().filter_map(|v| v.host).collect();
    for &id in hosts.keys() {
        if vm_hosts.contains(&id) {
            continue;
        }
        let watched = conn.exists(NA, HOST_HAS_VMS, params![id])?;
        if watched {
            vm_hosts.insert(id);
        }
    }
    // (c): monitors needing attention.
    let hms: Vec<HmStatus> = hms
        .into_iter()
        .map(|hm| status(hm, now_ms))
        .filter(|s| {
            s.hm.state == HmState::Down || s.silent_ms > limits.hm_silent_after_ms || s.hm.has_data
        })
        .collect();
    let vms = reply.vms;

    let mut mentioned: BTreeSet<HostId> = vm_hosts.clone();
    mentioned.extend(hms.iter().map(|s| s.hm.host));
    mentioned.extend(vms.iter().filter_map(|v| v.from_host));
    let hosts_out = hosts_by_id(conn, &mentioned, &hosts, NA)?;
    Ok(NaRows {
        tag: tag.filter(|_| tagged > 0),
        more,
        hosts: hosts_out,
        vm_hosts: vm_hosts.into_iter().collect(),
        vms,
        hms,
    })
}

/// Hosts by id, from `known` or the database (a VM's previous host may be in another
/// group).
fn hosts_by_id(
    conn: &Conn,
    ids: &BTreeSet<HostId>,
    known: &BTreeMap<HostId, HostRecord>,
    op: &'static str,
) -> Result<Vec<HostRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match known.get(id) {
            Some(host) => out.push(host.clone()),
            None => out.extend(crate::store::host_by_id(conn, *id, op)?),
        }
    }
    Ok(out)
}

/// The hosts (of `group`, or all) by id, and their monitors by host then UUID.
fn hosts_and_hms(
    conn: &Conn,
    group: Option<&str>,
    op: &'static str,
) -> Result<(Vec<HostRecord>, Vec<HmRow>)> {
    let hosts = match group {
        Some(g) => conn.query(
            op,
            "host",
            concat!(host_select!(), " WHERE host_group = ?1 ORDER BY id"),
            params![g],
            host_row,
        )?,
        None => conn.query(
            op,
            "host",
            concat!(host_select!(), " ORDER BY id"),
            params![],
            host_row,
        )?,
    };
    let mut hms = conn.query(
        op,
        "hm",
        concat!(hm_select!(), " ORDER BY host_id, uuid"),
        params![],
        hm_row,
    )?;
    hms.retain(|hm| hosts.iter().any(|h| h.id == hm.host));
    Ok((hosts, hms))
}

/// The pending items of `kind` about VMs (of hosts of `group`, or all), oldest first;
/// with `lock` on PostgreSQL, locked for tagging (those another transaction holds are
/// skipped: they are being written and come in the next reply).
fn pending_of_kind(
    conn: &Conn,
    group: Option<&str>,
    kind: PendingKind,
    limit: usize,
    lock: bool,
) -> Result<Vec<PendingRow>> {
    const OP: &str = "needs_attention";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lock = lock && conn.is_pg();
    match group {
        None => conn.query(
            OP,
            "pending",
            if lock { PENDING_ALL_LOCK } else { PENDING_ALL },
            params![kind.as_str(), limit],
            pending_row,
        ),
        Some(g) => conn.query(
            OP,
            "pending",
            if lock {
                PENDING_GROUP_LOCK
            } else {
                PENDING_GROUP
            },
            params![kind.as_str(), limit, g],
            pending_row,
        ),
    }
}

/// A VM missed on every monitor of its host that knows it.
struct Missed {
    vm: Uuid,
    /// The earliest miss time.
    earliest: i64,
    /// How many monitors of its host have a row for it.
    rows: usize,
    state: VmState,
    host: Option<HostId>,
    managed: bool,
}

/// The VMs of one NeedsAttention reply, in order, each once.
struct Reply<'a> {
    conn: &'a Conn,
    hosts: &'a BTreeMap<HostId, HostRecord>,
    monitors: &'a HashMap<HostId, Vec<Uuid>>,
    /// Restricted to a group: VMs on hosts outside it are left out.
    group: bool,
    vms: Vec<NaVm>,
    index: HashMap<Uuid, usize>,
    /// Ids of the first and last state items merged per VM.
    spans: HashMap<Uuid, Option<(i64, i64)>>,
}

impl Reply<'_> {
    /// The entry of VM `vm`, created at the end of the reply on first use; `None` for a
    /// VM that is gone or outside the group.
    fn entry(&mut self, vm: &Uuid) -> Result<Option<&mut NaVm>> {
        const OP: &str = "needs_attention";
        if let Some(&i) = self.index.get(vm) {
            return Ok(self.vms.get_mut(i));
        }
        let brief: Option<(String, Option<i64>, i64)> =
            self.conn
                .query_opt(OP, "vm", VM_BRIEF, params![UuidText::new(vm)], |c| {
                    Ok((c.text(0)?, c.opt_int(1)?, c.int(2)?))
                })?;
        let Some((state, host, managed)) = brief else {
            return Ok(None);
        };
        let state = VmState::from_text(&state).ok_or_else(|| Error::Corrupt {
            table: "vm",
            column: "state",
            value: state,
            expected: "VM state",
        })?;
        self.insert(*vm, state, host.map(HostId), managed != 0, None)
    }

    /// Add VM `vm`'s entry at the end of the reply, unless it is outside the group.
    /// `rows_on_host`: how many monitors of its host have a row for it, when known
    /// (then `missedHMEntry` is looked up only if some monitor has none).
    fn insert(
        &mut self,
        vm: Uuid,
        state: VmState,
        host: Option<HostId>,
        managed: bool,
        rows_on_host: Option<usize>,
    ) -> Result<Option<&mut NaVm>> {
        const OP: &str = "needs_attention";
        if self.group && !host.is_some_and(|h| self.hosts.contains_key(&h)) {
            return Ok(None);
        }
        let monitors = host.and_then(|h| self.monitors.get(&h));
        let missed_hm_entry = match monitors {
            Some(monitors) if rows_on_host != Some(monitors.len()) => {
                let known = self
                    .conn
                    .query_texts(OP, VM_MONITORS, params![UuidText::new(&vm)])?;
                monitors
                    .iter()
                    .find(|m| !known.iter().any(|k| k.as_bytes() == m.to_text()))
                    .copied()
            }
            _ => None,
        };
        self.index.insert(vm, self.vms.len());
        self.vms.push(NaVm {
            uuid: vm,
            host,
            state,
            managed,
            state_chg: false,
            missed_ms: None,
            short_msg: None,
            doorbell_ms: None,
            doorbell_hm: None,
            missed_hm_entry,
            discovery: None,
            old_state: None,
            new_state: None,
            from_host: None,
            items: Vec::new(),
        });
        Ok(self.vms.last_mut())
    }

    /// Merge one pending item into its VM's entry.
    fn add_item(&mut self, item: &PendingRow) -> Result<()> {
        let Some(vm) = item.vm else { return Ok(()) };
        if self.entry(&vm)?.is_none() {
            return Ok(());
        }
        let Some(entry) = self.index.get(&vm).and_then(|&i| self.vms.get_mut(i)) else {
            return Ok(());
        };
        entry.items.push(item.id);
        let span = self.spans.entry(vm).or_default();
        match item.kind {
            PendingKind::Doorbell => {
                entry.short_msg = Some(entry.short_msg.unwrap_or(0) | item.code);
                // Items come in id order: the first is the earliest, the last the newest.
                entry.doorbell_ms = Some(
                    entry
                        .doorbell_ms
                        .map_or(item.created_ms, |t| t.min(item.created_ms)),
                );
                if item.hm.is_some() {
                    entry.doorbell_hm = item.hm;
                }
            }
            PendingKind::StateChange | PendingKind::Discovered => {
                // First `old`, last `new`, by id: discoveries are merged after state
                // changes, whatever happened first.
                let (first, last) = span.get_or_insert((item.id, item.id));
                if item.id <= *first {
                    *first = item.id;
                    entry.old_state = item.old_state;
                }
                if item.id >= *last {
                    *last = item.id;
                    entry.new_state = item.new_state;
                }
                if item.kind == PendingKind::StateChange {
                    entry.state_chg = true;
                } else if let Some(from) = item.from_host {
                    entry.state_chg = true;
                    entry.from_host = Some(from);
                    entry.discovery = Some(DiscoveryKind::Moved);
                } else if entry.discovery.is_none() {
                    entry.discovery = Some(if entry.managed {
                        DiscoveryKind::Managed
                    } else {
                        DiscoveryKind::Unmanaged
                    });
                }
            }
            PendingKind::HmEvent => {}
        }
        Ok(())
    }
}
