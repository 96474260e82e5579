//! One throw-away PostgreSQL cluster: `initdb` into a temporary directory, `pg_ctl`
//! start and stop on a fixed loopback port, and a reaper process that stops the cluster
//! and deletes the directory when the process that made it exits — however it exits.
//!
//! As root the cluster belongs to the system user `postgres` (PostgreSQL refuses to run
//! as root) and every command runs through `runuser -u postgres --`; as any other user
//! the cluster is that user's own. Authentication is `trust` for the superuser `hvha` on
//! 127.0.0.1 and the socket in the cluster's directory: no password anywhere.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Missing;

/// The superuser every cluster is initialised with.
pub(crate) const SUPERUSER: &str = "hvha";

/// Where Debian's `postgresql-<version>` packages put the server binaries.
const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// Seconds `pg_ctl` waits for a start or stop: generous, for a loaded machine.
const PG_CTL_WAIT_SECS: &str = "120";

/// How many free ports the first start tries before giving up (another process may take
/// a port between our probe and the server's bind).
const PORT_ATTEMPTS: u32 = 5;

/// Server settings of every cluster. Durability against an operating-system crash is
/// not needed by a cluster that lives for one test run, so `fsync` and full-page writes
/// are off; `synchronous_commit` stays on, because the outage tests stop the server
/// like a crash (`pg_ctl stop -m immediate`) and count on every acknowledged commit
/// surviving that — and it does, with `fsync=off`, since a killed server's writes are
/// already in the kernel's page cache.
const FAST_SETTINGS: &[&str] = &["fsync=off", "full_page_writes=off"];

/// Settings of every cluster, durable or not.
const COMMON_SETTINGS: &[&str] = &[
    "listen_addresses = '127.0.0.1'",
    // Several test threads, each with a few connections, plus the daemons of e2e tests.
    "max_connections=300",
    "shared_buffers=64MB",
    // Failures of a test appear in its log, not in the kernel's syslog.
    "logging_collector=off",
];

/// The sh script of the reaper: wait for end-of-file on stdin (the process that made the
/// cluster has exited or dropped it), then stop the server if it runs and delete the
/// directory. Arguments: pg_ctl, data directory, cluster directory, then the command
/// prefix that runs pg_ctl as the cluster's owner (`runuser -u postgres --`) if any.
/// Immune to the terminal's SIGINT and SIGHUP, and in its own process group, so that
/// a Ctrl-C that kills the tests does not kill their cleanup.
const REAPER: &str = r#"trap '' INT HUP
pg_ctl=$1 data=$2 dir=$3
shift 3
cat >/dev/null
if [ -f "$data/postmaster.pid" ]; then
    "$@" "$pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1
fi
rm -rf "$dir"
"#;

/// The PostgreSQL server binaries found on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `/usr/lib/postgresql/<version>/bin`.
    pub(crate) dir: PathBuf,
    /// The major version, from the directory name.
    pub(crate) version: u32,
}

impl Binaries {
    /// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
    pub(crate) fn find() -> Result<Binaries, Missing> {
        let newest = std::fs::read_dir(DEBIAN_LIB)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let dir = entry.path().join("bin");
                (dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
                    .then_some(Binaries { dir, version })
            })
            .max_by_key(|b| b.version);
        newest.ok_or_else(|| {
            Missing::not_here(format!(
                "no PostgreSQL server binaries ({DEBIAN_LIB}/<version>/bin/initdb); install \
                 the Debian package `postgresql` or set HVHA_PG_URL"
            ))
        })
    }

    fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Who runs the cluster's commands.
#[derive(Debug, Clone)]
enum Owner {
    /// We are root: the system user `postgres`, through `runuser` (its path).
    Postgres {
        uid: u32,
        gid: u32,
        runuser: &'static str,
    },
    /// This process's own user.
    Me,
}

impl Owner {
    fn find() -> Result<Owner, Missing> {
        if !is_root() {
            return Ok(Owner::Me);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"postgres") && f.len() >= 4);
        let (Some(uid), Some(gid)) = (
            entry.as_ref().and_then(|f| f[2].parse().ok()),
            entry.as_ref().and_then(|f| f[3].parse().ok()),
        ) else {
            return Err(Missing::not_here(
                "running as root but there is no system user `postgres` to run a cluster as \
                 (the Debian package `postgresql` creates it)",
            ));
        };
        let Some(runuser) = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            return Err(Missing::not_here(
                "running as root but `runuser` (util-linux) is not installed",
            ));
        };
        Ok(Owner::Postgres { uid, gid, runuser })
    }

    /// The command prefix that runs a program as the owner.
    fn prefix(&self) -> Vec<&'static str> {
        match self {
            Owner::Postgres { runuser, .. } => vec![runuser, "-u", "postgres", "--"],
            Owner::Me => Vec::new(),
        }
    }
}

/// Whether this process's effective user is root (from `/proc/self/status`, without
/// `unsafe`).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// A cluster in its own temporary directory: `<dir>/data` (the cluster), `<dir>/log`
/// (the server's log), the Unix socket in `<dir>`. The directory and the server go away
/// when [`Cluster::remove`] runs or the process exits.
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: Binaries,
    owner: Owner,
    dir: PathBuf,
    port: u16,
    /// The reaper and the write end of its stdin, `None` once removed.
    reaper: Mutex<Option<(Child, ChildStdin)>>,
}

