//! Activities and what discovery found (schema v11).

use super::*;
use crate::{
    ActivityKind, ActivityState, DiscoveryChange, Error, Found, FoundHost, FoundVm, RelocationKind,
    VmSettings, VmState,
};

both!(
    test_activity_lifecycle,
    test_claim_takes_each_request_once,
    test_abandoned_activities_fail,
    test_discovery_new_changed_vanished,
    test_discovery_keeps_operator_values,
    test_discovery_adds_unknown_host,
    test_discovery_skips_relocating_vm
);

fn test_activity_lifecycle() {
    let mut f = Fixture::new();
    let id =
        f.db.request_activity("hg1", ActivityKind::QuickDiscovery, "dashboard:ann", T0)
            .expect("request");
    // A second request of the same kind while the first waits is the same row.
    assert_eq!(
        f.db.request_activity("hg1", ActivityKind::QuickDiscovery, "dashboard:bob", T0 + 1)
            .expect("again"),
        id
    );
    let verify =
        f.db.request_activity("hg1", ActivityKind::Verify, "dashboard:ann", T0 + 2)
            .expect("verify");
    assert!(verify > id);
    let other =
        f.db.begin_activity(
            "hg2",
            ActivityKind::DeepDiscovery,
            "cli:root",
            "cli:1",
            T0 + 3,
        )
        .expect("begin");
    let rows = f.db.activities(None, 10).expect("all");
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [other, verify, id],
        "newest first"
    );
    assert_eq!(rows[0].state, ActivityState::Running);
    assert_eq!(rows[0].started_ms, Some(T0 + 3));
    assert_eq!(rows[2].state, ActivityState::Requested);
    assert_eq!(rows[2].requested_by, "dashboard:ann");
    assert_eq!(f.db.activities(Some("hg1"), 1).expect("hg1").len(), 1);
    assert_eq!(f.db.activities(Some("hg1"), 10).expect("hg1").len(), 2);

    let claimed =
        f.db.claim_activity("hg1", "ctl-a", T0 + 10)
            .expect("claim")
            .expect("one waits");
    assert_eq!(
        (claimed.id, claimed.state, claimed.runner.as_deref()),
        (id, ActivityState::Running, Some("ctl-a"))
    );
    f.db.activity_progress(id, "host-a: 3 VMs", T0 + 11)
        .expect("progress");
    f.db.finish_activity(id, true, "2 new VMs", T0 + 12)
        .expect("finish");
    let row = f.db.activity(id).expect("read").expect("exists");
    assert_eq!(row.state, ActivityState::Done);
    assert_eq!(row.progress, "host-a: 3 VMs");
    assert_eq!(row.summary.as_deref(), Some("2 new VMs"));
    assert_eq!(
        (row.started_ms, row.ended_ms),
        (Some(T0 + 10), Some(T0 + 12))
    );
    // Ended once; progress on an ended activity tells its runner to stop.
    assert!(matches!(
        f.db.finish_activity(id, false, "again", T0 + 13),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        f.db.activity_progress(id, "late", T0 + 13),
        Err(Error::NotFound { .. })
    ));
    // After it ran, a new request is a new row; the schedule sees when it last ran.
    let next =
        f.db.request_activity("hg1", ActivityKind::QuickDiscovery, "schedule", T0 + 20)
            .expect("new");
    assert!(next > id);
    assert_eq!(
        f.db.last_activity_start("hg1", ActivityKind::QuickDiscovery)
            .expect("last"),
        Some(T0 + 10)
    );
    assert_eq!(
        f.db.last_activity_start("hg2", ActivityKind::QuickDiscovery)
            .expect("none"),
        None
    );
    // A long summary is cut, not refused.
    let long = "x".repeat(crate::MAX_ACTIVITY_TEXT * 2);
    f.db.finish_activity(other, false, &long, T0 + 30)
        .expect("long");
    let row = f.db.activity(other).expect("read").expect("exists");
    assert_eq!(row.state, ActivityState::Failed);
    assert!(row.summary.expect("summary").len() <= crate::MAX_ACTIVITY_TEXT);
    assert_eq!(f.db.prune_activities(T0 + 25).expect("prune"), 1);
    assert!(f.db.activity(id).expect("read").is_none());
    assert!(f.db.activity(other).expect("read").is_some());
}

