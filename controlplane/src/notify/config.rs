//! The `[[notifier]]` entries and `[event_retention]` of `hactl.toml`.
//!
//! ```toml
//! [[notifier]]
//! name = "pager"                 # 1..=64 bytes; its consumer in the HSDB is "notifier:pager"
//! kind = "webhook"
//! url = "http://127.0.0.1:9000/hvha"   # http:// only (no TLS stack in hactl)
//! bearer_token_file = "/etc/hvha/pager.token"   # optional, mode 0600, first line
//! min_severity = "error"         # info < warning < error < critical (default info)
//! kinds = ["HOST_FAILURE_DETECTED", "VM_RESTART_FAILED"]   # optional: only these
//! timeout_ms = 10000             # one attempt (100..=120000)
//! initial_backoff_ms = 1000      # first retry (10..=600000), doubled each time
//! max_backoff_ms = 60000         # at most (10..=3600000)
//! start = "end"                  # a new notifier: "end" (from now on) or "oldest"
//!
//! [[notifier]]
//! name = "ticket"
//! kind = "exec"
//! command = ["/usr/local/bin/open-ticket", "--queue", "ha"]
//!
//! [[notifier]]
//! name = "mail"
//! kind = "email"
//! smtp_host = "127.0.0.1"
//! smtp_port = 25
//! from = "hvha@ops.example"
//! to = ["oncall@ops.example"]
//! helo = "ctl-a.ops.example"     # optional: default the host name
//!
//! [event_retention]
//! keep_days = 30                 # handled events are kept this long (history)…
//! keep_rows = 100000             # …and at most this many
//! max_age_days = 90              # past this, events go even if a notifier has not
//! max_rows = 1000000             # delivered them (the loss is logged and an event says so)
//! behind_events = 10000          # NOTIFIER_BEHIND when a consumer lags this many events…
//! behind_age_s = 600             # …or its oldest undelivered event is this old
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::email::{EmailConfig, check_address};
use super::webhook::HttpUrl;
use super::{Filter, read_secret_file};
use crate::events::{EventKind, Severity};

/// Most notifiers.
pub const MAX_NOTIFIERS: usize = 32;
/// Most recipients of an email notifier.
pub const MAX_RECIPIENTS: usize = 50;
/// Most arguments of an exec hook.
pub const MAX_ARGS: usize = 64;
/// Longest argument.
pub const MAX_ARG: usize = 4096;
/// The prefix of a notifier's consumer name in the HSDB.
pub const CONSUMER_PREFIX: &str = "notifier:";

/// Range of `timeout_ms`.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=120_000;
/// Range of `initial_backoff_ms`.
pub const INITIAL_BACKOFF_RANGE: std::ops::RangeInclusive<u64> = 10..=600_000;
/// Range of `max_backoff_ms`.
pub const MAX_BACKOFF_RANGE: std::ops::RangeInclusive<u64> = 10..=3_600_000;

/// Where a notifier delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    /// HTTP POST of the JSON document.
    Webhook {
        /// The URL.
        url: HttpUrl,
        /// A file (0600) whose first line is the bearer token.
        bearer_token_file: Option<PathBuf>,
    },
    /// A command with the document on stdin.
    Exec {
        /// The argv; the first is an absolute path.
        command: Vec<String>,
    },
    /// Email through an SMTP relay.
    Email(EmailConfig),
}

impl ChannelConfig {
    /// `webhook`, `exec` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Exec { .. } => "exec",
            ChannelConfig::Email(_) => "email",
        }
    }
}

/// One `[[notifier]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Its name.
    pub name: String,
    /// Where it delivers.
    pub channel: ChannelConfig,
    /// What it delivers.
    pub filter: Filter,
    /// One attempt's timeout.
    pub timeout: Duration,
    /// The first retry's back-off.
    pub initial_backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
    /// A notifier new to the HSDB starts at the newest event (`true`) or the oldest.
    pub start_at_end: bool,
}

