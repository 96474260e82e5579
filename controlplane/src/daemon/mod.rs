//! `hactl run`: the control plane daemon — one Failure Detection Engine per host group on
//! the wall clock, the admin socket `hactl status` asks, signals, service-manager
//! notifications.
//!
//! - [`admin`]: the admin UNIX socket (server and client).
//! - [`status`]: what the daemon publishes after every turn.
//! - [`render`]: the status as text for a person.
//! - [`engine`]: a host group's Failure Detection Engine behind the loop.
//! - [`runner`]: the loop: each host group's engine scanned when due, stop between scans.
//! - [`housekeeping`]: hourly pruning of old events, completed commands, VMs gone for good;
//!   the outbox consumers' backlogs watched.
//!
//! Besides the loop, one thread per `[[notifier]]` (`crate::notify`), each on its own HSDB
//! connection, delivering while this controller holds the HSDB-wide duties.

pub mod admin;
pub mod engine;
pub mod housekeeping;
pub mod leadership;
pub mod render;
pub mod runner;
pub mod status;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use hsdb::{Hsdb, Options};
use hvha_notify::Notifier;

use self::admin::{AdminError, AdminServer};
use self::engine::{FdeEngine, below_seed};
use self::leadership::{Board, HsdbLeases};
use self::runner::{AfterTurn, GroupEngine, GroupSource, Runner};
use self::status::DaemonStatus;
use self::status::LeaseTimings;
use crate::cli::config::{Config, PlatformConfig, Profile as ConfigProfile};
use crate::clock::{BootClock, Clock, ManualClock, SystemClock};
use crate::events::LogNotifier;
use crate::params::Profile;
use crate::platform::libvirt::{LibvirtHost, LibvirtPlatform};
use crate::platform::sim::{SimPlatform, SimWorld};
use crate::platform::{HostInfo, Platform, PlatformError, VmSpec, VmStatus};

/// The event consumer the daemon's log notifier records its offset as.
pub const LOG_CONSUMER: &str = "hactl-log";

