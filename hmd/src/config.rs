//! `hmd` configuration: a TOML file, every value checked against its range.
//!
//! Errors name the file, the line, the key, the value and what is allowed. Relative
//! paths (`hsdb`, `admin_socket`) are taken from the configuration file's directory.
//! [`Config::check_machine`] then checks what can be checked on this machine without
//! creating anything: the interfaces exist, the HSDB's directory exists and the HSDB is
//! an SQLite file or absent, the admin socket is a socket or absent, the metrics port
//! can be bound.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::auth::{AuthConfig, AuthConfigError, AuthMode, AuthSetupError};
use dataplane::io::InterfaceName;
use dataplane::message::Uuid;
use hsdb::{HostId, Synchronous};
use hvha_daemon::config::{
    Refused, ethertype_value, line_of, log_format_value, log_value, quoted, resolve,
};
use hvha_daemon::log::{LogFilter, LogFormat};
use serde::Deserialize;
use toml::Spanned;

/// Default `hello_period_ms` (seed 004 L8313).
const DEFAULT_HELLO_MS: u64 = 30_000;
/// Default `hb_period_ms` (seed 004 L9021).
const DEFAULT_HB_MS: u64 = 10_000;
/// Default `hm_heartbeat_period_ms` (seed 004 L8439-8458).
const DEFAULT_HM_HB_MS: u64 = 30_000;
/// Default `flush_ms`.
const DEFAULT_FLUSH_MS: u64 = 10;
/// Default `command_poll_ms`: commands picked up within half a second.
const DEFAULT_COMMAND_POLL_MS: u64 = 500;
/// Allowed `command_poll_ms`: from 50 ms (20 reads a second of an indexed, usually
/// empty, queue) to 1 s (the bound the control plane is promised).
const COMMAND_POLL_RANGE: std::ops::RangeInclusive<u64> = 50..=1000;
/// Smallest `hsdb_backlog_limit`: a mass failure of 1,000 VMs must fit.
const MIN_BACKLOG_LIMIT: usize = 1000;
/// Largest `hsdb_backlog_limit`: about 1.2 GB of state transitions.
const MAX_BACKLOG_LIMIT: usize = 10_000_000;
/// Longest `vm_miss_after_ms`: 10 h.
const MAX_MISS_MS: u64 = 36_000_000;
/// Longest admin socket path (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 100;

/// The configuration file as written by the operator. Integers are read as `i64` so
/// that a negative value gets our range message; every value keeps its place in the
/// file for the error message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    monitor_uuid: Spanned<String>,
    host_id: Spanned<i64>,
    host_name: Spanned<String>,
    hsdb: Spanned<String>,
    hsdb_password_file: Option<Spanned<PathBuf>>,
    admin_socket: Spanned<PathBuf>,
    interfaces: Spanned<Vec<Spanned<String>>>,
    ethertype: Option<Spanned<i64>>,
    hello_period_ms: Option<Spanned<i64>>,
    hb_period_ms: Option<Spanned<i64>>,
    vm_miss_after_ms: Option<Spanned<i64>>,
    hm_heartbeat_period_ms: Option<Spanned<i64>>,
    flush_ms: Option<Spanned<i64>>,
    command_poll_ms: Option<Spanned<i64>>,
    hsdb_backlog_limit: Option<Spanned<i64>>,
    synchronous: Option<Spanned<String>>,
    log: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    max_peers: Option<Spanned<i64>>,
    max_half_open: Option<Spanned<i64>>,
    half_open_grace_ms: Option<Spanned<i64>>,
    auth: Option<Spanned<String>>,
    auth_key_file: Option<Spanned<PathBuf>>,
    auth_second_key_file: Option<Spanned<PathBuf>>,
}

/// The `hsdb` setting: where the HSDB lives.
#[derive(Debug, Clone)]
pub enum HsdbSetting {
    /// An SQLite file (absolute).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The URL as written (it holds no password: such a URL is refused).
        url: String,
        /// The URL, parsed (no password yet: [`Config::hsdb_target`] adds it).
        target: hsdb::Target,
    },
}

impl HsdbSetting {
    /// The SQLite file, if the HSDB is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            HsdbSetting::Sqlite(p) => Some(p),
            HsdbSetting::Postgres { .. } => None,
        }
    }
}

