//! `hactl na` without `--consume`: what the next NeedsAttention would report, read
//! through a read-only connection, tagging nothing.
//!
//! [`Hsdb::needs_attention_group`] tags the items it reports (that is how the control
//! plane knows what an Acknowledge clears), so an operator who only wants to look must
//! not call it: an item tagged by a look and then acknowledged by nobody is reported
//! again under the engine's next tag, but a look must not even change which tag an item
//! carries. This module makes the same selection from the store's plain reads — the same
//! rules, the same order, the same cap — and leaves every row as it was. Its equality
//! with the store's selection on the same state is a test (below), so the two cannot
//! drift apart unnoticed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hsdb::{
    DiscoveryKind, HmState, HmStatus, HostId, HostRecord, Hsdb, NaLimits, NaRows, NaVm,
    PendingKind, PendingRow, Uuid,
};

/// The reply being built, as the store builds it.
struct Reply<'a> {
    db: &'a Hsdb,
    hosts: &'a BTreeMap<HostId, HostRecord>,
    monitors: &'a HashMap<HostId, Vec<Uuid>>,
    group: bool,
    vms: Vec<NaVm>,
    index: HashMap<Uuid, usize>,
    spans: HashMap<Uuid, (i64, i64)>,
}

impl Reply<'_> {
    fn entry(&mut self, vm: &Uuid) -> hsdb::Result<Option<usize>> {
        if let Some(&i) = self.index.get(vm) {
            return Ok(Some(i));
        }
        let Some(row) = self.db.vm(vm)? else {
            return Ok(None);
        };
        if self.group
            && !row
                .current_host
                .is_some_and(|h| self.hosts.contains_key(&h))
        {
            return Ok(None);
        }
        let missed_hm_entry = match row.current_host.and_then(|h| self.monitors.get(&h)) {
            Some(monitors) => {
                let known: Vec<Uuid> = self.db.vm_hms(vm)?.into_iter().map(|r| r.hm).collect();
                monitors.iter().find(|m| !known.contains(m)).copied()
            }
            None => None,
        };
        let i = self.vms.len();
        self.index.insert(*vm, i);
        self.vms.push(NaVm {
            uuid: *vm,
            host: row.current_host,
            state: row.state,
            managed: row.managed,
            state_chg: false,
            missed_ms: None,
            short_msg: None,
            missed_hm_entry,
            discovery: None,
            old_state: None,
            new_state: None,
            from_host: None,
            items: Vec::new(),
        });
        Ok(Some(i))
    }

    fn add_item(&mut self, item: &PendingRow) -> hsdb::Result<()> {
        let Some(vm) = item.vm else { return Ok(()) };
        let Some(i) = self.entry(&vm)? else {
            return Ok(());
        };
        let Some(entry) = self.vms.get_mut(i) else {
            return Ok(());
        };
        entry.items.push(item.id);
        match item.kind {
            PendingKind::Doorbell => {
                entry.short_msg = Some(entry.short_msg.unwrap_or(0) | item.code);
            }
            PendingKind::StateChange | PendingKind::Discovered => {
                // First `old`, last `new`, by id.
                let (first, last) = self.spans.entry(vm).or_insert((item.id, item.id));
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

/// What NeedsAttention for `group` (every host when `None`) would report at `now_ms`,
/// tagging nothing: [`NaRows::tag`] is `None`, and [`NaVm::items`] lists the items it
/// would tag. Works on a read-only connection.
pub fn needs_attention(
    db: &Hsdb,
    group: Option<&str>,
    now_ms: i64,
    limits: NaLimits,
) -> hsdb::Result<NaRows> {
    let all_hosts = db.hosts()?;
    let hosts: BTreeMap<HostId, HostRecord> = all_hosts
        .iter()
        .filter(|h| group.is_none_or(|g| h.host_group == g))
        .map(|h| (h.id, h.clone()))
        .collect();
    let hms_all = db.hms()?;
    let mut hms = hms_all.clone();
    hms.retain(|hm| hosts.contains_key(&hm.host));
    hms.sort_by_key(|hm| (hm.host, hm.uuid));
    let mut monitors: HashMap<HostId, Vec<Uuid>> = HashMap::new();
    for hm in &hms {
        monitors.entry(hm.host).or_default().push(hm.uuid);
    }
    let vm_rows: HashMap<Uuid, hsdb::VmRow> = db.vms()?.into_iter().map(|v| (v.uuid, v)).collect();
    let in_group: BTreeSet<Uuid> = vm_rows
        .values()
        .filter(|v| v.current_host.is_some_and(|h| hosts.contains_key(&h)))
        .map(|v| v.uuid)
        .collect();
    let mut reply = Reply {
        db,
        hosts: &hosts,
        monitors: &monitors,
        group: group.is_some(),
        vms: Vec::new(),
        index: HashMap::new(),
        spans: HashMap::new(),
    };

    // (b) the pending VM items, in the seed's order, capped.
    let pending = db.pending()?;
    let mut items: Vec<&PendingRow> = Vec::new();
    let mut more = false;
    for kind in [
        PendingKind::Doorbell,
        PendingKind::StateChange,
        PendingKind::Discovered,
    ] {
        let room = limits.max_items.max(1).saturating_sub(items.len());
        let found: Vec<&PendingRow> = pending
            .iter()
            .filter(|p| p.kind == kind)
            .filter(|p| {
                p.vm.is_some_and(|vm| group.is_none() || in_group.contains(&vm))
            })
            .take(room + 1)
            .collect();
        if found.len() > room {
            more = true;
        }
        items.extend(found.into_iter().take(room));
        if more {
            break;
        }
    }
    // (a) VMs missed on every monitor of their current host, by UUID. Candidates come
    // from the monitors that count a MISSING row (a miss time is kept exactly while the
    // row is MISSING, docs/hsdb.md): a healthy group costs one index count per monitor.
    let hm_host: HashMap<Uuid, HostId> = hms_all.iter().map(|h| (h.uuid, h.host)).collect();
    let mut candidates = BTreeSet::new();
    for hm in &hms {
        if db.vm_hm_counts(&hm.uuid)?.missing > 0 {
            candidates.extend(
                db.vm_hms_of(&hm.uuid)?
                    .into_iter()
                    .filter(|r| r.hb_missed_ms.is_some())
                    .map(|r| r.vm),
            );
        }
    }
    let mut missed = Vec::new();
    for vm in candidates {
        let Some(current) = vm_rows.get(&vm).and_then(|v| v.current_host) else {
            continue;
        };
        let rows: Vec<_> = db
            .vm_hms(&vm)?
            .into_iter()
            .filter(|r| hm_host.get(&r.hm) == Some(&current))
            .collect();
        if rows.iter().all(|r| r.hb_missed_ms.is_some())
            && let Some(earliest) = rows.iter().filter_map(|r| r.hb_missed_ms).min()
        {
            missed.push((vm, earliest));
        }
    }
    missed.sort_by_key(|(vm, _)| *vm);

    for item in items.iter().filter(|i| i.kind == PendingKind::Doorbell) {
        reply.add_item(item)?;
    }
    for (vm, earliest) in missed {
        if let Some(i) = reply.entry(&vm)?
            && let Some(entry) = reply.vms.get_mut(i)
        {
            entry.missed_ms = Some(now_ms.saturating_sub(earliest).max(0));
        }
    }
    for item in items.iter().filter(|i| i.kind != PendingKind::Doorbell) {
        reply.add_item(item)?;
    }

    // (d) hosts with monitored VMs, and those of the VMs reported.
    let mut vm_hosts: BTreeSet<HostId> = reply.vms.iter().filter_map(|v| v.host).collect();
    for (&id, hm_list) in &monitors {
        if vm_hosts.contains(&id) {
            continue;
        }
        for hm in hm_list {
            // A range count on the (hm, state) index, not the monitor's rows.
            if db.vm_hm_counts(hm)?.total() > 0 {
                vm_hosts.insert(id);
                break;
            }
        }
    }
    // (c) monitors needing attention.
    let hms: Vec<HmStatus> = hms
        .into_iter()
        .map(|hm| HmStatus {
            hm,
            silent_ms: now_ms.saturating_sub(hm.last_hb_ms).max(0),
        })
        .filter(|s| {
            s.hm.state == HmState::Down || s.silent_ms > limits.hm_silent_after_ms || s.hm.has_data
        })
        .collect();
    let vms = reply.vms;
    let mut mentioned: BTreeSet<HostId> = vm_hosts.clone();
    mentioned.extend(hms.iter().map(|s| s.hm.host));
    mentioned.extend(vms.iter().filter_map(|v| v.from_host));
    let hosts_out = mentioned
        .iter()
        .filter_map(|id| {
            hosts
                .get(id)
                .or_else(|| all_hosts.iter().find(|h| h.id == *id))
                .cloned()
        })
        .collect();
    Ok(NaRows {
        tag: None,
        more,
        hosts: hosts_out,
        vm_hosts: vm_hosts.into_iter().collect(),
        vms,
        hms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hsdb::{HelloId, HmRecord, MacAddr, Transition, Version};

    const T0: i64 = 1_556_303_548_719;
    const V: Version = Version { major: 2, minor: 0 };

    fn uuid(i: u8, j: u8) -> Uuid {
        let mut b = [0x11; 16];
        b[0] = i;
        b[15] = j;
        Uuid(b)
    }

    /// Hosts 1, 2 in `hg1`, host 3 in `hg2`; two monitors each (uuid(0xa, host, side)).
    fn fixture() -> Hsdb {
        let mut db = Hsdb::open_in_memory().unwrap();
        for (id, group) in [(1, "hg1"), (2, "hg1"), (3, "hg2")] {
            db.upsert_host(&HostRecord {
                id: HostId(id),
                name: format!("host-{id}"),
                machine_type: "8408".into(),
                model: "E8E".into(),
                serial: format!("S{id}"),
                cpu_milli: 8_000,
                memory_mb: 32_768,
                host_group: group.into(),
            })
            .unwrap();
            for side in 0..2u8 {
                let n = u8::try_from(id).unwrap() * 2 + side;
                db.register_hm(&HmRecord {
                    uuid: uuid(0xa0 + n, 0),
                    host: HostId(id),
                    mac: MacAddr([2, 0, 0, 0, 0, n]),
                    incarnation: HelloId {
                        secs: 1,
                        nanos: 0,
                        suffix: u32::from(n),
                    },
                    version: V,
                    at: T0,
                })
                .unwrap();
            }
        }
        db
    }

    fn hm(host: u8, side: u8) -> Uuid {
        uuid(0xa0 + host * 2 + side, 0)
    }

    fn discovered(vm: Uuid, hm: Uuid, at: i64) -> Transition {
        Transition::Discovered {
            vm,
            hm,
            mac: MacAddr([0x6a, 0, 0, 0, vm.0[0], hm.0[0]]),
            ostype: "Linux".into(),
            ver_lower: V,
            ver_upper: V,
            at,
        }
    }

    /// The store's reply with its tag taken out, next to the peek.
    fn both(db: &mut Hsdb, group: Option<&str>, now: i64, limits: NaLimits) -> (NaRows, NaRows) {
        let peek = needs_attention(db, group, now, limits).unwrap();
        let mut store = match group {
            Some(g) => db.needs_attention_group(g, now, limits, 77).unwrap(),
            None => db.needs_attention(now, limits, 77).unwrap(),
        };
        store.tag = None;
        (peek, store)
    }

    #[test]
    fn peek_selects_what_needs_attention_selects_and_tags_nothing() {
        let mut db = fixture();
        let limits = NaLimits {
            max_items: 1000,
            hm_silent_after_ms: 30_000,
        };
        // Healthy: empty lists for the hosts with VMs.
        let (a, b) = (uuid(1, 1), uuid(2, 2));
        let c = uuid(3, 3);
        db.apply(&[
            discovered(a, hm(1, 0), T0),
            discovered(a, hm(1, 1), T0),
            discovered(b, hm(1, 0), T0),
            discovered(b, hm(1, 1), T0),
            discovered(c, hm(3, 0), T0),
        ])
        .unwrap();
        for group in [Some("hg2"), Some("hg1"), None] {
            let (peek, store) = both(&mut db, group, T0 + 1_000, limits);
            assert_eq!(peek, store, "new VMs, group {group:?}");
            assert!(!peek.vms.is_empty() || group.is_none());
            db.acknowledge(77).unwrap();
        }
        // Missed on both monitors (the earliest counts), on one only (not reported), a
        // doorbell, a monitor DOWN, a monitor silent, a move to another host.
        db.apply(&[
            Transition::Missing {
                vm: a,
                hm: hm(1, 0),
                at: T0 + 2_000,
            },
            Transition::Missing {
                vm: a,
                hm: hm(1, 1),
                at: T0 + 5_000,
            },
            Transition::Missing {
                vm: b,
                hm: hm(1, 0),
                at: T0 + 2_000,
            },
            Transition::Doorbell {
                vm: b,
                hm: hm(1, 1),
                vector: 0x28,
                at: T0 + 3_000,
            },
            Transition::HmEvent {
                hm: hm(2, 0),
                state: HmState::Down,
                reason: 0x40,
                text: "EVENT_TYPE=NODE_DOWN".into(),
                at: T0 + 3_000,
            },
            Transition::HmHeartbeat {
                hm: hm(1, 0),
                at: T0 + 40_000,
            },
            discovered(c, hm(2, 1), T0 + 4_000),
        ])
        .unwrap();
        let before = db.pending().unwrap();
        let peek = needs_attention(&db, Some("hg1"), T0 + 50_000, limits).unwrap();
        assert_eq!(db.pending().unwrap(), before, "a peek tags nothing");
        assert_eq!(peek.tag, None);
        let va = peek.vms.iter().find(|v| v.uuid == a).unwrap();
        assert_eq!(va.missed_ms, Some(48_000));
        let vb = peek.vms.iter().find(|v| v.uuid == b).unwrap();
        assert_eq!((vb.missed_ms, vb.short_msg), (None, Some(0x28)));
        let vc = peek.vms.iter().find(|v| v.uuid == c).unwrap();
        assert_eq!(vc.discovery, Some(DiscoveryKind::Moved));
        for group in [None, Some("hg1"), Some("hg2")] {
            let (peek, store) = both(&mut db, group, T0 + 50_000, limits);
            assert_eq!(peek, store, "group {group:?}");
        }
        // Items already tagged and not acknowledged are reported again; the cap and
        // `more` follow the store's.
        let capped = NaLimits {
            max_items: 1,
            hm_silent_after_ms: 30_000,
        };
        let (peek, store) = both(&mut db, None, T0 + 50_000, capped);
        assert!(peek.more);
        assert_eq!(peek, store, "capped");
    }
}
