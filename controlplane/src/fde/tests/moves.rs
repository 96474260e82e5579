//! Moving one VM (MOVE operator requests) on the `sim` platform and a real HSDB: the
//! plan shown first (`relocate::plan_move`), the leader planning again and carrying it
//! out, each refusal with its reason; and every relocation's stored reasons, equal to
//! the `hactl relocate --dry-run` text for the same state.

use hsdb::{HostId, RelocationKind, RequestState};

use super::maintenance::{Bed, bed, bed_on};
use super::{T0, uuid};
use crate::clock::Clock;
use crate::fde::Verdict;
use crate::platform::Platform;
use crate::platform::sim::Call;
use crate::relocate::{MoveError, MovePlan, plan_move_against};

fn plan(b: &mut Bed, n: u8, to: Option<i64>) -> Result<MovePlan, MoveError> {
    let infos = b.platform.hosts().unwrap();
    let live = b.platform.live_migration();
    plan_move_against(
        &b.db,
        &infos,
        live,
        None,
        &uuid(n),
        to.map(HostId),
        b.clock.now_ms(),
    )
}

fn refused(r: Result<MovePlan, MoveError>) -> String {
    match r {
        Err(MoveError::Refused { why, .. }) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Move vm1 from host 1 to host 3 (named): the plan names host 3 and why not the other
/// hosts; the leader moves it by live migration; the MOVE relocation keeps the plan as
/// its reasons, the same text the plan showed; VM_MOVE_DONE; never a failure.
#[test]
fn test_move_to_a_named_host() {
    move_to_a_named_host(bed());
}

/// The same with the HSDB on PostgreSQL.
#[test]
fn test_move_to_a_named_host_on_postgres() {
    if let Some(b) = bed_on(Some("move_to_a_named_host")) {
        move_to_a_named_host(b);
    }
}

fn move_to_a_named_host(mut b: Bed) {
    b.run(&[1, 2, 3], T0 + 3_000);
    let p = plan(&mut b, 1, Some(3)).expect("plan");
    assert_eq!((p.from, p.to, p.live), (HostId(1), Some(HostId(3)), true));
    let text = p.explanation.join("\n");
    assert!(p.explanation[0].starts_with("vm1: to host-3 ("), "{text}");
    assert!(
        text.contains("    host-1  not eligible: the VM runs there now"),
        "{text}"
    );
    assert!(
        text.contains("    host-2  not eligible: not the host asked for"),
        "{text}"
    );
    assert_eq!(
        p.explanation.last().map(String::as_str),
        Some("moved by live migration")
    );
    let id =
        b.db.request_move("hg", &uuid(1), Some(HostId(3)), "cli:test", T0 + 3_000)
            .unwrap();
    b.run(&[1, 2, 3], T0 + 30_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    assert!(
        r.result
            .as_deref()
            .unwrap()
            .contains("VM vm1 moved from host host-1 to host host-3 by live migration"),
        "{r:?}"
    );
    {
        let w = b.platform.world();
        assert_eq!(w.vm_running_on(&uuid(1)), ["host-3"]);
        let calls: Vec<Call> = w.history().iter().map(|c| c.call).collect();
        assert_eq!(
            calls,
            [Call::Migrate, Call::Cleanup],
            "one live migration and the source's cleanup, no stop, no start"
        );
    }
    let rows = b.db.relocations(None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.kind, row.from_host, row.to_host),
        (RelocationKind::Move, Some(HostId(1)), Some(HostId(3)))
    );
    assert_eq!(
        row.result.as_deref(),
        Some("success (moved by live migration)")
    );
    assert_eq!(
        row.reasons.as_deref(),
        Some(text.as_str()),
        "the plan shown"
    );
    let steps: Vec<String> =
        b.db.relocation_steps(row.id)
            .unwrap()
            .into_iter()
            .map(|s| s.phase)
            .collect();
    assert!(steps.contains(&"cause move".to_owned()), "{steps:?}");
    assert!(steps.contains(&"migrating".to_owned()), "{steps:?}");
    let kinds = b.kinds();
    assert!(kinds.iter().any(|k| k == "VM_MOVE_DONE"), "{kinds:?}");
    for bad in [
        "VM_FAILURE_DETECTED",
        "HOST_FAILURE_DETECTED",
        "VM_MOVE_REFUSED",
    ] {
        assert!(!kinds.iter().any(|k| k == bad), "{bad} in {kinds:?}");
    }
    assert!(
        !b.fde
            .decisions()
            .iter()
            .any(|d| d.verdict == Verdict::Recover),
        "no failure decided"
    );
    // Done: a new plan is not held back by the finished move.
    assert!(plan(&mut b, 1, Some(2)).is_ok());
}

/// Without a target, the planner's best host: the plan and the leader agree on it and
/// on the text; without live migration the move is a stop and a start, and says so.
#[test]
fn test_move_to_the_best_host_by_stop_and_start() {
    let mut b = bed();
    b.platform.world().set_live_migration(false);
    b.run(&[1, 2, 3], T0 + 3_000);
    let p = plan(&mut b, 2, None).expect("plan");
    assert!(!p.live);
    let to = p.to.expect("a target");
    assert_ne!(to, HostId(1));
    assert_eq!(
        p.explanation.last().map(String::as_str),
        Some("moved by stop and start (the platform cannot live-migrate)")
    );
    let id =
        b.db.request_move("hg", &uuid(2), None, "cli:test", T0 + 3_000)
            .unwrap();
    b.run(&[1, 2, 3], T0 + 60_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    let to_name = format!("host-{}", to.0);
    assert_eq!(b.platform.world().vm_running_on(&uuid(2)), [to_name]);
    let calls: Vec<Call> = b
        .platform
        .world()
        .history()
        .iter()
        .map(|c| c.call)
        .collect();
    assert!(calls.contains(&Call::Stop) && calls.contains(&Call::Start));
    let row = &b.db.relocations(None, 1).unwrap()[0];
    assert_eq!((row.kind, row.to_host), (RelocationKind::Move, Some(to)));
    assert_eq!(row.reasons, Some(p.explanation.join("\n")));
}

/// Each refusal of the plan, with its reason; nothing written, nothing moved.
#[test]
fn test_move_refusals() {
    let mut b = bed();
    super::on_hsdb::managed_vm(&mut b.db, 4, 2, false);
    b.run(&[1, 2, 3], T0 + 3_000);
    // Unknown VM, unknown target.
    assert!(matches!(
        plan(&mut b, 9, None),
        Err(MoveError::NotFound { what: "VM", .. })
    ));
    assert!(matches!(
        plan(&mut b, 1, Some(99)),
        Err(MoveError::NotFound { what: "host", .. })
    ));
    // Not running: vm4 is in the HSDB but the platform runs it nowhere.
    let why = refused(plan(&mut b, 4, None));
    assert!(why.contains("VM vm4 is not running"), "{why}");
    // Unmanaged.
    b.db.set_vm(
        &uuid(3),
        &hsdb::VmSettings {
            managed: Some(false),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    let why = refused(plan(&mut b, 3, None));
    assert!(why.contains("VM vm3 is not managed"), "{why}");
    // The target is its own host.
    let why = refused(plan(&mut b, 1, Some(1)));
    assert!(why.contains("VM vm1 already runs on host host-1"), "{why}");
    // The target in maintenance.
    b.db.set_host_maintenance(HostId(3), Some(T0), None)
        .unwrap();
    let why = refused(plan(&mut b, 1, Some(3)));
    assert_eq!(why, "host host-3 cannot take VMs now: in maintenance");
    b.db.set_host_maintenance(HostId(3), None, None).unwrap();
    // Out of capacity on the target: the target's own reason, and the plan's lines.
    b.db.set_vm(
        &uuid(1),
        &hsdb::VmSettings {
            memory_mb: Some(20_000),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    match plan(&mut b, 1, Some(3)) {
        Err(MoveError::Refused { why, explanation }) => {
            assert!(
                why.starts_with("host host-3 cannot take it: no room: free cpu"),
                "{why}"
            );
            assert!(
                explanation[0].starts_with("vm1: nowhere — "),
                "{explanation:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    b.db.set_vm(
        &uuid(1),
        &hsdb::VmSettings {
            memory_mb: Some(1024),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    // A relocation in progress, then an open move request.
    let r =
        b.db.relocation_begin(
            &uuid(1),
            Some(HostId(1)),
            Some(HostId(2)),
            RelocationKind::Relocate,
            T0,
        )
        .unwrap();
    let why = refused(plan(&mut b, 1, None));
    assert!(
        why.contains("a relocation of VM vm1 is in progress"),
        "{why}"
    );
    b.db.relocation_end(r, "success", T0 + 1).unwrap();
    let id =
        b.db.request_move("hg", &uuid(1), None, "cli:test", T0 + 3_000)
            .unwrap();
    let why = refused(plan(&mut b, 1, Some(2)));
    assert_eq!(
        why,
        format!("move request {id} of VM vm1 is already PENDING (by cli:test)")
    );
    // A host that is down (powered off, its monitors silent) takes nothing.
    b.db.update_operator_request(id, RequestState::Refused, "x", Some("x"), T0 + 3_000)
        .unwrap();
    b.platform.world().host_power_off("host-3").unwrap();
    b.run(&[1, 2], T0 + 20_000);
    let why = refused(plan(&mut b, 1, Some(3)));
    assert!(
        why.starts_with("host host-3 cannot take VMs now: "),
        "{why}"
    );
    assert!(b.platform.world().vm_running_on(&uuid(1)) == ["host-1"]);
}

/// The state changed between the plan and the execution: the leader plans again and
/// refuses with the reason; nothing moves; VM_MOVE_REFUSED.
#[test]
fn test_move_refused_when_replanned_at_execution() {
    let mut b = bed();
    b.run(&[1, 2, 3], T0 + 3_000);
    plan(&mut b, 1, Some(3)).expect("the plan was fine");
    let id =
        b.db.request_move("hg", &uuid(1), Some(HostId(3)), "cli:test", T0 + 3_000)
            .unwrap();
    // Before the leader picks it up, host 3 enters maintenance.
    b.db.set_host_maintenance(HostId(3), Some(T0 + 3_000), None)
        .unwrap();
    b.run(&[1, 2, 3], T0 + 20_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Refused, "{r:?}");
    assert_eq!(
        r.result.as_deref(),
        Some("move of VM vm1 refused: host host-3 cannot take VMs now: in maintenance")
    );
    assert!(b.platform.world().history().is_empty(), "nothing moved");
    assert!(b.db.relocations(None, 10).unwrap().is_empty());
    let events = b.db.events_after(0, 10_000).unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "VM_MOVE_REFUSED")
        .expect("VM_MOVE_REFUSED");
    assert_eq!(e.vm, Some(uuid(1)));
}

/// A failure-driven relocation stores its decision's explanation, and it is the text
/// `hactl relocate --dry-run VM` prints for the same state (the platform's hosts and
/// the HSDB as they were when the engine decided).
#[test]
fn test_failure_relocation_reasons_equal_the_dry_run() {
    let mut b = bed();
    b.platform
        .world()
        .set_ping_address(&uuid(1), false)
        .unwrap();
    b.run(&[1, 2, 3], T0 + 3_000);
    // vm1's heartbeats stop reaching both monitors of host 1.
    let now = b.clock.now_ms();
    b.db.apply(&[
        hsdb::Transition::Missing {
            vm: uuid(1),
            hm: super::hm(1, 1),
            at: now,
        },
        hsdb::Transition::Missing {
            vm: uuid(1),
            hm: super::hm(1, 2),
            at: now,
        },
    ])
    .unwrap();
    let mut next_second = now;
    let mut found = None;
    while b.clock.now_ms() < T0 + 60_000 && found.is_none() {
        let now = b.clock.now_ms();
        if now >= next_second {
            super::on_hsdb::monitors_turn(&mut b.db, &[1, 2, 3], now);
            next_second = now + 1_000;
        }
        // The state the engine decides on, as the dry-run would read it now.
        let infos = b.platform.hosts().unwrap();
        let t = b.fde.tick(now, &mut b.db, &mut b.platform).unwrap();
        if let Some(row) = b.db.relocations(Some(&uuid(1)), 1).unwrap().pop() {
            let dry = crate::cli::relocate::dry_run_against(
                &b.db,
                &["vm1".to_owned()],
                &infos,
                None,
                now,
                crate::cli::Format::Table,
            )
            .unwrap();
            found = Some((row, dry));
        }
        b.clock.advance_to(t.next_wake_ms.min(next_second));
    }
    let (row, dry) = found.expect("relocated");
    assert_eq!(row.kind, RelocationKind::Relocate);
    let reasons = row.reasons.expect("reasons stored");
    assert!(reasons.starts_with("vm1: to host-"), "{reasons}");
    assert!(
        reasons.contains("host-1  the VM's failed source"),
        "{reasons}"
    );
    assert!(
        dry.contains(&format!("\n{reasons}\n")),
        "stored:\n{reasons}\n\ndry run:\n{dry}"
    );
}

/// An evacuation's relocations store the plan's explanation and how they move.
#[test]
fn test_evacuation_reasons_stored() {
    let mut b = bed();
    b.run(&[1, 2, 3], T0 + 3_000);
    let id =
        b.db.request_operation(
            "hg",
            hsdb::RequestKind::Evacuate,
            HostId(1),
            "test",
            T0 + 3_000,
        )
        .unwrap();
    b.run(&[1, 2, 3], T0 + 30_000);
    assert_eq!(
        b.db.operator_request(id).unwrap().unwrap().state,
        RequestState::Done
    );
    let rows = b.db.relocations(None, 10).unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let reasons = row.reasons.expect("reasons");
        let to = row.to_host.expect("target");
        let name =
            b.db.vm(&row.vm)
                .unwrap()
                .map(|v| v.name)
                .unwrap_or_default();
        assert!(
            reasons.starts_with(&format!("{name}: to host-{} (", to.0)),
            "{reasons}"
        );
        assert!(
            reasons.contains("    host-1  "),
            "why not host 1: {reasons}"
        );
        assert!(
            reasons.ends_with("\nplanned move by live migration"),
            "{reasons}"
        );
    }
}

/// A host failure's relocations store, for each VM, the block `hactl relocate --dry-run
/// HOST` prints for it in the same state.
#[test]
fn test_host_failure_reasons_equal_the_dry_run() {
    let mut b = bed();
    for n in 1..=2 {
        b.platform
            .world()
            .set_ping_address(&uuid(n), false)
            .unwrap();
    }
    b.run(&[1, 2, 3], T0 + 3_000);
    b.platform.world().host_power_off("host-1").unwrap();
    let mut next_second = b.clock.now_ms();
    let mut found = None;
    while b.clock.now_ms() < T0 + 120_000 && found.is_none() {
        let now = b.clock.now_ms();
        if now >= next_second {
            super::on_hsdb::monitors_turn(&mut b.db, &[2, 3], now);
            next_second = now + 1_000;
        }
        let infos = b.platform.hosts().unwrap();
        let t = b.fde.tick(now, &mut b.db, &mut b.platform).unwrap();
        let rows = b.db.relocations(None, 10).unwrap();
        if !rows.is_empty() {
            let dry = crate::cli::relocate::dry_run_against(
                &b.db,
                &["host-1".to_owned()],
                &infos,
                None,
                now,
                crate::cli::Format::Table,
            )
            .unwrap();
            found = Some((rows, dry));
        }
        b.clock.advance_to(t.next_wake_ms.min(next_second));
    }
    let (rows, dry) = found.expect("relocated");
    assert_eq!(rows.len(), 2, "both VMs of host 1 in one plan: {rows:?}");
    for row in rows {
        let reasons = row.reasons.expect("reasons stored");
        assert!(reasons.contains("    host-1  failed"), "{reasons}");
        assert!(
            dry.contains(&format!("\n{reasons}\n")),
            "stored:\n{reasons}\n\ndry run:\n{dry}"
        );
    }
}