impl PartialEq for HsdbSetting {
    fn eq(&self, other: &HsdbSetting) -> bool {
        match (self, other) {
            (HsdbSetting::Sqlite(a), HsdbSetting::Sqlite(b)) => a == b,
            (HsdbSetting::Postgres { url: a, .. }, HsdbSetting::Postgres { url: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for HsdbSetting {}

impl fmt::Display for HsdbSetting {
    /// The path, or `postgres://USER@HOST:PORT/DBNAME`: never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsdbSetting::Sqlite(p) => write!(f, "{}", p.display()),
            HsdbSetting::Postgres { target, .. } => target.fmt(f),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This monitor's UUID.
    pub monitor_uuid: Uuid,
    /// The host it runs on (HSDB `host.id`).
    pub host_id: HostId,
    /// The host's name.
    pub host_name: String,
    /// The HSDB file (absolute: a relative path is taken from the file's directory).
    pub hsdb: HsdbSetting,
    /// The PostgreSQL password's file (absolute), if any.
    pub hsdb_password_file: Option<PathBuf>,
    /// The admin UNIX socket (absolute, like `hsdb`).
    pub admin_socket: PathBuf,
    /// HVNCP interfaces (normally one: the trunk toward the VMs on this monitor's VLAN).
    pub interfaces: Vec<InterfaceName>,
    /// HVNCP EtherType.
    pub ethertype: u16,
    /// Hello broadcast period.
    pub hello_period: Duration,
    /// Heartbeat period commanded to agents.
    pub hb_period: Duration,
    /// A VM is MISSING when no heartbeat came for this long (default 2 × `hb_period`).
    pub vm_miss_after: Duration,
    /// Period of the monitor's own heartbeat into the HSDB.
    pub hm_heartbeat_period: Duration,
    /// The HSDB writer waits at most this long to batch transitions.
    pub flush: Duration,
    /// How often the HSDB writer reads this monitor's command queue.
    pub command_poll: Duration,
    /// Most transitions held while the HSDB is unavailable.
    pub hsdb_backlog_limit: usize,
    /// SQLite durability.
    pub synchronous: Synchronous,
    /// Log filter, overridden by a valid `RUST_LOG`.
    pub log: LogFilter,
    /// Log line format.
    pub log_format: LogFormat,
    /// Where to serve `GET /metrics` (Prometheus text) over HTTP, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Authenticated frames (docs/hvncp.md §7): mode and key files (absolute).
    pub auth: AuthConfig,
    /// Most peers (agents) per interface (docs/hvncp.md §6.5).
    pub max_peers: usize,
    /// Most half-open peers (never established) per interface; past it the oldest is
    /// evicted once older than `half_open_grace`, a new one refused before.
    pub max_half_open: usize,
    /// How long a half-open peer's handshake is safe from eviction (docs/hvncp.md §6.5).
    pub half_open_grace: Duration,
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
        /// The value's line, when the file has it (not for a default).
        line: Option<usize>,
        /// The key, e.g. `interfaces[1]`.
        key: String,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The `hsdb` setting is neither a usable path nor a usable PostgreSQL URL (the
    /// message shows the URL without any password).
    #[error("config file {}{}: {source}",
        path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Hsdb {
        /// The file.
        path: PathBuf,
        /// The setting's line.
        line: Option<usize>,
        /// Why.
        source: hsdb::TargetError,
    },
    /// A value does not fit this machine (checked by [`Config::check_machine`]).
    #[error("config file {}: {key} = {value}: {cause}", path.display())]
    Machine {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong on this machine.
        cause: String,
    },
}

/// The file being parsed: its text (for line numbers) and path (for messages and
/// relative paths).
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

    /// The error for the value of `key` at `value`'s place, refused for the reason given.
    fn refused<'s, T>(
        &'s self,
        key: &'static str,
        value: &Spanned<T>,
    ) -> impl FnOnce(Refused) -> ConfigError + 's {
        let span = value.span();
        move |r| self.bad(key, Some(span), r.value, r.allowed)
    }

    /// A duration in milliseconds: the value, or `default` when absent.
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

impl Config {
    /// The HSDB to connect to, with the PostgreSQL password from `hsdb_password_file`
    /// or the environment ([`hsdb::PASSWORD_ENV`]); an error names the file and what
    /// is wrong with it, never the password.
    pub fn hsdb_target(&self) -> Result<hsdb::Target, hsdb::TargetError> {
        match &self.hsdb {
            HsdbSetting::Sqlite(file) => Ok(hsdb::Target::Sqlite(file.clone())),
            HsdbSetting::Postgres { target, .. } => target
                .clone()
                .with_password(self.hsdb_password_file.as_deref()),
        }
    }

    /// [`Config::hsdb_target`]'s error as a configuration error of the file `path`.
    fn password_error(&self, path: &Path, e: &hsdb::TargetError) -> ConfigError {
        let (key, value) = match &self.hsdb_password_file {
            Some(file) => ("hsdb_password_file", quoted_path(file)),
            None => ("hsdb", format!("(password from {})", hsdb::PASSWORD_ENV)),
        };
        ConfigError::Machine {
            path: path.to_owned(),
            key: key.into(),
            value,
            cause: e.to_string(),
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
        let monitor_uuid = Uuid::parse(f.monitor_uuid.get_ref().as_bytes())
            .ok()
            .filter(|u| *u != Uuid::default())
            .ok_or_else(|| {
                src.bad(
                    "monitor_uuid",
                    Some(f.monitor_uuid.span()),
                    quoted(f.monitor_uuid.get_ref()),
                    "a UUID other than all zeros, like 5c3196a3-c41f-4b5c-9861-dee6077081c6",
                )
            })?;
        let host_id = *f.host_id.get_ref();
        if host_id < 0 {
            return Err(src.bad(
                "host_id",
                Some(f.host_id.span()),
                host_id,
                "a non-negative integer",
            ));
        }
        let host_name = f.host_name.get_ref();
        if host_name.is_empty() || host_name.len() > 64 {
            return Err(src.bad(
                "host_name",
                Some(f.host_name.span()),
                quoted(host_name),
                "1..=64 bytes",
            ));
        }
        let names = f.interfaces.get_ref();
        if names.is_empty() || names.len() > 8 {
            return Err(src.bad(
                "interfaces",
                Some(f.interfaces.span()),
                format!("{} names", names.len()),
                "1..=8 interface names",
            ));
        }
        let mut interfaces = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = format!("interfaces[{i}]");
            let bad = |allowed| src.bad(&key, Some(name.span()), quoted(name.get_ref()), allowed);
            let iface = InterfaceName::new(name.get_ref())
                .map_err(|_| bad("an interface name of 1..=15 bytes without '/', ':' or spaces"))?;
            if interfaces.contains(&iface) {
                return Err(bad("each interface once (it is listed twice)"));
            }
            interfaces.push(iface);
        }
        let ethertype = match &f.ethertype {
            None => dataplane::wire::DEFAULT_ETHERTYPE,
            Some(e) => ethertype_value(*e.get_ref()).map_err(src.refused("ethertype", e))?,
        };
        let hello_ms = src.ms(
            "hello_period_ms",
            f.hello_period_ms.as_ref(),
            DEFAULT_HELLO_MS,
            100..=3_600_000,
        )?;
        let hb_ms = src.ms(
            "hb_period_ms",
            f.hb_period_ms.as_ref(),
            DEFAULT_HB_MS,
            100..=3_600_000,
        )?;
        let miss_ms = match &f.vm_miss_after_ms {
            None => 2 * hb_ms,
            Some(v) => u64::try_from(*v.get_ref())
                .ok()
                .filter(|ms| *ms > hb_ms && *ms <= MAX_MISS_MS)
                .ok_or_else(|| {
                    src.bad(
                        "vm_miss_after_ms",
                        Some(v.span()),
                        v.get_ref(),
                        format!(
                            "more than hb_period_ms ({hb_ms}) and at most {MAX_MISS_MS} (ms); \
                             default 2 × hb_period_ms"
                        ),
                    )
                })?,
        };
        let hm_hb_ms = src.ms(
            "hm_heartbeat_period_ms",
            f.hm_heartbeat_period_ms.as_ref(),
            DEFAULT_HM_HB_MS,
            100..=3_600_000,
        )?;
        let flush_ms = src.ms("flush_ms", f.flush_ms.as_ref(), DEFAULT_FLUSH_MS, 0..=1000)?;
        let command_poll_ms = src.ms(
            "command_poll_ms",
            f.command_poll_ms.as_ref(),
            DEFAULT_COMMAND_POLL_MS,
            COMMAND_POLL_RANGE,
        )?;
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
                        "\"full\" (no committed transition lost on power failure) or \"normal\"",
                    ));
                }
            },
        };
        let hsdb = match hsdb::Target::parse(f.hsdb.get_ref()) {
            Ok(hsdb::Target::Sqlite(p)) => HsdbSetting::Sqlite(resolve(path, &p)),
            Ok(target) => HsdbSetting::Postgres {
                url: f.hsdb.get_ref().trim().to_owned(),
                target,
            },
            Err(source) => {
                return Err(ConfigError::Hsdb {
                    path: path.to_owned(),
                    line: Some(line_of(text, f.hsdb.span().start)),
                    source,
                });
            }
        };
        let hsdb_password_file = f
            .hsdb_password_file
            .as_ref()
            .map(|p| (resolve(path, p.get_ref()), p.span()));
        if let (HsdbSetting::Sqlite(_), Some((file, span))) = (&hsdb, &hsdb_password_file) {
            return Err(src.bad(
                "hsdb_password_file",
                Some(span.clone()),
                quoted_path(file),
                "no password file: hsdb is an SQLite file, which has no password",
            ));
        }
        let hsdb_password_file = hsdb_password_file.map(|(file, _)| file);
        let admin_socket = resolve(path, f.admin_socket.get_ref());
        let socket_len = admin_socket.as_os_str().len();
        if f.admin_socket.get_ref().as_os_str().is_empty() || socket_len > MAX_SOCKET_PATH {
            return Err(src.bad(
                "admin_socket",
                Some(f.admin_socket.span()),
                quoted_path(&admin_socket),
                format!("a path of 1..={MAX_SOCKET_PATH} bytes, once made absolute"),
            ));
        }
        let config_file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if hsdb.sqlite_path() == Some(admin_socket.as_path()) {
            return Err(src.bad(
                "admin_socket",
                Some(f.admin_socket.span()),
                quoted_path(&admin_socket),
                "another path than hsdb (the socket would replace the database)",
            ));
        }
        let sqlite = hsdb.sqlite_path().map(Path::to_owned);
        for (key, value, span) in [
            ("hsdb", sqlite.as_ref(), f.hsdb.span()),
            ("admin_socket", Some(&admin_socket), f.admin_socket.span()),
        ] {
            if let Some(value) = value
                && *value == config_file
            {
                return Err(src.bad(
                    key,
                    Some(span),
                    quoted_path(value),
                    "another path than the configuration file's",
                ));
            }
        }
        let log = match &f.log {
            None => LogFilter::default(),
            Some(l) => log_value(l.get_ref()).map_err(src.refused("log", l))?,
        };
        let log_format = match &f.log_format {
            None => LogFormat::default(),
            Some(l) => log_format_value(l.get_ref()).map_err(src.refused("log_format", l))?,
        };
        let metrics_listen =
            match &f.metrics_listen {
                None => None,
                Some(text) => Some(text.get_ref().parse::<std::net::SocketAddr>().map_err(
                    |_| {
                        src.bad(
                            "metrics_listen",
                            Some(text.span()),
                            quoted(text.get_ref()),
                            "an address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\"",
                        )
                    },
                )?),
            };
        let count = |key: &'static str,
                     v: Option<&Spanned<i64>>,
                     default: usize,
                     max: usize,
                     allowed: &str| {
            let Some(v) = v else {
                return Ok(default);
            };
            usize::try_from(*v.get_ref())
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| src.bad(key, Some(v.span()), v.get_ref(), allowed))
        };
        let max_peers = count(
            "max_peers",
            f.max_peers.as_ref(),
            dataplane::endpoint::DEFAULT_MONITOR_MAX_PEERS,
            dataplane::endpoint::MAX_PEERS_LIMIT,
            "1..=16777216 (peers per interface)",
        )?;
        let max_half_open = count(
            "max_half_open",
            f.max_half_open.as_ref(),
            dataplane::endpoint::DEFAULT_MONITOR_MAX_HALF_OPEN.min(max_peers),
            max_peers,
            "1..=max_peers (peers per interface not yet established)",
        )?;
        // Within the default session's rto (200 ms) and retransmission span (12.6 s), as
        // `EndpointConfig::validate` requires.
        let default_grace =
            u64::try_from(dataplane::endpoint::DEFAULT_HALF_OPEN_GRACE.as_millis()).unwrap_or(3000);
        let half_open_grace_ms = src.ms(
            "half_open_grace_ms",
            f.half_open_grace_ms.as_ref(),
            default_grace,
            200..=12_600,
        )?;
        let hsdb_backlog_limit = count(
            "hsdb_backlog_limit",
            f.hsdb_backlog_limit.as_ref(),
            crate::writer::DEFAULT_BACKLOG_LIMIT,
            MAX_BACKLOG_LIMIT,
            "1000..=10000000 (transitions held while the HSDB is unavailable)",
        )?;
        if hsdb_backlog_limit < MIN_BACKLOG_LIMIT
            && let Some(v) = &f.hsdb_backlog_limit
        {
            return Err(src.bad(
                "hsdb_backlog_limit",
                Some(v.span()),
                v.get_ref(),
                "1000..=10000000 (transitions held while the HSDB is unavailable)",
            ));
        }
        let auth = auth_config(&src, f.auth, f.auth_key_file, f.auth_second_key_file)?;
        Ok(Config {
            monitor_uuid,
            host_id: HostId(host_id),
            host_name: host_name.clone(),
            hsdb,
            hsdb_password_file,
            admin_socket,
            interfaces,
            ethertype,
            hello_period: Duration::from_millis(hello_ms),
            hb_period: Duration::from_millis(hb_ms),
            vm_miss_after: Duration::from_millis(miss_ms),
            hm_heartbeat_period: Duration::from_millis(hm_hb_ms),
            flush: Duration::from_millis(flush_ms),
            command_poll: Duration::from_millis(command_poll_ms),
            hsdb_backlog_limit,
            synchronous,
            log,
            log_format,
            metrics_listen,
            max_peers,
            max_half_open,
            half_open_grace: Duration::from_millis(half_open_grace_ms),
            auth,
        })
    }

    /// The admin socket named by the configuration file `path`, read even when another
    /// key is invalid or the file is half edited (so that `hmd ctl` works during an
    /// incident): the whole file when it is TOML, else the first line that sets
    /// `admin_socket`.
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
        match found {
            Some(p) if !p.is_empty() => Ok(resolve(path, Path::new(&p))),
            _ => Err(ConfigError::Value {
                path: path.to_owned(),
                line: None,
                key: "admin_socket".into(),
                value: "(not found)".into(),
                allowed: "a line admin_socket = \"PATH\" (or give hmd ctl --socket PATH)".into(),
            }),
        }
    }

    /// Check the configuration `path` held against this machine without creating or
    /// changing anything: the interfaces exist and are Ethernet, the HSDB's directory
    /// exists and the HSDB is absent or an SQLite file, the admin socket is absent or a
    /// socket, the metrics address can be bound. Returns notes for `--check-config`,
    /// and whether an `hmd` already answers on the admin socket.
    pub fn check_machine(&self, path: &Path) -> Result<MachineCheck, ConfigError> {
        let fail = |key: &str, value: String, cause: String| ConfigError::Machine {
            path: path.to_owned(),
            key: key.to_owned(),
            value,
            cause,
        };
        let mut notes = Vec::new();
        for (i, name) in self.interfaces.iter().enumerate() {
            let key = format!("interfaces[{i}]");
            let value = quoted(name.as_str());
            let iface = dataplane::io::Interface::by_name(name).map_err(|e| match e {
                dataplane::io::IoError::NotFound { .. } => fail(
                    &key,
                    value.clone(),
                    "no such interface on this machine (in this network namespace)".into(),
                ),
                other => fail(&key, value.clone(), other.to_string()),
            })?;
            if iface.is_loopback() || !iface.is_ethernet() {
                return Err(fail(
                    &key,
                    value,
                    "not an Ethernet interface (HVNCP runs on Ethernet frames)".into(),
                ));
            }
            notes.push(format!(
                "{key} {name} ({}): {}",
                iface.mac(),
                if iface.is_up() {
                    "up"
                } else {
                    "down (hmd starts; agents behind it stay unseen until it is up)"
                }
            ));
        }
        match self.auth.keyring() {
            Ok(None) => {}
            Ok(Some(keys)) => notes.push(format!(
                "auth {}: key {} read, private{}",
                self.auth.mode,
                keys.primary().id(),
                keys.second().map_or(String::new(), |k| format!(
                    "; second key {} read, private",
                    k.id()
                ))
            )),
            Err(AuthSetupError::Key { setting, error }) => {
                let file = match setting {
                    "auth_second_key_file" => &self.auth.second_key_file,
                    _ => &self.auth.key_file,
                };
                let value = file.as_deref().map_or_else(String::new, quoted_path);
                return Err(fail(setting, value, error.to_string()));
            }
            Err(other) => {
                return Err(fail(
                    "auth",
                    quoted(self.auth.mode.as_str()),
                    other.to_string(),
                ));
            }
        }
        match &self.hsdb {
            HsdbSetting::Sqlite(file) => notes
                .push(check_hsdb(file).map_err(|cause| fail("hsdb", quoted_path(file), cause))?),
            HsdbSetting::Postgres { target, .. } => {
                let with = self
                    .hsdb_target()
                    .map_err(|e| self.password_error(path, &e))?;
                let password = match (&self.hsdb_password_file, with.postgres()) {
                    (Some(file), _) => format!("password from {}", file.display()),
                    (None, Some(pg)) if pg.has_password() => {
                        format!("password from the environment ({})", hsdb::PASSWORD_ENV)
                    }
                    _ => "no password (trust, peer or certificate authentication)".to_owned(),
                };
                notes.push(format!("hsdb {target}: PostgreSQL, {password}"));
            }
        }
        let (note, running) = check_socket(&self.admin_socket)
            .map_err(|cause| fail("admin_socket", quoted_path(&self.admin_socket), cause))?;
        notes.push(note);
        if let Some(addr) = self.metrics_listen {
            if running {
                notes.push(format!(
                    "metrics_listen {addr}: not tried (the running hmd holds it)"
                ));
            } else {
                std::net::TcpListener::bind(addr).map_err(|e| {
                    fail(
                        "metrics_listen",
                        quoted(&addr.to_string()),
                        format!("cannot bind: {e}"),
                    )
                })?;
                notes.push(format!("metrics_listen {addr}: free"));
            }
        }
        Ok(MachineCheck { notes, running })
    }
}

