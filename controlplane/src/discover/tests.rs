//! Discovery against the sim driver: new, changed and vanished VMs, the managed rule,
//! idempotence, hosts that do not answer, activities.

#![allow(clippy::unwrap_used)]

use hsdb::{
    ActivityKind, ActivityState, HostId, HostRecord, Hsdb, Options, Priority, Uuid, VmSettings,
    VmState,
};

use super::*;
use crate::clock::ManualClock;
use crate::platform::VmSpec;
use crate::platform::sim::{Call, FailureRule, InjectedError, SimPlatform};

const T0: i64 = 1_556_303_548_719;

fn uuid(n: u8) -> Uuid {
    let mut b = [0x44; 16];
    b[15] = n;
    Uuid(b)
}

fn spec(n: u8, cpu_milli: u32, memory_mb: u32) -> VmSpec {
    VmSpec {
        uuid: uuid(n),
        name: format!("vm{n}"),
        cpu_milli,
        memory_mb,
    }
}

struct Lab {
    _dir: tempfile::TempDir,
    db: Hsdb,
    sim: SimPlatform,
}

/// HSDB hosts h1, h2 (group hg1) and h9 (group hg9, not on the platform); platform
/// hosts h1, h2 and h3 (not in the HSDB); vm1, vm2 on h1, vm3 (off) on h2, vm4 on h3.
fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).unwrap();
    for (id, name, group) in [(1, "h1", "hg1"), (2, "h2", "hg1"), (9, "h9", "hg9")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 16_000,
            memory_mb: 65_536,
            host_group: group.into(),
        })
        .unwrap();
    }
    let sim = SimPlatform::empty(ManualClock::new(T0), 3);
    {
        let mut w = sim.world();
        for h in ["h1", "h2", "h3"] {
            w.add_host(h, 16_000, 65_536).unwrap();
        }
        w.add_vm("h1", spec(1, 2_000, 4_096)).unwrap();
        w.add_vm("h1", spec(2, 1_000, 2_048)).unwrap();
        w.define_vm("h2", spec(3, 4_000, 8_192)).unwrap();
        w.add_vm("h3", spec(4, 1_000, 1_024)).unwrap();
    }
    Lab { _dir: dir, db, sim }
}

fn request(group: Option<&str>, depth: Depth, manage_new: bool) -> Request {
    Request {
        group: group.map(str::to_owned),
        depth,
        manage_new,
        profile: None,
    }
}

fn run(l: &mut Lab, req: &Request) -> Result<Outcome, DiscoverError> {
    let mut lines = Vec::new();
    let r = discover(
        &mut l.db,
        &mut l.sim,
        req,
        &|| T0,
        &mut |_db: &mut Hsdb, line: &str| {
            lines.push(line.to_owned());
            Ok(())
        },
    );
    if r.is_ok() {
        assert!(lines[0].starts_with("1/"), "{lines:?}");
    }
    r
}

fn kinds(o: &Outcome) -> Vec<(&'static str, String)> {
    o.changes
        .iter()
        .map(|c| (c.change, c.name.clone()))
        .collect()
}

