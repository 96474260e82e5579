//! PostgreSQL servers for the tests: the shared HSDB of a host group, for real.
//!
//! - [`server`]: the one server of this test process. `HVHA_PG_URL` when set (`.ci/run`
//!   sets it to the cluster it starts for the whole run; a developer may point it at
//!   any server where the URL's role may create databases); else a throw-away cluster
//!   of this process's own, started on first use (PostgreSQL's server binaries must be
//!   installed: Debian's `postgresql`), stopped and deleted when the process exits —
//!   also when it panics or is killed.
//! - [`require`]: [`server`] for a test, which prints `SKIPPED <test>: …` and passes when
//!   this machine has no PostgreSQL — except under `CI=true`, where it fails.
//! - [`PgServer::fresh_database`]: a new, empty database per test, as a URL.
//! - [`OwnedServer`]: a cluster owned by one test, which it may stop (like a crash or
//!   cleanly) and start again on the same port: the outage tests.
//!
//! Clusters made here are for tests only: `fsync` and full-page writes are off (fast,
//! and safe against a crash of the server, not of the machine); `synchronous_commit`
//! stays on, so a commit acknowledged before `pg_ctl stop -m immediate` survives it.
//! [`OwnedServer::start_durable`] keeps PostgreSQL's defaults, for benchmarks.
//!
//! Databases are URLs (`postgres://hvha@127.0.0.1:<port>/<name>`), not `hsdb::Target`s:
//! `hsdb`'s own tests use this crate, so it must not depend on `hsdb` (the `Target` of
//! the `hsdb` linked here would not be the type of the `hsdb` under test). Callers do
//! `hsdb::Target::parse(&url)`. A server that wants a password takes it from
//! `HVHA_HSDB_PASSWORD`, as the daemons do.
//!
//! Test helpers: what fails after a server is found panics with the reason, since the
//! test has failed.

mod cluster;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::Duration;

use postgres::config::Host;

use crate::cluster::Cluster;

/// The environment variable naming the server to use instead of a cluster of our own.
pub const URL_ENV: &str = "HVHA_PG_URL";

/// The environment variable of a password, as `hsdb::target::PASSWORD_ENV` (this crate
/// cannot name `hsdb`).
pub const PASSWORD_ENV: &str = "HVHA_HSDB_PASSWORD";

/// Prefix of every database [`PgServer::fresh_database`] makes: `hvt_<pid>_<n>_<hint>`.
pub const DATABASE_PREFIX: &str = "hvt_";

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Oldest PostgreSQL used: `CREATE DATABASE … LOCALE` and `DROP DATABASE … WITH
/// (FORCE)` are 13's.
const MIN_SERVER_VERSION: i32 = 130_000;

/// How long connecting to a server may take before it is declared not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no PostgreSQL server is available to this test process.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{why}")]
pub struct Missing {
    /// What is missing or what failed.
    pub why: String,
    /// `false`: this machine has no PostgreSQL (no binaries, no `postgres` user) — a test
    /// may skip. `true`: one was expected but failed (`HVHA_PG_URL` does not answer,
    /// `initdb` or `pg_ctl` failed) — a test fails.
    pub broken: bool,
}

impl Missing {
    pub(crate) fn not_here(why: impl Into<String>) -> Missing {
        Missing {
            why: why.into(),
            broken: false,
        }
    }

    pub(crate) fn failed(why: impl Into<String>) -> Missing {
        Missing {
            why: why.into(),
            broken: true,
        }
    }
}

