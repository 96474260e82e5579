//! `hactl host evacuate HOST` and `hactl host restore HOST` (docs/operators.md, "Planned
//! maintenance"): the CLI writes an operator request to the HSDB; the `hactl run` leading
//! the host's group carries it out at its next QuickQuery (fde/maintenance.rs) and writes
//! its progress into the row; the CLI prints each new progress line and the end.
//!
//! Exit codes: 0 done (or, with `--no-wait`, the request written); 1 done in part
//! (FAILED: some VM did not move) or an HSDB error; 4 no such host; 5 refused (the plan is
//! incomplete — each VM's reason printed —, or the host cannot be restored now); 6 no
//! controller finished it within `--timeout` (the request stays; `hactl query request`
//! is not needed: run the command's `--no-wait` form or look at the events).

use std::time::{Duration, Instant};

use hsdb::{Hsdb, RequestKind, RequestState};

use super::error::CliError;
use super::query::find_host;

/// How often the CLI reads the request while it waits.
const POLL: Duration = Duration::from_millis(250);

/// Who asks, as written in the request: `$USER@hactl (pid N)`.
fn requester() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@hactl (pid {})", std::process::id())
}

/// Write the request; unless `no_wait`, wait up to `timeout` for its end, printing
/// progress lines with `print`.
pub fn request(
    db: &mut Hsdb,
    kind: RequestKind,
    host: &str,
    no_wait: bool,
    timeout: Duration,
    now_ms: i64,
    print: &mut dyn FnMut(&str),
) -> Result<String, CliError> {
    let h = find_host(db, host)?;
    let id = db.request_operation(&h.host_group, kind, h.id, &requester(), now_ms)?;
    let what = match kind {
        RequestKind::Evacuate => "evacuate",
        RequestKind::Restore => "restore",
        RequestKind::Move => "move a VM off",
    };
    let head = format!(
        "request {id}: {what} host {} (host group {}), for the controller leading the group",
        h.name, h.host_group
    );
    if no_wait {
        return Ok(format!("{head}; not waiting\n"));
    }
    print(&format!("{head}; waiting up to {} s", timeout.as_secs()));
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let Some(r) = db.operator_request(id)? else {
            return Err(CliError::Failed(format!(
                "request {id} is gone from the HSDB"
            )));
        };
        if !r.progress.is_empty() && r.progress != last {
            last = r.progress.clone();
            if !r.state.ended() {
                print(&format!("  {last}"));
            }
        }
        let result = r.result.clone().unwrap_or_default();
        match r.state {
            RequestState::Done => return Ok(format!("{result}\n")),
            RequestState::Refused => return Err(CliError::Refused(result)),
            RequestState::Failed => return Err(CliError::Failed(result)),
            RequestState::Pending | RequestState::Running => {}
        }
        if start.elapsed() >= timeout {
            let state = if r.state == RequestState::Pending {
                "no controller has picked it up (is `hactl run` running for the group?)"
            } else {
                "still running"
            };
            return Err(CliError::Waiting(format!(
                "request {id} not finished after {} s: {state}; it stays in the HSDB and is \
                 carried out when a controller leads the group",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}
