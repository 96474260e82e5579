//! QuickQuery, NeedsAttention, Acknowledge and node data.

use super::*;
use crate::{DiscoveryKind, HmState, NaLimits, NaRows, NaVm, PendingKind, Transition, VmState};

fn missing(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Missing { vm, hm, at }
}

fn doorbell(vm: Uuid, hm: Uuid, vector: u64, at: i64) -> Transition {
    Transition::Doorbell { vm, hm, vector, at }
}

fn heartbeat(hm: Uuid, at: i64) -> Transition {
    Transition::HmHeartbeat { hm, at }
}

/// Monitors heart-beating at `at`.
fn all_heartbeat(f: &mut Fixture, at: i64) {
    f.db.apply(&[
        heartbeat(hm1(), at),
        heartbeat(hm2(), at),
        heartbeat(hm_b(), at),
    ])
    .expect("heartbeats");
}

fn na(f: &mut Fixture, now: i64, tag: i64) -> NaRows {
    f.db.needs_attention(now, NaLimits::default(), tag)
        .expect("needs attention")
}

fn only_vm(rows: &NaRows) -> &NaVm {
    assert_eq!(rows.vms.len(), 1, "{rows:?}");
    &rows.vms[0]
}

/// vm1 discovered through both monitors of host A, the discovery acknowledged.
fn healthy(f: &mut Fixture) {
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
    ])
    .expect("apply");
    let rows = na(f, T0, 1);
    assert_eq!(rows.tag, Some(1));
    f.db.acknowledge(1).expect("ack");
}

both!(test_quick_query_every_monitor_with_its_silence);
fn test_quick_query_every_monitor_with_its_silence() {
    let mut f = Fixture::new();
    f.db.apply(&[heartbeat(hm1(), T0 + 9_000), heartbeat(hm2(), T0 + 10_500)])
        .expect("hb");
    let qq = f.db.quick_query(T0 + 10_000).expect("qq");
    assert_eq!(
        qq.iter().map(|h| h.host.id).collect::<Vec<_>>(),
        [HOST_A, HOST_B]
    );
    let a = &qq[0];
    let mut uuids: Vec<Uuid> = vec![hm1(), hm2()];
    uuids.sort();
    assert_eq!(a.hms.iter().map(|s| s.hm.uuid).collect::<Vec<_>>(), uuids);
    let s1 = a.hms.iter().find(|s| s.hm.uuid == hm1()).expect("hm1");
    assert_eq!((s1.silent_ms, s1.response_sec()), (1_000, 1));
    // hm2's clock runs ahead of the reader's: silence clamps at 0, never negative.
    let s2 = a.hms.iter().find(|s| s.hm.uuid == hm2()).expect("hm2");
    assert_eq!((s2.silent_ms, s2.response_sec()), (0, 0));
    // hm_b registered at T0 and never heart-beat since.
    assert_eq!(qq[1].hms[0].response_sec(), 10);
    // By group: both hosts are in hg1; another group is empty.
    assert_eq!(f.db.quick_query_group("hg1", T0).expect("qq").len(), 2);
    f.db.set_host_group(HOST_B, "hg2").expect("group");
    let g2 = f.db.quick_query_group("hg2", T0).expect("qq");
    assert_eq!(g2.len(), 1);
    assert_eq!(g2[0].host.id, HOST_B);
    assert_eq!(f.db.hosts().expect("hosts").len(), 2);
    assert_eq!(f.db.hms().expect("hms").len(), 3);
    assert_eq!(
        f.db.hms_of_host(HOST_B)
            .expect("hms")
            .iter()
            .map(|h| h.uuid)
            .collect::<Vec<_>>(),
        [hm_b()]
    );
}

both!(test_needs_attention_empty_when_healthy);
fn test_needs_attention_empty_when_healthy() {
    let mut f = Fixture::new();
    healthy(&mut f);
    all_heartbeat(&mut f, T0 + 5_000);
    let rows = na(&mut f, T0 + 6_000, 2);
    // One empty vmList for host A (it has a monitored VM); none for B; no monitor.
    assert_eq!(rows.tag, None);
    assert!(!rows.more);
    assert_eq!(rows.vm_hosts, [HOST_A]);
    assert!(rows.vms.is_empty(), "{rows:?}");
    assert!(rows.hms.is_empty(), "{rows:?}");
    assert_eq!(
        rows.hosts.iter().map(|h| h.id).collect::<Vec<_>>(),
        [HOST_A]
    );
}

