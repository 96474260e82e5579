//! Schema v5: a monitor's "monitoring stopped by the controller" (`StopWatching`,
//! `StartWatching`), `Forget`, several commands completed in one transaction, and the
//! NeedsAttention peek that tags nothing.

use std::sync::atomic::Ordering;

use super::*;
use crate::{
    CommandDone, CommandKind, Error, HeartbeatState, NaLimits, NaRows, PendingKind, VmSettings,
    VmState,
};

fn missing(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Missing { vm, hm, at }
}

fn stop(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::StopWatching { vm, hm, at }
}

fn start(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::StartWatching { vm, hm, at }
}

fn na(f: &mut Fixture, now: i64, tag: i64) -> NaRows {
    f.db.needs_attention(now, NaLimits::default(), tag)
        .expect("needs attention")
}

fn state(f: &Fixture, vm: Uuid, hm: Uuid) -> (HeartbeatState, Option<i64>) {
    let row = f.db.vm_hm(&vm, &hm).expect("read").expect("row");
    (row.last_state, row.hb_missed_ms)
}

/// The managed vm1 heart-beating through both monitors of host A, all acknowledged.
fn on_host_a(f: &mut Fixture) {
    f.db.set_vm(
        &vm1(),
        &VmSettings {
            managed: Some(true),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("set_vm");
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
    ])
    .expect("apply");
    na(f, T0, 1);
    f.db.acknowledge(1).expect("ack");
    assert!(f.db.pending().expect("pending").is_empty());
}

both!(test_stop_watching_marks_the_row_and_nothing_else);
fn test_stop_watching_marks_the_row_and_nothing_else() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    let applied = f.db.apply(&[stop(vm1(), hm1(), T0 + 10)]).expect("stop");
    assert_eq!((applied.stop_watching, applied.watching_stopped), (1, 1));
    let row = f.db.vm_hm(&vm1(), &hm1()).expect("read").expect("row");
    assert_eq!(
        (row.last_state, row.hb_missed_ms, row.updated_ms, row.mac),
        (HeartbeatState::Stopped, None, T0 + 10, Some(mac_n(1, 0)))
    );
    // The VM's own state, the other monitor's row and the queue are untouched.
    let vm = f.db.vm(&vm1()).expect("vm").expect("row");
    assert_eq!(vm.state, VmState::Started);
    assert_eq!(state(&f, vm1(), hm2()), (HeartbeatState::Detected, None));
    assert!(f.db.pending().expect("pending").is_empty());
    let counts = f.db.vm_hm_counts(&hm1()).expect("counts");
    assert_eq!((counts.stopped, counts.detected, counts.total()), (1, 0, 1));
    // Stopping again changes nothing, not even the time.
    let again = f.db.apply(&[stop(vm1(), hm1(), T0 + 20)]).expect("stop");
    assert_eq!((again.stop_watching, again.watching_stopped), (1, 0));
    assert_eq!(
        f.db.vm_hm(&vm1(), &hm1())
            .expect("read")
            .expect("row")
            .updated_ms,
        T0 + 10
    );
}

both!(test_stop_ends_a_miss_and_a_stopped_row_is_never_missing);
fn test_stop_ends_a_miss_and_a_stopped_row_is_never_missing() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[missing(vm1(), hm1(), T0 + 5)]).expect("miss");
    assert_eq!(
        state(&f, vm1(), hm1()),
        (HeartbeatState::Missing, Some(T0 + 5))
    );
    f.db.apply(&[stop(vm1(), hm1(), T0 + 10)]).expect("stop");
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
    // A miss timer that fires after the stop (or a restarted monitor's verdict) is
    // ignored, as for a suspended agent.
    let applied = f.db.apply(&[missing(vm1(), hm1(), T0 + 20)]).expect("miss");
    assert_eq!((applied.missing, applied.missing_ignored), (1, 1));
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
}

