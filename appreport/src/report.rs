//! The report body: what an agent says about its applications.
//!
//! ```text
//! HVHA-APPS 1 inc=5f3a9c01d2e4b7a8 gen=7 count=2
//! app name=db state=NORMAL colour=GREEN critical=1 monitored=1 restarts=0 max_restart=3 monitor=script since_ms=1764540000000 detail=
//! app name=web state=FAILING colour=YELLOW critical=0 monitored=1 restarts=1 max_restart=3 monitor=http since_ms=1764540012000 detail=HTTP%20503%20from%20127.0.0.1:8080
//! ```
//!
//! - The header: the word `HVHA-APPS`, the format version `1`, then `key=value` words:
//!   `inc` (the agent's process incarnation, 1-16 hex digits), `generation` (the report
//!   generation, decimal), `count` (the number of application lines). Required: all three.
//! - One line per application: the word `app`, then `key=value` words. Required: `name`
//!   and `state`. Optional, with their default: `critical=0`, `monitored=1`,
//!   `restarts=0`, `max_restart=3`, `monitor=script`, `since_ms=0`, `detail=` (empty),
//!   `colour` (checked to be one of GREEN / YELLOW / RED, then derived from the state).
//! - Words are separated by one or more spaces; keys may come in any order; a key may
//!   not repeat; unknown keys are skipped (a newer agent may say more). Lines end with
//!   `\n` (a `\r` before it is dropped); the last line's `\n` may be missing.
//! - `detail` is percent-encoded: every byte outside `!`..=`~`, and `%` itself, is
//!   written `%XX`. Decoded, it is at most [`MAX_DETAIL`] bytes, read as UTF-8 (invalid
//!   sequences replaced).
//! - At most [`MAX_BODY`] bytes and [`MAX_APPS`] applications; names are unique.

use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// Most application lines a report may carry. An agent watches at most 16 (seed 004
/// L9743); the parser accepts more so that a future agent's report is still read.
pub const MAX_APPS: usize = 64;

/// Largest report body: 64 chunks of 1024 bytes (the `PMSG_RSP` limits, [`crate::pmsg`]).
pub const MAX_BODY: usize = 65_536;

/// Longest decoded `detail`, in bytes. The encoder cuts a longer one at a character
/// boundary.
pub const MAX_DETAIL: usize = 256;

/// Longest application name (the agent's limit).
pub const MAX_NAME: usize = 64;

/// The word a report starts with.
const MAGIC: &str = "HVHA-APPS";
/// The one format version.
const VERSION: &str = "1";

/// An application's state in the agent's engine (seed 004 L9480-L10246: the codes are
/// the seed's `ksysvmmgr status` STATE column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppState {
    /// Not yet judged (or monitoring suspended by the operator).
    Unset,
    /// The monitor says the application is healthy.
    Normal,
    /// The monitor failed, fewer times than the threshold.
    Failing,
    /// Being stopped for a restart.
    ToStop,
    /// Being started.
    ToStart,
    /// Local restarts are exhausted, or it cannot be stopped or started.
    Failure,
    /// A script is missing, not executable or unsafe: needs repair.
    Abnormal,
}

impl AppState {
    /// Every state, in the seed's code order.
    pub const ALL: [AppState; 7] = [
        AppState::Unset,
        AppState::Normal,
        AppState::Failing,
        AppState::ToStop,
        AppState::ToStart,
        AppState::Abnormal,
        AppState::Failure,
    ];

