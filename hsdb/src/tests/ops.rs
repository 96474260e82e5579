//! The executor's durable state (schema v8): owed cleanups, operator requests, hosts in
//! maintenance, restarts with their causes.

use super::*;
use crate::{Error, RelocationKind, RequestKind, RequestState, VmSettings};

fn add_vm(f: &mut Fixture) {
    f.db.set_vm(
        &vm1(),
        &VmSettings {
            managed: Some(true),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("set_vm");
}

both!(test_owed_cleanup_survives_and_ends_once);
fn test_owed_cleanup_survives_and_ends_once() {
    let mut f = Fixture::new();
    add_vm(&mut f);
    let r =
        f.db.relocation_begin(
            &vm1(),
            Some(HOST_A),
            Some(HOST_B),
            RelocationKind::Relocate,
            T0,
        )
        .expect("begin");
    let id =
        f.db.owe_cleanup(HOST_A, &vm1(), Some(r), "host-a unreachable", T0 + 1)
            .expect("owe");
    // Owing it again is the same row.
    assert_eq!(
        f.db.owe_cleanup(HOST_A, &vm1(), Some(r), "again", T0 + 2)
            .expect("owe again"),
        id
    );
    f.db.owed_cleanup_failed(id, "host lost", T0 + 3)
        .expect("failed");
    let open = f.db.owed_cleanups(Some(HOST_A)).expect("owed");
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].vm, open[0].relocation, open[0].attempts),
        (vm1(), Some(r), 1)
    );
    assert_eq!(open[0].last_error.as_deref(), Some("host lost"));
    assert!(f.db.owed_cleanups(Some(HOST_B)).expect("none").is_empty());
    f.db.owed_cleanup_done(id, "stopped and cleaned", T0 + 4)
        .expect("done");
    assert!(f.db.owed_cleanups(None).expect("none left").is_empty());
    // Done once: a second end is refused, the history keeps the result.
    assert!(matches!(
        f.db.owed_cleanup_done(id, "again", T0 + 5),
        Err(Error::NotFound { .. })
    ));
    let h = f.db.cleanup_history(&vm1(), 10).expect("history");
    assert_eq!(h[0].result.as_deref(), Some("stopped and cleaned"));
    assert_eq!((h[0].done_ms, h[0].attempts), (Some(T0 + 4), 2));
}

both!(test_operator_request_lifecycle);
fn test_operator_request_lifecycle() {
    let mut f = Fixture::new();
    assert!(matches!(
        f.db.request_operation("hg", RequestKind::Evacuate, HostId(999), "op", T0),
        Err(Error::NotFound { what: "host", .. })
    ));
    let id =
        f.db.request_operation("hg", RequestKind::Evacuate, HOST_A, "op@box", T0)
            .expect("request");
    let open = f.db.open_operator_requests("hg").expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].kind, open[0].state, open[0].host),
        (RequestKind::Evacuate, RequestState::Pending, HOST_A)
    );
    assert!(
        f.db.open_operator_requests("other")
            .expect("none")
            .is_empty()
    );
    f.db.update_operator_request(id, RequestState::Running, "1 of 2 moved", None, T0 + 10)
        .expect("running");
    f.db.update_operator_request(id, RequestState::Running, "2 of 2 moved", None, T0 + 20)
        .expect("running");
    let r = f.db.operator_request(id).expect("read").expect("row");
    assert_eq!((r.started_ms, r.ended_ms), (Some(T0 + 10), None));
    assert_eq!(r.progress, "2 of 2 moved");
    f.db.update_operator_request(id, RequestState::Done, "done", Some("2 VMs moved"), T0 + 30)
        .expect("done");
    let r = f.db.operator_request(id).expect("read").expect("row");
    assert_eq!(r.state, RequestState::Done);
    assert_eq!(
        (r.ended_ms, r.result.as_deref()),
        (Some(T0 + 30), Some("2 VMs moved"))
    );
    assert!(f.db.open_operator_requests("hg").expect("none").is_empty());
    assert_eq!(f.db.operator_requests_of(HOST_A, 5).expect("of").len(), 1);
    // Maintenance.
    f.db.set_host_maintenance(HOST_A, Some(T0 + 25), Some(id))
        .expect("maintenance");
    f.db.set_host_maintenance(HOST_A, Some(T0 + 26), Some(id))
        .expect("again");
    assert_eq!(
        f.db.hosts_in_maintenance().expect("list"),
        vec![(HOST_A, T0 + 25)]
    );
    f.db.set_host_maintenance(HOST_A, None, None).expect("end");
    assert!(f.db.hosts_in_maintenance().expect("list").is_empty());
}