impl NotifierConfig {
    /// Its consumer name in the HSDB's `event_consumer`.
    pub fn consumer(&self) -> String {
        format!("{CONSUMER_PREFIX}{}", self.name)
    }

    /// Read its secret (the bearer token), if it has one: a file of mode 0600.
    pub fn secret(&self) -> Result<Option<String>, String> {
        match &self.channel {
            ChannelConfig::Webhook {
                bearer_token_file: Some(p),
                ..
            } => read_secret_file(p).map(Some),
            _ => Ok(None),
        }
    }
}

/// `[event_retention]`: how long the outbox keeps events, and when a consumer is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Handled events are kept this long.
    pub keep: Duration,
    /// And at most this many.
    pub keep_rows: u64,
    /// Events older than this are deleted even if a consumer has not handled them.
    pub max_age: Duration,
    /// Events beyond the newest this many are deleted even if unhandled.
    pub max_rows: u64,
    /// A consumer this many events behind is warned about.
    pub behind_events: u64,
    /// A consumer whose oldest unhandled event is this old is warned about.
    pub behind_age: Duration,
}

const DAY_S: u64 = 86_400;

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep: Duration::from_secs(30 * DAY_S),
            keep_rows: 100_000,
            max_age: Duration::from_secs(90 * DAY_S),
            max_rows: 1_000_000,
            // A 1,000-VM host failure writes thousands of events in a minute: a notifier
            // delivering ~150 a second falls thousands behind for a while without being
            // in trouble; the age bound is the main signal.
            behind_events: 10_000,
            behind_age: Duration::from_secs(600),
        }
    }
}

/// A refused value: the key, its place in the file, the value as written, what is
/// allowed (`cli::config` makes the error with the file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// The key, e.g. `notifier[1].url`.
    pub key: String,
    /// Byte range of the value in the file.
    pub span: Option<std::ops::Range<usize>>,
    /// The value.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

/// A `[[notifier]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierFile {
    name: Spanned<String>,
    kind: Spanned<String>,
    min_severity: Option<Spanned<String>>,
    kinds: Option<Spanned<Vec<Spanned<String>>>>,
    timeout_ms: Option<Spanned<i64>>,
    initial_backoff_ms: Option<Spanned<i64>>,
    max_backoff_ms: Option<Spanned<i64>>,
    start: Option<Spanned<String>>,
    // webhook
    url: Option<Spanned<String>>,
    bearer_token_file: Option<Spanned<PathBuf>>,
    // exec
    command: Option<Spanned<Vec<Spanned<String>>>>,
    // email
    smtp_host: Option<Spanned<String>>,
    smtp_port: Option<Spanned<i64>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
    helo: Option<Spanned<String>>,
}

/// `[event_retention]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    keep_days: Option<Spanned<i64>>,
    keep_rows: Option<Spanned<i64>>,
    max_age_days: Option<Spanned<i64>>,
    max_rows: Option<Spanned<i64>>,
    behind_events: Option<Spanned<i64>>,
    behind_age_s: Option<Spanned<i64>>,
}

fn quoted(text: &str) -> String {
    hvha_daemon::config::quoted(text)
}

fn bad<T>(key: String, v: &Spanned<T>, value: String, allowed: impl Into<String>) -> Bad {
    Bad {
        key,
        span: Some(v.span()),
        value,
        allowed: allowed.into(),
    }
}

fn number(
    key: String,
    v: Option<&Spanned<i64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, Bad> {
    let Some(v) = v else { return Ok(default) };
    u64::try_from(*v.get_ref())
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad(
                key,
                v,
                v.get_ref().to_string(),
                format!("{}..={}{unit}", range.start(), range.end()),
            )
        })
}

