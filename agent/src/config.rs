//! The agent's configuration file: TOML, every key checked against its range.
//!
//! ```toml
//! vm_uuid = "61be20f0-09a8-4753-b5e5-564f8a545ed5"   # required
//! ostype = "linux"                # announced in the SYN
//! interfaces = ["eth1", "eth2"]   # optional; absent: every suitable interface
//! rescan_ms = 5000                # interface rescan period (seed 004 L8771)
//! ethertype = 0x0600              # HVNCP EtherType (seed 004 L8349)
//! log = "info"                    # a valid RUST_LOG, when set, wins
//! log_format = "text"             # or "json"
//! auth = "off"                    # authenticated frames: off, accept, require
//! auth_key_file = "/etc/hvha/auth.key"          # needed unless auth = "off"
//! auth_second_key_file = "/etc/hvha/next.key"   # optional, during a key rotation
//!
//! [ame]                           # application monitoring (docs/agent.md)
//! socket = "/run/vmmd/ctl.sock"   # vmmd ctl's UNIX socket (root only)
//! apps_file = "/var/lib/vmmd/apps.toml"   # the applications, written by vmmd ctl
//! ```
//!
//! This module owns parsing and validation only; it never looks at the machine's
//! interfaces (that is `interfaces`) and never opens anything. Errors carry the line
//! of the value (TOML spans) for the message `main` prints with the file's name.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use dataplane::auth::{AuthConfig, AuthConfigError, AuthMode};
use dataplane::endpoint::EndpointConfig;
use dataplane::io::InterfaceName;
use dataplane::message::Uuid;
use dataplane::wire::MacAddr;
use hvha_daemon::config::{Refused, ethertype_value, line_of, log_format_value, log_value};
use hvha_daemon::log::{LogFilter, LogFormat};
use serde::Deserialize;
use toml::Spanned;

/// Default interface rescan period: 5 s (seed 004 L8771).
pub const DEFAULT_RESCAN_MS: u64 = 5000;
/// Allowed rescan periods, in milliseconds.
pub const RESCAN_MS_RANGE: std::ops::RangeInclusive<u64> = 1000..=60_000;
/// HVNCP's EtherType (seed 004 L8349).
pub const DEFAULT_ETHERTYPE: u16 = 0x0600;

/// The file as written. Integers are read as `i64` so that a negative or huge value
/// gets our range message rather than serde's type error; every value keeps its place
/// in the file for the message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vm_uuid: Spanned<String>,
    ostype: Option<Spanned<String>>,
    interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    rescan_ms: Option<Spanned<i64>>,
    ethertype: Option<Spanned<i64>>,
    log: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    auth_key_file: Option<Spanned<std::path::PathBuf>>,
    auth_second_key_file: Option<Spanned<std::path::PathBuf>>,
    ame: Option<AmeFile>,
}

/// The `[ame]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmeFile {
    socket: Option<Spanned<std::path::PathBuf>>,
    apps_file: Option<Spanned<std::path::PathBuf>>,
}

/// Default path of `vmmd ctl`'s socket.
pub const DEFAULT_CTL_SOCKET: &str = "/run/vmmd/ctl.sock";
/// Default path of the applications' configuration file.
pub const DEFAULT_APPS_FILE: &str = "/var/lib/vmmd/apps.toml";
/// Longest socket path a `sockaddr_un` holds (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where application monitoring keeps its socket and its applications (`[ame]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmeSettings {
    /// The UNIX socket `vmmd ctl` talks to; its directory is made 0700, the socket 0600.
    pub socket: std::path::PathBuf,
    /// The applications and dependencies, written atomically on every change.
    pub apps_file: std::path::PathBuf,
}

