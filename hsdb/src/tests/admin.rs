//! Administrative writes, parameters, relocations, commands, events, retiring and
//! pruning.

use super::*;
use crate::{
    CommandKind, DetectionSpeed, Error, EventPrune, ParamScope, PendingKind, Priority,
    RelocationKind, Transition, VmSettings, VmState,
};

both!(test_set_vm_partial_settings);
fn test_set_vm_partial_settings() {
    let mut f = Fixture::new();
    // A VM the controller adds before any monitor saw it.
    let created =
        f.db.set_vm(
            &vm1(),
            &VmSettings {
                managed: Some(true),
                name: Some("rt13001".to_string()),
                home_host: Some(HOST_A),
                ..VmSettings::default()
            },
            T0,
        )
        .expect("set_vm");
    assert!(created);
    let vm = f.db.vm(&vm1()).expect("vm").expect("row");
    assert_eq!(
        (
            vm.state,
            vm.managed,
            vm.name.as_str(),
            vm.home_host,
            vm.current_host
        ),
        (VmState::Added, true, "rt13001", Some(HOST_A), None)
    );
    // Only what is Some changes.
    let created =
        f.db.set_vm(
            &vm1(),
            &VmSettings {
                priority: Some(Priority::High),
                detection_speed: Some(DetectionSpeed::Fast),
                cpu_milli: Some(2_500),
                memory_mb: Some(8_192),
                ha_monitor: Some(false),
                ..VmSettings::default()
            },
            T0 + 1,
        )
        .expect("set_vm");
    assert!(!created);
    let vm = f.db.vm(&vm1()).expect("vm").expect("row");
    assert_eq!(
        (
            vm.managed,
            vm.name.as_str(),
            vm.priority,
            vm.detection_speed,
            vm.cpu_milli,
            vm.memory_mb,
            vm.ha_monitor,
            vm.updated_ms
        ),
        (
            true,
            "rt13001",
            Priority::High,
            DetectionSpeed::Fast,
            2_500,
            8_192,
            false,
            T0 + 1
        )
    );
    let err =
        f.db.set_vm(
            &vm1(),
            &VmSettings {
                home_host: Some(HostId(999)),
                ..VmSettings::default()
            },
            T0 + 2,
        )
        .expect_err("no such host");
    assert!(matches!(err, Error::NotFound { what: "host", .. }), "{err}");
    assert!(err.to_string().contains("999"), "{err}");
}

both!(test_host_capacity_and_group);
fn test_host_capacity_and_group() {
    let mut f = Fixture::new();
    f.db.set_host_capacity(HOST_B, 64_000, 2_048)
        .expect("capacity");
    f.db.set_host_group(HOST_B, "hg2").expect("group");
    let b = f.db.host(HOST_B).expect("host").expect("row");
    assert_eq!(
        (b.cpu_milli, b.memory_mb, b.host_group.as_str()),
        (64_000, 2_048, "hg2")
    );
    let err = f.db.set_host_group(HostId(7), "x").expect_err("unknown");
    assert!(matches!(err, Error::NotFound { what: "host", .. }));
}

both!(test_params_by_scope);
fn test_params_by_scope() {
    let mut f = Fixture::new();
    let scopes = [
        ParamScope::System,
        ParamScope::HostGroup("hg1".to_string()),
        ParamScope::Host(HOST_A),
        ParamScope::Vm(vm1()),
    ];
    for (i, scope) in scopes.iter().enumerate() {
        f.db.set_param(scope, "host_failure_detection_time", &format!("{}", 90 + i))
            .expect("set");
    }
    f.db.set_param(&ParamScope::System, "host_failure_detection_time", "120")
        .expect("replace");
    assert_eq!(
        f.db.param(&ParamScope::System, "host_failure_detection_time")
            .expect("param")
            .as_deref(),
        Some("120")
    );
    let all = f.db.params().expect("params");
    assert_eq!(all.len(), 4);
    for scope in &scopes {
        assert!(all.iter().any(|p| &p.scope == scope), "{scope}");
    }
    assert!(
        f.db.unset_param(&ParamScope::Host(HOST_A), "host_failure_detection_time")
            .expect("unset")
    );
    assert!(
        !f.db
            .unset_param(&ParamScope::Host(HOST_A), "host_failure_detection_time")
            .expect("unset")
    );
    assert_eq!(f.db.params().expect("params").len(), 3);
}

