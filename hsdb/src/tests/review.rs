//! What a review of the store against the seed found (issue 8 item 1), one test each.

use super::*;
use crate::{
    CommandKind, DiscoveryKind, HeartbeatState, NaLimits, NaRows, PendingKind, Transition,
    VmSettings, VmState,
};

fn manage(f: &mut Fixture, vm: Uuid) {
    f.db.set_vm(
        &vm,
        &VmSettings {
            managed: Some(true),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("set_vm");
}

fn na(f: &mut Fixture, now: i64, tag: i64) -> NaRows {
    f.db.needs_attention(now, NaLimits::default(), tag)
        .expect("needs attention")
}

fn ack_all(f: &mut Fixture, tag: i64) {
    na(f, T0, tag);
    f.db.acknowledge(tag).expect("ack");
}

fn missing(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Missing { vm, hm, at }
}

fn suspended(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Suspended { vm, hm, at }
}

/// The managed vm1 heart-beating through both monitors of host A, all acknowledged.
fn on_host_a(f: &mut Fixture) {
    manage(f, vm1());
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
    ])
    .expect("apply");
    ack_all(f, 1);
}

both!(test_first_discovery_reads_unknown_unmanaged);
fn test_first_discovery_reads_unknown_unmanaged() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let rows = na(&mut f, T0 + 1, 1);
    let vm = &rows.vms[0];
    // Seed 004 L7533-7564: <VM state="UNKNOWN"><discoveryInfo type='UNMANAGED'/>.
    assert_eq!(
        (vm.state, vm.discovery, vm.state_chg, vm.managed),
        (
            VmState::Unknown,
            Some(DiscoveryKind::Unmanaged),
            false,
            false
        )
    );
    // A VM the controller added first is STARTED by its handshake: a state change.
    manage(&mut f, vm_n(2));
    f.db.apply(&[discovered(vm_n(2), hm1(), mac_n(2, 0), T0 + 2)])
        .expect("apply");
    let rows = na(&mut f, T0 + 3, 2);
    let vm = rows.vms.iter().find(|v| v.uuid == vm_n(2)).expect("vm 2");
    assert_eq!(
        (vm.state, vm.state_chg, vm.old_state, vm.new_state),
        (
            VmState::Started,
            true,
            Some(VmState::Added),
            Some(VmState::Started)
        )
    );
}

both!(test_late_suspended_from_the_old_host_does_not_move_the_vm_back);
fn test_late_suspended_from_the_old_host_does_not_move_the_vm_back() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    // Live migration to host B.
    f.db.apply(&[discovered(vm1(), hm_b(), mac_n(1, 0), T0 + 10)])
        .expect("move");
    // The old host's monitors, before they forgot it: a SHDN, a miss, heartbeats.
    let late =
        f.db.apply(&[
            suspended(vm1(), hm1(), T0 + 11),
            missing(vm1(), hm2(), T0 + 12),
            Transition::Detected {
                vm: vm1(),
                hm: hm1(),
                at: T0 + 13,
            },
        ])
        .expect("apply");
    assert_eq!(late.elsewhere_ignored, 3);
    let vm = f.db.vm(&vm1()).expect("vm").expect("row");
    assert_eq!(
        (vm.current_host, vm.state),
        (Some(HOST_B), VmState::Started)
    );
    assert_eq!(
        f.db.vm_hm(&vm1(), &hm1()).expect("row"),
        None,
        "not re-created"
    );
    assert_eq!(f.db.vm_hm(&vm1(), &hm2()).expect("row"), None);
    // Only the move is pending: no state change from the late SHDN.
    let kinds: Vec<PendingKind> =
        f.db.pending()
            .expect("pending")
            .iter()
            .map(|p| p.kind)
            .collect();
    assert_eq!(kinds, [PendingKind::Discovered]);
}