impl Default for AmeSettings {
    fn default() -> Self {
        Self {
            socket: DEFAULT_CTL_SOCKET.into(),
            apps_file: DEFAULT_APPS_FILE.into(),
        }
    }
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
    /// Log filter, overridden by a valid `RUST_LOG`.
    pub log: LogFilter,
    /// Log line format.
    pub log_format: LogFormat,
    /// Authenticated frames (docs/hvncp.md §7): mode and key files, read at start.
    pub auth: AuthConfig,
    /// Application monitoring: the ctl socket and the applications' file.
    pub ame: AmeSettings,
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
        /// The value's line in the file, when known.
        line: Option<usize>,
        /// The key, e.g. `rescan_ms` or `interfaces[1]`.
        key: String,
        /// The value as written.
        value: String,
        /// The allowed values, in words.
        allowed: String,
    },
}

impl ConfigError {
    /// The message with the file's name (and the value's line when known).
    pub fn in_file(&self, path: &std::path::Path) -> String {
        match self {
            ConfigError::Invalid {
                line: Some(line), ..
            } => format!("config file {} line {line}: {self}", path.display()),
            _ => format!("config file {}: {self}", path.display()),
        }
    }
}

fn invalid(key: &str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        line: None,
        key: key.to_owned(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// The error for the value of `key` at `value`'s place in `text`, refused for the reason
/// given.
fn refused<'t, T>(
    text: &'t str,
    key: &'static str,
    value: &Spanned<T>,
) -> impl FnOnce(Refused) -> ConfigError + 't {
    let span = value.span();
    move |r| at(text, span)(invalid(key, r.value, r.allowed))
}

/// Attach the line of `span` in `text` to an [`ConfigError::Invalid`].
fn at(text: &str, span: Range<usize>) -> impl Fn(ConfigError) -> ConfigError + '_ {
    move |e| match e {
        ConfigError::Invalid {
            key,
            value,
            allowed,
            ..
        } => ConfigError::Invalid {
            line: Some(line_of(text, span.start)),
            key,
            value,
            allowed,
        },
        other => other,
    }
}

