//! Property tests of the policy planner over random host groups (seeded SplitMix64: a
//! failing seed replays exactly). Each property is checked from the request and the plan
//! alone, not from the planner's verdicts.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use hsdb::{HostId, Priority, Uuid};

use super::*;
use crate::simulation::rng::SimRng;

/// Size of a random group.
#[derive(Clone, Copy)]
struct Shape {
    hosts: u64,
    vms: u64,
    /// VMs running on hosts and not being placed.
    others: u64,
    /// Exactly `hosts` hosts and `vms` VMs (else up to).
    exact: bool,
}

fn uuid(rng: &mut SimRng) -> Uuid {
    let a = rng.next_u64().to_be_bytes();
    let b = rng.next_u64().to_be_bytes();
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&a);
    u[8..].copy_from_slice(&b);
    Uuid(u)
}

fn prio(rng: &mut SimRng) -> Priority {
    [Priority::High, Priority::Medium, Priority::Low][usize::try_from(rng.below(3)).unwrap()]
}

fn pick_set(rng: &mut SimRng, pool: &[Uuid], lo: u64, hi: u64) -> Vec<Uuid> {
    let k = lo + rng.below(hi - lo + 1);
    let mut out: Vec<Uuid> = Vec::new();
    for _ in 0..k {
        let u = *rng.pick(pool).unwrap();
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// A random group with a host failure (and sometimes more), random load and policies.
fn random_request(seed: u64, shape: Shape) -> PlanRequest {
    let mut rng = SimRng::new(seed);
    let nh = if shape.exact {
        shape.hosts
    } else {
        2 + rng.below(shape.hosts)
    };
    let mut hosts: Vec<HostLoad> = (0..nh)
        .map(|i| {
            let id = i64::try_from(i).unwrap() + 1;
            let cpu = 8_000 + 1_000 * rng.below(56);
            let mem = 16_384 + 1_024 * rng.below(240);
            let eligible = !rng.chance(0.05);
            HostLoad {
                id: HostId(id),
                name: format!("h{id}"),
                eligible,
                why_not: if eligible {
                    String::new()
                } else {
                    "no healthy monitor".into()
                },
                cpu_milli: cpu,
                memory_mb: mem,
                used_cpu_milli: rng.below(cpu),
                used_memory_mb: rng.below(mem),
                running: Vec::new(),
                in_flight: u32::try_from(rng.below(4)).unwrap(),
            }
        })
        .collect();
    let failed_n = 1 + rng.below(3).min(nh - 1);
    let failed: Vec<HostId> = (0..failed_n)
        .map(|_| HostId(i64::try_from(1 + rng.below(nh)).unwrap()))
        .collect();
    let nv = if shape.exact {
        shape.vms
    } else {
        1 + rng.below(shape.vms)
    };
    let host_id = |rng: &mut SimRng| HostId(i64::try_from(1 + rng.below(nh)).unwrap());
    let vms: Vec<VmToPlace> = (0..nv)
        .map(|i| {
            let source = failed[usize::try_from(rng.below(failed_n)).unwrap()];
            let home = match rng.below(4) {
                0 => None,
                1 => Some(source),
                _ => Some(host_id(&mut rng)),
            };
            let exclude = if rng.chance(0.1) {
                vec![host_id(&mut rng)]
            } else {
                Vec::new()
            };
            VmToPlace {
                uuid: uuid(&mut rng),
                // Names repeat now and then: the UUID breaks the tie.
                name: format!("vm{}", i % (nv - nv / 10).max(1)),
                priority: prio(&mut rng),
                cpu_milli: u32::try_from(250 * (1 + rng.below(16))).unwrap(),
                memory_mb: u32::try_from(256 * (1 + rng.below(64))).unwrap(),
                home,
                source: Some(source),
                exclude,
            }
        })
        .collect();
    let others: Vec<Uuid> = (0..rng.below(shape.others + 1))
        .map(|_| uuid(&mut rng))
        .collect();
    for u in &others {
        let h = usize::try_from(rng.below(nh)).unwrap();
        hosts[h].running.push(*u);
    }
    let placing: Vec<Uuid> = vms.iter().map(|v| v.uuid).collect();
    let mut pool_all = placing.clone();
    pool_all.extend(others.iter().copied());
    let mut policies = Policies::default();
    for i in 0..rng.below(nv / 8 + 2) {
        // Mostly VMs being placed; now and then one that runs.
        let pool = if rng.chance(0.3) { &pool_all } else { &placing };
        policies.collocations.push(VmSet {
            name: format!("c{i}"),
            members: pick_set(&mut rng, pool, 2, 4),
        });
    }
    for i in 0..rng.below(nv / 6 + 2) {
        policies.anticollocations.push(VmSet {
            name: format!("a{i}"),
            members: pick_set(&mut rng, &pool_all, 2, 5),
        });
    }
    for i in 0..rng.below(nv / 10 + 2) {
        policies.workgroups.push(VmSet {
            name: format!("w{i}"),
            members: pick_set(&mut rng, &placing, 2, 6),
        });
    }
    for v in &vms {
        if rng.chance(0.15) {
            let list = (0..1 + rng.below(nh / 2 + 1))
                .map(|_| host_id(&mut rng))
                .collect();
            policies.exclusions.insert(v.uuid, list);
        }
    }
    let flex = |rng: &mut SimRng| Flex {
        cpu_pct: u8::try_from(20 + rng.below(81)).unwrap(),
        memory_pct: u8::try_from(20 + rng.below(81)).unwrap(),
    };
    if rng.chance(0.7) {
        policies.flexible = FlexibleCapacity {
            high: Flex::default(),
            medium: flex(&mut rng),
            low: flex(&mut rng),
        };
    }
    PlanRequest {
        vms,
        hosts,
        failed,
        policies,
        max_per_host: u32::try_from(rng.below(40)).unwrap(),
        names: BTreeMap::new(),
    }
}

/// Where each VM of the request is placed, by request index.
fn placements(req: &PlanRequest, plan: &Plan) -> Vec<Option<(usize, u32, u32)>> {
    let idx: BTreeMap<HostId, usize> = req
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id, i))
        .collect();
    let mut out = vec![None; req.vms.len()];
    for p in &plan.vms {
        if let Placement::Host {
            host,
            cpu_milli,
            memory_mb,
            ..
        } = p.placement
        {
            out[p.vm] = Some((idx[&host], cpu_milli, memory_mb));
        }
    }
    out
}