impl Config {
    /// For a PostgreSQL HSDB, whether it answers now: one read-only connection that
    /// changes nothing, and a note for `--check-config`. A server that does not answer is
    /// a note, not an error: `hmd` starts without it and connects when it can. A refusal
    /// (authentication, a database that does not exist, a schema too new, a database of
    /// something else) is an error, as it stops `hmd` at start. `None` for SQLite.
    pub fn probe_hsdb(&self, path: &Path) -> Result<Option<String>, ConfigError> {
        let HsdbSetting::Postgres { url, .. } = &self.hsdb else {
            return Ok(None);
        };
        let target = self
            .hsdb_target()
            .map_err(|e| self.password_error(path, &e))?;
        let note = match hsdb::Hsdb::connect_read_only(&target, &hsdb::Options::default()) {
            Ok(_) => format!(
                "hsdb {target}: PostgreSQL answers; schema version {}, this build's",
                hsdb::SCHEMA_VERSION
            ),
            Err(hsdb::Error::TooOld { found: 0, .. }) => format!(
                "hsdb {target}: PostgreSQL answers; an empty database: hmd creates the schema at start"
            ),
            Err(hsdb::Error::TooOld {
                found, supported, ..
            }) => format!(
                "hsdb {target}: PostgreSQL answers; schema version {found}: hmd migrates it to {supported} at start"
            ),
            Err(e) if e.is_unavailable() => format!(
                "hsdb {target}: PostgreSQL does not answer now ({e}); hmd starts anyway, \
                 monitors, and connects when it can"
            ),
            Err(e) => {
                return Err(ConfigError::Machine {
                    path: path.to_owned(),
                    key: "hsdb".into(),
                    value: quoted(url),
                    cause: e.to_string(),
                });
            }
        };
        Ok(Some(note))
    }
}