fn test_claim_takes_each_request_once() {
    let mut f = Fixture::new();
    let a =
        f.db.request_activity("hg1", ActivityKind::QuickDiscovery, "x", T0)
            .expect("a");
    let b =
        f.db.request_activity("hg1", ActivityKind::Verify, "x", T0)
            .expect("b");
    let mut other = f.reopen(&Options::default());
    let first = f.db.claim_activity("hg1", "ctl-a", T0 + 1).expect("claim");
    let second = other.claim_activity("hg1", "ctl-b", T0 + 1).expect("claim");
    let third = f.db.claim_activity("hg1", "ctl-a", T0 + 2).expect("claim");
    assert_eq!(first.map(|r| r.id), Some(a));
    assert_eq!(second.map(|r| r.id), Some(b));
    assert!(third.is_none());
    assert!(
        f.db.claim_activity("hg2", "ctl-a", T0 + 2)
            .expect("claim")
            .is_none()
    );
}

fn test_abandoned_activities_fail() {
    let mut f = Fixture::new();
    let stale =
        f.db.begin_activity(
            "hg1",
            ActivityKind::DeepDiscovery,
            "schedule",
            "ctl-old",
            T0,
        )
        .expect("stale");
    f.db.activity_progress(stale, "host-a", T0 + 1_000)
        .expect("progress");
    let fresh =
        f.db.begin_activity(
            "hg1",
            ActivityKind::QuickDiscovery,
            "cli:root",
            "cli:7",
            T0 + 50_000,
        )
        .expect("fresh");
    let dead =
        f.db.begin_activity(
            "hg1",
            ActivityKind::Verify,
            "schedule",
            "ctl-dead",
            T0 + 55_000,
        )
        .expect("dead");
    let elsewhere =
        f.db.begin_activity("hg2", ActivityKind::Verify, "schedule", "ctl-old", T0)
            .expect("other group");
    let failed =
        f.db.fail_abandoned_activities(
            Some("hg1"),
            T0 + 30_000,
            &|runner| runner == "ctl-dead",
            T0 + 60_000,
        )
        .expect("recover");
    assert_eq!(failed, [stale, dead]);
    let row = f.db.activity(stale).expect("read").expect("exists");
    assert_eq!(row.state, ActivityState::Failed);
    let why = row.summary.expect("why");
    assert!(why.contains("ctl-old") && why.contains("host-a"), "{why}");
    assert_eq!(row.ended_ms, Some(T0 + 60_000));
    assert!(
        f.db.activity(dead)
            .expect("read")
            .expect("exists")
            .summary
            .expect("why")
            .contains("is gone")
    );
    for id in [fresh, elsewhere] {
        assert_eq!(
            f.db.activity(id).expect("read").expect("exists").state,
            ActivityState::Running
        );
    }
}

fn found_vm(i: u32, name: &str, running: bool, size: Option<(u32, u32)>) -> FoundVm {
    FoundVm {
        uuid: vm_n(i),
        name: name.to_owned(),
        power: if running { "Running" } else { "Not Activated" }.to_owned(),
        running,
        size,
    }
}

fn found_host(name: &str, vms: Vec<FoundVm>) -> FoundHost {
    FoundHost {
        name: name.to_owned(),
        cpu_milli: 48_000,
        memory_mb: 1_048_576,
        vms,
    }
}