/// Every property of one request's plan; panics naming the seed and the broken one.
fn check(seed: u64, req: &PlanRequest) {
    let plan = PolicyPlanner.plan(req);
    let n = req.vms.len();
    let flex = &req.policies.flexible;

    // No VM silently dropped: each exactly once.
    let mut seen = vec![0u32; n];
    for p in &plan.vms {
        seen[p.vm] += 1;
        assert_eq!(p.uuid, req.vms[p.vm].uuid, "seed {seed}: wrong uuid");
    }
    assert!(
        seen.iter().all(|c| *c == 1),
        "seed {seed}: every VM exactly once: {:?}",
        seen.iter()
            .enumerate()
            .filter(|(_, c)| **c != 1)
            .collect::<Vec<_>>()
    );

    let at = placements(req, &plan);
    let failed: Vec<bool> = req
        .hosts
        .iter()
        .map(|h| req.failed.contains(&h.id))
        .collect();

    // No excluded, failed or ineligible host; the size is the flexible size there.
    for (i, a) in at.iter().enumerate() {
        let Some((h, c, m)) = *a else { continue };
        let v = &req.vms[i];
        let host = &req.hosts[h];
        assert!(
            !failed[h],
            "seed {seed}: {} on failed {}",
            v.name, host.name
        );
        assert!(
            host.eligible,
            "seed {seed}: {} on ineligible {}",
            v.name, host.name
        );
        assert_ne!(
            v.source,
            Some(host.id),
            "seed {seed}: {} on its source",
            v.name
        );
        assert!(
            !v.exclude.contains(&host.id),
            "seed {seed}: {} on an excluded host",
            v.name
        );
        assert!(
            !req.policies
                .exclusions
                .get(&v.uuid)
                .is_some_and(|l| l.contains(&host.id)),
            "seed {seed}: {} on a host of its exclusion list",
            v.name
        );
        assert_eq!(
            (c, m),
            v.size_on(host.id, flex),
            "seed {seed}: {} started with the wrong size",
            v.name
        );
    }

    // No host over capacity.
    let mut add_cpu = vec![0u64; req.hosts.len()];
    let mut add_mem = vec![0u64; req.hosts.len()];
    for (h, c, m) in at.iter().flatten() {
        add_cpu[*h] += u64::from(*c);
        add_mem[*h] += u64::from(*m);
    }
    for (h, host) in req.hosts.iter().enumerate() {
        if add_cpu[h] + add_mem[h] > 0 {
            assert!(
                host.used_cpu_milli + add_cpu[h] <= host.cpu_milli
                    && host.used_memory_mb + add_mem[h] <= host.memory_mb,
                "seed {seed}: {} over capacity",
                host.name
            );
        }
    }

    // Where every VM is after the plan: placed ones where placed, the others where they
    // run on a live host.
    let vm_idx: BTreeMap<Uuid, usize> = req
        .vms
        .iter()
        .enumerate()
        .map(|(i, v)| (v.uuid, i))
        .collect();
    let mut location: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (h, host) in req.hosts.iter().enumerate() {
        if failed[h] {
            continue;
        }
        for u in &host.running {
            if !vm_idx.contains_key(u) {
                location.insert(*u, h);
            }
        }
    }
    for (i, a) in at.iter().enumerate() {
        if let Some((h, _, _)) = a {
            location.insert(req.vms[i].uuid, *h);
        }
    }

    // Anticollocation never violated by the plan: a placed VM shares its host with no
    // other VM of its sets (VMs that already ran together are not the plan's doing).
    for s in &req.policies.anticollocations {
        for m in &s.members {
            let Some(&i) = vm_idx.get(m) else { continue };
            let Some((h, _, _)) = at[i] else { continue };
            for o in &s.members {
                assert!(
                    o == m || location.get(o) != Some(&h),
                    "seed {seed}: anticollocation {} has two VMs on {}",
                    s.name,
                    req.hosts[h].name
                );
            }
        }
    }

    // Collocation never split: the set's VMs being placed all on one host or none, and on
    // the host where its other VMs run.
    for s in &req.policies.collocations {
        let placing: Vec<usize> = s
            .members
            .iter()
            .filter_map(|m| vm_idx.get(m).copied())
            .collect();
        let hosts: BTreeSet<Option<usize>> = placing.iter().map(|&i| at[i].map(|a| a.0)).collect();
        assert!(
            hosts.len() <= 1,
            "seed {seed}: collocation {} split: {hosts:?}",
            s.name
        );
        if let Some(Some(h)) = hosts.first() {
            for m in &s.members {
                if !vm_idx.contains_key(m)
                    && let Some(r) = location.get(m)
                {
                    assert_eq!(
                        r, h,
                        "seed {seed}: collocation {} away from its running VM",
                        s.name
                    );
                }
            }
        }
    }

    // A higher-priority VM is never left unplaced while a lower-priority one took room
    // it fitted in: for every unit placed nowhere and every host that refuses none of
    // its VMs by rule, the unit does not fit even with the room lower-ranked VMs took
    // there given back (or a partner of equal or higher rank is there).
    let rank_of: Vec<u8> = {
        let mut r = vec![0u8; n];
        for p in &plan.vms {
            r[p.vm] = rank(p.rank);
        }
        r
    };
    // Per host and rank, what the plan placed there.
    let mut by_rank = vec![[(0u64, 0u64); 3]; req.hosts.len()];
    for (j, a) in at.iter().enumerate() {
        if let Some((h, c, m)) = a {
            let e = &mut by_rank[*h][usize::from(rank_of[j])];
            e.0 += u64::from(*c);
            e.1 += u64::from(*m);
        }
    }
    for unit in &plan.units {
        let first = unit.members[0];
        if at[first].is_some() {
            continue;
        }
        let r = rank_of[first];
        let members: BTreeSet<Uuid> = unit.members.iter().map(|&i| req.vms[i].uuid).collect();
        // A unit blocked by a contradiction, or pinned, is not about room.
        let pinned = req.policies.collocations.iter().any(|s| {
            s.members.iter().any(|m| members.contains(m))
                && s.members
                    .iter()
                    .any(|m| !vm_idx.contains_key(m) && location.contains_key(m))
        });
        let contradiction = req
            .policies
            .anticollocations
            .iter()
            .any(|s| s.members.iter().filter(|m| members.contains(m)).count() > 1);
        if pinned || contradiction {
            continue;
        }
        // Hosts where a partner of equal or higher rank is (or one that was running).
        let partner_hosts: BTreeSet<usize> = req
            .policies
            .anticollocations
            .iter()
            .filter(|s| s.members.iter().any(|m| members.contains(m)))
            .flat_map(|s| s.members.iter())
            .filter(|m| !members.contains(m) && vm_idx.get(m).is_none_or(|&j| rank_of[j] <= r))
            .filter_map(|m| location.get(m).copied())
            .collect();
        for (h, host) in req.hosts.iter().enumerate() {
            let refused = failed[h]
                || !host.eligible
                || unit.members.iter().any(|&i| {
                    let v = &req.vms[i];
                    v.source == Some(host.id)
                        || v.exclude.contains(&host.id)
                        || req
                            .policies
                            .exclusions
                            .get(&v.uuid)
                            .is_some_and(|l| l.contains(&host.id))
                });
            if refused {
                continue;
            }
            if partner_hosts.contains(&h) {
                continue;
            }
            let (mut free_cpu, mut free_mem) = (
                host.cpu_milli
                    .saturating_sub(host.used_cpu_milli + add_cpu[h]),
                host.memory_mb
                    .saturating_sub(host.used_memory_mb + add_mem[h]),
            );
            for (c, m) in &by_rank[h][usize::from(r) + 1..] {
                free_cpu += c;
                free_mem += m;
            }
            let (need_cpu, need_mem) = unit.members.iter().fold((0u64, 0u64), |(c, m), &i| {
                let (vc, vm) = req.vms[i].size_on(host.id, flex);
                (c + u64::from(vc), m + u64::from(vm))
            });
            assert!(
                need_cpu > free_cpu || need_mem > free_mem,
                "seed {seed}: {} (rank {r}) unplaced but fits on {} once lower-ranked VMs \
                 are taken off: needs {need_cpu}/{need_mem}, {free_cpu}/{free_mem}",
                req.vms[first].name,
                host.name
            );
        }
    }

    // Restart order: placed VMs by wave, then those placed nowhere; on each host the
    // waves count max_per_host restarts each, after those already in flight.
    let mut last_wave = 0;
    let mut nowhere_seen = false;
    let mut on_host: BTreeMap<HostId, u32> = BTreeMap::new();
    let mut by_seq: Vec<(HostId, u32)> = Vec::new();
    for p in &plan.vms {
        match p.placement {
            Placement::Host { host, wave, .. } => {
                assert!(
                    !nowhere_seen,
                    "seed {seed}: a placed VM after an unplaced one"
                );
                assert!(wave >= last_wave, "seed {seed}: waves out of order");
                last_wave = wave;
                by_seq.push((host, wave));
            }
            Placement::Nowhere(_) => nowhere_seen = true,
        }
    }
    // Within a wave the plan keeps placement order, so per host the waves are assigned
    // in the order they appear.
    for (host, wave) in by_seq {
        let h = req.hosts.iter().find(|x| x.id == host).unwrap();
        let k = on_host.entry(host).or_insert(h.in_flight);
        let want = k.checked_div(req.max_per_host).unwrap_or(0);
        assert_eq!(wave, want, "seed {seed}: wave on {}", h.name);
        *k += 1;
    }

    // The explanation: exactly the chosen host marked chosen.
    for (i, p) in plan.vms.iter().enumerate() {
        let v = plan.verdicts(i);
        assert_eq!(v.len(), req.hosts.len(), "seed {seed}: a verdict per host");
        let chosen: Vec<usize> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| matches!(x, HostVerdict::Chosen { .. }))
            .map(|(h, _)| h)
            .collect();
        match p.placement {
            Placement::Host { host, .. } => {
                assert_eq!(chosen.len(), 1, "seed {seed}");
                assert_eq!(req.hosts[chosen[0]].id, host, "seed {seed}");
            }
            Placement::Nowhere(_) => assert!(chosen.is_empty(), "seed {seed}"),
        }
    }

    // Identical input → identical plan; the VMs' order in the request changes nothing
    // but the indexes.
    assert_eq!(
        plan,
        PolicyPlanner.plan(&req.clone()),
        "seed {seed}: not deterministic"
    );
    let mut rev = req.clone();
    rev.vms.reverse();
    let plan_rev = PolicyPlanner.plan(&rev);
    // (A contradiction names its VMs by request index: compared by UUID.)
    let by_uuid =
        |r: &PlanRequest, p: &Plan| -> BTreeMap<Uuid, (Placement, Option<(Uuid, Uuid)>)> {
            p.vms
                .iter()
                .map(|x| match x.placement {
                    Placement::Nowhere(Unplaced::Conflict {
                        collocation,
                        anticollocation,
                        a,
                        b,
                    }) => (
                        x.uuid,
                        (
                            Placement::Nowhere(Unplaced::Conflict {
                                collocation,
                                anticollocation,
                                a: 0,
                                b: 0,
                            }),
                            Some((r.vms[a as usize].uuid, r.vms[b as usize].uuid)),
                        ),
                    ),
                    pl => (x.uuid, (pl, None)),
                })
                .collect()
        };
    assert_eq!(
        by_uuid(req, &plan),
        by_uuid(&rev, &plan_rev),
        "seed {seed}: depends on the request's VM order"
    );
}