/// What [`Config::check_machine`] found.
#[derive(Debug)]
pub struct MachineCheck {
    /// One line per checked value.
    pub notes: Vec<String>,
    /// An `hmd` answers on the admin socket.
    pub running: bool,
}

/// The HSDB path: an SQLite file or nothing yet, in an existing directory.
fn check_hsdb(hsdb: &Path) -> Result<String, String> {
    match std::fs::metadata(hsdb) {
        Ok(m) if m.is_dir() => Err("is a directory".into()),
        Ok(m) if !m.is_file() => Err("is not a regular file".into()),
        Ok(m) => {
            let mut head = [0u8; 16];
            let n = std::io::Read::read(
                &mut std::fs::File::open(hsdb).map_err(|e| format!("cannot be read: {e}"))?,
                &mut head,
            )
            .map_err(|e| format!("cannot be read: {e}"))?;
            if n > 0 && head[..n] != b"SQLite format 3\0"[..n] {
                return Err("is not an SQLite database (hmd would not overwrite it)".into());
            }
            Ok(format!(
                "hsdb {}: SQLite file of {} bytes",
                hsdb.display(),
                m.len()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = hsdb.parent().unwrap_or(Path::new("/"));
            match std::fs::metadata(dir) {
                Ok(d) if d.is_dir() => Ok(format!(
                    "hsdb {}: absent, created at start in {}",
                    hsdb.display(),
                    dir.display()
                )),
                Ok(_) => Err(format!("{} is not a directory", dir.display())),
                Err(e) => Err(format!(
                    "its directory {} cannot be used: {e} (hmd creates the file, not its \
                     directory)",
                    dir.display()
                )),
            }
        }
        Err(e) => Err(format!("cannot be examined: {e}")),
    }
}

/// Why the HSDB at `path` could not be opened, as far as the file system tells (SQLite
/// says only "unable to open database file"): `"; cause: …"`, or "" when nothing is
/// found. Probing an absent file's directory creates a file there and removes it.
pub fn hsdb_cause(path: &Path) -> String {
    let cause = match check_hsdb(path) {
        Err(cause) => Some(cause),
        Ok(_) if path.exists() => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .err()
            .map(|e| format!("cannot be opened for writing: {e}")),
        Ok(_) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let probe = dir.join(format!(".hmd-probe-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    None
                }
                Err(e) => Some(format!("cannot create a file in {}: {e}", dir.display())),
            }
        }
    };
    cause.map(|c| format!("; cause: {c}")).unwrap_or_default()
}

/// The admin socket path: absent (its directory is created at start if needed), a
/// stale socket (replaced), or the socket of a running hmd (`true`).
fn check_socket(socket: &Path) -> Result<(String, bool), String> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                Ok((
                    format!(
                        "admin_socket {}: a running hmd answers on it",
                        socket.display()
                    ),
                    true,
                ))
            } else {
                Ok((
                    format!(
                        "admin_socket {}: stale socket, replaced at start",
                        socket.display()
                    ),
                    false,
                ))
            }
        }
        Ok(_) => Err("exists and is not a socket (hmd replaces only a stale socket)".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = socket.parent().unwrap_or(Path::new("/"));
            match std::fs::metadata(dir) {
                Ok(d) if d.is_dir() => Ok((
                    format!("admin_socket {}: created at start", socket.display()),
                    false,
                )),
                Ok(_) => Err(format!("{} is not a directory", dir.display())),
                Err(_) => Ok((
                    format!(
                        "admin_socket {}: created at start, with its directory {}",
                        socket.display(),
                        dir.display()
                    ),
                    false,
                )),
            }
        }
        Err(e) => Err(format!("cannot be examined: {e}")),
    }
}

