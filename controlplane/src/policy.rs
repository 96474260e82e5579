//! The relocation policies of a host group as the HSDB stores them (schema v7,
//! docs/hsdb.md §10), checked against the rules of docs/operators.md "Policies" and
//! turned into the planner's [`Policies`].
//!
//! - [`check`]: every [`Problem`] of the stored policies (all groups, or one), each
//!   naming the sets, VMs and hosts concerned. `hactl add|modify …` runs it inside the
//!   HSDB's write transaction on the store as the change would leave it
//!   ([`hsdb::Hsdb::policy_change`]) and refuses when a problem that
//!   [`Problem::refuses`] concerns what the change touched ([`Subject`]): the store is
//!   unchanged.
//! - [`load`] / [`load_checked`]: the [`Policies`] of one host group for the engine. A
//!   set made invalid by later changes (a member VM pruned or moved to another group, a
//!   conflict written around the CLI) never fails the load: what cannot be planned is
//!   left out and reported ([`Loaded::problems`]), the rest is handed to the planner.
//!
//! A VM belongs to the host group of its current host, else of its home host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use hsdb::{HostId, HostRecord, Hsdb, PolicyKind, PolicyRow, PolicyView, Priority, Uuid, VmRow};

use crate::planner::{Flex, FlexibleCapacity, Policies, VmSet};

/// A named set: its kind and name (`collocation db`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetRef {
    /// Collocation, anticollocation or workgroup.
    pub kind: PolicyKind,
    /// The operator's name.
    pub name: String,
}

impl SetRef {
    fn of(row: &PolicyRow) -> SetRef {
        SetRef {
            kind: row.kind,
            name: row.name.clone(),
        }
    }
}

impl fmt::Display for SetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind.word(), self.name)
    }
}

/// What a change touches: a problem about it refuses the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A set added or whose members changed.
    Set(SetRef),
    /// A VM whose exclusions changed.
    Vm(Uuid),
    /// A host group whose flexible capacity changed.
    Group(String),
}

/// One problem of the stored policies. Its [`fmt::Display`] names the sets, VMs (name
/// and UUID) and hosts concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A member is not a VM in the HSDB (pruned, or never there).
    UnknownMember {
        /// The set.
        set: SetRef,
        /// The member.
        vm: Uuid,
    },
    /// A member belongs to another host group than the set (or to none).
    MemberOutsideGroup {
        /// The set.
        set: SetRef,
        /// The set's group.
        group: String,
        /// The member.
        vm: String,
        /// The member's group, `None` when it has no host.
        vm_group: Option<String>,
    },
    /// Fewer than two members: nothing to relate.
    TooFewMembers {
        /// The set.
        set: SetRef,
        /// How many it has.
        members: usize,
    },
    /// Two VMs of one collocation are also in one anticollocation (seed 004 L15730-15800:
    /// together and apart at once).
    CollocatedAndApart {
        /// The collocation.
        collocation: SetRef,
        /// The anticollocation.
        anticollocation: SetRef,
        /// Two VMs the two sets share.
        vms: (String, String),
    },
    /// A VM in two collocations (or two workgroups): the two must be one set.
    InTwoSets {
        /// The set added first.
        first: SetRef,
        /// The other one.
        second: SetRef,
        /// The VM.
        vm: String,
    },
    /// A collocation whose members together exceed every host of the group that none
    /// of them excludes, even at their flexible capacity.
    NeverFits {
        /// The collocation.
        set: SetRef,
        /// Its members (for [`Problem::concerns`]).
        members: Vec<Uuid>,
        /// Its total CPU (thousandths), at flexible capacity.
        cpu_milli: u64,
        /// Its total memory (MiB), at flexible capacity.
        memory_mb: u64,
        /// The hosts it was compared with: name, CPU, memory; empty: none left.
        hosts: Vec<(String, u32, u32)>,
    },
    /// An anticollocation with more members than the group has hosts: they can never
    /// all run apart (seed 004 L15837-15841).
    ApartMoreThanHosts {
        /// The anticollocation.
        set: SetRef,
        /// Its members.
        members: usize,
        /// The group's hosts.
        hosts: usize,
    },
    /// An anticollocation with as many members as the group has hosts: once a host
    /// fails, the member it ran cannot be restarted apart from the others (seed 004
    /// L15837-15841, "with 2 hosts you cannot anticollocate VMs of one host"). A warning.
    ApartNoSpareHost {
        /// The anticollocation.
        set: SetRef,
        /// Its members = the group's hosts.
        hosts: usize,
    },
    /// A collocation or workgroup whose members have different priorities (seed 004
    /// L15725-15728: supported only with one priority).
    MixedPriorities {
        /// The set.
        set: SetRef,
        /// Each member and its priority.
        priorities: Vec<(String, Priority)>,
    },
    /// A VM's exclusions leave it no host of its group but its own (seed 004
    /// L15846-15905: "No backup host will be left for this VM").
    NoBackupHost {
        /// The VM.
        vm: Uuid,
        /// The VM as shown (name and UUID).
        shown: String,
        /// Its group.
        group: String,
    },
    /// A VM's home host is in its exclusion list: it is never restarted there (a
    /// warning).
    HomeHostExcluded {
        /// The VM.
        vm: Uuid,
        /// The VM as shown.
        shown: String,
        /// The host's name.
        host: String,
    },
}

