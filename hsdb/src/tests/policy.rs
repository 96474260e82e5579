//! Relocation policies (schema v7): sets with members, exclusions, flexible capacity,
//! the caller's check inside the transaction, and writers serialised.

use super::*;
use crate::{Error, PolicyChange, PolicyKind, PolicyView, Priority, VmSettings};

/// Create VMs `vm_n(1..=n)` (managed, named `v<i>`, home host A).
fn vms(f: &mut Fixture, n: u32) {
    for i in 1..=n {
        f.db.set_vm(
            &vm_n(i),
            &VmSettings {
                managed: Some(true),
                name: Some(format!("v{i}")),
                home_host: Some(HOST_A),
                ..VmSettings::default()
            },
            T0,
        )
        .expect("set_vm");
    }
}

fn add(kind: PolicyKind, name: &str, members: &[u32]) -> PolicyChange {
    PolicyChange::AddSet {
        kind,
        name: name.to_owned(),
        host_group: "hg1".to_owned(),
        members: members.iter().map(|i| vm_n(*i)).collect(),
    }
}

both!(test_policy_sets_add_change_delete);
fn test_policy_sets_add_change_delete() {
    let mut f = Fixture::new();
    vms(&mut f, 4);
    assert_eq!(
        f.db.policy_apply(&add(PolicyKind::Collocation, "db", &[2, 1]), T0 + 1)
            .expect("add"),
        1
    );
    f.db.policy_apply(&add(PolicyKind::Anticollocation, "web", &[3, 4]), T0 + 2)
        .expect("add");
    // The same name is free for another kind.
    f.db.policy_apply(&add(PolicyKind::Workgroup, "db", &[1, 2, 3]), T0 + 3)
        .expect("add");
    let row =
        f.db.policy(PolicyKind::Collocation, "db")
            .expect("read")
            .expect("stored");
    assert_eq!(
        (
            row.kind,
            row.name.as_str(),
            row.host_group.as_str(),
            row.members.clone(),
            row.created_ms,
            row.updated_ms
        ),
        (
            PolicyKind::Collocation,
            "db",
            "hg1",
            vec![vm_n(2), vm_n(1)],
            T0 + 1,
            T0 + 1
        ),
        "members in the operator's order"
    );
    let all = f.db.policies(None).expect("list");
    let names: Vec<(PolicyKind, &str, usize)> = all
        .iter()
        .map(|p| (p.kind, p.name.as_str(), p.members.len()))
        .collect();
    assert_eq!(
        names,
        [
            (PolicyKind::Anticollocation, "web", 2),
            (PolicyKind::Collocation, "db", 2),
            (PolicyKind::Workgroup, "db", 3)
        ]
    );
    assert_eq!(f.db.policies(Some("hg2")).expect("list"), []);
    assert_eq!(f.db.policies(Some("hg1")).expect("list").len(), 3);

    // Adding an existing set is refused and changes nothing.
    let err =
        f.db.policy_apply(&add(PolicyKind::Collocation, "db", &[3]), T0 + 4)
            .expect_err("exists");
    assert!(
        matches!(&err, Error::Exists { what: "collocation", key } if key == "db"),
        "{err}"
    );
    assert_eq!(
        f.db.policy(PolicyKind::Collocation, "db")
            .expect("read")
            .expect("stored")
            .members,
        [vm_n(2), vm_n(1)]
    );
    // A VM twice in one set, an empty name: refused before any write.
    let err =
        f.db.policy_apply(&add(PolicyKind::Collocation, "twice", &[1, 1]), T0 + 4)
            .expect_err("duplicate");
    assert!(
        err.to_string().contains(&vm_n(1).to_string()),
        "names the VM: {err}"
    );
    let err =
        f.db.policy_apply(&add(PolicyKind::Collocation, "", &[1]), T0 + 4)
            .expect_err("empty name");
    assert!(matches!(err, Error::Options { .. }), "{err}");
    assert!(
        f.db.policy(PolicyKind::Collocation, "twice")
            .expect("read")
            .is_none()
    );

    // New members replace the old ones, in the new order.
    f.db.policy_apply(
        &PolicyChange::SetMembers {
            kind: PolicyKind::Collocation,
            name: "db".into(),
            members: vec![vm_n(4), vm_n(1), vm_n(3)],
        },
        T0 + 5,
    )
    .expect("set members");
    let row =
        f.db.policy(PolicyKind::Collocation, "db")
            .expect("read")
            .expect("stored");
    assert_eq!(
        (row.members, row.created_ms, row.updated_ms),
        (vec![vm_n(4), vm_n(1), vm_n(3)], T0 + 1, T0 + 5)
    );
    let err =
        f.db.policy_apply(
            &PolicyChange::SetMembers {
                kind: PolicyKind::Anticollocation,
                name: "nope".into(),
                members: vec![],
            },
            T0 + 6,
        )
        .expect_err("no such set");
    assert!(
        matches!(&err, Error::NotFound { what: "anticollocation", key } if key == "nope"),
        "{err}"
    );

    // Delete: gone with its members; deleting again is NotFound.
    let delete = PolicyChange::DeleteSet {
        kind: PolicyKind::Collocation,
        name: "db".into(),
    };
    assert_eq!(f.db.policy_apply(&delete, T0 + 7).expect("delete"), 1);
    assert!(
        f.db.policy(PolicyKind::Collocation, "db")
            .expect("read")
            .is_none()
    );
    assert!(matches!(
        f.db.policy_apply(&delete, T0 + 8),
        Err(Error::NotFound { .. })
    ));
    let members = f.int(
        "SELECT COUNT(*) FROM policy_member m JOIN policy p ON p.id = m.policy \
         WHERE p.kind = 'COLLOCATION'",
        params_none(),
    );
    assert_eq!(members, 0);
    // The workgroup of the same name is untouched.
    assert_eq!(
        f.db.policy(PolicyKind::Workgroup, "db")
            .expect("read")
            .expect("stored")
            .members
            .len(),
        3
    );
}

