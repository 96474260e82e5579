//! `hactl modify system|host_group|host|vm … key=value…` and `hactl add host|vm`: the
//! operator's writes, in the seed's keywords (seed 004 L15463-15600, L15907-15966).
//!
//! Every value is checked before anything is written: a command with one bad value
//! changes nothing. Parameters (`host_failure_detection_time`, `restart_policy`, …) are
//! checked by [`crate::params::check`] against the ranges of the profile in force and
//! stored in the HSDB's params table at the level named (the most specific level wins
//! when the engine resolves them); `KEY=default` removes the setting at that level, so
//! the value is inherited again. VM and host attributes (`managed`, `priority`, sizes,
//! `host_group`, …) are columns of their rows.
//!
//! A VM's `ha_monitor` and `vm_failure_detection_speed` are written both as VM-level
//! parameters — the most specific level, so `vm_failure_detection_speed=normal` on a VM
//! of a `slow` group means normal — and into the VM's row, which other readers show.

use hsdb::{DetectionSpeed, HostId, HostRecord, Hsdb, VmSettings};

use super::error::CliError;
use super::query::{cpus_text, find_host, find_vm};
use super::values::{self, Assignment};
use crate::params::{self, Profile, Scope};

/// Where `modify` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `modify system`.
    System,
    /// `modify host_group NAME`.
    HostGroup(String),
    /// `modify host NAME`.
    Host(String),
    /// `modify vm UUID|NAME`.
    Vm(String),
}

/// VM attributes `modify vm` accepts besides the VM-level parameters.
const VM_KEYS: &str = "managed=yes|no, ha_monitor=enable|disable, priority=High|Medium|Low, \
    vm_failure_detection_speed=fast|normal|slow, cpu=CPUS, memory=MIB, name=NAME, homehost=HOST";
/// Host attributes `modify host` accepts.
const HOST_KEYS: &str = "host_group=NAME, cpu=CPUS, memory=MIB, machine_type=T, model=M, \
    serial=S, ha_monitor=enable|disable|default";

/// Every stored parameter.
pub fn settings(db: &Hsdb) -> Result<Vec<params::Setting>, CliError> {
    Ok(db.params()?)
}

/// The parameters of `group` ("": the system's alone): the configuration file's profile
/// (when given) as the base, then the stored settings.
pub fn resolve(
    db: &Hsdb,
    group: &str,
    config_profile: Option<Profile>,
) -> Result<params::GroupParams, CliError> {
    let mut all = settings(db)?;
    if group.is_empty() {
        all.retain(|s| s.scope == Scope::System);
    }
    params::GroupParams::resolve_from(group, config_profile.unwrap_or(Profile::Standard), &all)
        .map_err(|e| CliError::Failed(format!("stored parameters: {e}")))
}

/// The profile whose ranges apply to a setting at `scope` (the group's, for a group; the
/// system's otherwise).
fn profile_at(
    db: &Hsdb,
    scope: &Scope,
    group_of: Option<&str>,
    config_profile: Option<Profile>,
) -> Result<Profile, CliError> {
    let group = match scope {
        Scope::HostGroup(g) => g.clone(),
        _ => group_of.unwrap_or("").to_owned(),
    };
    // Stored settings that do not resolve must not block the change that mends them.
    Ok(resolve(db, &group, config_profile)
        .map(|p| p.profile)
        .unwrap_or(config_profile.unwrap_or(Profile::Standard)))
}

fn param_error(e: params::ParamError) -> CliError {
    match e {
        params::ParamError::BadValue {
            key,
            value,
            scope,
            allowed,
        } => CliError::bad_value(format!("{key} (at {scope})"), format!("{value:?}"), allowed),
        other => CliError::Usage(other.to_string()),
    }
}

/// A change checked and ready to write.
enum Change {
    Param {
        scope: Scope,
        key: String,
        value: Option<String>,
    },
    Vm(VmSettings),
    Host(HostRecord),
}

