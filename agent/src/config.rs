//! The agent's configuration file: TOML, every key checked against its range.
//!
//! ```toml
//! vm_uuid = "61be20f0-09a8-4753-b5e5-564f8a545ed5"   # required
//! ostype = "linux"                # announced in the SYN
//! interfaces = ["eth1", "eth2"]   # optional; absent: every suitable interface
//! rescan_ms = 5000                # interface rescan period (seed 004 L8771)
//! ethertype = 0x0600              # HVNCP EtherType (seed 004 L8349)
//! log = "info"                    # RUST_LOG, when set, wins
//! ```
//!
//! This module owns parsing and validation only; it never looks at the machine's
//! interfaces (that is `interfaces`) and never opens anything.

use std::fmt;
use std::time::Duration;

use dataplane::endpoint::EndpointConfig;
use dataplane::io::InterfaceName;
use dataplane::message::Uuid;
use dataplane::wire::MacAddr;
use serde::Deserialize;

/// Default interface rescan period: 5 s (seed 004 L8771).
pub const DEFAULT_RESCAN_MS: u64 = 5000;
/// Allowed rescan periods, in milliseconds.
pub const RESCAN_MS_RANGE: std::ops::RangeInclusive<u64> = 1000..=60_000;
/// HVNCP's EtherType (seed 004 L8349).
pub const DEFAULT_ETHERTYPE: u16 = 0x0600;
/// Allowed EtherTypes: values below 0x0600 are 802.3 lengths, not types.
pub const ETHERTYPE_RANGE: std::ops::RangeInclusive<u16> = 0x0600..=0xffff;
/// Log levels the `log` key accepts.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The file as written. Integers are read as `i64` so that a negative or huge value
/// gets our range message rather than serde's type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vm_uuid: String,
    ostype: Option<String>,
    interfaces: Option<Vec<String>>,
    rescan_ms: Option<i64>,
    ethertype: Option<i64>,
    log: Option<String>,
}

/// Which interfaces carry HVNCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChoice {
    /// Exactly these (each used only while it is up and carries no IP address).
    Configured(Vec<InterfaceName>),
    /// Every interface that is up, Ethernet, not loopback and has no IP address
    /// (seed 004 L11244-11251).
    Auto,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This VM's UUID, sent in the SYN.
    pub vm_uuid: Uuid,
    /// OS type, sent in the SYN.
    pub ostype: String,
    /// Which interfaces to use.
    pub interfaces: InterfaceChoice,
    /// How often the interface list is read again.
    pub rescan: Duration,
    /// EtherType of HVNCP frames.
    pub ethertype: u16,
    /// Log level (one of [`LOG_LEVELS`]).
    pub log: String,
}

/// What is wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, a missing or unknown key, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A value outside its allowed range.
    #[error("{key} = {value} is invalid: allowed {allowed}")]
    Invalid {
        /// The key, e.g. `rescan_ms` or `interfaces[1]`.
        key: String,
        /// The value as written.
        value: String,
        /// The allowed values, in words.
        allowed: String,
    },
}

