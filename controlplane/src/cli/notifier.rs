//! `hactl query notifier` (every consumer of the event outbox: its offset, its backlog,
//! the notifier the configuration gives it) and `hactl notifier forget NAME`.

use hsdb::Hsdb;
use serde::Serialize;

use super::config::Config;
use super::error::CliError;
use super::table::{Table, duration};
use super::{Format, json};
use crate::notify::config::CONSUMER_PREFIX;

/// One consumer as `query notifier` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerView {
    /// Its name in the HSDB (`notifier:NAME`, `hactl-log`).
    pub consumer: String,
    /// The notifier of the configuration read, if any: `kind target`.
    pub notifier: Option<String>,
    /// The id of the last event it handled.
    pub offset: i64,
    /// Events after it.
    pub lag: u64,
    /// Age of the oldest of them, ms.
    pub oldest_undelivered_age_ms: Option<u64>,
    /// The newest event id.
    pub newest_id: Option<i64>,
}

/// `hactl query notifier`.
pub fn query(
    db: &Hsdb,
    config: Option<&Config>,
    format: Format,
    now_ms: i64,
) -> Result<String, CliError> {
    let mut views = Vec::new();
    for c in db.event_consumers()? {
        let b = db.event_backlog(c.last_id)?;
        let notifier = config.and_then(|cfg| {
            cfg.notifiers
                .iter()
                .find(|n| n.consumer() == c.name)
                .map(|n| format!("{} {}", n.channel.kind(), describe(n)))
        });
        views.push(ConsumerView {
            consumer: c.name,
            notifier,
            offset: c.last_id,
            lag: b.count,
            oldest_undelivered_age_ms: b
                .oldest_ms
                .map(|o| u64::try_from(now_ms.saturating_sub(o)).unwrap_or(0)),
            newest_id: b.newest_id,
        });
    }
    if format == Format::Json {
        return json(&views);
    }
    let mut t = Table::new(&[
        "CONSUMER",
        "OFFSET",
        "LAG",
        "OLDEST_UNDELIVERED",
        "NOTIFIER",
    ]);
    for v in &views {
        t.row(vec![
            v.consumer.clone(),
            v.offset.to_string(),
            v.lag.to_string(),
            v.oldest_undelivered_age_ms
                .map_or_else(|| "-".to_owned(), |a| format!("{} ago", duration(a))),
            v.notifier.clone().unwrap_or_else(|| {
                if v.consumer.starts_with(CONSUMER_PREFIX) && config.is_some() {
                    "(not in the configuration: `hactl notifier forget`)".to_owned()
                } else {
                    "-".to_owned()
                }
            }),
        ]);
    }
    if t.is_empty() {
        return Ok("no consumer of the event outbox yet\n".to_owned());
    }
    Ok(t.render())
}

fn describe(n: &crate::notify::config::NotifierConfig) -> String {
    use crate::notify::config::ChannelConfig;
    match &n.channel {
        ChannelConfig::Webhook { url, .. } => url.to_string(),
        ChannelConfig::Exec { command } => command.first().cloned().unwrap_or_default(),
        ChannelConfig::Email(e) => format!("smtp://{}:{} → {}", e.host, e.port, e.to.join(", ")),
    }
}

/// `hactl notifier forget NAME`: the consumer `notifier:NAME` (or NAME as given, for
/// another consumer) no longer holds events back.
pub fn forget(db: &mut Hsdb, name: &str) -> Result<String, CliError> {
    let consumer = if name.contains(':') || name == crate::daemon::LOG_CONSUMER {
        name.to_owned()
    } else {
        format!("{CONSUMER_PREFIX}{name}")
    };
    if db.forget_consumer(&consumer)? {
        Ok(format!(
            "consumer {consumer} forgotten: it no longer holds events back; a notifier of \
             that name configured again starts anew (start = \"end\" or \"oldest\")\n"
        ))
    } else {
        Err(CliError::NotFound {
            what: "outbox consumer",
            name: consumer,
            hsdb: db.path().to_owned(),
        })
    }
}