/// How often a notifier with nothing to deliver looks at the outbox again.
pub const NOTIFIER_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long the daemon's stop waits for the notifier threads: an attempt in progress
/// (an HTTP request, an SMTP session, bounded by the notifier's `timeout_ms`) is given
/// this long to end; past it the daemon exits anyway and that event is delivered again
/// after the restart (its offset was not stored). An exec hook is killed at once.
pub const NOTIFIER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The notifiers deliver while this controller holds the HSDB-wide duties (the sole
/// controller always); their offset writes are fenced with that lease, so a controller
/// that lost it cannot move an offset another one now owns.
struct DutiesGate(Arc<Board>);

impl crate::notify::worker::Gate for DutiesGate {
    fn permit(&self) -> Option<Option<hsdb::Fence>> {
        match self.0.access(crate::lease::HSDB_DUTIES) {
            leadership::Access::Sole => Some(None),
            leadership::Access::Lead { token } => {
                Some(Some(self.0.fence(crate::lease::HSDB_DUTIES, token)))
            }
            leadership::Access::Follow { .. } => None,
        }
    }
}

/// Why `hactl run` could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The HSDB file does not exist: the daemon never creates an empty one (a typo in
    /// `hsdb` must not start a controller over nothing).
    #[error(
        "hsdb {}: no such file (the host monitors create it at start, `hactl add host` too)",
        path.display()
    )]
    NoHsdb {
        /// The path.
        path: std::path::PathBuf,
    },
    /// The HSDB failed.
    #[error("hsdb {hsdb}: {source}")]
    Hsdb {
        /// The HSDB, as the setting names it (never a password).
        hsdb: String,
        /// What failed.
        source: hsdb::Error,
    },
    /// The `hsdb` setting or its password cannot be used.
    #[error("{0}")]
    Target(String),
    /// The admin socket.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The platform driver could not be set up.
    #[error("platform {driver}: {why}")]
    Platform {
        /// The driver.
        driver: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A notifier could not be set up (its secret file).
    #[error("notifier {name}: {why}")]
    Notifier {
        /// The notifier.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The dashboard could not start (`[dashboard]`: its address, certificate, users
    /// file).
    #[error(transparent)]
    Dashboard(#[from] crate::dash::DashError),
    /// A signal handler could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handler: {0}")]
    Signal(std::io::Error),
    /// Another `hactl run` controls this SQLite HSDB: with SQLite there is one
    /// controller (two would both act).
    #[error(
        "hsdb {}: another hactl run controls it ({by}); with an SQLite HSDB there is one \
         controller — run several only on a PostgreSQL HSDB (docs/operators.md)",
        hsdb.display()
    )]
    AlreadyControlled {
        /// The HSDB file.
        hsdb: std::path::PathBuf,
        /// What the lock file says about the holder.
        by: String,
    },
    /// The lock file next to the HSDB could not be used.
    #[error("lock file {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The lock that keeps a second `hactl run` off an SQLite HSDB: an exclusive `flock` on
/// `<hsdb>.hactl-lock`, held for the life of the daemon. The kernel drops it when the
/// process ends however it ends (`kill -9` included), so a stale file never blocks a
/// restart; a stopped (`SIGSTOP`) controller still holds it, as it should: it may
/// continue. The file keeps the holder's id for the refusal's message and is never
/// deleted (deleting a locked file would let a third process lock a new one).
#[derive(Debug)]
pub struct SoleLock {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl SoleLock {
    /// The lock file of `hsdb`.
    pub fn path_of(hsdb: &std::path::Path) -> std::path::PathBuf {
        let mut name = hsdb.as_os_str().to_owned();
        name.push(".hactl-lock");
        std::path::PathBuf::from(name)
    }

    /// Take the lock of `hsdb` as `holder`, or say who has it.
    pub fn take(hsdb: &std::path::Path, holder: &str) -> Result<SoleLock, DaemonError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let path = SoleLock::path_of(hsdb);
        let io = |source| DaemonError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut by = String::new();
                let _ = (&file).take(512).read_to_string(&mut by);
                let by = by.trim();
                return Err(DaemonError::AlreadyControlled {
                    hsdb: hsdb.to_owned(),
                    by: if by.is_empty() {
                        format!("it holds {}", path.display())
                    } else {
                        format!("{by}, holding {}", path.display())
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "controller {holder}").map_err(io)?;
        Ok(SoleLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// This controller's id in the lease and the logs: the configured `controller_id`, else
/// `host:pid:start_ms` — unique among controllers as long as host names are.
pub fn controller_id(config: &Config, start_ms: i64) -> String {
    if let Some(id) = &config.controller_id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}:{start_ms}", std::process::id())
}

/// The configuration's profile as the parameters' system default.
pub fn profile(config: &Config) -> Profile {
    match config.profile {
        ConfigProfile::Default => Profile::Standard,
        ConfigProfile::Fast => Profile::Fast,
    }
}

/// The sim driver on the wall clock: its virtual clock is moved to now before every
/// call. Its VMs have no ping address (a VM's heartbeats are the only evidence it is
/// alive, so a demo acts on what the monitors report); its hosts always answer.
struct WallSim {
    sim: SimPlatform,
    clock: ManualClock,
}

impl WallSim {
    fn sync(&self) {
        self.clock.advance_to(SystemClock.now_ms());
    }
}

impl Platform for WallSim {
    fn name(&self) -> &'static str {
        self.sim.name()
    }
    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        self.sync();
        self.sim.hosts()
    }
    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.sync();
        self.sim.host_alive(host)
    }
    fn ping(&mut self, vm: &hsdb::Uuid) -> Result<bool, PlatformError> {
        self.sync();
        self.sim.ping(vm)
    }
    fn vm_status(&mut self, host: &str, vm: &hsdb::Uuid) -> Result<VmStatus, PlatformError> {
        self.sync();
        self.sim.vm_status(host, vm)
    }
    fn stop(&mut self, host: &str, vm: &hsdb::Uuid) -> Result<(), PlatformError> {
        self.sync();
        self.sim.stop(host, vm)
    }
    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.sync();
        self.sim.start(host, vm)
    }
    fn cleanup(&mut self, host: &str, vm: &hsdb::Uuid) -> Result<(), PlatformError> {
        self.sync();
        self.sim.cleanup(host, vm)
    }
    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        self.sync();
        self.sim.start_many(starts)
    }
    fn live_migration(&self) -> bool {
        self.sim.live_migration()
    }
    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.sync();
        self.sim.migrate(from, to, vm)
    }
}

