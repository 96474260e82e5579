//! `[discovery]` in hactl's configuration file (docs/operators.md "Discovery"):
//!
//! ```toml
//! [discovery]
//! enabled = true              # default: on when the platform driver can list VMs
//! quick_interval = "1h"       # the seed: a Quick Discovery every hour (seed 004 L4475)
//! deep_interval = "24h"       # the seed: a Deep Discovery once a day (seed 004 L4475)
//! manage_new = false          # new VMs unmanaged until an operator manages them
//! manage_new_groups = ["hg2"] # …except in these host groups
//! ```

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use hvha_daemon::config::{line_of, quoted};
use serde::Deserialize;
use toml::Spanned;

use crate::cli::config::{ConfigError, MAX_NAME};

/// Default `quick_interval`: the seed's hourly Quick Discovery (seed 004 L4475, L3521-3523:
/// "qIntvl = 1 hrs", "Quick Check Schedule Interval=3600").
pub const DEFAULT_QUICK_INTERVAL: Duration = Duration::from_secs(3_600);
/// Default `deep_interval`: the seed's daily Deep Discovery (seed 004 L4475, L4588-4591:
/// "once in every 24 hours").
pub const DEFAULT_DEEP_INTERVAL: Duration = Duration::from_secs(86_400);
/// Allowed intervals: 1 s (tests and demos) to 30 days.
pub const INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);
/// Most groups in `manage_new_groups`.
pub const MAX_MANAGE_NEW_GROUPS: usize = 64;

/// The validated `[discovery]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Scheduled discovery in `hactl run`: `Some` as written, `None` (the default) on
    /// when the platform driver can list a real platform's VMs (libvirt; not the `sim`
    /// platform `hactl run` builds from the HSDB). Requested activities are carried out
    /// either way.
    pub enabled: Option<bool>,
    /// Time between two scheduled quick discoveries of a group.
    pub quick_interval: Duration,
    /// Time between two scheduled deep discoveries of a group.
    pub deep_interval: Duration,
    /// New VMs are managed at once, in every group.
    pub manage_new: bool,
    /// New VMs are managed at once in these groups.
    pub manage_new_groups: Vec<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            enabled: None,
            quick_interval: DEFAULT_QUICK_INTERVAL,
            deep_interval: DEFAULT_DEEP_INTERVAL,
            manage_new: false,
            manage_new_groups: Vec::new(),
        }
    }
}

impl DiscoveryConfig {
    /// Are new VMs found in `group` (every group: `None`) managed at once?
    pub fn manage_new_in(&self, group: Option<&str>) -> bool {
        self.manage_new || group.is_some_and(|g| self.manage_new_groups.iter().any(|m| m == g))
    }

    /// Is the schedule on, for a driver that can (or cannot) list VMs?
    pub fn scheduled(&self, can_discover: bool) -> bool {
        self.enabled.unwrap_or(can_discover)
    }

    /// The section as TOML (for `hactl check-config`).
    pub fn display(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "# discovery from the platform: scheduled quick (inventory) and deep (inventory, \
             every VM's details, verification) discoveries"
        )?;
        writeln!(f, "[discovery]")?;
        match self.enabled {
            Some(e) => writeln!(f, "enabled = {e}")?,
            None => writeln!(
                f,
                "# enabled = true   (default: on when the platform driver can list VMs)"
            )?,
        }
        writeln!(
            f,
            "quick_interval = \"{}\"",
            duration_text(self.quick_interval)
        )?;
        writeln!(
            f,
            "deep_interval = \"{}\"",
            duration_text(self.deep_interval)
        )?;
        writeln!(f, "manage_new = {}", self.manage_new)?;
        let groups: Vec<String> = self.manage_new_groups.iter().map(|g| quoted(g)).collect();
        writeln!(f, "manage_new_groups = [{}]", groups.join(", "))
    }
}