fn invalid(key: &str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

impl Config {
    /// Parse and validate the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            // toml's message ends with a newline and quotes the offending line.
            ConfigError::Syntax(e.to_string().trim_end().to_owned())
        })?;
        let vm_uuid = Uuid::parse(file.vm_uuid.as_bytes()).map_err(|_| {
            invalid(
                "vm_uuid",
                format!("{:?}", file.vm_uuid),
                "a UUID: 8-4-4-4-12 hexadecimal digits, e.g. \"61be20f0-09a8-4753-b5e5-564f8a545ed5\"",
            )
        })?;

        let ostype = file.ostype.unwrap_or_else(|| "linux".to_owned());
        // The endpoint owns the SYN grammar; ask it rather than repeat the rule here.
        EndpointConfig::agent(MacAddr([2, 0, 0, 0, 0, 1]), vm_uuid, &ostype)
            .validate()
            .map_err(|e| invalid(e.key, e.value, e.allowed))?;

        let interfaces = match file.interfaces {
            None => InterfaceChoice::Auto,
            Some(names) => {
                if names.is_empty() {
                    return Err(invalid(
                        "interfaces",
                        "[]",
                        "1 or more interface names; leave the key out to use every \
                         interface that is up, Ethernet, not loopback and has no IP address",
                    ));
                }
                let mut parsed: Vec<InterfaceName> = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let key = format!("interfaces[{i}]");
                    let n = InterfaceName::new(name).map_err(|_| {
                        invalid(
                            &key,
                            format!("{name:?}"),
                            "an interface name: 1..=15 bytes, no '/', ':', whitespace or NUL, \
                             not \".\" or \"..\"",
                        )
                    })?;
                    if parsed.contains(&n) {
                        return Err(invalid(
                            &key,
                            format!("{name:?}"),
                            "each interface once (it is listed twice)",
                        ));
                    }
                    parsed.push(n);
                }
                InterfaceChoice::Configured(parsed)
            }
        };

        let rescan_ms = file.rescan_ms.unwrap_or(DEFAULT_RESCAN_MS as i64);
        let rescan_ms = u64::try_from(rescan_ms)
            .ok()
            .filter(|ms| RESCAN_MS_RANGE.contains(ms))
            .ok_or_else(|| {
                invalid(
                    "rescan_ms",
                    rescan_ms,
                    format!(
                        "{}..={} (milliseconds)",
                        RESCAN_MS_RANGE.start(),
                        RESCAN_MS_RANGE.end()
                    ),
                )
            })?;

        let ethertype = file.ethertype.unwrap_or(i64::from(DEFAULT_ETHERTYPE));
        let ethertype = u16::try_from(ethertype)
            .ok()
            .filter(|t| ETHERTYPE_RANGE.contains(t))
            .ok_or_else(|| {
                invalid(
                    "ethertype",
                    if ethertype < 0 {
                        ethertype.to_string()
                    } else {
                        format!("{ethertype:#06x}")
                    },
                    format!(
                        "{:#06x}..={:#06x}",
                        ETHERTYPE_RANGE.start(),
                        ETHERTYPE_RANGE.end()
                    ),
                )
            })?;

        let log = file.log.unwrap_or_else(|| "info".to_owned());
        if !LOG_LEVELS.contains(&log.as_str()) {
            return Err(invalid(
                "log",
                format!("{log:?}"),
                format!("one of {}", LOG_LEVELS.join(", ")),
            ));
        }

        Ok(Config {
            vm_uuid,
            ostype,
            interfaces,
            rescan: Duration::from_millis(rescan_ms),
            ethertype,
            log,
        })
    }
}