fn params_none() -> &'static [&'static dyn crate::db::Param] {
    &[]
}

both!(test_policy_check_sees_the_change_and_refusal_rolls_back);
fn test_policy_check_sees_the_change_and_refusal_rolls_back() {
    let mut f = Fixture::new();
    vms(&mut f, 3);
    f.db.policy_apply(&add(PolicyKind::Collocation, "pair", &[1, 2]), T0)
        .expect("add");
    let before = f.db.policy_view().expect("view");

    // The check sees the store as it would be committed: the new set and its members.
    let mut seen: Option<PolicyView> = None;
    let outcome =
        f.db.policy_change(
            &add(PolicyKind::Anticollocation, "apart", &[1, 2]),
            T0 + 1,
            |view| {
                seen = Some(view.clone());
                Err(format!("{} sets", view.sets.len()))
            },
        )
        .expect("no store error");
    assert_eq!(outcome, Err("2 sets".to_string()));
    let seen = seen.expect("check ran");
    assert!(
        seen.sets
            .iter()
            .any(|s| s.name == "apart" && s.members == [vm_n(1), vm_n(2)]),
        "{seen:?}"
    );
    assert_eq!(seen.vms.len(), 3);
    assert_eq!(seen.hosts.len(), 2);
    // Refused: nothing stored.
    assert_eq!(f.db.policy_view().expect("view"), before);

    // Refused exclusions and flexible capacity leave nothing either.
    for change in [
        PolicyChange::AddExclusions {
            vm: vm_n(3),
            hosts: vec![HOST_A, HOST_B],
        },
        PolicyChange::SetFlexible {
            host_group: "hg1".into(),
            priority: Priority::Low,
            cpu_pct: Some(50),
            memory_pct: None,
        },
        PolicyChange::DeleteSet {
            kind: PolicyKind::Collocation,
            name: "pair".into(),
        },
    ] {
        let outcome =
            f.db.policy_change(&change, T0 + 2, |_| Err("no"))
                .expect("no store error");
        assert_eq!(outcome, Err("no"), "{change:?}");
        assert_eq!(f.db.policy_view().expect("view"), before, "{change:?}");
    }

    // Accepted: committed, and the count of rows changed.
    let outcome =
        f.db.policy_change(
            &PolicyChange::AddExclusions {
                vm: vm_n(3),
                hosts: vec![HOST_B],
            },
            T0 + 3,
            |view| {
                if view.exclusions.len() == 1 {
                    Ok(())
                } else {
                    Err("the check must see the new exclusion")
                }
            },
        )
        .expect("store");
    assert_eq!(outcome, Ok(1));
    assert_eq!(f.db.exclusions(None).expect("read").len(), 1);
}