both!(test_move_retires_the_old_rows_and_tells_the_old_monitors_to_forget);
fn test_move_retires_the_old_rows_and_tells_the_old_monitors_to_forget() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[missing(vm1(), hm1(), T0 + 5)])
        .expect("a miss on the way out");
    let applied =
        f.db.apply(&[discovered(vm1(), hm_b(), mac_n(1, 0), T0 + 10)])
            .expect("move");
    assert_eq!((applied.vm_hm_retired, applied.commands_queued), (2, 2));
    for hm in [hm1(), hm2()] {
        assert_eq!(f.db.vm_hm_counts(&hm).expect("counts").total(), 0, "{hm}");
        let commands = f.db.commands_for(&hm, 0, 10).expect("commands");
        assert_eq!(
            commands
                .iter()
                .map(|c| (c.kind, c.vm, c.created_ms))
                .collect::<Vec<_>>(),
            [(CommandKind::ForgetVm, vm1(), T0 + 10)]
        );
    }
    assert_eq!(f.db.commands_for(&hm_b(), 0, 10).expect("commands"), []);
    // NeedsAttention sees it on B only: host A has no monitored VM left.
    let tag = na(&mut f, T0 + 11, 2).tag.expect("the move");
    f.db.acknowledge(tag).expect("ack");
    let rows = na(&mut f, T0 + 12, 3);
    assert_eq!(rows.vm_hosts, [HOST_B]);
    assert!(rows.vms.is_empty(), "{rows:?}");
    // Its one monitor on B misses it: reported, from that miss (the old host's miss
    // is gone with its row).
    f.db.apply(&[missing(vm1(), hm_b(), T0 + 20_000)])
        .expect("apply");
    let rows = na(&mut f, T0 + 30_000, 4);
    assert_eq!(rows.vms.len(), 1);
    assert_eq!(rows.vms[0].missed_ms, Some(10_000));
    assert_eq!(rows.vms[0].missed_hm_entry, None);
}

both!(test_deleting_a_monitor_keeps_the_vm_items_it_wrote);
fn test_deleting_a_monitor_keeps_the_vm_items_it_wrote() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    // With foreign keys on (the store's own connection has them).
    f.exec(
        "DELETE FROM hm WHERE uuid = ?1",
        crate::db::params![hm1().to_string()],
    );
    let pending = f.db.pending().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].kind, pending[0].hm),
        (PendingKind::Discovered, Some(hm1()))
    );
    // And it is still reported.
    assert_eq!(na(&mut f, T0, 1).vms.len(), 1);
}

both!(test_pending_ids_are_never_reused);
fn test_pending_ids_are_never_reused() {
    let mut f = Fixture::new();
    f.db.apply(&[
        discovered(vm_n(1), hm1(), mac_n(1, 0), T0),
        discovered(vm_n(2), hm1(), mac_n(2, 0), T0),
    ])
    .expect("apply");
    let before: Vec<i64> =
        f.db.pending()
            .expect("pending")
            .iter()
            .map(|p| p.id)
            .collect();
    ack_all(&mut f, 1);
    assert!(f.db.pending().expect("pending").is_empty());
    f.db.apply(&[discovered(vm_n(3), hm1(), mac_n(3, 0), T0 + 1)])
        .expect("apply");
    let after = f.db.pending().expect("pending")[0].id;
    assert!(
        before.iter().all(|&id| id < after),
        "{before:?} then {after}"
    );
}

both!(test_suspension_ended_through_the_other_monitor_does_not_block_a_miss);
fn test_suspension_ended_through_the_other_monitor_does_not_block_a_miss() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    // SHDN to both monitors; the agent comes back through hm2 only (hm1's path down).
    f.db.apply(&[
        suspended(vm1(), hm1(), T0 + 10_000),
        suspended(vm1(), hm2(), T0 + 10_000),
    ])
    .expect("apply");
    let back =
        f.db.apply(&[discovered(vm1(), hm2(), mac_n(1, 1), T0 + 20_000)])
            .expect("apply");
    assert_eq!(back.suspensions_ended, 1);
    let row = f.db.vm_hm(&vm1(), &hm1()).expect("row").expect("hm1 row");
    assert_eq!(
        (row.last_state, row.hb_missed_ms),
        (HeartbeatState::Missing, Some(T0 + 20_000))
    );
    assert_eq!(
        f.db.vm(&vm1()).expect("vm").expect("row").state,
        VmState::Started
    );
    // Alive through hm2: not reported (a single-path miss, TC-9).
    ack_all(&mut f, 2);
    assert!(na(&mut f, T0 + 30_000, 3).vms.is_empty());
    // Then it dies: hm2 misses it. Reported, counted from hm1's miss (the earliest).
    f.db.apply(&[missing(vm1(), hm2(), T0 + 60_000)])
        .expect("apply");
    let rows = na(&mut f, T0 + 70_000, 4);
    assert_eq!(rows.vms.len(), 1, "{rows:?}");
    assert_eq!(rows.vms[0].missed_ms, Some(50_000));
    // hm1's own Missing for it is no longer ignored either.
    let late =
        f.db.apply(&[missing(vm1(), hm1(), T0 + 70_001)])
            .expect("apply");
    assert_eq!(late.missing_ignored, 0);
}