both!(test_relocation_rows_and_phases);
fn test_relocation_rows_and_phases() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let id =
        f.db.relocation_begin(&vm1(), Some(HOST_A), None, RelocationKind::Relocate, T0 + 1)
            .expect("begin");
    f.db.relocation_target(id, HOST_B).expect("target");
    f.db.relocation_phase(id, "STOP", T0 + 2).expect("phase");
    f.db.relocation_phase(id, "START", T0 + 3).expect("phase");
    f.db.relocation_end(id, "SUCCESS", T0 + 4).expect("end");
    let second =
        f.db.relocation_begin(
            &vm1(),
            Some(HOST_B),
            Some(HOST_B),
            RelocationKind::Restart,
            T0 + 5,
        )
        .expect("begin");
    assert!(second > id);
    let rows = f.db.relocations(Some(&vm1()), 10).expect("rows");
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [second, id]);
    let r = &rows[1];
    assert_eq!(
        (
            r.kind,
            r.from_host,
            r.to_host,
            r.phase.as_str(),
            r.phase_ms,
            r.ended_ms,
            r.result.as_deref()
        ),
        (
            RelocationKind::Relocate,
            Some(HOST_A),
            Some(HOST_B),
            "START",
            Some(T0 + 3),
            Some(T0 + 4),
            Some("SUCCESS")
        )
    );
    let phases: Vec<String> =
        f.db.relocation_steps(id)
            .expect("steps")
            .into_iter()
            .map(|s| format!("{}@{}", s.phase, s.at_ms - T0))
            .collect();
    assert_eq!(phases, ["BEGIN@1", "STOP@2", "START@3"]);
    assert_eq!(f.db.relocations(None, 1).expect("rows").len(), 1);
    assert_eq!(
        f.db.relocation(second).expect("row").map(|r| r.kind),
        Some(RelocationKind::Restart)
    );
    let err =
        f.db.relocation_begin(&vm_n(5), None, None, RelocationKind::Restart, T0)
            .expect_err("unknown vm");
    assert!(matches!(err, Error::NotFound { what: "vm", .. }), "{err}");
    assert!(matches!(
        f.db.relocation_phase(9_999, "X", T0),
        Err(Error::NotFound {
            what: "relocation",
            ..
        })
    ));
}

both!(test_command_queue);
fn test_command_queue() {
    let mut f = Fixture::new();
    let stop =
        f.db.enqueue_command(&hm1(), CommandKind::StopMonitoring, &vm1(), T0)
            .expect("enqueue");
    let start =
        f.db.enqueue_command(&hm1(), CommandKind::StartMonitoring, &vm1(), T0 + 1)
            .expect("enqueue");
    f.db.enqueue_command(&hm2(), CommandKind::ForgetVm, &vm1(), T0 + 2)
        .expect("enqueue");
    let open = f.db.commands_for(&hm1(), 0, 100).expect("commands");
    assert_eq!(
        open.iter().map(|c| (c.id, c.kind)).collect::<Vec<_>>(),
        [
            (stop, CommandKind::StopMonitoring),
            (start, CommandKind::StartMonitoring)
        ]
    );
    assert_eq!(
        f.db.commands_for(&hm1(), stop, 100).expect("after").len(),
        1
    );
    assert_eq!(f.db.commands_for(&hm1(), 0, 1).expect("limit").len(), 1);
    assert!(
        f.db.complete_command(stop, "OK", T0 + 10)
            .expect("complete")
    );
    assert!(
        !f.db
            .complete_command(stop, "again", T0 + 11)
            .expect("twice")
    );
    let done = f.db.command(stop).expect("command").expect("row");
    assert_eq!(
        (done.done_ms, done.result.as_deref()),
        (Some(T0 + 10), Some("OK"))
    );
    // Completed commands are no longer open.
    assert_eq!(
        f.db.commands_for(&hm1(), 0, 100)
            .expect("commands")
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [start]
    );
    assert_eq!(f.db.prune_commands(T0 + 11).expect("prune"), 1);
    assert_eq!(f.db.command(stop).expect("command"), None);
    let stranger = vm_n(77);
    let err =
        f.db.enqueue_command(&stranger, CommandKind::ForgetVm, &vm1(), T0)
            .expect_err("unknown monitor");
    assert!(matches!(
        err,
        Error::NotFound {
            what: "host monitor",
            ..
        }
    ));
}