impl Cluster {
    /// `initdb` a new cluster and start it on a free loopback port.
    pub(crate) fn start_new(durable: bool) -> Result<Cluster, Missing> {
        let bin = Binaries::find()?;
        let owner = Owner::find()?;
        let dir = make_dir(&owner)?;
        // The reaper first: from here on, whatever happens, the directory goes away.
        let reaper = spawn_reaper(&bin, &owner, &dir)?;
        let mut cluster = Cluster {
            bin,
            owner,
            dir,
            port: 0,
            reaper: Mutex::new(Some(reaper)),
        };
        cluster.initdb(durable)?;
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.start() {
                Ok(()) => return Ok(cluster),
                // Someone took the port between our probe and the server's bind.
                Err(why) if why.contains("Address already in use") => last = why,
                Err(why) => return Err(Missing::failed(why)),
            }
        }
        Err(Missing::failed(format!(
            "no free port after {PORT_ATTEMPTS} attempts: {last}"
        )))
    }

    /// The loopback port the server listens on, the same for the cluster's life.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, log, socket).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL major version.
    pub(crate) fn version(&self) -> u32 {
        self.bin.version
    }

    /// `postgres://hvha@127.0.0.1:<port>/<dbname>`.
    pub(crate) fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{dbname}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self, durable: bool) -> Result<(), Missing> {
        let data = self.data();
        let mut args = vec![
            "-D".as_ref(),
            data.as_os_str(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            SUPERUSER.as_ref(),
            "--locale=C".as_ref(),
            "-E".as_ref(),
            "UTF8".as_ref(),
            "--no-instructions".as_ref(),
        ];
        if !durable {
            args.push("--no-sync".as_ref());
        }
        self.run("initdb", &args)
            .map_err(|why| Missing::failed(format!("initdb: {why}")))?;
        let mut conf = COMMON_SETTINGS.to_vec();
        if !durable {
            conf.extend_from_slice(FAST_SETTINGS);
        }
        // Appended to postgresql.conf (later lines win), so that a plain `pg_ctl start`
        // — ours or a developer's — gets them.
        let mut text = String::from("\n# pglab\n");
        for setting in conf {
            text.push_str(setting);
            text.push('\n');
        }
        let conf_file = data.join("postgresql.conf");
        let old = std::fs::read_to_string(&conf_file)
            .map_err(|e| Missing::failed(format!("{}: {e}", conf_file.display())))?;
        std::fs::write(&conf_file, old + &text)
            .map_err(|e| Missing::failed(format!("{}: {e}", conf_file.display())))?;
        Ok(())
    }

    /// `pg_ctl start -w` on the cluster's port; `Err` holds pg_ctl's output and the
    /// tail of the server's log.
    pub(crate) fn start(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("log");
        let options = format!("-p {} -k {}", self.port, self.dir.display());
        let args = [
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            PG_CTL_WAIT_SECS.as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "start".as_ref(),
        ];
        self.run("pg_ctl", &args).map_err(|why| {
            format!(
                "pg_ctl start on port {}: {why}\nserver log:\n{}",
                self.port,
                tail(&log, 20)
            )
        })
    }

    /// `pg_ctl stop -w -m <mode>` (`immediate`: like a crash; `fast`: clean).
    pub(crate) fn stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data();
        let args = [
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "-t".as_ref(),
            PG_CTL_WAIT_SECS.as_ref(),
            "stop".as_ref(),
        ];
        self.run("pg_ctl", &args)
            .map_err(|why| format!("pg_ctl stop -m {mode}: {why}"))
    }

    /// Whether the server runs (`pg_ctl status`).
    pub(crate) fn is_running(&self) -> bool {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D".as_ref(), data.as_os_str(), "status".as_ref()],
        )
        .is_ok()
    }

    /// Stop the server (like a crash: nothing of it is kept) and delete the directory,
    /// now, through the reaper; waits for it.
    pub(crate) fn remove(&self) {
        let taken = self
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Run one of the server's programs as the cluster's owner; `Err` is its output.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let path = self.bin.program(program);
        let prefix = self.owner.prefix();
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = command
            .args(args)
            .stdin(Stdio::null())
            // The server's directory as the working directory: a runuser'd program
            // cannot always enter the test's own.
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} exited with {}: {}{}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// A new directory `$TMPDIR/hvha-pglab-<pid>-<n>-<nanos>`, mode 0700, owned by the
/// cluster's owner.
fn make_dir(owner: &Owner) -> Result<PathBuf, Missing> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "hvha-pglab-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let fail = |e: std::io::Error| Missing::failed(format!("{}: {e}", dir.display()));
    std::fs::create_dir(&dir).map_err(fail)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(fail)?;
    if let Owner::Postgres { uid, gid, .. } = owner {
        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).map_err(fail)?;
    }
    Ok(dir)
}

fn spawn_reaper(bin: &Binaries, owner: &Owner, dir: &Path) -> Result<(Child, ChildStdin), Missing> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(REAPER)
        .arg("pglab-reaper")
        .arg(bin.program("pg_ctl"))
        .arg(dir.join("data"))
        .arg(dir)
        .args(owner.prefix())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(dir);
            Missing::failed(format!("cannot start the reaper (sh): {e}"))
        })?;
    let Some(stdin) = child.stdin.take() else {
        return Err(Missing::failed("the reaper has no stdin"));
    };
    Ok((child, stdin))
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, Missing> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Missing::failed(format!("cannot bind a loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Missing::failed(format!("cannot bind a loopback port: {e}")))
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