/// Whether this runs in CI (`CI=true`), where every PostgreSQL test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The PostgreSQL server of this test process: `HVHA_PG_URL`'s, or a throw-away cluster
/// started on first call (the call then takes a few seconds) and removed when the
/// process exits. Every call returns the same server, or the same reason.
///
/// # Errors
///
/// [`Missing`]: `HVHA_PG_URL` is set but is no valid password-free `postgres://` URL,
/// does not answer, runs PostgreSQL older than 13 or its role may not create databases
/// (`broken`); without it, the server binaries or the `postgres` user are missing (not
/// `broken`), or `initdb` / `pg_ctl` failed (`broken`).
pub fn server() -> Result<&'static PgServer, Missing> {
    static SERVER: OnceLock<Result<PgServer, Missing>> = OnceLock::new();
    SERVER
        .get_or_init(PgServer::find)
        .as_ref()
        .map_err(Clone::clone)
}

/// [`server`] for test `test`: `None` after printing `SKIPPED <test>: PostgreSQL not
/// available: <why>` when this machine has none.
///
/// # Panics
///
/// When there is none under `CI=true` (CI must run every PostgreSQL test), and when one
/// was expected but failed ([`Missing::broken`]: a set `HVHA_PG_URL` that does not
/// answer, a failed `initdb`).
pub fn require(test: &str) -> Option<&'static PgServer> {
    match server() {
        Ok(server) => Some(server),
        Err(missing) => {
            skip_or_fail(test, &missing);
            None
        }
    }
}

/// [`OwnedServer::start`] for test `test`, skipping or failing as [`require`] does.
///
/// # Panics
///
/// As [`require`].
pub fn require_owned(test: &str) -> Option<OwnedServer> {
    match OwnedServer::start() {
        Ok(server) => Some(server),
        Err(missing) => {
            skip_or_fail(test, &missing);
            None
        }
    }
}

fn skip_or_fail(test: &str, missing: &Missing) {
    if in_ci() {
        panic!(
            "{test}: PostgreSQL is required under CI=true: {}",
            missing.why
        );
    }
    if missing.broken {
        panic!("{test}: PostgreSQL failed: {}", missing.why);
    }
    eprintln!("SKIPPED {test}: PostgreSQL not available: {}", missing.why);
}

/// A client connected to `url`, with the password of `HVHA_HSDB_PASSWORD` if set: for
/// tests that look into a database directly (count rows, break things).
///
/// # Panics
///
/// If `url` is not a URL or the connection fails.
pub fn client(url: &str) -> postgres::Client {
    connect(url).unwrap_or_else(|why| panic!("{why}"))
}

