//! The `[dashboard]` section of `hactl.toml`.
//!
//! ```toml
//! [dashboard]
//! listen = "0.0.0.0:8443"                 # absent: no dashboard
//! users_file = "/etc/hvha/dashboard-users" # `hactl dashboard user add …` writes it
//! tls_cert = "/etc/hvha/dashboard.crt"     # PEM chain; with tls_key: HTTPS
//! tls_key = "/etc/hvha/dashboard.key"      # PEM private key
//! session_idle_s = 1800                   # a session unused this long ends (60..=604800)
//! max_connections = 128                   # open connections at once (2..=4096)
//! ```
//!
//! Without `tls_cert` and `tls_key` the dashboard speaks plain HTTP, accepted only on a
//! loopback address: behind a reverse proxy on the same machine that terminates TLS.
//! Passwords and session cookies never cross a network in clear text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::notify::config::Bad;
use hvha_daemon::config::{quoted, resolve};

/// Default users file.
pub const DEFAULT_USERS_FILE: &str = "/etc/hvha/dashboard-users";
/// Default `session_idle_s`: 30 minutes.
pub const DEFAULT_SESSION_IDLE_S: u64 = 30 * 60;
/// Range of `session_idle_s`: a minute to a week (a wall display).
pub const SESSION_IDLE_RANGE: std::ops::RangeInclusive<u64> = 60..=7 * 24 * 3600;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Range of `max_connections`.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 2..=4096;

/// The operator's certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The validated `[dashboard]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The users file (absolute).
    pub users_file: PathBuf,
    /// HTTPS with these files; `None`: plain HTTP on a loopback address.
    pub tls: Option<TlsFiles>,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// Open connections at once (more are closed at accept).
    pub max_connections: usize,
}

impl DashboardConfig {
    /// The section with its defaults, listening on `listen` in plain HTTP (tests).
    pub fn plain(listen: SocketAddr, users_file: PathBuf) -> DashboardConfig {
        DashboardConfig {
            listen,
            users_file,
            tls: None,
            session_idle: Duration::from_secs(DEFAULT_SESSION_IDLE_S),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// `[dashboard]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardFile {
    listen: Option<Spanned<String>>,
    users_file: Option<Spanned<PathBuf>>,
    tls_cert: Option<Spanned<PathBuf>>,
    tls_key: Option<Spanned<PathBuf>>,
    session_idle_s: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
}

fn bad(key: &str, span: Option<std::ops::Range<usize>>, value: String, allowed: &str) -> Bad {
    Bad {
        key: key.to_owned(),
        span,
        value,
        allowed: allowed.to_owned(),
    }
}

fn path(key: &str, p: &Spanned<PathBuf>, config_file: &Path) -> Result<PathBuf, Bad> {
    if p.get_ref().as_os_str().is_empty() {
        return Err(bad(
            key,
            Some(p.span()),
            "\"\"".into(),
            "a file path (relative paths are taken from the configuration file's directory)",
        ));
    }
    Ok(resolve(config_file, p.get_ref()))
}

fn number(
    key: &str,
    v: Option<&Spanned<i64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Bad> {
    let Some(v) = v else { return Ok(default) };
    u64::try_from(*v.get_ref())
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad(
                key,
                Some(v.span()),
                v.get_ref().to_string(),
                &format!("{}..={}", range.start(), range.end()),
            )
        })
}

/// Check the section; `None` without `listen` (no dashboard).
pub fn dashboard(
    file: &Spanned<DashboardFile>,
    config_file: &Path,
) -> Result<Option<DashboardConfig>, Bad> {
    let f = file.get_ref();
    let Some(listen) = &f.listen else {
        if let Some(other) = f.tls_cert.as_ref().or(f.tls_key.as_ref()) {
            return Err(bad(
                "dashboard.listen",
                Some(other.span()),
                "(absent)".into(),
                "an address such as \"0.0.0.0:8443\" when tls_cert/tls_key are set (without \
                 listen there is no dashboard)",
            ));
        }
        return Ok(None);
    };
    let addr: SocketAddr = listen.get_ref().trim().parse().map_err(|_| {
        bad(
            "dashboard.listen",
            Some(listen.span()),
            quoted(listen.get_ref()),
            "IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:8443\" (an address, not a host name)",
        )
    })?;
    let users_file = match &f.users_file {
        None => PathBuf::from(DEFAULT_USERS_FILE),
        Some(p) => path("dashboard.users_file", p, config_file)?,
    };
    let tls = match (&f.tls_cert, &f.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: path("dashboard.tls_cert", cert, config_file)?,
            key: path("dashboard.tls_key", key, config_file)?,
        }),
        (Some(cert), None) => {
            return Err(bad(
                "dashboard.tls_key",
                Some(cert.span()),
                "(absent)".into(),
                "the certificate's private key (PEM) beside tls_cert: both or neither",
            ));
        }
        (None, Some(key)) => {
            return Err(bad(
                "dashboard.tls_cert",
                Some(key.span()),
                "(absent)".into(),
                "the certificate (PEM chain) beside tls_key: both or neither",
            ));
        }
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        return Err(bad(
            "dashboard.listen",
            Some(listen.span()),
            quoted(listen.get_ref()),
            "a loopback address (127.0.0.1:PORT or [::1]:PORT, behind a reverse proxy that \
             terminates TLS) when tls_cert and tls_key are not set: passwords and session \
             cookies must not cross a network in clear text",
        ));
    }
    let session_idle_s = number(
        "dashboard.session_idle_s",
        f.session_idle_s.as_ref(),
        DEFAULT_SESSION_IDLE_S,
        SESSION_IDLE_RANGE,
    )?;
    let max_connections = number(
        "dashboard.max_connections",
        f.max_connections.as_ref(),
        DEFAULT_MAX_CONNECTIONS as u64,
        MAX_CONNECTIONS_RANGE,
    )?;
    Ok(Some(DashboardConfig {
        listen: addr,
        users_file,
        tls,
        session_idle: Duration::from_secs(session_idle_s),
        max_connections: usize::try_from(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
    }))
}

/// The section as `hactl check-config` prints it.
pub fn display(f: &mut std::fmt::Formatter<'_>, d: Option<&DashboardConfig>) -> std::fmt::Result {
    writeln!(f)?;
    let Some(d) = d else {
        return writeln!(
            f,
            "# no [dashboard] listen: no web dashboard (docs/operators.md, Dashboard)"
        );
    };
    writeln!(
        f,
        "# the web dashboard: HTTPS with tls_cert/tls_key, else plain HTTP on loopback only"
    )?;
    writeln!(f, "[dashboard]")?;
    writeln!(f, "listen = {}", quoted(&d.listen.to_string()))?;
    writeln!(
        f,
        "users_file = {}",
        quoted(&d.users_file.to_string_lossy())
    )?;
    match &d.tls {
        Some(t) => {
            writeln!(f, "tls_cert = {}", quoted(&t.cert.to_string_lossy()))?;
            writeln!(f, "tls_key = {}", quoted(&t.key.to_string_lossy()))?;
        }
        None => writeln!(
            f,
            "# no tls_cert/tls_key: plain HTTP for a reverse proxy on this machine"
        )?,
    }
    writeln!(f, "session_idle_s = {}", d.session_idle.as_secs())?;
    writeln!(f, "max_connections = {}", d.max_connections)
}