fn events(db: &Hsdb) -> Vec<String> {
    db.events_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn test_new_changed_vanished_and_idempotent() {
    let mut l = lab();
    let first = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert_eq!(
        kinds(&first),
        [
            ("new_vm", "vm1".into()),
            ("new_vm", "vm2".into()),
            ("new_vm", "vm3".into())
        ]
    );
    assert_eq!(first.hosts_answered, ["h1", "h2"]);
    assert!(first.hosts_unreachable.is_empty());
    assert!(first.hosts_not_on_platform.is_empty());
    // Unmanaged, UNKNOWN, sized, placed; vm3 is off but defined on h2.
    let vm1 = l.db.vm(&uuid(1)).unwrap().unwrap();
    assert_eq!(
        (
            vm1.managed,
            vm1.state,
            vm1.current_host,
            vm1.cpu_milli,
            vm1.memory_mb
        ),
        (false, VmState::Unknown, Some(HostId(1)), 2_000, 4_096)
    );
    let vm3 = l.db.vm(&uuid(3)).unwrap().unwrap();
    assert_eq!(vm3.current_host, Some(HostId(2)));
    assert_eq!(
        l.db.vm_discovery(&uuid(3)).unwrap().unwrap().power,
        "Not Activated"
    );
    // h3's VM is not in hg1's scope.
    assert!(l.db.vm(&uuid(4)).unwrap().is_none());
    assert_eq!(events(&l.db), ["VM_DISCOVERED"; 3]);
    assert!(first.summary().contains("3 new"), "{}", first.summary());

    // A second discovery of the same platform changes nothing (quick and deep).
    let again = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    let deep = run(&mut l, &request(Some("hg1"), Depth::Deep, false)).unwrap();
    assert!(deep.changes.is_empty(), "{:?}", deep.changes);
    assert_eq!(events(&l.db).len(), 3);

    // vm1 moves to h2 on the platform (outside the control plane); vm2 is removed.
    {
        let spec1 = spec(1, 2_000, 4_096);
        l.sim.migrate("h1", "h2", &spec1).unwrap();
        l.sim.cleanup("h1", &uuid(2)).unwrap();
    }
    let changed = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert_eq!(
        kinds(&changed),
        [("vm_changed", "vm1".into()), ("vanished", "vm2".into())]
    );
    assert_eq!(changed.changes[0].detail, "host h1 → h2");
    assert_eq!(
        l.db.vm(&uuid(1)).unwrap().unwrap().current_host,
        Some(HostId(2))
    );
    // Vanished: kept (not deleted), not relocated (no relocation row), one event.
    assert!(l.db.vm(&uuid(2)).unwrap().is_some());
    assert!(l.db.relocations(Some(&uuid(2)), 10).unwrap().is_empty());
    assert_eq!(
        events(&l.db),
        [
            "VM_DISCOVERED",
            "VM_DISCOVERED",
            "VM_DISCOVERED",
            "VM_VANISHED"
        ]
    );
    let again = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(events(&l.db).len(), 4);
}

#[test]
fn test_managed_rule_and_operator_values() {
    let mut l = lab();
    // The operator knew vm1 already: managed, High, its own size.
    l.db.set_vm(
        &uuid(1),
        &VmSettings {
            managed: Some(true),
            priority: Some(Priority::High),
            name: Some("web".into()),
            cpu_milli: Some(3_000),
            memory_mb: Some(3_000),
            ..VmSettings::default()
        },
        T0,
    )
    .unwrap();
    let o = run(&mut l, &request(Some("hg1"), Depth::Deep, true)).unwrap();
    // manage_new: the new ones are managed (ADDED until an agent pairs)…
    for n in [2, 3] {
        let vm = l.db.vm(&uuid(n)).unwrap().unwrap();
        assert_eq!((vm.managed, vm.state), (true, VmState::Added), "vm{n}");
    }
    // …and what the operator set of vm1 stays; its host is the platform's.
    let vm1 = l.db.vm(&uuid(1)).unwrap().unwrap();
    assert_eq!(
        (
            vm1.name.as_str(),
            vm1.managed,
            vm1.priority,
            vm1.cpu_milli,
            vm1.memory_mb
        ),
        ("web", true, Priority::High, 3_000, 3_000)
    );
    assert_eq!(vm1.current_host, Some(HostId(1)));
    assert!(
        o.notes.iter().any(|n| n.contains("operator's cpu 3000")),
        "{:?}",
        o.notes
    );
    // The deep discovery verified the group.
    assert_eq!(o.verify.len(), 1);
    assert!(
        o.verify[0].starts_with("verify: group hg1"),
        "{:?}",
        o.verify
    );
    // A managed VM that vanishes is kept managed.
    l.sim.cleanup("h1", &uuid(1)).unwrap();
    let o = run(&mut l, &request(Some("hg1"), Depth::Quick, true)).unwrap();
    assert_eq!(kinds(&o), [("vanished", "web".into())]);
    assert!(l.db.vm(&uuid(1)).unwrap().unwrap().managed);
}

#[test]
fn test_a_host_that_does_not_answer_loses_no_vm() {
    let mut l = lab();
    run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    l.sim.world().inject_failure(FailureRule {
        call: Call::Hosts,
        host: Some("h2".into()),
        vm: None,
        times: 1,
        error: InjectedError::Unreachable,
    });
    // vm3 (on h2) is undefined meanwhile: h2 does not answer, so it is not vanished.
    l.sim.cleanup("h2", &uuid(3)).unwrap();
    let o = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert!(o.changes.is_empty(), "{:?}", o.changes);
    assert_eq!(o.hosts_unreachable.len(), 1);
    assert_eq!(o.hosts_unreachable[0].host, "h2");
    assert!(o.summary().contains("h2 did not answer"), "{}", o.summary());
    // Next time h2 answers: vanished.
    let o = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap();
    assert_eq!(kinds(&o), [("vanished", "vm3".into())]);
    // No host answers: an error, nothing written.
    for h in ["h1", "h2"] {
        l.sim.world().inject_failure(FailureRule {
            call: Call::Hosts,
            host: Some(h.into()),
            vm: None,
            times: 1,
            error: InjectedError::Failed,
        });
    }
    let before = events(&l.db).len();
    let err = run(&mut l, &request(Some("hg1"), Depth::Quick, false)).unwrap_err();
    assert!(matches!(err, DiscoverError::NoAnswer(_)), "{err}");
    assert_eq!(events(&l.db).len(), before);
}

#[test]
fn test_scope_every_platform_host_and_unknown_groups() {
    let mut l = lab();
    // Every platform host: h3 (not in the HSDB) is added without a group, its VM found.
    let o = run(&mut l, &request(None, Depth::Quick, false)).unwrap();
    assert!(
        kinds(&o).contains(&("host_added", "h3".into())),
        "{:?}",
        o.changes
    );
    let h3 =
        l.db.hosts()
            .unwrap()
            .into_iter()
            .find(|h| h.name == "h3")
            .unwrap();
    assert_eq!((h3.host_group.as_str(), h3.cpu_milli), ("", 16_000));
    assert_eq!(
        l.db.vm(&uuid(4)).unwrap().unwrap().current_host,
        Some(h3.id)
    );
    // A group the HSDB lacks; a group none of whose hosts the platform serves.
    assert!(matches!(
        run(&mut l, &request(Some("nope"), Depth::Quick, false)),
        Err(DiscoverError::NoSuchGroup { .. })
    ));
    let err = run(&mut l, &request(Some("hg9"), Depth::Quick, false)).unwrap_err();
    assert!(err.to_string().contains("h9"), "{err}");
}

#[test]
fn test_activities_done_and_failed() {
    let mut l = lab();
    let id =
        l.db.request_activity("hg1", ActivityKind::QuickDiscovery, "dashboard:ann", T0)
            .unwrap();
    let row =
        l.db.claim_activity("hg1", "controller:test", T0)
            .unwrap()
            .unwrap();
    assert_eq!(row.id, id);
    let act = ActivityRun {
        id,
        kind: row.kind,
        group: "hg1",
        manage_new: false,
        profile: None,
        stop: None,
    };
    let out = run_activity(&mut l.db, &mut l.sim, &act, &|| T0 + 5).unwrap();
    assert!(matches!(out, ActivityOutcome::Discovery(_)));
    let row = l.db.activity(id).unwrap().unwrap();
    assert_eq!(row.state, ActivityState::Done);
    assert!(row.summary.unwrap().contains("3 new"));
    assert!(
        row.progress.contains("writing what was found"),
        "{}",
        row.progress
    );
    assert_eq!(row.heartbeat_ms, Some(T0 + 5));

    // VERIFY.
    let v =
        l.db.begin_activity("hg1", ActivityKind::Verify, "dashboard:ann", "t", T0)
            .unwrap();
    let act = ActivityRun {
        id: v,
        kind: ActivityKind::Verify,
        ..act
    };
    run_activity(&mut l.db, &mut l.sim, &act, &|| T0 + 6).unwrap();
    let row = l.db.activity(v).unwrap().unwrap();
    assert_eq!(row.state, ActivityState::Done);
    assert!(row.summary.unwrap().starts_with("verify: group hg1"));

    // A stop request between hosts: FAILED with why, nothing written, ACTIVITY_FAILED.
    l.sim.cleanup("h1", &uuid(1)).unwrap();
    let s =
        l.db.begin_activity("hg1", ActivityKind::QuickDiscovery, "schedule", "t", T0)
            .unwrap();
    let stop = || Some("the daemon is stopping".to_owned());
    let act = ActivityRun {
        id: s,
        kind: ActivityKind::QuickDiscovery,
        stop: Some(&stop),
        ..act
    };
    let err = run_activity(&mut l.db, &mut l.sim, &act, &|| T0 + 7).unwrap_err();
    assert!(matches!(err, DiscoverError::Stopped(_)), "{err}");
    let row = l.db.activity(s).unwrap().unwrap();
    assert_eq!(row.state, ActivityState::Failed);
    assert!(row.summary.unwrap().contains("the daemon is stopping"));
    assert!(l.db.vanished_vms().unwrap().is_empty(), "nothing written");
    assert_eq!(
        events(&l.db).last().map(String::as_str),
        Some("ACTIVITY_FAILED")
    );
}
