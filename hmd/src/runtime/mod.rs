//! The dataplane thread: raw sockets, the sans-IO endpoints, miss detection, and the
//! transitions it hands to the HSDB writer.
//!
//! One thread owns every socket, endpoint and the heartbeat table (no lock on the
//! per-frame path). It sleeps in `mio` until a socket is readable, a timer is due
//! (endpoint timers, miss deadlines, the monitor's own heartbeat), an admin request
//! arrives, or 200 ms pass (to notice SIGTERM).
//!
//! The loop is a driver struct, [`Monitor`], with one method per kind of event: frames
//! ([`Monitor::on_readable`]), timers ([`Monitor::on_timers`]), endpoint events
//! ([`Monitor::on_endpoint_event`]), transmits ([`Monitor::flush_transmits`]), state
//! changes ([`Monitor::commit_changes`]) and admin requests ([`Monitor::on_admin`]) —
//! the same shape as `vmmd`'s driver. A feature adds a field and a method.
//!
//! Files: this one holds the loop; `start.rs` opens the interfaces and registers the
//! monitor in the HSDB; `events.rs` handles frames, timers and endpoint events;
//! `rewatch.rs` keeps the previous run's VMs watched across a restart; `commands.rs`
//! acts on the control plane's commands (stop, start, forget a VM); `health.rs`
//! reports the monitor's own health (carrier of each interface, graceful stop);
//! `admin_answer.rs` answers the admin socket.

mod admin_answer;
mod commands;
mod events;
mod health;
mod registration;
mod reports;
mod rewatch;
mod start;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use dataplane::auth::{Authenticator, RefusalLog};
use dataplane::endpoint::Endpoint;
use dataplane::io::RawSocket;
use dataplane::message::{HelloId, Uuid};
use dataplane::time::{Instant, MonotonicClock};
use dataplane::wire::MacAddr;
use hsdb::Transition;
use mio::{Events, Poll, Token, Waker};

use self::commands::CommandCounts;
use self::rewatch::Rewatch;
use crate::commands::{Command, Completion};
use crate::config::Config;
use crate::quiet::{TransitionLog, Warnings};
use crate::refusals::Refusals;
use crate::supervise::Supervisor;
use crate::writer::{self, Writer};
use dataplane::heartbeat::{Change, HeartbeatTable, SessionKey};

/// Token of the admin waker; sockets use their interface index.
const WAKER: Token = Token(usize::MAX);

/// Longest sleep: the stop flag (set by SIGTERM/SIGINT) is looked at this often.
const MAX_SLEEP: Duration = Duration::from_millis(200);