/// The sim platform with the HSDB's hosts and VMs (each running where the monitors last
/// saw it).
fn sim_platform(db: &Hsdb, seed: u64) -> Result<WallSim, DaemonError> {
    let bad = |why: String| DaemonError::Platform { driver: "sim", why };
    let hsdb_err = |e: hsdb::Error| bad(format!("cannot read the HSDB: {e}"));
    let clock = ManualClock::new(SystemClock.now_ms());
    let mut world = SimWorld::new(clock.clone(), seed);
    let hosts = db.hosts().map_err(hsdb_err)?;
    for h in &hosts {
        world
            .add_host(&h.name, h.cpu_milli, h.memory_mb)
            .map_err(|e| bad(e.to_string()))?;
    }
    for vm in db.vms().map_err(hsdb_err)? {
        let Some(host) = vm
            .current_host
            .and_then(|id| hosts.iter().find(|h| h.id == id))
        else {
            continue;
        };
        let spec = VmSpec::of_row(&vm);
        world
            .add_vm(&host.name, spec)
            .map_err(|e| bad(e.to_string()))?;
        world
            .set_ping_address(&vm.uuid, false)
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(WallSim {
        sim: SimPlatform::new(world),
        clock,
    })
}

/// The platform driver the configuration names, as `hactl run` opens it (the `sim`
/// platform built from the HSDB's hosts and VMs); also what `hactl relocate --dry-run`
/// and `hactl verify` plan against.
pub fn open_platform(config: &PlatformConfig, db: &Hsdb) -> Result<Box<dyn Platform>, DaemonError> {
    Ok(match config {
        PlatformConfig::Sim { seed } => Box::new(sim_platform(db, *seed)?),
        PlatformConfig::Libvirt(l) => Box::new(libvirt_platform(l)?),
    })
}

fn libvirt_platform(
    config: &crate::cli::config::LibvirtConfig,
) -> Result<LibvirtPlatform, DaemonError> {
    let mut lv = crate::platform::libvirt::LibvirtConfig::new(
        config
            .hosts
            .iter()
            .map(|(name, uri)| LibvirtHost {
                name: name.clone(),
                uri: uri.clone(),
            })
            .collect(),
    );
    lv.virsh = config.virsh.clone();
    lv.call_timeout = config.timeout;
    lv.ping_timeout = config.ping_timeout;
    lv.ping_addresses = config.ping.clone();
    LibvirtPlatform::new(lv).map_err(|e| DaemonError::Platform {
        driver: "libvirt",
        why: e.to_string(),
    })
}

/// The host groups of the configuration, or every group of the HSDB.
struct Groups {
    fixed: Vec<String>,
    profile: Option<Profile>,
}

impl GroupSource for Groups {
    fn groups(&mut self, hsdb: &Hsdb) -> Result<Vec<String>, String> {
        if !self.fixed.is_empty() {
            return Ok(self.fixed.clone());
        }
        let mut groups: Vec<String> = hsdb
            .hosts()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|h| h.host_group)
            .filter(|g| !g.is_empty())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    fn engine(&mut self, hsdb: &Hsdb, group: &str) -> Result<Box<dyn GroupEngine>, String> {
        let engine = FdeEngine::new(hsdb, group, self.profile)?;
        for line in below_seed(engine.params()) {
            tracing::warn!(
                "below the seed's range: {line}: the engine may act on outages the seed's \
                 product would wait out"
            );
        }
        Ok(Box::new(engine))
    }
}

/// The event outbox written to the log, with its own offset.
struct EventLog(LogNotifier);

impl AfterTurn for EventLog {
    fn after_turn(&mut self, hsdb: &mut Hsdb, status: &mut DaemonStatus) -> Result<(), String> {
        let logged = self
            .0
            .poll(hsdb)
            .map_err(|e| format!("event log notifier: {e}"))?;
        status.events_logged += u64::try_from(logged.len()).unwrap_or(u64::MAX);
        if let Some(last) = logged.last() {
            status.last_event_id = last.id;
        }
        Ok(())
    }
}

/// `hactl run`: serve the configuration's host groups until SIGTERM or SIGINT. The scan
/// in progress when the signal comes completes; then the leases this controller holds
/// are released (PostgreSQL), the HSDB is closed, the admin socket removed, and `Ok`
/// returned (exit 0).
///
/// SQLite: the only controller of the file (a second one is refused, [`SoleLock`]), no
/// lease. PostgreSQL: one controller among several; per host group the one holding the
/// lease acts ([`leadership`]).
pub fn run(config: &Config) -> Result<(), DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(DaemonError::Signal)?;
    }
    let shown = config.hsdb.to_string();
    let hsdb_err = |source| DaemonError::Hsdb {
        hsdb: shown.clone(),
        source,
    };
    let target = config
        .hsdb
        .target(config.hsdb_password_file.as_deref())
        .map_err(|e| DaemonError::Target(e.to_string()))?;
    let options = Options {
        synchronous: config.synchronous,
        ..Options::default()
    };
    let started_ms = SystemClock.now_ms();
    let holder = controller_id(config, started_ms);
    let mono: Arc<dyn crate::clock::Monotonic> = Arc::new(BootClock::new());
    // SQLite: one controller. The lock first, so a second daemon changes nothing.
    let lock = match target.sqlite_path() {
        Some(path) if !path.exists() => {
            return Err(DaemonError::NoHsdb {
                path: path.to_owned(),
            });
        }
        Some(path) => Some(SoleLock::take(path, &holder)?),
        None => None,
    };
    let board = if lock.is_some() {
        Arc::new(Board::sole(&holder, Arc::clone(&mono)))
    } else {
        Arc::new(Board::leased(&holder, config.lease, Arc::clone(&mono)))
    };
    let board_for_notifiers = Arc::clone(&board);
    let mut db = Hsdb::connect(&target, &options).map_err(hsdb_err)?;
    // The notifiers are registered before the first turn: a new one starts at the
    // newest event (or the oldest, `start = "oldest"`) and misses nothing written after.
    let notifier_statuses: crate::notify::worker::SharedStatuses = Arc::default();
    let mut notifier_workers = Vec::new();
    for n in &config.notifiers {
        let offset = db
            .register_consumer(&n.consumer(), n.start_at_end)
            .map_err(hsdb_err)?;
        let target = target.clone();
        let worker = crate::notify::worker(
            n,
            NOTIFIER_POLL,
            Arc::new(DutiesGate(Arc::clone(&board_for_notifiers))),
            Box::new(move || Hsdb::connect(&target, &options)),
            Arc::clone(&notifier_statuses),
        )
        .map_err(|why| DaemonError::Notifier {
            name: n.name.clone(),
            why,
        })?;
        tracing::info!(
            notifier = %n.name,
            kind = n.channel.kind(),
            consumer = %n.consumer(),
            offset,
            min_severity = %n.filter.min_severity,
            "notifier configured"
        );
        notifier_workers.push((n.name.clone(), worker));
    }
    if let Ok(consumers) = db.event_consumers() {
        for c in consumers {
            let configured = config.notifiers.iter().any(|n| n.consumer() == c.name);
            if c.name.starts_with(crate::notify::config::CONSUMER_PREFIX) && !configured {
                tracing::warn!(
                    consumer = %c.name,
                    offset = c.last_id,
                    "an outbox consumer no [[notifier]] of this configuration reads: it holds \
                     events back until the retention bound; if the notifier was removed, \
                     `hactl notifier forget` it"
                );
            }
        }
    }
    let platform = open_platform(&config.platform, &db)?;
    let profile = profile(config);
    let mut starting =
        DaemonStatus::starting(&shown, platform.name(), profile.as_str(), started_ms);
    starting.controller_id = holder.clone();
    if let Some(settings) = board.settings() {
        starting.lease = Some(LeaseTimings {
            ttl_ms: settings.ttl_ms,
            renew_every_ms: settings.renew_every_ms,
            margin_ms: settings.margin_ms,
            // The scan interval is per group; the status fills in the longest served.
            takeover_bound_ms: settings.takeover_bound_ms(0),
        });
    }
    let published = Arc::new(Mutex::new(starting));
    let admin = AdminServer::start(&config.admin_socket, Arc::clone(&published))?;
    // The dashboard serves on every controller, leader or not: its actions are requests
    // written into the HSDB, carried out by the controller leading the host group.
    let dashboard = match &config.dashboard {
        Some(d) => Some(crate::dash::Dashboard::start(config, d)?),
        None => None,
    };
    match &lock {
        Some(lock) => tracing::info!(
            hsdb = %shown,
            platform = platform.name(),
            profile = profile.as_str(),
            admin_socket = %admin.path().display(),
            controller = %holder,
            lock = %lock.path().display(),
            "hactl run starting: the only controller of this SQLite HSDB (no lease)"
        ),
        None => tracing::info!(
            hsdb = %shown,
            platform = platform.name(),
            profile = profile.as_str(),
            admin_socket = %admin.path().display(),
            controller = %holder,
            ttl_ms = config.lease.ttl_ms,
            renew_every_ms = config.lease.renew_every_ms,
            margin_ms = config.lease.margin_ms,
            "hactl run starting: one controller among several on this PostgreSQL HSDB; \
             it acts for a host group while it holds the group's lease"
        ),
    }
    // The lease thread, on its own connection.
    let lease_thread = if lock.is_none() {
        let store = HsdbLeases::new(target.clone(), options);
        Some(
            board
                .spawn(Box::new(store))
                .map_err(|e| DaemonError::Platform {
                    driver: "lease",
                    why: format!("cannot start the lease thread: {e}"),
                })?,
        )
    } else {
        None
    };
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("service manager notifications off: {e}");
        Notifier::disabled()
    });
    let mut runner = Runner::new(
        db,
        platform,
        Arc::new(SystemClock),
        Arc::clone(&published),
        notifier,
    );
    runner.lead_with(Arc::clone(&board));
    {
        let target = target.clone();
        runner.reconnect_with(Box::new(move || Hsdb::connect(&target, &options)));
    }
    runner.discover_groups(Box::new(Groups {
        fixed: config.host_groups.clone(),
        profile: Some(profile),
    }));
    runner.after_turn(Box::new(EventLog(LogNotifier::new(LOG_CONSUMER))));
    runner.after_turn(Box::new(housekeeping::Housekeeping::with(
        Arc::new(SystemClock),
        config.event_retention,
        Some(Arc::clone(&notifier_statuses)),
    )));
    runner.show_notifiers(Arc::clone(&notifier_statuses));
    // One thread per notifier: a receiver that is down holds back only its own.
    let mut notifier_threads = Vec::new();
    for (name, worker) in notifier_workers {
        let stop = Arc::clone(&stop);
        match std::thread::Builder::new()
            .name(format!("notifier-{name}"))
            .spawn(move || worker.run(&stop))
        {
            Ok(t) => notifier_threads.push((name, t)),
            Err(e) => tracing::error!(notifier = %name, "cannot start its thread: {e}"),
        }
    }
    // Discovery and activities: a thread of their own (docs/controlplane.md,
    // "Discovery and activities"), so a discovery never delays a scan.
    let discovery_thread = crate::discover::worker::spawn(
        crate::discover::worker::WorkerSettings {
            discovery: config.discovery.clone(),
            platform: config.platform.clone(),
            profile: Some(profile),
            target: target.clone(),
            options,
            groups: config.host_groups.clone(),
            holder: holder.clone(),
        },
        Arc::clone(&board),
        Arc::clone(&stop),
    )
    .map_err(|e| DaemonError::Platform {
        driver: "discovery",
        why: format!("cannot start the discovery thread: {e}"),
    })?;
    let db = runner.run(&stop);
    // It saw the same stop: an activity in progress ends at its next host.
    let grace_end = std::time::Instant::now() + NOTIFIER_STOP_GRACE;
    while !discovery_thread.is_finished() && std::time::Instant::now() < grace_end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if discovery_thread.is_finished() {
        let _ = discovery_thread.join();
    } else {
        tracing::warn!(
            "discovery thread still waiting on the platform at the stop: not waited for; \
             its activity stays RUNNING until the next controller fails it as abandoned"
        );
    }
    // The notifiers saw the same stop: each ends after its attempt in progress.
    let grace_end = std::time::Instant::now() + NOTIFIER_STOP_GRACE;
    for (name, t) in notifier_threads {
        while !t.is_finished() && std::time::Instant::now() < grace_end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!(
                notifier = %name,
                grace_ms = u64::try_from(NOTIFIER_STOP_GRACE.as_millis()).unwrap_or(u64::MAX),
                "notifier still in a delivery at the stop: not waited for; that event is \
                 delivered again after the restart (same id)"
            );
        }
    }
    if let Some(d) = dashboard {
        d.stop();
    }
    // Hand the leases over now rather than at their expiry.
    board.stop();
    if let Some(t) = lease_thread {
        let _ = t.join();
    }
    drop(db);
    drop(admin);
    drop(lock);
    tracing::info!("stopped: leases released, HSDB closed, admin socket removed");
    Ok(())
}