both!(test_stopped_row_outlives_what_the_monitor_may_still_write);
fn test_stopped_row_outlives_what_the_monitor_may_still_write() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[stop(vm1(), hm1(), T0 + 10)]).expect("stop");
    // The agent shuts down gracefully, heartbeats and re-pairs: the VM's state follows,
    // the row stays STOPPED (only a start resumes it).
    f.db.apply(&[Transition::Suspended {
        vm: vm1(),
        hm: hm1(),
        at: T0 + 11,
    }])
    .expect("suspend");
    assert_eq!(
        f.db.vm(&vm1()).expect("vm").expect("row").state,
        VmState::Suspended
    );
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
    f.db.apply(&[Transition::Detected {
        vm: vm1(),
        hm: hm1(),
        at: T0 + 12,
    }])
    .expect("detected");
    assert_eq!(
        f.db.vm(&vm1()).expect("vm").expect("row").state,
        VmState::Started
    );
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0 + 13)])
        .expect("discovered");
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
}

both!(test_end_of_a_suspension_never_turns_a_stopped_row_into_a_miss);
fn test_end_of_a_suspension_never_turns_a_stopped_row_into_a_miss() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    // The agent shuts down (both rows SUSPENDED); the controller stops hm1.
    f.db.apply(&[
        Transition::Suspended {
            vm: vm1(),
            hm: hm1(),
            at: T0 + 1,
        },
        Transition::Suspended {
            vm: vm1(),
            hm: hm2(),
            at: T0 + 1,
        },
        stop(vm1(), hm1(), T0 + 2),
    ])
    .expect("apply");
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
    // The agent comes back through hm2 only: a SUSPENDED row on hm1 would turn MISSING
    // (docs/hsdb.md §3); the STOPPED one stays.
    let applied =
        f.db.apply(&[Transition::Detected {
            vm: vm1(),
            hm: hm2(),
            at: T0 + 3,
        }])
        .expect("detected");
    assert_eq!(applied.suspensions_ended, 0);
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
    // The same from the other side: stopped first, then a SHDN through hm1, then hm2.
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[
        stop(vm1(), hm1(), T0 + 1),
        Transition::Suspended {
            vm: vm1(),
            hm: hm1(),
            at: T0 + 2,
        },
        discovered(vm1(), hm2(), mac_n(1, 1), T0 + 3),
    ])
    .expect("apply");
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Stopped, None));
}

both!(test_start_watching_resumes_only_a_stopped_row);
fn test_start_watching_resumes_only_a_stopped_row() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[missing(vm1(), hm2(), T0 + 5), stop(vm1(), hm1(), T0 + 6)])
        .expect("apply");
    let applied =
        f.db.apply(&[start(vm1(), hm1(), T0 + 20), start(vm1(), hm2(), T0 + 20)])
            .expect("start");
    assert_eq!((applied.start_watching, applied.watching_started), (2, 1));
    // Watched again, nothing missed yet: a restarted monitor re-watches it (DETECTED).
    let row = f.db.vm_hm(&vm1(), &hm1()).expect("read").expect("row");
    assert_eq!(
        (row.last_state, row.hb_missed_ms, row.updated_ms),
        (HeartbeatState::Detected, None, T0 + 20)
    );
    // A start never clears a miss.
    assert_eq!(
        state(&f, vm1(), hm2()),
        (HeartbeatState::Missing, Some(T0 + 5))
    );
    // Once watched, a miss counts from its own time.
    f.db.apply(&[missing(vm1(), hm1(), T0 + 30)]).expect("miss");
    assert_eq!(
        state(&f, vm1(), hm1()),
        (HeartbeatState::Missing, Some(T0 + 30))
    );
    assert!(f.db.pending().expect("pending").is_empty(), "no item");
}