/// Transmit buffer: the largest frame an endpoint writes (jumbo frames included).
const TX_BUF_LEN: usize = 9100;

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
    #[error("hsdb = \"{path}\": {source}")]
    Hsdb {
        /// The file.
        path: String,
        /// Why.
        source: hsdb::Error,
    },
    /// A socket could not be opened or used.
    #[error(transparent)]
    Io(#[from] dataplane::io::IoError),
    /// The HSDB setting cannot be used (its password file).
    #[error("{0}")]
    Config(String),
    /// The event loop failed.
    #[error("event loop: {0}")]
    Poll(std::io::Error),
    /// A session parameter is invalid.
    #[error(transparent)]
    Session(#[from] dataplane::session::ConfigError),
    /// The authentication keys cannot be used.
    #[error(transparent)]
    Auth(#[from] dataplane::auth::AuthSetupError),
}

/// Run the monitor until `stop` is set. Returns once every transition is committed.
pub fn run(
    config: &Config,
    stop: &Arc<AtomicBool>,
    admin: &Receiver<AdminRequest>,
    waker_slot: &Mutex<Option<Arc<Waker>>>,
) -> Result<(), RunError> {
    Monitor::start(config, waker_slot)?.run(stop, admin)
}

/// One HA interface: its socket and the sessions with the agents behind it.
struct Interface {
    socket: RawSocket,
    /// Opens what the socket receives, seals what the endpoint sends (docs/hvncp.md §7).
    auth: Authenticator,
    /// At most one line a minute about refused frames.
    auth_log: RefusalLog,
    endpoint: Endpoint,
    name: String,
    /// The last receive failed (link down); logged once.
    down: bool,
    /// Up with carrier at the last check (`health.rs`).
    carrier: bool,
}

/// What an agent's SYN announced, kept until its session is established.
type SynFacts = (String, hsdb::Version, hsdb::Version);

/// The monitor's driver: every interface, the heartbeat table and what waits for the
/// HSDB writer. One method per kind of event.
struct Monitor<'a> {
    config: &'a Config,
    clock: MonotonicClock,
    /// This incarnation's Hello identifier.
    hello: HelloId,
    poll: Poll,
    events: Events,
    interfaces: Vec<Interface>,
    writer: Writer,
    table: HeartbeatTable,
    /// VM UUID -> MAC as recorded for this monitor: a SYN claiming a known UUID from
    /// another MAC is refused (HVNCP.md §6).
    known_macs: HashMap<Uuid, MacAddr>,
    /// Agents between their SYN and the established session.
    syn_facts: HashMap<SessionKey, SynFacts>,
    /// Refused SYNs, aggregated per source and interval (rows and log lines bounded).
    refusals: Refusals,
    /// The previous run's DETECTED VMs that have not re-paired yet.
    rewatch: Rewatch,
    /// Commands from the control plane, read by the HSDB writer.
    commands: Receiver<Vec<Command>>,
    /// VMs whose HA monitoring the control plane stopped: never watched until it starts
    /// it again.
    stopped: HashSet<Uuid>,
    /// VMs a START_MONITORING found without a session: MISSING unless they pair in time.
    awaited: Rewatch,
    /// Commands acted on this turn, marked done by the writer after the transitions.
    completions: Vec<Completion>,
    /// Commands handled since the start.
    command_counts: CommandCounts,
    /// Application-report exchanges in progress (FETCH / CONFIRM commands).
    reports: reports::Exchanges,
    /// Heartbeat state changes of this turn.
    changes: Vec<Change>,
    /// Transitions for the HSDB writer, sent once per turn.
    pending: Vec<Transition>,
    next_hm_heartbeat: Instant,
    /// When the interfaces' carrier is read next.
    next_link_check: Instant,
    tx: Vec<u8>,
    /// The last receive pass found frames: look again without sleeping.
    busy: bool,
    /// READY, watchdog pings and the health verdict.
    supervisor: Supervisor,
    /// VM state changes logged one by one or summed up per burst.
    transitions: TransitionLog,
    /// Rate limits of the warnings a flood repeats.
    warnings: Warnings,
    /// The registration the writer makes once the HSDB answers, when it did not at
    /// start.
    registration: Option<registration::Awaited>,
}

impl Monitor<'_> {
    /// Turn until `stop` is set, then commit what is pending.
    fn run(mut self, stop: &AtomicBool, admin: &Receiver<AdminRequest>) -> Result<(), RunError> {
        while !stop.load(Ordering::Relaxed) {
            if !self.wait()? {
                continue;
            }
            let now = self.clock.now();
            self.on_readable(now);
            self.on_timers(now);
            // Events, then output: a SYN may be refused (its VM UUID belongs to another
            // MAC) only while its answer is still queued, so nothing is sent before the
            // events are handled — a refused SYN gets silence (docs/hvncp.md §3.2).
            self.on_endpoint_events(now);
            self.on_commands(now);
            self.on_registered(now);
            self.flush_transmits(now);
            self.commit_changes();
            self.on_admin(admin);
            let end = Duration::from_nanos(self.clock.now().as_nanos());
            self.supervisor.turn_completed(end, &self.writer.stats);
        }
        self.finish();
        Ok(())
    }

    /// The earliest endpoint timer, miss deadline or monitor heartbeat.
    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_hm_heartbeat;
        for i in &self.interfaces {
            if let Some(t) = i.endpoint.poll_timeout() {
                deadline = deadline.min(t);
            }
        }
        if let Some(t) = self.table.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.supervisor.next_ping() {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            deadline = deadline.min(Instant::from_nanos(nanos));
        }
        if let Some(t) = self.refusals.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.rewatch.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.awaited.next_deadline() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.reports.next_deadline() {
            deadline = deadline.min(t);
        }
        deadline.min(self.next_link_check)
    }

    /// Sleep until a socket is readable, an admin request arrives or the next deadline
    /// (at most [`MAX_SLEEP`]). `false` when interrupted by a signal.
    fn wait(&mut self) -> Result<bool, RunError> {
        // mio is edge-triggered and `recv` stops after a bounded batch: while the last
        // pass received something, look again without sleeping.
        let timeout = if self.busy {
            Duration::ZERO
        } else {
            self.clock.until(self.next_deadline()).min(MAX_SLEEP)
        };
        self.busy = false;
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(RunError::Poll(e)),
        }
    }

    /// Mark the graceful stop, hand what is pending to the writer and wait until it is
    /// committed.
    fn finish(mut self) {
        self.supervisor.stopping();
        if let Some(summary) = self.transitions.finish() {
            tracing::info!("{summary}");
        }
        self.shutdown_event();
        tracing::info!("stopping: committing pending transitions");
        self.writer.send_batch(writer::Batch {
            transitions: self.pending,
            completions: self.completions,
        });
        self.writer.finish();
        tracing::info!("HostMonitor has been shutdown."); // seed 004 L7383-7384
    }
}

/// Milliseconds since the Unix epoch at `t`, as the HSDB stores time.
fn epoch_ms(clock: &MonotonicClock, t: Instant) -> i64 {
    i64::try_from(clock.unix_ms(t)).unwrap_or(i64::MAX)
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
