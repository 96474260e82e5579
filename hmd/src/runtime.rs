//! The dataplane thread: raw sockets, the sans-IO endpoints, miss detection, and the
//! transitions it hands to the HSDB writer.
//!
//! One thread owns every socket, endpoint and the heartbeat table (no lock on the
//! per-frame path). It sleeps in `mio` until a socket is readable, a timer is due
//! (endpoint timers, miss deadlines, the monitor's own heartbeat), an admin request
//! arrives, or 200 ms pass (to notice SIGTERM).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Outcome, Role};
use dataplane::io::{RawSocket, RxMode};
use dataplane::message::{HelloId, Uuid};
use dataplane::time::Instant;
use dataplane::wire::{MacAddr, VERSION};
use hsdb::{HmRecord, HostRecord, Hsdb, Options, Transition};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::heartbeat::{Change, HbState, HeartbeatTable, SessionKey};
use crate::writer::Writer;

/// Token of the admin waker; sockets use their interface index.
const WAKER: Token = Token(usize::MAX);

/// A request from the admin socket, answered by the dataplane thread.
#[derive(Debug)]
pub struct AdminRequest {
    /// `status`, `stats`, `vms` or `metrics`.
    pub command: String,
    /// Where the text reply goes.
    pub reply: Sender<String>,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HSDB could not be opened or written at start-up.
    #[error("HSDB {path}: {source}")]
    Hsdb {
        /// The file.
        path: String,
        /// Why.
        source: hsdb::Error,
    },
    /// A socket could not be opened or used.
    #[error(transparent)]
    Io(#[from] dataplane::io::IoError),
    /// The event loop failed.
    #[error("event loop: {0}")]
    Poll(std::io::Error),
    /// A session parameter is invalid.
    #[error(transparent)]
    Session(#[from] dataplane::session::ConfigError),
}

/// Time for the dataplane (monotonic) and for the HSDB (ms since the epoch).
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: std::time::Instant,
    epoch_ms_at_start: i64,
}

impl Clock {
    fn new() -> Clock {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start: std::time::Instant::now(),
            epoch_ms_at_start: i64::try_from(epoch.as_millis()).unwrap_or(i64::MAX),
        }
    }
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
    fn epoch_ms(&self, t: Instant) -> i64 {
        self.epoch_ms_at_start + i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
    }
    fn until(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.now())
    }
}

/// This incarnation's Hello identifier: start time and process id (the seed's form,
/// `1556303548.719328000.38`, seed 004 L8313, L8326-8328).
fn hello_id() -> HelloId {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    HelloId {
        secs: now.as_secs(),
        nanos: now.subsec_nanos(),
        suffix: std::process::id(),
    }
}

struct Interface {
    socket: RawSocket,
    endpoint: Endpoint,
    name: String,
    /// The last receive failed (link down); logged once.
    down: bool,
}

