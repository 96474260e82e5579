//! `hactl add|delete|modify|query collocation|anticollocation|workgroup`, per-VM host
//! exclusions (`modify vm VM blacklist_hosts=… policy=add|delete`), flexible capacity
//! (`modify host_group G memory_capacity=… cpu_capacity=… priority=…`) and `query
//! policy`: the seed's ksysmgr policy commands (seed 004 L15639-15966).
//!
//! Every change is checked by [`crate::policy::judge`] inside the HSDB's write
//! transaction, on the store as the change would leave it; a refusal (exit 2) names
//! each conflict and leaves the store unchanged. Warnings are printed after the change.

use std::collections::{BTreeMap, HashMap};

use hsdb::{HostId, Hsdb, PolicyChange, PolicyKind, PolicyRow, Uuid, VmRow};
use serde::Serialize;

use super::Format;
use super::error::CliError;
use super::query::{find_host, find_vm, groups};
use super::table::Table;
use super::values::{self, Assignment};
use crate::policy::{Problem, SetRef, Subject, judge};

/// Keys of `modify vm` that change its host exclusions.
pub const EXCLUSION_KEYS: &[&str] = &["blacklist_hosts", "exclude_hosts", "policy"];
/// Keys of `modify host_group` that set flexible capacity.
pub const FLEX_KEYS: &[&str] = &["memory_capacity", "cpu_capacity", "priority"];

/// Most VMs in one set (bounded input).
pub const MAX_MEMBERS: usize = 10_000;

/// The arguments of `args` (`key=value`) when their keys are among `keys`: `None` when
/// none is; refused when they are mixed with other keys (one command changes a policy
/// or settings, so a refusal of either leaves everything unchanged).
pub fn own_keys(
    args: &[String],
    keys: &[&str],
    named: &str,
) -> Result<Option<Vec<String>>, CliError> {
    let (mine, rest): (Vec<String>, Vec<String>) = args.iter().cloned().partition(|a| {
        let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k).trim();
        keys.contains(&key)
    });
    match (mine.is_empty(), rest.is_empty()) {
        (true, _) => Ok(None),
        (false, true) => Ok(Some(mine)),
        (false, false) => Err(CliError::bad_value(
            "setting",
            format!("{:?}", rest[0]),
            format!("no other key next to {named} (give them in a command of their own)"),
        )),
    }
}

/// The kind as a command word.
fn word(kind: PolicyKind) -> &'static str {
    kind.word()
}

/// A store error of a policy change, as the CLI reports it.
fn store_error(db: &Hsdb, e: hsdb::Error) -> CliError {
    match e {
        hsdb::Error::Exists { what, key } => CliError::Usage(format!(
            "{what} {key:?} exists; change it with `hactl modify {what} {key} vm=…`, or delete \
             it first"
        )),
        hsdb::Error::NotFound { what, key } => CliError::NotFound {
            what,
            name: format!("{key:?}"),
            hsdb: db.path().to_owned(),
        },
        e => CliError::Hsdb(e),
    }
}

/// The refusal of a change, naming every conflict.
fn refusal(what: &str, problems: &[Problem], forceable: bool) -> CliError {
    let mut text = format!("{what}: refused, nothing changed:");
    for p in problems {
        text.push_str("\n  ");
        text.push_str(&p.to_string());
    }
    if forceable {
        text.push_str("\n  (--force stores it anyway)");
    }
    CliError::Usage(text)
}

/// Apply `change`, checked; returns the rows changed and the warnings.
fn apply(
    db: &mut Hsdb,
    change: &PolicyChange,
    subjects: &[Subject],
    forced: bool,
    what: &str,
    now_ms: i64,
) -> Result<(usize, Vec<Problem>), CliError> {
    let mut warnings = Vec::new();
    let outcome = db
        .policy_change(change, now_ms, |view| {
            let (refused, warned) = judge(view, subjects, forced);
            warnings = warned;
            if refused.is_empty() {
                Ok(())
            } else {
                Err(refused)
            }
        })
        .map_err(|e| store_error(db, e))?;
    match outcome {
        Ok(n) => Ok((n, warnings)),
        Err(refused) => {
            let forceable = refused
                .iter()
                .all(|p| matches!(p, Problem::NoBackupHost { .. }));
            Err(refusal(what, &refused, forceable))
        }
    }
}

