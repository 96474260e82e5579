//! The `key=value` attributes of applications and dependencies, as `vmmd ctl` takes them
//! and the applications' file stores them (seed 004 L16155-16311 for the applications,
//! L16358-16473 for the dependencies).
//!
//! One table for both: a value is checked here against its own range (the error names
//! the attribute, the value and the rule); rules across attributes (`monitor_period`
//! must exceed `monitor_timeout`, unique names, dependencies) are
//! [`AmeConfig::validate`](crate::ame::config::AmeConfig::validate)'s.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ame::config::{AppConfig, Dependency, DependencyKind};
use crate::ame::probe::{self, HttpMethod, HttpProbe, HttpVersion, ProbeConfig, ProbeKind};

/// Longest duration attribute: a day, in seconds (our bound; the seed gives none).
pub const MAX_SECONDS: u64 = 86_400;
/// Largest count attribute (our bound; the seed gives none).
pub const MAX_COUNT: u32 = 1000;
/// Longest script path, in bytes (Linux's `PATH_MAX` less the NUL).
pub const MAX_PATH_LEN: usize = 4095;

/// A value refused: names the attribute, the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{attribute}={value} is invalid: {rule}")]
pub struct AttrError {
    /// The attribute as given.
    pub attribute: String,
    /// The value as given (quoted when it is not plain).
    pub value: String,
    /// What is allowed, in words.
    pub rule: String,
}

fn refuse(attribute: &str, value: &str, rule: impl Into<String>) -> AttrError {
    let shown = if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        value.to_owned()
    } else {
        format!("{value:?}")
    };
    AttrError {
        attribute: attribute.to_owned(),
        value: shown,
        rule: rule.into(),
    }
}

/// How a value is written in the applications' file (TOML) and shown by `vmmd ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A path or a word.
    Text(String),
    /// Seconds or a count.
    Int(u64),
    /// yes / no.
    Flag(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Flag(b) => f.write_str(if *b { "yes" } else { "no" }),
        }
    }
}

/// The attributes an application takes, in the order `query app` shows them.
pub const APP_ATTRIBUTES: &[&str] = &[
    "monitored",
    "monitor_script",
    "monitor_period",
    "monitor_timeout",
    "monitor_failure_threshold",
    "stop_script",
    "stop_stabilization_time",
    "stop_max_failures",
    "start_script",
    "start_stabilization_time",
    "start_max_failures",
    "max_restart",
    "critical",
    "probe",
    "probe_server",
    "probe_port",
    "probe_interval",
    "probe_timeout",
    "probe_retries",
    "probe_retry_wait",
    "probe_method",
    "probe_uri",
    "probe_version",
    "probe_expect_status",
];

/// The probe attributes that need `probe=http|smtp|tcp`.
const PROBE_ATTRIBUTES: &[&str] = &[
    "probe_server",
    "probe_port",
    "probe_interval",
    "probe_timeout",
    "probe_retries",
    "probe_retry_wait",
    "probe_method",
    "probe_uri",
    "probe_version",
    "probe_expect_status",
];

/// The mandatory attributes of `add app` (seed 004 L16210-16225); `monitor_script` may
/// be left out when `probe` is given.
pub const MANDATORY_APP_ATTRIBUTES: &[&str] = &["monitor_script", "start_script", "stop_script"];

/// Attributes of the seed we show or refuse with a reason rather than "unknown".
fn not_settable(attribute: &str) -> Option<&'static str> {
    match attribute {
        "name" => Some("the name is given after `app` and cannot be changed: delete and add"),
        "status" | "nooftimes_restarted" | "uuid" => Some("read-only: shown by status"),
        "type" | "instancename" | "database" | "version" | "vendor_id" | "desc" => Some(
            "not supported: vmmd has no built-in ORACLE, DB2 or SAPHANA agents; \
             give monitor_script, start_script and stop_script",
        ),
        _ => None,
    }
}

