//! `hactl discover [HOST_GROUP] [--deep]`: one discovery, recorded as an activity
//! (docs/operators.md "Discovery").

use serde::Serialize;

use hsdb::Hsdb;

use super::config::Config;
use super::{CliError, Format};
use crate::clock::{Clock, SystemClock};
use crate::discover::{ActivityOutcome, ActivityRun, Depth, DiscoverError, Outcome, run_activity};

/// Longest user name kept in `requested_by`.
const MAX_USER: usize = 64;

/// Who runs this command: `$USER` (else `$LOGNAME`), else `uid N` from /proc.
pub fn user() -> String {
    let named = ["USER", "LOGNAME"].into_iter().find_map(|k| {
        std::env::var(k).ok().filter(|u| {
            !u.is_empty() && u.len() <= MAX_USER && u.chars().all(|c| c.is_ascii_graphic())
        })
    });
    if let Some(u) = named {
        return u;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .map_or_else(|| "unknown".to_owned(), |uid| format!("uid {uid}"))
}

/// This process as an activity's runner: `cli:<pid>@<host>`.
fn runner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("cli:{}@{host}", std::process::id())
}

#[derive(Serialize)]
struct Json<'a> {
    activity: i64,
    #[serde(flatten)]
    outcome: &'a Outcome,
}

fn cli_error(db: &Hsdb, e: DiscoverError) -> CliError {
    match e {
        DiscoverError::NoSuchGroup { group } => CliError::NotFound {
            what: "host group",
            name: format!("{group:?}"),
            hsdb: db.path().to_owned(),
        },
        DiscoverError::CannotDiscover { .. } => CliError::Usage(e.to_string()),
        other => CliError::Failed(format!("discovery failed, nothing written: {other}")),
    }
}

/// `hactl discover`: the activity is written RUNNING, carried out here, and ended DONE
/// or FAILED; the report printed.
pub fn discover(
    db: &mut Hsdb,
    config: &Config,
    group: Option<&str>,
    deep: bool,
    format: Format,
) -> Result<String, CliError> {
    let clock = SystemClock;
    let mut platform = crate::daemon::open_platform(&config.platform, db)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    // Refused before any row is written: a driver with nothing to discover, a group the
    // HSDB does not have.
    if !platform.can_discover() {
        return Err(cli_error(
            db,
            DiscoverError::CannotDiscover {
                driver: platform.name(),
            },
        ));
    }
    if let Some(g) = group
        && !db.hosts()?.iter().any(|h| h.host_group == g)
    {
        return Err(cli_error(
            db,
            DiscoverError::NoSuchGroup {
                group: g.to_owned(),
            },
        ));
    }
    let depth = if deep { Depth::Deep } else { Depth::Quick };
    let by = format!("cli:{}", user());
    let id = db.begin_activity(
        group.unwrap_or(""),
        depth.kind(),
        &by,
        &runner(),
        clock.now_ms(),
    )?;
    let run = ActivityRun {
        id,
        kind: depth.kind(),
        group: group.unwrap_or(""),
        manage_new: config.discovery.manage_new_in(group),
        profile: Some(crate::daemon::profile(config)),
        stop: None,
    };
    let outcome = match run_activity(db, platform.as_mut(), &run, &|| clock.now_ms()) {
        Ok(ActivityOutcome::Discovery(o)) => o,
        Ok(ActivityOutcome::Verify(_)) => {
            return Err(CliError::Failed(format!("activity {id}: not a discovery")));
        }
        Err(e) => return Err(cli_error(db, e)),
    };
    let report = if format == Format::Json {
        super::json(&Json {
            activity: id,
            outcome: &outcome,
        })?
    } else {
        format!("Activity {id}:\n{}", outcome.render())
    };
    if outcome.hosts_unreachable.is_empty() {
        Ok(report)
    } else {
        let hosts: Vec<&str> = outcome
            .hosts_unreachable
            .iter()
            .map(|p| p.host.as_str())
            .collect();
        Err(CliError::Incomplete {
            report,
            summary: format!(
                "discovery incomplete: {} did not answer; their VMs were not checked (exit 8)",
                hosts.join(", ")
            ),
        })
    }
}

#[derive(Serialize)]
struct ActivityView {
    id: i64,
    host_group: String,
    kind: &'static str,
    state: &'static str,
    requested_by: String,
    created_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    runner: Option<String>,
    progress: String,
    summary: Option<String>,
}

/// `hactl query activity [--host-group G] [--limit N]`: newest first.
pub fn activities(
    db: &mut Hsdb,
    group: Option<&str>,
    limit: u32,
    format: Format,
) -> Result<String, CliError> {
    if limit == 0 || limit > super::query::MAX_LIMIT {
        return Err(CliError::bad_value(
            "--limit",
            limit.to_string(),
            format!("1..={}", super::query::MAX_LIMIT),
        ));
    }
    let rows = db.activities(group, usize::try_from(limit).unwrap_or(usize::MAX))?;
    let views: Vec<ActivityView> = rows
        .into_iter()
        .map(|a| ActivityView {
            id: a.id,
            host_group: a.host_group,
            kind: a.kind.as_str(),
            state: a.state.as_str(),
            requested_by: a.requested_by,
            created_ms: a.created_ms,
            started_ms: a.started_ms,
            ended_ms: a.ended_ms,
            runner: a.runner,
            progress: a.progress,
            summary: a.summary,
        })
        .collect();
    if format == Format::Json {
        return super::json(&views);
    }
    let mut t = super::table::Table::new(&[
        "ID",
        "GROUP",
        "KIND",
        "STATE",
        "REQUESTED_BY",
        "STARTED_MS",
        "SUMMARY",
    ]);
    for v in &views {
        t.row(vec![
            v.id.to_string(),
            if v.host_group.is_empty() {
                "(all)".to_owned()
            } else {
                v.host_group.clone()
            },
            v.kind.to_owned(),
            v.state.to_owned(),
            v.requested_by.clone(),
            v.started_ms
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            v.summary.clone().unwrap_or_else(|| v.progress.clone()),
        ]);
    }
    Ok(t.render())
}