both!(test_forget_deletes_one_row_of_one_monitor);
fn test_forget_deletes_one_row_of_one_monitor() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    let applied =
        f.db.apply(&[Transition::Forget {
            vm: vm1(),
            hm: hm1(),
            at: T0 + 10,
        }])
        .expect("forget");
    assert_eq!((applied.forget, applied.vm_hm_forgotten), (1, 1));
    assert_eq!(f.db.vm_hm(&vm1(), &hm1()).expect("read"), None);
    assert_eq!(state(&f, vm1(), hm2()), (HeartbeatState::Detected, None));
    assert_eq!(
        f.db.vm(&vm1()).expect("vm").expect("row").state,
        VmState::Started
    );
    assert!(f.db.pending().expect("pending").is_empty());
    // Forgetting again (a move deleted it first, or a repeated command): nothing.
    let again =
        f.db.apply(&[Transition::Forget {
            vm: vm1(),
            hm: hm1(),
            at: T0 + 11,
        }])
        .expect("forget");
    assert_eq!((again.forget, again.vm_hm_forgotten), (1, 0));
    // A VM still on this host's network pairs again: discovered as any other.
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0 + 12)])
        .expect("discovered");
    assert_eq!(state(&f, vm1(), hm1()), (HeartbeatState::Detected, None));
}

both!(test_a_move_retires_a_stopped_row_too);
fn test_a_move_retires_a_stopped_row_too() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    f.db.apply(&[stop(vm1(), hm1(), T0 + 1), stop(vm1(), hm2(), T0 + 1)])
        .expect("stop");
    // Restarted on host B by the controller: discovered there.
    let applied =
        f.db.apply(&[discovered(vm1(), hm_b(), mac_n(1, 2), T0 + 2)])
            .expect("move");
    assert_eq!((applied.vm_hm_retired, applied.commands_queued), (2, 2));
    assert_eq!(f.db.vm_hms(&vm1()).expect("rows").len(), 1);
    assert_eq!(
        f.db.commands_for(&hm1(), 0, 10).expect("commands")[0].kind,
        CommandKind::ForgetVm
    );
}

both!(test_stop_start_forget_never_create_and_need_a_registered_monitor);
fn test_stop_start_forget_never_create_and_need_a_registered_monitor() {
    let mut f = Fixture::new();
    let applied =
        f.db.apply(&[
            stop(vm1(), hm1(), T0),
            start(vm1(), hm1(), T0),
            Transition::Forget {
                vm: vm1(),
                hm: hm1(),
                at: T0,
            },
        ])
        .expect("apply");
    assert_eq!(applied.total(), 3);
    assert_eq!(
        (
            applied.watching_stopped,
            applied.watching_started,
            applied.vm_hm_forgotten,
            applied.vms_created
        ),
        (0, 0, 0, 0)
    );
    assert!(f.db.vms().expect("vms").is_empty());
    assert!(f.db.pending().expect("pending").is_empty());
    let stranger = vm_n(99);
    for t in [
        stop(vm1(), stranger, T0),
        start(vm1(), stranger, T0),
        Transition::Forget {
            vm: vm1(),
            hm: stranger,
            at: T0,
        },
    ] {
        let err = f.db.apply(&[t]).expect_err("unregistered monitor");
        assert!(
            matches!(err, Error::UnknownHm { index: 0, hm } if hm == stranger),
            "{err}"
        );
    }
}

