//! `hactl query vm|host|hm|app|event|relocation|params`: the HSDB as an operator reads it,
//! through a read-only connection (it never takes the write lock, never waits for the
//! monitors' writes and never holds them up).
//!
//! Each query returns rows of its own serialisable type: a table by default, `--json` an
//! array of objects with the same facts under stable names.

use std::collections::{BTreeMap, HashMap};

use hsdb::{HmState, HostId, HostRecord, Hsdb, Uuid, VmRow};
use serde::Serialize;

use super::Format;
use super::error::CliError;
use super::table::{Table, duration, printable, utc};
use super::values;

/// Most rows `--limit` may ask for.
pub const MAX_LIMIT: u32 = 100_000;

/// `u32` milli-CPUs as `2`, `0.5`, `1.25`.
pub fn cpus_text(milli: u32) -> String {
    let (int, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:03}").trim_end_matches('0').to_owned()
    }
}

/// Host names by id, for tables.
pub fn host_names(db: &Hsdb) -> Result<HashMap<HostId, String>, CliError> {
    Ok(db.hosts()?.into_iter().map(|h| (h.id, h.name)).collect())
}

fn host_name(names: &HashMap<HostId, String>, id: Option<HostId>) -> String {
    match id {
        None => "-".to_owned(),
        Some(id) => names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
    }
}