/// Every key of `kind` that is set but belongs to another kind: refused, not ignored.
fn strays(n: &NotifierFile) -> Vec<(&'static str, &'static str, std::ops::Range<usize>)> {
    let mut v = Vec::new();
    let mut add = |key, owner, span: Option<std::ops::Range<usize>>| {
        if let Some(s) = span {
            v.push((key, owner, s));
        }
    };
    add("url", "webhook", n.url.as_ref().map(Spanned::span));
    add(
        "bearer_token_file",
        "webhook",
        n.bearer_token_file.as_ref().map(Spanned::span),
    );
    add("command", "exec", n.command.as_ref().map(Spanned::span));
    add(
        "smtp_host",
        "email",
        n.smtp_host.as_ref().map(Spanned::span),
    );
    add(
        "smtp_port",
        "email",
        n.smtp_port.as_ref().map(Spanned::span),
    );
    add("from", "email", n.from.as_ref().map(Spanned::span));
    add("to", "email", n.to.as_ref().map(Spanned::span));
    add("helo", "email", n.helo.as_ref().map(Spanned::span));
    v
}

/// Validate the `[[notifier]]` entries; relative paths are taken from `config_file`'s
/// directory.
pub fn notifiers(files: &[NotifierFile], config_file: &Path) -> Result<Vec<NotifierConfig>, Bad> {
    if files.len() > MAX_NOTIFIERS {
        return Err(Bad {
            key: "notifier".into(),
            span: None,
            value: format!("{} entries", files.len()),
            allowed: format!("0..={MAX_NOTIFIERS} [[notifier]] entries"),
        });
    }
    let mut out: Vec<NotifierConfig> = Vec::new();
    for (i, n) in files.iter().enumerate() {
        let k = |key: &str| format!("notifier[{i}].{key}");
        let name = n.name.get_ref();
        crate::cli::config::check_name(name)
            .map_err(|allowed| bad(k("name"), &n.name, quoted(name), allowed))?;
        if out.iter().any(|o| &o.name == name) {
            return Err(bad(
                k("name"),
                &n.name,
                quoted(name),
                "a name given to one notifier only (its offset in the HSDB is kept by name)",
            ));
        }
        let kind = n.kind.get_ref().as_str();
        if !matches!(kind, "webhook" | "exec" | "email") {
            return Err(bad(
                k("kind"),
                &n.kind,
                quoted(kind),
                "\"webhook\" (HTTP POST), \"exec\" (a command) or \"email\" (SMTP relay)",
            ));
        }
        if let Some((key, _, span)) = strays(n).into_iter().find(|(_, owner, _)| *owner != kind) {
            return Err(Bad {
                key: k(key),
                span: Some(span),
                value: "(set)".into(),
                allowed: format!("nothing: not a key of kind = {}", quoted(kind)),
            });
        }
        let missing = |key: &str, what: &str| Bad {
            key: k(key),
            span: Some(n.name.span()),
            value: "(missing)".into(),
            allowed: format!("{what} (required by kind = {})", quoted(kind)),
        };
        let channel = match kind {
            "webhook" => {
                let Some(u) = &n.url else {
                    return Err(missing("url", "an http://HOST[:PORT]/PATH URL"));
                };
                let url = HttpUrl::parse(u.get_ref())
                    .map_err(|allowed| bad(k("url"), u, quoted(u.get_ref()), allowed))?;
                let bearer_token_file = match &n.bearer_token_file {
                    None => None,
                    Some(p) if p.get_ref().as_os_str().is_empty() => {
                        return Err(bad(
                            k("bearer_token_file"),
                            p,
                            "\"\"".into(),
                            "a file (mode 0600) whose first line is the token",
                        ));
                    }
                    Some(p) => Some(hvha_daemon::config::resolve(config_file, p.get_ref())),
                };
                ChannelConfig::Webhook {
                    url,
                    bearer_token_file,
                }
            }
            "exec" => {
                let Some(c) = &n.command else {
                    return Err(missing(
                        "command",
                        "an argv array, e.g. [\"/usr/local/bin/hook\", \"--flag\"]",
                    ));
                };
                let args = c.get_ref();
                if args.is_empty() || args.len() > MAX_ARGS {
                    return Err(bad(
                        k("command"),
                        c,
                        format!("{} arguments", args.len()),
                        format!("1..={MAX_ARGS} arguments, the first an absolute path"),
                    ));
                }
                for (j, a) in args.iter().enumerate() {
                    let text = a.get_ref();
                    let ok = text.len() <= MAX_ARG
                        && !text.contains('\0')
                        && (j > 0 || (Path::new(text).is_absolute() && !text.ends_with('/')));
                    if !ok {
                        return Err(bad(
                            format!("notifier[{i}].command[{j}]"),
                            a,
                            quoted(text),
                            if j == 0 {
                                "the absolute path of the program (run without a shell, \
                                 with a clean environment)"
                                    .to_owned()
                            } else {
                                format!("an argument of at most {MAX_ARG} bytes without NUL")
                            },
                        ));
                    }
                }
                ChannelConfig::Exec {
                    command: args.iter().map(|a| a.get_ref().clone()).collect(),
                }
            }
            _ => {
                let Some(h) = &n.smtp_host else {
                    return Err(missing(
                        "smtp_host",
                        "the SMTP relay's host name or address",
                    ));
                };
                let host = h.get_ref();
                let host_ok = !host.is_empty()
                    && host.len() <= 253
                    && !host.starts_with('-')
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
                if !host_ok {
                    return Err(bad(
                        k("smtp_host"),
                        h,
                        quoted(host),
                        "a host name or IP address",
                    ));
                }
                let port = number(k("smtp_port"), n.smtp_port.as_ref(), 25, 1..=65_535, "")?;
                let Some(f) = &n.from else {
                    return Err(missing("from", "the sender's address"));
                };
                check_address(f.get_ref())
                    .map_err(|allowed| bad(k("from"), f, quoted(f.get_ref()), allowed))?;
                let Some(t) = &n.to else {
                    return Err(missing("to", "a list of recipient addresses"));
                };
                if t.get_ref().is_empty() || t.get_ref().len() > MAX_RECIPIENTS {
                    return Err(bad(
                        k("to"),
                        t,
                        format!("{} addresses", t.get_ref().len()),
                        format!("1..={MAX_RECIPIENTS} recipient addresses"),
                    ));
                }
                let mut to = Vec::new();
                for (j, a) in t.get_ref().iter().enumerate() {
                    check_address(a.get_ref()).map_err(|allowed| {
                        bad(
                            format!("notifier[{i}].to[{j}]"),
                            a,
                            quoted(a.get_ref()),
                            allowed,
                        )
                    })?;
                    to.push(a.get_ref().clone());
                }
                let helo = match &n.helo {
                    None => None,
                    Some(h) => {
                        let v = h.get_ref();
                        if v.is_empty()
                            || v.len() > 253
                            || !v
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
                        {
                            return Err(bad(
                                k("helo"),
                                h,
                                quoted(v),
                                "this machine's host name (letters, digits, '.', '-') or \
                                 [address]",
                            ));
                        }
                        Some(v.clone())
                    }
                };
                ChannelConfig::Email(EmailConfig {
                    host: host.clone(),
                    port: u16::try_from(port).unwrap_or(25),
                    from: f.get_ref().clone(),
                    to,
                    helo,
                })
            }
        };
        let min_severity = match &n.min_severity {
            None => Severity::Info,
            Some(s) => Severity::parse(s.get_ref()).ok_or_else(|| {
                bad(
                    k("min_severity"),
                    s,
                    quoted(s.get_ref()),
                    "\"info\", \"warning\", \"error\" or \"critical\"",
                )
            })?,
        };
        let kinds = match &n.kinds {
            None => None,
            Some(list) => {
                let mut kinds = Vec::new();
                for (j, kname) in list.get_ref().iter().enumerate() {
                    let text = kname.get_ref();
                    if EventKind::by_name(text).is_none() {
                        return Err(bad(
                            format!("notifier[{i}].kinds[{j}]"),
                            kname,
                            quoted(text),
                            "an event kind of the catalogue (docs/controlplane.md, Events), \
                             e.g. \"HOST_FAILURE_DETECTED\"",
                        ));
                    }
                    kinds.push(text.clone());
                }
                if kinds.is_empty() {
                    return Err(bad(
                        k("kinds"),
                        list,
                        "[]".into(),
                        "at least one kind (leave the key out for every kind)",
                    ));
                }
                Some(kinds)
            }
        };
        let timeout_ms = number(
            k("timeout_ms"),
            n.timeout_ms.as_ref(),
            10_000,
            TIMEOUT_RANGE,
            " (ms)",
        )?;
        let initial = number(
            k("initial_backoff_ms"),
            n.initial_backoff_ms.as_ref(),
            1000,
            INITIAL_BACKOFF_RANGE,
            " (ms)",
        )?;
        let max = number(
            k("max_backoff_ms"),
            n.max_backoff_ms.as_ref(),
            60_000,
            MAX_BACKOFF_RANGE,
            " (ms)",
        )?;
        if max < initial {
            let (key, span) = match &n.max_backoff_ms {
                Some(m) => (k("max_backoff_ms"), Some(m.span())),
                None => (
                    k("initial_backoff_ms"),
                    n.initial_backoff_ms.as_ref().map(Spanned::span),
                ),
            };
            return Err(Bad {
                key,
                span,
                value: format!("{max} (initial_backoff_ms = {initial})"),
                allowed: "max_backoff_ms ≥ initial_backoff_ms".into(),
            });
        }
        let start_at_end = match &n.start {
            None => true,
            Some(s) => match s.get_ref().as_str() {
                "end" => true,
                "oldest" => false,
                other => {
                    return Err(bad(
                        k("start"),
                        s,
                        quoted(other),
                        "\"end\" (a new notifier delivers events written from its first start \
                         on) or \"oldest\" (every event still in the outbox)",
                    ));
                }
            },
        };
        out.push(NotifierConfig {
            name: name.clone(),
            channel,
            filter: Filter {
                min_severity,
                kinds,
            },
            timeout: Duration::from_millis(timeout_ms),
            initial_backoff: Duration::from_millis(initial),
            max_backoff: Duration::from_millis(max),
            start_at_end,
        });
    }
    Ok(out)
}