fn warning_lines(out: &mut String, warnings: &[Problem]) {
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
}

/// The VMs of `vm=a,b,c` (names or UUIDs), each once, in order.
fn members(db: &Hsdb, value: &str) -> Result<Vec<VmRow>, CliError> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(CliError::bad_value(
            "vm",
            format!("{value:?}"),
            "a comma-separated list of VM names or UUIDs",
        ));
    }
    if items.len() > MAX_MEMBERS {
        return Err(CliError::bad_value(
            "vm",
            format!("{} VMs", items.len()),
            format!("at most {MAX_MEMBERS} VMs in one set"),
        ));
    }
    let mut out: Vec<VmRow> = Vec::with_capacity(items.len());
    for item in items {
        let vm = find_vm(db, item)?;
        if out.iter().any(|v| v.uuid == vm.uuid) {
            return Err(CliError::bad_value(
                "vm",
                format!("{item:?}"),
                "each VM once (it is given twice)",
            ));
        }
        out.push(vm);
    }
    Ok(out)
}

fn shown(vm: &VmRow) -> String {
    if vm.name.is_empty() {
        vm.uuid.to_string()
    } else {
        vm.name.clone()
    }
}

/// The host group of a VM: its current host's, else its home host's.
fn group_of(db: &Hsdb, vm: &VmRow) -> Result<Option<String>, CliError> {
    match vm.current_host.or(vm.home_host) {
        Some(h) => Ok(db.host(h)?.map(|h| h.host_group)),
        None => Ok(None),
    }
}

fn set_name(name: &str) -> Result<String, CliError> {
    values::name("NAME", name)
}

/// `add collocation|anticollocation|workgroup NAME vm=A,B,… [host_group=G]`.
pub fn add_set(
    db: &mut Hsdb,
    kind: PolicyKind,
    name: &str,
    args: &[String],
    now_ms: i64,
) -> Result<String, CliError> {
    let name = set_name(name)?;
    let assignments = values::assignments(args)?;
    let mut vms = None;
    let mut group = None;
    for a in &assignments {
        match a.key.as_str() {
            "vm" | "vms" => vms = Some(members(db, &a.value)?),
            "host_group" => {
                let g = values::name("host_group", &a.value)?;
                if !groups(db)?.contains_key(&g) {
                    return Err(CliError::NotFound {
                        what: "host group",
                        name: format!("{g:?}"),
                        hsdb: db.path().to_owned(),
                    });
                }
                group = Some(g);
            }
            other => {
                return Err(unknown(
                    other,
                    &format!("add {}", word(kind)),
                    "vm=VM,VM,… (required), host_group=G",
                ));
            }
        }
    }
    let Some(vms) = vms else {
        return Err(CliError::Usage(format!(
            "add {} {name}: vm= is required (e.g. hactl add {} {name} vm=web1,web2)",
            word(kind),
            word(kind)
        )));
    };
    let group = match group {
        Some(g) => g,
        None => {
            let mut found = None;
            for vm in &vms {
                if let Some(g) = group_of(db, vm)? {
                    found = Some(g);
                    break;
                }
            }
            found.ok_or_else(|| {
                CliError::Usage(format!(
                    "add {} {name}: none of its VMs has a host yet, so its host group is \
                     unknown: give host_group=G",
                    word(kind)
                ))
            })?
        }
    };
    let change = PolicyChange::AddSet {
        kind,
        name: name.clone(),
        host_group: group.clone(),
        members: vms.iter().map(|v| v.uuid).collect(),
    };
    let set = SetRef {
        kind,
        name: name.clone(),
    };
    let (_, warnings) = apply(
        db,
        &change,
        &[Subject::Set(set.clone())],
        false,
        &format!("add {set}"),
        now_ms,
    )?;
    let mut out = format!(
        "{set} added in host group {group}: {}\n",
        vms.iter().map(shown).collect::<Vec<_>>().join(", ")
    );
    warning_lines(&mut out, &warnings);
    Ok(out)
}

