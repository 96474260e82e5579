//! `hmd` configuration: a TOML file, every value checked against its range.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::io::InterfaceName;
use dataplane::message::Uuid;
use hsdb::{HostId, Synchronous};
use serde::Deserialize;

/// The configuration file as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    monitor_uuid: String,
    host_id: i64,
    host_name: String,
    hsdb: PathBuf,
    admin_socket: PathBuf,
    interfaces: Vec<String>,
    #[serde(default = "default_ethertype")]
    ethertype: u32,
    #[serde(default = "default_hello")]
    hello_period_ms: u64,
    #[serde(default = "default_hb")]
    hb_period_ms: u64,
    vm_miss_after_ms: Option<u64>,
    #[serde(default = "default_hm_hb")]
    hm_heartbeat_period_ms: u64,
    #[serde(default = "default_flush")]
    flush_ms: u64,
    #[serde(default = "default_sync")]
    synchronous: String,
    #[serde(default = "default_log")]
    log: String,
    metrics_listen: Option<String>,
    #[serde(default = "default_max_peers")]
    max_peers: u64,
    #[serde(default = "default_max_half_open")]
    max_half_open: u64,
}

fn default_max_peers() -> u64 {
    dataplane::endpoint::DEFAULT_MONITOR_MAX_PEERS as u64
}
fn default_max_half_open() -> u64 {
    dataplane::endpoint::DEFAULT_MONITOR_MAX_HALF_OPEN as u64
}
fn default_ethertype() -> u32 {
    u32::from(dataplane::wire::DEFAULT_ETHERTYPE)
}
fn default_hello() -> u64 {
    30_000 // seed 004 L8313
}
fn default_hb() -> u64 {
    10_000 // seed 004 L9021
}
fn default_hm_hb() -> u64 {
    30_000 // seed 004 L8439-8458
}
fn default_flush() -> u64 {
    10
}
fn default_sync() -> String {
    "full".into()
}
fn default_log() -> String {
    "info".into()
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
    /// The HSDB file.
    pub hsdb: PathBuf,
    /// The admin UNIX socket.
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
    /// SQLite durability.
    pub synchronous: Synchronous,
    /// Log filter (`tracing` syntax), overridden by `RUST_LOG`.
    pub log: String,
    /// Where to serve `GET /metrics` (Prometheus text) over HTTP, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Most peers (agents) per interface (docs/hvncp.md §6.5).
    pub max_peers: usize,
    /// Most half-open peers (never established) per interface; past it the oldest is
    /// evicted.
    pub max_half_open: usize,
}

/// A configuration problem, naming the key, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// A value is out of range.
    #[error("config key {key} = {value} is invalid: expected {allowed}")]
    Value {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

fn bad(key: &'static str, value: impl ToString, allowed: &'static str) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.to_string(),
        allowed,
    }
}