/// Validate `[event_retention]`.
pub fn retention(f: &RetentionFile) -> Result<Retention, Bad> {
    let d = Retention::default();
    let days = |key: &str, v: Option<&Spanned<i64>>, default: Duration| {
        number(
            format!("event_retention.{key}"),
            v,
            default.as_secs() / DAY_S,
            1..=3650,
            " (days)",
        )
        .map(|n| Duration::from_secs(n * DAY_S))
    };
    let keep = days("keep_days", f.keep_days.as_ref(), d.keep)?;
    let max_age = days("max_age_days", f.max_age_days.as_ref(), d.max_age)?;
    let rows = |key: &str, v: Option<&Spanned<i64>>, default: u64| {
        number(
            format!("event_retention.{key}"),
            v,
            default,
            1..=100_000_000,
            " (events)",
        )
    };
    let keep_rows = rows("keep_rows", f.keep_rows.as_ref(), d.keep_rows)?;
    let max_rows = rows("max_rows", f.max_rows.as_ref(), d.max_rows)?;
    let behind_events = rows("behind_events", f.behind_events.as_ref(), d.behind_events)?;
    let behind_age_s = number(
        "event_retention.behind_age_s".into(),
        f.behind_age_s.as_ref(),
        d.behind_age.as_secs(),
        10..=30 * DAY_S,
        " (s)",
    )?;
    if max_age < keep {
        return Err(Bad {
            key: "event_retention.max_age_days".into(),
            span: f
                .max_age_days
                .as_ref()
                .or(f.keep_days.as_ref())
                .map(Spanned::span),
            value: (max_age.as_secs() / DAY_S).to_string(),
            allowed: format!("at least keep_days ({})", keep.as_secs() / DAY_S),
        });
    }
    if max_rows < keep_rows {
        return Err(Bad {
            key: "event_retention.max_rows".into(),
            span: f
                .max_rows
                .as_ref()
                .or(f.keep_rows.as_ref())
                .map(Spanned::span),
            value: max_rows.to_string(),
            allowed: format!("at least keep_rows ({keep_rows})"),
        });
    }
    Ok(Retention {
        keep,
        keep_rows,
        max_age,
        max_rows,
        behind_events,
        behind_age: Duration::from_secs(behind_age_s),
    })
}