/// `delete collocation|anticollocation|workgroup NAME`.
pub fn delete_set(
    db: &mut Hsdb,
    kind: PolicyKind,
    name: &str,
    now_ms: i64,
) -> Result<String, CliError> {
    let change = PolicyChange::DeleteSet {
        kind,
        name: name.to_owned(),
    };
    // Deleting a set cannot create a conflict: no check.
    db.policy_apply(&change, now_ms)
        .map_err(|e| store_error(db, e))?;
    Ok(format!("{} {name:?} deleted\n", word(kind)))
}

/// `modify collocation|… NAME vm=A,B,… [policy=add|delete]`: replace the members, or
/// add / remove the VMs given.
pub fn modify_set(
    db: &mut Hsdb,
    kind: PolicyKind,
    name: &str,
    args: &[String],
    now_ms: i64,
) -> Result<String, CliError> {
    let assignments = values::assignments(args)?;
    let mut value = None;
    let mut op = None;
    for a in &assignments {
        match a.key.as_str() {
            "vm" | "vms" => value = Some(a.value.clone()),
            "policy" => op = Some(add_delete(a)?),
            other => {
                return Err(unknown(
                    other,
                    &format!("modify {}", word(kind)),
                    "vm=VM,VM,… (required), policy=add|delete (without it: the members are replaced)",
                ));
            }
        }
    }
    let Some(value) = value else {
        return Err(CliError::Usage(format!(
            "modify {} {name}: vm= is required",
            word(kind)
        )));
    };
    let Some(current) = db.policy(kind, name)? else {
        return Err(CliError::NotFound {
            what: word(kind),
            name: format!("{name:?}"),
            hsdb: db.path().to_owned(),
        });
    };
    if op == Some(false) {
        // Removing: a member whose VM row is gone (pruned) is named by its UUID.
        let mut gone = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Uuid::parse(item.as_bytes()) {
                Ok(u) if current.members.contains(&u) && db.vm(&u)?.is_none() => gone.push(u),
                _ => {}
            }
        }
        if !gone.is_empty() {
            let rest: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|s| {
                    !s.is_empty() && Uuid::parse(s.as_bytes()).map_or(true, |u| !gone.contains(&u))
                })
                .collect();
            let mut removed: Vec<Uuid> = gone;
            if !rest.is_empty() {
                for vm in members(db, &rest.join(","))? {
                    removed.push(vm.uuid);
                }
            }
            return write_members(
                db,
                kind,
                name,
                current
                    .members
                    .iter()
                    .copied()
                    .filter(|m| !removed.contains(m))
                    .collect(),
                now_ms,
            );
        }
    }
    let vms = members(db, &value)?;
    let given: Vec<Uuid> = vms.iter().map(|v| v.uuid).collect();
    let members: Vec<Uuid> = match op {
        None => given.clone(),
        Some(true) => {
            let mut m = current.members.clone();
            for vm in &vms {
                if m.contains(&vm.uuid) {
                    return Err(CliError::bad_value(
                        "vm",
                        format!("{:?}", shown(vm)),
                        format!("a VM not in {} {name:?} yet", word(kind)),
                    ));
                }
                m.push(vm.uuid);
            }
            m
        }
        Some(false) => {
            for vm in &vms {
                if !current.members.contains(&vm.uuid) {
                    return Err(CliError::bad_value(
                        "vm",
                        format!("{:?}", shown(vm)),
                        format!("a member of {} {name:?}", word(kind)),
                    ));
                }
            }
            current
                .members
                .iter()
                .copied()
                .filter(|m| !given.contains(m))
                .collect()
        }
    };
    write_members(db, kind, name, members, now_ms)
}