impl Problem {
    /// Does this problem refuse a change that touches it? (The others are warnings.)
    /// [`Problem::NoBackupHost`] refuses unless forced.
    pub fn refuses(&self, forced: bool) -> bool {
        match self {
            Problem::ApartNoSpareHost { .. } | Problem::HomeHostExcluded { .. } => false,
            Problem::NoBackupHost { .. } => !forced,
            _ => true,
        }
    }

    /// Does the problem concern `subject`?
    pub fn concerns(&self, subject: &Subject, sets: &[PolicyRow]) -> bool {
        let set_has = |set: &SetRef, vm: &Uuid| {
            sets.iter()
                .any(|s| s.kind == set.kind && s.name == set.name && s.members.contains(vm))
        };
        match (self, subject) {
            (
                Problem::UnknownMember { set, .. }
                | Problem::MemberOutsideGroup { set, .. }
                | Problem::TooFewMembers { set, .. }
                | Problem::NeverFits { set, .. }
                | Problem::ApartMoreThanHosts { set, .. }
                | Problem::ApartNoSpareHost { set, .. }
                | Problem::MixedPriorities { set, .. },
                Subject::Set(s),
            ) => set == s,
            (
                Problem::CollocatedAndApart {
                    collocation,
                    anticollocation,
                    ..
                },
                Subject::Set(s),
            ) => collocation == s || anticollocation == s,
            (Problem::InTwoSets { first, second, .. }, Subject::Set(s)) => {
                first == s || second == s
            }
            (
                Problem::NoBackupHost { vm, .. } | Problem::HomeHostExcluded { vm, .. },
                Subject::Vm(v),
            ) => vm == v,
            (Problem::NeverFits { members, .. }, Subject::Vm(v)) => members.contains(v),
            (Problem::NeverFits { set, .. }, Subject::Group(g)) => sets
                .iter()
                .any(|s| s.kind == set.kind && s.name == set.name && &s.host_group == g),
            (Problem::MixedPriorities { set, .. }, Subject::Vm(v)) => set_has(set, v),
            _ => false,
        }
    }
}