fn event_kinds(f: &Fixture) -> Vec<String> {
    f.db.events_after(0, 100)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn test_discovery_new_changed_vanished() {
    let mut f = Fixture::new();
    let found = Found {
        hosts: vec![
            found_host(
                "host-a",
                vec![
                    found_vm(1, "web1", true, Some((2_000, 4_096))),
                    found_vm(2, "db1", false, Some((4_000, 8_192))),
                ],
            ),
            found_host(
                "host-b",
                vec![found_vm(3, "app1", true, Some((1_000, 1_024)))],
            ),
        ],
        manage_new: false,
    };
    let report = f.db.apply_discovery(&found, T0).expect("first");
    assert_eq!((report.hosts, report.vms), (2, 3));
    let new: Vec<_> = report
        .changes
        .iter()
        .filter_map(|c| match c {
            DiscoveryChange::VmNew { name, managed, .. } => Some((name.as_str(), *managed)),
            _ => None,
        })
        .collect();
    assert_eq!(new, [("web1", false), ("db1", false), ("app1", false)]);
    let web1 = f.db.vm(&vm_n(1)).expect("read").expect("web1");
    assert_eq!(
        (
            web1.name.as_str(),
            web1.current_host,
            web1.state,
            web1.managed,
            web1.cpu_milli,
            web1.memory_mb
        ),
        ("web1", Some(HOST_A), VmState::Unknown, false, 2_000, 4_096)
    );
    let d = f.db.vm_discovery(&vm_n(2)).expect("read").expect("db1");
    assert_eq!(
        (d.power.as_str(), d.last_seen_ms),
        ("Not Activated", Some(T0))
    );
    assert_eq!(event_kinds(&f), ["VM_DISCOVERED"; 3]);

    // The same again changes nothing and writes no event.
    let again = f.db.apply_discovery(&found, T0 + 1_000).expect("again");
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(event_kinds(&f).len(), 3);

    // web1 moved to host-b and grew; app1 vanished; db1 stays.
    let moved = Found {
        hosts: vec![
            found_host("host-a", vec![found_vm(2, "db1", false, None)]),
            found_host(
                "host-b",
                vec![found_vm(1, "web1", true, Some((4_000, 4_096)))],
            ),
        ],
        manage_new: false,
    };
    let report = f.db.apply_discovery(&moved, T0 + 2_000).expect("moved");
    let lines: Vec<String> = report.changes.iter().map(|c| c.describe()).collect();
    assert_eq!(report.changes.len(), 2, "{lines:?}");
    assert!(lines[0].contains("host host-a → host-b") && lines[0].contains("cpu 2000 → 4000"));
    assert!(
        matches!(&report.changes[1], DiscoveryChange::VmVanished { name, last_host, .. }
            if name == "app1" && last_host.as_deref() == Some("host-b"))
    );
    let web1 = f.db.vm(&vm_n(1)).expect("read").expect("web1");
    assert_eq!((web1.current_host, web1.cpu_milli), (Some(HOST_B), 4_000));
    // Vanished: kept, marked, one event; a second discovery does not repeat it.
    assert!(f.db.vm(&vm_n(3)).expect("read").is_some());
    assert_eq!(
        f.db.vanished_vms().expect("vanished"),
        [(vm_n(3), T0 + 2_000)]
    );
    f.db.apply_discovery(&moved, T0 + 3_000).expect("again");
    assert_eq!(
        event_kinds(&f),
        [
            "VM_DISCOVERED",
            "VM_DISCOVERED",
            "VM_DISCOVERED",
            "VM_VANISHED"
        ]
    );
    // Found again.
    let report = f.db.apply_discovery(&found, T0 + 4_000).expect("back");
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, DiscoveryChange::VmReappeared { name, .. } if name == "app1"))
    );
    assert!(f.db.vanished_vms().expect("none").is_empty());
    assert_eq!(
        event_kinds(&f).last().map(String::as_str),
        Some("VM_REAPPEARED")
    );

    // A host that did not answer is not in `found`: its VMs are not vanished.
    let only_b = Found {
        hosts: vec![found_host("host-b", vec![found_vm(3, "app1", true, None)])],
        manage_new: false,
    };
    let report = f.db.apply_discovery(&only_b, T0 + 5_000).expect("only b");
    assert!(
        report
            .changes
            .iter()
            .all(|c| !matches!(c, DiscoveryChange::VmVanished { .. })),
        "{:?}",
        report.changes
    );

    // manage_new: a new VM is managed at once, ADDED until an agent pairs.
    let new_managed = Found {
        hosts: vec![found_host(
            "host-b",
            vec![
                found_vm(1, "web1", true, None),
                found_vm(3, "app1", true, None),
                found_vm(4, "new1", true, Some((1_000, 512))),
            ],
        )],
        manage_new: true,
    };
    f.db.apply_discovery(&new_managed, T0 + 6_000)
        .expect("managed");
    let new1 = f.db.vm(&vm_n(4)).expect("read").expect("new1");
    assert_eq!((new1.managed, new1.state), (true, VmState::Added));

    // Housekeeping: an unmanaged VM no monitor watches is kept while discovery finds
    // it; once vanished it is an ordinary unmanaged VM gone for good and is pruned.
    let without_app1 = Found {
        hosts: vec![
            found_host("host-a", vec![found_vm(2, "db1", false, None)]),
            found_host(
                "host-b",
                vec![
                    found_vm(1, "web1", true, None),
                    found_vm(4, "new1", true, None),
                ],
            ),
        ],
        manage_new: false,
    };
    f.db.apply_discovery(&without_app1, T0 + 7_000)
        .expect("app1 gone");
    assert_eq!(f.db.prune_vms(T0 + 6_500).expect("prune"), 1);
    assert!(f.db.vm(&vm_n(3)).expect("read").is_none());
    assert!(
        f.db.vm(&vm_n(2)).expect("read").is_some(),
        "db1 unmanaged, still found"
    );
}

