//! `hactl` configuration: a TOML file (`/etc/hvha/hactl.toml` by default), every value
//! checked against its range.
//!
//! Errors name the file, the line, the key, the value and what is allowed, the way `hmd`'s
//! do (the helpers are shared in `hvha_daemon::config`). Relative paths (`hsdb`,
//! `admin_socket`) are taken from the configuration file's directory, so `hactl status`
//! run from any directory reaches the daemon's socket.
//!
//! ```toml
//! hsdb = "/var/lib/hvha/hsdb.sqlite"   # or "postgres://hvha@db1:5432/hsdb"
//! hsdb_password_file = "/etc/hvha/hsdb.password"   # PostgreSQL: mode 0600, first line
//! admin_socket = "/run/hvha/hactl.sock"
//! host_groups = ["hg1"]          # default: every host group in the HSDB
//! profile = "standard"           # or "fast" (below the seed's ranges: tests and demos)
//! log = "info"
//!
//! controller_id = "ctl-a"        # default: host name, process id and start time
//!
//! [lease]                        # several controllers on one PostgreSQL HSDB
//! ttl_ms = 10000
//! renew_every_ms = 2000
//! margin_ms = 1000
//!
//! [platform]
//! driver = "libvirt"             # or "sim"
//! timeout_ms = 10000
//! ping_timeout_ms = 2000
//! [platform.hosts]               # host name (as in the HSDB) = libvirt URI
//! host-a = "qemu+ssh://root@host-a/system"
//! [platform.ping]                # VM UUID = address its ping probe uses
//! "61be20f0-09a8-4753-b5e5-564f8a545ed5" = "10.0.0.5"
//!
//! [dashboard]                    # the web dashboard (crate::dash::config): opt-in
//! listen = "127.0.0.1:8080"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hsdb::{Synchronous, Target, TargetError, Uuid};

use crate::lease::LeaseSettings;
use crate::notify::config::{
    self as notify_config, NotifierConfig, NotifierFile, Retention, RetentionFile,
};
use hvha_daemon::config::{Refused, line_of, log_format_value, log_value, quoted, resolve};
use hvha_daemon::log::{LogFilter, LogFormat};
use serde::Deserialize;
use toml::Spanned;

/// Default configuration file.
pub const HACTL_CONFIG: &str = "/etc/hvha/hactl.toml";
/// Default admin socket of `hactl run`.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/hvha/hactl.sock";
/// Longest admin socket path (`sun_path` holds 108 bytes with its NUL), as in `hmd`.
const MAX_SOCKET_PATH: usize = 100;
/// Longest host group or host name, in bytes (the seed's host group names, seed 004 L13952).
pub const MAX_NAME: usize = 64;
/// Most host groups one `hactl run` serves (the seed's KSYS serves 4, seed 004
/// L1925-1926; we allow more, each is one engine in one loop).
pub const MAX_HOST_GROUPS: usize = 64;
/// Default `platform.timeout_ms`: every platform call is bounded by it.
pub const DEFAULT_PLATFORM_TIMEOUT_MS: u64 = 10_000;
/// Default `platform.ping_timeout_ms` (the seed's failed ping took ~6 s, seed 004
/// L13484-13492; we wait 2 s per probe).
pub const DEFAULT_PING_TIMEOUT_MS: u64 = 2_000;
/// Longest libvirt URI accepted.
const MAX_URI: usize = 1024;
/// Longest ping address (a DNS name is at most 253 bytes).
const MAX_ADDRESS: usize = 253;
/// Most hosts or ping addresses in the file.
const MAX_ENTRIES: usize = 100_000;
/// Longest `controller_id`.
pub const MAX_CONTROLLER_ID: usize = 128;

/// The parameter profile (`controlplane::params` holds the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The seed's values and ranges (scan every 20 s, host FDT 90 s, …).
    #[default]
    Default,
    /// Seconds instead of minutes, below the seed's ranges: for tests, demos and
    /// operators who accept the risk of acting on a short outage.
    Fast,
}

impl Profile {
    /// The configuration value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "standard",
            Profile::Fast => "fast",
        }
    }
}

/// Which platform driver `hactl run` drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformConfig {
    /// The deterministic in-memory platform, built from the HSDB's hosts and VMs at start
    /// (demos and tests: its actions change nothing real).
    Sim {
        /// Seed of its random choices.
        seed: u64,
    },
    /// libvirt through `virsh`: one long-lived connection per host.
    Libvirt(LibvirtConfig),
}

impl PlatformConfig {
    /// The driver's name.
    pub fn driver(&self) -> &'static str {
        match self {
            PlatformConfig::Sim { .. } => "sim",
            PlatformConfig::Libvirt(_) => "libvirt",
        }
    }
}

/// The libvirt driver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// The `virsh` program.
    pub virsh: PathBuf,
    /// Host name (the HSDB's `host.name`) → libvirt URI, by name.
    pub hosts: BTreeMap<String, String>,
    /// VM → the address its ping probe uses.
    pub ping: BTreeMap<Uuid, String>,
    /// Every call's timeout.
    pub timeout: Duration,
    /// One ping probe's timeout.
    pub ping_timeout: Duration,
}

