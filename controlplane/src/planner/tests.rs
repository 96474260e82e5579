#![allow(clippy::unwrap_used)]

use hsdb::{HostId, Priority, Uuid};

use super::*;

pub(super) fn vm(n: u16, priority: Priority, cpu: u32, mem: u32) -> VmToPlace {
    let mut u = [0u8; 16];
    u[..2].copy_from_slice(&n.to_be_bytes());
    VmToPlace {
        uuid: Uuid(u),
        name: format!("vm{n}"),
        priority,
        cpu_milli: cpu,
        memory_mb: mem,
        home: None,
        source: Some(HostId(1)),
        exclude: Vec::new(),
    }
}

pub(super) fn host(id: i64, cpu: u64, mem: u64) -> HostLoad {
    HostLoad {
        id: HostId(id),
        name: format!("h{id}"),
        eligible: true,
        why_not: String::new(),
        cpu_milli: cpu,
        memory_mb: mem,
        used_cpu_milli: 0,
        used_memory_mb: 0,
        running: Vec::new(),
        in_flight: 0,
    }
}

fn request(vms: Vec<VmToPlace>, hosts: Vec<HostLoad>) -> PlanRequest {
    PlanRequest {
        vms,
        hosts,
        failed: vec![HostId(1)],
        ..PlanRequest::default()
    }
}

fn set(name: &str, members: &[&VmToPlace]) -> VmSet {
    VmSet {
        name: name.into(),
        members: members.iter().map(|v| v.uuid).collect(),
    }
}

/// (VM name, host id or None) in plan order.
fn placed(req: &PlanRequest, plan: &Plan) -> Vec<(String, Option<i64>)> {
    plan.vms
        .iter()
        .map(|p| {
            (
                req.vms[p.vm].name.clone(),
                match p.placement {
                    Placement::Host { host, .. } => Some(host.0),
                    Placement::Nowhere(_) => None,
                },
            )
        })
        .collect()
}

fn host_of(plan: &Plan, v: &VmToPlace) -> Option<i64> {
    match plan.get(&v.uuid).unwrap().placement {
        Placement::Host { host, .. } => Some(host.0),
        Placement::Nowhere(_) => None,
    }
}

fn index_of(plan: &Plan, v: &VmToPlace) -> usize {
    plan.vms.iter().position(|p| p.uuid == v.uuid).unwrap()
}

#[test]
fn test_priority_order_then_best_fit() {
    let req = request(
        vec![
            vm(1, Priority::Low, 1000, 1000),
            vm(2, Priority::High, 1500, 1000),
            vm(3, Priority::Medium, 1000, 1000),
        ],
        vec![
            host(1, 8000, 8000),
            host(2, 2000, 2000),
            host(3, 4000, 4000),
        ],
    );
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(
        placed(&req, &plan),
        [
            // vm2 leaves 25% + 50% on h2, 62% + 75% on h3: h2.
            ("vm2".into(), Some(2)),
            // h2 has 500 milli left: h3.
            ("vm3".into(), Some(3)),
            ("vm1".into(), Some(3)),
        ]
    );
    let w = plan.why(&req, 0);
    assert!(
        w.starts_with("best fit: leaves cpu 500 milli (25%) / memory 1000 MiB (50%) free"),
        "{w}"
    );
    let not = plan.why_not(&req, 0);
    assert_eq!(not[0], ("h1".into(), "failed".into()));
    assert_eq!(
        not[1].1,
        "a worse fit: would leave cpu 2500 milli (62%) / memory 3000 MiB (75%) free vs 500 \
         (25%) / 1000 (50%) on h2"
    );
}