both!(test_restarts_since_with_causes);
fn test_restarts_since_with_causes() {
    let mut f = Fixture::new();
    add_vm(&mut f);
    for (i, cause) in ["vm_failure", "host_failure", "app_restart"]
        .iter()
        .enumerate()
    {
        let at = T0 + 1_000 * i64::try_from(i).expect("small");
        let id =
            f.db.relocation_begin(
                &vm1(),
                Some(HOST_A),
                Some(HOST_B),
                RelocationKind::Relocate,
                at,
            )
            .expect("begin");
        f.db.relocation_phase(id, &format!("cause {cause}"), at)
            .expect("cause");
        f.db.relocation_phase(id, "queued", at).expect("queued");
        if i == 0 {
            f.db.relocation_end(id, "success", at + 1).expect("end");
        }
    }
    let all = f.db.restarts_since(Some(&vm1()), T0, 10).expect("all");
    let causes: Vec<Option<&str>> = all.iter().map(|r| r.cause.as_deref()).collect();
    assert_eq!(
        causes,
        vec![
            Some("app_restart"),
            Some("host_failure"),
            Some("vm_failure")
        ]
    );
    assert_eq!(all[2].result.as_deref(), Some("success"));
    let recent = f.db.restarts_since(None, T0 + 1_000, 10).expect("recent");
    assert_eq!(recent.len(), 2);
}

/// A managed VM 1 on host A.
fn add_vm_on_a(f: &mut Fixture) {
    add_vm(f);
    f.exec(
        "UPDATE vm SET current_host = ?1, state = 'STARTED' WHERE uuid = ?2",
        crate::db::params![HOST_A, vm1().to_string()],
    );
}

