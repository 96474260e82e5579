#![allow(clippy::unwrap_used)]

use hsdb::{DetectionSpeed, Exclusion, FlexRow, VmState};

use super::*;

fn uuid(i: u8) -> Uuid {
    Uuid([i; 16])
}

fn host(id: i64, name: &str, group: &str, cpus: u32, gib: u32) -> HostRecord {
    HostRecord {
        id: HostId(id),
        name: name.into(),
        machine_type: String::new(),
        model: String::new(),
        serial: String::new(),
        cpu_milli: cpus * 1000,
        memory_mb: gib * 1024,
        host_group: group.into(),
    }
}

fn vm(i: u8, name: &str, host: i64, cpus: u32, gib: u32, priority: Priority) -> VmRow {
    VmRow {
        uuid: uuid(i),
        name: name.into(),
        current_host: Some(HostId(host)),
        home_host: Some(HostId(host)),
        state: VmState::Started,
        managed: true,
        ha_monitor: true,
        priority,
        detection_speed: DetectionSpeed::Normal,
        cpu_milli: cpus * 1000,
        memory_mb: gib * 1024,
        ostype: None,
        agent_versions: None,
        short_msg: 0,
        updated_ms: 0,
    }
}

fn set(id: i64, kind: PolicyKind, name: &str, group: &str, members: &[u8]) -> PolicyRow {
    PolicyRow {
        id,
        kind,
        name: name.into(),
        host_group: group.into(),
        members: members.iter().map(|i| uuid(*i)).collect(),
        created_ms: 0,
        updated_ms: 0,
    }
}

/// hg1: h1, h2, h3 (16 CPUs, 64 GiB each); hg2: h9. VMs a..d on h1 (2 CPUs, 8 GiB,
/// Medium), e on h9.
fn view() -> PolicyView {
    PolicyView {
        hosts: vec![
            host(1, "h1", "hg1", 16, 64),
            host(2, "h2", "hg1", 16, 64),
            host(3, "h3", "hg1", 16, 64),
            host(9, "h9", "hg2", 16, 64),
        ],
        vms: vec![
            vm(1, "a", 1, 2, 8, Priority::Medium),
            vm(2, "b", 1, 2, 8, Priority::Medium),
            vm(3, "c", 1, 2, 8, Priority::Medium),
            vm(4, "d", 1, 2, 8, Priority::Medium),
            vm(5, "e", 9, 2, 8, Priority::Medium),
        ],
        ..PolicyView::default()
    }
}

fn texts(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

#[test]
fn test_valid_sets_have_no_problem() {
    let mut v = view();
    v.sets = vec![
        set(1, PolicyKind::Collocation, "db", "hg1", &[1, 2]),
        set(2, PolicyKind::Anticollocation, "web", "hg1", &[1, 3]),
        set(3, PolicyKind::Workgroup, "wg", "hg1", &[3, 4]),
        set(4, PolicyKind::Anticollocation, "web2", "hg1", &[2, 4]),
    ];
    v.exclusions = vec![Exclusion {
        vm: uuid(1),
        host: HostId(2),
    }];
    assert_eq!(texts(&check(&v, None)), Vec::<String>::new());
    let loaded = build(&v, "hg1");
    assert_eq!(loaded.problems, Vec::<String>::new());
    let p = &loaded.policies;
    assert_eq!(
        p.collocations,
        [VmSet {
            name: "db".into(),
            members: vec![uuid(1), uuid(2)]
        }]
    );
    assert_eq!(
        p.anticollocations
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["web", "web2"]
    );
    assert_eq!(p.workgroups.len(), 1);
    assert_eq!(p.exclusions.get(&uuid(1)), Some(&vec![HostId(2)]));
    // The other group gets none of it.
    assert_eq!(build(&v, "hg2").policies, Policies::default());
}

#[test]
fn test_collocated_and_apart_names_both_sets_and_vms() {
    let mut v = view();
    v.sets = vec![
        set(1, PolicyKind::Collocation, "db", "hg1", &[1, 2, 3]),
        set(2, PolicyKind::Anticollocation, "apart", "hg1", &[3, 1]),
    ];
    let problems = check(&v, None);
    assert_eq!(
        texts(&problems),
        [format!(
            "a ({}) and c ({}) are in collocation \"db\" (always on one host) and in \
             anticollocation \"apart\" (never on one host)",
            uuid(1),
            uuid(3)
        )]
    );
    let touched = Subject::Set(SetRef {
        kind: PolicyKind::Anticollocation,
        name: "apart".into(),
    });
    assert!(problems[0].concerns(&touched, &v.sets));
    assert!(problems[0].refuses(true));
    // One shared VM is no conflict: a and d apart, a with b.
    v.sets[1].members = vec![uuid(1), uuid(4)];
    assert_eq!(texts(&check(&v, None)), Vec::<String>::new());
}

#[test]
fn test_vm_in_two_collocations_or_workgroups() {
    let mut v = view();
    v.sets = vec![
        set(1, PolicyKind::Collocation, "x", "hg1", &[1, 2]),
        set(2, PolicyKind::Collocation, "y", "hg1", &[3, 2]),
        set(3, PolicyKind::Workgroup, "w1", "hg1", &[1, 4]),
        set(4, PolicyKind::Workgroup, "w2", "hg1", &[4, 3]),
        // Two anticollocations may share a VM.
        set(5, PolicyKind::Anticollocation, "p", "hg1", &[1, 3]),
        set(6, PolicyKind::Anticollocation, "q", "hg1", &[1, 4]),
    ];
    let t = texts(&check(&v, None));
    assert_eq!(
        t,
        [
            format!(
                "b ({}) is in collocation \"x\" and in collocation \"y\": a VM is in at most \
                 one collocation (make them one)",
                uuid(2)
            ),
            format!(
                "d ({}) is in workgroup \"w1\" and in workgroup \"w2\": a VM is in at most \
                 one workgroup (make them one)",
                uuid(4)
            ),
        ]
    );
    // The engine hands both over: the planner joins sets of one kind sharing a VM.
    let loaded = build(&v, "hg1");
    let names = |s: &[VmSet]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&loaded.policies.collocations), ["x", "y"]);
    assert_eq!(names(&loaded.policies.workgroups), ["w1", "w2"]);
    assert_eq!(names(&loaded.policies.anticollocations), ["p", "q"]);
    assert!(
        loaded.problems[0].ends_with("; planned as one (the planner joins them)"),
        "{:?}",
        loaded.problems
    );
}

