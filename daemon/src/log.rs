//! Logging, the same in both daemons.
//!
//! Lines go to standard error, one event per line, in one of two formats
//! (`log_format`):
//!
//! - `text` (default): `<time> <LEVEL> <target>: <message> key=value key=value…`;
//!   colour only when standard error is a terminal, never in a file or the journal;
//! - `json`: one JSON object per line, `timestamp`, `level`, `target`, `message` and
//!   every field at the top level, for log shippers.
//!
//! Events carry their facts as fields (`interface=eth1 vm=61be…`), not as prose, so
//! both formats hold the same facts under the same names.
//!
//! The filter (`log`, or `RUST_LOG` when it is set and valid) is a level or a list of
//! `level` and `target=level` directives. Anything else is refused: `tracing` reads a
//! bare word such as `warning` as the name of a target, which would silence every
//! line.

use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The levels, least verbose first.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// What a `log` value may be, for error messages.
pub const FILTER_ALLOWED: &str = "a level (off, error, warn, info, debug, trace) or a \
     comma-separated list of levels and target=level directives, e.g. \
     \"info,hmd::runtime=debug\"";

/// A validated log filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    /// Check `text` against the grammar of the module documentation. `Err` says which
    /// directive is wrong and why.
    pub fn parse(text: &str) -> Result<LogFilter, String> {
        let level_ok = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
        let mut directives = Vec::new();
        for directive in text.split(',') {
            let d = directive.trim();
            directives.push(d);
            if d.is_empty() {
                return Err("an empty directive".to_owned());
            }
            match d.split_once('=') {
                Some((target, level)) => {
                    let target_ok = !target.is_empty()
                        && target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_:-.".contains(c));
                    if !target_ok {
                        return Err(format!("{target:?} is not a target (such as hmd::runtime)"));
                    }
                    if !level_ok(level) {
                        return Err(format!("{level:?} is not a level"));
                    }
                }
                None if level_ok(d) => {}
                None => return Err(format!("{d:?} is not a level")),
            }
        }
        let filter = directives.join(",");
        EnvFilter::try_new(&filter).map_err(|e| e.to_string())?;
        Ok(LogFilter(filter))
    }

    /// The filter, its directives trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogFilter {
    fn default() -> LogFilter {
        LogFilter("info".to_owned())
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `<time> <LEVEL> <target>: <message> key=value…`, colour only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What a `log_format` value may be, for error messages.
pub const FORMAT_ALLOWED: &str = "\"text\" (key=value fields) or \"json\" (one object per line)";

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Install the process's logger: `filter` unless `RUST_LOG` is set and valid, lines in
/// `format` on standard error. A `RUST_LOG` that is set but invalid is ignored, and
/// said so in the first line. Calling it again does nothing.
pub fn init(filter: &LogFilter, format: LogFormat) {
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (effective, ignored) = match from_env.map(|v| (LogFilter::parse(&v), v)) {
        Some((Ok(f), _)) => (f, None),
        Some((Err(why), v)) => (filter.clone(), Some((v, why))),
        None => (filter.clone(), None),
    };
    let env_filter =
        EnvFilter::try_new(effective.as_str()).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            // Colour for a person at a terminal, never in a journal or a file.
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_ok()
        && let Some((value, why)) = ignored
    {
        tracing::warn!(
            rust_log = %value,
            reason = %why,
            log = %filter,
            "ignoring RUST_LOG, using the configured filter"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_pass() {
        for ok in [
            "info",
            "warn",
            "off",
            "TRACE",
            "info,hmd::runtime=debug",
            "warn, dataplane=trace",
            "hvha-daemon=error",
        ] {
            assert!(LogFilter::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(LogFilter::parse(" info ").expect("ok").as_str(), "info");
    }

    #[test]
    fn words_that_tracing_would_take_for_targets_are_refused() {
        assert_eq!(
            LogFilter::parse("warning"),
            Err("\"warning\" is not a level".into())
        );
        for bad in [
            "verbose",
            "info,",
            "",
            "hmd",
            "hmd=loud",
            "=info",
            "a b=info",
            "x[y]=info",
        ] {
            assert!(LogFilter::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("JSON"), None);
        assert_eq!(LogFormat::default().as_str(), "text");
    }
}