/// `yes`/`no` (also `1`/`0`, `true`/`false`, any case).
pub fn parse_flag(attribute: &str, value: &str) -> Result<bool, AttrError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "1" | "true" => Ok(true),
        "no" | "0" | "false" => Ok(false),
        _ => Err(refuse(attribute, value, "yes or no (also 1/0, true/false)")),
    }
}

fn parse_seconds(attribute: &str, value: &str) -> Result<Duration, AttrError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_SECONDS).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            refuse(
                attribute,
                value,
                format!("1..={MAX_SECONDS} (whole seconds)"),
            )
        })
}

fn parse_count(attribute: &str, value: &str) -> Result<u32, AttrError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| refuse(attribute, value, format!("1..={MAX_COUNT}")))
}

fn parse_script(attribute: &str, value: &str) -> Result<PathBuf, AttrError> {
    let path = PathBuf::from(value);
    if !path.is_absolute()
        || value.len() > MAX_PATH_LEN
        || value.chars().any(char::is_control)
        || path.file_name().is_none()
    {
        return Err(refuse(
            attribute,
            value,
            format!(
                "an absolute path to an executable file, at most {MAX_PATH_LEN} bytes, \
                 without control characters (run directly, never through a shell)"
            ),
        ));
    }
    Ok(path)
}

fn parse_probe_seconds(attribute: &str, value: &str) -> Result<Duration, AttrError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| probe::SEED_RANGE.contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            refuse(
                attribute,
                value,
                "1..=10000 (whole seconds, seed 003 ranges)",
            )
        })
}

/// `probe=http|smtp|tcp|none`: a new probe keeps the server, timings and retries of the
/// one it replaces; the port follows the kind when it was the old kind's default.
fn set_probe_kind(app: &mut AppConfig, value: &str) -> Result<(), AttrError> {
    let kind = match value {
        "none" => {
            app.probe = None;
            return Ok(());
        }
        "http" => ProbeKind::Http(HttpProbe::default()),
        "smtp" => ProbeKind::Smtp,
        "tcp" => ProbeKind::Tcp,
        _ => {
            return Err(refuse(
                "probe",
                value,
                "http, smtp, tcp, or none for the monitor script",
            ));
        }
    };
    let fresh = ProbeConfig::new(kind.clone());
    app.probe = Some(match app.probe.take() {
        None => fresh,
        Some(old) if old.kind.name() == kind.name() => old,
        Some(old) => {
            let old_default = ProbeConfig::new(old.kind.clone()).port;
            ProbeConfig {
                kind,
                port: if old.port == old_default {
                    fresh.port
                } else {
                    old.port
                },
                ..old
            }
        }
    });
    Ok(())
}