/// Run the monitor until `stop` is set. Returns once every transition is committed.
pub fn run(
    config: &Config,
    stop: &Arc<AtomicBool>,
    admin: &Receiver<AdminRequest>,
    waker_slot: &std::sync::Mutex<Option<Arc<Waker>>>,
) -> Result<(), RunError> {
    let clock = Clock::new();
    let hello = hello_id();
    let hsdb_err = |source| RunError::Hsdb {
        path: config.hsdb.display().to_string(),
        source,
    };
    let options = Options {
        synchronous: config.synchronous,
        ..Options::default()
    };
    let mut hsdb = Hsdb::open(&config.hsdb, &options).map_err(hsdb_err)?;

    let mut poll = Poll::new().map_err(RunError::Poll)?;
    let mut interfaces = Vec::new();
    for (i, name) in config.interfaces.iter().enumerate() {
        let socket = RawSocket::open(name, config.ethertype, RxMode::DAEMON_RING)?;
        let mac = dataplane::io::Interface::by_name(name)?.mac();
        let mut ep_config = EndpointConfig::monitor(mac, config.monitor_uuid, hello);
        ep_config.role = Role::Monitor {
            hello,
            hello_period: config.hello_period,
            hb_period: config.hb_period,
        };
        ep_config.session.ethertype = config.ethertype;
        let endpoint = Endpoint::new(ep_config, clock.now())?;
        poll.registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )
            .map_err(RunError::Poll)?;
        tracing::info!(
            "interface {} ({mac}): listening for agents, Hello every {:?}",
            name.as_str(),
            config.hello_period
        );
        interfaces.push(Interface {
            socket,
            endpoint,
            name: name.as_str().to_owned(),
            down: false,
        });
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(RunError::Poll)?);
    if let Ok(mut slot) = waker_slot.lock() {
        *slot = Some(Arc::clone(&waker));
    }

    // Register ourselves (seed: the HM is known to the HSDB before it runs).
    let first_mac = interfaces
        .first()
        .map_or(MacAddr::default(), |i| i.endpoint.config().local_mac);
    let at = clock.epoch_ms(clock.now());
    if hsdb.host(config.host_id).map_err(hsdb_err)?.is_none() {
        hsdb.upsert_host(&HostRecord {
            id: config.host_id,
            name: config.host_name.clone(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .map_err(hsdb_err)?;
    }
    hsdb.register_hm(&HmRecord {
        uuid: config.monitor_uuid,
        host: config.host_id,
        mac: first_mac,
        incarnation: hello,
        version: VERSION,
        at,
    })
    .map_err(hsdb_err)?;
    // VM UUID -> MAC as recorded for this monitor: a SYN claiming a known UUID from
    // another MAC is refused (HVNCP.md §6).
    let mut known_macs: HashMap<Uuid, MacAddr> = HashMap::new();
    for vm in hsdb.vms().map_err(hsdb_err)? {
        if let Some(mac) = hsdb
            .vm_mac(&vm.uuid, &config.monitor_uuid)
            .map_err(hsdb_err)?
        {
            known_macs.insert(vm.uuid, mac);
        }
    }
    tracing::info!(
        "monitor {} incarnation {hello} registered in {} ({} known VMs)",
        config.monitor_uuid,
        config.hsdb.display(),
        known_macs.len()
    );

    let writer = Writer::spawn(hsdb, config.flush).map_err(RunError::Poll)?;
    let mut table = HeartbeatTable::new(interfaces.len(), config.vm_miss_after);
    let mut pending: Vec<Transition> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut ostypes: HashMap<SessionKey, (String, hsdb::Version, hsdb::Version)> = HashMap::new();
    let mut next_hm_heartbeat = clock.now();
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 9100];
    let mut busy = false;

    while !stop.load(Ordering::Relaxed) {
        let mut deadline = next_hm_heartbeat;
        for i in &interfaces {
            if let Some(t) = i.endpoint.poll_timeout() {
                deadline = deadline.min(t);
            }
        }
        if let Some(t) = table.next_deadline() {
            deadline = deadline.min(t);
        }
        // mio is edge-triggered and `recv` stops after a bounded batch: while the last
        // pass received something, look again without sleeping.
        let timeout = if busy {
            Duration::ZERO
        } else {
            clock.until(deadline).min(Duration::from_millis(200))
        };
        busy = false;
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RunError::Poll(e));
        }
        let now = clock.now();
        // Frames: drain every socket that is readable (and the others, cheaply).
        for (i, iface) in interfaces.iter_mut().enumerate() {
            let key_iface = u16::try_from(i).unwrap_or(u16::MAX);
            let Interface {
                socket,
                endpoint,
                name,
                down,
            } = iface;
            let received = socket.recv(|frame| {
                if let Outcome::Heartbeat(peer) = endpoint.handle_frame(now, frame)
                    && let Some(change) = table.heartbeat(
                        SessionKey {
                            iface: key_iface,
                            peer,
                        },
                        now,
                    )
                {
                    changes.push(change);
                }
            });
            // A link going down is reported once by the socket; the daemon keeps
            // serving its other interfaces, and the silent VMs become MISSING.
            if let Ok(n) = received
                && n > 0
            {
                busy = true;
            }
            match received {
                Ok(_) if *down => {
                    tracing::info!("interface {name}: receiving again");
                    *down = false;
                }
                Ok(_) => {}
                Err(e) if !*down => {
                    tracing::warn!("interface {name}: {e}");
                    *down = true;
                }
                Err(_) => {}
            }
        }
        // Timers.
        for iface in &mut interfaces {
            if iface.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                iface.endpoint.handle_timeout(now);
            }
        }
        table.expire(now, &mut changes);
        if now >= next_hm_heartbeat {
            pending.push(Transition::HmHeartbeat {
                hm: config.monitor_uuid,
                at: clock.epoch_ms(now),
            });
            next_hm_heartbeat = now + config.hm_heartbeat_period;
        }
        // Events, then output: a SYN may be refused (its VM UUID belongs to another
        // MAC) only while its answer is still queued, so nothing is sent before the
        // events are handled — a refused SYN gets silence (docs/hvncp.md §3.2).
        for (i, iface) in interfaces.iter_mut().enumerate() {
            let key_iface = u16::try_from(i).unwrap_or(u16::MAX);
            while let Some(event) = iface.endpoint.poll_event() {
                on_event(
                    config,
                    &clock,
                    now,
                    key_iface,
                    iface,
                    event,
                    &mut table,
                    &mut known_macs,
                    &mut ostypes,
                    &mut changes,
                    &mut pending,
                );
            }
            while let Some(len) = iface.endpoint.poll_transmit(now, &mut buf) {
                if let Err(e) = iface.socket.send(&buf[..len])
                    && !iface.down
                {
                    tracing::warn!("{}: send failed: {e}", iface.name);
                }
            }
        }
        for c in changes.drain(..) {
            let at = clock.epoch_ms(c.at);
            let (vm, hm) = (c.vm, config.monitor_uuid);
            tracing::info!("VM {vm} state changed to {}", c.state.name());
            pending.push(match c.state {
                HbState::Detected | HbState::Awaiting => Transition::Detected { vm, hm, at },
                HbState::Missing => Transition::Missing { vm, hm, at },
                HbState::Suspended => Transition::Suspended { vm, hm, at },
            });
        }
        if !pending.is_empty() {
            writer.send(std::mem::take(&mut pending));
        }
        while let Ok(request) = admin.try_recv() {
            let text = answer(
                config,
                &clock,
                hello,
                &mut interfaces,
                &table,
                &writer,
                &request.command,
            );
            let _ = request.reply.send(text);
        }
    }
    tracing::info!("stopping: committing pending transitions");
    writer.send(pending);
    writer.finish();
    tracing::info!("HostMonitor has been shutdown."); // seed 004 L7383-7384
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn on_event(
    config: &Config,
    clock: &Clock,
    now: Instant,
    iface_index: u16,
    iface: &mut Interface,
    event: EndpointEvent,
    table: &mut HeartbeatTable,
    known_macs: &mut HashMap<Uuid, MacAddr>,
    ostypes: &mut HashMap<SessionKey, (String, hsdb::Version, hsdb::Version)>,
    changes: &mut Vec<Change>,
    pending: &mut Vec<Transition>,
) {
    let key = |peer| SessionKey {
        iface: iface_index,
        peer,
    };
    let hm = config.monitor_uuid;
    let at = clock.epoch_ms(now);
    match event {
        EndpointEvent::AgentSyn {
            peer,
            mac,
            uuid,
            ostype,
            ver_lower,
            ver_upper,
        } => {
            if let Some(known) = known_macs.get(&uuid)
                && *known != mac
            {
                let why = format!("VM {uuid} is registered with MAC {known}, SYN came from {mac}");
                tracing::warn!("{}: refusing SYN: {why}", iface.name);
                iface.endpoint.refuse(now, peer, &why);
                pending.push(Transition::Event {
                    kind: "SYN_REFUSED".into(),
                    vm: Some(uuid),
                    hm: Some(hm),
                    text: why,
                    at,
                });
                return;
            }
            tracing::info!("{}: SYN from VM {uuid} at {mac} ({ostype})", iface.name);
            ostypes.insert(key(peer), (ostype, ver_lower, ver_upper));
        }
        EndpointEvent::Established { peer, mac, uuid } => {
            let (ostype, ver_lower, ver_upper) = ostypes
                .remove(&key(peer))
                .unwrap_or_else(|| (String::new(), VERSION, VERSION));
            tracing::info!(
                "{}: VM {uuid} at {mac} discovered, START_HB every {:?}",
                iface.name,
                config.hb_period
            );
            known_macs.insert(uuid, mac);
            pending.push(Transition::Discovered {
                vm: uuid,
                hm,
                mac,
                ostype,
                ver_lower,
                ver_upper,
                at,
            });
            table.watch(key(peer), uuid, now);
        }
        EndpointEvent::Shutdown { peer } => {
            if let Some(c) = table.suspend(key(peer), now) {
                changes.push(c);
            }
        }
        EndpointEvent::Doorbell { peer, vector } => {
            if let Some(vm) = iface.endpoint.peer_uuid(peer) {
                pending.push(Transition::Doorbell { vm, hm, vector, at });
            }
        }
        EndpointEvent::SynRefused { mac, why, .. } => {
            tracing::warn!("{}: SYN from {mac} refused: {why}", iface.name);
        }
        EndpointEvent::Closed { mac, reason, .. } => {
            tracing::info!("{}: session with {mac} closed: {reason}", iface.name);
        }
        other => tracing::debug!("{}: {other:?}", iface.name),
    }
}