    /// The state as written in reports, the HSDB and command output.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Unset => "UNSET",
            AppState::Normal => "NORMAL",
            AppState::Failing => "FAILING",
            AppState::ToStop => "TO_STOP",
            AppState::ToStart => "TO_START",
            AppState::Failure => "FAILURE",
            AppState::Abnormal => "ABNORMAL",
        }
    }

    /// The seed's numeric STATE code (seed 004 L9480, L9547, L9829, L9872, L9916,
    /// L9958, L10219).
    pub fn code(self) -> u8 {
        match self {
            AppState::Unset => 1,
            AppState::Normal => 2,
            AppState::Failing => 3,
            AppState::ToStop => 4,
            AppState::ToStart => 6,
            AppState::Abnormal => 8,
            AppState::Failure => 9,
        }
    }

    /// The colour `ksysvmmgr status` shows (seed 004 L9783-9802, L10184-10190).
    pub fn colour(self) -> Colour {
        match self {
            AppState::Normal => Colour::Green,
            AppState::Unset | AppState::Failing | AppState::ToStop | AppState::ToStart => {
                Colour::Yellow
            }
            AppState::Failure | AppState::Abnormal => Colour::Red,
        }
    }

    /// Parse the text form, exact case.
    pub fn parse(text: &str) -> Option<AppState> {
        AppState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GREEN (healthy), YELLOW (in transition or not judged), RED (needs attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    /// Healthy.
    Green,
    /// In transition, or not judged.
    Yellow,
    /// Failed: needs repair or escalation.
    Red,
}

impl Colour {
    /// `GREEN`, `YELLOW` or `RED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Green => "GREEN",
            Colour::Yellow => "YELLOW",
            Colour::Red => "RED",
        }
    }

    /// Parse the text form, exact case.
    pub fn parse(text: &str) -> Option<Colour> {
        [Colour::Green, Colour::Yellow, Colour::Red]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the application is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MonitorKind {
    /// The operator's monitor script.
    Script,
    /// A built-in HTTP probe.
    Http,
    /// A built-in SMTP probe (`NOOP` after the greeting).
    Smtp,
    /// A built-in TCP connect probe.
    Tcp,
}

impl MonitorKind {
    /// `script`, `http`, `smtp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Script => "script",
            MonitorKind::Http => "http",
            MonitorKind::Smtp => "smtp",
            MonitorKind::Tcp => "tcp",
        }
    }

    /// Parse the text form, exact case.
    pub fn parse(text: &str) -> Option<MonitorKind> {
        [
            MonitorKind::Script,
            MonitorKind::Http,
            MonitorKind::Smtp,
            MonitorKind::Tcp,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

impl fmt::Display for MonitorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One application as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// Unique within the VM: 1-64 of `A-Z a-z 0-9 _ - .`, not starting with `-` or `.`.
    pub name: String,
    /// Its state.
    pub state: AppState,
    /// A FAILURE is escalated to the control plane.
    pub critical: bool,
    /// `false`: monitoring suspended by the operator.
    pub monitored: bool,
    /// Local restart cycles done since the count last reset.
    pub restarts: u32,
    /// Local restart cycles allowed before FAILURE.
    pub max_restart: u32,
    /// How it is watched.
    pub monitor: MonitorKind,
    /// When the state last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// Why: the last failure or message, at most [`MAX_DETAIL`] bytes.
    pub detail: String,
}

impl AppStatus {
    /// An application in `state` with every other field at its default.
    pub fn new(name: impl Into<String>, state: AppState) -> AppStatus {
        AppStatus {
            name: name.into(),
            state,
            critical: false,
            monitored: true,
            restarts: 0,
            max_restart: 3,
            monitor: MonitorKind::Script,
            since_ms: 0,
            detail: String::new(),
        }
    }

    /// The colour of its state.
    pub fn colour(&self) -> Colour {
        self.state.colour()
    }
}

/// One VM's report: every application the agent watches, at one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppReport {
    /// The agent's process incarnation: a new agent process starts its generations
    /// again at 1, and a reader compares generations only within one incarnation.
    pub inc: u64,
    /// The report generation: it grows whenever anything in the report changes.
    pub generation: u64,
    /// The applications, in the order the agent lists them.
    pub apps: Vec<AppStatus>,
}