/// The effective configuration as TOML, defaults included, each key with a comment:
/// what `--check-config` prints. Feeding it back to [`Config::parse`] gives the same
/// configuration.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_millis();
        let names: Vec<String> = self.interfaces.iter().map(|n| quoted(n.as_str())).collect();
        writeln!(f, "# this monitor's identity in the HSDB and in its SYNs")?;
        writeln!(f, "monitor_uuid = \"{}\"", self.monitor_uuid)?;
        writeln!(f, "# the host (host.id in the HSDB) and its name")?;
        writeln!(f, "host_id = {}", self.host_id.0)?;
        writeln!(f, "host_name = {}", quoted(&self.host_name))?;
        match &self.hsdb {
            HsdbSetting::Sqlite(file) => {
                writeln!(
                    f,
                    "# the HSDB: an SQLite file (relative paths are taken from the config file's directory)"
                )?;
                writeln!(f, "hsdb = {}", quoted_path(file))?;
            }
            HsdbSetting::Postgres { url, .. } => {
                writeln!(
                    f,
                    "# the HSDB: a PostgreSQL database (no password in the URL)"
                )?;
                writeln!(f, "hsdb = {}", quoted(url))?;
            }
        }
        if let Some(file) = &self.hsdb_password_file {
            writeln!(f, "# the PostgreSQL password (first line; mode 0600)")?;
            writeln!(f, "hsdb_password_file = {}", quoted_path(file))?;
        }
        writeln!(f, "# UNIX socket for `hmd ctl`, mode 0600")?;
        writeln!(f, "admin_socket = {}", quoted_path(&self.admin_socket))?;
        writeln!(f, "# HVNCP interfaces")?;
        writeln!(f, "interfaces = [{}]", names.join(", "))?;
        writeln!(f, "# HVNCP EtherType (default 0x0600)")?;
        writeln!(f, "ethertype = {:#06x}", self.ethertype)?;
        writeln!(f, "# Hello broadcast period (default {DEFAULT_HELLO_MS})")?;
        writeln!(f, "hello_period_ms = {}", ms(self.hello_period))?;
        writeln!(
            f,
            "# heartbeat period commanded in START_HB (default {DEFAULT_HB_MS})"
        )?;
        writeln!(f, "hb_period_ms = {}", ms(self.hb_period))?;
        writeln!(
            f,
            "# silence after which a VM is MISSING (default 2 × hb_period_ms)"
        )?;
        writeln!(f, "vm_miss_after_ms = {}", ms(self.vm_miss_after))?;
        writeln!(
            f,
            "# the monitor's own heartbeat into the HSDB (default {DEFAULT_HM_HB_MS})"
        )?;
        writeln!(
            f,
            "hm_heartbeat_period_ms = {}",
            ms(self.hm_heartbeat_period)
        )?;
        writeln!(
            f,
            "# how long the HSDB writer gathers transitions (default {DEFAULT_FLUSH_MS})"
        )?;
        writeln!(f, "flush_ms = {}", ms(self.flush))?;
        writeln!(
            f,
            "# how often the control plane's commands are read, {}..={} (default {DEFAULT_COMMAND_POLL_MS})",
            COMMAND_POLL_RANGE.start(),
            COMMAND_POLL_RANGE.end()
        )?;
        writeln!(f, "command_poll_ms = {}", ms(self.command_poll))?;
        writeln!(f, "hsdb_backlog_limit = {}", self.hsdb_backlog_limit)?;
        writeln!(f, "# SQLite durability: \"full\" (default) or \"normal\"")?;
        let sync = match self.synchronous {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        };
        writeln!(f, "synchronous = \"{sync}\"")?;
        writeln!(f, "# log filter (a valid RUST_LOG wins; default \"info\")")?;
        writeln!(f, "log = {}", quoted(self.log.as_str()))?;
        writeln!(
            f,
            "# log lines: \"text\" (key=value fields, default) or \"json\""
        )?;
        writeln!(f, "log_format = \"{}\"", self.log_format.as_str())?;
        writeln!(
            f,
            "# most peers per interface (default {})",
            dataplane::endpoint::DEFAULT_MONITOR_MAX_PEERS
        )?;
        writeln!(f, "max_peers = {}", self.max_peers)?;
        writeln!(
            f,
            "# most peers per interface not yet established; past it the oldest is evicted \
             (default {})",
            dataplane::endpoint::DEFAULT_MONITOR_MAX_HALF_OPEN
        )?;
        writeln!(f, "max_half_open = {}", self.max_half_open)?;
        writeln!(
            f,
            "# a half-open peer younger than this is never evicted: a new peer is refused \
             instead and retries (default {})",
            dataplane::endpoint::DEFAULT_HALF_OPEN_GRACE.as_millis()
        )?;
        writeln!(f, "half_open_grace_ms = {}", ms(self.half_open_grace))?;
        match self.metrics_listen {
            Some(addr) => {
                writeln!(f, "# Prometheus metrics over HTTP")?;
                writeln!(f, "metrics_listen = \"{addr}\"")?;
            }
            None => writeln!(
                f,
                "# metrics_listen: not set (metrics only through `hmd ctl metrics`)"
            )?,
        }
        writeln!(
            f,
            "# authenticated frames (docs/hvncp.md §7): \"off\" (default), \"accept\" or \"require\""
        )?;
        writeln!(f, "auth = \"{}\"", self.auth.mode)?;
        for (key, path) in [
            ("auth_key_file", &self.auth.key_file),
            ("auth_second_key_file", &self.auth.second_key_file),
        ] {
            if let Some(p) = path {
                writeln!(f, "{key} = {}", quoted_path(p))?;
            }
        }
        Ok(())
    }
}