fn connect(url: &str) -> Result<postgres::Client, String> {
    let mut config =
        postgres::Config::from_str(url).map_err(|e| format!("{url}: {}", chain(&e)))?;
    if let Some(password) = std::env::var_os(PASSWORD_ENV) {
        config.password(std::os::unix::ffi::OsStrExt::as_bytes(password.as_os_str()));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("pglab");
    config
        .connect(postgres::NoTls)
        .map_err(|e| format!("cannot connect to {url}: {}", chain(&e)))
}

/// An error and its causes (the client's `Display` leaves the cause out).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A server the tests of this process share ([`server`]).
pub struct PgServer {
    origin: Origin,
    /// Connection to the administrative database, for `CREATE DATABASE`.
    admin: Mutex<Option<postgres::Client>>,
    /// Sweep of the databases of dead test processes, once.
    swept: Once,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Origin {
    /// `HVHA_PG_URL`.
    Env { url: String },
    /// A cluster of this process's own.
    Cluster(Cluster),
}

impl PgServer {
    fn find() -> Result<PgServer, Missing> {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => PgServer::from_env(url.trim()),
            _ => {
                let cluster = Cluster::start_new(false)?;
                eprintln!(
                    "pglab: PostgreSQL {} cluster of process {} on 127.0.0.1:{} in {} \
                     (removed when the process exits)",
                    cluster.version(),
                    std::process::id(),
                    cluster.port(),
                    cluster.dir().display()
                );
                let server = PgServer::new(Origin::Cluster(cluster));
                server.check().map_err(Missing::failed)?;
                Ok(server)
            }
        }
    }

    fn from_env(url: &str) -> Result<PgServer, Missing> {
        let bad = |why: &str| Missing::failed(format!("{URL_ENV}: {why}"));
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("not a postgres:// URL"));
        }
        let config = postgres::Config::from_str(url)
            .map_err(|e| bad(&format!("not a valid URL: {}", chain(&e))))?;
        if config.get_password().is_some() {
            return Err(bad(&format!(
                "the URL holds a password; remove it and set {PASSWORD_ENV}"
            )));
        }
        let server = PgServer::new(Origin::Env {
            url: url.to_owned(),
        });
        server
            .check()
            .map_err(|why| Missing::failed(format!("{URL_ENV}={url}: {why}")))?;
        Ok(server)
    }

    fn new(origin: Origin) -> PgServer {
        PgServer {
            origin,
            admin: Mutex::new(None),
            swept: Once::new(),
        }
    }

    /// It answers, is recent enough, and our role may create databases.
    fn check(&self) -> Result<(), String> {
        let mut client = connect(&self.url())?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                 (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)",
                &[],
            )
            .map_err(|e| chain(&e))?;
        let (version, may_create): (i32, Option<bool>) = (row.get(0), row.get(1));
        if version < MIN_SERVER_VERSION {
            return Err(format!(
                "PostgreSQL {version} (server_version_num) is older than 13"
            ));
        }
        if may_create != Some(true) {
            return Err("its role may not create databases (CREATEDB)".to_owned());
        }
        *self.admin.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
        Ok(())
    }

    /// The URL of the server's administrative database (`HVHA_PG_URL` itself, or
    /// `postgres://hvha@127.0.0.1:<port>/postgres`).
    pub fn url(&self) -> String {
        match &self.origin {
            Origin::Env { url } => url.clone(),
            Origin::Cluster(cluster) => cluster.url("postgres"),
        }
    }

    /// The URL of database `dbname` on this server.
    pub fn database_url(&self, dbname: &str) -> String {
        match &self.origin {
            Origin::Env { url } => with_dbname(url, dbname),
            Origin::Cluster(cluster) => cluster.url(dbname),
        }
    }

    /// Whether the server is a cluster of this process's own (not `HVHA_PG_URL`).
    pub fn is_own_cluster(&self) -> bool {
        matches!(self.origin, Origin::Cluster(_))
    }

    /// The directory of the cluster of this process's own (data, log, socket), deleted
    /// when the process exits; `None` for `HVHA_PG_URL`.
    pub fn cluster_dir(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Env { .. } => None,
            Origin::Cluster(cluster) => Some(cluster.dir()),
        }
    }

    /// A new, empty database `hvt_<pid>_<n>_<hint>` (UTF-8, locale C, from
    /// `template0`), as a URL for `hsdb::Target::parse`. It stays until its server goes
    /// (an own cluster: at exit) or, on a server on this machine, until a later test
    /// process sweeps the databases of processes that no longer run.
    ///
    /// # Panics
    ///
    /// If the server fails to create it.
    pub fn fresh_database(&self, hint: &str) -> String {
        self.swept.call_once(|| self.sweep());
        let name = database_name(hint);
        let sql = create_database_sql(&name);
        let mut admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        // One retry on a new connection: the cached one may have broken.
        let mut last = String::new();
        for _ in 0..2 {
            if admin.is_none() {
                *admin = Some(connect(&self.url()).unwrap_or_else(|why| panic!("{why}")));
            }
            let Some(client) = admin.as_mut() else {
                continue;
            };
            match client.batch_execute(&sql) {
                Ok(()) => return self.database_url(&name),
                Err(e) => {
                    last = chain(&e);
                    *admin = None;
                }
            }
        }
        panic!("CREATE DATABASE {name} on {}: {last}", self.url());
    }

    /// Drop the databases `hvt_<pid>_…` of test processes that no longer run, when the
    /// server is on this machine (where the pids mean something). Best effort.
    fn sweep(&self) {
        let Origin::Env { url } = &self.origin else {
            return; // A cluster of our own holds only our databases.
        };
        let Ok(config) = postgres::Config::from_str(url) else {
            return;
        };
        if !is_local(&config) {
            return;
        }
        let mut admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(client) = admin.as_mut() else {
            return;
        };
        let Ok(rows) = client.query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&DATABASE_PREFIX],
        ) else {
            return;
        };
        for row in rows {
            let name: String = row.get(0);
            let Some(pid) = owner_pid(&name) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = client.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ));
            }
        }
    }
}