fn set_probe_attribute(app: &mut AppConfig, attribute: &str, value: &str) -> Result<(), AttrError> {
    let Some(p) = app.probe.as_mut() else {
        return Err(refuse(
            attribute,
            value,
            "only for an application with a built-in probe: give probe=http|smtp|tcp",
        ));
    };
    let http_only = || refuse(attribute, value, "only for probe=http");
    match attribute {
        "probe_server" => {
            if value.is_empty()
                || value.len() > probe::MAX_TEXT
                || value.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(refuse(
                    attribute,
                    value,
                    "a host name or address, 1..=255 bytes",
                ));
            }
            p.server = value.to_owned();
        }
        "probe_port" => {
            p.port = value
                .parse::<u16>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| refuse(attribute, value, "1..=65535"))?;
        }
        "probe_interval" => p.interval = parse_probe_seconds(attribute, value)?,
        "probe_timeout" => p.timeout = parse_probe_seconds(attribute, value)?,
        "probe_retry_wait" => p.retry_wait = parse_probe_seconds(attribute, value)?,
        "probe_retries" => {
            p.retries = value
                .parse::<u32>()
                .ok()
                .filter(|n| probe::SEED_RANGE.contains(&u64::from(*n)))
                .ok_or_else(|| refuse(attribute, value, "1..=10000 (seed 003 ranges)"))?;
        }
        "probe_method" => {
            let ProbeKind::Http(h) = &mut p.kind else {
                return Err(http_only());
            };
            h.method = match value.to_ascii_uppercase().as_str() {
                "HEAD" => HttpMethod::Head,
                "GET" => HttpMethod::Get,
                _ => return Err(refuse(attribute, value, "HEAD or GET")),
            };
        }
        "probe_uri" => {
            let ProbeKind::Http(h) = &mut p.kind else {
                return Err(http_only());
            };
            if !value.starts_with('/')
                || value.len() > probe::MAX_TEXT
                || !value.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(refuse(
                    attribute,
                    value,
                    "a Request-URI starting with /, at most 255 bytes, printable ASCII without spaces",
                ));
            }
            h.uri = value.to_owned();
        }
        "probe_version" => {
            let ProbeKind::Http(h) = &mut p.kind else {
                return Err(http_only());
            };
            h.version = match value {
                "1.0" => HttpVersion::V10,
                "1.1" => HttpVersion::V11,
                _ => return Err(refuse(attribute, value, "1.0 or 1.1")),
            };
        }
        "probe_expect_status" => {
            let ProbeKind::Http(h) = &mut p.kind else {
                return Err(http_only());
            };
            h.expect_status = if value == "any" {
                None
            } else {
                Some(
                    value
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .ok_or_else(|| {
                            refuse(attribute, value, "100..=599, or any for every 2xx and 3xx")
                        })?,
                )
            };
        }
        _ => return Err(refuse(attribute, value, "unknown probe attribute")),
    }
    Ok(())
}

/// Set one attribute of `app` from its text; the error names the attribute, the value
/// and the rule.
pub fn set_app_attribute(
    app: &mut AppConfig,
    attribute: &str,
    value: &str,
) -> Result<(), AttrError> {
    match attribute {
        "monitor_script" => app.monitor_script = parse_script(attribute, value)?,
        "start_script" => app.start_script = parse_script(attribute, value)?,
        "stop_script" => app.stop_script = parse_script(attribute, value)?,
        "monitored" => app.monitored = parse_flag(attribute, value)?,
        "critical" => app.critical = parse_flag(attribute, value)?,
        "monitor_period" => app.monitor_period = parse_seconds(attribute, value)?,
        "monitor_timeout" => app.monitor_timeout = parse_seconds(attribute, value)?,
        "stop_stabilization_time" => {
            app.stop_stabilization_time = parse_seconds(attribute, value)?;
        }
        "start_stabilization_time" => {
            app.start_stabilization_time = parse_seconds(attribute, value)?;
        }
        "monitor_failure_threshold" => {
            app.monitor_failure_threshold = parse_count(attribute, value)?;
        }
        "stop_max_failures" => app.stop_max_failures = parse_count(attribute, value)?,
        "start_max_failures" => app.start_max_failures = parse_count(attribute, value)?,
        "max_restart" => app.max_restart = parse_count(attribute, value)?,
        "probe" => set_probe_kind(app, value)?,
        a if PROBE_ATTRIBUTES.contains(&a) => set_probe_attribute(app, a, value)?,
        other => {
            let rule = match not_settable(other) {
                Some(why) => why.to_owned(),
                None => format!(
                    "unknown application attribute; known: {}",
                    APP_ATTRIBUTES.join(", ")
                ),
            };
            return Err(refuse(other, value, rule));
        }
    }
    Ok(())
}