/// The `hsdb` setting: an SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsdbLocation {
    /// An SQLite file (absolute): one machine, one controller.
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a `postgres://` URL without a password (checked by
    /// [`Target::parse`]): the HSDB shared by a host group, several controllers.
    Postgres(String),
}

impl HsdbLocation {
    /// Parse the setting's text; a relative path is taken from `base`'s directory (the
    /// configuration file; `None`: the current directory).
    pub fn parse(text: &str, base: Option<&Path>) -> Result<HsdbLocation, TargetError> {
        match Target::parse(text)? {
            Target::Sqlite(path) => Ok(HsdbLocation::Sqlite(match base {
                Some(file) => resolve(file, &path),
                None => std::path::absolute(&path).unwrap_or(path),
            })),
            Target::Postgres(_) => Ok(HsdbLocation::Postgres(text.trim().to_owned())),
        }
    }

    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            HsdbLocation::Sqlite(p) => Some(p),
            HsdbLocation::Postgres(_) => None,
        }
    }

    /// Where to connect, with the PostgreSQL password from `password_file`, else from
    /// the environment (`HVHA_HSDB_PASSWORD`), else none.
    pub fn target(&self, password_file: Option<&Path>) -> Result<Target, TargetError> {
        let target = match self {
            HsdbLocation::Sqlite(p) => Target::Sqlite(p.clone()),
            HsdbLocation::Postgres(url) => Target::parse(url)?,
        };
        target.with_password(password_file)
    }
}

impl fmt::Display for HsdbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsdbLocation::Sqlite(p) => write!(f, "{}", p.display()),
            // Parsed without a password, so there is none to hide; shown as written.
            HsdbLocation::Postgres(url) => f.write_str(url),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (absolute), or `None` for the defaults used without a file.
    pub file: Option<PathBuf>,
    /// The HSDB: an SQLite file (absolute) or a PostgreSQL URL.
    pub hsdb: HsdbLocation,
    /// The file holding the PostgreSQL password (absolute), if any.
    pub hsdb_password_file: Option<PathBuf>,
    /// SQLite durability of the daemon's writes.
    pub synchronous: Synchronous,
    /// The admin socket of `hactl run` (absolute).
    pub admin_socket: PathBuf,
    /// Host groups served; empty: every host group the HSDB has.
    pub host_groups: Vec<String>,
    /// Parameter profile.
    pub profile: Profile,
    /// The platform driver.
    pub platform: PlatformConfig,
    /// Log filter (a valid `RUST_LOG` wins).
    pub log: LogFilter,
    /// Log line format.
    pub log_format: LogFormat,
    /// This controller's id in the leader lease; `None`: host name, process id and
    /// start time.
    pub controller_id: Option<String>,
    /// The leader lease's timings (used with a PostgreSQL HSDB).
    pub lease: LeaseSettings,
    /// The `[[notifier]]` entries (docs/operators.md, Notifications).
    pub notifiers: Vec<NotifierConfig>,
    /// `[event_retention]`: how long the outbox keeps events.
    pub event_retention: Retention,
    /// `[dashboard]`: the web dashboard, when `listen` is set (docs/operators.md,
    /// Dashboard).
    pub dashboard: Option<crate::dash::config::DashboardConfig>,
    /// `[discovery]`: the schedule and the managed rule of discovery.
    pub discovery: crate::discover::config::DiscoveryConfig,
}

/// A configuration problem, naming the file, the key, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration (the message has the line).
    #[error("config file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// A value is out of range.
    #[error("config file {}{}: {key} = {value} is invalid: expected {allowed}",
        path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Value {
        /// The file.
        path: PathBuf,
        /// The value's line, when the file has it.
        line: Option<usize>,
        /// The key, e.g. `platform.hosts.host-a`.
        key: String,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

/// The file as written. Integers are read as `i64` so that a negative value gets our
/// range message; every value keeps its place for the error message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    hsdb: Spanned<String>,
    hsdb_password_file: Option<Spanned<PathBuf>>,
    synchronous: Option<Spanned<String>>,
    admin_socket: Option<Spanned<PathBuf>>,
    host_groups: Option<Spanned<Vec<Spanned<String>>>>,
    profile: Option<Spanned<String>>,
    log: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    controller_id: Option<Spanned<String>>,
    lease: Option<Spanned<LeaseFile>>,
    platform: Option<Spanned<PlatformFile>>,
    notifier: Option<Vec<NotifierFile>>,
    event_retention: Option<RetentionFile>,
    dashboard: Option<Spanned<crate::dash::config::DashboardFile>>,
    discovery: Option<crate::discover::config::DiscoveryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFile {
    ttl_ms: Option<Spanned<i64>>,
    renew_every_ms: Option<Spanned<i64>>,
    margin_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    driver: Spanned<String>,
    seed: Option<Spanned<i64>>,
    virsh: Option<Spanned<PathBuf>>,
    timeout_ms: Option<Spanned<i64>>,
    ping_timeout_ms: Option<Spanned<i64>>,
    hosts: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    ping: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// The file being parsed: its text (for line numbers) and path.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn bad(
        &self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Value {
            path: self.path.to_owned(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    fn refused<'s, T>(
        &'s self,
        key: &'static str,
        value: &Spanned<T>,
    ) -> impl FnOnce(Refused) -> ConfigError + 's {
        let span = value.span();
        move |r| self.bad(key, Some(span), r.value, r.allowed)
    }

    fn ms(
        &self,
        key: &'static str,
        value: Option<&Spanned<i64>>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let Some(v) = value else {
            return Ok(default);
        };
        u64::try_from(*v.get_ref())
            .ok()
            .filter(|ms| range.contains(ms))
            .ok_or_else(|| {
                self.bad(
                    key,
                    Some(v.span()),
                    v.get_ref(),
                    format!("{}..={} (ms)", range.start(), range.end()),
                )
            })
    }
}

fn quoted_path(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

/// A host group or host name: 1..=64 bytes, printable, no spaces, not starting with `-`
/// (it is passed to commands and shown in tables).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '=' && c != ',');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a name of 1..={MAX_NAME} bytes without spaces, '=', ',' or control characters, \
             not starting with '-'"
        ))
    }
}

