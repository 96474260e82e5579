//! The live snapshot: what the pages show that changes, as one JSON document
//! (docs/dashboard.md, "Live updates"). The server sends it over server-sent events when
//! it differs from the last one; `/static/app.js` applies it.
//!
//! The document holds no clock-dependent value: ages are sent as the time they count
//! from (`last_hb_ms`, `missed_since_ms`) and the page counts them up itself, so an idle
//! system produces the same document every second and nothing is sent.

use serde::Serialize;

use hsdb::{EventFilter, HeartbeatState, Hsdb};

use super::board::{Board, Health, vm_label};
use super::catalog::is_maintenance;
use super::pages::heartbeat_text;
use super::records::{activity_label, reasons_of};
use crate::events::severity_of;

/// Relocations in a snapshot (the newest).
pub const SNAPSHOT_RELOCATIONS: u32 = 50;
/// Events in a snapshot (the newest).
pub const SNAPSHOT_EVENTS: u32 = 50;

/// Activities in a snapshot (the newest).
pub const SNAPSHOT_ACTIVITIES: usize = 20;

/// Version of the document's shape.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Doc {
    v: u32,
    counts: Counts,
    vms: Vec<VmLive>,
    monitors: Vec<MonitorLive>,
    hosts: Vec<HostLive>,
    relocations: Vec<RelocationLive>,
    activities: Vec<ActivityLive>,
    events: Vec<EventLive>,
}

#[derive(Serialize)]
struct Counts {
    hosts: usize,
    monitors: usize,
    monitors_up: String,
    vms: usize,
    vms_failed: usize,
    vms_missing: usize,
    relocations_open: usize,
}

/// One VM. To keep the document small with thousands of VMs (it is sent whole at every
/// change), what is usual is left out: `health_why` for an OK VM, `missed_since_ms` when
/// nothing is missed, `monitors` when every monitor's row is DETECTED with no miss.
#[derive(Serialize)]
struct VmLive {
    uuid: String,
    name: String,
    state: &'static str,
    health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_why: Option<String>,
    host: String,
    home_host: String,
    managed: bool,
    heartbeat: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed_since_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    monitors: Option<Vec<HeartbeatLive>>,
}

#[derive(Serialize)]
struct HeartbeatLive {
    hm: String,
    state: &'static str,
    missed_since_ms: Option<i64>,
}

#[derive(Serialize)]
struct MonitorLive {
    uuid: String,
    host: String,
    state: &'static str,
    reason: u32,
    last_hb_ms: i64,
    incarnation: String,
}

#[derive(Serialize)]
struct HostLive {
    name: String,
    maintenance: bool,
}

#[derive(Serialize)]
struct RelocationLive {
    id: i64,
    cause: Option<String>,
    vm: String,
    vm_uuid: String,
    kind: &'static str,
    phase: String,
    from: String,
    to: String,
    started_ms: i64,
    ended_ms: Option<i64>,
    result: Option<String>,
    reasons: Option<String>,
}

#[derive(Serialize)]
struct ActivityLive {
    id: i64,
    group: String,
    kind: &'static str,
    label: &'static str,
    state: &'static str,
    progress: String,
    summary: Option<String>,
    requested_by: String,
    created_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
}

#[derive(Serialize)]
struct EventLive {
    id: i64,
    kind: String,
    severity: &'static str,
    maintenance: bool,
    vm: Option<String>,
    vm_uuid: Option<String>,
    text: String,
    created_ms: i64,
}