#[test]
fn test_an_equal_fit_is_explained_as_a_tie_not_a_worse_fit() {
    // h2 and h3 are alike: the planner's last criterion, the lower host id, picks h2, and
    // the explanation says so instead of calling h3 a worse fit with the same figures.
    let req = request(
        vec![vm(1, Priority::Medium, 1000, 512)],
        vec![
            host(1, 8000, 8000),
            host(2, 4000, 4096),
            host(3, 4000, 4096),
        ],
    );
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(placed(&req, &plan), [("vm1".into(), Some(2))]);
    let not = plan.why_not(&req, 0);
    assert_eq!(not[1].0, "h3");
    assert_eq!(
        not[1].1,
        "as good a fit: would leave cpu 3000 milli (75%) / memory 3584 MiB (87%) free, as on \
         h2; the tie goes to the lower host id (2 before 3)"
    );
    // A host left with less room is still a worse fit, with both figures.
    let req = request(
        vec![vm(1, Priority::Medium, 1000, 512)],
        vec![
            host(1, 8000, 8000),
            host(2, 4000, 4096),
            host(3, 8000, 4096),
        ],
    );
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(placed(&req, &plan), [("vm1".into(), Some(2))]);
    assert!(
        plan.why_not(&req, 0)[1]
            .1
            .starts_with("a worse fit: would leave cpu 7000 milli (87%)"),
        "{:?}",
        plan.why_not(&req, 0)
    );
}

#[test]
fn test_within_a_priority_larger_first_then_name() {
    let req = request(
        vec![
            vm(1, Priority::Medium, 1000, 1000),
            vm(2, Priority::Medium, 1000, 3000),
            vm(3, Priority::Medium, 2000, 1000),
            vm(4, Priority::Medium, 1000, 1000),
        ],
        vec![host(2, 64000, 64000)],
    );
    let plan = PolicyPlanner.plan(&req);
    let names: Vec<String> = placed(&req, &plan).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["vm2", "vm3", "vm1", "vm4"]);
}

#[test]
fn test_home_host_preferred_and_flexible_capacity_away_from_home() {
    let mut a = vm(1, Priority::Low, 2000, 4000);
    a.home = Some(HostId(3));
    let mut b = vm(2, Priority::Low, 2000, 4000);
    b.home = Some(HostId(1));
    let mut req = request(
        vec![a.clone(), b.clone()],
        vec![
            host(1, 64000, 64000),
            host(2, 2000, 4000),
            host(3, 64000, 64000),
        ],
    );
    req.policies.flexible.low = Flex {
        cpu_pct: 50,
        memory_pct: 25,
    };
    let plan = PolicyPlanner.plan(&req);
    // a: home h3 although h2 would be the better fit; nominal size there.
    let pa = plan.get(&a.uuid).unwrap();
    assert_eq!(
        pa.placement,
        Placement::Host {
            host: HostId(3),
            cpu_milli: 2000,
            memory_mb: 4000,
            wave: 0,
            why: Choice::Home
        }
    );
    let ia = index_of(&plan, &a);
    assert_eq!(plan.why(&req, ia), "home host");
    let not = plan.why_not(&req, ia);
    assert_eq!(
        not[1],
        (
            "h2".into(),
            "would fit; the home host h3 is preferred".into()
        )
    );
    // b: its home failed; away from home at 50% / 25%, best fit h2.
    let pb = plan.get(&b.uuid).unwrap();
    assert_eq!(
        pb.placement,
        Placement::Host {
            host: HostId(2),
            cpu_milli: 1000,
            memory_mb: 1000,
            wave: 0,
            why: Choice::BestFit
        }
    );
    let w = plan.why(&req, index_of(&plan, &b));
    assert!(
        w.contains(
            "flexible capacity (Low away from home: cpu 50%, memory 25%): cpu 1000 of 2000 \
             milli, memory 1000 of 4000 MiB"
        ),
        "{w}"
    );
}

#[test]
fn test_home_host_without_room_is_not_chosen() {
    let mut a = vm(1, Priority::High, 4000, 4000);
    a.home = Some(HostId(2));
    let req = request(
        vec![a.clone()],
        vec![
            host(1, 64000, 64000),
            host(2, 2000, 64000),
            host(3, 8000, 8000),
        ],
    );
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), Some(3));
    assert_eq!(
        plan.why_not(&req, 0)[1].1,
        "no room: free cpu 2000 milli / memory 64000 MiB, needs 4000 / 4000"
    );
}