/// `auth`, `auth_key_file`, `auth_second_key_file`, checked without reading the key
/// files (the daemon reads them at start and refuses one that others may read);
/// relative paths are taken from the configuration file's directory.
fn auth_config(
    src: &Source<'_>,
    mode: Option<Spanned<String>>,
    key_file: Option<Spanned<PathBuf>>,
    second_key_file: Option<Spanned<PathBuf>>,
) -> Result<AuthConfig, ConfigError> {
    let mode = match &mode {
        None => AuthMode::Off,
        Some(m) => m.get_ref().parse().map_err(|_| {
            src.bad(
                "auth",
                Some(m.span()),
                quoted(m.get_ref()),
                "\"off\", \"accept\" or \"require\"",
            )
        })?,
    };
    let span = |s: &Option<Spanned<PathBuf>>| s.as_ref().map(Spanned::span);
    let (key_span, second_span) = (span(&key_file), span(&second_key_file));
    let auth = AuthConfig {
        mode,
        key_file: key_file.map(|p| resolve(src.path, p.get_ref())),
        second_key_file: second_key_file.map(|p| resolve(src.path, p.get_ref())),
    };
    auth.validate().map_err(|e| match e {
        AuthConfigError::SecondWithoutFirst => src.bad(
            "auth_second_key_file",
            second_span,
            "set",
            "auth_key_file as well (the key frames are sent with)",
        ),
        _ => src.bad(
            "auth_key_file",
            key_span,
            "(missing)",
            "a key file when auth is \"accept\" or \"require\"",
        ),
    })?;
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
monitor_uuid = "5c3196a3-c41f-4b5c-9861-dee6077081c6"
host_id = 1
host_name = "host1"
hsdb = "/tmp/hsdb.sqlite"
admin_socket = "/tmp/hmd.sock"
interfaces = ["veth-hm0"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/hvha/hmd.toml"))
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.hello_period, Duration::from_secs(30));
        assert_eq!(c.hb_period, Duration::from_secs(10));
        assert_eq!(c.vm_miss_after, Duration::from_secs(20));
        assert_eq!(c.hm_heartbeat_period, Duration::from_secs(30));
        assert_eq!(c.ethertype, 0x0600);
        assert_eq!(c.synchronous, Synchronous::Full);
        assert_eq!(c.log.as_str(), "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.max_peers, 131_072);
        assert_eq!(c.max_half_open, 16_384);
        assert_eq!(c.half_open_grace, Duration::from_secs(3));
    }

    #[test]
    fn peer_limits_are_checked() {
        assert_eq!(
            err("max_peers = 0\n"),
            "config file /etc/hvha/hmd.toml line 8: max_peers = 0 is invalid: expected \
             1..=16777216 (peers per interface)"
        );
        assert!(err("max_peers = 16777217\n").contains("max_peers = 16777217"));
        assert_eq!(
            err("max_peers = 1000\nmax_half_open = 1001\n"),
            "config file /etc/hvha/hmd.toml line 9: max_half_open = 1001 is invalid: expected \
             1..=max_peers (peers per interface not yet established)"
        );
        assert!(err("max_half_open = 0\n").contains("max_half_open = 0"));
        let c = parse(&format!(
            "{GOOD}max_peers = 200000\nmax_half_open = 200000\n"
        ))
        .expect("valid");
        assert_eq!((c.max_peers, c.max_half_open), (200_000, 200_000));
        assert_eq!(
            err("half_open_grace_ms = 199\n"),
            "config file /etc/hvha/hmd.toml line 8: half_open_grace_ms = 199 is invalid: \
             expected 200..=12600 (ms)"
        );
        assert!(err("half_open_grace_ms = 12601\n").contains("12601"));
        let c = parse(&format!("{GOOD}half_open_grace_ms = 12600\n")).expect("valid");
        assert_eq!(c.half_open_grace, Duration::from_millis(12_600));
    }

    fn err(extra: &str) -> String {
        parse(&format!("{GOOD}{extra}"))
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn auth_keys_are_checked() {
        assert_eq!(parse(GOOD).expect("valid").auth, AuthConfig::default());
        let c = parse(&format!(
            "{GOOD}auth = \"require\"\nauth_key_file = \"/etc/hvha/a.key\"\nauth_second_key_file = \"b.key\"\n"
        ))
        .expect("valid");
        assert_eq!(c.auth.mode, AuthMode::Require);
        assert_eq!(c.auth.key_file, Some(PathBuf::from("/etc/hvha/a.key")));
        let second = c.auth.second_key_file.clone().expect("set");
        assert!(
            second.is_absolute() && second.ends_with("b.key"),
            "{second:?}"
        );
        assert_eq!(parse(&c.to_string()).expect("round trip").auth, c.auth);
        assert!(err("auth = \"on\"\n").contains("auth = \"on\" is invalid"));
        assert!(err("auth = \"accept\"\n").contains("auth_key_file = (missing)"));
        assert!(err("auth_second_key_file = \"/k\"\n").contains("auth_second_key_file = set"));
    }

    #[test]
    fn every_bad_value_names_file_line_key_and_range() {
        assert_eq!(
            err("hb_period_ms = 50\n"),
            "config file /etc/hvha/hmd.toml line 8: hb_period_ms = 50 is invalid: expected \
             100..=3600000 (ms)"
        );
        assert!(err("hello_period_ms = 0\n").contains("line 8: hello_period_ms = 0"));
        assert!(err("hello_period_ms = -5\n").contains("hello_period_ms = -5 is invalid"));
        assert!(err("vm_miss_after_ms = 5000\n").contains("vm_miss_after_ms = 5000"));
        assert!(err("ethertype = 0x0100\n").contains("ethertype = 0x0100"));
        assert!(err("synchronous = \"off\"\n").contains("line 8: synchronous = \"off\""));
        assert!(err("flush_ms = 5000\n").contains("flush_ms"));
        assert_eq!(
            err("command_poll_ms = 2000\n"),
            "config file /etc/hvha/hmd.toml line 8: command_poll_ms = 2000 is invalid: expected \
             50..=1000 (ms)"
        );
        assert!(err("command_poll_ms = 10\n").contains("command_poll_ms = 10 is invalid"));
        assert_eq!(
            parse(GOOD).expect("valid").command_poll,
            Duration::from_millis(500)
        );
        let c = parse(&format!("{GOOD}command_poll_ms = 100\n")).expect("valid");
        assert_eq!(c.command_poll, Duration::from_millis(100));
        assert_eq!(
            parse(&c.to_string()).expect("round trip").command_poll,
            c.command_poll
        );
        assert!(err("colour = 1\n").contains("unknown field `colour`"));
        assert!(
            err("colour = 1\n").contains("line 8"),
            "{}",
            err("colour = 1\n")
        );
        assert_eq!(
            err("metrics_listen = \"localhost\"\n"),
            "config file /etc/hvha/hmd.toml line 8: metrics_listen = \"localhost\" is invalid: \
             expected an address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\""
        );
        let c = parse(&format!("{GOOD}metrics_listen = \"127.0.0.1:9464\"\n")).expect("valid");
        assert_eq!(c.metrics_listen, "127.0.0.1:9464".parse().ok());
        assert_eq!(parse(GOOD).expect("valid").metrics_listen, None);
        let e = parse(&GOOD.replace("veth-hm0", "a name that is too long"))
            .expect_err("bad name")
            .to_string();
        assert!(
            e.contains("line 7: interfaces[0] = \"a name that is too long\""),
            "{e}"
        );
        let e = parse(&GOOD.replace("\"veth-hm0\"", "\"a\", \"b\", \"a\""))
            .expect_err("twice")
            .to_string();
        assert!(
            e.contains("interfaces[2] = \"a\" is invalid: expected each interface once"),
            "{e}"
        );
        let e = parse(&GOOD.replace("5c3196a3", "zz"))
            .expect_err("bad uuid")
            .to_string();
        assert!(e.contains("line 2: monitor_uuid"), "{e}");
        // host_name counts bytes: 64 pass; 65, or 33 two-byte characters, do not.
        assert!(parse(&GOOD.replace("host1", &"h".repeat(64))).is_ok());
        for name in ["h".repeat(65), "é".repeat(33), String::new()] {
            let e = parse(&GOOD.replace("host1", &name))
                .expect_err("bad host_name")
                .to_string();
            assert!(
                e.contains("line 4: host_name") && e.ends_with("expected 1..=64 bytes"),
                "{e}"
            );
        }
    }

    #[test]
    fn log_filters_that_would_silence_everything_are_refused() {
        let e = err("log = \"warning\"\n");
        assert!(
            e.starts_with(
                "config file /etc/hvha/hmd.toml line 8: log = \"warning\" is invalid: \
                           expected a level (off, error, warn, info, debug, trace)"
            ),
            "{e}"
        );
        assert!(e.contains("\"warning\" is not a level"), "{e}");
        let c = parse(&format!(
            "{GOOD}log = \"info,hmd=debug\"\nlog_format = \"json\"\n"
        ))
        .expect("valid");
        assert_eq!(c.log.as_str(), "info,hmd=debug");
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(err("log_format = \"yaml\"\n").contains("log_format = \"yaml\" is invalid"));
    }

    #[test]
    fn other_protocols_ethertypes_and_the_nil_uuid_are_refused() {
        let e = err("ethertype = 0x0800\n");
        assert!(e.contains("ethertype = 0x0800 is invalid"), "{e}");
        assert!(e.contains("IPv4"), "{e}");
        for t in ["0x86dd", "0x8100", "0x88cc", "0x88a8"] {
            assert!(
                err(&format!("ethertype = {t}\n")).contains("no other protocol"),
                "{t}"
            );
        }
        assert_eq!(
            parse(&format!("{GOOD}ethertype = 0x88b5\n"))
                .expect("ok")
                .ethertype,
            0x88b5
        );
        let e = parse(&GOOD.replace(
            "5c3196a3-c41f-4b5c-9861-dee6077081c6",
            "00000000-0000-0000-0000-000000000000",
        ))
        .expect_err("nil")
        .to_string();
        assert!(
            e.contains("monitor_uuid = \"00000000-0000-0000-0000-000000000000\""),
            "{e}"
        );
        assert!(e.contains("other than all zeros"), "{e}");
    }

    #[test]
    fn paths_are_taken_from_the_files_directory() {
        let text = GOOD
            .replace("/tmp/hsdb.sqlite", "db/hsdb.sqlite")
            .replace("/tmp/hmd.sock", "../run/hmd.sock");
        let c = parse(&text).expect("valid");
        assert_eq!(
            c.hsdb.sqlite_path(),
            Some(Path::new("/etc/hvha/db/hsdb.sqlite"))
        );
        assert_eq!(c.admin_socket, Path::new("/etc/hvha/../run/hmd.sock"));
        let e = parse(&GOOD.replace("/tmp/hmd.sock", "/tmp/hsdb.sqlite"))
            .expect_err("same path")
            .to_string();
        assert!(
            e.contains(
                "admin_socket = \"/tmp/hsdb.sqlite\" is invalid: expected another path than hsdb"
            ),
            "{e}"
        );
        let e = parse(&GOOD.replace("/tmp/hsdb.sqlite", "hmd.toml"))
            .expect_err("the config file")
            .to_string();
        assert!(
            e.contains("another path than the configuration file's"),
            "{e}"
        );
        let long = format!("/{}/hmd.sock", "d".repeat(100));
        let e = parse(&GOOD.replace("/tmp/hmd.sock", &long))
            .expect_err("long")
            .to_string();
        assert!(e.contains("1..=100 bytes"), "{e}");
    }

    #[test]
    fn display_is_toml_that_parses_back_to_the_same_configuration() {
        for extra in [
            "",
            "ethertype = 0x88b5\nsynchronous = \"normal\"\nlog = \"debug\"\nlog_format = \"json\"\n\
             metrics_listen = \"[::1]:9464\"\nvm_miss_after_ms = 12345\n",
        ] {
            let c = parse(&format!("{GOOD}{extra}")).expect("valid");
            let text = c.to_string();
            assert!(text.contains("# "), "comments: {text}");
            assert_eq!(parse(&text).expect(&text), c, "{text}");
        }
    }

    #[test]
    fn an_hsdb_that_cannot_be_opened_gets_a_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none/hsdb.sqlite");
        let cause = hsdb_cause(&missing);
        assert!(cause.starts_with("; cause: its directory "), "{cause}");
        assert!(cause.contains("No such file or directory"), "{cause}");
        assert_eq!(hsdb_cause(dir.path()), "; cause: is a directory");
        // A usable place: no cause, and the probe left nothing behind.
        assert_eq!(hsdb_cause(&dir.path().join("hsdb.sqlite")), "");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn the_admin_socket_is_found_in_a_file_with_other_mistakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hmd.toml");
        let write = |text: &str| std::fs::write(&path, text).expect("write");
        write(&GOOD.replace("host_id = 1", "host_id = -1\nlog = \"warning\""));
        assert_eq!(
            Config::admin_socket_of(&path).expect("found"),
            Path::new("/tmp/hmd.sock")
        );
        write(&format!("{GOOD}hb_period_ms = = broken\n").replace("/tmp/hmd.sock", "hmd.sock"));
        assert_eq!(
            Config::admin_socket_of(&path).expect("found"),
            dir.path().join("hmd.sock")
        );
        write("interfaces = [\"x\"]\n");
        let e = Config::admin_socket_of(&path)
            .expect_err("absent")
            .to_string();
        assert!(e.contains("admin_socket"), "{e}");
    }

    #[test]
    fn the_hsdb_is_a_path_or_a_postgresql_url_without_password() {
        let url = "postgres://hvha@db1.example:5432/hsdb?connect_timeout=3";
        let c = parse(&GOOD.replace("/tmp/hsdb.sqlite", url)).expect("a URL");
        assert_eq!(c.hsdb.sqlite_path(), None);
        assert_eq!(c.hsdb.to_string(), "postgres://hvha@db1.example:5432/hsdb");
        // The effective configuration keeps the URL as written, and parses back.
        let text = c.to_string();
        assert!(text.contains(&format!("hsdb = \"{url}\"")), "{text}");
        assert_eq!(parse(&text).expect(&text), c);

        // A password in the URL is refused, and never shown.
        for bad in [
            "postgres://hvha:s3cret@db1/hsdb",
            "postgresql://hvha@db1/hsdb?password=s3cret",
        ] {
            let e = parse(&GOOD.replace("/tmp/hsdb.sqlite", bad))
                .expect_err(bad)
                .to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("line 5"), "{e}");
            assert!(e.contains("hsdb_password_file"), "{e}");
        }
        let e = parse(&GOOD.replace("/tmp/hsdb.sqlite", "mysql://u@h/db"))
            .expect_err("another scheme")
            .to_string();
        assert!(e.contains("unsupported scheme `mysql://`"), "{e}");

        // The password file: relative to the configuration's directory; refused for
        // SQLite, which has none.
        let c = parse(&format!(
            "{}hsdb_password_file = \"secret/hsdb.pw\"\n",
            GOOD.replace("/tmp/hsdb.sqlite", url)
        ))
        .expect("valid");
        assert_eq!(
            c.hsdb_password_file.as_deref(),
            Some(Path::new("/etc/hvha/secret/hsdb.pw"))
        );
        assert!(
            c.to_string()
                .contains("hsdb_password_file = \"/etc/hvha/secret/hsdb.pw\"")
        );
        let e = parse(&format!("{GOOD}hsdb_password_file = \"pw\"\n"))
            .expect_err("SQLite has no password")
            .to_string();
        assert!(
            e.contains("hsdb_password_file = \"/etc/hvha/pw\" is invalid"),
            "{e}"
        );
    }

    #[test]
    fn the_password_file_must_be_private_and_is_never_shown() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hmd.toml");
        let pw = dir.path().join("hsdb.pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let c = parse(&format!(
            "{}hsdb_password_file = {:?}\n",
            GOOD.replace("/tmp/hsdb.sqlite", "postgres://hvha@127.0.0.1:1/hsdb"),
            pw.display().to_string()
        ))
        .expect("valid");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let target = c.hsdb_target().expect("a private file");
        assert!(target.postgres().is_some_and(hsdb::PgTarget::has_password));
        assert!(!format!("{target} {target:?}").contains("s3cret"));
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = c
            .hsdb_target()
            .map_err(|e| c.password_error(&path, &e).to_string())
            .expect_err("readable by the group");
        assert!(e.contains("hsdb_password_file = "), "{e}");
        assert!(e.contains("has mode 0640"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    /// `--check-config` asks a PostgreSQL HSDB whether it answers: a note when it does
    /// or when it does not answer (hmd starts without it), an error when it refuses.
    #[test]
    fn the_check_asks_postgresql_and_fails_only_on_a_refusal() {
        let Some(server) = pglab::require("check_asks_postgresql") else {
            return;
        };
        let path = Path::new("/etc/hvha/hmd.toml");
        let with = |url: &str| parse(&GOOD.replace("/tmp/hsdb.sqlite", url)).expect(url);
        let url = server.fresh_database("hmd_check");
        let note = with(&url)
            .probe_hsdb(path)
            .expect("answers")
            .expect("a note");
        assert!(
            note.contains("PostgreSQL answers; an empty database: hmd creates the schema at start"),
            "{note}"
        );
        // Nothing was created: the same answer again.
        let again = with(&url)
            .probe_hsdb(path)
            .expect("answers")
            .expect("a note");
        assert_eq!(note, again);
        // Nothing listens on port 1.
        let note = with("postgres://hvha@127.0.0.1:1/hsdb")
            .probe_hsdb(path)
            .expect("not answering is no error")
            .expect("a note");
        assert!(note.contains("does not answer now"), "{note}");
        assert!(note.contains("hmd starts anyway"), "{note}");
        // A database that does not exist is a refusal: hmd would not start.
        let missing = format!("{}_none", url);
        let e = with(&missing)
            .probe_hsdb(path)
            .expect_err("no such database")
            .to_string();
        assert!(e.contains("hsdb = "), "{e}");
        assert_eq!(with(GOOD_SQLITE).probe_hsdb(path).expect("SQLite"), None);
    }

    const GOOD_SQLITE: &str = "/tmp/hsdb.sqlite";

    #[test]
    fn the_machine_check_reads_the_key_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let Some(eth) = dataplane::io::interfaces()
            .expect("interfaces")
            .into_iter()
            .find(|i| i.is_ethernet() && !i.is_loopback())
        else {
            eprintln!("SKIPPED: no Ethernet interface here");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hmd.toml");
        let key = dir.path().join("auth.key");
        std::fs::write(&key, format!("3 {}\n", "ab".repeat(32))).expect("write");
        let check = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
            parse(&format!(
                "{}auth = \"require\"\nauth_key_file = {:?}\n",
                GOOD.replace("veth-hm0", eth.name().as_str())
                    .replace("/tmp/", &format!("{}/", dir.path().display())),
                key.display().to_string()
            ))
            .expect("valid")
            .check_machine(&path)
            .map(|m| m.notes.join("\n"))
            .map_err(|e| e.to_string())
        };
        let notes = check(0o600).expect("a private key file");
        assert!(notes.contains("auth require: key 3 read"), "{notes}");
        let e = check(0o644).expect_err("readable by others");
        assert!(e.contains("auth_key_file = "), "{e}");
        assert!(e.contains("has mode 0644"), "{e}");
    }

    #[test]
    fn the_machine_check_names_key_value_and_cause_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let path = dir.path().join("hmd.toml");
        let with = |hsdb: &str, socket: &str, iface: &str| {
            parse(
                &GOOD
                    .replace("/tmp/hsdb.sqlite", hsdb)
                    .replace("/tmp/hmd.sock", socket)
                    .replace("veth-hm0", iface),
            )
            .expect("valid")
            .check_machine(&path)
            .map_err(|e| e.to_string())
        };
        let ok_sock = format!("{d}/hmd.sock");
        let e = with(&format!("{d}/db"), &ok_sock, "nosuchif9").expect_err("no interface");
        assert!(
            e.contains("interfaces[0] = \"nosuchif9\": no such interface"),
            "{e}"
        );
        let e = with(&format!("{d}/none/db"), &ok_sock, "lo").expect_err("loopback");
        assert!(
            e.contains("interfaces[0] = \"lo\": not an Ethernet interface"),
            "{e}"
        );
        // The remaining checks need an Ethernet interface; any will do.
        let Some(eth) = dataplane::io::interfaces()
            .expect("interfaces")
            .into_iter()
            .find(|i| i.is_ethernet() && !i.is_loopback())
        else {
            eprintln!("SKIPPED the HSDB and socket checks: no Ethernet interface here");
            return;
        };
        let eth = eth.name();
        let e = with(&format!("{d}/none/db"), &ok_sock, eth.as_str()).expect_err("no directory");
        assert!(
            e.contains(&format!(
                "hsdb = \"{d}/none/db\": its directory {d}/none cannot be used"
            )),
            "{e}"
        );
        std::fs::write(dir.path().join("text"), "not a database").expect("write");
        let e = with(&format!("{d}/text"), &ok_sock, eth.as_str()).expect_err("not sqlite");
        assert!(e.contains("is not an SQLite database"), "{e}");
        let e = with(d.to_string().as_str(), &ok_sock, eth.as_str()).expect_err("a directory");
        assert!(
            e.contains(&format!("hsdb = \"{d}\": is a directory")),
            "{e}"
        );
        let e = with(&format!("{d}/db"), &format!("{d}/text"), eth.as_str()).expect_err("file");
        assert!(
            e.contains(&format!(
                "admin_socket = \"{d}/text\": exists and is not a socket"
            )),
            "{e}"
        );
        let check = with(&format!("{d}/db"), &ok_sock, eth.as_str()).expect("fits");
        assert!(!check.running);
        assert!(
            check
                .notes
                .iter()
                .any(|n| n.contains("absent, created at start")),
            "{check:?}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["text"], "the checks created something");
    }
}