both!(test_move_request_lifecycle);
fn test_move_request_lifecycle() {
    let mut f = Fixture::new();
    // Unknown VM, VM on no host, unknown target: refused, nothing written.
    assert!(matches!(
        f.db.request_move("hg1", &vm1(), None, "cli:op", T0),
        Err(Error::NotFound { what: "vm", .. })
    ));
    add_vm(&mut f);
    assert!(matches!(
        f.db.request_move("hg1", &vm1(), None, "cli:op", T0),
        Err(Error::NotFound {
            what: "current host of vm",
            ..
        })
    ));
    f.exec(
        "UPDATE vm SET current_host = ?1, state = 'STARTED' WHERE uuid = ?2",
        crate::db::params![HOST_A, vm1().to_string()],
    );
    assert!(matches!(
        f.db.request_move("hg1", &vm1(), Some(HostId(999)), "cli:op", T0),
        Err(Error::NotFound { what: "host", .. })
    ));
    assert!(f.db.open_operator_requests("hg1").expect("open").is_empty());
    // To a named host, then to the planner's best.
    let named =
        f.db.request_move("hg1", &vm1(), Some(HOST_B), "cli:op", T0 + 1)
            .expect("move to B");
    let best =
        f.db.request_move("hg1", &vm1(), None, "dashboard:alice", T0 + 2)
            .expect("move anywhere");
    let open = f.db.open_operator_requests("hg1").expect("open");
    assert_eq!(
        open.iter()
            .map(|r| (r.id, r.kind, r.host, r.vm, r.target_host, r.state))
            .collect::<Vec<_>>(),
        [
            (
                named,
                RequestKind::Move,
                HOST_A,
                Some(vm1()),
                Some(HOST_B),
                RequestState::Pending
            ),
            (
                best,
                RequestKind::Move,
                HOST_A,
                Some(vm1()),
                None,
                RequestState::Pending
            ),
        ]
    );
    assert_eq!(open[1].requested_by, "dashboard:alice");
    f.db.update_operator_request(named, RequestState::Done, "moved", Some("moved"), T0 + 3)
        .expect("done");
    let of_vm = f.db.move_requests_of(&vm1(), 10).expect("of vm");
    assert_eq!(
        of_vm.iter().map(|r| r.id).collect::<Vec<_>>(),
        [best, named]
    );
    // The other kinds carry no VM.
    let evac =
        f.db.request_operation("hg1", RequestKind::Evacuate, HOST_B, "op", T0 + 4)
            .expect("evacuate");
    let r = f.db.operator_request(evac).expect("read").expect("row");
    assert_eq!((r.vm, r.target_host), (None, None));
    // The schema keeps the columns consistent with the kind.
    for sql in [
        "INSERT INTO operator_request (host_group, kind, host, requested_by, created_ms, \
         state) VALUES ('hg1', 'MOVE', ?1, 'x', 1, 'PENDING')",
        "INSERT INTO operator_request (host_group, kind, host, requested_by, created_ms, \
         state, target_host) VALUES ('hg1', 'EVACUATE', ?1, 'x', 1, 'PENDING', ?1)",
    ] {
        assert!(
            f.db.conn
                .execute("test", sql, crate::db::params![HOST_A])
                .is_err(),
            "refused by the schema: {sql}"
        );
    }
}

both!(test_relocation_reasons_and_move_kind);
fn test_relocation_reasons_and_move_kind() {
    let mut f = Fixture::new();
    add_vm_on_a(&mut f);
    let reasons = "target host-b: most free capacity\nnot host-a: the VM's current host";
    let id =
        f.db.relocation_begin_explained(
            &vm1(),
            Some(HOST_A),
            Some(HOST_B),
            RelocationKind::Move,
            Some(reasons),
            T0,
        )
        .expect("begin");
    let row = f.db.relocation(id).expect("read").expect("row");
    assert_eq!(row.kind, RelocationKind::Move);
    assert_eq!(row.reasons.as_deref(), Some(reasons));
    assert_eq!(f.db.relocation_steps(id).expect("steps").len(), 1);
    // Without reasons, then stored once the target is chosen.
    let plain =
        f.db.relocation_begin(&vm1(), Some(HOST_A), None, RelocationKind::Relocate, T0 + 1)
            .expect("begin");
    assert_eq!(
        f.db.relocation(plain).expect("read").expect("row").reasons,
        None
    );
    f.db.relocation_reasons(plain, "target host-b")
        .expect("reasons");
    assert_eq!(
        f.db.relocations(Some(&vm1()), 1).expect("list")[0]
            .reasons
            .as_deref(),
        Some("target host-b")
    );
    assert!(matches!(
        f.db.relocation_reasons(9_999, "x"),
        Err(Error::NotFound { .. })
    ));
    // Bounded: a long text is cut at a character boundary, with a marker.
    let long = "é".repeat(crate::REASONS_MAX);
    f.db.relocation_reasons(plain, &long).expect("long reasons");
    let stored = f.db.relocation(plain).expect("read").expect("row").reasons;
    let stored = stored.expect("reasons kept");
    assert!(stored.len() <= crate::REASONS_MAX, "{}", stored.len());
    assert!(stored.ends_with("… (truncated)"), "{stored:?}");
    assert!(stored.starts_with("éé"));
    assert_eq!(crate::cap_reasons(reasons), reasons, "short text unchanged");
}