/// Why a report body was refused. Lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    /// More than [`MAX_BODY`] bytes.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The body is not ASCII text: a byte outside 0x20..=0x7e other than `\n` / `\r`.
    BadByte {
        /// The line.
        line: usize,
        /// The byte.
        byte: u8,
    },
    /// The first line is not `HVHA-APPS 1 …`.
    BadHeader {
        /// What is wrong.
        reason: String,
    },
    /// The header names another format version.
    UnsupportedVersion {
        /// The version word.
        version: String,
    },
    /// A required key is missing.
    Missing {
        /// The line.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A key appears twice on one line.
    Duplicate {
        /// The line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value breaks its key's format.
    BadValue {
        /// The line.
        line: usize,
        /// The key.
        key: String,
        /// The value, cut to 64 bytes.
        value: String,
        /// What the value must be.
        rule: &'static str,
    },
    /// A line is neither empty at the end nor an `app` line.
    BadLine {
        /// The line.
        line: usize,
    },
    /// The header's `count` is not the number of application lines.
    CountMismatch {
        /// The header's count.
        declared: u64,
        /// The lines found.
        found: usize,
    },
    /// More than [`MAX_APPS`] applications.
    TooManyApps {
        /// The count.
        count: u64,
    },
    /// Two lines name the same application.
    DuplicateApp {
        /// The name.
        name: String,
    },
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::TooLong { len } => {
                write!(f, "report of {len} bytes is longer than {MAX_BODY}")
            }
            ReportError::BadByte { line, byte } => {
                write!(f, "line {line}: byte 0x{byte:02x} is not printable ASCII")
            }
            ReportError::BadHeader { reason } => write!(f, "bad header: {reason}"),
            ReportError::UnsupportedVersion { version } => {
                write!(
                    f,
                    "report format version {version:?} is not supported (1 is)"
                )
            }
            ReportError::Missing { line, key } => write!(f, "line {line}: {key}= is missing"),
            ReportError::Duplicate { line, key } => write!(f, "line {line}: {key}= appears twice"),
            ReportError::BadValue {
                line,
                key,
                value,
                rule,
            } => write!(f, "line {line}: {key}={value:?}: {rule}"),
            ReportError::BadLine { line } => {
                write!(
                    f,
                    "line {line}: not an application line (`app key=value …`)"
                )
            }
            ReportError::CountMismatch { declared, found } => write!(
                f,
                "the header says count={declared} but {found} application lines follow"
            ),
            ReportError::TooManyApps { count } => {
                write!(f, "{count} applications: at most {MAX_APPS}")
            }
            ReportError::DuplicateApp { name } => {
                write!(f, "application {name:?} is reported twice")
            }
        }
    }
}

impl std::error::Error for ReportError {}

/// True when `name` is a valid application name: 1-[`MAX_NAME`] bytes of
/// `A-Z a-z 0-9 _ - .`, not starting with `-` or `.`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && !matches!(b.first(), Some(b'-' | b'.'))
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

impl AppReport {
    /// The report as text. A `detail` longer than [`MAX_DETAIL`] bytes is cut at a
    /// character boundary; every other field is written as is (an invalid name makes a
    /// report readers refuse, so the agent validates names when they are configured).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 + self.apps.len() * 200);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{MAGIC} {VERSION} inc={:x} gen={} count={}",
            self.inc,
            self.generation,
            self.apps.len()
        );
        for a in &self.apps {
            let _ = write!(
                out,
                "app name={} state={} colour={} critical={} monitored={} restarts={} \
                 max_restart={} monitor={} since_ms={} detail=",
                a.name,
                a.state,
                a.colour(),
                u8::from(a.critical),
                u8::from(a.monitored),
                a.restarts,
                a.max_restart,
                a.monitor,
                a.since_ms,
            );
            percent_encode(truncate(&a.detail, MAX_DETAIL), &mut out);
            out.push('\n');
        }
        out
    }

    /// Parse a report body (format in the module documentation).
    pub fn parse(body: &[u8]) -> Result<AppReport, ReportError> {
        if body.len() > MAX_BODY {
            return Err(ReportError::TooLong { len: body.len() });
        }
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let mut lines = body.split(|&b| b == b'\n').enumerate().map(|(i, l)| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            (i + 1, l)
        });
        let (_, header) = lines.next().unwrap_or((1, &[]));
        let header = ascii_line(1, header)?;
        let (inc, generation, count) = parse_header(header)?;
        if count > MAX_APPS as u64 {
            return Err(ReportError::TooManyApps { count });
        }
        let mut apps = Vec::new();
        let mut names = HashSet::new();
        for (n, line) in lines {
            let line = ascii_line(n, line)?;
            if apps.len() >= MAX_APPS {
                return Err(ReportError::TooManyApps {
                    count: (apps.len() + 1) as u64,
                });
            }
            let app = parse_app(n, line)?;
            if !names.insert(app.name.clone()) {
                return Err(ReportError::DuplicateApp { name: app.name });
            }
            apps.push(app);
        }
        if apps.len() as u64 != count {
            return Err(ReportError::CountMismatch {
                declared: count,
                found: apps.len(),
            });
        }
        Ok(AppReport {
            inc,
            generation,
            apps,
        })
    }
}