/// A ping address: an IP address, or a host name of letters, digits, '.', '-' and '_'
/// that does not start with '-' (the address is an argument of `ping`; an option is
/// refused).
fn check_address(address: &str) -> bool {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !address.is_empty()
        && address.len() <= MAX_ADDRESS
        && !address.starts_with(['-', '.'])
        && address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

/// A libvirt URI: `scheme:…`, printable, no spaces, not starting with '-'.
fn check_uri(uri: &str) -> bool {
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    scheme_ok
        && uri.len() <= MAX_URI
        && !uri.starts_with('-')
        && uri.chars().all(|c| c.is_ascii_graphic())
}

impl Config {
    /// The configuration used without a file: the HSDB at `hsdb`, everything else
    /// defaulted (read-side commands need nothing else).
    pub fn without_file(hsdb: HsdbLocation) -> Config {
        Config {
            file: None,
            hsdb,
            hsdb_password_file: None,
            synchronous: Synchronous::Full,
            admin_socket: PathBuf::from(DEFAULT_ADMIN_SOCKET),
            host_groups: Vec::new(),
            profile: Profile::Default,
            platform: PlatformConfig::Sim { seed: 1 },
            log: LogFilter::default(),
            log_format: LogFormat::default(),
            controller_id: None,
            lease: LeaseSettings::default(),
            notifiers: Vec::new(),
            event_retention: Retention::default(),
            dashboard: None,
            discovery: crate::discover::config::DiscoveryConfig::default(),
        }
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate the text of the configuration file `path` (named in errors;
    /// relative paths in it are taken from its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source { text, path };
        let f: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let hsdb = HsdbLocation::parse(f.hsdb.get_ref(), Some(path)).map_err(|e| {
            // A URL may hold a password: the reason shows it with the password hidden.
            let text = f.hsdb.get_ref();
            let shown = match text.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://…"),
                None => quoted(text),
            };
            src.bad(
                "hsdb",
                Some(f.hsdb.span()),
                shown,
                format!(
                    "the path of an SQLite file or a postgres://USER@HOST:PORT/DBNAME URL \
                     ({e})"
                ),
            )
        })?;
        let hsdb_password_file = match &f.hsdb_password_file {
            None => None,
            Some(p) if p.get_ref().as_os_str().is_empty() || hsdb.sqlite_path().is_some() => {
                return Err(src.bad(
                    "hsdb_password_file",
                    Some(p.span()),
                    quoted_path(p.get_ref()),
                    "a file (mode 0600) with the password of a postgres:// hsdb; an SQLite \
                     hsdb has none",
                ));
            }
            Some(p) => Some(resolve(path, p.get_ref())),
        };
        let hsdb_file = hsdb.sqlite_path().map(Path::to_owned);
        let synchronous = match &f.synchronous {
            None => Synchronous::Full,
            Some(s) => match s.get_ref().as_str() {
                "full" => Synchronous::Full,
                "normal" => Synchronous::Normal,
                other => {
                    return Err(src.bad(
                        "synchronous",
                        Some(s.span()),
                        quoted(other),
                        "\"full\" (no committed decision lost on power failure) or \"normal\"",
                    ));
                }
            },
        };
        let admin_socket = match &f.admin_socket {
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
            Some(s) => {
                let resolved = resolve(path, s.get_ref());
                let len = resolved.as_os_str().len();
                if s.get_ref().as_os_str().is_empty() || len > MAX_SOCKET_PATH {
                    return Err(src.bad(
                        "admin_socket",
                        Some(s.span()),
                        quoted_path(&resolved),
                        format!("a path of 1..={MAX_SOCKET_PATH} bytes, once made absolute"),
                    ));
                }
                if Some(&resolved) == hsdb_file.as_ref() {
                    return Err(src.bad(
                        "admin_socket",
                        Some(s.span()),
                        quoted_path(&resolved),
                        "another path than hsdb (the socket would replace the database)",
                    ));
                }
                resolved
            }
        };
        let config_file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if hsdb_file.as_ref() == Some(&config_file) {
            return Err(src.bad(
                "hsdb",
                Some(f.hsdb.span()),
                quoted(f.hsdb.get_ref()),
                "another path than the configuration file's",
            ));
        }
        let mut host_groups = Vec::new();
        if let Some(groups) = &f.host_groups {
            if groups.get_ref().len() > MAX_HOST_GROUPS {
                return Err(src.bad(
                    "host_groups",
                    Some(groups.span()),
                    format!("{} names", groups.get_ref().len()),
                    format!(
                        "0..={MAX_HOST_GROUPS} host group names (none: every group in the HSDB)"
                    ),
                ));
            }
            for (i, g) in groups.get_ref().iter().enumerate() {
                let key = format!("host_groups[{i}]");
                let name = g.get_ref();
                check_name(name).map_err(|allowed| {
                    src.bad(key.clone(), Some(g.span()), quoted(name), allowed)
                })?;
                if host_groups.contains(name) {
                    return Err(src.bad(
                        key,
                        Some(g.span()),
                        quoted(name),
                        "each host group once (it is listed twice)",
                    ));
                }
                host_groups.push(name.clone());
            }
        }
        let profile = match &f.profile {
            None => Profile::Default,
            Some(p) => match p.get_ref().as_str() {
                "standard" | "default" => Profile::Default,
                "fast" => Profile::Fast,
                other => {
                    return Err(src.bad(
                        "profile",
                        Some(p.span()),
                        quoted(other),
                        "\"standard\" (the seed's values; also \"default\") or \"fast\" \
                         (seconds, below the seed's ranges: tests and demos)",
                    ));
                }
            },
        };
        let log = match &f.log {
            None => LogFilter::default(),
            Some(l) => log_value(l.get_ref()).map_err(src.refused("log", l))?,
        };
        let log_format = match &f.log_format {
            None => LogFormat::default(),
            Some(l) => log_format_value(l.get_ref()).map_err(src.refused("log_format", l))?,
        };
        let platform = match &f.platform {
            None => PlatformConfig::Sim { seed: 1 },
            Some(p) => platform(&src, p)?,
        };
        let controller_id = match &f.controller_id {
            None => None,
            Some(c) => {
                let id = c.get_ref();
                let ok = !id.is_empty()
                    && id.len() <= MAX_CONTROLLER_ID
                    && id.chars().all(|ch| ch.is_ascii_graphic());
                if !ok {
                    return Err(src.bad(
                        "controller_id",
                        Some(c.span()),
                        quoted(id),
                        format!(
                            "1..={MAX_CONTROLLER_ID} printable ASCII characters without \
                             spaces, unique among the controllers of the HSDB"
                        ),
                    ));
                }
                Some(id.clone())
            }
        };
        let lease = match &f.lease {
            None => LeaseSettings::default(),
            Some(l) => lease(&src, l)?,
        };
        let from_bad = |b: notify_config::Bad| src.bad(b.key, b.span, b.value, b.allowed);
        let notifiers = match &f.notifier {
            None => Vec::new(),
            Some(list) => notify_config::notifiers(list, path).map_err(from_bad)?,
        };
        let event_retention = match &f.event_retention {
            None => Retention::default(),
            Some(r) => notify_config::retention(r).map_err(from_bad)?,
        };
        let dashboard = match &f.dashboard {
            None => None,
            Some(d) => crate::dash::config::dashboard(d, path).map_err(from_bad)?,
        };
        let discovery = match &f.discovery {
            None => crate::discover::config::DiscoveryConfig::default(),
            Some(d) => crate::discover::config::parse(d, text, path)?,
        };
        Ok(Config {
            file: Some(config_file),
            hsdb,
            hsdb_password_file,
            synchronous,
            admin_socket,
            host_groups,
            profile,
            platform,
            log,
            log_format,
            controller_id,
            lease,
            notifiers,
            event_retention,
            dashboard,
            discovery,
        })
    }

    /// The admin socket named by the configuration file `path`, read even when another
    /// key is invalid (so that `hactl status` works during an incident): the whole file
    /// when it is TOML, else the first line that sets `admin_socket`; the default socket
    /// when the file does not set it.
    pub fn admin_socket_of(path: &Path) -> Result<PathBuf, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let from_table = |table: &toml::Table| {
            table
                .get("admin_socket")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let found = match text.parse::<toml::Table>() {
            Ok(table) => from_table(&table),
            Err(_) => text
                .lines()
                .filter(|l| l.trim_start().starts_with("admin_socket"))
                .find_map(|l| l.parse::<toml::Table>().ok().as_ref().and_then(from_table)),
        };
        Ok(match found {
            Some(p) if !p.is_empty() => resolve(path, Path::new(&p)),
            _ => PathBuf::from(DEFAULT_ADMIN_SOCKET),
        })
    }
}

fn lease(src: &Source<'_>, l: &Spanned<LeaseFile>) -> Result<LeaseSettings, ConfigError> {
    let file = l.get_ref();
    let d = LeaseSettings::default();
    let settings = LeaseSettings {
        ttl_ms: src.ms(
            "lease.ttl_ms",
            file.ttl_ms.as_ref(),
            d.ttl_ms,
            LeaseSettings::TTL_RANGE,
        )?,
        renew_every_ms: src.ms(
            "lease.renew_every_ms",
            file.renew_every_ms.as_ref(),
            d.renew_every_ms,
            LeaseSettings::RENEW_RANGE,
        )?,
        margin_ms: src.ms(
            "lease.margin_ms",
            file.margin_ms.as_ref(),
            d.margin_ms,
            LeaseSettings::MARGIN_RANGE,
        )?,
    };
    // How the three relate: the error names the key and the range the others allow.
    settings.check().map_err(|e| {
        let span = match e.key {
            "lease.ttl_ms" => file.ttl_ms.as_ref(),
            "lease.renew_every_ms" => file.renew_every_ms.as_ref(),
            _ => file.margin_ms.as_ref(),
        }
        .map(Spanned::span)
        .or(Some(l.span()));
        src.bad(e.key, span, e.value, e.allowed)
    })?;
    Ok(settings)
}

fn platform(src: &Source<'_>, p: &Spanned<PlatformFile>) -> Result<PlatformConfig, ConfigError> {
    let file = p.get_ref();
    let driver = file.driver.get_ref().as_str();
    // Keys of the other driver are refused rather than ignored: a `hosts` table under
    // `driver = "sim"` is a configuration the operator did not mean.
    let stray = |key: &'static str, span: Option<Range<usize>>, allowed: &str| {
        src.bad(
            format!("platform.{key}"),
            span,
            "(set)",
            format!("{allowed} (not a key of driver = {})", quoted(driver)),
        )
    };
    match driver {
        "sim" => {
            if let Some(h) = &file.hosts {
                return Err(stray("hosts", Some(h.span()), "nothing"));
            }
            if let Some(h) = &file.ping {
                return Err(stray("ping", Some(h.span()), "nothing"));
            }
            if let Some(v) = &file.virsh {
                return Err(stray("virsh", Some(v.span()), "nothing"));
            }
            let seed = match &file.seed {
                None => 1,
                Some(s) => u64::try_from(*s.get_ref()).map_err(|_| {
                    src.bad(
                        "platform.seed",
                        Some(s.span()),
                        s.get_ref(),
                        "0..=9223372036854775807",
                    )
                })?,
            };
            Ok(PlatformConfig::Sim { seed })
        }
        "libvirt" => {
            if let Some(s) = &file.seed {
                return Err(stray("seed", Some(s.span()), "nothing"));
            }
            let timeout_ms = src.ms(
                "platform.timeout_ms",
                file.timeout_ms.as_ref(),
                DEFAULT_PLATFORM_TIMEOUT_MS,
                100..=600_000,
            )?;
            let ping_timeout_ms = src.ms(
                "platform.ping_timeout_ms",
                file.ping_timeout_ms.as_ref(),
                DEFAULT_PING_TIMEOUT_MS,
                100..=60_000,
            )?;
            let virsh = match &file.virsh {
                None => PathBuf::from("virsh"),
                Some(v) if v.get_ref().as_os_str().is_empty() => {
                    return Err(src.bad(
                        "platform.virsh",
                        Some(v.span()),
                        "\"\"",
                        "the virsh program (a name on PATH or a path)",
                    ));
                }
                Some(v) => v.get_ref().clone(),
            };
            let Some(hosts_table) = &file.hosts else {
                return Err(src.bad(
                    "platform.hosts",
                    Some(p.span()),
                    "(missing)",
                    "a table [platform.hosts] of host name = \"libvirt URI\", one per host",
                ));
            };
            if hosts_table.get_ref().is_empty() || hosts_table.get_ref().len() > MAX_ENTRIES {
                return Err(src.bad(
                    "platform.hosts",
                    Some(hosts_table.span()),
                    format!("{} hosts", hosts_table.get_ref().len()),
                    format!("1..={MAX_ENTRIES} hosts"),
                ));
            }
            let mut hosts = BTreeMap::new();
            for (name, uri) in hosts_table.get_ref() {
                let key = format!("platform.hosts.{name}");
                check_name(name).map_err(|allowed| {
                    src.bad(key.clone(), Some(uri.span()), quoted(name), allowed)
                })?;
                if !check_uri(uri.get_ref()) {
                    return Err(src.bad(
                        key,
                        Some(uri.span()),
                        quoted(uri.get_ref()),
                        format!(
                            "a libvirt URI of at most {MAX_URI} printable bytes without \
                             spaces, such as \"qemu+ssh://root@host-a/system\" or \
                             \"test:///etc/hvha/host-a.xml\""
                        ),
                    ));
                }
                hosts.insert(name.clone(), uri.get_ref().clone());
            }
            let mut ping = BTreeMap::new();
            if let Some(table) = &file.ping {
                if table.get_ref().len() > MAX_ENTRIES {
                    return Err(src.bad(
                        "platform.ping",
                        Some(table.span()),
                        format!("{} addresses", table.get_ref().len()),
                        format!("0..={MAX_ENTRIES} addresses"),
                    ));
                }
                for (vm, address) in table.get_ref() {
                    let key = format!("platform.ping.{vm}");
                    let uuid = Uuid::parse(vm.as_bytes()).map_err(|_| {
                        src.bad(
                            key.clone(),
                            Some(address.span()),
                            quoted(vm),
                            "a VM UUID as key, like \"61be20f0-09a8-4753-b5e5-564f8a545ed5\"",
                        )
                    })?;
                    if !check_address(address.get_ref()) {
                        return Err(src.bad(
                            key,
                            Some(address.span()),
                            quoted(address.get_ref()),
                            "an IP address or a host name (letters, digits, '.', '-', '_'; \
                             not starting with '-')",
                        ));
                    }
                    if ping.insert(uuid, address.get_ref().clone()).is_some() {
                        return Err(src.bad(
                            key,
                            Some(address.span()),
                            quoted(vm),
                            "each VM once (its UUID is listed twice, in another letter case)",
                        ));
                    }
                }
            }
            Ok(PlatformConfig::Libvirt(LibvirtConfig {
                virsh,
                hosts,
                ping,
                timeout: Duration::from_millis(timeout_ms),
                ping_timeout: Duration::from_millis(ping_timeout_ms),
            }))
        }
        other => Err(src.bad(
            "platform.driver",
            Some(file.driver.span()),
            quoted(other),
            "\"sim\" (in-memory, for demos and tests) or \"libvirt\" (virsh)",
        )),
    }
}