both!(test_missed_hb_from_the_earliest_of_two_misses);
fn test_missed_hb_from_the_earliest_of_two_misses() {
    let mut f = Fixture::new();
    healthy(&mut f);
    // Seed 004 L12928-12935: one monitor missed 40 s ago, the other not → not reported
    // (TC-9, a single-path miss).
    f.db.apply(&[missing(vm1(), hm1(), T0 + 10_000)])
        .expect("apply");
    all_heartbeat(&mut f, T0 + 50_000);
    let rows = na(&mut f, T0 + 50_000, 2);
    assert!(rows.vms.is_empty(), "{rows:?}");
    // The second monitor misses too: missedHb counts from the earliest (42 s).
    f.db.apply(&[missing(vm1(), hm2(), T0 + 50_000)])
        .expect("apply");
    let rows = na(&mut f, T0 + 52_000, 3);
    let vm = only_vm(&rows);
    assert_eq!((vm.uuid, vm.host), (vm1(), Some(HOST_A)));
    assert_eq!(vm.missed_ms, Some(42_000));
    assert_eq!(vm.missed_sec(), Some(42));
    assert_eq!(vm.state, VmState::Unknown, "not managed");
    assert!(!vm.state_chg && vm.items.is_empty());
    // Missed heartbeats are not items: no tag, nothing to acknowledge.
    assert_eq!(rows.tag, None);
    // A writer's clock ahead of the reader's: never negative.
    let rows = na(&mut f, T0 + 1_000, 4);
    assert_eq!(only_vm(&rows).missed_ms, Some(0));
    // Heartbeats back on one monitor: no longer reported.
    f.db.apply(&[Transition::Detected {
        vm: vm1(),
        hm: hm2(),
        at: T0 + 60_000,
    }])
    .expect("apply");
    assert!(na(&mut f, T0 + 61_000, 5).vms.is_empty());
}

both!(test_doorbell_tag_and_ack);
fn test_doorbell_tag_and_ack() {
    // TC-10 / TC-11: shortMsg with hsTag; after the ack it is gone.
    let mut f = Fixture::new();
    healthy(&mut f);
    f.db.apply(&[doorbell(vm1(), hm1(), 0x28, T0 + 1_000)])
        .expect("apply");
    let rows = na(&mut f, T0 + 2_000, -3_026_381_694_404_356_594);
    assert_eq!(rows.tag, Some(-3_026_381_694_404_356_594));
    let vm = only_vm(&rows);
    assert_eq!(vm.short_msg, Some(0x28));
    assert_eq!(vm.items.len(), 1);
    // Until acknowledged, it is reported again (under the new tag).
    let again = na(&mut f, T0 + 3_000, 9);
    assert_eq!(again.tag, Some(9));
    assert_eq!(only_vm(&again).short_msg, Some(0x28));
    // The old tag clears nothing: the item is now reported under tag 9.
    assert_eq!(
        f.db.acknowledge(-3_026_381_694_404_356_594).expect("ack"),
        0
    );
    assert_eq!(f.db.acknowledge(9).expect("ack"), 1);
    assert_eq!(f.db.vm(&vm1()).expect("vm").expect("row").short_msg, 0);
    let after = na(&mut f, T0 + 4_000, 10);
    assert!(after.vms.is_empty() && after.tag.is_none(), "{after:?}");
}

both!(test_item_written_after_the_reply_survives_the_ack);
fn test_item_written_after_the_reply_survives_the_ack() {
    let mut f = Fixture::new();
    healthy(&mut f);
    f.db.apply(&[doorbell(vm1(), hm1(), 0x2, T0 + 1_000)])
        .expect("apply");
    let rows = na(&mut f, T0 + 2_000, 5);
    assert_eq!(only_vm(&rows).short_msg, Some(0x2));
    // A doorbell rings between the reply and its acknowledgement.
    f.db.apply(&[doorbell(vm1(), hm2(), 0x8, T0 + 2_500)])
        .expect("apply");
    assert_eq!(f.db.acknowledge(5).expect("ack"), 1);
    // It survived, untagged, and short_msg was recomputed from it alone.
    let left = f.db.pending().expect("pending");
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].kind, left[0].code, left[0].tag),
        (PendingKind::Doorbell, 0x8, None)
    );
    assert_eq!(f.db.vm(&vm1()).expect("vm").expect("row").short_msg, 0x8);
    let next = na(&mut f, T0 + 3_000, 6);
    assert_eq!(only_vm(&next).short_msg, Some(0x8));
}

both!(test_lost_ack_is_reported_again_under_a_new_tag);
fn test_lost_ack_is_reported_again_under_a_new_tag() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let first = na(&mut f, T0 + 1, 100);
    assert_eq!(first.tag, Some(100));
    let items = only_vm(&first).items.clone();
    // The ack for 100 is lost; the next reply carries the same item under 101.
    let second = na(&mut f, T0 + 2, 101);
    assert_eq!(second.tag, Some(101));
    assert_eq!(only_vm(&second).items, items);
    // A new item first reported under 101 is never cleared by the late ack of 100.
    f.db.apply(&[doorbell(vm1(), hm1(), 0x2, T0 + 3)])
        .expect("apply");
    let third = na(&mut f, T0 + 4, 102);
    assert_eq!(only_vm(&third).items.len(), 2);
    assert_eq!(f.db.acknowledge(100).expect("late ack"), 0);
    assert_eq!(f.db.acknowledge(101).expect("ack"), 0, "retagged by 102");
    assert_eq!(f.db.pending().expect("pending").len(), 2);
    assert_eq!(f.db.acknowledge(102).expect("ack"), 2);
    assert!(f.db.pending().expect("pending").is_empty());
}