#[test]
fn test_exclusions_source_engine_and_policy() {
    let mut a = vm(1, Priority::High, 100, 100);
    a.exclude = vec![HostId(2)];
    let mut req = request(
        vec![a.clone()],
        vec![
            host(1, 64000, 64000),
            host(2, 64000, 64000),
            host(3, 64000, 64000),
            host(4, 64000, 64000),
        ],
    );
    req.failed = vec![];
    req.policies
        .exclusions
        .insert(a.uuid, vec![HostId(3), HostId(99)]);
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), Some(4));
    let texts: Vec<String> = plan.why_not(&req, 0).into_iter().map(|x| x.1).collect();
    assert_eq!(
        texts,
        [
            "the VM's failed source",
            "a start of the VM failed there",
            "on the VM's host exclusion list"
        ]
    );
    // Excluding the last host too: nowhere, with every reason.
    req.policies
        .exclusions
        .insert(a.uuid, vec![HostId(3), HostId(4)]);
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), None);
    assert_eq!(
        plan.why(&req, 0),
        "no host can take it: h1: the VM's failed source; h2: a start of the VM failed there; \
         h3: on the VM's host exclusion list; h4: on the VM's host exclusion list"
    );
}

#[test]
fn test_not_eligible_and_empty_group() {
    let a = vm(1, Priority::High, 100, 100);
    let mut down = host(2, 64000, 64000);
    down.eligible = false;
    down.why_not = "no healthy monitor".into();
    let req = request(vec![a.clone()], vec![host(1, 64000, 64000), down]);
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(
        plan.why(&req, 0),
        "no host can take it: h1: failed; h2: not eligible: no healthy monitor"
    );
    let req = request(vec![a], vec![]);
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(plan.vms.len(), 1);
    assert_eq!(plan.why(&req, 0), "no host in the group");
}

#[test]
fn test_collocation_placed_together_or_not_at_all() {
    let a = vm(1, Priority::Medium, 2000, 2000);
    let b = vm(2, Priority::Medium, 2000, 2000);
    let c = vm(3, Priority::Medium, 1000, 1000);
    // No host holds a and b together: both nowhere, c placed.
    let mut req = request(
        vec![a.clone(), b.clone(), c.clone()],
        vec![
            host(1, 64000, 64000),
            host(2, 3000, 8000),
            host(3, 3000, 8000),
        ],
    );
    req.policies.collocations = vec![set("db", &[&a, &b])];
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), None);
    assert_eq!(host_of(&plan, &b), None);
    assert_eq!(host_of(&plan, &c), Some(2));
    let w = plan.why(&req, index_of(&plan, &a));
    assert_eq!(
        w,
        "no host can take it with vm2 (collocated): h1: failed; h2: no room: free cpu 3000 \
         milli / memory 8000 MiB, needs 4000 / 4000; h3: no room: free cpu 3000 milli / \
         memory 8000 MiB, needs 4000 / 4000"
    );
    // With room: together.
    req.hosts[2].cpu_milli = 5000;
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), Some(3));
    assert_eq!(host_of(&plan, &b), Some(3));
    assert!(
        plan.why(&req, index_of(&plan, &a))
            .contains("with vm2 (collocated)"),
        "{}",
        plan.why(&req, 0)
    );
}