both!(test_needs_attention_counts_stopped_rows_neither_way);
fn test_needs_attention_counts_stopped_rows_neither_way() {
    let mut f = Fixture::new();
    on_host_a(&mut f);
    let (b, c) = (vm_n(2), vm_n(3));
    f.db.apply(&[
        discovered(b, hm1(), mac_n(2, 0), T0),
        discovered(b, hm2(), mac_n(2, 1), T0),
        discovered(c, hm1(), mac_n(3, 0), T0),
        discovered(c, hm2(), mac_n(3, 1), T0),
    ])
    .expect("apply");
    na(&mut f, T0, 2);
    f.db.acknowledge(2).expect("ack");
    // vm1: missed on both, then both monitors told to stop (it is being restarted):
    // not reported. b: hm1 stopped, hm2 misses it: reported, counted from hm2's miss.
    // c: hm1 stopped, hm2 still hears it: not reported.
    f.db.apply(&[
        missing(vm1(), hm1(), T0 + 1_000),
        missing(vm1(), hm2(), T0 + 2_000),
        missing(b, hm1(), T0 + 1_000),
        missing(b, hm2(), T0 + 3_000),
    ])
    .expect("misses");
    let before = na(&mut f, T0 + 10_000, 3);
    assert_eq!(
        before
            .vms
            .iter()
            .map(|v| (v.uuid, v.missed_ms))
            .collect::<Vec<_>>(),
        [(b, Some(9_000)), (vm1(), Some(9_000))],
        "both missed on every monitor before the stops"
    );
    f.db.apply(&[
        stop(vm1(), hm1(), T0 + 11_000),
        stop(vm1(), hm2(), T0 + 11_000),
        stop(b, hm1(), T0 + 11_000),
        stop(c, hm1(), T0 + 11_000),
    ])
    .expect("stops");
    let rows = na(&mut f, T0 + 20_000, 4);
    assert_eq!(
        rows.vms
            .iter()
            .map(|v| (v.uuid, v.missed_ms, v.missed_hm_entry))
            .collect::<Vec<_>>(),
        [(b, Some(17_000), None)],
        "{rows:?}"
    );
    // The host still has monitored VMs: its (empty for vm1) vmList is sent.
    assert_eq!(rows.vm_hosts, [HOST_A]);
    // Restarted and started again: vm1 is watched, and missed again from the new miss.
    f.db.apply(&[
        start(vm1(), hm1(), T0 + 30_000),
        start(vm1(), hm2(), T0 + 30_000),
    ])
    .expect("starts");
    assert!(
        na(&mut f, T0 + 31_000, 5)
            .vms
            .iter()
            .all(|v| v.uuid != vm1()),
        "started, nothing missed yet"
    );
    f.db.apply(&[
        missing(vm1(), hm1(), T0 + 33_000),
        missing(vm1(), hm2(), T0 + 34_000),
    ])
    .expect("misses");
    let rows = na(&mut f, T0 + 40_000, 6);
    let again = rows.vms.iter().find(|v| v.uuid == vm1()).expect("vm1");
    assert_eq!(again.missed_ms, Some(7_000));
}

both!(test_several_commands_completed_in_one_transaction);
fn test_several_commands_completed_in_one_transaction() {
    let mut f = Fixture::new();
    let ids: Vec<i64> = (0..3u32)
        .map(|i| {
            f.db.enqueue_command(&hm1(), CommandKind::StopMonitoring, &vm_n(i), T0)
                .expect("enqueue")
        })
        .collect();
    assert!(
        f.db.complete_command(ids[0], "STOPPED: first", T0 + 1)
            .expect("one")
    );
    let commits = f.count_commits();
    let done: Vec<CommandDone> = ids
        .iter()
        .chain([&9_999])
        .map(|&id| CommandDone {
            id,
            result: format!("STOPPED: {id}"),
            at: T0 + 2,
        })
        .collect();
    // ids[0] was completed already (its first result stays), 9999 does not exist.
    assert_eq!(f.db.complete_commands(&done).expect("complete"), 2);
    assert_eq!(commits.load(Ordering::SeqCst), 1, "one transaction");
    let results: Vec<(Option<i64>, Option<String>)> = ids
        .iter()
        .map(|&id| {
            let c = f.db.command(id).expect("read").expect("row");
            (c.done_ms, c.result)
        })
        .collect();
    assert_eq!(
        results,
        [
            (Some(T0 + 1), Some("STOPPED: first".to_string())),
            (Some(T0 + 2), Some(format!("STOPPED: {}", ids[1]))),
            (Some(T0 + 2), Some(format!("STOPPED: {}", ids[2]))),
        ]
    );
    assert!(f.db.commands_for(&hm1(), 0, 10).expect("open").is_empty());
    assert_eq!(f.db.complete_commands(&[]).expect("nothing"), 0);
    assert_eq!(commits.load(Ordering::SeqCst), 1, "nothing, no transaction");
}