both!(test_discovered_vm_reads_unmanaged_and_moved_vm_reads_moved);
fn test_discovered_vm_reads_unmanaged_and_moved_vm_reads_moved() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let rows = na(&mut f, T0 + 1, 1);
    let vm = only_vm(&rows);
    assert_eq!(vm.discovery, Some(DiscoveryKind::Unmanaged));
    assert!(!vm.state_chg);
    assert_eq!((vm.old_state, vm.managed), (None, false));
    // hm2 of host A has no row for the VM yet.
    assert_eq!(vm.missed_hm_entry, Some(hm2()));
    f.db.acknowledge(1).expect("ack");

    // TC-13: the VM moves to host B (live migration): MOVED, stateChg, from host A.
    f.db.apply(&[discovered(vm1(), hm_b(), mac_n(1, 0), T0 + 10)])
        .expect("apply");
    let rows = na(&mut f, T0 + 11, 2);
    let vm = only_vm(&rows);
    assert_eq!(vm.discovery, Some(DiscoveryKind::Moved));
    assert!(vm.state_chg);
    assert_eq!((vm.host, vm.from_host), (Some(HOST_B), Some(HOST_A)));
    assert_eq!(rows.vm_hosts, [HOST_B], "host A watches it no more");
    assert!(
        rows.hosts.iter().any(|h| h.id == HOST_A),
        "from host described"
    );
}

both!(test_monitors_down_silent_or_with_data);
fn test_monitors_down_silent_or_with_data() {
    let mut f = Fixture::new();
    all_heartbeat(&mut f, T0 + 100_000);
    f.db.apply(&[Transition::HmEvent {
        hm: hm1(),
        state: HmState::Down,
        reason: 0x40,
        text: "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN".to_string(),
        at: T0 + 100_000,
    }])
    .expect("apply");
    // hm_b silent for 31 s > 30 s.
    f.db.apply(&[heartbeat(hm_b(), T0 + 69_000)]).expect("hb");
    let rows = na(&mut f, T0 + 100_000, 1);
    let listed: Vec<Uuid> = rows.hms.iter().map(|s| s.hm.uuid).collect();
    assert!(
        listed.contains(&hm1()) && listed.contains(&hm_b()),
        "{listed:?}"
    );
    assert!(!listed.contains(&hm2()));
    // Monitor events are not NeedsAttention items: no tag, and its ack keeps them.
    assert_eq!(rows.tag, None);
    assert_eq!(f.db.acknowledge(1).expect("ack"), 0);

    // Node data delivers and acknowledges them.
    let data = f.db.node_data(77, 10).expect("node data");
    assert_eq!(data.tag, Some(77));
    assert_eq!(data.events.len(), 1);
    assert_eq!((data.events[0].hm, data.events[0].reason), (hm1(), 0x40));
    assert_eq!(
        data.hosts.iter().map(|h| h.id).collect::<Vec<_>>(),
        [HOST_A]
    );
    // An event after the reply keeps has_data set.
    f.db.apply(&[Transition::HmInterface {
        hm: hm1(),
        interface: "ent1".to_string(),
        state: crate::InterfaceState::Down,
        at: T0 + 100_001,
    }])
    .expect("apply");
    assert_eq!(f.db.acknowledge_node_data(77).expect("ack"), 1);
    assert!(f.db.hm(&hm1()).expect("hm").expect("row").has_data);
    let data = f.db.node_data(78, 10).expect("node data");
    assert_eq!(data.events.len(), 1);
    assert!(data.events[0].text.contains("ADAPTER_DOWN"));
    assert_eq!(f.db.acknowledge_node_data(78).expect("ack"), 1);
    assert!(!f.db.hm(&hm1()).expect("hm").expect("row").has_data);
    assert_eq!(f.db.node_data(79, 10).expect("node data").tag, None);
}

