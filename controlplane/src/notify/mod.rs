//! Notifications: notifiers that read the HSDB's durable `event` outbox, each with its
//! own consumer offset, and deliver every event to a receiver — a webhook (HTTP POST of
//! a JSON document), an exec hook (a command with the document on stdin), or email
//! through an SMTP relay (docs/operators.md, "Notifications").
//!
//! - [`config`]: the `[[notifier]]` entries of `hactl.toml` and `[event_retention]`.
//! - [`webhook`], [`exec`], [`email`]: the three [`Channel`]s.
//! - [`mod@worker`]: the thread of one notifier: reads the outbox after its offset, filters,
//!   delivers in order with retries and back-off, records the offset after each event.
//!
//! Delivery is in order and at least once: an event is delivered before the next one is
//! tried, a failed delivery is retried (with exponential back-off and jitter) until it
//! succeeds, never skipped, and the offset is stored after each delivered event. A crash
//! between a delivery and the offset's write delivers that one event again after the
//! restart: every document carries the event's id (in the body and in the
//! `X-Hvha-Event-Id` / `Idempotency-Key` headers, `HVHA_EVENT_ID`, the `Message-ID`), so
//! a receiver drops what it has seen. Notifiers are independent: one thread each, a
//! receiver that is down holds back only its own notifier. The model is seed 002's
//! store-and-forward to pooled servers: every message is kept for every server "even if
//! they are currently unreachable", buffered and delivered later, and a server back from
//! downtime "receives all the messages it missed" (seed 002 L138, L140); here the outbox
//! is the buffer and each notifier's offset its place in it.
//!
//! The seed's channels are email, SMS through a carrier's email gateway and pager email,
//! one contact per `ksysmgr add notify` (seed 004 L16482-16577): the email notifier does
//! all three (a gateway address is a recipient); webhook and exec hook are ours.

pub mod config;
pub mod email;
pub mod exec;
pub mod webhook;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hsdb::{EventRow, Hsdb};
use serde::Serialize;

use crate::events::{Severity, severity_of};

/// The version of the JSON document (`"v"`): a receiver can tell a change of shape.
pub const DOCUMENT_VERSION: u32 = 1;

/// An event as delivered: the outbox row, its severity, and where it happened when the
/// HSDB knows (the host and host group of its VM, else of its monitor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDoc {
    /// Version of this document's shape ([`DOCUMENT_VERSION`]).
    pub v: u32,
    /// The event's id in the outbox: increasing, unique; receivers drop an id they have
    /// seen (a delivery repeated after a crash).
    pub id: i64,
    /// The event kind (the catalogue in `controlplane::events`).
    pub kind: String,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: Severity,
    /// The VM concerned, if any.
    pub vm: Option<String>,
    /// The host monitor concerned, if any.
    pub hm: Option<String>,
    /// The host where it happened, if known.
    pub host: Option<String>,
    /// Its host group, if known.
    pub host_group: Option<String>,
    /// Words for a person.
    pub text: String,
    /// When it was written, ms since the Unix epoch.
    pub created_ms: i64,
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl EventDoc {
    /// The document of `row`, without place.
    pub fn of(row: &EventRow) -> EventDoc {
        EventDoc {
            v: DOCUMENT_VERSION,
            id: row.id,
            kind: row.kind.clone(),
            severity: severity_of(&row.kind),
            vm: row.vm.map(|u| u.to_string()),
            hm: row.hm.map(|u| u.to_string()),
            host: None,
            host_group: None,
            text: row.text.clone(),
            created_ms: row.created_ms,
        }
    }

    /// The document of `row` with the host and host group the HSDB gives its VM (its
    /// current host), else its monitor. A failed lookup leaves them out: the event is
    /// delivered anyway.
    pub fn of_row_in(row: &EventRow, db: &Hsdb) -> EventDoc {
        let mut doc = EventDoc::of(row);
        let host = row
            .vm
            .and_then(|vm| db.vm(&vm).ok().flatten())
            .and_then(|vm| vm.current_host)
            .or_else(|| {
                row.hm
                    .and_then(|hm| db.hm(&hm).ok().flatten())
                    .map(|hm| hm.host)
            })
            .and_then(|id| db.host(id).ok().flatten());
        if let Some(h) = host {
            doc.host = Some(h.name);
            doc.host_group = Some(h.host_group).filter(|g| !g.is_empty());
        }
        doc
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Which events a notifier delivers: at least `min_severity`, and of the listed kinds
/// when a list is given. An event filtered out still advances the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The lowest severity delivered.
    pub min_severity: Severity,
    /// Only these kinds; `None`: every kind.
    pub kinds: Option<Vec<String>>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            min_severity: Severity::Info,
            kinds: None,
        }
    }
}

impl Filter {
    /// Is an event of `kind` delivered?
    pub fn passes(&self, kind: &str) -> bool {
        severity_of(kind) >= self.min_severity
            && self
                .kinds
                .as_ref()
                .is_none_or(|ks| ks.iter().any(|k| k == kind))
    }
}

/// Why one delivery attempt failed. Every failure is retried; the message names the
/// receiver and what it answered (never a secret).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver could not be reached.
    #[error("cannot reach {target}: {source}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// The attempt took longer than its timeout.
    #[error("{what}: no answer within {} ms", after.as_millis())]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The receiver answered, but not with success.
    #[error("{0}")]
    Refused(String),
    /// The receiver's answer is not the protocol's (garbage, too long).
    #[error("unreadable answer: {0}")]
    Garbled(String),
    /// The hook could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon is stopping: the attempt was abandoned (the event is delivered again
    /// after the restart).
    #[error("abandoned: the daemon is stopping")]
    Stopped,
}