fn test_discovery_keeps_operator_values() {
    let mut f = Fixture::new();
    // The operator described the VM first: name, size, managed.
    f.db.set_vm(
        &vm_n(1),
        &VmSettings {
            managed: Some(true),
            name: Some("web".to_owned()),
            cpu_milli: Some(3_000),
            memory_mb: Some(2_048),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("operator");
    // And a host capacity of its own.
    f.db.set_host_capacity(HOST_A, 40_000, 500_000)
        .expect("capacity");
    let found = Found {
        hosts: vec![found_host(
            "host-a",
            vec![found_vm(1, "web-platform", true, Some((2_000, 4_096)))],
        )],
        manage_new: false,
    };
    let report = f.db.apply_discovery(&found, T0 + 1).expect("discover");
    let vm = f.db.vm(&vm_n(1)).expect("read").expect("vm");
    assert_eq!(
        (
            vm.name.as_str(),
            vm.managed,
            vm.cpu_milli,
            vm.memory_mb,
            vm.current_host
        ),
        ("web", true, 3_000, 2_048, Some(HOST_A)),
        "only the host is the platform's"
    );
    let host = f.db.host(HOST_A).expect("read").expect("host");
    assert_eq!((host.cpu_milli, host.memory_mb), (40_000, 500_000));
    assert_eq!(report.notes.len(), 4, "{:?}", report.notes);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("operator's cpu 3000 milli kept"))
    );
    // host-b's capacity equals the platform's: discovery takes it as its own, and a
    // later change on the platform is followed.
    let same = Found {
        hosts: vec![found_host("host-b", vec![])],
        manage_new: false,
    };
    assert!(
        f.db.apply_discovery(&same, T0 + 2)
            .expect("same")
            .changes
            .is_empty()
    );
    let grown = Found {
        hosts: vec![FoundHost {
            cpu_milli: 64_000,
            ..found_host("host-b", vec![])
        }],
        manage_new: false,
    };
    f.db.apply_discovery(&grown, T0 + 2).expect("grown");
    assert_eq!(
        f.db.host(HOST_B).expect("read").expect("b").cpu_milli,
        64_000
    );
    // A VM whose size discovery wrote follows the platform; once the operator changes
    // it, it does not.
    let new = Found {
        hosts: vec![found_host(
            "host-b",
            vec![found_vm(2, "x", true, Some((1_000, 1_024)))],
        )],
        manage_new: false,
    };
    f.db.apply_discovery(&new, T0 + 3).expect("new");
    let bigger = Found {
        hosts: vec![found_host(
            "host-b",
            vec![found_vm(2, "x", true, Some((2_000, 1_024)))],
        )],
        manage_new: false,
    };
    f.db.apply_discovery(&bigger, T0 + 4).expect("bigger");
    assert_eq!(
        f.db.vm(&vm_n(2)).expect("read").expect("x").cpu_milli,
        2_000
    );
    f.db.set_vm(
        &vm_n(2),
        &VmSettings {
            cpu_milli: Some(8_000),
            ..VmSettings::default()
        },
        T0 + 5,
    )
    .expect("operator");
    f.db.apply_discovery(&new, T0 + 6).expect("smaller");
    assert_eq!(
        f.db.vm(&vm_n(2)).expect("read").expect("x").cpu_milli,
        8_000
    );
}