/// A cluster owned by one test, for outage tests: stopped like a crash
/// ([`OwnedServer::stop_immediate`]) or cleanly ([`OwnedServer::stop_fast`]), started
/// again ([`OwnedServer::start_again`], [`OwnedServer::restart`]) — always on the same
/// port, so clients reconnect to the same URL. Dropped: stopped and deleted.
#[derive(Debug)]
pub struct OwnedServer {
    cluster: Cluster,
}

impl OwnedServer {
    /// A new cluster of the test's own, started (a few seconds), with the test settings
    /// (`fsync=off`: see the crate's documentation). Independent of `HVHA_PG_URL`: it
    /// needs PostgreSQL's binaries on this machine.
    ///
    /// # Errors
    ///
    /// [`Missing`] as [`server`] without `HVHA_PG_URL`.
    pub fn start() -> Result<OwnedServer, Missing> {
        Cluster::start_new(false).map(|cluster| OwnedServer { cluster })
    }

    /// [`OwnedServer::start`] with PostgreSQL's durable defaults (`fsync=on`, full-page
    /// writes): for benchmarks whose numbers must be a real server's.
    ///
    /// # Errors
    ///
    /// As [`OwnedServer::start`].
    pub fn start_durable() -> Result<OwnedServer, Missing> {
        Cluster::start_new(true).map(|cluster| OwnedServer { cluster })
    }

    /// `postgres://hvha@127.0.0.1:<port>/postgres`, the administrative database.
    pub fn url(&self) -> String {
        self.cluster.url("postgres")
    }

    /// The URL of database `dbname` on this server.
    pub fn database_url(&self, dbname: &str) -> String {
        self.cluster.url(dbname)
    }

    /// The loopback port, the same for the server's life.
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The cluster's directory (data, log, socket), deleted with the server.
    pub fn dir(&self) -> &Path {
        self.cluster.dir()
    }

    /// A new, empty database, as [`PgServer::fresh_database`].
    ///
    /// # Panics
    ///
    /// If the server is stopped or fails to create it.
    pub fn fresh_database(&self, hint: &str) -> String {
        let name = database_name(hint);
        let url = self.url();
        let mut client = client(&url);
        client
            .batch_execute(&create_database_sql(&name))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {url}: {}", chain(&e)));
        self.database_url(&name)
    }

    /// Stop the server like a crash (`pg_ctl stop -m immediate`: connections cut, no
    /// checkpoint; the next start recovers from the WAL).
    ///
    /// # Panics
    ///
    /// If `pg_ctl` fails (the server is not running).
    pub fn stop_immediate(&self) {
        self.cluster
            .stop("immediate")
            .unwrap_or_else(|why| panic!("{why}"));
    }

    /// Stop the server cleanly (`pg_ctl stop -m fast`: sessions ended, checkpoint).
    ///
    /// # Panics
    ///
    /// If `pg_ctl` fails (the server is not running).
    pub fn stop_fast(&self) {
        self.cluster
            .stop("fast")
            .unwrap_or_else(|why| panic!("{why}"));
    }

    /// Start the stopped server again on its port (`pg_ctl start -w`: returns once it
    /// accepts connections, after any crash recovery).
    ///
    /// # Panics
    ///
    /// If it does not start (already running, the port taken meanwhile).
    pub fn start_again(&self) {
        self.cluster.start().unwrap_or_else(|why| panic!("{why}"));
    }