/// The VM named by `given`: a UUID, or a name that exactly one VM has (seed 004
/// L15907-15917: the UUID is needed when names clash).
pub fn find_vm(db: &Hsdb, given: &str) -> Result<VmRow, CliError> {
    if let Ok(uuid) = Uuid::parse(given.as_bytes()) {
        return db.vm(&uuid)?.ok_or_else(|| CliError::NotFound {
            what: "VM",
            name: given.to_owned(),
            hsdb: db.path().to_owned(),
        });
    }
    let mut found: Vec<VmRow> = db.vms()?.into_iter().filter(|v| v.name == given).collect();
    match found.len() {
        0 => Err(CliError::NotFound {
            what: "VM",
            name: format!("{given:?} (neither a UUID nor the name of a VM)"),
            hsdb: db.path().to_owned(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(CliError::bad_value(
            "VM",
            format!("{given:?}"),
            format!(
                "one VM: {} VMs have this name ({}); give the UUID",
                found.len(),
                found
                    .iter()
                    .map(|v| v.uuid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The host named `name`.
pub fn find_host(db: &Hsdb, name: &str) -> Result<HostRecord, CliError> {
    db.hosts()?
        .into_iter()
        .find(|h| h.name == name)
        .ok_or_else(|| CliError::NotFound {
            what: "host",
            name: format!("{name:?}"),
            hsdb: db.path().to_owned(),
        })
}

/// One VM as `query vm` shows it.
#[derive(Debug, Serialize)]
pub struct VmView {
    uuid: String,
    name: String,
    host: String,
    home_host: String,
    state: String,
    managed: bool,
    ha_monitor: bool,
    priority: String,
    vm_failure_detection_speed: String,
    cpu: String,
    memory_mb: u32,
    ostype: Option<String>,
    /// `missedHb` as NeedsAttention computes it: seconds since the earliest miss, when
    /// every monitor of its host has a miss time.
    missed_hb_sec: Option<u64>,
    /// Per monitor: its view of the VM's heartbeats.
    monitors: Vec<VmMonitorView>,
    short_msg: String,
    updated: String,
    /// The per-VM restart budget (docs/controlplane.md, "Executor").
    restart_budget: BudgetView,
    /// The critical-application ladder: same-host restarts since the last relocation.
    app_restarts_on_host: LadderView,
    /// Hosts it is never relocated to (`modify vm VM blacklist_hosts=… policy=add`).
    host_exclusions: Vec<String>,
    /// The collocations, anticollocations and workgroups it is in.
    policies: Vec<String>,
    /// The applications its agent reported (`query app`).
    applications: Vec<AppView>,
}

/// The per-VM restart budget as `query vm` shows it: `restarts 2/3 in 1h`.
#[derive(Debug, Serialize)]
pub struct BudgetView {
    /// Restarts for the VM's own failures within the window.
    used: u32,
    /// `vm_restart_limit` of its group.
    limit: u32,
    /// `vm_restart_window`, for people (`1h`).
    window: String,
    /// The same, ms.
    window_ms: i64,
}

/// The critical-application ladder as `query vm` shows it: `app restarts on host 1/3`.
#[derive(Debug, Serialize)]
pub struct LadderView {
    /// Same-host restarts since the last relocation to another host, within 24 h.
    used: u32,
    /// Same-host restarts before the next relocates (seed 004 L13767-13771).
    limit: u32,
}

/// What the restart counters of every VM are read from: the `relocation` rows of the
/// longest window, each VM's group parameters.
struct Counters {
    rows: Vec<hsdb::RestartRecord>,
    groups: HashMap<HostId, String>,
    params: HashMap<String, crate::params::GroupParams>,
    settings: Vec<crate::params::Setting>,
}

/// Rows read for the counters at most (every VM's restarts within the longest window).
const COUNTER_ROWS: u32 = 100_000;

impl Counters {
    fn load(db: &Hsdb, now_ms: i64) -> Result<Counters, CliError> {
        let settings = db.params()?;
        let groups: HashMap<HostId, String> = db
            .hosts()?
            .into_iter()
            .map(|h| (h.id, h.host_group))
            .collect();
        let mut params = HashMap::new();
        let mut longest = crate::fde::APP_RESTART_WINDOW_MS;
        let mut names: Vec<&String> = groups.values().collect();
        names.sort();
        names.dedup();
        for g in names {
            let p = crate::params::GroupParams::resolve(g, &settings)
                .unwrap_or_else(|_| crate::params::GroupParams::standard(g));
            longest = longest.max(p.vm_restart_window_ms);
            params.insert(g.clone(), p);
        }
        let rows = db.restarts_since(None, now_ms.saturating_sub(longest), COUNTER_ROWS)?;
        Ok(Counters {
            rows,
            groups,
            params,
            settings,
        })
    }

    fn of(&self, vm: &VmRow, now_ms: i64) -> (BudgetView, LadderView) {
        let group = vm
            .current_host
            .or(vm.home_host)
            .and_then(|h| self.groups.get(&h));
        let standard;
        let p = match group.and_then(|g| self.params.get(g)) {
            Some(p) => p,
            None => {
                standard = crate::params::GroupParams::resolve("", &self.settings)
                    .unwrap_or_else(|_| crate::params::GroupParams::standard(""));
                &standard
            }
        };
        let since = now_ms.saturating_sub(p.vm_restart_window_ms);
        let used = crate::fde::budget_used(&self.rows, &vm.uuid, since).len();
        let ladder = crate::fde::app_ladder(
            &self.rows,
            &vm.uuid,
            now_ms.saturating_sub(crate::fde::APP_RESTART_WINDOW_MS),
        );
        (
            BudgetView {
                used: u32::try_from(used).unwrap_or(u32::MAX),
                limit: p.vm_restart_limit,
                window: crate::fde::show_window(p.vm_restart_window_ms),
                window_ms: p.vm_restart_window_ms,
            },
            LadderView {
                used: ladder,
                limit: crate::fde::APP_SAME_HOST_RESTARTS,
            },
        )
    }
}

/// One monitor's view of one VM.
#[derive(Debug, Serialize)]
pub struct VmMonitorView {
    hm: String,
    host: String,
    state: String,
    missed_since: Option<String>,
    missed_sec: Option<u64>,
    mac: Option<String>,
}

fn vm_view(
    db: &Hsdb,
    vm: &VmRow,
    names: &HashMap<HostId, String>,
    hm_hosts: &HashMap<Uuid, HostId>,
    counters: &Counters,
    now_ms: i64,
) -> Result<VmView, CliError> {
    let (restart_budget, app_restarts_on_host) = counters.of(vm, now_ms);
    let rows = db.vm_hms(&vm.uuid)?;
    let monitors: Vec<VmMonitorView> = rows
        .iter()
        .map(|r| VmMonitorView {
            hm: r.hm.to_string(),
            host: host_name(names, hm_hosts.get(&r.hm).copied()),
            state: r.last_state.as_str().to_owned(),
            missed_since: r.hb_missed_ms.map(utc),
            missed_sec: r
                .hb_missed_ms
                .map(|t| u64::try_from(now_ms.saturating_sub(t) / 1000).unwrap_or(0)),
            mac: r.mac.map(|m| m.to_string()),
        })
        .collect();
    // Missed on every monitor of its current host, as NeedsAttention reports it.
    let on_host: Vec<_> = rows
        .iter()
        .filter(|r| vm.current_host.is_some() && hm_hosts.get(&r.hm) == vm.current_host.as_ref())
        .collect();
    let missed_hb_sec = if !on_host.is_empty() && on_host.iter().all(|r| r.hb_missed_ms.is_some()) {
        on_host
            .iter()
            .filter_map(|r| r.hb_missed_ms)
            .min()
            .map(|t| u64::try_from(now_ms.saturating_sub(t) / 1000).unwrap_or(0))
    } else {
        None
    };
    Ok(VmView {
        uuid: vm.uuid.to_string(),
        name: vm.name.clone(),
        host: host_name(names, vm.current_host),
        home_host: host_name(names, vm.home_host),
        state: vm.state.as_str().to_owned(),
        managed: vm.managed,
        ha_monitor: vm.ha_monitor,
        priority: vm.priority.as_str().to_owned(),
        vm_failure_detection_speed: vm.detection_speed.as_str().to_owned(),
        cpu: cpus_text(vm.cpu_milli),
        memory_mb: vm.memory_mb,
        ostype: vm.ostype.clone(),
        missed_hb_sec,
        monitors,
        short_msg: format!("{:#x}", vm.short_msg),
        updated: utc(vm.updated_ms),
        restart_budget,
        app_restarts_on_host,
        host_exclusions: Vec::new(),
        policies: Vec::new(),
        applications: app_views(db, Some(vm))?,
    })
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `query vm [UUID|NAME]`: every VM as a table, or one VM in detail.
pub fn vms(
    db: &Hsdb,
    which: Option<&str>,
    format: Format,
    now_ms: i64,
) -> Result<String, CliError> {
    let names = host_names(db)?;
    let hm_hosts: HashMap<Uuid, HostId> = db.hms()?.into_iter().map(|h| (h.uuid, h.host)).collect();
    let rows = match which {
        Some(given) => vec![find_vm(db, given)?],
        None => db.vms()?,
    };
    let counters = Counters::load(db, now_ms)?;
    let mut views = rows
        .iter()
        .map(|vm| vm_view(db, vm, &names, &hm_hosts, &counters, now_ms))
        .collect::<Result<Vec<_>, _>>()?;
    // The policies each VM is in, and its host exclusions.
    let sets = db.policies(None)?;
    let mut exclusions: HashMap<Uuid, Vec<String>> = HashMap::new();
    for e in db.exclusions(None)? {
        exclusions
            .entry(e.vm)
            .or_default()
            .push(host_name(&names, Some(e.host)));
    }
    for (view, row) in views.iter_mut().zip(&rows) {
        view.policies = super::policy::sets_of(&sets, &row.uuid);
        view.host_exclusions = exclusions.remove(&row.uuid).unwrap_or_default();
    }
    if format == Format::Json {
        return super::json(&views);
    }
    if let (Some(_), Some(v)) = (which, views.first()) {
        return Ok(vm_detail(v));
    }
    let mut t = Table::new(&[
        "UUID",
        "NAME",
        "HOST",
        "STATE",
        "MANAGED",
        "HA_MONITOR",
        "PRIORITY",
        "SPEED",
        "CPU",
        "MEMORY",
        "HEARTBEATS",
        "RESTARTS",
    ]);
    for v in &views {
        t.row(vec![
            v.uuid.clone(),
            if v.name.is_empty() {
                "-".into()
            } else {
                v.name.clone()
            },
            v.host.clone(),
            v.state.clone(),
            yes(v.managed),
            if v.ha_monitor { "enable" } else { "disable" }.into(),
            v.priority.clone(),
            v.vm_failure_detection_speed.clone(),
            v.cpu.clone(),
            format!("{} MiB", v.memory_mb),
            heartbeat_summary(v),
            format!(
                "{}, app {}/{}",
                budget_text(&v.restart_budget),
                v.app_restarts_on_host.used,
                v.app_restarts_on_host.limit
            ),
        ]);
    }
    Ok(if t.is_empty() {
        "no VM in the HSDB yet (agents appear when a monitor discovers them)\n".to_owned()
    } else {
        t.render()
    })
}

/// `2/3 in 1h`, `3/3 in 1h (spent)`.
fn budget_text(b: &BudgetView) -> String {
    let spent = if b.used >= b.limit { " (spent)" } else { "" };
    format!("{}/{} in {}{spent}", b.used, b.limit, b.window)
}

/// `2/2 ok`, `missed 42 s on 2/2`, `1/2 missing`.
fn heartbeat_summary(v: &VmView) -> String {
    let total = v.monitors.len();
    let missing = v
        .monitors
        .iter()
        .filter(|m| m.missed_since.is_some())
        .count();
    match (v.missed_hb_sec, total) {
        (_, 0) => "-".to_owned(),
        (Some(s), _) => format!("missed {s} s on every monitor of its host"),
        (None, _) if missing == 0 => format!("{total}/{total} heartbeating"),
        (None, _) => format!("{missing}/{total} missing"),
    }
}

fn vm_detail(v: &VmView) -> String {
    let mut out = String::new();
    let mut line = |k: &str, val: &str| {
        out.push_str(&format!("{k:<28}{}\n", super::table::printable(val)));
    };
    line("UUID", &v.uuid);
    line("Name", if v.name.is_empty() { "-" } else { &v.name });
    line("Host", &v.host);
    line("Home_host", &v.home_host);
    line("State", &v.state);
    line("Managed", &yes(v.managed));
    line(
        "HA_monitor",
        if v.ha_monitor { "enable" } else { "disable" },
    );
    line("Priority", &v.priority);
    line("VM_failure_detection_speed", &v.vm_failure_detection_speed);
    line("CPU", &v.cpu);
    line("Memory", &format!("{} MiB", v.memory_mb));
    line("OS", v.ostype.as_deref().unwrap_or("-"));
    line(
        "Missed_heartbeat",
        &v.missed_hb_sec
            .map_or("no (some monitor of its host hears it)".to_owned(), |s| {
                format!("{s} s on every monitor of its host")
            }),
    );
    line(
        "Blacklist_hosts",
        &if v.host_exclusions.is_empty() {
            "none".to_owned()
        } else {
            v.host_exclusions.join(", ")
        },
    );
    line(
        "Policies",
        &if v.policies.is_empty() {
            "none".to_owned()
        } else {
            v.policies.join(", ")
        },
    );
    line("Short_msg", &v.short_msg);
    line(
        "Restarts",
        &format!(
            "{} (vm_restart_limit, vm_restart_window)",
            budget_text(&v.restart_budget)
        ),
    );
    line(
        "App_restarts_on_host",
        &format!(
            "{}/{} (since its last relocation, within 24h)",
            v.app_restarts_on_host.used, v.app_restarts_on_host.limit
        ),
    );
    line("Updated", &format!("{} UTC", v.updated));
    if v.applications.is_empty() {
        line("Applications", "none reported");
    } else {
        line("Applications", &v.applications.len().to_string());
        out.push('\n');
        out.push_str(&app_table(&v.applications, false).render());
        out.push('\n');
    }
    let mut t = Table::new(&["MONITOR", "ON_HOST", "HEARTBEATS", "MISSED_SINCE", "MAC"]);
    for m in &v.monitors {
        t.row(vec![
            m.hm.clone(),
            m.host.clone(),
            match m.missed_sec {
                Some(s) => format!("{} ({s} s)", m.state),
                None => m.state.clone(),
            },
            m.missed_since.clone().unwrap_or_else(|| "-".into()),
            m.mac.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if t.is_empty() {
        out.push_str("no monitor has seen this VM\n");
    } else {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// One host as `query host` shows it.
#[derive(Debug, Serialize)]
pub struct HostView {
    id: i64,
    name: String,
    host_group: String,
    machine_type: String,
    model: String,
    serial: String,
    cpu: String,
    memory_mb: u32,
    monitors: usize,
    monitors_up: usize,
    vms: usize,
    vms_managed: usize,
    /// In planned maintenance since (UTC), if it is (`hactl host evacuate`).
    maintenance_since: Option<String>,
}

/// `query host [NAME]`.
pub fn hosts(db: &Hsdb, which: Option<&str>, format: Format) -> Result<String, CliError> {
    let hosts = match which {
        Some(name) => vec![find_host(db, name)?],
        None => db.hosts()?,
    };
    let hms = db.hms()?;
    let vms = db.vms()?;
    let maintenance: HashMap<HostId, i64> = db.hosts_in_maintenance()?.into_iter().collect();
    let views: Vec<HostView> = hosts
        .into_iter()
        .map(|h| {
            let mine = hms.iter().filter(|m| m.host == h.id);
            let on = vms.iter().filter(|v| v.current_host == Some(h.id));
            HostView {
                id: h.id.0,
                monitors: mine.clone().count(),
                monitors_up: mine.filter(|m| m.state == HmState::Up).count(),
                vms: on.clone().count(),
                vms_managed: on.filter(|v| v.managed).count(),
                name: h.name,
                host_group: h.host_group,
                machine_type: h.machine_type,
                model: h.model,
                serial: h.serial,
                cpu: cpus_text(h.cpu_milli),
                memory_mb: h.memory_mb,
                maintenance_since: maintenance.get(&h.id).map(|t| utc(*t)),
            }
        })
        .collect();
    if format == Format::Json {
        return super::json(&views);
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "HOST_GROUP",
        "MACHINE_TYPE",
        "MODEL",
        "SERIAL",
        "CPU",
        "MEMORY",
        "MONITORS_UP",
        "VMS_MANAGED",
        "MAINTENANCE",
    ]);
    for h in &views {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        t.row(vec![
            h.id.to_string(),
            h.name.clone(),
            dash(&h.host_group),
            dash(&h.machine_type),
            dash(&h.model),
            dash(&h.serial),
            h.cpu.clone(),
            format!("{} MiB", h.memory_mb),
            format!("{}/{}", h.monitors_up, h.monitors),
            format!("{}/{}", h.vms_managed, h.vms),
            h.maintenance_since
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| format!("since {t}")),
        ]);
    }
    Ok(if t.is_empty() {
        "no host in the HSDB yet (hactl add host NAME group=G cpu=N memory=M)\n".to_owned()
    } else {
        t.render()
    })
}

/// One monitor as `query hm` shows it.
#[derive(Debug, Serialize)]
pub struct HmView {
    uuid: String,
    host: String,
    state: String,
    reason: String,
    last_heartbeat: String,
    silent_sec: u64,
    has_data: bool,
    version: String,
    incarnation: String,
    vms_detected: u64,
    vms_missing: u64,
    vms_suspended: u64,
}

/// `query hm [UUID]`.
pub fn hms(
    db: &Hsdb,
    which: Option<&str>,
    format: Format,
    now_ms: i64,
) -> Result<String, CliError> {
    let names = host_names(db)?;
    let rows = match which {
        Some(given) => {
            let uuid = values::uuid("HM", given)?;
            vec![db.hm(&uuid)?.ok_or_else(|| CliError::NotFound {
                what: "monitor",
                name: given.to_owned(),
                hsdb: db.path().to_owned(),
            })?]
        }
        None => db.hms()?,
    };
    let mut views = Vec::with_capacity(rows.len());
    for hm in rows {
        let counts = db.vm_hm_counts(&hm.uuid)?;
        views.push(HmView {
            uuid: hm.uuid.to_string(),
            host: host_name(&names, Some(hm.host)),
            state: hm.state.as_str().to_owned(),
            reason: format!("{:#010x}", hm.reason),
            last_heartbeat: utc(hm.last_hb_ms),
            silent_sec: u64::try_from(now_ms.saturating_sub(hm.last_hb_ms).max(0) / 1000)
                .unwrap_or(0),
            has_data: hm.has_data,
            version: hm.version.to_string(),
            incarnation: hm.incarnation.to_string(),
            vms_detected: counts.detected,
            vms_missing: counts.missing,
            vms_suspended: counts.suspended,
        });
    }
    if format == Format::Json {
        return super::json(&views);
    }
    let mut t = Table::new(&[
        "UUID",
        "HOST",
        "STATE",
        "REASON",
        "LAST_HEARTBEAT",
        "HAS_DATA",
        "VMS",
        "VERSION",
    ]);
    for h in &views {
        t.row(vec![
            h.uuid.clone(),
            h.host.clone(),
            h.state.clone(),
            h.reason.clone(),
            format!("{} ago", duration(h.silent_sec * 1000)),
            yes(h.has_data),
            format!(
                "{} ok, {} missing, {} suspended",
                h.vms_detected, h.vms_missing, h.vms_suspended
            ),
            h.version.clone(),
        ]);
    }
    Ok(if t.is_empty() {
        "no monitor registered yet (each hmd registers at start)\n".to_owned()
    } else {
        t.render()
    })
}

/// One event as `query event` shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    id: i64,
    time: String,
    kind: String,
    vm: Option<String>,
    hm: Option<String>,
    text: String,
}

/// `query event [--after ID] [--limit N]`: from `after` forward, or the newest `limit`.
pub fn events(
    db: &Hsdb,
    after: Option<i64>,
    limit: u32,
    format: Format,
) -> Result<String, CliError> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(CliError::bad_value(
            "--limit",
            limit.to_string(),
            format!("1..={MAX_LIMIT}"),
        ));
    }
    let rows = match after {
        Some(after) => db.events_after(after, limit)?,
        None => {
            // The newest `limit`: page through, keeping the last ones (the outbox is
            // pruned, so this stays bounded).
            let mut kept = std::collections::VecDeque::new();
            let mut from = 0;
            loop {
                let page = db.events_after(from, 1000)?;
                let Some(last) = page.last().map(|e| e.id) else {
                    break;
                };
                from = last;
                for e in page {
                    if kept.len() == limit as usize {
                        kept.pop_front();
                    }
                    kept.push_back(e);
                }
            }
            kept.into_iter().collect()
        }
    };
    let views: Vec<EventView> = rows
        .into_iter()
        .map(|e| EventView {
            id: e.id,
            time: utc(e.created_ms),
            kind: e.kind,
            vm: e.vm.map(|u| u.to_string()),
            hm: e.hm.map(|u| u.to_string()),
            text: e.text,
        })
        .collect();
    if format == Format::Json {
        return super::json(&views);
    }
    let mut t = Table::new(&["ID", "TIME", "EVENT", "VM", "MONITOR", "TEXT"]);
    for e in &views {
        t.row(vec![
            e.id.to_string(),
            e.time.clone(),
            e.kind.clone(),
            e.vm.clone().unwrap_or_else(|| "-".into()),
            e.hm.clone().unwrap_or_else(|| "-".into()),
            e.text.clone(),
        ]);
    }
    Ok(if t.is_empty() {
        "no event\n".to_owned()
    } else {
        t.render()
    })
}

/// One relocation as `query relocation` shows it.
#[derive(Debug, Serialize)]
pub struct RelocationView {
    id: i64,
    vm: String,
    kind: String,
    from_host: String,
    to_host: String,
    phase: String,
    started: String,
    ended: Option<String>,
    result: Option<String>,
    /// The decision's explanation (the `hactl relocate --dry-run` text for the VM when
    /// it began: target and why, why not each other host); `None` for rows without.
    reasons: Option<String>,
    /// Every phase with its time (`query relocation ID` and `--json`).
    steps: Vec<(String, String)>,
}

/// `query relocation [ID] [--vm VM] [--limit N]`: the newest first; one in detail with
/// its phases.
pub fn relocations(
    db: &Hsdb,
    id: Option<i64>,
    vm: Option<&str>,
    limit: u32,
    format: Format,
) -> Result<String, CliError> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(CliError::bad_value(
            "--limit",
            limit.to_string(),
            format!("1..={MAX_LIMIT}"),
        ));
    }
    let names = host_names(db)?;
    let rows = match (id, vm) {
        (Some(id), _) => vec![db.relocation(id)?.ok_or_else(|| CliError::NotFound {
            what: "relocation",
            name: id.to_string(),
            hsdb: db.path().to_owned(),
        })?],
        (None, Some(vm)) => {
            let vm = find_vm(db, vm)?;
            db.relocations(Some(&vm.uuid), limit)?
        }
        (None, None) => db.relocations(None, limit)?,
    };
    let mut views = Vec::with_capacity(rows.len());
    for r in rows {
        let steps = db
            .relocation_steps(r.id)?
            .into_iter()
            .map(|s| (s.phase, utc(s.at_ms)))
            .collect();
        views.push(RelocationView {
            id: r.id,
            vm: r.vm.to_string(),
            kind: r.kind.as_str().to_owned(),
            from_host: host_name(&names, r.from_host),
            to_host: host_name(&names, r.to_host),
            phase: r.phase,
            started: utc(r.started_ms),
            ended: r.ended_ms.map(utc),
            result: r.result,
            reasons: r.reasons,
            steps,
        });
    }
    if format == Format::Json {
        return super::json(&views);
    }
    let mut t = Table::new(&[
        "ID", "VM", "KIND", "FROM", "TO", "PHASE", "STARTED", "ENDED", "RESULT",
    ]);
    for r in &views {
        t.row(vec![
            r.id.to_string(),
            r.vm.clone(),
            r.kind.clone(),
            r.from_host.clone(),
            r.to_host.clone(),
            r.phase.clone(),
            r.started.clone(),
            r.ended.clone().unwrap_or_else(|| "in progress".into()),
            r.result.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = if t.is_empty() {
        "no relocation\n".to_owned()
    } else {
        t.render()
    };
    // The reasons after the table, each relocation's lines indented under its id (a
    // stored text is shown with control characters replaced).
    let explained: Vec<&RelocationView> = views.iter().filter(|r| r.reasons.is_some()).collect();
    if !explained.is_empty() {
        out.push_str("\nReasons (the decision: target and why, why not each other host):\n");
        for r in explained {
            out.push_str(&format!("relocation {} ({} {}):\n", r.id, r.kind, r.vm));
            for line in r.reasons.as_deref().unwrap_or_default().lines() {
                out.push_str("  ");
                out.push_str(&printable(line));
                out.push('\n');
            }
        }
    }
    if let (Some(_), Some(r)) = (id, views.first()) {
        let mut steps = Table::new(&["PHASE", "AT"]);
        for (phase, at) in &r.steps {
            steps.row(vec![phase.clone(), at.clone()]);
        }
        out.push('\n');
        out.push_str(&steps.render());
    }
    Ok(out)
}

/// Host groups and their hosts, by group name (hosts without a group under "").
pub fn groups(db: &Hsdb) -> Result<BTreeMap<String, Vec<HostRecord>>, CliError> {
    let mut out: BTreeMap<String, Vec<HostRecord>> = BTreeMap::new();
    for h in db.hosts()? {
        out.entry(h.host_group.clone()).or_default().push(h);
    }
    Ok(out)
}

/// One parameter of one host group as `query params` shows it.
#[derive(Debug, Serialize)]
pub struct ParamView {
    host_group: String,
    key: String,
    value: String,
    /// Where the value comes from: `default` (the profile's), `system`, `host_group`.
    from: String,
    /// Below the seed's range (the fast profile).
    below_seed_range: bool,
    help: String,
}

/// `query params [--host-group G] [--vm VM]`: the parameters each engine runs with and
/// where each value comes from; with `--vm`, what that VM is judged with.
pub fn params(
    db: &Hsdb,
    group: Option<&str>,
    vm: Option<&str>,
    config_profile: Option<crate::params::Profile>,
    format: Format,
) -> Result<String, CliError> {
    use std::fmt::Write as _;
    if let Some(given) = vm {
        let vm = find_vm(db, given)?;
        let group = vm
            .current_host
            .and_then(|h| db.host(h).ok().flatten())
            .map(|h| h.host_group)
            .unwrap_or_default();
        let p = super::modify::resolve(db, &group, config_profile)?;
        let v = p.for_vm(&vm);
        let view = serde_json::json!({
            "vm": vm.uuid.to_string(),
            "host_group": group,
            "ha_monitor": v.ha_monitor,
            "vm_failure_detection_speed": v.detection_speed.as_str().to_ascii_lowercase(),
            "vmfdt_ms": v.vmfdt_ms,
            "host_failure_detection_time_ms": p.host_fdt_ms,
            "vm_threshold_ms": p.vm_threshold_ms,
            "profile": p.profile.as_str(),
        });
        if format == Format::Json {
            return super::json(&view);
        }
        return Ok(format!(
            "vm {} (host group {}): ha_monitor {}, vm_failure_detection_speed {}, \
             VMFDT {} = host_failure_detection_time {} + {} x vm_threshold {} (profile {})\n",
            vm.uuid,
            if group.is_empty() { "-" } else { &group },
            if v.ha_monitor { "enable" } else { "disable" },
            v.detection_speed.as_str().to_ascii_lowercase(),
            crate::params::show_ms(v.vmfdt_ms),
            crate::params::show_ms(p.host_fdt_ms),
            crate::params::speed_factor(v.detection_speed),
            crate::params::show_ms(p.vm_threshold_ms),
            p.profile.as_str()
        ));
    }
    let all = groups(db)?;
    let names: Vec<String> = match group {
        Some(g) if !all.contains_key(g) => {
            return Err(CliError::NotFound {
                what: "host group",
                name: format!("{g:?}"),
                hsdb: db.path().to_owned(),
            });
        }
        Some(g) => vec![g.to_owned()],
        None => all.into_keys().filter(|g| !g.is_empty()).collect(),
    };
    let mut views = Vec::new();
    for g in &names {
        let p = super::modify::resolve(db, g, config_profile)?;
        let below: Vec<crate::params::Key> = p.below_seed_keys().collect();
        for (key, value, level) in p.entries() {
            views.push(ParamView {
                host_group: g.clone(),
                key: key.as_str().to_owned(),
                value,
                from: level.as_str().to_owned(),
                below_seed_range: below.contains(&key),
                help: key.help().to_owned(),
            });
        }
    }
    if format == Format::Json {
        return super::json(&views);
    }
    let mut out = String::new();
    for g in &names {
        let mut t = Table::new(&["KEY", "VALUE", "FROM", "MEANING"]);
        for v in views.iter().filter(|v| &v.host_group == g) {
            t.row(vec![
                v.key.clone(),
                if v.below_seed_range {
                    format!("{} (below the seed's range)", v.value)
                } else {
                    v.value.clone()
                },
                v.from.clone(),
                v.help.clone(),
            ]);
        }
        let _ = writeln!(out, "host group {g}:");
        out.push_str(&t.render());
        out.push('\n');
    }
    let stored = db.params()?;
    if !stored.is_empty() {
        let mut t = Table::new(&["SCOPE", "KEY", "VALUE"]);
        for s in stored {
            t.row(vec![s.scope.to_string(), s.key, s.value]);
        }
        out.push_str("settings stored in the HSDB (the most specific wins):\n");
        out.push_str(&t.render());
    }
    if names.is_empty() {
        out.push_str("no host group yet (hactl add host NAME group=G cpu=N memory=M)\n");
    }
    Ok(out)
}

/// One application as `query app` shows it (the `app` table, written from the agents'
/// reports: docs/hvncp.md "Application reports").
#[derive(Debug, Serialize)]
pub struct AppView {
    /// The VM's UUID.
    vm: String,
    /// The VM's name (its UUID when it has none).
    vm_name: String,
    /// The application's name.
    name: String,
    /// UNSET, NORMAL, FAILING, TO_STOP, TO_START, FAILURE or ABNORMAL.
    state: String,
    /// GREEN, YELLOW or RED.
    colour: String,
    /// A FAILURE is escalated (VM restart on its host, then relocation).
    critical: bool,
    /// Local restart cycles done in the guest.
    restarts: u32,
    /// Local restart cycles allowed before FAILURE.
    max_restart: u32,
    /// `false`: monitoring suspended in the guest (`vmmd ctl suspend`).
    monitored: bool,
    /// script, http, smtp or tcp.
    monitor: String,
    /// When its state last changed (agent's clock, UTC); `None` when not reported.
    since: Option<String>,
    /// The same, ms since the Unix epoch.
    since_ms: Option<i64>,
    /// The last failure or message.
    detail: String,
    /// The report the row comes from: agent incarnation (hex) and generation.
    report_inc: Option<String>,
    /// Its generation.
    report_gen: Option<u64>,
    /// When the control plane stored it (UTC).
    updated: String,
}

fn app_view(a: &hsdb::AppRow, vm_name: &str) -> AppView {
    AppView {
        vm: a.vm.to_string(),
        vm_name: vm_name.to_owned(),
        name: a.name.clone(),
        state: a.state.as_str().to_owned(),
        colour: a.colour.as_str().to_owned(),
        critical: a.critical,
        restarts: a.restarts,
        max_restart: a.max_restart,
        monitored: a.monitored,
        monitor: a.monitor.as_str().to_owned(),
        since: a.since_ms.map(utc),
        since_ms: a.since_ms,
        detail: a.detail.clone(),
        report_inc: a.report_inc.map(|i| format!("{i:x}")),
        report_gen: a.report_gen,
        updated: utc(a.updated_ms),
    }
}

/// The applications of `vm` (every VM's when `None`), as views.
fn app_views(db: &Hsdb, vm: Option<&VmRow>) -> Result<Vec<AppView>, CliError> {
    let name_of = |v: &VmRow| {
        if v.name.is_empty() {
            v.uuid.to_string()
        } else {
            v.name.clone()
        }
    };
    Ok(match vm {
        Some(v) => {
            let name = name_of(v);
            db.apps(&v.uuid)?
                .iter()
                .map(|a| app_view(a, &name))
                .collect()
        }
        None => {
            let names: HashMap<Uuid, String> =
                db.vms()?.iter().map(|v| (v.uuid, name_of(v))).collect();
            let mut views: Vec<AppView> = db
                .all_apps()?
                .iter()
                .map(|a| {
                    let name = names
                        .get(&a.vm)
                        .cloned()
                        .unwrap_or_else(|| a.vm.to_string());
                    app_view(a, &name)
                })
                .collect();
            views.sort_by(|a, b| (&a.vm_name, &a.vm, &a.name).cmp(&(&b.vm_name, &b.vm, &b.name)));
            views
        }
    })
}

fn app_table(views: &[AppView], with_vm: bool) -> Table {
    let mut headers = vec![
        "NAME",
        "STATE",
        "COLOUR",
        "CRITICAL",
        "RESTARTS",
        "MONITORED",
        "MONITOR",
        "SINCE",
        "DETAIL",
    ];
    if with_vm {
        headers.insert(1, "VM");
    }
    let mut t = Table::new(&headers);
    for a in views {
        let mut row = vec![
            a.name.clone(),
            a.state.clone(),
            a.colour.clone(),
            yes(a.critical),
            format!("{}/{}", a.restarts, a.max_restart),
            yes(a.monitored),
            a.monitor.clone(),
            a.since.clone().unwrap_or_else(|| "-".into()),
            if a.detail.is_empty() {
                "-".into()
            } else {
                a.detail.clone()
            },
        ];
        if with_vm {
            row.insert(1, a.vm_name.clone());
        }
        t.row(row);
    }
    t
}

/// `query app [UUID|NAME]`: the applications the agents reported, of every VM or of one
/// (an unknown VM is exit 4).
pub fn apps(db: &Hsdb, which: Option<&str>, format: Format) -> Result<String, CliError> {
    let vm = which.map(|given| find_vm(db, given)).transpose()?;
    let views = app_views(db, vm.as_ref())?;
    if format == Format::Json {
        return super::json(&views);
    }
    if views.is_empty() {
        return Ok(match &vm {
            Some(v) => format!(
                "VM {} has reported no application (its agent watches none, or has not \
                 reported yet)\n",
                if v.name.is_empty() {
                    v.uuid.to_string()
                } else {
                    v.name.clone()
                }
            ),
            None => "no application reported yet (agents report them when their \
                     application monitoring engine watches some)\n"
                .to_owned(),
        });
    }
    Ok(app_table(&views, true).render())
}