both!(test_heartbeats_after_a_shutdown_end_the_suspension);
fn test_heartbeats_after_a_shutdown_end_the_suspension() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[
        suspended(vm1(), hm1(), T0 + 10_000),
        suspended(vm1(), hm2(), T0 + 10_000),
    ])
    .expect("apply");
    ack_all(&mut f, 2);
    f.db.apply(&[Transition::Detected {
        vm: vm1(),
        hm: hm1(),
        at: T0 + 20_000,
    }])
    .expect("apply");
    assert_eq!(
        f.db.vm(&vm1()).expect("vm").expect("row").state,
        VmState::Started
    );
    assert_eq!(
        f.db.vm_hm(&vm1(), &hm2())
            .expect("row")
            .map(|r| r.last_state),
        Some(HeartbeatState::Missing)
    );
    let pending = f.db.pending().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].describe(), "old=SUSPENDED:new=STARTED");
}

both!(test_item_after_the_tag_is_not_coalesced_into_it_and_survives_the_ack);
fn test_item_after_the_tag_is_not_coalesced_into_it_and_survives_the_ack() {
    let mut f = Fixture::new();
    manage(&mut f, vm1());
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let rows = na(&mut f, T0 + 1, 7);
    assert_eq!(rows.vms[0].new_state, Some(VmState::Started));
    // A SHDN between the reply and its ack: a new item, not merged into the reported one.
    f.db.apply(&[suspended(vm1(), hm1(), T0 + 2)])
        .expect("apply");
    assert_eq!(f.db.acknowledge(7).expect("ack"), 1);
    let left = f.db.pending().expect("pending");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].describe(), "old=STARTED:new=SUSPENDED");
    assert_eq!(left[0].tag, None);
    let rows = na(&mut f, T0 + 3, 8);
    assert_eq!(rows.vms[0].new_state, Some(VmState::Suspended));
}

both!(test_unreported_items_of_a_vm_coalesce);
fn test_unreported_items_of_a_vm_coalesce() {
    // No controller for days: a VM flapping 1,000 times leaves a bounded queue, first
    // `old`, last `new`, doorbells OR-ed.
    let mut f = Fixture::new();
    on_host_a(&mut f);
    let mut batch = Vec::new();
    for i in 0..1_000 {
        let at = T0 + 1_000 * (i + 1);
        batch.push(suspended(vm1(), hm1(), at));
        batch.push(discovered(vm1(), hm1(), mac_n(1, 0), at + 500));
        batch.push(Transition::Doorbell {
            vm: vm1(),
            hm: hm1(),
            vector: 1 << (i % 8),
            at,
        });
    }
    let applied = f.db.apply(&batch).expect("apply");
    assert_eq!(applied.pending_added, 2);
    let pending = f.db.pending().expect("pending");
    assert_eq!(pending.len(), 2, "{pending:?}");
    let change = pending
        .iter()
        .find(|p| p.kind == PendingKind::StateChange)
        .expect("state change");
    assert_eq!(change.describe(), "old=STARTED:new=STARTED");
    assert_eq!(change.created_ms, T0 + 1_000);
    assert_eq!(change.updated_ms, T0 + 1_000 * 1_000 + 500);
    let bell = pending
        .iter()
        .find(|p| p.kind == PendingKind::Doorbell)
        .expect("doorbell");
    assert_eq!(bell.code, 0xff);
}