#[test]
fn test_collocation_that_never_fits() {
    let mut v = view();
    // 3 × 8 GiB = 24 GiB fits a 64 GiB host; 3 × 30 GiB does not.
    for vm in &mut v.vms[..3] {
        vm.memory_mb = 30 * 1024;
    }
    v.sets = vec![set(1, PolicyKind::Collocation, "big", "hg1", &[1, 2, 3])];
    let t = texts(&check(&v, None));
    assert_eq!(
        t,
        [
            "collocation \"big\" can never fit: together its members need 6 CPUs and 92160 MiB \
          (at flexible capacity), more than any host of its group that none of them excludes: \
          h1 (16 CPUs, 65536 MiB), h2 (16 CPUs, 65536 MiB), h3 (16 CPUs, 65536 MiB)"
        ]
    );
    // Flexible capacity of their priority: 70 % of 90 GiB = 63 GiB fits.
    v.flexible = vec![FlexRow {
        host_group: "hg1".into(),
        priority: Priority::Medium,
        cpu_pct: 100,
        memory_pct: 70,
    }];
    assert_eq!(texts(&check(&v, None)), Vec::<String>::new());
    // Its members' exclusions together leave no host.
    v.exclusions = [(1, 1), (2, 2), (3, 3)]
        .iter()
        .map(|&(vm, h)| Exclusion {
            vm: uuid(vm),
            host: HostId(h),
        })
        .collect();
    let problems = check(&v, None);
    assert!(
        problems.iter().any(|p| p.to_string()
            == "collocation \"big\" can never fit: no host of its group is left once its \
                members' exclusions are applied"),
        "{problems:?}"
    );
    // It concerns each member's exclusions and the group's flexible capacity.
    let never = problems
        .iter()
        .find(|p| matches!(p, Problem::NeverFits { .. }))
        .unwrap();
    assert!(never.concerns(&Subject::Vm(uuid(2)), &v.sets));
    assert!(!never.concerns(&Subject::Vm(uuid(4)), &v.sets));
    assert!(never.concerns(&Subject::Group("hg1".into()), &v.sets));
    assert!(!never.concerns(&Subject::Group("hg2".into()), &v.sets));
    // The engine hands it to the planner anyway (which reports it unplaced).
    let loaded = build(&v, "hg1");
    assert_eq!(loaded.policies.collocations.len(), 1);
    assert!(loaded.problems.iter().any(|p| p.contains("never fit")));
}

#[test]
fn test_anticollocation_and_the_number_of_hosts() {
    let mut v = view();
    v.sets = vec![set(
        1,
        PolicyKind::Anticollocation,
        "all",
        "hg1",
        &[1, 2, 3, 4],
    )];
    let problems = check(&v, None);
    assert_eq!(
        texts(&problems),
        [
            "anticollocation \"all\" has 4 members but its group has 3 hosts: they can never all \
          run apart"
        ]
    );
    assert!(problems[0].refuses(true));
    v.sets[0].members.pop();
    let problems = check(&v, None);
    assert_eq!(problems.len(), 1);
    assert!(matches!(
        problems[0],
        Problem::ApartNoSpareHost { hosts: 3, .. }
    ));
    assert!(!problems[0].refuses(false), "a warning");
    v.sets[0].members.pop();
    assert_eq!(check(&v, None), []);
}