/// `3600 s` → `1h`, `90 s` → `90s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3_600) {
        format!("{}h", s / 3_600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `[discovery]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    enabled: Option<bool>,
    quick_interval: Option<Spanned<toml::Value>>,
    deep_interval: Option<Spanned<toml::Value>>,
    manage_new: Option<bool>,
    manage_new_groups: Option<Spanned<Vec<Spanned<String>>>>,
}

const INTERVAL_ALLOWED: &str =
    "1s..=30d: a number of seconds, or a string with a unit: \"90s\", \"30m\", \"1h\", \"1d\"";

fn bad(
    path: &Path,
    text: &str,
    key: &str,
    span: Range<usize>,
    value: String,
    allowed: &str,
) -> ConfigError {
    ConfigError::Value {
        path: path.to_owned(),
        line: Some(line_of(text, span.start)),
        key: key.to_owned(),
        value,
        allowed: allowed.to_owned(),
    }
}

/// A duration: an integer of seconds, or `N` with `s`, `m`, `h` or `d`.
pub fn parse_interval(value: &toml::Value) -> Option<Duration> {
    let secs = match value {
        toml::Value::Integer(n) => u64::try_from(*n).ok()?,
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit())?;
            let (n, unit) = s.split_at(split);
            let n: u64 = n.parse().ok()?;
            let k = match unit.trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                _ => return None,
            };
            n.checked_mul(k)?
        }
        _ => return None,
    };
    let d = Duration::from_secs(secs);
    INTERVAL_RANGE.contains(&d).then_some(d)
}

fn interval(
    path: &Path,
    text: &str,
    key: &str,
    v: Option<&Spanned<toml::Value>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => parse_interval(v.get_ref()).ok_or_else(|| {
            bad(
                path,
                text,
                key,
                v.span(),
                v.get_ref().to_string(),
                INTERVAL_ALLOWED,
            )
        }),
    }
}

/// Check `[discovery]` of the file `path` whose text is `text`.
pub fn parse(
    file: &DiscoveryFile,
    text: &str,
    path: &Path,
) -> Result<DiscoveryConfig, ConfigError> {
    let quick_interval = interval(
        path,
        text,
        "discovery.quick_interval",
        file.quick_interval.as_ref(),
        DEFAULT_QUICK_INTERVAL,
    )?;
    let deep_interval = interval(
        path,
        text,
        "discovery.deep_interval",
        file.deep_interval.as_ref(),
        DEFAULT_DEEP_INTERVAL,
    )?;
    let mut manage_new_groups: Vec<String> = Vec::new();
    if let Some(list) = &file.manage_new_groups {
        if list.get_ref().len() > MAX_MANAGE_NEW_GROUPS {
            return Err(bad(
                path,
                text,
                "discovery.manage_new_groups",
                list.span(),
                format!("{} names", list.get_ref().len()),
                "at most 64 host group names",
            ));
        }
        for g in list.get_ref() {
            let name = g.get_ref();
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME
                && !name.chars().any(char::is_control)
                && !manage_new_groups.contains(name);
            if !ok {
                return Err(bad(
                    path,
                    text,
                    "discovery.manage_new_groups",
                    g.span(),
                    quoted(name),
                    "host group names of 1-64 bytes without control characters, each once",
                ));
            }
            manage_new_groups.push(name.clone());
        }
    }
    Ok(DiscoveryConfig {
        enabled: file.enabled,
        quick_interval,
        deep_interval,
        manage_new: file.manage_new.unwrap_or(false),
        manage_new_groups,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse_text(section: &str) -> Result<DiscoveryConfig, ConfigError> {
        let text = format!("hsdb = \"/tmp/x.sqlite\"\n[discovery]\n{section}");
        crate::cli::config::Config::parse(&text, Path::new("/etc/hvha/hactl.toml"))
            .map(|c| c.discovery)
    }

    #[test]
    fn test_defaults_are_the_seeds() {
        let d = parse_text("").unwrap();
        assert_eq!(d, DiscoveryConfig::default());
        assert_eq!(d.quick_interval, Duration::from_secs(3_600));
        assert_eq!(d.deep_interval, Duration::from_secs(86_400));
        assert!(d.scheduled(true) && !d.scheduled(false));
        assert!(!d.manage_new_in(Some("hg1")));
    }

    #[test]
    fn test_values_and_refusals() {
        let d = parse_text(
            "enabled = false\nquick_interval = \"2s\"\ndeep_interval = 90\nmanage_new_groups = [\"hg2\"]\n",
        )
        .unwrap();
        assert_eq!(d.quick_interval, Duration::from_secs(2));
        assert_eq!(d.deep_interval, Duration::from_secs(90));
        assert!(!d.scheduled(true));
        assert!(d.manage_new_in(Some("hg2")) && !d.manage_new_in(Some("hg1")));
        assert!(!d.manage_new_in(None));
        for (bad_line, needle) in [
            ("quick_interval = 0", "discovery.quick_interval = 0"),
            ("quick_interval = \"1y\"", "\"1y\""),
            ("deep_interval = -5", "-5"),
            ("deep_interval = \"31d\"", "31d"),
            ("manage_new_groups = [\"\"]", "manage_new_groups"),
            ("manage_new_groups = [\"a\", \"a\"]", "\"a\""),
            ("every = 3", "every"),
        ] {
            let err = parse_text(bad_line).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad_line}: {err}");
            if !bad_line.starts_with("every") {
                assert!(err.contains("line 3"), "{bad_line}: {err}");
            }
        }
        assert_eq!(duration_text(Duration::from_secs(86_400)), "1d");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
    }
}