fn list(hosts: &[(String, u32, u32)]) -> String {
    hosts
        .iter()
        .map(|(n, c, m)| format!("{n} ({} CPUs, {m} MiB)", crate::cli::query::cpus_text(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownMember { set, vm } => {
                write!(f, "{set}: member {vm} is not a VM in the HSDB")
            }
            Problem::MemberOutsideGroup {
                set,
                group,
                vm,
                vm_group,
            } => match vm_group {
                Some(g) => write!(
                    f,
                    "{set} is in host group {group:?} but its member {vm} is in host group {g:?}"
                ),
                None => write!(
                    f,
                    "{set} is in host group {group:?} but its member {vm} has no host \
                     (current or home) in any group"
                ),
            },
            Problem::TooFewMembers { set, members } => write!(
                f,
                "{set} has {members} member(s): a set relates at least 2 VMs"
            ),
            Problem::CollocatedAndApart {
                collocation,
                anticollocation,
                vms,
            } => write!(
                f,
                "{} and {} are in {collocation} (always on one host) and in \
                 {anticollocation} (never on one host)",
                vms.0, vms.1
            ),
            Problem::InTwoSets { first, second, vm } => write!(
                f,
                "{vm} is in {first} and in {second}: a VM is in at most one {} (make them one)",
                first.kind.word()
            ),
            Problem::NeverFits {
                set,
                cpu_milli,
                memory_mb,
                hosts,
                ..
            } => {
                let cpu =
                    crate::cli::query::cpus_text(u32::try_from(*cpu_milli).unwrap_or(u32::MAX));
                if hosts.is_empty() {
                    write!(
                        f,
                        "{set} can never fit: no host of its group is left once its members' \
                         exclusions are applied"
                    )
                } else {
                    write!(
                        f,
                        "{set} can never fit: together its members need {cpu} CPUs and \
                         {memory_mb} MiB (at flexible capacity), more than any host of its \
                         group that none of them excludes: {}",
                        list(hosts)
                    )
                }
            }
            Problem::ApartMoreThanHosts {
                set,
                members,
                hosts,
            } => write!(
                f,
                "{set} has {members} members but its group has {hosts} hosts: they can never \
                 all run apart"
            ),
            Problem::ApartNoSpareHost { set, hosts } => write!(
                f,
                "{set} has as many members as its group has hosts ({hosts}): after a host \
                 failure the member it ran cannot be restarted apart from the others (it \
                 stays down, reported by the planner)"
            ),
            Problem::MixedPriorities { set, priorities } => write!(
                f,
                "{set} mixes priorities ({}): the members of a {} must have one priority",
                priorities
                    .iter()
                    .map(|(vm, p)| format!("{vm} {p}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                set.kind.word()
            ),
            Problem::NoBackupHost { shown, group, .. } => write!(
                f,
                "no backup host will be left for VM {shown}: its exclusions name every host \
                 of host group {group:?} but the one it runs on"
            ),
            Problem::HomeHostExcluded { shown, host, .. } => write!(
                f,
                "VM {shown}: its home host {host} is in its exclusion list (it is never \
                 restarted there)"
            ),
        }
    }
}

/// Why [`load`] failed: the HSDB could not be read. Nothing else fails a load.
#[derive(Debug, thiserror::Error)]
#[error("policies of host group {group:?}: {source}")]
pub struct LoadError {
    /// The host group.
    pub group: String,
    /// The HSDB's error.
    pub source: hsdb::Error,
}

/// What [`load_checked`] gives the engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded {
    /// What the planner gets.
    pub policies: Policies,
    /// Every problem of the group's policies, with what was done about it.
    pub problems: Vec<String>,
}

/// The [`Policies`] of host group `group`; problems are logged (`tracing::warn!`).
pub fn load(db: &Hsdb, group: &str) -> Result<Policies, LoadError> {
    let loaded = load_checked(db, group)?;
    for p in &loaded.problems {
        tracing::warn!(host_group = group, "policy: {p}");
    }
    Ok(loaded.policies)
}

/// The [`Policies`] of `group` and its problems, each with what the planner gets.
pub fn load_checked(db: &Hsdb, group: &str) -> Result<Loaded, LoadError> {
    let view = db.policy_view().map_err(|source| LoadError {
        group: group.to_owned(),
        source,
    })?;
    Ok(build(&view, group))
}

/// Facts about the store used by the rules.
struct Facts<'v> {
    view: &'v PolicyView,
    vms: HashMap<Uuid, &'v VmRow>,
    hosts: HashMap<HostId, &'v HostRecord>,
    /// Hosts of each group, by id.
    groups: BTreeMap<&'v str, Vec<&'v HostRecord>>,
    exclusions: BTreeMap<Uuid, BTreeSet<HostId>>,
}

impl<'v> Facts<'v> {
    fn new(view: &'v PolicyView) -> Facts<'v> {
        let mut groups: BTreeMap<&str, Vec<&HostRecord>> = BTreeMap::new();
        for h in &view.hosts {
            groups.entry(h.host_group.as_str()).or_default().push(h);
        }
        let mut exclusions: BTreeMap<Uuid, BTreeSet<HostId>> = BTreeMap::new();
        for e in &view.exclusions {
            exclusions.entry(e.vm).or_default().insert(e.host);
        }
        Facts {
            view,
            vms: view.vms.iter().map(|v| (v.uuid, v)).collect(),
            hosts: view.hosts.iter().map(|h| (h.id, h)).collect(),
            groups,
            exclusions,
        }
    }

    /// The VM's group: its current host's, else its home host's.
    fn group_of(&self, vm: &VmRow) -> Option<&'v str> {
        vm.current_host
            .or(vm.home_host)
            .and_then(|h| self.hosts.get(&h))
            .map(|h| h.host_group.as_str())
    }

    fn shown(&self, vm: &Uuid) -> String {
        match self.vms.get(vm) {
            Some(v) if !v.name.is_empty() => format!("{} ({vm})", v.name),
            _ => vm.to_string(),
        }
    }

    fn host_name(&self, id: HostId) -> String {
        self.hosts
            .get(&id)
            .map_or_else(|| format!("#{id}"), |h| h.name.clone())
    }

    fn flex(&self, group: &str) -> FlexibleCapacity {
        let mut flex = FlexibleCapacity::default();
        for r in self.view.flexible.iter().filter(|r| r.host_group == group) {
            let f = Flex {
                cpu_pct: r.cpu_pct,
                memory_pct: r.memory_pct,
            };
            match r.priority {
                Priority::High => flex.high = f,
                Priority::Medium => flex.medium = f,
                Priority::Low => flex.low = f,
            }
        }
        flex
    }
}

/// `value` × `pct` / 100, rounded up (a VM is never started smaller than asked).
fn scaled(value: u32, pct: u8) -> u64 {
    (u64::from(value) * u64::from(pct)).div_ceil(100)
}

/// Problems of each set on its own: unknown members, members of another group, too few,
/// mixed priorities, never fits, more members than hosts.
fn set_problems(f: &Facts<'_>, set: &PolicyRow, out: &mut Vec<Problem>) {
    let r = SetRef::of(set);
    for m in &set.members {
        match f.vms.get(m) {
            None => out.push(Problem::UnknownMember {
                set: r.clone(),
                vm: *m,
            }),
            Some(vm) => {
                let g = f.group_of(vm);
                if g != Some(set.host_group.as_str()) {
                    out.push(Problem::MemberOutsideGroup {
                        set: r.clone(),
                        group: set.host_group.clone(),
                        vm: f.shown(m),
                        vm_group: g.map(str::to_owned),
                    });
                }
            }
        }
    }
    if set.members.len() < 2 {
        out.push(Problem::TooFewMembers {
            set: r.clone(),
            members: set.members.len(),
        });
    }
    let known: Vec<&VmRow> = set
        .members
        .iter()
        .filter_map(|m| f.vms.get(m).copied())
        .collect();
    let hosts: &[&HostRecord] = f
        .groups
        .get(set.host_group.as_str())
        .map_or(&[], Vec::as_slice);
    match set.kind {
        PolicyKind::Collocation | PolicyKind::Workgroup => {
            let first = known.first().map(|v| v.priority);
            if known.iter().any(|v| Some(v.priority) != first) {
                out.push(Problem::MixedPriorities {
                    set: r.clone(),
                    priorities: known
                        .iter()
                        .map(|v| (f.shown(&v.uuid), v.priority))
                        .collect(),
                });
            }
        }
        PolicyKind::Anticollocation => {
            let n = set.members.len();
            if n > hosts.len() {
                out.push(Problem::ApartMoreThanHosts {
                    set: r.clone(),
                    members: n,
                    hosts: hosts.len(),
                });
            } else if n == hosts.len() && n >= 2 {
                out.push(Problem::ApartNoSpareHost {
                    set: r.clone(),
                    hosts: n,
                });
            }
        }
    }
    if set.kind == PolicyKind::Collocation && !known.is_empty() {
        let flex = f.flex(&set.host_group);
        let cpu: u64 = known
            .iter()
            .map(|v| scaled(v.cpu_milli, flex.of(v.priority).cpu_pct))
            .sum();
        let mem: u64 = known
            .iter()
            .map(|v| scaled(v.memory_mb, flex.of(v.priority).memory_pct))
            .sum();
        let excluded: BTreeSet<HostId> = known
            .iter()
            .filter_map(|v| f.exclusions.get(&v.uuid))
            .flatten()
            .copied()
            .collect();
        let candidates: Vec<&&HostRecord> =
            hosts.iter().filter(|h| !excluded.contains(&h.id)).collect();
        let fits = candidates
            .iter()
            .any(|h| u64::from(h.cpu_milli) >= cpu && u64::from(h.memory_mb) >= mem);
        if !fits {
            out.push(Problem::NeverFits {
                set: r,
                members: set.members.clone(),
                cpu_milli: cpu,
                memory_mb: mem,
                hosts: candidates
                    .iter()
                    .map(|h| (h.name.clone(), h.cpu_milli, h.memory_mb))
                    .collect(),
            });
        }
    }
}

/// Problems between sets, in id order: the set added later of a conflicting pair is
/// named second and returned with the problem.
fn conflicts(f: &Facts<'_>, sets: &[&PolicyRow]) -> Vec<(Problem, i64)> {
    let mut out = Vec::new();
    let mut ordered: Vec<&PolicyRow> = sets.to_vec();
    ordered.sort_by_key(|s| s.id);
    // Only sets that share a VM are compared: the pairs (later, earlier) by VM.
    let mut by_vm: HashMap<&Uuid, Vec<usize>> = HashMap::new();
    for (i, s) in ordered.iter().enumerate() {
        for m in &s.members {
            by_vm.entry(m).or_default().push(i);
        }
    }
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for idx in by_vm.values() {
        for (k, &j) in idx.iter().enumerate() {
            for &i in &idx[..k] {
                pairs.insert((j.max(i), j.min(i)));
            }
        }
    }
    for (j, i) in pairs {
        let (a, b) = (ordered[i], ordered[j]);
        let shared: Vec<&Uuid> = a.members.iter().filter(|m| b.members.contains(m)).collect();
        if shared.is_empty() {
            continue;
        }
        let problem = match (a.kind, b.kind) {
            (PolicyKind::Collocation, PolicyKind::Collocation)
            | (PolicyKind::Workgroup, PolicyKind::Workgroup) => Some(Problem::InTwoSets {
                first: SetRef::of(a),
                second: SetRef::of(b),
                vm: f.shown(shared[0]),
            }),
            (PolicyKind::Collocation, PolicyKind::Anticollocation)
            | (PolicyKind::Anticollocation, PolicyKind::Collocation)
                if shared.len() >= 2 =>
            {
                let (c, x) = if a.kind == PolicyKind::Collocation {
                    (a, b)
                } else {
                    (b, a)
                };
                Some(Problem::CollocatedAndApart {
                    collocation: SetRef::of(c),
                    anticollocation: SetRef::of(x),
                    vms: (f.shown(shared[0]), f.shown(shared[1])),
                })
            }
            _ => None,
        };
        if let Some(p) = problem {
            out.push((p, b.id));
        }
    }
    out
}

/// Exclusion problems of VM `vm` (in `group`).
fn exclusion_problems(f: &Facts<'_>, vm: &VmRow, out: &mut Vec<Problem>) {
    let Some(excluded) = f.exclusions.get(&vm.uuid) else {
        return;
    };
    if let Some(home) = vm.home_host
        && excluded.contains(&home)
    {
        out.push(Problem::HomeHostExcluded {
            vm: vm.uuid,
            shown: f.shown(&vm.uuid),
            host: f.host_name(home),
        });
    }
    let Some(group) = f.group_of(vm) else {
        return;
    };
    let own = vm.current_host.or(vm.home_host);
    let backups = f.groups.get(group).map_or(0, |hs| {
        hs.iter()
            .filter(|h| Some(h.id) != own && !excluded.contains(&h.id))
            .count()
    });
    if backups == 0 {
        out.push(Problem::NoBackupHost {
            vm: vm.uuid,
            shown: f.shown(&vm.uuid),
            group: group.to_owned(),
        });
    }
}

/// Every problem of the stored policies: of host group `group`'s, or of every group's.
pub fn check(view: &PolicyView, group: Option<&str>) -> Vec<Problem> {
    let f = Facts::new(view);
    let mut out = Vec::new();
    let sets: Vec<&PolicyRow> = view
        .sets
        .iter()
        .filter(|s| group.is_none_or(|g| s.host_group == g))
        .collect();
    for s in &sets {
        set_problems(&f, s, &mut out);
    }
    out.extend(conflicts(&f, &sets).into_iter().map(|(p, _)| p));
    for vm in &view.vms {
        if group.is_none_or(|g| f.group_of(vm) == Some(g)) {
            exclusion_problems(&f, vm, &mut out);
        }
    }
    out
}

/// The refusals of a change that touched `subjects`: the problems of the store as the
/// change leaves it that concern them and refuse (`forced`: a VM left without a backup
/// host is accepted), and its warnings (the other problems that concern them).
pub fn judge(
    view: &PolicyView,
    subjects: &[Subject],
    forced: bool,
) -> (Vec<Problem>, Vec<Problem>) {
    let (mut refused, mut warned) = (Vec::new(), Vec::new());
    for p in check(view, None) {
        if subjects.iter().any(|s| p.concerns(s, &view.sets)) {
            if p.refuses(forced) {
                refused.push(p);
            } else {
                warned.push(p);
            }
        }
    }
    (refused, warned)
}

/// The planner's [`Policies`] of `group` from `view`, and its problems with what was
/// done about each:
/// - a member that is not a VM, or not in the group: left out of the set;
/// - a set left with fewer than 2 members: left out;
/// - a collocation and an anticollocation that share two VMs: the one added later is
///   left out (the planner would place such a collocation nowhere: its VMs would stay
///   down), the earlier one kept;
/// - two collocations (or two workgroups) that share a VM: both handed over; the
///   planner joins them into one;
/// - everything else (never fits, more members than hosts, mixed priorities, no backup
///   host, home host excluded): handed to the planner as stored, which reports what it
///   cannot place.
pub fn build(view: &PolicyView, group: &str) -> Loaded {
    let f = Facts::new(view);
    let mut problems = Vec::new();
    let mut out = Policies {
        flexible: f.flex(group),
        ..Policies::default()
    };
    // The group's sets with the members that can be planned.
    let mut kept: Vec<PolicyRow> = Vec::new();
    for s in view.sets.iter().filter(|s| s.host_group == group) {
        let mut raw = Vec::new();
        set_problems(&f, s, &mut raw);
        let mut set = s.clone();
        for p in raw {
            match &p {
                Problem::UnknownMember { vm, .. } => {
                    set.members.retain(|m| m != vm);
                    problems.push(format!("{p}; planned without it"));
                }
                Problem::MemberOutsideGroup { .. } => {
                    problems.push(format!("{p}; planned without it"));
                }
                Problem::TooFewMembers { .. } => {}
                _ => problems.push(format!("{p}; planned as stored")),
            }
        }
        set.members
            .retain(|m| f.vms.get(m).is_some_and(|vm| f.group_of(vm) == Some(group)));
        if set.members.len() < 2 {
            problems.push(format!(
                "{} has {} plannable member(s) in host group {group:?}: left out",
                SetRef::of(s),
                set.members.len()
            ));
            continue;
        }
        kept.push(set);
    }
    let refs: Vec<&PolicyRow> = kept.iter().collect();
    let mut dropped = BTreeSet::new();
    for (p, later) in conflicts(&f, &refs) {
        if matches!(p, Problem::InTwoSets { .. }) {
            // The planner joins sets of one kind that share a VM: both constraints hold.
            problems.push(format!("{p}; planned as one (the planner joins them)"));
            continue;
        }
        let name = kept
            .iter()
            .find(|s| s.id == later)
            .map(|s| SetRef::of(s).to_string())
            .unwrap_or_default();
        problems.push(format!(
            "{p}; {name} left out (the later one), so its VMs are still restarted"
        ));
        dropped.insert(later);
    }
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    for s in kept.into_iter().filter(|s| !dropped.contains(&s.id)) {
        let set = VmSet {
            name: s.name,
            members: s.members,
        };
        match s.kind {
            PolicyKind::Collocation => out.collocations.push(set),
            PolicyKind::Anticollocation => out.anticollocations.push(set),
            PolicyKind::Workgroup => out.workgroups.push(set),
        }
    }
    for vm in view.vms.iter().filter(|v| f.group_of(v) == Some(group)) {
        let mut raw = Vec::new();
        exclusion_problems(&f, vm, &mut raw);
        problems.extend(raw.into_iter().map(|p| format!("{p}; planned as stored")));
        if let Some(hosts) = f.exclusions.get(&vm.uuid) {
            out.exclusions
                .insert(vm.uuid, hosts.iter().copied().collect());
        }
    }
    Loaded {
        policies: out,
        problems,
    }
}

/// What changed from `old` to `new`, in words (for the engine's log); empty when equal.
pub fn describe_change(old: &Policies, new: &Policies) -> Vec<String> {
    let mut out = Vec::new();
    let sets = |kind: &str, a: &[VmSet], b: &[VmSet], out: &mut Vec<String>| {
        for s in b {
            match a.iter().find(|o| o.name == s.name) {
                None => out.push(format!(
                    "{kind} {:?} added ({} VMs)",
                    s.name,
                    s.members.len()
                )),
                Some(o) if o.members != s.members => out.push(format!(
                    "{kind} {:?} changed ({} → {} VMs)",
                    s.name,
                    o.members.len(),
                    s.members.len()
                )),
                Some(_) => {}
            }
        }
        for o in a {
            if !b.iter().any(|s| s.name == o.name) {
                out.push(format!("{kind} {:?} removed", o.name));
            }
        }
    };
    sets(
        "collocation",
        &old.collocations,
        &new.collocations,
        &mut out,
    );
    sets(
        "anticollocation",
        &old.anticollocations,
        &new.anticollocations,
        &mut out,
    );
    sets("workgroup", &old.workgroups, &new.workgroups, &mut out);
    if old.exclusions != new.exclusions {
        out.push(format!(
            "host exclusions: {} VMs → {} VMs",
            old.exclusions.len(),
            new.exclusions.len()
        ));
    }
    if old.flexible != new.flexible {
        let f = &new.flexible;
        out.push(format!(
            "flexible capacity (cpu/memory %): high {}/{}, medium {}/{}, low {}/{}",
            f.high.cpu_pct,
            f.high.memory_pct,
            f.medium.cpu_pct,
            f.medium.memory_pct,
            f.low.cpu_pct,
            f.low.memory_pct
        ));
    }
    out
}

#[cfg(test)]
mod tests;