both!(test_group_selections_tag_only_their_group);
fn test_group_selections_tag_only_their_group() {
    let mut f = Fixture::new();
    f.db.set_host_group(HOST_B, "hg2").expect("group");
    f.db.apply(&[
        discovered(vm_n(1), hm1(), mac_n(1, 0), T0),
        discovered(vm_n(2), hm_b(), mac_n(2, 0), T0),
        Transition::HmEvent {
            hm: hm1(),
            state: HmState::Down,
            reason: 0x40,
            text: "EVENT_TYPE=NODE_DOWN".to_string(),
            at: T0,
        },
        Transition::HmEvent {
            hm: hm_b(),
            state: HmState::Down,
            reason: 0x40,
            text: "EVENT_TYPE=NODE_DOWN".to_string(),
            at: T0,
        },
    ])
    .expect("apply");
    let g1 =
        f.db.needs_attention_group("hg1", T0 + 1, NaLimits::default(), 11)
            .expect("NA hg1");
    assert_eq!(g1.vms.iter().map(|v| v.uuid).collect::<Vec<_>>(), [vm_n(1)]);
    assert_eq!(g1.vm_hosts, [HOST_A]);
    assert!(g1.hms.iter().all(|s| s.hm.host == HOST_A) && !g1.hms.is_empty());
    // Only hg1's item was tagged: its ack leaves hg2's.
    assert_eq!(f.db.acknowledge(11).expect("ack"), 1);
    let g2 =
        f.db.needs_attention_group("hg2", T0 + 2, NaLimits::default(), 12)
            .expect("NA hg2");
    assert_eq!(g2.vms.iter().map(|v| v.uuid).collect::<Vec<_>>(), [vm_n(2)]);
    assert_eq!(g2.vm_hosts, [HOST_B]);
    // Node data per group too.
    let n1 = f.db.node_data_group("hg1", 21, 10).expect("node data");
    assert_eq!(n1.events.iter().map(|e| e.hm).collect::<Vec<_>>(), [hm1()]);
    assert_eq!(f.db.acknowledge_node_data(21).expect("ack"), 1);
    let all = f.db.node_data(22, 10).expect("node data");
    assert_eq!(
        all.events.iter().map(|e| e.hm).collect::<Vec<_>>(),
        [hm_b()]
    );
    // An unknown group sees nothing and tags nothing.
    let none =
        f.db.needs_attention_group("nope", T0, NaLimits::default(), 13)
            .expect("NA");
    assert!(none.vms.is_empty() && none.tag.is_none() && none.vm_hosts.is_empty());
}

both!(test_seed_order_and_cap);
fn test_seed_order_and_cap() {
    let mut f = Fixture::new();
    let (a, b, c, d) = (vm_n(1), vm_n(2), vm_n(3), vm_n(4));
    // b, c, d known and acknowledged; then a discovered, b suspended, c rings, d dies.
    f.db.apply(&[
        discovered(b, hm1(), mac_n(2, 0), T0),
        discovered(c, hm1(), mac_n(3, 0), T0),
        discovered(d, hm1(), mac_n(4, 0), T0),
        discovered(d, hm2(), mac_n(4, 1), T0),
    ])
    .expect("apply");
    let first = na(&mut f, T0, 1);
    f.db.acknowledge(1).expect("ack");
    assert_eq!(first.vms.len(), 3);
    f.db.apply(&[
        discovered(a, hm1(), mac_n(1, 0), T0 + 1),
        Transition::Suspended {
            vm: b,
            hm: hm1(),
            at: T0 + 2,
        },
        doorbell(c, hm1(), 0x2, T0 + 3),
        missing(d, hm1(), T0 + 4),
        missing(d, hm2(), T0 + 4),
    ])
    .expect("apply");
    let limits = NaLimits {
        max_items: 2,
        ..NaLimits::default()
    };
    // Short messages, missed heartbeats, state changes, discoveries (seed 004
    // L13117-13124); two items fit, the discovery waits.
    let rows = f.db.needs_attention(T0 + 10, limits, 2).expect("NA");
    assert_eq!(
        rows.vms.iter().map(|v| v.uuid).collect::<Vec<_>>(),
        [c, d, b]
    );
    assert!(rows.more);
    assert_eq!(rows.vms[2].new_state, Some(VmState::Suspended));
    f.db.acknowledge(2).expect("ack");
    let rows = f.db.needs_attention(T0 + 10, limits, 3).expect("NA");
    // d is still missed (never acknowledged), a's discovery now fits.
    assert_eq!(rows.vms.iter().map(|v| v.uuid).collect::<Vec<_>>(), [d, a]);
    assert!(!rows.more);
    // max_items 0 is taken as 1: never a reply that cannot make progress.
    f.db.apply(&[doorbell(c, hm1(), 0x8, T0 + 11)])
        .expect("apply");
    let zero = NaLimits {
        max_items: 0,
        ..NaLimits::default()
    };
    let rows = f.db.needs_attention(T0 + 12, zero, 4).expect("NA");
    assert_eq!(rows.vms[0].items.len(), 1);
    assert!(rows.more, "a's discovery (tag 3, unacknowledged) waits");
}