/// Every attribute of `app` with its value, in [`APP_ATTRIBUTES`] order; the probe's
/// only when it has one, `monitor_script` not when a probe replaces an empty one.
pub fn app_attributes(app: &AppConfig) -> Vec<(&'static str, Value)> {
    let path = |p: &PathBuf| Value::Text(p.display().to_string());
    let secs = |d: Duration| Value::Int(d.as_secs());
    let mut out = vec![("monitored", Value::Flag(app.monitored))];
    if app.probe.is_none() || !app.monitor_script.as_os_str().is_empty() {
        out.push(("monitor_script", path(&app.monitor_script)));
    }
    out.extend([
        ("monitor_period", secs(app.monitor_period)),
        ("monitor_timeout", secs(app.monitor_timeout)),
        (
            "monitor_failure_threshold",
            Value::Int(app.monitor_failure_threshold.into()),
        ),
        ("stop_script", path(&app.stop_script)),
        ("stop_stabilization_time", secs(app.stop_stabilization_time)),
        (
            "stop_max_failures",
            Value::Int(app.stop_max_failures.into()),
        ),
        ("start_script", path(&app.start_script)),
        (
            "start_stabilization_time",
            secs(app.start_stabilization_time),
        ),
        (
            "start_max_failures",
            Value::Int(app.start_max_failures.into()),
        ),
        ("max_restart", Value::Int(app.max_restart.into())),
        ("critical", Value::Flag(app.critical)),
    ]);
    match &app.probe {
        None => out.push(("probe", Value::Text("none".to_owned()))),
        Some(p) => {
            out.extend([
                ("probe", Value::Text(p.kind.name().to_owned())),
                ("probe_server", Value::Text(p.server.clone())),
                ("probe_port", Value::Int(p.port.into())),
                ("probe_interval", secs(p.interval)),
                ("probe_timeout", secs(p.timeout)),
                ("probe_retries", Value::Int(p.retries.into())),
                ("probe_retry_wait", secs(p.retry_wait)),
            ]);
            if let ProbeKind::Http(h) = &p.kind {
                let method = match h.method {
                    HttpMethod::Head => "HEAD",
                    HttpMethod::Get => "GET",
                };
                let version = match h.version {
                    HttpVersion::V10 => "1.0",
                    HttpVersion::V11 => "1.1",
                };
                out.extend([
                    ("probe_method", Value::Text(method.to_owned())),
                    ("probe_uri", Value::Text(h.uri.clone())),
                    ("probe_version", Value::Text(version.to_owned())),
                    (
                        "probe_expect_status",
                        h.expect_status.map_or_else(
                            || Value::Text("any".to_owned()),
                            |c| Value::Int(c.into()),
                        ),
                    ),
                ]);
            }
        }
    }
    out
}

/// `probe=` first, so that the probe's attributes find their probe whatever the order
/// they were given in.
fn probe_first(attributes: &[(String, String)]) -> Vec<&(String, String)> {
    let mut ordered: Vec<&(String, String)> =
        attributes.iter().filter(|(k, _)| k == "probe").collect();
    ordered.extend(attributes.iter().filter(|(k, _)| k != "probe"));
    ordered
}

/// Apply `attributes` to `app` in order (`probe=` first).
pub fn set_app_attributes(
    app: &mut AppConfig,
    attributes: &[(String, String)],
) -> Result<(), AttrError> {
    for (k, v) in probe_first(attributes) {
        set_app_attribute(app, k, v)?;
    }
    Ok(())
}

/// A new application from `add app`'s attributes: the mandatory ones must be given,
/// the others default to the seed's values.
pub fn new_app(name: &str, attributes: &[(String, String)]) -> Result<AppConfig, AttrError> {
    let mut app = AppConfig::new(name, "", "", "");
    set_app_attributes(&mut app, attributes)?;
    if let Some(missing) = MANDATORY_APP_ATTRIBUTES.iter().find(|m| {
        let given = attributes.iter().any(|(k, _)| k == *m);
        let replaced = **m == "monitor_script" && app.probe.is_some();
        !(given || replaced)
    }) {
        return Err(AttrError {
            attribute: (*missing).to_owned(),
            value: "(missing)".to_owned(),
            rule: format!(
                "mandatory when adding an application ({}; monitor_script not with probe=)",
                MANDATORY_APP_ATTRIBUTES.join(", ")
            ),
        });
    }
    Ok(app)
}

/// The attributes a dependency takes.
pub const DEPENDENCY_ATTRIBUTES: &[&str] = &["dependency_type", "dependency_list", "strict"];