/// Text reply to an admin command.
fn answer(
    config: &Config,
    clock: &Clock,
    hello: HelloId,
    interfaces: &mut [Interface],
    table: &HeartbeatTable,
    writer: &Writer,
    command: &str,
) -> String {
    let mut out = String::new();
    let now = clock.now();
    let w = &writer.stats;
    match command {
        "status" => {
            let mut counts = [0usize; 4];
            for (_, _, state, _) in table.iter() {
                counts[state as usize] += 1;
            }
            let _ = writeln!(out, "monitor      {}", config.monitor_uuid);
            let _ = writeln!(out, "incarnation  {hello}");
            let _ = writeln!(out, "uptime       {:.0} s", now.as_nanos() as f64 / 1e9);
            let _ = writeln!(out, "hsdb         {}", config.hsdb.display());
            for i in interfaces.iter() {
                let _ = writeln!(out, "interface    {} {} sessions", i.name, i.endpoint.len());
            }
            let _ = writeln!(
                out,
                "vms          {} watched: {} detected, {} missing, {} suspended, {} awaiting first heartbeat",
                table.len(),
                counts[HbState::Detected as usize],
                counts[HbState::Missing as usize],
                counts[HbState::Suspended as usize],
                counts[HbState::Awaiting as usize]
            );
        }
        "vms" => {
            for (key, vm, state, last) in table.iter() {
                let iface = &interfaces[usize::from(key.iface)];
                let mac = iface
                    .endpoint
                    .peer_mac(key.peer)
                    .map_or_else(|| "-".to_owned(), |m| m.to_string());
                let _ = writeln!(
                    out,
                    "{vm} {mac} {} {} last_heartbeat_age_ms={}",
                    iface.name,
                    state.name(),
                    now.saturating_duration_since(last).as_millis()
                );
            }
        }
        "stats" | "metrics" => {
            let prom = command == "metrics";
            for i in interfaces.iter_mut() {
                for (name, value) in i.endpoint.stats().iter() {
                    if prom {
                        let _ =
                            writeln!(out, "hvha_hmd_{name}{{interface=\"{}\"}} {value}", i.name);
                    } else {
                        let _ = writeln!(out, "{} {name} {value}", i.name);
                    }
                }
                if let Ok(s) = i.socket.stats() {
                    for (name, value) in [
                        ("kernel_packets", s.kernel_packets),
                        ("kernel_drops", s.kernel_drops),
                        ("kernel_freezes", s.kernel_freezes),
                        ("socket_delivered", s.delivered),
                        ("socket_truncated", s.truncated),
                    ] {
                        if prom {
                            let _ = writeln!(
                                out,
                                "hvha_hmd_{name}{{interface=\"{}\"}} {value}",
                                i.name
                            );
                        } else {
                            let _ = writeln!(out, "{} {name} {value}", i.name);
                        }
                    }
                }
            }
            for (name, value) in [
                ("hsdb_transitions", w.transitions.load(Ordering::Relaxed)),
                ("hsdb_commits", w.commits.load(Ordering::Relaxed)),
                ("hsdb_retries", w.retries.load(Ordering::Relaxed)),
                (
                    "hsdb_last_commit_us",
                    w.last_commit_us.load(Ordering::Relaxed),
                ),
                ("vms_watched", table.len() as u64),
            ] {
                if prom {
                    let _ = writeln!(out, "hvha_hmd_{name} {value}");
                } else {
                    let _ = writeln!(out, "- {name} {value}");
                }
            }
        }
        other => {
            let _ = writeln!(
                out,
                "error: unknown command {other:?}; commands: status, stats, vms, metrics"
            );
        }
    }
    out
}