#[test]
fn test_collocation_pinned_to_the_host_a_member_runs_on() {
    let a = vm(1, Priority::Medium, 1000, 1000);
    let running = vm(2, Priority::Medium, 1000, 1000);
    let mut h3 = host(3, 8000, 8000);
    h3.running = vec![running.uuid];
    let mut req = request(
        vec![a.clone()],
        vec![host(1, 64000, 64000), host(2, 1000, 1000), h3],
    );
    req.policies.collocations = vec![set("app", &[&a, &running])];
    req.names.insert(running.uuid, "vm2".into());
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), Some(3), "pinned beats best fit (h2)");
    assert_eq!(
        plan.why(&req, 0),
        "collocation app: its other VMs run there"
    );
    assert_eq!(
        plan.why_not(&req, 0)[1].1,
        "collocation app is pinned to host h3, where its other VMs run"
    );
    // The partner running on the failed host pins nothing.
    req.hosts[2].running.clear();
    req.hosts[0].running = vec![running.uuid];
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), Some(2));
}

#[test]
fn test_anticollocation_with_running_and_planned_vms() {
    let a = vm(1, Priority::High, 1000, 1000);
    let b = vm(2, Priority::High, 1000, 1000);
    let other = vm(3, Priority::High, 1000, 1000);
    let mut h2 = host(2, 8000, 8000);
    h2.running = vec![other.uuid];
    let mut req = request(
        vec![a.clone(), b.clone()],
        vec![host(1, 64000, 64000), h2, host(3, 64000, 64000)],
    );
    req.policies.anticollocations = vec![set("web", &[&a, &b, &other])];
    let plan = PolicyPlanner.plan(&req);
    // a: h2 holds `other` → h3; b: h2 holds other, h3 holds a → nowhere.
    assert_eq!(host_of(&plan, &a), Some(3));
    assert_eq!(host_of(&plan, &b), None);
    let w = plan.why(&req, index_of(&plan, &b));
    assert!(
        w.contains("h2: anticollocated with VM 00030000-0000-0000-0000-000000000000 there (anticollocation web)"),
        "{w}"
    );
    assert!(
        w.contains("h3: anticollocated with VM vm1 there (anticollocation web)"),
        "{w}"
    );
}

#[test]
fn test_collocation_and_anticollocation_of_one_pair_is_a_conflict() {
    let a = vm(1, Priority::High, 100, 100);
    let b = vm(2, Priority::High, 100, 100);
    let mut req = request(
        vec![a.clone(), b.clone()],
        vec![host(1, 64000, 64000), host(2, 64000, 64000)],
    );
    req.policies.collocations = vec![set("together", &[&a, &b])];
    req.policies.anticollocations = vec![set("apart", &[&a, &b])];
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &a), None);
    assert_eq!(host_of(&plan, &b), None);
    assert_eq!(
        plan.why(&req, 0),
        "collocation together puts VMs vm1 and vm2 on one host and anticollocation apart \
         keeps them apart"
    );
    assert_eq!(
        plan.why_not(&req, 0)[1].1,
        "would fit, but the VM can go nowhere (see why)"
    );
}

#[test]
fn test_workgroup_placed_consecutively_at_its_highest_rank() {
    let hi = vm(1, Priority::High, 1000, 1000);
    let lo = vm(2, Priority::Low, 1000, 1000);
    let med = vm(3, Priority::Medium, 1000, 1000);
    let mut req = request(
        vec![med.clone(), lo.clone(), hi.clone()],
        vec![host(1, 64000, 64000), host(2, 2000, 2000)],
    );
    req.policies.workgroups = vec![set("erp", &[&hi, &lo])];
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(
        placed(&req, &plan),
        [
            ("vm1".into(), Some(2)),
            ("vm2".into(), Some(2)),
            ("vm3".into(), None)
        ]
    );
    assert_eq!(plan.get(&lo.uuid).unwrap().rank, Priority::High);
    assert_eq!(plan.get(&med.uuid).unwrap().rank, Priority::Medium);
    // Without the workgroup, the Medium VM goes before the Low one.
    req.policies.workgroups.clear();
    let plan = PolicyPlanner.plan(&req);
    assert_eq!(host_of(&plan, &med), Some(2));
    assert_eq!(host_of(&plan, &lo), None);
}

