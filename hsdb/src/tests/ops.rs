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
