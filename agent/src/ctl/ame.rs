//! The running AME's handle ([`AmeHandle`]) as the ctl server sees it: configuration,
//! operator commands, and the status table built from the report's status and the
//! AME's counters.

use hvha_appreport::AppStatus;

use super::proto::{Counter, StatusRow};
use super::server::{AmeControl, Operator};
use crate::ame::config::AmeConfig;
use crate::ame::machine::Outcome;
use crate::ame::service::{AmeHandle, AppCounters, OperatorCommand};

impl AmeControl for AmeHandle {
    fn set_config(&self, config: AmeConfig) -> Result<(), String> {
        AmeHandle::set_config(self, config).map_err(|e| e.to_string())
    }

    fn command(&self, op: Operator, name: Option<String>) -> Result<(), String> {
        let cmd = match op {
            Operator::Suspend => OperatorCommand::Suspend(name),
            Operator::Resume => OperatorCommand::Resume(name),
            Operator::Start => OperatorCommand::Start(name),
            Operator::Stop => OperatorCommand::Stop(name),
        };
        AmeHandle::command(self, cmd).map_err(|e| e.to_string())
    }

    fn status(&self) -> Vec<StatusRow> {
        let (_, apps) = AmeHandle::status(self);
        let details = self.counters();
        let config = self.config();
        apps.iter()
            .map(|s| {
                let app = config.apps.iter().find(|a| a.name == s.name);
                row(s, details.iter().find(|d| d.name == s.name), app)
            })
            .collect()
    }
}

/// The seed's RESULT words (seed 004 L9480, L9536, L9819, L10059-10060).
fn result_word(result: Option<Outcome>) -> &'static str {
    match result {
        None => "NOTSET",
        Some(Outcome::Ok) => "NORMAL",
        Some(Outcome::Failed) => "ABNORM",
        Some(Outcome::TimedOut) => "TIMOUT",
    }
}

fn row(
    s: &AppStatus,
    detail: Option<&AppCounters>,
    app: Option<&crate::ame::config::AppConfig>,
) -> StatusRow {
    let counter = |cur: Option<u32>, max: Option<u32>| match (cur, max) {
        (Some(cur), Some(max)) => Some(Counter { cur, max }),
        _ => None,
    };
    StatusRow {
        name: s.name.clone(),
        state: s.state.as_str().to_owned(),
        colour: s.state.colour().as_str().to_owned(),
        result: detail.map(|d| result_word(d.last_monitor).to_owned()),
        monitored: s.monitored,
        critical: s.critical,
        monitor: s.monitor.as_str().to_owned(),
        fail: counter(
            detail.map(|d| d.monitor_failures),
            app.map(|a| a.monitor_failure_threshold),
        ),
        stop: counter(
            detail.map(|d| d.stop_failures),
            app.map(|a| a.stop_max_failures),
        ),
        start: counter(
            detail.map(|d| d.start_failures),
            app.map(|a| a.start_max_failures),
        ),
        restart: Counter {
            cur: s.restarts,
            max: s.max_restart,
        },
        since_ms: s.since_ms,
        detail: s.detail.clone(),
    }
}