/// A state with every kind of NeedsAttention content in groups hg1 (host A) and hg2
/// (host B): missed VMs, a single-path miss, a doorbell, state changes, discoveries, a
/// move, a monitor DOWN.
fn busy(f: &mut Fixture) {
    f.db.set_host_group(HOST_B, "hg2").expect("group");
    on_host_a(f);
    f.db.apply(&[
        discovered(vm_n(2), hm1(), mac_n(2, 0), T0),
        discovered(vm_n(2), hm2(), mac_n(2, 1), T0),
        discovered(vm_n(3), hm_b(), mac_n(3, 0), T0),
        missing(vm1(), hm1(), T0 + 1_000),
        missing(vm1(), hm2(), T0 + 4_000),
        missing(vm_n(2), hm1(), T0 + 1_000),
        Transition::Doorbell {
            vm: vm_n(2),
            hm: hm2(),
            vector: 0x28,
            at: T0 + 2_000,
        },
        Transition::Suspended {
            vm: vm_n(3),
            hm: hm_b(),
            at: T0 + 3_000,
        },
        discovered(vm_n(4), hm1(), mac_n(4, 0), T0 + 3_500),
        discovered(vm_n(4), hm_b(), mac_n(4, 2), T0 + 3_600),
        Transition::HmEvent {
            hm: hm_b(),
            state: crate::HmState::Down,
            reason: 0x40,
            text: "EVENT_TYPE=NODE_DOWN".to_string(),
            at: T0 + 3_700,
        },
    ])
    .expect("apply");
}

both!(test_peek_tags_nothing_and_is_what_a_consuming_call_returns);
fn test_peek_tags_nothing_and_is_what_a_consuming_call_returns() {
    let limits = [
        NaLimits::default(),
        NaLimits {
            max_items: 2,
            hm_silent_after_ms: 1_000,
        },
    ];
    for limits in limits {
        for group in [None, Some("hg1"), Some("hg2"), Some("nope")] {
            let mut f = Fixture::new();
            busy(&mut f);
            // Once with every item untagged, once after a reply whose ack was lost.
            for round in 0..2 {
                let now = T0 + 10_000 + round;
                let before = f.db.pending().expect("pending");
                let ro = f.reopen_read_only(&Options::default());
                let peek = ro.needs_attention_peek(now, limits, group).expect("peek");
                assert_eq!(
                    f.db.pending().expect("pending"),
                    before,
                    "a peek tags nothing"
                );
                assert_eq!(peek.tag, None);
                let tag = 50 + round;
                let mut consumed = match group {
                    Some(g) => f.db.needs_attention_group(g, now, limits, tag),
                    None => f.db.needs_attention(now, limits, tag),
                }
                .expect("NA");
                let items: usize = peek.vms.iter().map(|v| v.items.len()).sum();
                assert_eq!(
                    consumed.tag,
                    (items > 0).then_some(tag),
                    "{group:?} {limits:?}"
                );
                consumed.tag = None;
                assert_eq!(peek, consumed, "{group:?} {limits:?} round {round}");
            }
            // And the content is not empty where there is something to see.
            if group.is_none() {
                let ro = f.reopen_read_only(&Options::default());
                let peek = ro
                    .needs_attention_peek(T0 + 20_000, limits, None)
                    .expect("peek");
                assert!(peek.vms.iter().any(|v| v.missed_ms.is_some()), "{peek:?}");
                assert!(!peek.hms.is_empty());
                assert!(
                    peek.vms.iter().any(|v| !v.items.is_empty()),
                    "items waiting: {peek:?}"
                );
            }
        }
    }
    // Pending kinds the peek covers: all three VM kinds were in the fixture.
    let mut f = Fixture::new();
    busy(&mut f);
    let kinds: std::collections::BTreeSet<&str> =
        f.db.pending()
            .expect("pending")
            .iter()
            .filter(|p| p.vm.is_some())
            .map(|p| p.kind.as_str())
            .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            PendingKind::Discovered.as_str(),
            PendingKind::Doorbell.as_str(),
            PendingKind::StateChange.as_str()
        ]
    );
}