#[test]
fn test_mixed_priorities() {
    let mut v = view();
    v.vms[1].priority = Priority::High;
    v.sets = vec![
        set(1, PolicyKind::Collocation, "db", "hg1", &[1, 2]),
        set(2, PolicyKind::Workgroup, "wg", "hg1", &[2, 1]),
        set(3, PolicyKind::Anticollocation, "ok", "hg1", &[1, 2]),
    ];
    let t = texts(&check(&v, None));
    assert_eq!(
        t[0],
        format!(
            "collocation \"db\" mixes priorities (a ({}) MEDIUM, b ({}) HIGH): the members of \
             a collocation must have one priority",
            uuid(1),
            uuid(2)
        )
    );
    assert!(
        t[1].starts_with("workgroup \"wg\" mixes priorities"),
        "{t:?}"
    );
    // The collocation and anticollocation share a and b: that conflict too.
    assert_eq!(t.len(), 3, "{t:?}");
}

#[test]
fn test_exclusions_leaving_no_backup_host() {
    let mut v = view();
    v.exclusions = vec![
        Exclusion {
            vm: uuid(1),
            host: HostId(2),
        },
        Exclusion {
            vm: uuid(1),
            host: HostId(3),
        },
    ];
    let problems = check(&v, None);
    assert_eq!(
        texts(&problems),
        [format!(
            "no backup host will be left for VM a ({}): its exclusions name every host of \
             host group \"hg1\" but the one it runs on",
            uuid(1)
        )]
    );
    assert!(problems[0].refuses(false));
    assert!(!problems[0].refuses(true), "--force accepts it");
    assert!(problems[0].concerns(&Subject::Vm(uuid(1)), &v.sets));
    assert!(!problems[0].concerns(&Subject::Vm(uuid(2)), &v.sets));
    // Its home host excluded: a warning.
    v.exclusions.push(Exclusion {
        vm: uuid(1),
        host: HostId(1),
    });
    let problems = check(&v, Some("hg1"));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::HomeHostExcluded { host, .. } if host == "h1")),
        "{problems:?}"
    );
    // judge: with the VM as subject, refused unless forced; the home host a warning.
    let (refused, warned) = judge(&v, &[Subject::Vm(uuid(1))], false);
    assert_eq!((refused.len(), warned.len()), (1, 1));
    let (refused, warned) = judge(&v, &[Subject::Vm(uuid(1))], true);
    assert_eq!((refused.len(), warned.len()), (0, 2));
    // Another VM's change is not refused by a's problem.
    assert_eq!(judge(&v, &[Subject::Vm(uuid(2))], false), (vec![], vec![]));
}

#[test]
fn test_load_leaves_out_what_cannot_be_planned() {
    let mut v = view();
    v.sets = vec![
        // 77 is not a VM (pruned); e is in hg2.
        set(1, PolicyKind::Anticollocation, "web", "hg1", &[1, 77, 5, 2]),
        // Only one member left once 77 is gone.
        set(2, PolicyKind::Collocation, "gone", "hg1", &[77, 3]),
        // Conflicts with the earlier "web": left out.
        set(3, PolicyKind::Collocation, "late", "hg1", &[2, 1]),
    ];
    v.flexible = vec![FlexRow {
        host_group: "hg1".into(),
        priority: Priority::Low,
        cpu_pct: 50,
        memory_pct: 60,
    }];
    let loaded = build(&v, "hg1");
    assert_eq!(
        loaded.policies.anticollocations,
        [VmSet {
            name: "web".into(),
            members: vec![uuid(1), uuid(2)]
        }]
    );
    assert_eq!(loaded.policies.collocations, []);
    assert_eq!(
        loaded.policies.flexible.low,
        Flex {
            cpu_pct: 50,
            memory_pct: 60
        }
    );
    assert_eq!(loaded.policies.flexible.high, Flex::default());
    let p = loaded.problems.join("\n");
    for expected in [
        format!(
            "anticollocation \"web\": member {} is not a VM in the HSDB; planned without it",
            uuid(77)
        ),
        format!(
            "anticollocation \"web\" is in host group \"hg1\" but its member e ({}) is in host \
             group \"hg2\"; planned without it",
            uuid(5)
        ),
        "collocation \"gone\" has 1 plannable member(s) in host group \"hg1\": left out".to_owned(),
        "; collocation \"late\" left out (the later one), so its VMs are still restarted"
            .to_owned(),
    ] {
        assert!(p.contains(&expected), "{expected}\nnot in\n{p}");
    }
}

#[test]
fn test_describe_change() {
    let mut v = view();
    let before = build(&v, "hg1").policies;
    v.sets = vec![set(1, PolicyKind::Collocation, "db", "hg1", &[1, 2])];
    let after = build(&v, "hg1").policies;
    assert_eq!(
        describe_change(&before, &after),
        ["collocation \"db\" added (2 VMs)"]
    );
    assert_eq!(describe_change(&after, &after), Vec::<String>::new());
    assert_eq!(
        describe_change(&after, &before),
        ["collocation \"db\" removed"]
    );
}