#[test]
fn test_properties_small_tight_groups() {
    for seed in 0..300u64 {
        let req = random_request(
            seed,
            Shape {
                hosts: 12,
                vms: 120,
                others: 30,
                exact: false,
            },
        );
        check(seed, &req);
    }
}

#[test]
fn test_properties_large_groups() {
    for seed in 1_000..1_004u64 {
        let req = random_request(
            seed,
            Shape {
                hosts: 300,
                vms: 3_000,
                others: 2_000,
                exact: true,
            },
        );
        assert!(req.hosts.len() >= 2);
        check(seed, &req);
    }
}

#[test]
fn test_random_cases_exercise_every_rule() {
    // The properties mean something only if the cases reach the rules: count what the
    // plans did over the small cases.
    let mut seen = BTreeMap::<&str, u32>::new();
    for seed in 0..300u64 {
        let req = random_request(
            seed,
            Shape {
                hosts: 12,
                vms: 120,
                others: 30,
                exact: false,
            },
        );
        let plan = PolicyPlanner.plan(&req);
        for (i, p) in plan.vms.iter().enumerate() {
            let k = match p.placement {
                Placement::Host {
                    why: Choice::Home, ..
                } => "home",
                Placement::Host {
                    why: Choice::BestFit,
                    ..
                } => "best fit",
                Placement::Host {
                    why: Choice::Pinned { .. },
                    ..
                } => "pinned",
                Placement::Nowhere(Unplaced::NoHost) => "no host",
                Placement::Nowhere(Unplaced::Conflict { .. }) => "conflict",
                Placement::Nowhere(Unplaced::SplitPin { .. }) => "split pin",
            };
            *seen.entry(k).or_default() += 1;
            if let Placement::Host { wave, .. } = p.placement
                && wave > 0
            {
                *seen.entry("wave > 0").or_default() += 1;
            }
            if plan.units[p.unit].members.len() > 1 {
                *seen.entry("collocated unit").or_default() += 1;
            }
            for v in plan.verdicts(i) {
                let k = match v {
                    HostVerdict::Anticollocated { .. } => "anticollocated",
                    HostVerdict::Policy { .. } => "policy exclusion",
                    HostVerdict::NoRoom { .. } => "no room",
                    HostVerdict::CapReached { .. } => "cap reached",
                    _ => continue,
                };
                *seen.entry(k).or_default() += 1;
            }
        }
    }
    for k in [
        "home",
        "best fit",
        "pinned",
        "no host",
        "conflict",
        "wave > 0",
        "collocated unit",
        "anticollocated",
        "policy exclusion",
        "no room",
        "cap reached",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) > 0,
            "no case reached {k}: {seen:?}"
        );
    }
}