/// Parse `dependency_type`.
pub fn parse_dependency_kind(value: &str) -> Result<DependencyKind, AttrError> {
    match value {
        "start_sequence" => Ok(DependencyKind::StartSequence),
        "stop_sequence" => Ok(DependencyKind::StopSequence),
        "parent_child" => Ok(DependencyKind::ParentChild),
        _ => Err(refuse(
            "dependency_type",
            value,
            "start_sequence, stop_sequence or parent_child",
        )),
    }
}

/// Parse `dependency_list`: application names separated by commas.
pub fn parse_dependency_list(value: &str) -> Result<Vec<String>, AttrError> {
    let names: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
    if value.trim().is_empty() || names.iter().any(String::is_empty) {
        return Err(refuse(
            "dependency_list",
            value,
            "application names separated by commas, e.g. app1,app2",
        ));
    }
    if names.len() > crate::ame::config::MAX_APPS {
        return Err(refuse(
            "dependency_list",
            value,
            format!(
                "at most {} applications (one VM has no more)",
                crate::ame::config::MAX_APPS
            ),
        ));
    }
    Ok(names)
}

/// A dependency from its attributes: `dependency_type` and `dependency_list` are
/// mandatory, `strict` defaults to yes (seed 004 L16408-16410 shows `strict=YES`).
pub fn new_dependency(attributes: &[(String, String)]) -> Result<Dependency, AttrError> {
    let (mut kind, mut apps, mut strict) = (None, None, true);
    for (k, v) in attributes {
        match k.as_str() {
            "dependency_type" => kind = Some(parse_dependency_kind(v)?),
            "dependency_list" => apps = Some(parse_dependency_list(v)?),
            "strict" => strict = parse_flag(k, v)?,
            "depuuid" => {
                return Err(refuse(
                    k,
                    v,
                    "not used: vmmd names a dependency by its dependency_type and dependency_list",
                ));
            }
            other => {
                return Err(refuse(
                    other,
                    v,
                    format!(
                        "unknown dependency attribute; known: {}",
                        DEPENDENCY_ATTRIBUTES.join(", ")
                    ),
                ));
            }
        }
    }
    let missing = |a: &str| AttrError {
        attribute: a.to_owned(),
        value: "(missing)".to_owned(),
        rule: "mandatory for a dependency (dependency_type, dependency_list)".to_owned(),
    };
    Ok(Dependency {
        kind: kind.ok_or_else(|| missing("dependency_type"))?,
        apps: apps.ok_or_else(|| missing("dependency_list"))?,
        strict,
    })
}

/// A dependency's attributes, as `query dependency` shows them.
pub fn dependency_attributes(dep: &Dependency) -> Vec<(&'static str, Value)> {
    vec![
        ("dependency_type", Value::Text(dep.kind.to_string())),
        ("dependency_list", Value::Text(dep.apps.join(","))),
        ("strict", Value::Flag(dep.strict)),
    ]
}