impl Config {
    /// Parse and validate the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            // toml's message ends with a newline and quotes the offending line.
            ConfigError::Syntax(e.to_string().trim_end().to_owned())
        })?;
        let vm_uuid = Uuid::parse(file.vm_uuid.get_ref().as_bytes())
            .ok()
            .filter(|u| *u != Uuid::default())
            .ok_or_else(|| {
                invalid(
                    "vm_uuid",
                    format!("{:?}", file.vm_uuid.get_ref()),
                    "a UUID other than all zeros: 8-4-4-4-12 hexadecimal digits, e.g. \
                     \"61be20f0-09a8-4753-b5e5-564f8a545ed5\"",
                )
            })
            .map_err(at(text, file.vm_uuid.span()))?;

        let (ostype, ostype_span) = match file.ostype {
            Some(o) => {
                let span = o.span();
                (o.into_inner(), Some(span))
            }
            None => ("linux".to_owned(), None),
        };
        // The endpoint owns the SYN grammar; ask it rather than repeat the rule here.
        EndpointConfig::agent(MacAddr([2, 0, 0, 0, 0, 1]), vm_uuid, &ostype)
            .validate()
            .map_err(|e| invalid(e.key, e.value, e.allowed))
            .map_err(at(text, ostype_span.unwrap_or(0..0)))?;

        let interfaces = match file.interfaces {
            None => InterfaceChoice::Auto,
            Some(names) => {
                if names.get_ref().is_empty() {
                    return Err(invalid(
                        "interfaces",
                        "[]",
                        "1 or more interface names; leave the key out to use every \
                         interface that is up, Ethernet, not loopback and has no IP address",
                    ))
                    .map_err(at(text, names.span()));
                }
                let mut parsed: Vec<InterfaceName> = Vec::with_capacity(names.get_ref().len());
                for (i, name) in names.get_ref().iter().enumerate() {
                    let key = format!("interfaces[{i}]");
                    let located = at(text, name.span());
                    let name = name.get_ref();
                    let n = InterfaceName::new(name)
                        .map_err(|_| {
                            invalid(
                                &key,
                                format!("{name:?}"),
                                "an interface name: 1..=15 bytes, no '/', ':', whitespace or NUL, \
                                 not \".\" or \"..\"",
                            )
                        })
                        .map_err(&located)?;
                    if parsed.contains(&n) {
                        return Err(located(invalid(
                            &key,
                            format!("{name:?}"),
                            "each interface once (it is listed twice)",
                        )));
                    }
                    parsed.push(n);
                }
                InterfaceChoice::Configured(parsed)
            }
        };

        let rescan_ms = match &file.rescan_ms {
            None => DEFAULT_RESCAN_MS,
            Some(v) => u64::try_from(*v.get_ref())
                .ok()
                .filter(|ms| RESCAN_MS_RANGE.contains(ms))
                .ok_or_else(|| {
                    invalid(
                        "rescan_ms",
                        v.get_ref(),
                        format!(
                            "{}..={} (milliseconds)",
                            RESCAN_MS_RANGE.start(),
                            RESCAN_MS_RANGE.end()
                        ),
                    )
                })
                .map_err(at(text, v.span()))?,
        };

        let ethertype = match &file.ethertype {
            None => DEFAULT_ETHERTYPE,
            Some(v) => ethertype_value(*v.get_ref()).map_err(refused(text, "ethertype", v))?,
        };

        let log = match &file.log {
            None => LogFilter::default(),
            Some(l) => log_value(l.get_ref()).map_err(refused(text, "log", l))?,
        };
        let log_format = match &file.log_format {
            None => LogFormat::default(),
            Some(l) => log_format_value(l.get_ref()).map_err(refused(text, "log_format", l))?,
        };

        let mode = match &file.auth {
            None => AuthMode::Off,
            Some(m) => m
                .get_ref()
                .parse()
                .map_err(|_| {
                    invalid(
                        "auth",
                        format!("{:?}", m.get_ref()),
                        "one of off, accept, require",
                    )
                })
                .map_err(at(text, m.span()))?,
        };
        let span = |s: &Option<Spanned<std::path::PathBuf>>| s.as_ref().map(Spanned::span);
        let (key_span, second_span) = (span(&file.auth_key_file), span(&file.auth_second_key_file));
        let auth = AuthConfig {
            mode,
            key_file: file.auth_key_file.map(Spanned::into_inner),
            second_key_file: file.auth_second_key_file.map(Spanned::into_inner),
        };
        auth.validate().map_err(|e| match e {
            AuthConfigError::SecondWithoutFirst => at(text, second_span.unwrap_or(0..0))(invalid(
                "auth_second_key_file",
                "set",
                "only with auth_key_file (the key frames are sent with)",
            )),
            _ => {
                let e = invalid(
                    "auth_key_file",
                    "(missing)",
                    "a key file when auth is accept or require",
                );
                match key_span {
                    Some(s) => at(text, s)(e),
                    None => e,
                }
            }
        })?;

        let ame = match file.ame {
            None => AmeSettings::default(),
            Some(a) => ame_settings(text, a)?,
        };

        Ok(Config {
            ame,
            vm_uuid,
            ostype,
            interfaces,
            rescan: Duration::from_millis(rescan_ms),
            ethertype,
            log,
            log_format,
            auth,
        })
    }
}

/// Check the `[ame]` paths: absolute, UTF-8 without control characters, the socket's
/// short enough for a `sockaddr_un`.
fn ame_settings(text: &str, file: AmeFile) -> Result<AmeSettings, ConfigError> {
    let mut out = AmeSettings::default();
    for (key, value, slot) in [
        ("ame.socket", file.socket, &mut out.socket),
        ("ame.apps_file", file.apps_file, &mut out.apps_file),
    ] {
        let Some(value) = value else { continue };
        let span = value.span();
        let path = value.into_inner();
        let shown = format!("{:?}", path.display().to_string());
        let ok_text = path
            .to_str()
            .is_some_and(|p| !p.chars().any(char::is_control));
        let err = if !path.is_absolute() || !ok_text || path.file_name().is_none() {
            Some("an absolute path to a file, without control characters")
        } else if key == "ame.socket" && path.as_os_str().len() > MAX_SOCKET_PATH {
            Some("a path of at most 107 bytes (a UNIX socket address)")
        } else {
            None
        };
        if let Some(allowed) = err {
            return Err(at(text, span)(invalid(key, shown, allowed)));
        }
        *slot = path;
    }
    Ok(out)
}