/// The effective configuration as TOML, defaults included: what `--check-config`
/// prints. Feeding it back to [`Config::parse`] gives the same configuration.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "vm_uuid = \"{}\"", self.vm_uuid)?;
        writeln!(f, "ostype = \"{}\"", self.ostype)?;
        match &self.interfaces {
            InterfaceChoice::Configured(names) => {
                let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                writeln!(f, "interfaces = [{}]", list.join(", "))?;
            }
            InterfaceChoice::Auto => writeln!(
                f,
                "# interfaces: not set, so every interface that is up, Ethernet, not loopback \
                 and has no IP address"
            )?,
        }
        writeln!(f, "rescan_ms = {}", self.rescan.as_millis())?;
        writeln!(f, "ethertype = {:#06x}", self.ethertype)?;
        writeln!(f, "log = \"{}\"", self.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("vm_uuid = \"{UUID}\"\n{extra}"))
    }

    fn error(extra: &str) -> String {
        parse(extra).expect_err(extra).to_string()
    }

    #[test]
    fn defaults() {
        let c = parse("").expect("valid");
        assert_eq!(c.vm_uuid.to_string(), UUID);
        assert_eq!(c.ostype, "linux");
        assert_eq!(c.interfaces, InterfaceChoice::Auto);
        assert_eq!(c.rescan, Duration::from_secs(5));
        assert_eq!(c.ethertype, 0x0600);
        assert_eq!(c.log, "info");
    }

    #[test]
    fn every_key_set() {
        let c = parse(
            "ostype = \"aix\"\ninterfaces = [\"eth1\", \"eth2\"]\nrescan_ms = 1000\n\
             ethertype = 0x88b5\nlog = \"debug\"",
        )
        .expect("valid");
        assert_eq!(c.ostype, "aix");
        let names = ["eth1", "eth2"].map(|n| InterfaceName::new(n).expect("valid"));
        assert_eq!(c.interfaces, InterfaceChoice::Configured(names.to_vec()));
        assert_eq!(c.rescan, Duration::from_secs(1));
        assert_eq!(c.ethertype, 0x88b5);
        assert_eq!(c.log, "debug");
    }

    #[test]
    fn display_round_trips() {
        for extra in ["", "interfaces = [\"eth1\", \"eth2\"]\nethertype = 0xffff"] {
            let c = parse(extra).expect("valid");
            let text = c.to_string();
            assert_eq!(Config::parse(&text).expect(&text), c, "{text}");
        }
        assert!(
            parse("")
                .expect("valid")
                .to_string()
                .contains("ethertype = 0x0600")
        );
    }

    #[test]
    fn range_errors_name_the_key_the_value_and_the_range() {
        let cases = [
            (
                "rescan_ms = 999",
                "rescan_ms = 999 is invalid: allowed 1000..=60000 (milliseconds)",
            ),
            (
                "rescan_ms = 60001",
                "rescan_ms = 60001 is invalid: allowed 1000..=60000",
            ),
            (
                "rescan_ms = -5",
                "rescan_ms = -5 is invalid: allowed 1000..=60000",
            ),
            (
                "ethertype = 0x05ff",
                "ethertype = 0x05ff is invalid: allowed 0x0600..=0xffff",
            ),
            (
                "ethertype = 0x10000",
                "ethertype = 0x10000 is invalid: allowed 0x0600..=0xffff",
            ),
            (
                "ethertype = -1",
                "ethertype = -1 is invalid: allowed 0x0600..=0xffff",
            ),
            (
                "log = \"verbose\"",
                "log = \"verbose\" is invalid: allowed one of off, error, warn, info, debug, trace",
            ),
            (
                "ostype = \"li nux\"",
                "ostype = \"li nux\" is invalid: allowed 1..=32 characters of A-Z a-z 0-9 _ . -",
            ),
            (
                "ostype = \"\"",
                "ostype = \"\" is invalid: allowed 1..=32 characters",
            ),
            (
                "interfaces = []",
                "interfaces = [] is invalid: allowed 1 or more interface names",
            ),
            (
                "interfaces = [\"eth1\", \"eth1:0\"]",
                "interfaces[1] = \"eth1:0\" is invalid: allowed an interface name: 1..=15 bytes",
            ),
            (
                "interfaces = [\"x234567890123456\"]",
                "interfaces[0] = \"x234567890123456\" is invalid: allowed an interface name",
            ),
            (
                "interfaces = [\"eth1\", \"eth1\"]",
                "interfaces[1] = \"eth1\" is invalid: allowed each interface once",
            ),
        ];
        for (extra, want) in cases {
            let got = error(extra);
            assert!(got.starts_with(want), "{extra}: {got}");
        }
    }

    #[test]
    fn bad_uuid_is_named() {
        let err = Config::parse("vm_uuid = \"61be20f0\"")
            .expect_err("bad uuid")
            .to_string();
        assert!(
            err.starts_with("vm_uuid = \"61be20f0\" is invalid: allowed a UUID: 8-4-4-4-12"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_key() {
        let missing = Config::parse("ostype = \"linux\"")
            .expect_err("no uuid")
            .to_string();
        assert!(missing.contains("missing field `vm_uuid`"), "{missing}");
        let unknown = error("rescan = 5000");
        assert!(unknown.contains("unknown field `rescan`"), "{unknown}");
        assert!(
            unknown.contains("rescan_ms"),
            "lists the known keys: {unknown}"
        );
        let wrong_type = error("rescan_ms = \"5s\"");
        assert!(wrong_type.contains("rescan_ms"), "{wrong_type}");
        assert!(Config::parse("vm_uuid = ").is_err());
    }
}