both!(test_record_event);
fn test_record_event() {
    let mut f = Fixture::new();
    let a =
        f.db.record_event(
            "VM_FAILURE_DETECTED",
            Some(&vm1()),
            None,
            "missedHb=200",
            T0,
        )
        .expect("event");
    let b =
        f.db.record_event("VIOS_HM_RESP_DETECTED", None, Some(&hm1()), "", T0 + 1)
            .expect("event");
    assert!(b > a);
    let events = f.db.events_after(0, 10).expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].kind.as_str(), events[0].vm),
        ("VM_FAILURE_DETECTED", Some(vm1()))
    );
}

both!(test_retire_hm_keeps_vm_items);
fn test_retire_hm_keeps_vm_items() {
    let mut f = Fixture::new();
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
        Transition::HmEvent {
            hm: hm1(),
            state: crate::HmState::Down,
            reason: 0x40,
            text: "EVENT_TYPE=NODE_DOWN".to_string(),
            at: T0,
        },
    ])
    .expect("apply");
    f.db.enqueue_command(&hm1(), CommandKind::ForgetVm, &vm1(), T0)
        .expect("enqueue");
    assert!(f.db.retire_hm(&hm1()).expect("retire"));
    assert!(!f.db.retire_hm(&hm1()).expect("twice"));
    assert_eq!(f.db.hm(&hm1()).expect("hm"), None);
    assert_eq!(f.db.vm_hm(&vm1(), &hm1()).expect("row"), None);
    assert!(f.db.vm_hm(&vm1(), &hm2()).expect("row").is_some());
    // The DISCOVERED item hm1 wrote survives; its monitor event does not.
    let kinds: Vec<PendingKind> =
        f.db.pending()
            .expect("pending")
            .iter()
            .map(|p| p.kind)
            .collect();
    assert_eq!(kinds, [PendingKind::Discovered]);
    assert_eq!(f.db.commands_for(&hm1(), 0, 10).expect("commands"), []);
    f.db.integrity_check().expect("integrity");
}