/// The effective configuration as TOML, defaults included: what `hactl check-config`
/// prints. Feeding it back to [`Config::parse`] gives the same configuration.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# the HSDB: an SQLite file (relative paths are taken from the config file's \
             directory) or a postgres:// URL without password"
        )?;
        writeln!(f, "hsdb = {}", quoted(&self.hsdb.to_string()))?;
        match &self.hsdb_password_file {
            Some(p) => writeln!(f, "hsdb_password_file = {}", quoted_path(p))?,
            None => writeln!(
                f,
                "# hsdb_password_file = \"…\"   (PostgreSQL; else HVHA_HSDB_PASSWORD)"
            )?,
        }
        writeln!(f, "# SQLite durability: \"full\" (default) or \"normal\"")?;
        let sync = match self.synchronous {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        };
        writeln!(f, "synchronous = \"{sync}\"")?;
        writeln!(
            f,
            "# UNIX socket of `hactl run` for `hactl status`, mode 0600"
        )?;
        writeln!(f, "admin_socket = {}", quoted_path(&self.admin_socket))?;
        writeln!(
            f,
            "# host groups served (empty: every host group in the HSDB)"
        )?;
        let groups: Vec<String> = self.host_groups.iter().map(|g| quoted(g)).collect();
        writeln!(f, "host_groups = [{}]", groups.join(", "))?;
        writeln!(
            f,
            "# parameter profile: \"standard\" (the seed's) or \"fast\" (below the seed's ranges)"
        )?;
        writeln!(f, "profile = \"{}\"", self.profile.as_str())?;
        writeln!(f, "# log filter (a valid RUST_LOG wins; default \"info\")")?;
        writeln!(f, "log = {}", quoted(self.log.as_str()))?;
        writeln!(f, "log_format = \"{}\"", self.log_format.as_str())?;
        writeln!(
            f,
            "# this controller's id in the leader lease (default: host name, pid, start time)"
        )?;
        match &self.controller_id {
            Some(id) => writeln!(f, "controller_id = {}", quoted(id))?,
            None => writeln!(f, "# controller_id = \"…\"")?,
        }
        writeln!(f)?;
        writeln!(
            f,
            "# the leader lease, with a PostgreSQL HSDB (a dead leader is replaced within \
             ttl + renew_every + one scan)"
        )?;
        writeln!(f, "[lease]")?;
        writeln!(f, "ttl_ms = {}", self.lease.ttl_ms)?;
        writeln!(f, "renew_every_ms = {}", self.lease.renew_every_ms)?;
        writeln!(f, "margin_ms = {}", self.lease.margin_ms)?;
        writeln!(f)?;
        writeln!(f, "[platform]")?;
        writeln!(f, "driver = \"{}\"", self.platform.driver())?;
        match &self.platform {
            PlatformConfig::Sim { seed } => writeln!(f, "seed = {seed}")?,
            PlatformConfig::Libvirt(l) => {
                writeln!(f, "virsh = {}", quoted_path(&l.virsh))?;
                writeln!(f, "timeout_ms = {}", l.timeout.as_millis())?;
                writeln!(f, "ping_timeout_ms = {}", l.ping_timeout.as_millis())?;
                writeln!(f, "[platform.hosts]")?;
                for (name, uri) in &l.hosts {
                    writeln!(f, "{} = {}", quoted(name), quoted(uri))?;
                }
                writeln!(f, "[platform.ping]")?;
                for (vm, address) in &l.ping {
                    writeln!(f, "\"{vm}\" = {}", quoted(address))?;
                }
            }
        }
        notify_config::display(f, &self.notifiers, &self.event_retention)?;
        crate::dash::config::display(f, self.dashboard.as_ref())?;
        self.discovery.display(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FILE: &str = "/etc/hvha/hactl.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    fn value_error(text: &str) -> (Option<usize>, String, String, String) {
        match parse(text) {
            Err(ConfigError::Value {
                line,
                key,
                value,
                allowed,
                ..
            }) => (line, key, value, allowed),
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_file_takes_the_defaults() {
        let c = parse("hsdb = \"hsdb.sqlite\"\n").unwrap();
        assert_eq!(
            c.hsdb,
            HsdbLocation::Sqlite(PathBuf::from("/etc/hvha/hsdb.sqlite"))
        );
        assert_eq!(c.admin_socket, Path::new(DEFAULT_ADMIN_SOCKET));
        assert_eq!(c.profile, Profile::Default);
        assert_eq!(c.platform, PlatformConfig::Sim { seed: 1 });
        assert!(c.host_groups.is_empty());
        assert_eq!(c.synchronous, Synchronous::Full);
    }

    #[test]
    fn hsdb_is_a_path_or_a_postgres_url_with_the_password_elsewhere() {
        let c = parse(
            "hsdb = \"postgres://hvha@db1:5432/hsdb\"\nhsdb_password_file = \"hsdb.password\"\n",
        )
        .unwrap();
        assert_eq!(
            c.hsdb,
            HsdbLocation::Postgres("postgres://hvha@db1:5432/hsdb".into())
        );
        assert_eq!(
            c.hsdb_password_file.as_deref(),
            Some(Path::new("/etc/hvha/hsdb.password"))
        );
        let again = parse(&c.to_string()).unwrap();
        assert_eq!(again, c);
        // A password in the URL is refused, and never shown back.
        let (line, key, value, allowed) =
            value_error("\nhsdb = \"postgres://hvha:s3cret@db1/hsdb\"\n");
        assert_eq!((line, key.as_str()), (Some(2), "hsdb"));
        assert!(allowed.contains("hsdb_password_file"), "{allowed}");
        assert!(
            !value.contains("s3cret") && !allowed.contains("s3cret"),
            "{value} {allowed}"
        );
        let (_, key, _, allowed) = value_error("hsdb = \"mysql://db1/hsdb\"\n");
        assert_eq!(key, "hsdb");
        assert!(allowed.contains("unsupported scheme"), "{allowed}");
        let (_, key, _, _) = value_error("hsdb = \"\"\n");
        assert_eq!(key, "hsdb");
        // A password file for an SQLite file means a mistake.
        let (_, key, _, allowed) =
            value_error("hsdb = \"hsdb.sqlite\"\nhsdb_password_file = \"p\"\n");
        assert_eq!(key, "hsdb_password_file");
        assert!(allowed.contains("SQLite hsdb has none"), "{allowed}");
    }

    #[test]
    fn lease_settings_and_controller_id_are_read_and_checked() {
        let c = parse("hsdb = \"x\"\ncontroller_id = \"ctl-a\"\n[lease]\nttl_ms = 30000\nrenew_every_ms = 5000\n")
            .unwrap();
        assert_eq!(c.controller_id.as_deref(), Some("ctl-a"));
        assert_eq!(
            c.lease,
            LeaseSettings {
                ttl_ms: 30_000,
                renew_every_ms: 5_000,
                margin_ms: 1_000
            }
        );
        // The effective configuration reads back the same.
        let again = parse(&c.to_string()).unwrap();
        assert_eq!(again.lease, c.lease);
        assert_eq!(again.controller_id, c.controller_id);
        let (line, key, value, allowed) =
            value_error("hsdb = \"x\"\n[lease]\nttl_ms = 6000\nrenew_every_ms = 3000\n");
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (Some(4), "lease.renew_every_ms", "3000")
        );
        assert!(allowed.contains("100..=2000"), "{allowed}");
        let (_, key, _, allowed) = value_error("hsdb = \"x\"\n[lease]\nttl_ms = 500\n");
        assert_eq!(key, "lease.ttl_ms");
        assert!(allowed.contains("2000..=300000"), "{allowed}");
        let (_, key, value, _) = value_error("hsdb = \"x\"\ncontroller_id = \"a b\"\n");
        assert_eq!((key.as_str(), value.as_str()), ("controller_id", "\"a b\""));
        assert!(matches!(
            parse("hsdb = \"x\"\n[lease]\nttl = 5\n"),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn libvirt_hosts_and_ping_addresses_are_read() {
        let c = parse(
            r#"
hsdb = "/var/lib/hvha/hsdb.sqlite"
admin_socket = "run/hactl.sock"
host_groups = ["hg1", "hg2"]
profile = "fast"

[platform]
driver = "libvirt"
timeout_ms = 3000
[platform.hosts]
host-a = "test:///etc/hvha/host-a.xml"
host-b = "qemu+ssh://root@host-b/system"
[platform.ping]
"61BE20F0-09a8-4753-b5e5-564f8a545ed5" = "10.0.0.5"
"#,
        )
        .unwrap();
        assert_eq!(c.admin_socket, Path::new("/etc/hvha/run/hactl.sock"));
        assert_eq!(c.host_groups, ["hg1", "hg2"]);
        assert_eq!(c.profile, Profile::Fast);
        let PlatformConfig::Libvirt(l) = &c.platform else {
            panic!("libvirt expected");
        };
        assert_eq!(l.timeout, Duration::from_secs(3));
        assert_eq!(
            l.ping_timeout,
            Duration::from_millis(DEFAULT_PING_TIMEOUT_MS)
        );
        assert_eq!(l.hosts["host-b"], "qemu+ssh://root@host-b/system");
        let vm = Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").unwrap();
        assert_eq!(l.ping[&vm], "10.0.0.5");
        // The printed configuration reads back the same.
        let again = Config::parse(&c.to_string(), Path::new(FILE)).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_key_the_value_the_range_and_the_line() {
        let (line, key, value, allowed) = value_error("hsdb = \"x\"\n\nprofile = \"quick\"\n");
        assert_eq!(line, Some(3));
        assert_eq!(key, "profile");
        assert_eq!(value, "\"quick\"");
        assert!(allowed.contains("\"fast\""), "{allowed}");

        let (line, key, value, allowed) = value_error(
            "hsdb = \"x\"\n[platform]\ndriver = \"libvirt\"\ntimeout_ms = -5\n[platform.hosts]\na = \"test:///x\"\n",
        );
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (Some(4), "platform.timeout_ms", "-5")
        );
        assert_eq!(allowed, "100..=600000 (ms)");

        let (line, key, value, _) = value_error(
            "hsdb = \"x\"\n[platform]\ndriver = \"libvirt\"\n[platform.hosts]\na = \"test:///x\"\n[platform.ping]\n\"61be20f0-09a8-4753-b5e5-564f8a545ed5\" = \"-f\"\n",
        );
        assert_eq!(line, Some(7), "a ping option is refused as an address");
        assert_eq!(key, "platform.ping.61be20f0-09a8-4753-b5e5-564f8a545ed5");
        assert_eq!(value, "\"-f\"");

        let (_, key, value, _) = value_error(
            "hsdb = \"x\"\n[platform]\ndriver = \"libvirt\"\n[platform.hosts]\na = \"no uri\"\n",
        );
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("platform.hosts.a", "\"no uri\"")
        );

        let (_, key, _, allowed) = value_error("hsdb = \"x\"\n[platform]\ndriver = \"libvirt\"\n");
        assert_eq!(key, "platform.hosts");
        assert!(allowed.contains("[platform.hosts]"), "{allowed}");

        let (_, key, _, allowed) = value_error(
            "hsdb = \"x\"\n[platform]\ndriver = \"sim\"\n[platform.hosts]\na = \"test:///x\"\n",
        );
        assert_eq!(key, "platform.hosts");
        assert!(allowed.contains("driver = \"sim\""), "{allowed}");

        let (line, key, value, _) = value_error("hsdb = \"x\"\nhost_groups = [\"a\", \"a\"]\n");
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (Some(2), "host_groups[1]", "\"a\"")
        );

        let (_, key, _, _) = value_error("hsdb = \"x\"\nhost_groups = [\"has space\"]\n");
        assert_eq!(key, "host_groups[0]");

        let (_, key, value, _) = value_error("hsdb = \"x\"\nlog = \"warning\"\n");
        assert_eq!((key.as_str(), value.as_str()), ("log", "\"warning\""));

        let (_, key, _, allowed) = value_error("hsdb = \"x\"\n[platform]\ndriver = \"hmc\"\n");
        assert_eq!(key, "platform.driver");
        assert!(allowed.contains("libvirt"), "{allowed}");

        let (_, key, _, _) = value_error("hsdb = \"s\"\nadmin_socket = \"s\"\n");
        assert_eq!(key, "admin_socket");
        let long = format!("hsdb = \"x\"\nadmin_socket = \"/{}\"\n", "a".repeat(120));
        assert_eq!(value_error(&long).1, "admin_socket");
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused_with_the_file() {
        let e = parse("hsdb = \"x\"\nscan = 3\n").unwrap_err().to_string();
        assert!(e.starts_with("config file /etc/hvha/hactl.toml"), "{e}");
        assert!(e.contains("scan"), "{e}");
        let e = parse("profile = \"fast\"\n").unwrap_err().to_string();
        assert!(e.contains("hsdb"), "a missing hsdb is named: {e}");
    }

    #[test]
    fn admin_socket_is_found_in_a_half_edited_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hactl.toml");
        std::fs::write(&path, "hsdb = \nadmin_socket = \"a.sock\"\n").unwrap();
        assert_eq!(
            Config::admin_socket_of(&path).unwrap(),
            dir.path().join("a.sock")
        );
        std::fs::write(&path, "hsdb = \"x\"\n").unwrap();
        assert_eq!(
            Config::admin_socket_of(&path).unwrap(),
            Path::new(DEFAULT_ADMIN_SOCKET)
        );
    }

    #[test]
    fn names_and_addresses() {
        assert!(check_name("hg1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a=b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_address("::1"));
        assert!(check_address("vm1.example.org"));
        assert!(!check_address("-c5"));
        assert!(!check_address("a b"));
        assert!(check_uri("test:///tmp/a.xml"));
        assert!(!check_uri("/tmp/a.xml"));
        assert!(!check_uri("-c:x"));
    }
}