both!(test_exclusions);
fn test_exclusions() {
    let mut f = Fixture::new();
    vms(&mut f, 2);
    let add_ex = |vm, hosts: &[HostId]| PolicyChange::AddExclusions {
        vm,
        hosts: hosts.to_vec(),
    };
    assert_eq!(
        f.db.policy_apply(&add_ex(vm_n(1), &[HOST_B, HOST_A]), T0)
            .expect("add"),
        2
    );
    // Adding again adds nothing; the list is by host id.
    assert_eq!(
        f.db.policy_apply(&add_ex(vm_n(1), &[HOST_B]), T0)
            .expect("add"),
        0
    );
    let hosts: Vec<HostId> =
        f.db.exclusions(Some(&vm_n(1)))
            .expect("read")
            .iter()
            .map(|e| e.host)
            .collect();
    assert_eq!(hosts, [HOST_A, HOST_B]);
    assert_eq!(f.db.exclusions(Some(&vm_n(2))).expect("read"), []);

    // An unknown host or VM is refused and nothing of the change is kept.
    let err =
        f.db.policy_apply(&add_ex(vm_n(2), &[HOST_B, HostId(999)]), T0)
            .expect_err("unknown host");
    assert!(
        matches!(&err, Error::NotFound { what: "host", key } if key == "999"),
        "{err}"
    );
    assert_eq!(f.db.exclusions(Some(&vm_n(2))).expect("read"), []);
    let err =
        f.db.policy_apply(&add_ex(vm_n(77), &[HOST_B]), T0)
            .expect_err("unknown vm");
    assert!(matches!(&err, Error::NotFound { what: "vm", .. }), "{err}");

    // Delete: only what was excluded counts.
    let deleted =
        f.db.policy_apply(
            &PolicyChange::DeleteExclusions {
                vm: vm_n(1),
                hosts: vec![HOST_A, HostId(999)],
            },
            T0,
        )
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(f.db.exclusions(None).expect("read").len(), 1);

    // A VM that goes (pruned: unmanaged, unwatched) takes its exclusions with it; a
    // set keeps naming it, for the control plane to report.
    f.db.policy_apply(&add(PolicyKind::Anticollocation, "ab", &[1, 2]), T0)
        .expect("set");
    f.db.set_vm(
        &vm_n(1),
        &VmSettings {
            managed: Some(false),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("release");
    assert_eq!(f.db.prune_vms(T0 + 1).expect("prune"), 1);
    assert_eq!(f.db.exclusions(None).expect("read"), []);
    assert_eq!(
        f.db.policy(PolicyKind::Anticollocation, "ab")
            .expect("read")
            .expect("stored")
            .members,
        [vm_n(1), vm_n(2)]
    );
}

both!(test_flexible_capacity);
fn test_flexible_capacity() {
    let mut f = Fixture::new();
    let set = |priority, cpu: Option<u8>, mem: Option<u8>| PolicyChange::SetFlexible {
        host_group: "hg1".into(),
        priority,
        cpu_pct: cpu,
        memory_pct: mem,
    };
    // A new row: the other percent starts at 100.
    f.db.policy_apply(&set(Priority::Low, Some(50), None), T0)
        .expect("set");
    f.db.policy_apply(&set(Priority::High, None, Some(80)), T0)
        .expect("set");
    // An existing row: only what is given changes.
    f.db.policy_apply(&set(Priority::Low, None, Some(60)), T0)
        .expect("set");
    let rows: Vec<(String, Priority, u8, u8)> =
        f.db.flexible_capacity(Some("hg1"))
            .expect("read")
            .into_iter()
            .map(|r| (r.host_group, r.priority, r.cpu_pct, r.memory_pct))
            .collect();
    assert_eq!(
        rows,
        [
            ("hg1".into(), Priority::High, 100, 80),
            ("hg1".into(), Priority::Low, 50, 60)
        ]
    );
    assert_eq!(f.db.flexible_capacity(Some("hg2")).expect("read"), []);
    // Out of range: refused, naming the value; the row is unchanged.
    for (cpu, mem, bad) in [(Some(0), None, "0"), (None, Some(101), "101")] {
        let err =
            f.db.policy_apply(&set(Priority::Low, cpu, mem), T0)
                .expect_err("out of range");
        assert!(
            matches!(&err, Error::Options { value, .. } if value == bad),
            "{err}"
        );
    }
    // The schema refuses it too (a writer that bypasses the API).
    let refused = f.db.conn.execute(
        "test",
        "UPDATE flexible_capacity SET cpu_pct = 0",
        params_none(),
    );
    assert!(refused.is_err(), "CHECK 1..100");
    assert_eq!(f.db.flexible_capacity(None).expect("read").len(), 2);
    // Unset: back to no row (100 %).
    let unset = PolicyChange::UnsetFlexible {
        host_group: "hg1".into(),
        priority: Priority::Low,
    };
    assert_eq!(f.db.policy_apply(&unset, T0).expect("unset"), 1);
    assert_eq!(f.db.policy_apply(&unset, T0).expect("unset"), 0);
    assert_eq!(f.db.flexible_capacity(None).expect("read").len(), 1);
}

both!(test_policy_writers_are_serialised);
/// Two writers each add an anticollocation of the same pair, each with a check that
/// refuses a second set of that pair: exactly one is stored (the check of the second
/// sees the first's commit, not the snapshot before it).
fn test_policy_writers_are_serialised() {
    let mut f = Fixture::new();
    vms(&mut f, 2);
    let target = f.target();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let target = target.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut db = Hsdb::connect(&target, &Options::default()).expect("connect");
                barrier.wait();
                db.policy_change(
                    &add(PolicyKind::Anticollocation, &format!("apart{i}"), &[1, 2]),
                    T0,
                    |view| {
                        let pairs = view
                            .sets
                            .iter()
                            .filter(|s| s.members.contains(&vm_n(1)))
                            .count();
                        if pairs > 1 { Err(pairs) } else { Ok(()) }
                    },
                )
                .expect("no store error")
            })
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(f.db.policies(None).expect("list").len(), 1);
}