fn test_discovery_adds_unknown_host() {
    let mut f = Fixture::new();
    let found = Found {
        hosts: vec![FoundHost {
            name: "host-new".to_owned(),
            cpu_milli: 8_000,
            memory_mb: 16_384,
            vms: vec![found_vm(1, "v", true, Some((1_000, 1_024)))],
        }],
        manage_new: false,
    };
    let report = f.db.apply_discovery(&found, T0).expect("discover");
    let Some(DiscoveryChange::HostAdded { id, .. }) = report.changes.first().cloned() else {
        panic!("host added first: {:?}", report.changes);
    };
    let host = f.db.host(id).expect("read").expect("added");
    assert_eq!(
        (
            host.name.as_str(),
            host.host_group.as_str(),
            host.cpu_milli,
            host.memory_mb
        ),
        ("host-new", "", 8_000, 16_384)
    );
    assert!(id.0 > HOST_B.0);
    assert_eq!(event_kinds(&f), ["HOST_DISCOVERED", "VM_DISCOVERED"]);
    let again = f.db.apply_discovery(&found, T0 + 1).expect("again");
    assert!(again.changes.is_empty(), "{:?}", again.changes);
}

fn test_discovery_skips_relocating_vm() {
    let mut f = Fixture::new();
    let found = Found {
        hosts: vec![found_host(
            "host-a",
            vec![found_vm(1, "v", true, Some((1_000, 1_024)))],
        )],
        manage_new: true,
    };
    f.db.apply_discovery(&found, T0).expect("first");
    f.db.relocation_begin(
        &vm_n(1),
        Some(HOST_A),
        Some(HOST_B),
        RelocationKind::Relocate,
        T0 + 1,
    )
    .expect("relocating");
    // Found on host-b mid-relocation: its host is left to the relocation.
    let mid = Found {
        hosts: vec![
            found_host("host-a", vec![]),
            found_host("host-b", vec![found_vm(1, "v", true, None)]),
        ],
        manage_new: true,
    };
    let report = f.db.apply_discovery(&mid, T0 + 2).expect("mid");
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert!(
        report.notes[0].contains("in progress"),
        "{:?}",
        report.notes
    );
    assert_eq!(
        f.db.vm(&vm_n(1)).expect("read").expect("v").current_host,
        Some(HOST_A)
    );
    // Nowhere mid-relocation: not vanished either.
    let gone = Found {
        hosts: vec![found_host("host-a", vec![]), found_host("host-b", vec![])],
        manage_new: true,
    };
    let report = f.db.apply_discovery(&gone, T0 + 3).expect("gone");
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert!(f.db.vanished_vms().expect("none").is_empty());
}
