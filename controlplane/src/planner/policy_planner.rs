//! [`PolicyPlanner`]: the placement with the group's policies. The rules, in the order
//! they are applied, are docs/controlplane.md "Planner"; each is named where it is coded.

use std::cmp::Reverse;
use std::collections::HashMap;

use hsdb::{HostId, Uuid};

use super::{
    Choice, HostVerdict, Placement, Plan, PlanRequest, PlannedVm, Planner, Unit, Unplaced, rank,
};

/// The policy planner (seed-controlplane.md §4.2's mapper flow: priority, collocation,
/// anticollocation, best fit, flexible capacity), pure and deterministic: the same
/// request gives the same plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyPlanner;

impl Planner for PolicyPlanner {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn plan(&self, request: &PlanRequest) -> Plan {
        plan(request, MAX_VERDICTS)
    }
}

/// Host verdicts a plan keeps for its explanations (32 bytes each: 128 MiB). A plan of
/// more VM × host pairs keeps them for the units placed first; the others' explanations
/// say they were not kept.
pub const MAX_VERDICTS: usize = 4_000_000;

/// Union-find over request indexes; the root of a set is its smallest index.
struct Uf(Vec<usize>);

impl Uf {
    fn new(n: usize) -> Uf {
        Uf((0..n).collect())
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 10⁶ / `cap` in 32.32 fixed point (0 for no capacity): [`ppm`] multiplies by it
/// instead of dividing for every candidate host.
fn per_million(cap: u64) -> u64 {
    (1_000_000u64 << 32).checked_div(cap).unwrap_or(0)
}

/// Parts per million of the capacity `left` is, `inv` = [`per_million`] of it (exact to
/// within one part per million, the same on every machine).
fn ppm(left: u64, inv: u64) -> u64 {
    u64::try_from((u128::from(left) * u128::from(inv)) >> 32).unwrap_or(u64::MAX)
}

/// A unit being placed: one VM, or the VMs of the request one collocation binds.
struct Pending {
    members: Vec<usize>,
    /// Collocation sets with a member in the unit.
    sets: Vec<u32>,
    /// Highest own priority among the members (rank, 0 = High).
    rank: u8,
    /// Sum of nominal memory and CPU.
    mem: u64,
    cpu: u64,
    /// Smallest position of a member in the single-VM order.
    lead: usize,
}

/// A host able to take the unit.
#[derive(Clone, Copy)]
struct Candidate {
    host: usize,
    home: u32,
    at_cap: bool,
    score: u64,
    mem_left: u64,
    cpu_left: u64,
    count: u32,
}

/// The plan, keeping at most `max_verdicts` host verdicts.
pub(super) fn plan(req: &PlanRequest, max_verdicts: usize) -> Plan {
    let n = req.vms.len();
    let nh = req.hosts.len();
    let pol = &req.policies;
    let flex = &pol.flexible;

    let mut host_idx: HashMap<HostId, usize> = HashMap::with_capacity(nh);
    for (i, h) in req.hosts.iter().enumerate() {
        host_idx.entry(h.id).or_insert(i);
    }
    let failed: Vec<bool> = req
        .hosts
        .iter()
        .map(|h| req.failed.contains(&h.id))
        .collect();
    let mut vm_idx: HashMap<Uuid, usize> = HashMap::with_capacity(n);
    for (i, v) in req.vms.iter().enumerate() {
        vm_idx.entry(v.uuid).or_insert(i);
    }
    // Where the VMs this plan does not move run: live hosts only (a failed host's VMs
    // are gone or being moved).
    let mut running_at: HashMap<Uuid, usize> = HashMap::new();
    for (h, host) in req.hosts.iter().enumerate() {
        if failed[h] {
            continue;
        }
        for u in &host.running {
            if !vm_idx.contains_key(u) {
                running_at.entry(*u).or_insert(h);
            }
        }
    }

    // Collocation (seed 004 L15730-15765): the request's members of one set
    // (transitively) form one unit; the set's members running on a live host pin it
    // there.
    let mut coll = Uf::new(n);
    let mut coll_pins: Vec<Vec<usize>> = Vec::with_capacity(pol.collocations.len());
    let mut coll_sets_of: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (s, set) in pol.collocations.iter().enumerate() {
        let mut first = None;
        let mut pins = Vec::new();
        for m in &set.members {
            if let Some(&i) = vm_idx.get(m) {
                coll_sets_of[i].push(u32_of(s));
                match first {
                    None => first = Some(i),
                    Some(f) => coll.union(f, i),
                }
            } else if let Some(&h) = running_at.get(m)
                && !pins.contains(&h)
            {
                pins.push(h);
            }
        }
        coll_pins.push(pins);
    }
    // Workgroups (seed 004 L15801-15835, gap 13): a workgroup's units are placed one after the other at the
    // rank of its highest-priority member.
    let mut group = Uf::new(n);
    for i in 0..n {
        let r = coll.find(i);
        group.union(r, i);
    }
    for set in &pol.workgroups {
        let mut first = None;
        for m in &set.members {
            if let Some(&i) = vm_idx.get(m) {
                match first {
                    None => first = Some(i),
                    Some(f) => group.union(f, i),
                }
            }
        }
    }
    // Anticollocation (seed 004 L15766-15800): the sets each VM of the request is in, and per set the hosts
    // where a member is (running now, or placed by this plan), one witness per host.
    let mut anti_sets_of: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut anti_hosts: Vec<Vec<(usize, Uuid)>> = Vec::with_capacity(pol.anticollocations.len());
    for (s, set) in pol.anticollocations.iter().enumerate() {
        let mut hosts: Vec<(usize, Uuid)> = Vec::new();
        for m in &set.members {
            if let Some(&i) = vm_idx.get(m) {
                if !anti_sets_of[i].contains(&u32_of(s)) {
                    anti_sets_of[i].push(u32_of(s));
                }
            } else if let Some(&h) = running_at.get(m)
                && !hosts.iter().any(|(x, _)| *x == h)
            {
                hosts.push((h, *m));
            }
        }
        anti_hosts.push(hosts);
    }

    // The single-VM order: priority (seed 004 L15907-15917), then larger first (memory, then CPU), then name,
    // then UUID.
    let mut by_key: Vec<usize> = (0..n).collect();
    by_key.sort_by(|&a, &b| {
        let (x, y) = (&req.vms[a], &req.vms[b]);
        (
            rank(x.priority),
            Reverse(x.memory_mb),
            Reverse(x.cpu_milli),
            &x.name,
            x.uuid,
            a,
        )
            .cmp(&(
                rank(y.priority),
                Reverse(y.memory_mb),
                Reverse(y.cpu_milli),
                &y.name,
                y.uuid,
                b,
            ))
    });
    let mut pos = vec![0usize; n];
    for (p, &i) in by_key.iter().enumerate() {
        pos[i] = p;
    }

    // Units, in the single-VM order of their first member.
    let mut unit_of_root: HashMap<usize, usize> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for &i in &by_key {
        let r = coll.find(i);
        let u = *unit_of_root.entry(r).or_insert_with(|| {
            pending.push(Pending {
                members: Vec::new(),
                sets: Vec::new(),
                rank: u8::MAX,
                mem: 0,
                cpu: 0,
                lead: usize::MAX,
            });
            pending.len() - 1
        });
        let p = &mut pending[u];
        let v = &req.vms[i];
        p.members.push(i);
        for s in &coll_sets_of[i] {
            if !p.sets.contains(s) {
                p.sets.push(*s);
            }
        }
        p.rank = p.rank.min(rank(v.priority));
        p.mem += u64::from(v.memory_mb);
        p.cpu += u64::from(v.cpu_milli);
        p.lead = p.lead.min(pos[i]);
    }
    for p in &mut pending {
        p.sets.sort_unstable();
    }
    // Workgroup rank and anchor: the best unit key among the group's units.
    type Key = (u8, Reverse<u64>, Reverse<u64>, usize);
    let key_of = |p: &Pending| -> Key { (p.rank, Reverse(p.mem), Reverse(p.cpu), p.lead) };
    let mut group_key: HashMap<usize, Key> = HashMap::new();
    let mut unit_group: Vec<usize> = Vec::with_capacity(pending.len());
    for p in &pending {
        let g = group.find(p.members[0]);
        unit_group.push(g);
        let k = key_of(p);
        group_key
            .entry(g)
            .and_modify(|e| {
                if k < *e {
                    *e = k;
                }
            })
            .or_insert(k);
    }
    let mut order: Vec<usize> = (0..pending.len()).collect();
    order.sort_by_key(|&u| {
        let g = group_key[&unit_group[u]];
        (g.0, g, key_of(&pending[u]))
    });

    let cap = req.max_per_host;
    let mut used_cpu: Vec<u64> = req.hosts.iter().map(|h| h.used_cpu_milli).collect();
    let mut used_mem: Vec<u64> = req.hosts.iter().map(|h| h.used_memory_mb).collect();
    let mut count: Vec<u32> = req.hosts.iter().map(|h| h.in_flight).collect();
    let inv: Vec<(u64, u64)> = req
        .hosts
        .iter()
        .map(|h| (per_million(h.cpu_milli), per_million(h.memory_mb)))
        .collect();
    let mut hard: Vec<Option<HostVerdict>> = vec![None; nh];
    let mut anti: Vec<Option<HostVerdict>> = vec![None; nh];
    let mut touched: Vec<usize> = Vec::new();
    let mut home_extra: Vec<(usize, u64, u64, u32)> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();

    let mut units: Vec<Unit> = Vec::with_capacity(pending.len());
    // Verdicts kept for the explanations, at most MAX_VERDICTS in all (bounded memory:
    // the units placed first keep theirs).
    let mut kept = 0usize;
    let mut placed: Vec<(u32, usize, PlannedVm)> = Vec::with_capacity(n);
    let mut unplaced: Vec<PlannedVm> = Vec::new();
    let mut seq = 0usize;

    for &u in &order {
        let p = &pending[u];
        let unit_no = units.len();
        let group_rank = group_key[&unit_group[u]].0;
        let rank_p = match group_rank {
            0 => hsdb::Priority::High,
            1 => hsdb::Priority::Medium,
            _ => hsdb::Priority::Low,
        };

        // A collocation that an anticollocation contradicts can go nowhere.
        let mut blocked: Option<Unplaced> = None;
        'conflict: for (ai, &a) in p.members.iter().enumerate() {
            for &b in &p.members[ai + 1..] {
                if let Some(s) = anti_sets_of[a].iter().find(|s| anti_sets_of[b].contains(s)) {
                    // The collocation that holds both, else one of a's (a chain of sets).
                    let collocation = coll_sets_of[a]
                        .iter()
                        .find(|c| coll_sets_of[b].contains(c))
                        .or_else(|| coll_sets_of[a].first())
                        .copied()
                        .unwrap_or(0);
                    blocked = Some(Unplaced::Conflict {
                        collocation,
                        anticollocation: *s,
                        a: u32_of(a),
                        b: u32_of(b),
                    });
                    break 'conflict;
                }
            }
        }
        // Pinned to the live host where its collocation's other members run.
        let mut pin: Option<(u32, usize)> = None;
        for &s in &p.sets {
            for &h in &coll_pins[s as usize] {
                match pin {
                    None => pin = Some((s, h)),
                    Some((_, x)) if x != h => {
                        if blocked.is_none() {
                            blocked = Some(Unplaced::SplitPin { set: s });
                        }
                    }
                    Some(_) => {}
                }
            }
        }

        // What the unit needs away from home (flexible capacity, seed 004 L15639-15724),
        // and the extra on each member's home.
        let (mut need_cpu, mut need_mem) = (0u64, 0u64);
        home_extra.clear();
        for &m in &p.members {
            let v = &req.vms[m];
            let (c, mm) = v.size_away(flex);
            need_cpu += u64::from(c);
            need_mem += u64::from(mm);
            if let Some(&h) = v.home.as_ref().and_then(|h| host_idx.get(h)) {
                let dc = u64::from(v.cpu_milli - c.min(v.cpu_milli));
                let dm = u64::from(v.memory_mb - mm.min(v.memory_mb));
                match home_extra.iter_mut().find(|e| e.0 == h) {
                    Some(e) => {
                        e.1 += dc;
                        e.2 += dm;
                        e.3 += 1;
                    }
                    None => home_extra.push((h, dc, dm, 1)),
                }
            }
        }

        // Hosts ruled out by the members' own lists (the host exclusions: seed 004
        // L15846-15905), then by anticollocation.
        for &h in &touched {
            hard[h] = None;
            anti[h] = None;
        }
        touched.clear();
        for &m in &p.members {
            let v = &req.vms[m];
            let mut mark = |h: HostId, verdict: HostVerdict| {
                if let Some(&i) = host_idx.get(&h)
                    && hard[i].is_none()
                {
                    hard[i] = Some(verdict);
                    touched.push(i);
                }
            };
            if let Some(s) = v.source {
                mark(s, HostVerdict::Source { vm: u32_of(m) });
            }
            for &h in &v.exclude {
                mark(h, HostVerdict::Excluded { vm: u32_of(m) });
            }
            if let Some(list) = pol.exclusions.get(&v.uuid) {
                for &h in list {
                    mark(h, HostVerdict::Policy { vm: u32_of(m) });
                }
            }
        }
        for &m in &p.members {
            for &s in &anti_sets_of[m] {
                for &(h, with) in &anti_hosts[s as usize] {
                    if anti[h].is_none() {
                        anti[h] = Some(HostVerdict::Anticollocated {
                            set: s,
                            vm: u32_of(m),
                            with,
                        });
                        touched.push(h);
                    }
                }
            }
        }

        let mut verdicts: Vec<HostVerdict> = Vec::with_capacity(nh);
        candidates.clear();
        for (h, host) in req.hosts.iter().enumerate() {
            let v = if failed[h] {
                HostVerdict::Failed
            } else if let Some(x) = hard[h] {
                x
            } else if !host.eligible {
                HostVerdict::NotEligible
            } else if let Some((set, ph)) = pin.filter(|(_, ph)| *ph != h) {
                HostVerdict::Pinned {
                    set,
                    host: u32_of(ph),
                }
            } else if let Some(x) = anti[h] {
                x
            } else {
                let (mut c, mut m, mut home) = (need_cpu, need_mem, 0u32);
                if let Some(e) = home_extra.iter().find(|e| e.0 == h) {
                    c += e.1;
                    m += e.2;
                    home = e.3;
                }
                let free_cpu = host.cpu_milli.saturating_sub(used_cpu[h]);
                let free_mem = host.memory_mb.saturating_sub(used_mem[h]);
                if c > free_cpu || m > free_mem {
                    HostVerdict::NoRoom { free_cpu, free_mem }
                } else {
                    let (cpu_left, mem_left) = (free_cpu - c, free_mem - m);
                    candidates.push(Candidate {
                        host: h,
                        home,
                        at_cap: cap > 0 && count[h] >= cap,
                        score: ppm(cpu_left, inv[h].0) + ppm(mem_left, inv[h].1),
                        mem_left,
                        cpu_left,
                        count: count[h],
                    });
                    HostVerdict::WorseFit { cpu_left, mem_left }
                }
            };
            verdicts.push(v);
        }

        // Home host first (seed 004 L15957-15966; of a collocation: home to the most
        // members), then hosts under the per-target cap, then best fit (seed 004
        // L16007-16019): least left free (CPU + memory, each as a share of the host),
        // then less memory left, less CPU left, lower host id.
        let chosen = if blocked.is_some() {
            None
        } else {
            candidates
                .iter()
                .min_by_key(|c| {
                    (
                        Reverse(c.home),
                        c.at_cap,
                        c.score,
                        c.mem_left,
                        c.cpu_left,
                        req.hosts[c.host].id,
                    )
                })
                .copied()
        };

        match chosen {
            Some(best) => {
                for c in &candidates {
                    verdicts[c.host] = if c.host == best.host {
                        HostVerdict::Chosen {
                            cpu_left: c.cpu_left,
                            mem_left: c.mem_left,
                        }
                    } else if best.home > c.home {
                        HostVerdict::HomePreferred
                    } else if c.at_cap && !best.at_cap {
                        HostVerdict::CapReached { count: c.count }
                    } else {
                        verdicts[c.host]
                    };
                }
                let h = best.host;
                let host_id = req.hosts[h].id;
                let why = match pin {
                    Some((set, _)) => Choice::Pinned { set },
                    None if best.home > 0 => Choice::Home,
                    None => Choice::BestFit,
                };
                for &m in &p.members {
                    let v = &req.vms[m];
                    let (c, mm) = v.size_on(host_id, flex);
                    used_cpu[h] += u64::from(c);
                    used_mem[h] += u64::from(mm);
                    let wave = count[h].checked_div(cap).unwrap_or(0);
                    count[h] = count[h].saturating_add(1);
                    for &s in &anti_sets_of[m] {
                        let hosts = &mut anti_hosts[s as usize];
                        if !hosts.iter().any(|(x, _)| *x == h) {
                            hosts.push((h, v.uuid));
                        }
                    }
                    placed.push((
                        wave,
                        seq,
                        PlannedVm {
                            uuid: v.uuid,
                            vm: m,
                            rank: rank_p,
                            placement: Placement::Host {
                                host: host_id,
                                cpu_milli: c,
                                memory_mb: mm,
                                wave,
                                why,
                            },
                            unit: unit_no,
                        },
                    ));
                    seq += 1;
                }
            }
            None => {
                if blocked.is_some() {
                    for c in &candidates {
                        verdicts[c.host] = HostVerdict::Blocked;
                    }
                }
                let why = blocked.unwrap_or(Unplaced::NoHost);
                for &m in &p.members {
                    unplaced.push(PlannedVm {
                        uuid: req.vms[m].uuid,
                        vm: m,
                        rank: rank_p,
                        placement: Placement::Nowhere(why),
                        unit: unit_no,
                    });
                }
            }
        }
        let verdicts = if kept + nh <= max_verdicts {
            kept += nh;
            verdicts
        } else {
            Vec::new()
        };
        units.push(Unit {
            members: p.members.clone(),
            verdicts,
        });
    }

    placed.sort_by_key(|(wave, seq, _)| (*wave, *seq));
    let mut vms: Vec<PlannedVm> = placed.into_iter().map(|(_, _, p)| p).collect();
    vms.extend(unplaced);
    Plan { vms, units }
}