/// The live state as one JSON document (`now_ms` is accepted for the contract; the
/// document itself carries no clock, see the module doc).
pub fn snapshot(db: &mut Hsdb, now_ms: i64) -> Result<String, hsdb::Error> {
    let _ = now_ms;
    let board = Board::load(db)?;
    let mut vms = Vec::with_capacity(board.vms.len());
    let (mut failed, mut missing) = (0, 0);
    for vm in &board.vms {
        let h = board.health(vm);
        match h.health {
            Health::Failed => failed += 1,
            Health::Missing => missing += 1,
            _ => {}
        }
        let rows = board.heartbeats(&vm.uuid);
        let usual = rows
            .iter()
            .all(|r| r.last_state == HeartbeatState::Detected && r.hb_missed_ms.is_none());
        vms.push(VmLive {
            uuid: vm.uuid.to_string(),
            name: vm_label(vm),
            state: vm.state.as_str(),
            health: h.health.as_str(),
            health_why: (h.health != Health::Ok).then_some(h.why),
            host: board.host_name(vm.current_host),
            home_host: board.host_name(vm.home_host),
            managed: vm.managed,
            heartbeat: heartbeat_text(&board, vm),
            missed_since_ms: board.missed_since(vm),
            monitors: (!usual).then(|| {
                rows.iter()
                    .map(|r| HeartbeatLive {
                        hm: r.hm.to_string(),
                        state: r.last_state.as_str(),
                        missed_since_ms: r.hb_missed_ms,
                    })
                    .collect()
            }),
        });
    }
    let (up, total) = board.monitors_up();
    let monitors = board
        .hms
        .iter()
        .map(|m| MonitorLive {
            uuid: m.uuid.to_string(),
            host: board.host_name(Some(m.host)),
            state: m.state.as_str(),
            reason: m.reason,
            last_hb_ms: m.last_hb_ms,
            incarnation: m.incarnation.to_string(),
        })
        .collect();
    let hosts = board
        .hosts
        .iter()
        .map(|h| HostLive {
            name: h.name.clone(),
            maintenance: board.maintenance.contains_key(&h.id),
        })
        .collect();
    let name_of = |u: &hsdb::Uuid| {
        board
            .vms
            .iter()
            .find(|v| v.uuid == *u)
            .map_or(u.to_string(), vm_label)
    };
    let rows = db.relocations(None, SNAPSHOT_RELOCATIONS)?;
    // Their causes in one read: the restart records of the same rows.
    let since = rows.iter().map(|r| r.started_ms).min().unwrap_or(0);
    let causes: std::collections::HashMap<i64, String> = db
        .restarts_since(None, since, SNAPSHOT_RELOCATIONS.saturating_mul(2))?
        .into_iter()
        .filter_map(|r| r.cause.map(|c| (r.id, c)))
        .collect();
    let relocations = rows
        .into_iter()
        .map(|r| RelocationLive {
            cause: causes.get(&r.id).cloned(),
            id: r.id,
            vm: name_of(&r.vm),
            vm_uuid: r.vm.to_string(),
            kind: r.kind.as_str(),
            from: board.host_name(r.from_host),
            to: board.host_name(r.to_host),
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            reasons: reasons_of(&r),
            result: r.result,
            phase: r.phase,
        })
        .collect();
    let events = db
        .events_newest(&EventFilter {
            limit: SNAPSHOT_EVENTS,
            ..EventFilter::default()
        })?
        .into_iter()
        .map(|e| EventLive {
            id: e.id,
            severity: severity_of(&e.kind).as_str(),
            maintenance: is_maintenance(&e.kind),
            vm: e.vm.as_ref().map(name_of),
            vm_uuid: e.vm.map(|u| u.to_string()),
            kind: e.kind,
            text: e.text,
            created_ms: e.created_ms,
        })
        .collect();
    let activities = db
        .activities(None, SNAPSHOT_ACTIVITIES)?
        .into_iter()
        .map(|a| ActivityLive {
            id: a.id,
            group: a.host_group,
            kind: a.kind.as_str(),
            label: activity_label(a.kind),
            state: a.state.as_str(),
            // An ended activity's last progress line is history: its summary says
            // how it ended (the page shows "-", like records.rs).
            progress: if a.ended_ms.is_some() {
                "-".to_owned()
            } else {
                a.progress
            },
            summary: a.summary,
            requested_by: a.requested_by,
            created_ms: a.created_ms,
            started_ms: a.started_ms,
            ended_ms: a.ended_ms,
        })
        .collect();
    let doc = Doc {
        v: SNAPSHOT_VERSION,
        counts: Counts {
            hosts: board.hosts.len(),
            monitors: total,
            monitors_up: format!("{up}/{total}"),
            vms: board.vms.len(),
            vms_failed: failed,
            vms_missing: missing,
            relocations_open: board.open.len(),
        },
        vms,
        monitors,
        hosts,
        relocations,
        activities,
        events,
    };
    // Plain structs of strings and numbers: encoding cannot fail; should it, the page
    // is told rather than sent half a document.
    Ok(serde_json::to_string(&doc).unwrap_or_else(|e| {
        serde_json::json!({ "v": SNAPSHOT_VERSION, "error": e.to_string() }).to_string()
    }))
}