/// `line` as a `&str`, if every byte is printable ASCII.
fn ascii_line(line: usize, bytes: &[u8]) -> Result<&str, ReportError> {
    if let Some(&byte) = bytes.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
        return Err(ReportError::BadByte { line, byte });
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(bytes).map_err(|_| ReportError::BadByte { line, byte: 0 })
}

/// The `key=value` words of a line after its first `skip` words, keys unique.
fn pairs<'a>(
    line_no: usize,
    words: impl Iterator<Item = &'a str>,
) -> Result<Vec<(&'a str, &'a str)>, ReportError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ReportError::BadValue {
                line: line_no,
                key: cut(word),
                value: String::new(),
                rule: "every word after the first must be key=value",
            });
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(ReportError::Duplicate {
                line: line_no,
                key: cut(key),
            });
        }
        out.push((key, value));
    }
    Ok(out)
}

fn get<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn parse_header(line: &str) -> Result<(u64, u64, u64), ReportError> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    if words.next() != Some(MAGIC) {
        return Err(ReportError::BadHeader {
            reason: format!("the first word must be {MAGIC}"),
        });
    }
    let version = words.next().unwrap_or_default();
    if version != VERSION {
        return Err(ReportError::UnsupportedVersion {
            version: cut(version),
        });
    }
    let p = pairs(1, words)?;
    let inc = get(&p, "inc").ok_or(ReportError::Missing {
        line: 1,
        key: "inc",
    })?;
    let inc = parse_hex(inc).ok_or_else(|| bad(1, "inc", inc, "1-16 hexadecimal digits"))?;
    let generation = number(&p, 1, "gen")?.ok_or(ReportError::Missing {
        line: 1,
        key: "gen",
    })?;
    let count = number(&p, 1, "count")?.ok_or(ReportError::Missing {
        line: 1,
        key: "count",
    })?;
    Ok((inc, generation, count))
}

fn parse_app(n: usize, line: &str) -> Result<AppStatus, ReportError> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    if words.next() != Some("app") {
        return Err(ReportError::BadLine { line: n });
    }
    let p = pairs(n, words)?;
    let name = get(&p, "name").ok_or(ReportError::Missing {
        line: n,
        key: "name",
    })?;
    if !valid_name(name) {
        return Err(bad(
            n,
            "name",
            name,
            "1-64 of A-Z a-z 0-9 _ - ., not starting with - or .",
        ));
    }
    let state = get(&p, "state").ok_or(ReportError::Missing {
        line: n,
        key: "state",
    })?;
    let state = AppState::parse(state).ok_or_else(|| {
        bad(
            n,
            "state",
            state,
            "one of UNSET NORMAL FAILING TO_STOP TO_START FAILURE ABNORMAL",
        )
    })?;
    if let Some(c) = get(&p, "colour")
        && Colour::parse(c).is_none()
    {
        return Err(bad(n, "colour", c, "one of GREEN YELLOW RED"));
    }
    let monitor = match get(&p, "monitor") {
        None => MonitorKind::Script,
        Some(m) => MonitorKind::parse(m)
            .ok_or_else(|| bad(n, "monitor", m, "one of script http smtp tcp"))?,
    };
    let detail = match get(&p, "detail") {
        None => String::new(),
        Some(d) => percent_decode(d).ok_or_else(|| {
            bad(
                n,
                "detail",
                d,
                "percent-encoded text of at most 256 bytes (%XX with two hex digits)",
            )
        })?,
    };
    Ok(AppStatus {
        name: name.to_owned(),
        state,
        critical: flag(&p, n, "critical")?.unwrap_or(false),
        monitored: flag(&p, n, "monitored")?.unwrap_or(true),
        restarts: small(&p, n, "restarts")?.unwrap_or(0),
        max_restart: small(&p, n, "max_restart")?.unwrap_or(3),
        monitor,
        since_ms: number(&p, n, "since_ms")?.unwrap_or(0),
        detail,
    })
}