/// A receiver of events.
pub trait Channel: Send {
    /// `webhook`, `exec` or `email`.
    fn kind(&self) -> &'static str;
    /// Where it delivers, for logs and the status (never a secret).
    fn target(&self) -> String;
    /// Deliver one event; `Ok` holds what the receiver answered, in words. The attempt
    /// honours its timeout and gives up soon after `stop` is set.
    fn deliver(&mut self, doc: &EventDoc, stop: &AtomicBool) -> Result<String, DeliveryError>;
}

/// The channel of notifier `cfg` (its secret read now).
pub fn channel(cfg: &config::NotifierConfig) -> Result<Box<dyn Channel>, String> {
    Ok(match &cfg.channel {
        config::ChannelConfig::Webhook { url, .. } => Box::new(webhook::Webhook::new(
            url.clone(),
            cfg.secret()?,
            cfg.timeout,
        )),
        config::ChannelConfig::Exec { command } => {
            Box::new(exec::ExecHook::new(command.clone(), cfg.timeout))
        }
        config::ChannelConfig::Email(e) => Box::new(email::Email::new(e.clone(), cfg.timeout)),
    })
}

/// The worker of notifier `cfg` (see [`worker::Worker::new`]), polling the outbox every
/// `poll` when it has nothing to do.
pub fn worker(
    cfg: &config::NotifierConfig,
    poll: Duration,
    gate: std::sync::Arc<dyn worker::Gate>,
    connect: Box<dyn FnMut() -> hsdb::Result<Hsdb> + Send>,
    statuses: worker::SharedStatuses,
) -> Result<worker::Worker, String> {
    Ok(worker::Worker::new(
        &cfg.name,
        &cfg.consumer(),
        channel(cfg)?,
        cfg.filter.clone(),
        worker::Pacing {
            poll,
            initial_backoff: cfg.initial_backoff,
            max_backoff: cfg.max_backoff,
        },
        gate,
        connect,
        statuses,
    ))
}

/// A deadline for one attempt: what is left of it, or a timeout error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    end: Instant,
    total: Duration,
}

impl Deadline {
    pub(crate) fn after(total: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + total,
            total,
        }
    }

    /// The time left (at least 1 ms, so it can be a socket timeout), or the timeout.
    pub(crate) fn left(&self, what: &dyn Fn() -> String) -> Result<Duration, DeliveryError> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeliveryError::Timeout {
                what: what(),
                after: self.total,
            });
        }
        Ok(left.max(Duration::from_millis(1)))
    }

    pub(crate) fn total(&self) -> Duration {
        self.total
    }
}

/// An I/O error of a socket with a deadline: a timeout is reported as such.
pub(crate) fn io_error(what: String, e: std::io::Error, deadline: &Deadline) -> DeliveryError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => DeliveryError::Timeout {
            what,
            after: deadline.total(),
        },
        _ => DeliveryError::Io { what, source: e },
    }
}

/// Text from a receiver made safe for one log line: control characters replaced, at
/// most `max` characters.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Sleep `d` in slices, returning early (false) when `stop` is set.
pub(crate) fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The first line of a secret file only its owner may read (mode 0600 or stricter), at
/// most 4 KiB. Errors name the file and why, never its content.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    const MAX: u64 = 4096;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("secret file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("secret file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("secret file {shown}: not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "secret file {shown}: mode {mode:04o} lets others read it: chmod 600 it"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("secret file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX {
        return Err(format!("secret file {shown}: longer than {MAX} bytes"));
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line)
        .map_err(|_| format!("secret file {shown}: its first line is not UTF-8"))?;
    if text.is_empty() || text.chars().any(|c| c.is_control()) {
        return Err(format!(
            "secret file {shown}: its first line must be the secret, without control characters"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn test_filter_by_severity_and_kind() {
        let f = Filter {
            min_severity: Severity::Error,
            kinds: None,
        };
        assert!(f.passes("HOST_FAILURE_DETECTED"), "critical ≥ error");
        assert!(f.passes("VM_FAILURE_DETECTED"), "error ≥ error");
        assert!(!f.passes("VIOS_HM_NONRESP_DETECTED"), "warning < error");
        assert!(!f.passes("VM_RESTART_PROGRESS"), "info < error");
        assert!(!f.passes("UNKNOWN_KIND"), "an unknown kind is info");
        let f = Filter {
            min_severity: Severity::Info,
            kinds: Some(vec!["VM_MOVED".into()]),
        };
        assert!(f.passes("VM_MOVED"));
        assert!(!f.passes("HOST_FAILURE_DETECTED"), "not listed");
    }

    #[test]
    fn test_document_is_json_with_the_id() {
        let row = EventRow {
            id: 42,
            kind: "VM_FAILURE_DETECTED".into(),
            vm: Some(hsdb::Uuid([1; 16])),
            hm: None,
            text: "vm \"a\"\nfailed".into(),
            created_ms: 1_700_000_000_000,
        };
        let doc = EventDoc::of(&row);
        let v: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["v"], 1);
        assert_eq!(v["kind"], "VM_FAILURE_DETECTED");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["text"], "vm \"a\"\nfailed");
        assert_eq!(v["vm"], "01010101-0101-0101-0101-010101010101");
        assert!(v["hm"].is_null());
        assert_eq!(v["created_ms"], 1_700_000_000_000_i64);
    }

    #[test]
    fn test_secret_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-123\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&path).unwrap_err();
        assert!(e.contains("0644") && !e.contains("tok-123"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), "tok-123");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret_file(&path).is_err());
    }
}