/// After v7 migrated the v1 `policy` rows of the migration tests (open.rs, postgres.rs):
/// set 5 `pair` with members `…ed7` (in hg7, its home host's group) and `…ed8`, set 8
/// `lone` (its member has no row: group ''), exclusion row 6 dropped; a new set gets an
/// id above 8.
pub(super) fn check_v1_policies_migrated(db: &mut Hsdb) {
    let ed = |last: &str| uuid(&format!("61be20f0-09a8-4753-b5e5-564f8a545e{last}"));
    let sets: Vec<(i64, PolicyKind, String, String, Vec<Uuid>)> = db
        .policies(None)
        .expect("policies")
        .into_iter()
        .map(|p| (p.id, p.kind, p.name, p.host_group, p.members))
        .collect();
    assert_eq!(
        sets,
        [
            (
                5,
                PolicyKind::Collocation,
                "pair".into(),
                "hg7".into(),
                vec![ed("d7"), ed("d8")]
            ),
            (
                8,
                PolicyKind::Workgroup,
                "lone".into(),
                "".into(),
                vec![ed("d8")]
            ),
        ]
    );
    db.policy_apply(
        &PolicyChange::AddSet {
            kind: PolicyKind::Anticollocation,
            name: "new".into(),
            host_group: "hg7".into(),
            members: vec![ed("d7")],
        },
        1,
    )
    .expect("add after migration");
    let id = db
        .policy(PolicyKind::Anticollocation, "new")
        .expect("read")
        .expect("stored")
        .id;
    assert!(id > 8, "{id}");
}