/// Carry out `modify`; returns one line per change.
pub fn modify(
    db: &mut Hsdb,
    target: &Target,
    args: &[String],
    config_profile: Option<Profile>,
    now_ms: i64,
) -> Result<String, CliError> {
    let assignments = values::assignments(args)?;
    let mut changes = Vec::new();
    let mut described = Vec::new();
    match target {
        Target::System | Target::HostGroup(_) => {
            let scope = match target {
                Target::HostGroup(name) => {
                    let groups = super::query::groups(db)?;
                    if !groups.contains_key(name) || name.is_empty() {
                        return Err(CliError::NotFound {
                            what: "host group",
                            name: format!(
                                "{name:?} (no host belongs to it; add one with `hactl add host \
                                 NAME group={name} cpu=N memory=M`)"
                            ),
                            hsdb: db.path().to_owned(),
                        });
                    }
                    Scope::HostGroup(name.clone())
                }
                _ => Scope::System,
            };
            let profile = profile_at(db, &scope, None, config_profile)?;
            for a in &assignments {
                changes.push(param_change(&scope, a, profile)?);
                described.push(format!("{scope}: {}", show(a)));
            }
        }
        Target::Host(name) => {
            let mut host = find_host(db, name)?;
            let scope = Scope::Host(host.id);
            let mut touched = false;
            for a in &assignments {
                match a.key.as_str() {
                    "host_group" => host.host_group = values::name("host_group", &a.value)?,
                    "cpu" => host.cpu_milli = values::cpus("cpu", &a.value, 1)?,
                    "memory" => host.memory_mb = values::memory_mb("memory", &a.value, 1)?,
                    "machine_type" => host.machine_type = values::host_key(&a.key, &a.value)?,
                    "model" => host.model = values::host_key(&a.key, &a.value)?,
                    "serial" => host.serial = values::host_key(&a.key, &a.value)?,
                    "ha_monitor" => {
                        let profile =
                            profile_at(db, &scope, Some(&host.host_group), config_profile)?;
                        changes.push(param_change(&scope, a, profile)?);
                        described.push(format!("host {name}: {}", show(a)));
                        continue;
                    }
                    other => return Err(unknown_key(other, "host", HOST_KEYS)),
                }
                touched = true;
                described.push(format!("host {name}: {}", show(a)));
            }
            if touched {
                changes.push(Change::Host(host));
            }
        }
        Target::Vm(given) => {
            let vm = find_vm(db, given)?;
            let group = vm
                .current_host
                .and_then(|h| db.host(h).ok().flatten())
                .map(|h| h.host_group);
            let (changes, described) =
                plan_vm(db, vm.uuid, group.as_deref(), &assignments, config_profile)?;
            write(db, changes, Some(vm.uuid), now_ms)?;
            return Ok(lines(&described));
        }
    }
    write(db, changes, None, now_ms)?;
    Ok(lines(&described))
}

/// The changes `modify vm` makes to VM `uuid` (on a host of `group`, if any), checked.
fn plan_vm(
    db: &Hsdb,
    uuid: hsdb::Uuid,
    group: Option<&str>,
    assignments: &[Assignment],
    config_profile: Option<Profile>,
) -> Result<(Vec<Change>, Vec<String>), CliError> {
    let scope = Scope::Vm(uuid);
    let mut changes = Vec::new();
    let mut described = Vec::new();
    let mut s = VmSettings::default();
    for a in assignments {
        let (k, v) = (a.key.as_str(), a.value.as_str());
        match k {
            "managed" => s.managed = Some(values::yes_no(k, v)?),
            "priority" => s.priority = Some(values::priority(k, v)?),
            "cpu" => s.cpu_milli = Some(values::cpus(k, v, 1)?),
            "memory" => s.memory_mb = Some(values::memory_mb(k, v, 1)?),
            "name" => s.name = Some(values::vm_name(k, v)?),
            "homehost" | "home_host" => s.home_host = Some(find_host(db, v)?.id),
            "ha_monitor" | "vm_failure_detection_speed" => {
                let profile = profile_at(db, &scope, group, config_profile)?;
                let default = v.eq_ignore_ascii_case("default");
                // The row's column follows: its default when the setting goes.
                if k == "ha_monitor" {
                    s.ha_monitor = Some(default || values::enable_disable(k, v)?);
                } else {
                    s.detection_speed = Some(if default {
                        DetectionSpeed::Normal
                    } else {
                        values::detection_speed(k, v)?
                    });
                }
                changes.push(param_change(&scope, a, profile)?);
            }
            other => return Err(unknown_key(other, "vm", VM_KEYS)),
        }
        described.push(format!("vm {uuid}: {}", show(a)));
    }
    if s != VmSettings::default() {
        changes.push(Change::Vm(s));
    }
    Ok((changes, described))
}

fn show(a: &Assignment) -> String {
    if a.value.eq_ignore_ascii_case("default") {
        format!("{} back to the inherited value", a.key)
    } else {
        format!("{} = {}", a.key, a.value)
    }
}

fn lines(described: &[String]) -> String {
    let mut out = String::new();
    for d in described {
        out.push_str(d);
        out.push('\n');
    }
    out
}