    /// [`OwnedServer::stop_fast`] then [`OwnedServer::start_again`].
    ///
    /// # Panics
    ///
    /// As those.
    pub fn restart(&self) {
        self.stop_fast();
        self.start_again();
    }

    /// Whether the server runs (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        self.cluster.is_running()
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        self.cluster.remove();
    }
}

/// `hvt_<pid>_<n>_<hint>`: the hint in lower case, anything but letters, digits and `_`
/// as `_`, the whole cut to PostgreSQL's 63 bytes.
fn database_name(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut name = format!(
        "{DATABASE_PREFIX}{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    name.extend(hint.chars().map(|c| match c.to_ascii_lowercase() {
        c @ ('a'..='z' | '0'..='9' | '_') => c,
        _ => '_',
    }));
    name.truncate(MAX_NAME);
    name
}

fn create_database_sql(name: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'",
        quote_ident(name)
    )
}

/// A double-quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The pid in `hvt_<pid>_…`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(DATABASE_PREFIX)?
        .split('_')
        .next()?
        .parse()
        .ok()
}

/// Whether every host of `config` is this machine (loopback or a Unix socket).
fn is_local(config: &postgres::Config) -> bool {
    let hosts_local = config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    });
    let addrs_local = config.get_hostaddrs().iter().all(|ip| ip.is_loopback());
    hosts_local && addrs_local
}

/// `url` with its path (the database name) replaced by `dbname`; user, hosts and query
/// kept.
fn with_dbname(url: &str, dbname: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, q)| q);
    let mut out = format!("{scheme}://{authority}/{dbname}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn database_names_are_unique_valid_identifiers() {
        let a = database_name("apply: concurrent writers!");
        let b = database_name("apply: concurrent writers!");
        assert_ne!(a, b);
        let prefix = format!("hvt_{}_", std::process::id());
        assert!(a.starts_with(&prefix), "{a}");
        assert!(a.ends_with("_apply__concurrent_writers_"), "{a}");
        assert_eq!(owner_pid(&a), Some(std::process::id()));
        let long = database_name(&"x".repeat(200));
        assert_eq!(long.len(), MAX_NAME);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_eq!(owner_pid("hvt_x_1"), None);
        assert_eq!(owner_pid("other_12_1"), None);
    }

    #[test]
    fn urls_get_their_database_replaced() {
        for (url, want) in [
            (
                "postgres://hvha@127.0.0.1:55432/postgres",
                "postgres://hvha@127.0.0.1:55432/hvt_1",
            ),
            ("postgres://hvha@db1", "postgres://hvha@db1/hvt_1"),
            (
                "postgresql://hvha@db1:5432,db2/x?sslmode=disable",
                "postgresql://hvha@db1:5432,db2/hvt_1?sslmode=disable",
            ),
            (
                "postgres://hvha@/postgres?host=/tmp/d&port=5433",
                "postgres://hvha@/hvt_1?host=/tmp/d&port=5433",
            ),
            (
                "postgres://hvha@db1?port=7",
                "postgres://hvha@db1/hvt_1?port=7",
            ),
        ] {
            assert_eq!(with_dbname(url, "hvt_1"), want, "{url}");
        }
    }

    #[test]
    fn only_servers_on_this_machine_are_swept() {
        let local = |url: &str| is_local(&postgres::Config::from_str(url).unwrap());
        assert!(local("postgres://hvha@127.0.0.1:55432/postgres"));
        assert!(local("postgres://hvha@localhost/postgres"));
        assert!(local("postgres://hvha@[::1]/postgres"));
        assert!(local("postgres://hvha@%2Ftmp%2Fd/postgres"));
        assert!(!local("postgres://hvha@db1/postgres"));
        assert!(!local("postgres://hvha@127.0.0.1,db2/postgres"));
        assert!(!local("postgres://hvha@10.0.0.1/postgres"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            create_database_sql("hvt_1_2_x"),
            "CREATE DATABASE \"hvt_1_2_x\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
        );
    }
}