/// Split `key=value` words; the error names the word.
pub fn split_words(words: &[String]) -> Result<Vec<(String, String)>, AttrError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(words.len());
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(refuse(
                w,
                "",
                "attributes are key=value words, e.g. monitor_period=30",
            ));
        };
        if k.is_empty() {
            return Err(refuse(
                k,
                v,
                "attributes are key=value words, the key before '='",
            ));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(refuse(k, v, "each attribute once (it is given twice)"));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn words(w: &[&str]) -> Vec<(String, String)> {
        split_words(&w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn add_needs_the_three_scripts_and_takes_the_seeds_defaults() {
        let app = new_app(
            "app1",
            &words(&[
                "monitor_script=/a/mon",
                "start_script=/a/start",
                "stop_script=/a/stop",
            ]),
        )
        .unwrap();
        assert_eq!(app, AppConfig::new("app1", "/a/mon", "/a/start", "/a/stop"));
        let err = new_app(
            "app1",
            &words(&["monitor_script=/a/mon", "stop_script=/a/stop"]),
        )
        .unwrap_err();
        assert_eq!(err.attribute, "start_script");
        assert!(
            err.to_string()
                .starts_with("start_script=(missing) is invalid: mandatory")
        );
    }

    #[test]
    fn every_attribute_round_trips_through_its_text() {
        let mut app = AppConfig::new("a", "/m", "/s", "/t");
        let given = [
            ("monitored", "no"),
            ("critical", "yes"),
            ("monitor_period", "60"),
            ("monitor_timeout", "20"),
            ("monitor_failure_threshold", "2"),
            ("stop_stabilization_time", "7"),
            ("stop_max_failures", "4"),
            ("start_stabilization_time", "8"),
            ("start_max_failures", "5"),
            ("max_restart", "6"),
            ("monitor_script", "/opt/x/mon.sh"),
        ];
        for (k, v) in given {
            set_app_attribute(&mut app, k, v).unwrap();
        }
        let shown = app_attributes(&app);
        assert_eq!(shown.len(), 14, "no probe attributes without a probe");
        for (k, v) in given {
            let got = shown.iter().find(|(a, _)| *a == k).unwrap();
            assert_eq!(got.1.to_string(), v, "{k}");
        }
        let mut again = AppConfig::new("a", "/", "/", "/");
        for (k, v) in &shown {
            set_app_attribute(&mut again, k, &v.to_string()).unwrap();
        }
        assert_eq!(again, app);
    }

    #[test]
    fn values_are_checked_and_errors_name_attribute_value_and_rule() {
        let mut app = AppConfig::new("a", "/m", "/s", "/t");
        let cases = [
            (
                "monitor_period",
                "0",
                "monitor_period=0 is invalid: 1..=86400 (whole seconds)",
            ),
            (
                "monitor_timeout",
                "86401",
                "monitor_timeout=86401 is invalid: 1..=86400",
            ),
            (
                "monitor_period",
                "-3",
                "monitor_period=-3 is invalid: 1..=86400",
            ),
            ("monitor_period", "1.5", "monitor_period=1.5 is invalid"),
            ("max_restart", "0", "max_restart=0 is invalid: 1..=1000"),
            (
                "stop_max_failures",
                "abc",
                "stop_max_failures=abc is invalid: 1..=1000",
            ),
            ("critical", "maybe", "critical=maybe is invalid: yes or no"),
            (
                "monitor_script",
                "mon.sh",
                "monitor_script=mon.sh is invalid: an absolute path",
            ),
            (
                "start_script",
                "",
                "start_script=\"\" is invalid: an absolute path",
            ),
            (
                "stop_script",
                "/a\nb",
                "stop_script=\"/a\\nb\" is invalid: an absolute path",
            ),
            ("status", "NORMAL", "status=NORMAL is invalid: read-only"),
            ("type", "ORACLE", "type=ORACLE is invalid: not supported"),
            (
                "colour",
                "red",
                "colour=red is invalid: unknown application attribute; known: monitored",
            ),
        ];
        for (k, v, want) in cases {
            let got = set_app_attribute(&mut app, k, v).unwrap_err().to_string();
            assert!(got.starts_with(want), "{k}={v}: {got}");
        }
        assert_eq!(
            app,
            AppConfig::new("a", "/m", "/s", "/t"),
            "nothing changed"
        );
    }

    #[test]
    fn probes() {
        let app = new_app(
            "web",
            &words(&[
                "probe_port=8080",
                "probe=http",
                "start_script=/s",
                "stop_script=/t",
                "probe_uri=/health",
                "probe_expect_status=204",
            ]),
        )
        .unwrap();
        let p = app.probe.clone().unwrap();
        assert_eq!((p.port, p.server.as_str()), (8080, "localhost"));
        let ProbeKind::Http(h) = &p.kind else {
            panic!()
        };
        assert_eq!((h.uri.as_str(), h.expect_status), ("/health", Some(204)));
        assert_eq!(app.validate(), Ok(()));
        let shown = app_attributes(&app);
        assert_eq!(
            shown.len(),
            APP_ATTRIBUTES.len() - 1,
            "every attribute but the empty monitor_script"
        );
        let mut again = AppConfig::new("web", "", "/", "/");
        let pairs: Vec<(String, String)> = shown
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect();
        set_app_attributes(&mut again, &pairs).unwrap();
        assert_eq!(again, app);
        // Switching kind: the default port follows, the timings stay.
        let mut smtp = app.clone();
        set_app_attributes(&mut smtp, &words(&["probe_port=80", "probe_interval=5"])).unwrap();
        set_app_attributes(&mut smtp, &words(&["probe=smtp"])).unwrap();
        let p = smtp.probe.clone().unwrap();
        assert_eq!(
            (p.kind.name(), p.port, p.interval),
            ("smtp", 25, Duration::from_secs(5))
        );
        let cases = [
            (
                vec!["probe=ftp"],
                "probe=ftp is invalid: http, smtp, tcp, or none",
            ),
            (
                vec!["probe_method=GET"],
                "probe_method=GET is invalid: only for probe=http",
            ),
            (
                vec!["probe_interval=0"],
                "probe_interval=0 is invalid: 1..=10000 (whole seconds, seed 003 ranges)",
            ),
            (
                vec!["probe_retries=10001"],
                "probe_retries=10001 is invalid: 1..=10000",
            ),
            (vec!["probe_port=0"], "probe_port=0 is invalid: 1..=65535"),
        ];
        for (w, want) in cases {
            let got = set_app_attributes(&mut smtp.clone(), &words(&w))
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(want), "{w:?}: {got}");
        }
        let mut plain = AppConfig::new("a", "/m", "/s", "/t");
        let got = set_app_attribute(&mut plain, "probe_uri", "/x")
            .unwrap_err()
            .to_string();
        assert!(got.contains("give probe=http|smtp|tcp"), "{got}");
        let err = new_app("web", &words(&["start_script=/s", "stop_script=/t"])).unwrap_err();
        assert_eq!(err.attribute, "monitor_script");
        // Back to the script.
        let mut back = app.clone();
        set_app_attributes(&mut back, &words(&["probe=none", "monitor_script=/m"])).unwrap();
        assert_eq!((back.probe.is_none(), back.validate()), (true, Ok(())));
    }

    #[test]
    fn words_and_dependencies() {
        let err = split_words(&["monitor_period".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("key=value"), "{err}");
        let err = split_words(&["a=1".to_owned(), "a=2".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        assert_eq!(words(&["a=b=c"]), vec![("a".to_owned(), "b=c".to_owned())]);

        let d = new_dependency(&words(&[
            "dependency_list=app1,app2,app3",
            "dependency_type=start_sequence",
        ]))
        .unwrap();
        assert_eq!(d.kind, DependencyKind::StartSequence);
        assert_eq!(d.apps, ["app1", "app2", "app3"]);
        assert!(d.strict);
        let d = new_dependency(&words(&[
            "dependency_list=p,c",
            "dependency_type=parent_child",
            "strict=no",
        ]))
        .unwrap();
        assert!(!d.strict);
        let shown: Vec<String> = dependency_attributes(&d)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            shown,
            [
                "dependency_type=parent_child",
                "dependency_list=p,c",
                "strict=no"
            ]
        );
        for (w, want) in [
            (
                vec!["dependency_list=a,b"],
                "dependency_type=(missing) is invalid: mandatory",
            ),
            (
                vec!["dependency_type=sequence", "dependency_list=a,b"],
                "dependency_type=sequence is invalid: start_sequence",
            ),
            (
                vec!["dependency_type=stop_sequence", "dependency_list=a,,b"],
                "dependency_list=a,,b is invalid",
            ),
            (
                vec!["dependency_type=stop_sequence"],
                "dependency_list=(missing)",
            ),
        ] {
            let got = new_dependency(&words(&w)).unwrap_err().to_string();
            assert!(got.starts_with(want), "{w:?}: {got}");
        }
    }
}