/// Store `members` as the members of set `name` of `kind`, checked.
fn write_members(
    db: &mut Hsdb,
    kind: PolicyKind,
    name: &str,
    members: Vec<Uuid>,
    now_ms: i64,
) -> Result<String, CliError> {
    let set = SetRef {
        kind,
        name: name.to_owned(),
    };
    let change = PolicyChange::SetMembers {
        kind,
        name: name.to_owned(),
        members: members.clone(),
    };
    let (_, warnings) = apply(
        db,
        &change,
        &[Subject::Set(set.clone())],
        false,
        &format!("modify {set}"),
        now_ms,
    )?;
    let names: HashMap<Uuid, String> = db.vms()?.into_iter().map(|v| (v.uuid, shown(&v))).collect();
    let mut out = format!(
        "{set} now: {}\n",
        members
            .iter()
            .map(|m| names.get(m).cloned().unwrap_or_else(|| m.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    warning_lines(&mut out, &warnings);
    Ok(out)
}

fn add_delete(a: &Assignment) -> Result<bool, CliError> {
    match a.value.to_ascii_lowercase().as_str() {
        "add" => Ok(true),
        "delete" | "remove" => Ok(false),
        _ => Err(CliError::bad_value(
            "policy",
            format!("{:?}", a.value),
            "add or delete",
        )),
    }
}

fn unknown(key: &str, command: &str, known: &str) -> CliError {
    CliError::bad_value(
        "key",
        format!("{key:?}"),
        format!("a key of `{command}`: {known}"),
    )
}

/// `modify vm VM blacklist_hosts=H1,H2 policy=add|delete [--force]`.
pub fn modify_exclusions(
    db: &mut Hsdb,
    given: &str,
    args: &[String],
    force: bool,
    now_ms: i64,
) -> Result<String, CliError> {
    let assignments = values::assignments(args)?;
    let mut hosts = None;
    let mut op = None;
    for a in &assignments {
        match a.key.as_str() {
            "blacklist_hosts" | "exclude_hosts" => {
                let mut ids: Vec<(HostId, String)> = Vec::new();
                for item in a.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let h = find_host(db, item)?;
                    if !ids.iter().any(|(id, _)| *id == h.id) {
                        ids.push((h.id, h.name));
                    }
                }
                if ids.is_empty() {
                    return Err(CliError::bad_value(
                        &a.key,
                        format!("{:?}", a.value),
                        "a comma-separated list of host names",
                    ));
                }
                hosts = Some(ids);
            }
            "policy" => op = Some(add_delete(a)?),
            _ => unreachable_key(&a.key)?,
        }
    }
    let Some(hosts) = hosts else {
        return Err(CliError::Usage(
            "modify vm: policy= goes with blacklist_hosts=H1,H2 (e.g. hactl modify vm web1 \
             blacklist_hosts=h3 policy=add)"
                .into(),
        ));
    };
    let Some(add) = op else {
        return Err(CliError::Usage(
            "modify vm: blacklist_hosts= needs policy=add (exclude them) or policy=delete \
             (allow them again)"
                .into(),
        ));
    };
    let vm = find_vm(db, given)?;
    let ids: Vec<HostId> = hosts.iter().map(|(id, _)| *id).collect();
    let change = if add {
        PolicyChange::AddExclusions {
            vm: vm.uuid,
            hosts: ids,
        }
    } else {
        PolicyChange::DeleteExclusions {
            vm: vm.uuid,
            hosts: ids,
        }
    };
    let what = format!("vm {}: blacklist_hosts", shown(&vm));
    let (n, warnings) = apply(db, &change, &[Subject::Vm(vm.uuid)], force, &what, now_ms)?;
    let names: Vec<&str> = hosts.iter().map(|(_, n)| n.as_str()).collect();
    let mut out = format!(
        "vm {} ({}): {} {} ({} changed)\n",
        shown(&vm),
        vm.uuid,
        if add { "excluded" } else { "allowed again" },
        names.join(", "),
        n
    );
    let now: Vec<String> = exclusion_names(db, &vm.uuid)?;
    out.push_str(&format!(
        "excluded hosts now: {}\n",
        if now.is_empty() {
            "none".to_owned()
        } else {
            now.join(", ")
        }
    ));
    warning_lines(&mut out, &warnings);
    Ok(out)
}

fn unreachable_key(key: &str) -> Result<(), CliError> {
    Err(unknown(
        key,
        "modify vm",
        "blacklist_hosts=H1,H2 policy=add|delete (not combined with other keys)",
    ))
}

/// After `modify vm` changed a VM's priority, size or home host: a `warning:` line for
/// each problem of the policies that concerns it (the change is not refused: the
/// policies are checked again when `hactl run` loads them).
pub fn vm_warnings(db: &Hsdb, given: &str) -> Result<String, CliError> {
    let vm = find_vm(db, given)?;
    let view = db.policy_view()?;
    let mut out = String::new();
    let subject = Subject::Vm(vm.uuid);
    let problems: Vec<Problem> = crate::policy::check(&view, None)
        .into_iter()
        .filter(|p| p.concerns(&subject, &view.sets))
        .collect();
    warning_lines(&mut out, &problems);
    Ok(out)
}

/// The names of the hosts VM `vm` is excluded from.
pub fn exclusion_names(db: &Hsdb, vm: &Uuid) -> Result<Vec<String>, CliError> {
    let names: HashMap<HostId, String> = db.hosts()?.into_iter().map(|h| (h.id, h.name)).collect();
    Ok(db
        .exclusions(Some(vm))?
        .iter()
        .map(|e| {
            names
                .get(&e.host)
                .cloned()
                .unwrap_or_else(|| format!("#{}", e.host))
        })
        .collect())
}

/// A percent of `memory_capacity=` / `cpu_capacity=`: `Some(1..=100)`, or `None` for
/// `none` (no reduction: 100 %).
fn capacity(a: &Assignment) -> Result<Option<u8>, CliError> {
    let v = a.value.to_ascii_lowercase();
    match v.as_str() {
        "none" => Ok(None),
        "minimum" | "current_desired" => Err(CliError::bad_value(
            &a.key,
            format!("{:?}", a.value),
            "a percent 1..100 or none (the seed's minimum and current_desired are a \
             partition profile's minimum and desired sizes; an hvha VM has one nominal size, \
             its cpu and memory)",
        )),
        _ => v
            .trim_end_matches('%')
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .map(Some)
            .ok_or_else(|| {
                CliError::bad_value(&a.key, format!("{:?}", a.value), "a percent 1..100 or none")
            }),
    }
}

/// `modify host_group G memory_capacity=P|none cpu_capacity=P|none priority=high|medium|low`.
pub fn modify_flexible(
    db: &mut Hsdb,
    group: &str,
    args: &[String],
    now_ms: i64,
) -> Result<String, CliError> {
    let assignments = values::assignments(args)?;
    let mut cpu = None;
    let mut mem = None;
    let mut priority = None;
    for a in &assignments {
        match a.key.as_str() {
            "cpu_capacity" => cpu = Some(capacity(a)?),
            "memory_capacity" => mem = Some(capacity(a)?),
            "priority" => priority = Some(values::priority("priority", &a.value)?),
            other => {
                return Err(unknown(
                    other,
                    "modify host_group (flexible capacity)",
                    "memory_capacity=1..100|none, cpu_capacity=1..100|none, \
                     priority=High|Medium|Low (not combined with other keys)",
                ));
            }
        }
    }
    let Some(priority) = priority else {
        return Err(CliError::Usage(format!(
            "modify host_group {group}: memory_capacity= and cpu_capacity= need priority=High|Medium|Low \
             (the VMs they apply to), e.g. hactl modify host_group {group} memory_capacity=50 \
             cpu_capacity=80 priority=low"
        )));
    };
    if cpu.is_none() && mem.is_none() {
        return Err(CliError::Usage(format!(
            "modify host_group {group}: priority= goes with memory_capacity= and/or cpu_capacity= \
             (a VM's own priority is `hactl modify vm VM priority=…`)"
        )));
    }
    if !groups(db)?.contains_key(group) || group.is_empty() {
        return Err(CliError::NotFound {
            what: "host group",
            name: format!("{group:?}"),
            hsdb: db.path().to_owned(),
        });
    }
    let current = db
        .flexible_capacity(Some(group))?
        .into_iter()
        .find(|r| r.priority == priority);
    // `none` is 100 %; both at 100 % is no row.
    let new_cpu = match cpu {
        Some(v) => v.unwrap_or(100),
        None => current.as_ref().map_or(100, |r| r.cpu_pct),
    };
    let new_mem = match mem {
        Some(v) => v.unwrap_or(100),
        None => current.as_ref().map_or(100, |r| r.memory_pct),
    };
    let change = if new_cpu == 100 && new_mem == 100 {
        PolicyChange::UnsetFlexible {
            host_group: group.to_owned(),
            priority,
        }
    } else {
        PolicyChange::SetFlexible {
            host_group: group.to_owned(),
            priority,
            cpu_pct: cpu.map(|v| v.unwrap_or(100)),
            memory_pct: mem.map(|v| v.unwrap_or(100)),
        }
    };
    let what = format!("host_group {group}: flexible capacity of {priority} VMs");
    let (_, warnings) = apply(
        db,
        &change,
        &[Subject::Group(group.to_owned())],
        false,
        &what,
        now_ms,
    )?;
    let stored = db
        .flexible_capacity(Some(group))?
        .into_iter()
        .find(|r| r.priority == priority)
        .map_or((100, 100), |r| (r.cpu_pct, r.memory_pct));
    let mut out = format!(
        "host_group {group}: {priority} VMs restarted away from their home host get \
         cpu_capacity {}%, memory_capacity {}%\n",
        stored.0, stored.1
    );
    warning_lines(&mut out, &warnings);
    Ok(out)
}

/// One set as `query collocation|…` shows it.
#[derive(Debug, Serialize)]
pub struct SetView {
    kind: String,
    name: String,
    host_group: String,
    /// Each member: UUID and name ("" when it has none or its VM row is gone).
    members: Vec<MemberView>,
    /// The problems the checks find now (a set made invalid by later changes).
    problems: Vec<String>,
    created: String,
    updated: String,
}

/// A member of a set.
#[derive(Debug, Serialize)]
pub struct MemberView {
    uuid: String,
    name: String,
}

fn set_views(rows: &[PolicyRow], view: &hsdb::PolicyView) -> Vec<SetView> {
    let names: HashMap<Uuid, &str> = view.vms.iter().map(|v| (v.uuid, v.name.as_str())).collect();
    let problems = crate::policy::check(view, None);
    rows.iter()
        .map(|r| {
            let subject = Subject::Set(SetRef {
                kind: r.kind,
                name: r.name.clone(),
            });
            SetView {
                kind: r.kind.word().to_owned(),
                name: r.name.clone(),
                host_group: r.host_group.clone(),
                members: r
                    .members
                    .iter()
                    .map(|m| MemberView {
                        uuid: m.to_string(),
                        name: names.get(m).map_or("", |n| n).to_owned(),
                    })
                    .collect(),
                problems: problems
                    .iter()
                    .filter(|p| p.concerns(&subject, &view.sets))
                    .map(ToString::to_string)
                    .collect(),
                created: super::table::utc(r.created_ms),
                updated: super::table::utc(r.updated_ms),
            }
        })
        .collect()
}

fn member_text(m: &MemberView) -> String {
    if m.name.is_empty() {
        m.uuid.clone()
    } else {
        m.name.clone()
    }
}

/// `query collocation|anticollocation|workgroup [NAME]`.
pub fn query_sets(
    db: &Hsdb,
    kind: PolicyKind,
    name: Option<&str>,
    format: Format,
) -> Result<String, CliError> {
    let view = db.policy_view()?;
    let rows: Vec<PolicyRow> = view
        .sets
        .iter()
        .filter(|s| s.kind == kind && name.is_none_or(|n| s.name == n))
        .cloned()
        .collect();
    if let (Some(n), true) = (name, rows.is_empty()) {
        return Err(CliError::NotFound {
            what: kind.word(),
            name: format!("{n:?}"),
            hsdb: db.path().to_owned(),
        });
    }
    let views = set_views(&rows, &view);
    if format == Format::Json {
        return super::json(&views);
    }
    if let (Some(_), Some(v)) = (name, views.first()) {
        let mut out = String::new();
        out.push_str(&format!("{:<12}{}\n", "Kind", v.kind));
        out.push_str(&format!(
            "{:<12}{}\n",
            "Name",
            super::table::printable(&v.name)
        ));
        out.push_str(&format!(
            "{:<12}{}\n",
            "Host_group",
            super::table::printable(&v.host_group)
        ));
        out.push_str(&format!("{:<12}{} UTC\n", "Created", v.created));
        out.push_str(&format!("{:<12}{} UTC\n", "Updated", v.updated));
        for p in &v.problems {
            out.push_str(&format!(
                "{:<12}{}\n",
                "Problem",
                super::table::printable(p)
            ));
        }
        let mut t = Table::new(&["MEMBER", "UUID"]);
        for m in &v.members {
            t.row(vec![
                if m.name.is_empty() {
                    "-".into()
                } else {
                    m.name.clone()
                },
                m.uuid.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        return Ok(out);
    }
    let mut t = Table::new(&["NAME", "HOST_GROUP", "VMS", "MEMBERS", "PROBLEMS"]);
    for v in &views {
        t.row(vec![
            v.name.clone(),
            v.host_group.clone(),
            v.members.len().to_string(),
            v.members
                .iter()
                .map(member_text)
                .collect::<Vec<_>>()
                .join(","),
            if v.problems.is_empty() {
                "-".into()
            } else {
                v.problems.join("; ")
            },
        ]);
    }
    Ok(if t.is_empty() {
        format!(
            "no {} yet (hactl add {} NAME vm=VM,VM,…)\n",
            kind.word(),
            kind.word()
        )
    } else {
        t.render()
    })
}

/// Everything `query policy` shows.
#[derive(Debug, Serialize)]
pub struct PolicyOverview {
    sets: Vec<SetView>,
    /// Per VM (name or UUID): the hosts it is never relocated to.
    host_exclusions: BTreeMap<String, Vec<String>>,
    /// Per host group and priority: cpu and memory percent (rows stored; others 100).
    flexible_capacity: Vec<FlexView>,
    /// Warnings and conflicts of the stored policies.
    problems: Vec<String>,
}

/// One flexible capacity row.
#[derive(Debug, Serialize)]
pub struct FlexView {
    host_group: String,
    priority: String,
    cpu_capacity: u8,
    memory_capacity: u8,
}

/// `query policy [--host-group G]`: every set, exclusion and flexible capacity, with
/// the problems the checks find now.
pub fn query_overview(db: &Hsdb, group: Option<&str>, format: Format) -> Result<String, CliError> {
    let view = db.policy_view()?;
    if let Some(g) = group
        && !view.hosts.iter().any(|h| h.host_group == g)
    {
        return Err(CliError::NotFound {
            what: "host group",
            name: format!("{g:?}"),
            hsdb: db.path().to_owned(),
        });
    }
    let rows: Vec<PolicyRow> = view
        .sets
        .iter()
        .filter(|s| group.is_none_or(|g| s.host_group == g))
        .cloned()
        .collect();
    let sets = set_views(&rows, &view);
    let host_names: HashMap<HostId, &str> =
        view.hosts.iter().map(|h| (h.id, h.name.as_str())).collect();
    let host_groups: HashMap<HostId, &str> = view
        .hosts
        .iter()
        .map(|h| (h.id, h.host_group.as_str()))
        .collect();
    let vms: HashMap<Uuid, &VmRow> = view.vms.iter().map(|v| (v.uuid, v)).collect();
    let mut host_exclusions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &view.exclusions {
        let Some(vm) = vms.get(&e.vm) else { continue };
        let vm_group = vm
            .current_host
            .or(vm.home_host)
            .and_then(|h| host_groups.get(&h).copied());
        if group.is_some_and(|g| vm_group != Some(g)) {
            continue;
        }
        host_exclusions.entry(shown(vm)).or_default().push(
            host_names
                .get(&e.host)
                .map_or_else(|| format!("#{}", e.host), |n| (*n).to_owned()),
        );
    }
    let flexible_capacity: Vec<FlexView> = view
        .flexible
        .iter()
        .filter(|r| group.is_none_or(|g| r.host_group == g))
        .map(|r| FlexView {
            host_group: r.host_group.clone(),
            priority: r.priority.as_str().to_owned(),
            cpu_capacity: r.cpu_pct,
            memory_capacity: r.memory_pct,
        })
        .collect();
    let problems: Vec<String> = crate::policy::check(&view, group)
        .iter()
        .map(ToString::to_string)
        .collect();
    let overview = PolicyOverview {
        sets,
        host_exclusions,
        flexible_capacity,
        problems,
    };
    if format == Format::Json {
        return super::json(&overview);
    }
    let mut out = String::new();
    let mut t = Table::new(&["KIND", "NAME", "HOST_GROUP", "MEMBERS"]);
    for s in &overview.sets {
        t.row(vec![
            s.kind.clone(),
            s.name.clone(),
            s.host_group.clone(),
            s.members
                .iter()
                .map(member_text)
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    out.push_str(&if t.is_empty() {
        "no collocation, anticollocation or workgroup\n".to_owned()
    } else {
        t.render()
    });
    out.push('\n');
    let mut t = Table::new(&["VM", "EXCLUDED_HOSTS"]);
    for (vm, hosts) in &overview.host_exclusions {
        t.row(vec![vm.clone(), hosts.join(",")]);
    }
    out.push_str(&if t.is_empty() {
        "no host exclusion\n".to_owned()
    } else {
        t.render()
    });
    out.push('\n');
    let mut t = Table::new(&["HOST_GROUP", "PRIORITY", "CPU_CAPACITY", "MEMORY_CAPACITY"]);
    for f in &overview.flexible_capacity {
        t.row(vec![
            f.host_group.clone(),
            f.priority.clone(),
            format!("{}%", f.cpu_capacity),
            format!("{}%", f.memory_capacity),
        ]);
    }
    out.push_str(&if t.is_empty() {
        "flexible capacity: 100% for every priority (none set)\n".to_owned()
    } else {
        t.render()
    });
    for p in &overview.problems {
        out.push_str(&format!("problem: {}\n", super::table::printable(p)));
    }
    Ok(out)
}

/// For `query vm`: the sets VM `vm` is in (`collocation "db"`), from `sets`.
pub fn sets_of(sets: &[PolicyRow], vm: &Uuid) -> Vec<String> {
    sets.iter()
        .filter(|s| s.members.contains(vm))
        .map(|s| {
            SetRef {
                kind: s.kind,
                name: s.name.clone(),
            }
            .to_string()
        })
        .collect()
}