/// What `check-config` says of each notifier on this machine: its secret file readable
/// (mode 0600), its exec hook's program executable. Never the secret.
pub fn machine_notes(notifiers: &[NotifierConfig]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut notes = Vec::new();
    for n in notifiers {
        let what = format!("notifier {} ({})", n.name, n.channel.kind());
        match &n.channel {
            ChannelConfig::Webhook {
                bearer_token_file: Some(p),
                ..
            } => notes.push(match read_secret_file(p) {
                Ok(_) => format!(
                    "{what}: bearer token file {} readable, private",
                    p.display()
                ),
                Err(e) => format!("{what}: {e}"),
            }),
            ChannelConfig::Exec { command } => {
                let program = command.first().map(String::as_str).unwrap_or_default();
                let ok = std::fs::metadata(program)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                notes.push(format!(
                    "{what}: {program} {}",
                    if ok {
                        "executable"
                    } else {
                        "NOT an executable file"
                    }
                ));
            }
            _ => notes.push(format!("{what}: configured")),
        }
    }
    notes
}

/// The notifiers as `hactl.toml` text (what `check-config` prints; parses back the same).
pub fn display(
    f: &mut std::fmt::Formatter<'_>,
    notifiers: &[NotifierConfig],
    r: &Retention,
) -> std::fmt::Result {
    use std::fmt::Write as _;
    let list = |v: &[String]| {
        let q: Vec<String> = v.iter().map(|s| quoted(s)).collect();
        format!("[{}]", q.join(", "))
    };
    writeln!(f)?;
    writeln!(
        f,
        "# the event outbox: handled events kept keep_days / keep_rows; past max_age_days / \
         max_rows events go even if a notifier has not delivered them (logged, counted, \
         NOTIFIER_EVENTS_LOST)"
    )?;
    writeln!(f, "[event_retention]")?;
    writeln!(f, "keep_days = {}", r.keep.as_secs() / DAY_S)?;
    writeln!(f, "keep_rows = {}", r.keep_rows)?;
    writeln!(f, "max_age_days = {}", r.max_age.as_secs() / DAY_S)?;
    writeln!(f, "max_rows = {}", r.max_rows)?;
    writeln!(f, "behind_events = {}", r.behind_events)?;
    writeln!(f, "behind_age_s = {}", r.behind_age.as_secs())?;
    if notifiers.is_empty() {
        writeln!(f, "# no [[notifier]]: events are only logged")?;
    }
    for n in notifiers {
        let mut s = String::new();
        let _ = writeln!(s);
        let _ = writeln!(s, "# consumer {:?} in the HSDB", n.consumer());
        let _ = writeln!(s, "[[notifier]]");
        let _ = writeln!(s, "name = {}", quoted(&n.name));
        let _ = writeln!(s, "kind = \"{}\"", n.channel.kind());
        match &n.channel {
            ChannelConfig::Webhook {
                url,
                bearer_token_file,
            } => {
                let _ = writeln!(s, "url = {}", quoted(&url.to_string()));
                if let Some(p) = bearer_token_file {
                    let _ = writeln!(s, "bearer_token_file = {}", quoted(&p.to_string_lossy()));
                }
            }
            ChannelConfig::Exec { command } => {
                let _ = writeln!(s, "command = {}", list(command));
            }
            ChannelConfig::Email(e) => {
                let _ = writeln!(s, "smtp_host = {}", quoted(&e.host));
                let _ = writeln!(s, "smtp_port = {}", e.port);
                let _ = writeln!(s, "from = {}", quoted(&e.from));
                let _ = writeln!(s, "to = {}", list(&e.to));
                if let Some(h) = &e.helo {
                    let _ = writeln!(s, "helo = {}", quoted(h));
                }
            }
        }
        let _ = writeln!(s, "min_severity = \"{}\"", n.filter.min_severity);
        match &n.filter.kinds {
            Some(k) => {
                let _ = writeln!(s, "kinds = {}", list(k));
            }
            None => {
                let _ = writeln!(s, "# kinds = [...]   (every kind)");
            }
        }
        let _ = writeln!(s, "timeout_ms = {}", n.timeout.as_millis());
        let _ = writeln!(s, "initial_backoff_ms = {}", n.initial_backoff.as_millis());
        let _ = writeln!(s, "max_backoff_ms = {}", n.max_backoff.as_millis());
        let _ = writeln!(
            s,
            "start = \"{}\"",
            if n.start_at_end { "end" } else { "oldest" }
        );
        f.write_str(&s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cli::config::{Config, ConfigError};

    const HEAD: &str = "hsdb = \"/var/lib/hvha/hsdb.sqlite\"\n";

    fn parse(body: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{HEAD}{body}"), Path::new("/etc/hvha/hactl.toml"))
    }

    fn refused(body: &str) -> (Option<usize>, String, String, String) {
        match parse(body) {
            Err(ConfigError::Value {
                line,
                key,
                value,
                allowed,
                ..
            }) => (line, key, value, allowed),
            other => panic!("expected a value error for {body:?}, got {other:?}"),
        }
    }

    const ALL: &str = r#"
[event_retention]
keep_days = 7
max_rows = 500000
behind_events = 50

[[notifier]]
name = "pager"
kind = "webhook"
url = "http://127.0.0.1:9000/hvha"
bearer_token_file = "pager.token"
min_severity = "error"
kinds = ["HOST_FAILURE_DETECTED", "VM_RESTART_FAILED"]
timeout_ms = 5000

[[notifier]]
name = "ticket"
kind = "exec"
command = ["/usr/local/bin/open-ticket", "--queue", "ha"]
start = "oldest"

[[notifier]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
from = "hvha@ops.example"
to = ["oncall@ops.example", "lead@ops.example"]
"#;

    #[test]
    fn test_notifiers_are_read_and_shown_as_toml_that_reads_back_the_same() {
        let c = parse(ALL).unwrap();
        assert_eq!(c.notifiers.len(), 3);
        let p = &c.notifiers[0];
        assert_eq!(p.consumer(), "notifier:pager");
        assert_eq!(p.filter.min_severity, Severity::Error);
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert!(p.start_at_end);
        match &p.channel {
            ChannelConfig::Webhook {
                url,
                bearer_token_file,
            } => {
                assert_eq!(url.port, 9000);
                assert_eq!(
                    bearer_token_file.as_deref(),
                    Some(Path::new("/etc/hvha/pager.token")),
                    "relative to the config file"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!c.notifiers[1].start_at_end);
        match &c.notifiers[2].channel {
            ChannelConfig::Email(e) => assert_eq!((e.port, e.to.len()), (25, 2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.event_retention.keep, Duration::from_secs(7 * 86_400));
        assert_eq!(c.event_retention.max_rows, 500_000);
        assert_eq!(c.event_retention.behind_events, 50);
        let shown = c.to_string();
        let again = Config::parse(&shown, Path::new("/etc/hvha/hactl.toml")).unwrap();
        assert_eq!(again.notifiers, c.notifiers, "{shown}");
        assert_eq!(again.event_retention, c.event_retention);
        // Without any: the defaults.
        let none = parse("").unwrap();
        assert!(none.notifiers.is_empty());
        assert_eq!(none.event_retention, Retention::default());
    }

    #[test]
    fn test_bad_notifiers_are_refused_naming_the_key_and_value() {
        let n = |rest: &str| format!("[[notifier]]\nname = \"n\"\n{rest}");
        let (line, key, value, allowed) = refused(&n(
            "kind = \"webhook\"\nurl = \"https://hooks.example/x\"\n",
        ));
        assert_eq!((line, key.as_str()), (Some(5), "notifier[0].url"));
        assert_eq!(value, "\"https://hooks.example/x\"");
        assert!(allowed.contains("TLS"), "{allowed}");
        let (_, key, value, _) = refused(&n("kind = \"pager\"\n"));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[0].kind", "\"pager\"")
        );
        let (_, key, _, _) = refused(&n("kind = \"webhook\"\n"));
        assert_eq!(key, "notifier[0].url", "missing");
        let (_, key, value, _) = refused(&n(
            "kind = \"webhook\"\nurl = \"http://x/\"\nmin_severity = \"fatal\"\n",
        ));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[0].min_severity", "\"fatal\"")
        );
        let (_, key, value, _) = refused(&n(
            "kind = \"webhook\"\nurl = \"http://x/\"\nkinds = [\"VM_MOVED\", \"VM_MOVD\"]\n",
        ));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[0].kinds[1]", "\"VM_MOVD\"")
        );
        let (_, key, _, allowed) = refused(&n("kind = \"exec\"\nurl = \"http://x/\"\n"));
        assert_eq!(key, "notifier[0].url");
        assert!(
            allowed.contains("not a key of kind = \"exec\""),
            "{allowed}"
        );
        let (_, key, value, _) = refused(&n("kind = \"exec\"\ncommand = [\"hook.sh\"]\n"));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[0].command[0]", "\"hook.sh\"")
        );
        let (_, key, _, _) = refused(&n(
            "kind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\", \"not an address\"]\n",
        ));
        assert_eq!(key, "notifier[0].to[1]");
        let (_, key, value, _) = refused(&n(
            "kind = \"webhook\"\nurl = \"http://x/\"\ntimeout_ms = 0\n",
        ));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[0].timeout_ms", "0")
        );
        let (_, key, _, allowed) = refused(&n(
            "kind = \"webhook\"\nurl = \"http://x/\"\ninitial_backoff_ms = 5000\nmax_backoff_ms = 1000\n",
        ));
        assert_eq!(key, "notifier[0].max_backoff_ms");
        assert!(allowed.contains("initial_backoff_ms"), "{allowed}");
        let twice = format!(
            "{}{}",
            n("kind = \"webhook\"\nurl = \"http://x/\"\n"),
            n("kind = \"webhook\"\nurl = \"http://y/\"\n")
        );
        let (_, key, value, _) = refused(&twice);
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("notifier[1].name", "\"n\"")
        );
        let (_, key, _, _) = refused("[event_retention]\nkeep_days = 40\nmax_age_days = 30\n");
        assert_eq!(key, "event_retention.max_age_days");
        let (_, key, _, _) = refused("[event_retention]\nmax_rows = 0\n");
        assert_eq!(key, "event_retention.max_rows");
        assert!(
            matches!(
                parse(&n(
                    "kind = \"webhook\"\nurl = \"http://x/\"\nsecret = \"x\"\n"
                )),
                Err(ConfigError::Syntax { .. })
            ),
            "an unknown key"
        );
    }
}