/// The effective configuration as TOML, defaults included: what `--check-config`
/// prints. Feeding it back to [`Config::parse`] gives the same configuration.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# this VM's identity, sent in its SYN")?;
        writeln!(f, "vm_uuid = \"{}\"", self.vm_uuid)?;
        writeln!(f, "# OS type announced in the SYN (default \"linux\")")?;
        writeln!(f, "ostype = \"{}\"", self.ostype)?;
        match &self.interfaces {
            InterfaceChoice::Configured(names) => {
                let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                writeln!(f, "# HVNCP interfaces")?;
                writeln!(f, "interfaces = [{}]", list.join(", "))?;
            }
            InterfaceChoice::Auto => writeln!(
                f,
                "# interfaces: not set, so every interface that is up, Ethernet, not loopback \
                 and has no IP address"
            )?,
        }
        writeln!(f, "# interface rescan period (default {DEFAULT_RESCAN_MS})")?;
        writeln!(f, "rescan_ms = {}", self.rescan.as_millis())?;
        writeln!(f, "# HVNCP EtherType (default 0x0600)")?;
        writeln!(f, "ethertype = {:#06x}", self.ethertype)?;
        writeln!(f, "# log filter (a valid RUST_LOG wins; default \"info\")")?;
        writeln!(f, "log = \"{}\"", self.log)?;
        writeln!(
            f,
            "# log lines: \"text\" (key=value fields, default) or \"json\""
        )?;
        writeln!(f, "log_format = \"{}\"", self.log_format.as_str())?;
        writeln!(
            f,
            "# authenticated frames: \"off\" (default), \"accept\" or \"require\""
        )?;
        writeln!(f, "auth = \"{}\"", self.auth.mode)?;
        for (key, path) in [
            ("auth_key_file", &self.auth.key_file),
            ("auth_second_key_file", &self.auth.second_key_file),
        ] {
            if let Some(p) = path {
                writeln!(f, "{key} = {:?}", p.display().to_string())?;
            }
        }
        writeln!(f, "\n[ame]")?;
        writeln!(
            f,
            "# vmmd ctl's UNIX socket, root only (default \"{DEFAULT_CTL_SOCKET}\")"
        )?;
        writeln!(f, "socket = {:?}", self.ame.socket.display().to_string())?;
        writeln!(
            f,
            "# the applications, written by vmmd ctl (default \"{DEFAULT_APPS_FILE}\")"
        )?;
        writeln!(
            f,
            "apps_file = {:?}",
            self.ame.apps_file.display().to_string()
        )?;
        Ok(())
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
        assert_eq!(c.log.as_str(), "info");
        assert_eq!(c.log_format, LogFormat::Text);
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
        assert_eq!(c.log.as_str(), "debug");
    }

    #[test]
    fn auth_keys_are_checked() {
        assert_eq!(parse("").expect("valid").auth, AuthConfig::default());
        let c = parse("auth = \"require\"\nauth_key_file = \"/etc/hvha/a.key\"").expect("valid");
        assert_eq!(c.auth.mode, AuthMode::Require);
        assert_eq!(
            c.auth.key_file.as_deref(),
            Some(std::path::Path::new("/etc/hvha/a.key"))
        );
        assert!(error("auth = \"yes\"").contains("auth = \"yes\" is invalid"));
        assert!(error("auth = \"require\"").contains("auth_key_file = (missing)"));
        assert!(error("auth_second_key_file = \"/k\"").contains("auth_second_key_file = set"));
    }

    #[test]
    fn display_round_trips() {
        for extra in [
            "",
            "interfaces = [\"eth1\", \"eth2\"]\nethertype = 0xffff\nlog = \"info,agent=debug\"\n\
             log_format = \"json\"",
            "auth = \"accept\"\nauth_key_file = \"/k/a\"\nauth_second_key_file = \"/k/b\"",
            "[ame]\nsocket = \"/run/x/s.sock\"\napps_file = \"/srv/apps.toml\"",
        ] {
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
                "log = \"verbose\" is invalid: allowed a level (off, error, warn, info, debug, trace)",
            ),
            (
                "log = \"warning\"",
                "log = \"warning\" is invalid: allowed a level",
            ),
            (
                "log_format = \"xml\"",
                "log_format = \"xml\" is invalid: allowed \"text\"",
            ),
            (
                "ethertype = 0x0800",
                "ethertype = 0x0800 is invalid: allowed an EtherType of no other protocol: 0x0800 is IPv4",
            ),
            (
                "ethertype = 0x88cc",
                "ethertype = 0x88cc is invalid: allowed an EtherType of no other protocol",
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
    fn errors_carry_the_line_of_the_value() {
        let e = parse("ostype = \"aix\"\n\nrescan_ms = 5\n").expect_err("range");
        assert_eq!(
            e.in_file(std::path::Path::new("/etc/hvha/vmmd.toml")),
            "config file /etc/hvha/vmmd.toml line 4: rescan_ms = 5 is invalid: allowed \
             1000..=60000 (milliseconds)"
        );
        let e = parse("interfaces = [\"eth1\",\n  \"eth1\"]").expect_err("twice");
        assert!(
            matches!(e, ConfigError::Invalid { line: Some(3), .. }),
            "{e:?}"
        );
        let e = parse("colour = 1").expect_err("unknown");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn the_ame_section() {
        let c = parse("").expect("valid");
        assert_eq!(c.ame, AmeSettings::default());
        assert_eq!(c.ame.socket, std::path::Path::new("/run/vmmd/ctl.sock"));
        assert_eq!(
            c.ame.apps_file,
            std::path::Path::new("/var/lib/vmmd/apps.toml")
        );
        let c = parse("[ame]\nsocket = \"/tmp/a/ctl.sock\"").expect("valid");
        assert_eq!(c.ame.socket, std::path::Path::new("/tmp/a/ctl.sock"));
        assert_eq!(c.ame.apps_file, std::path::Path::new(DEFAULT_APPS_FILE));
        let e = parse("[ame]\napps_file = \"apps.toml\"").expect_err("relative");
        assert_eq!(
            e.to_string(),
            "ame.apps_file = \"apps.toml\" is invalid: allowed an absolute path to a file, \
             without control characters"
        );
        assert!(
            matches!(e, ConfigError::Invalid { line: Some(3), .. }),
            "{e:?}"
        );
        let long = format!("/{}", "s".repeat(107));
        let e = parse(&format!("[ame]\nsocket = \"{long}\"")).expect_err("long");
        assert!(e.to_string().contains("at most 107 bytes"), "{e}");
        assert!(error("[ame]\nsock = \"/x\"").contains("unknown field `sock`"));
    }

    #[test]
    fn the_nil_uuid_is_refused() {
        let err = Config::parse("vm_uuid = \"00000000-0000-0000-0000-000000000000\"")
            .expect_err("nil")
            .to_string();
        assert!(err.contains("a UUID other than all zeros"), "{err}");
    }

    #[test]
    fn bad_uuid_is_named() {
        let err = Config::parse("vm_uuid = \"61be20f0\"")
            .expect_err("bad uuid")
            .to_string();
        assert!(
            err.starts_with(
                "vm_uuid = \"61be20f0\" is invalid: allowed a UUID other than all zeros: 8-4-4-4-12"
            ),
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