fn bad(line: usize, key: &str, value: &str, rule: &'static str) -> ReportError {
    ReportError::BadValue {
        line,
        key: key.to_owned(),
        value: cut(value),
        rule,
    }
}

/// At most 64 bytes of `s`, cut at a character boundary.
fn cut(s: &str) -> String {
    truncate(s, 64).to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn number(p: &[(&str, &str)], line: usize, key: &str) -> Result<Option<u64>, ReportError> {
    get(p, key)
        .map(|v| hvha_digits(v).ok_or_else(|| bad(line, key, v, "a decimal number of 1-20 digits")))
        .transpose()
}

fn small(p: &[(&str, &str)], line: usize, key: &str) -> Result<Option<u32>, ReportError> {
    get(p, key)
        .map(|v| {
            hvha_digits(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(line, key, v, "a decimal number below 2^32"))
        })
        .transpose()
}

fn flag(p: &[(&str, &str)], line: usize, key: &str) -> Result<Option<bool>, ReportError> {
    get(p, key)
        .map(|v| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(line, key, v, "0 or 1")),
        })
        .transpose()
}

/// A decimal number of 1..=20 digits that fits a u64.
pub(crate) fn hvha_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// 1..=16 hexadecimal digits of either case.
pub(crate) fn parse_hex(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decode `%XX` escapes; `None` on a broken escape or more than [`MAX_DETAIL`] bytes.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len().min(MAX_DETAIL));
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        let b = if b == b'%' {
            let hi = hex_digit(bytes.next()?)?;
            let lo = hex_digit(bytes.next()?)?;
            hi * 16 + lo
        } else {
            b
        };
        if out.len() >= MAX_DETAIL {
            return None;
        }
        out.push(b);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> AppReport {
        let mut web = AppStatus::new("web", AppState::Failing);
        web.monitor = MonitorKind::Http;
        web.restarts = 1;
        web.since_ms = 1_764_540_012_000;
        web.detail = "HTTP 503 from 127.0.0.1:8080 — 100% sure".into();
        let mut db = AppStatus::new("db", AppState::Normal);
        db.critical = true;
        AppReport {
            inc: 0x5f3a_9c01_d2e4_b7a8,
            generation: 7,
            apps: vec![db, web],
        }
    }

    #[test]
    fn a_report_round_trips_through_its_text() {
        let r = sample();
        let text = r.encode();
        assert!(text.starts_with("HVHA-APPS 1 inc=5f3a9c01d2e4b7a8 gen=7 count=2\n"));
        assert!(text.contains("app name=db state=NORMAL colour=GREEN critical=1 "));
        assert!(
            text.contains(
                "detail=HTTP%20503%20from%20127.0.0.1:8080%20%E2%80%94%20100%25%20sure\n"
            )
        );
        assert_eq!(AppReport::parse(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn an_empty_report_says_there_are_no_applications() {
        let r = AppReport {
            inc: 1,
            generation: 1,
            apps: vec![],
        };
        assert_eq!(r.encode(), "HVHA-APPS 1 inc=1 gen=1 count=0\n");
        assert_eq!(AppReport::parse(r.encode().as_bytes()).unwrap(), r);
        assert_eq!(
            AppReport::parse(b"HVHA-APPS 1 inc=1 gen=1 count=0").unwrap(),
            r
        );
    }

    #[test]
    fn the_letter_allows_any_key_order_extra_spaces_crlf_unknown_keys_and_defaults() {
        let text = "HVHA-APPS  1 count=1 gen=9 inc=ABC future=yes\r\n\
                    app  state=FAILURE name=db critical=1 colour=RED shiny=1\r\n";
        let r = AppReport::parse(text.as_bytes()).unwrap();
        assert_eq!((r.inc, r.generation), (0xabc, 9));
        let a = &r.apps[0];
        assert_eq!(
            (a.name.as_str(), a.state, a.critical),
            ("db", AppState::Failure, true)
        );
        assert_eq!((a.monitored, a.restarts, a.max_restart), (true, 0, 3));
        assert_eq!(
            (a.monitor, a.since_ms, a.detail.as_str()),
            (MonitorKind::Script, 0, "")
        );
    }

    #[test]
    fn a_long_detail_is_cut_at_a_character_boundary() {
        let mut r = sample();
        r.apps[0].detail = "é".repeat(200);
        let back = AppReport::parse(r.encode().as_bytes()).unwrap();
        assert_eq!(back.apps[0].detail, "é".repeat(128));
    }

    #[test]
    fn refusals_name_the_line_the_key_and_the_rule() {
        let cases: &[(&str, &str)] = &[
            ("", "bad header"),
            ("HVHA-APPS 2 inc=1 gen=1 count=0", "version \"2\""),
            ("HVHA-APPS 1 gen=1 count=0", "inc= is missing"),
            ("HVHA-APPS 1 inc=xyz gen=1 count=0", "inc=\"xyz\""),
            ("HVHA-APPS 1 inc=1 gen=-1 count=0", "gen=\"-1\""),
            ("HVHA-APPS 1 inc=1 gen=1 count=1", "count=1 but 0"),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=0\napp name=a state=NORMAL",
                "count=0 but 1",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp state=NORMAL",
                "line 2: name= is missing",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=OK",
                "line 2: state=\"OK\"",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=.a state=NORMAL",
                "name=\".a\"",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a name=b state=NORMAL",
                "name= appears twice",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL critical=2",
                "critical=\"2\"",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL restarts=4294967296",
                "below 2^32",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL detail=%G0",
                "detail=",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL colour=PINK",
                "colour=",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL junk",
                "key=value",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\nvm name=a state=NORMAL",
                "line 2: not an application",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=2\napp name=a state=NORMAL\napp name=a state=NORMAL",
                "reported twice",
            ),
            (
                "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a\tstate=NORMAL",
                "byte 0x09",
            ),
            ("HVHA-APPS 1 inc=1 gen=1 count=65", "65 applications"),
        ];
        for (text, want) in cases {
            let err = AppReport::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{text:?}: {err:?} should contain {want:?}"
            );
        }
        let long = vec![b'a'; MAX_BODY + 1];
        assert!(matches!(
            AppReport::parse(&long),
            Err(ReportError::TooLong { .. })
        ));
        let detail = format!(
            "HVHA-APPS 1 inc=1 gen=1 count=1\napp name=a state=NORMAL detail={}",
            "x".repeat(MAX_DETAIL + 1)
        );
        assert!(AppReport::parse(detail.as_bytes()).is_err());
    }

    #[test]
    fn states_have_the_seeds_codes_and_colours() {
        let codes: Vec<u8> = AppState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 6, 8, 9]);
        assert_eq!(AppState::Normal.colour(), Colour::Green);
        assert_eq!(AppState::ToStart.colour(), Colour::Yellow);
        assert_eq!(AppState::Abnormal.colour(), Colour::Red);
        for s in AppState::ALL {
            assert_eq!(AppState::parse(s.as_str()), Some(s));
        }
    }
}