fn unknown_key(key: &str, what: &str, known: &str) -> CliError {
    let hint = match params::Key::from_name(key) {
        Ok(k) => format!(
            " ({key} is a parameter settable at: {})",
            k.levels()
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(_) => String::new(),
    };
    CliError::bad_value(
        "key",
        format!("{key:?}"),
        format!("a key of `modify {what}`: {known}{hint}"),
    )
}

/// A parameter setting, checked (`KEY=default`: removed at that level).
fn param_change(scope: &Scope, a: &Assignment, profile: Profile) -> Result<Change, CliError> {
    if a.value.eq_ignore_ascii_case("default") {
        let key = params::Key::from_name(&a.key).map_err(param_error)?;
        if !key.levels().contains(&params::level_of(scope)) {
            return Err(param_error(params::ParamError::WrongScope {
                key: a.key.clone(),
                scope: scope.to_string(),
                allowed: key
                    .levels()
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        return Ok(Change::Param {
            scope: scope.clone(),
            key: a.key.clone(),
            value: None,
        });
    }
    params::check(scope, &a.key, &a.value, profile).map_err(param_error)?;
    Ok(Change::Param {
        scope: scope.clone(),
        key: a.key.clone(),
        value: Some(a.value.to_ascii_lowercase()),
    })
}

fn write(
    db: &mut Hsdb,
    changes: Vec<Change>,
    vm: Option<hsdb::Uuid>,
    now_ms: i64,
) -> Result<(), CliError> {
    for change in changes {
        match change {
            Change::Param { scope, key, value } => match value {
                Some(v) => db.set_param(&scope, &key, &v)?,
                None => {
                    db.unset_param(&scope, &key)?;
                }
            },
            Change::Vm(settings) => {
                if let Some(vm) = vm {
                    db.set_vm(&vm, &settings, now_ms)?;
                }
            }
            Change::Host(host) => db.upsert_host(&host)?,
        }
    }
    Ok(())
}

/// `add host NAME group=G cpu=N memory=M [machine_type=] [model=] [serial=] [id=N]`.
pub fn add_host(db: &mut Hsdb, name: &str, args: &[String]) -> Result<String, CliError> {
    let name = values::name("NAME", name)?;
    let assignments = values::assignments(args)?;
    let hosts = db.hosts()?;
    if let Some(h) = hosts.iter().find(|h| h.name == name) {
        return Err(CliError::Usage(format!(
            "host {name:?} exists (id {}); change it with `hactl modify host {name} key=value…`",
            h.id
        )));
    }
    let mut id = None;
    let mut host = HostRecord {
        id: HostId(0),
        name: name.clone(),
        machine_type: String::new(),
        model: String::new(),
        serial: String::new(),
        cpu_milli: 0,
        memory_mb: 0,
        host_group: String::new(),
    };
    for a in &assignments {
        let (k, v) = (a.key.as_str(), a.value.as_str());
        match k {
            "group" | "host_group" => host.host_group = values::name(k, v)?,
            "cpu" => host.cpu_milli = values::cpus(k, v, 1)?,
            "memory" => host.memory_mb = values::memory_mb(k, v, 1)?,
            "machine_type" => host.machine_type = values::host_key(k, v)?,
            "model" => host.model = values::host_key(k, v)?,
            "serial" => host.serial = values::host_key(k, v)?,
            "id" => {
                let n: i64 = v.parse().map_err(|_| {
                    CliError::bad_value(k, format!("{v:?}"), "a signed 64-bit integer")
                })?;
                id = Some(HostId(n));
            }
            other => {
                return Err(CliError::bad_value(
                    "key",
                    format!("{other:?}"),
                    "a key of `add host`: group=NAME (required), cpu=CPUS (required), \
                     memory=MIB (required), machine_type=T, model=M, serial=S, id=N",
                ));
            }
        }
    }
    for (key, missing) in [
        ("group", host.host_group.is_empty()),
        ("cpu", host.cpu_milli == 0),
        ("memory", host.memory_mb == 0),
    ] {
        if missing {
            return Err(CliError::Usage(format!(
                "add host {name}: {key}= is required (e.g. hactl add host {name} group=hg1 cpu=16 memory=64G)"
            )));
        }
    }
    host.id = match id {
        Some(id) => {
            if let Some(other) = hosts.iter().find(|h| h.id == id) {
                return Err(CliError::bad_value(
                    "id",
                    id.to_string(),
                    format!("an id no host has (host {:?} has it)", other.name),
                ));
            }
            id
        }
        None => HostId(
            hosts
                .iter()
                .map(|h| h.id.0)
                .max()
                .unwrap_or(0)
                .saturating_add(1)
                .max(1),
        ),
    };
    db.upsert_host(&host)?;
    Ok(format!(
        "host {name} added: id {}, host group {}, {} CPUs, {} MiB\n\
         its monitors' hmd.toml: host_id = {}, host_name = {:?}\n",
        host.id,
        host.host_group,
        cpus_text(host.cpu_milli),
        host.memory_mb,
        host.id,
        name
    ))
}

/// `add vm UUID [key=value…]`: register a VM before any monitor saw it (state ADDED), with
/// the attributes of `modify vm`.
pub fn add_vm(
    db: &mut Hsdb,
    uuid: &str,
    args: &[String],
    config_profile: Option<Profile>,
    now_ms: i64,
) -> Result<String, CliError> {
    let uuid = values::uuid("UUID", uuid)?;
    if db.vm(&uuid)?.is_some() {
        return Err(CliError::Usage(format!(
            "VM {uuid} exists; change it with `hactl modify vm {uuid} key=value…`"
        )));
    }
    // Every value checked before the VM is created.
    let assignments = if args.is_empty() {
        Vec::new()
    } else {
        values::assignments(args)?
    };
    let (changes, described) = plan_vm(db, uuid, None, &assignments, config_profile)?;
    db.set_vm(&uuid, &VmSettings::default(), now_ms)?;
    write(db, changes, Some(uuid), now_ms)?;
    Ok(format!(
        "VM {uuid} added (state ADDED until a monitor sees it)\n{}",
        lines(&described)
    ))
}