#[test]
fn test_cap_prefers_hosts_under_it_then_waves() {
    let vms: Vec<VmToPlace> = (1..=5).map(|n| vm(n, Priority::High, 100, 100)).collect();
    let mut busy = host(2, 1000, 1000);
    busy.in_flight = 2;
    let mut req = request(
        vms.clone(),
        vec![host(1, 64000, 64000), busy, host(3, 64000, 64000)],
    );
    req.max_per_host = 2;
    let plan = PolicyPlanner.plan(&req);
    // h2 is the best fit but has 2 restarts in flight: h3 until it is at the cap, then
    // best fit again among hosts at the cap (h2), each in later waves.
    let got: Vec<(Option<i64>, u32)> = plan
        .vms
        .iter()
        .map(|p| match p.placement {
            Placement::Host { host, wave, .. } => (Some(host.0), wave),
            Placement::Nowhere(_) => (None, 0),
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some(3), 0),
            (Some(3), 0),
            (Some(2), 1),
            (Some(2), 1),
            (Some(2), 2)
        ]
    );
    assert_eq!(
        plan.why_not(&req, 0)[1].1,
        "would fit; 2 restarts toward it already (max_restarts_per_host 2), host h3 is under \
         the cap"
    );
    assert!(
        plan.why(&req, 2).ends_with(
            "; wave 1: waits for 2 of the restarts before it toward h2 to end \
             (max_restarts_per_host 2)"
        ),
        "{}",
        plan.why(&req, 2)
    );
    // No cap: all on the best fit, wave 0.
    req.max_per_host = 0;
    let plan = PolicyPlanner.plan(&req);
    assert!(plan.vms.iter().all(|p| matches!(
        p.placement,
        Placement::Host {
            host: HostId(2),
            wave: 0,
            ..
        }
    )));
}

#[test]
fn test_every_vm_once_and_same_input_same_plan() {
    let vms: Vec<VmToPlace> = (1..=40)
        .map(|n| {
            vm(
                n,
                [Priority::High, Priority::Medium, Priority::Low][usize::from(n % 3)],
                500 * u32::from(n % 4 + 1),
                512 * u32::from(n % 5 + 1),
            )
        })
        .collect();
    let req = request(
        vms,
        vec![
            host(1, 64000, 64000),
            host(2, 8000, 8000),
            host(3, 6000, 12000),
        ],
    );
    let a = PolicyPlanner.plan(&req);
    let b = PolicyPlanner.plan(&req);
    assert_eq!(a, b);
    let mut seen: Vec<Uuid> = a.vms.iter().map(|p| p.uuid).collect();
    seen.sort();
    let mut want: Vec<Uuid> = req.vms.iter().map(|v| v.uuid).collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(a.unplaced().count() > 0, "the case must overflow");
}

#[test]
fn test_verdicts_kept_within_a_bound() {
    // 3 hosts, a bound of 7 verdicts: the first two units keep theirs, the others not.
    let vms: Vec<VmToPlace> = (1..=4).map(|n| vm(n, Priority::High, 5_000, 100)).collect();
    let req = request(
        vms,
        vec![
            host(1, 64000, 64000),
            host(2, 8000, 8000),
            host(3, 8000, 8000),
        ],
    );
    let plan = super::policy_planner::plan(&req, 7);
    assert_eq!(plan, {
        let mut full = PolicyPlanner.plan(&req);
        for u in full.units.iter_mut().skip(2) {
            u.verdicts.clear();
        }
        full
    });
    assert_eq!(plan.verdicts(0).len(), 3);
    assert!(plan.verdicts(2).is_empty() && plan.verdicts(3).is_empty());
    // The last two fit nowhere (5 CPUs each, 3 left per host): said so without the hosts.
    assert_eq!(
        plan.why(&req, 3),
        format!(
            "no host can take it (each host's reason not kept: the plan has more than {MAX_VERDICTS} VM × host pairs)"
        )
    );
    assert!(plan.why_not(&req, 3).is_empty());
}