fn ms_in(
    key: &'static str,
    ms: u64,
    range: std::ops::RangeInclusive<u64>,
    allowed: &'static str,
) -> Result<Duration, ConfigError> {
    if range.contains(&ms) {
        Ok(Duration::from_millis(ms))
    } else {
        Err(bad(key, ms, allowed))
    }
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parse and validate configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let f: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let monitor_uuid = Uuid::parse(f.monitor_uuid.as_bytes()).map_err(|_| {
            bad(
                "monitor_uuid",
                format!("{:?}", f.monitor_uuid),
                "a UUID like 5c3196a3-c41f-4b5c-9861-dee6077081c6",
            )
        })?;
        if f.host_id < 0 {
            return Err(bad("host_id", f.host_id, "a non-negative integer"));
        }
        if f.host_name.is_empty() || f.host_name.len() > 64 {
            return Err(bad(
                "host_name",
                format!("{:?}", f.host_name),
                "1..=64 characters",
            ));
        }
        if f.interfaces.is_empty() || f.interfaces.len() > 8 {
            return Err(bad(
                "interfaces",
                format!("{:?}", f.interfaces),
                "1..=8 interface names",
            ));
        }
        let mut interfaces = Vec::new();
        for name in &f.interfaces {
            let iface = InterfaceName::new(name).map_err(|_| {
                bad(
                    "interfaces",
                    format!("{name:?}"),
                    "interface names of 1..=15 bytes without '/' or spaces",
                )
            })?;
            if interfaces.contains(&iface) {
                return Err(bad(
                    "interfaces",
                    format!("{name:?} twice"),
                    "distinct names",
                ));
            }
            interfaces.push(iface);
        }
        let ethertype = u16::try_from(f.ethertype)
            .ok()
            .filter(|e| *e >= 0x0600)
            .ok_or_else(|| {
                bad(
                    "ethertype",
                    format!("{:#x}", f.ethertype),
                    "0x0600..=0xffff",
                )
            })?;
        let hello_period = ms_in(
            "hello_period_ms",
            f.hello_period_ms,
            100..=3_600_000,
            "100..=3600000 (ms)",
        )?;
        let hb_period = ms_in(
            "hb_period_ms",
            f.hb_period_ms,
            100..=3_600_000,
            "100..=3600000 (ms)",
        )?;
        let miss_default = 2 * f.hb_period_ms;
        let miss_ms = f.vm_miss_after_ms.unwrap_or(miss_default);
        if miss_ms <= f.hb_period_ms || miss_ms > 36_000_000 {
            return Err(bad(
                "vm_miss_after_ms",
                miss_ms,
                "more than hb_period_ms and at most 36000000 (ms); default 2 × hb_period_ms",
            ));
        }
        let hm_heartbeat_period = ms_in(
            "hm_heartbeat_period_ms",
            f.hm_heartbeat_period_ms,
            100..=3_600_000,
            "100..=3600000 (ms)",
        )?;
        let flush = ms_in("flush_ms", f.flush_ms, 0..=1000, "0..=1000 (ms)")?;
        let synchronous = match f.synchronous.as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => {
                return Err(bad(
                    "synchronous",
                    format!("{other:?}"),
                    "\"full\" (no committed transition lost on power failure) or \"normal\"",
                ));
            }
        };
        if f.hsdb.as_os_str().is_empty() {
            return Err(bad("hsdb", "\"\"", "a file path"));
        }
        if f.admin_socket.as_os_str().is_empty() || f.admin_socket.as_os_str().len() > 100 {
            return Err(bad(
                "admin_socket",
                f.admin_socket.display(),
                "a path of 1..=100 bytes",
            ));
        }
        let metrics_listen = match &f.metrics_listen {
            None => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                bad(
                    "metrics_listen",
                    format!("{text:?}"),
                    "an address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\"",
                )
            })?),
        };
        let max_peers = usize::try_from(f.max_peers)
            .ok()
            .filter(|n| (1..=dataplane::endpoint::MAX_PEERS_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(
                    "max_peers",
                    f.max_peers,
                    "1..=16777216 (peers per interface)",
                )
            })?;
        let max_half_open = usize::try_from(f.max_half_open)
            .ok()
            .filter(|n| (1..=max_peers).contains(n))
            .ok_or_else(|| {
                bad(
                    "max_half_open",
                    f.max_half_open,
                    "1..=max_peers (peers per interface not yet established)",
                )
            })?;
        Ok(Config {
            monitor_uuid,
            host_id: HostId(f.host_id),
            host_name: f.host_name,
            hsdb: f.hsdb,
            admin_socket: f.admin_socket,
            interfaces,
            ethertype,
            hello_period,
            hb_period,
            vm_miss_after: Duration::from_millis(miss_ms),
            hm_heartbeat_period,
            flush,
            synchronous,
            log: f.log,
            metrics_listen,
            max_peers,
            max_half_open,
        })
    }
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

    #[test]
    fn defaults_follow_the_seed() {
        let c = Config::parse(GOOD).expect("valid");
        assert_eq!(c.hello_period, Duration::from_secs(30));
        assert_eq!(c.hb_period, Duration::from_secs(10));
        assert_eq!(c.vm_miss_after, Duration::from_secs(20));
        assert_eq!(c.hm_heartbeat_period, Duration::from_secs(30));
        assert_eq!(c.ethertype, 0x0600);
        assert_eq!(c.synchronous, Synchronous::Full);
        assert_eq!(c.max_peers, 131_072);
        assert_eq!(c.max_half_open, 16_384);
    }

    #[test]
    fn peer_limits_are_checked() {
        assert_eq!(
            err("max_peers = 0\n"),
            "config key max_peers = 0 is invalid: expected 1..=16777216 (peers per interface)"
        );
        assert!(err("max_peers = 16777217\n").contains("max_peers = 16777217"));
        assert_eq!(
            err("max_peers = 1000\nmax_half_open = 1001\n"),
            "config key max_half_open = 1001 is invalid: expected 1..=max_peers (peers per interface not yet established)"
        );
        assert!(err("max_half_open = 0\n").contains("max_half_open = 0"));
        let c = Config::parse(&format!(
            "{GOOD}max_peers = 200000\nmax_half_open = 200000\n"
        ))
        .expect("valid");
        assert_eq!((c.max_peers, c.max_half_open), (200_000, 200_000));
    }

    fn err(extra: &str) -> String {
        Config::parse(&format!("{GOOD}{extra}"))
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn every_bad_value_names_key_and_range() {
        assert_eq!(
            err("hb_period_ms = 50\n"),
            "config key hb_period_ms = 50 is invalid: expected 100..=3600000 (ms)"
        );
        assert!(err("hello_period_ms = 0\n").contains("hello_period_ms = 0"));
        assert!(err("vm_miss_after_ms = 5000\n").contains("vm_miss_after_ms = 5000"));
        assert!(err("ethertype = 0x0100\n").contains("ethertype = 0x100"));
        assert!(err("synchronous = \"off\"\n").contains("synchronous = \"off\""));
        assert!(err("flush_ms = 5000\n").contains("flush_ms"));
        assert!(err("colour = 1\n").contains("unknown field `colour`"));
        assert_eq!(
            err("metrics_listen = \"localhost\"\n"),
            "config key metrics_listen = \"localhost\" is invalid: expected an address and port \
             such as \"127.0.0.1:9464\" or \"[::1]:9464\""
        );
        let c =
            Config::parse(&format!("{GOOD}metrics_listen = \"127.0.0.1:9464\"\n")).expect("valid");
        assert_eq!(c.metrics_listen, "127.0.0.1:9464".parse().ok());
        assert_eq!(Config::parse(GOOD).expect("valid").metrics_listen, None);
        let e = Config::parse(&GOOD.replace("veth-hm0", "a name that is too long"))
            .expect_err("bad name")
            .to_string();
        assert!(e.contains("interfaces"), "{e}");
        let e = Config::parse(&GOOD.replace("5c3196a3", "zz"))
            .expect_err("bad uuid")
            .to_string();
        assert!(e.contains("monitor_uuid"), "{e}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/hmd.toml"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/hmd.toml"), "{e}");
    }
}