both!(test_prune_events_respects_the_slowest_consumer);
fn test_prune_events_respects_the_slowest_consumer() {
    let mut f = Fixture::new();
    for i in 0..10 {
        f.db.record_event("E", None, None, "", T0 + i)
            .expect("event");
    }
    f.db.set_consumer_offset("mailer", 8).expect("offset");
    f.db.set_consumer_offset("log", 3).expect("offset");
    // Keep the last 2: would delete 1..=8, but "log" has only handled up to 3.
    let pruned =
        f.db.prune_events(&EventPrune {
            keep_last: Some(2),
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 3);
    assert!(pruned.lost.is_empty(), "nothing unhandled went");
    assert_eq!(
        f.db.events_after(0, 100)
            .expect("events")
            .first()
            .map(|e| e.id),
        Some(4)
    );
    // Older than T0 + 6: ids 4..=6, but only up to 3 is allowed → nothing.
    let pruned =
        f.db.prune_events(&EventPrune {
            before_ms: Some(T0 + 6),
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 0);
    // Forced: past the consumer (ids 4, 5, 6), and the loss is reported for "log" only
    // ("mailer" had handled them).
    let pruned =
        f.db.prune_events(&EventPrune {
            before_ms: Some(T0 + 6),
            force: true,
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 3);
    assert_eq!(
        pruned.lost,
        [hsdb_loss("log", 3, 3, 6)],
        "the consumer behind is named with its loss"
    );
    // Forced by rows: keep the newest 2 (9, 10): 7 and 8 go; "log" (at 3) loses both,
    // "mailer" (at 8) none.
    let pruned =
        f.db.prune_events(&EventPrune {
            keep_last: Some(2),
            force: true,
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 2);
    assert_eq!(pruned.lost, [hsdb_loss("log", 3, 2, 8)]);
    // The consumer reads on from the oldest event left.
    assert_eq!(
        f.db.events_after(3, 100)
            .expect("events")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [9, 10]
    );
    // Ids keep increasing after pruning.
    let next =
        f.db.record_event("E", None, None, "", T0 + 20)
            .expect("event");
    assert_eq!(next, 11);
}

fn hsdb_loss(consumer: &str, offset: i64, lost: u64, upto_id: i64) -> crate::ConsumerLoss {
    crate::ConsumerLoss {
        consumer: consumer.to_owned(),
        offset,
        lost,
        upto_id,
    }
}

both!(test_consumers_register_backlog_and_forget);
fn test_consumers_register_backlog_and_forget() {
    let mut f = Fixture::new();
    assert_eq!(
        f.db.event_backlog(0).expect("backlog"),
        crate::EventBacklog::default()
    );
    for i in 0..5 {
        f.db.record_event("E", None, None, "", T0 + i)
            .expect("event");
    }
    // At the end: it sees only what comes next; at 0: everything.
    assert_eq!(f.db.register_consumer("hook", true).expect("register"), 5);
    assert_eq!(f.db.register_consumer("mail", false).expect("register"), 0);
    // Registered already: the stored offset, whatever is asked.
    f.db.set_consumer_offset("hook", 4).expect("offset");
    assert_eq!(f.db.register_consumer("hook", true).expect("register"), 4);
    let names: Vec<(String, i64)> =
        f.db.event_consumers()
            .expect("consumers")
            .into_iter()
            .map(|c| (c.name, c.last_id))
            .collect();
    assert_eq!(names, [("hook".to_owned(), 4), ("mail".to_owned(), 0)]);
    assert_eq!(
        f.db.event_backlog(2).expect("backlog"),
        crate::EventBacklog {
            count: 3,
            oldest_ms: Some(T0 + 2),
            newest_id: Some(5),
        }
    );
    assert_eq!(
        f.db.event_backlog(5).expect("backlog"),
        crate::EventBacklog {
            count: 0,
            oldest_ms: None,
            newest_id: Some(5),
        }
    );
    // "mail" holds every event back; forgotten, it no longer does.
    let pruned =
        f.db.prune_events(&EventPrune {
            keep_last: Some(0),
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 0);
    assert!(f.db.forget_consumer("mail").expect("forget"));
    assert!(!f.db.forget_consumer("mail").expect("forget"), "once");
    let pruned =
        f.db.prune_events(&EventPrune {
            keep_last: Some(0),
            ..EventPrune::default()
        })
        .expect("prune");
    assert_eq!(pruned.deleted, 4, "up to hook's offset");
}

both!(test_prune_vms_gone_for_good);
fn test_prune_vms_gone_for_good() {
    let mut f = Fixture::new();
    f.db.apply(&[
        discovered(vm_n(1), hm1(), mac_n(1, 0), T0),
        discovered(vm_n(2), hm1(), mac_n(2, 0), T0),
    ])
    .expect("apply");
    f.db.set_vm(&vm_n(3), &VmSettings::default(), T0)
        .expect("unmanaged, never seen");
    f.db.set_vm(
        &vm_n(4),
        &VmSettings {
            managed: Some(true),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("managed");
    // Watched VMs and managed ones stay; the unmanaged unwatched one goes once old.
    assert_eq!(f.db.prune_vms(T0).expect("prune"), 0, "not old enough");
    assert_eq!(f.db.prune_vms(T0 + 1).expect("prune"), 1);
    assert_eq!(f.db.vm(&vm_n(3)).expect("vm"), None);
    assert!(f.db.vm(&vm_n(4)).expect("vm").is_some());
    // A monitor retired: its VMs are no longer watched and may go too, with their items.
    f.db.retire_hm(&hm1()).expect("retire");
    assert_eq!(f.db.prune_vms(T0 + 1).expect("prune"), 2);
    assert!(f.db.pending().expect("pending").is_empty());
}
