//! `hactl vm move VM [--to HOST] [--dry-run] [--wait SECONDS]` (docs/operators.md,
//! "Moving one VM"): the plan is printed first (`relocate::plan_move`: the target and
//! why, why not each other host, live migration or stop + start); `--dry-run` stops
//! there. Otherwise the CLI writes a MOVE operator request; the `hactl run` leading the
//! VM's group plans again when it carries it out (fde/maintenance.rs) and writes its
//! progress into the row; with `--wait` the CLI follows it to its end.
//!
//! Exit codes: 0 planned (`--dry-run`), written (no `--wait`) or DONE; 1 FAILED or an
//! HSDB / platform error; 2 usage; 4 no such VM or host; 5 refused (by the plan here,
//! or by the leader when it planned again: the reason printed); 6 not ended within
//! `--wait` (the request stays and is carried out when a controller leads the group).

use std::time::{Duration, Instant};

use serde::Serialize;

use hsdb::{Hsdb, RequestState};

use super::error::CliError;
use super::query::{find_host, find_vm};
use super::{Format, config::PlatformConfig};
use crate::relocate::{MoveError, MovePlan, plan_move_with};

/// How often the CLI reads the request while it waits.
const POLL: Duration = Duration::from_millis(250);

/// Who asks, as written in the request: `cli:$USER`, else `cli:uid=N` (the real uid
/// from /proc), else `cli:unknown`.
pub fn requester() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_graphic()));
    if let Some(user) = user {
        return format!("cli:{user}");
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        })
        .filter(|u| u.len() <= 10 && u.chars().all(|c| c.is_ascii_digit()));
    match uid {
        Some(uid) => format!("cli:uid={uid}"),
        None => "cli:unknown".to_owned(),
    }
}

/// The plan as JSON.
#[derive(Debug, Serialize)]
struct PlanJson<'a> {
    vm: String,
    name: &'a str,
    group: &'a str,
    from: &'a str,
    to: Option<&'a str>,
    live: bool,
    explanation: &'a [String],
    /// The request written (absent with --dry-run).
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<i64>,
    /// Where it ended (with --wait).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
}

fn plan_text(p: &MovePlan) -> String {
    let mut s = format!(
        "Plan: move VM {} (host group {}) from host {} to host {} {}\n",
        p.vm_name,
        p.group,
        p.from_name,
        p.to_name.as_deref().unwrap_or("-"),
        crate::relocate::move_way(p.live)
    );
    for line in &p.explanation {
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn refusal(e: MoveError, db: &Hsdb) -> CliError {
    match e {
        MoveError::NotFound { what, name } => CliError::NotFound {
            what,
            name,
            hsdb: db.path().to_owned(),
        },
        MoveError::Refused { why, explanation } if explanation.is_empty() => {
            CliError::Refused(format!("move refused: {why}"))
        }
        MoveError::Refused { why, explanation } => CliError::Refused(format!(
            "move refused: {why}\nThe plan:\n{}",
            explanation.join("\n")
        )),
        MoveError::Hsdb(e) => CliError::Hsdb(e),
        MoveError::Failed(e) => CliError::Failed(e),
    }
}

/// What `hactl vm move` was asked.
#[derive(Debug, Clone)]
pub struct MoveArgs<'a> {
    /// The VM: name or UUID.
    pub vm: &'a str,
    /// The target host, if named.
    pub to: Option<&'a str>,
    /// Plan only.
    pub dry_run: bool,
    /// Follow the request this long; `None`: return once written.
    pub wait: Option<Duration>,
}

/// `hactl vm move`: plan, print, and unless `dry_run` write the request (and follow it).
/// Progress lines go to `print` while waiting.
pub fn run(
    db: &mut Hsdb,
    args: &MoveArgs<'_>,
    platform: &PlatformConfig,
    profile: Option<crate::params::Profile>,
    now_ms: i64,
    format: Format,
    print: &mut dyn FnMut(&str),
) -> Result<String, CliError> {
    let vm = find_vm(db, args.vm)?;
    let target = match args.to {
        Some(name) => Some(find_host(db, name)?.id),
        None => None,
    };
    let plan = plan_move_with(db, platform, profile, &vm.uuid, target, now_ms)
        .map_err(|e| refusal(e, db))?;
    let mut json = PlanJson {
        vm: plan.vm.to_string(),
        name: &plan.vm_name,
        group: &plan.group,
        from: &plan.from_name,
        to: plan.to_name.as_deref(),
        live: plan.live,
        explanation: &plan.explanation,
        request: None,
        state: None,
        result: None,
    };
    let head = plan_text(&plan);
    if args.dry_run {
        return if format == Format::Json {
            super::json(&json)
        } else {
            Ok(format!("{head}dry run: nothing written.\n"))
        };
    }
    // The request names the host the operator named, or none (the leader's best host
    // then, planned again): the plan shown is what the leader will check again.
    let id = db.request_move(&plan.group, &plan.vm, target, &requester(), now_ms)?;
    json.request = Some(id);
    let written = format!(
        "request {id}: move VM {} — for the controller leading host group {}",
        plan.vm_name, plan.group
    );
    let Some(wait) = args.wait else {
        return if format == Format::Json {
            super::json(&json)
        } else {
            Ok(format!("{head}{written}; not waiting\n"))
        };
    };
    if format != Format::Json {
        print(head.trim_end());
        print(&format!("{written}; waiting up to {} s", wait.as_secs()));
    }
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let Some(r) = db.operator_request(id)? else {
            return Err(CliError::Failed(format!(
                "request {id} is gone from the HSDB"
            )));
        };
        if format != Format::Json && !r.progress.is_empty() && r.progress != last {
            last = r.progress.clone();
            if !r.state.ended() {
                print(&format!("  {last}"));
            }
        }
        let result = r.result.clone().unwrap_or_default();
        if r.state.ended() {
            json.state = Some(r.state.as_str());
            json.result = Some(result.clone());
        }
        let out = |text: String| {
            if format == Format::Json {
                super::json(&json)
            } else {
                Ok(text)
            }
        };
        match r.state {
            RequestState::Done => return out(format!("{result}\n")),
            RequestState::Refused => {
                if format == Format::Json {
                    println!("{}", super::json(&json)?.trim_end());
                }
                return Err(CliError::Refused(result));
            }
            RequestState::Failed => {
                if format == Format::Json {
                    println!("{}", super::json(&json)?.trim_end());
                }
                return Err(CliError::Failed(result));
            }
            RequestState::Pending | RequestState::Running => {}
        }
        if start.elapsed() >= wait {
            let state = if r.state == RequestState::Pending {
                "no controller has picked it up (is `hactl run` running for the group?)"
            } else {
                "still running"
            };
            return Err(CliError::Waiting(format!(
                "request {id} not finished after {} s: {state}; it stays in the HSDB and is \
                 carried out when a controller leads the group",
                wait.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}
