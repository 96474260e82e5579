//! The driver loop: one thread owns every interface's raw socket and HVNCP endpoint,
//! the clock, the interface rescans and the graceful stop.
//!
//! Each turn: wait on every socket and the signal pipe (`mio`), with a timeout of the
//! earliest endpoint timer or rescan; then receive frames into the endpoints, run due
//! timers, log the endpoints' events and send what they produced. The driver is a
//! struct, [`Agent`], with one method per kind of event, the same shape as `hmd`'s. The protocol itself
//! (Hello, SYN, `START_HB`, heartbeats, `SHDN`) is the endpoint's; this module never
//! builds a frame.
//!
//! An agent sees a handful of frames per second, so one thread and `recvmmsg` are
//! plenty; what matters is that a heartbeat leaves on time and that a stop request is
//! noticed at once (the signal handler writes to a socket pair the loop waits on).
//!
//! The application report (`report.rs`): the AME wakes the loop through a `mio::Waker`
//! when its generation changes; the loop then reads its status into the [`Reporter`],
//! rings the doorbells it asks for, and answers `PMSG_REQ` / `GMSG` from the monitors.

use std::io::{self, Read as _};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use dataplane::auth::{self, Authenticator, Key, Keyring, RefusalLog};
use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Outcome, PeerId};
use dataplane::io::{InterfaceName, IoError, RawSocket, RxMode};
use dataplane::session::MessageId;
use dataplane::time::{Instant, MonotonicClock};
use dataplane::wire::MacAddr;
use hvha_notify::{Notifier, WatchdogPacer};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::interfaces::{self, Facts, Verdict};
use crate::monitors::{Heard, HelloWatch};
use crate::report::{MonitorKey, Outgoing, ReportSource, Reporter};

/// How long a stopping agent waits for its `SHDN:DAEMON` messages to be acknowledged.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Replay windows an agent keeps per interface: one per monitor MAC and key; a VLAN
/// carries a handful of monitors (docs/hvncp.md §7.5).
const MAX_AUTH_SENDERS: usize = 64;

/// `recvmmsg` batch: an agent receives a few frames per second.
const RX_BATCH: usize = 8;

/// Receive calls per socket per wake-up before other work gets a turn.
const RECV_CALLS_PER_WAKE: usize = 4;

/// Largest frame an endpoint writes: 1500-byte MTU plus the Ethernet header.
const TX_BUF_LEN: usize = 1514;

const SIGNAL_TOKEN: Token = Token(0);

/// The report source's waker (its generation changed).
const REPORT_TOKEN: Token = Token(usize::MAX);

/// Why the agent cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `epoll_create` failed.
    #[error("cannot create the event poller: {0}")]
    Poll(io::Error),
    /// Waiting for frames or signals failed.
    #[error("cannot wait for frames and signals: {0}")]
    Wait(io::Error),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(io::Error),
    /// A socket could not be added to the poller.
    #[error("cannot watch the socket of interface {iface}: {source}")]
    Register {
        /// The interface.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// A fatal IO failure, such as a missing privilege to open raw sockets.
    #[error(transparent)]
    Io(#[from] IoError),
    /// An endpoint refused its configuration (cannot happen with a validated config).
    #[error("interface {iface}: {source}")]
    Endpoint {
        /// The interface.
        iface: InterfaceName,
        /// What the endpoint refused.
        source: dataplane::session::ConfigError,
    },
    /// The authentication keys cannot be used (a key file others may read, …).
    #[error(transparent)]
    Auth(#[from] dataplane::auth::AuthSetupError),
}

/// What a graceful stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// `SHDN:DAEMON` messages sent (one per monitor with an open session).
    pub sent: usize,
    /// Those acknowledged by their monitor before the agent exited.
    pub delivered: usize,
}

/// One interface in use: its socket and the sessions with the monitors behind it.
struct Link {
    name: InterfaceName,
    index: u32,
    mac: MacAddr,
    socket: RawSocket,
    /// Opens what the socket receives, seals what the endpoint sends (docs/hvncp.md §7).
    auth: Authenticator,
    /// At most one line a minute about refused frames.
    auth_log: RefusalLog,
    endpoint: Endpoint,
    token: Token,
    /// Frames may still be queued: the last receive stopped at its limit.
    readable: bool,
    /// The last send failed (logged once until one succeeds).
    send_failing: bool,
}

/// A `SHDN:DAEMON` waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
struct PendingShutdown {
    iface: InterfaceName,
    peer: PeerId,
    monitor: MacAddr,
    id: MessageId,
}

/// Stop requests: the signal handlers write a byte to `pipe` (waking the poller) and
/// record which signal in `last`.
struct Signals {
    pipe: UnixStream,
    last: Arc<AtomicUsize>,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        let (pipe, writer) = UnixStream::pair()?;
        pipe.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let last = Arc::new(AtomicUsize::new(0));
        for signal in [SIGTERM, SIGINT] {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
            #[allow(clippy::cast_sign_loss)] // signal numbers are small and positive
            signal_hook::flag::register_usize(signal, Arc::clone(&last), signal as usize)?;
        }
        Ok(Signals { pipe, last })
    }

    /// Empty the pipe; the name of the last signal received, if any arrived.
    fn take(&mut self) -> Option<&'static str> {
        let mut buf = [0u8; 16];
        let mut any = false;
        while let Ok(n) = self.pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any.then(|| match self.last.load(Ordering::Relaxed) {
            #[allow(clippy::cast_sign_loss)]
            s if s == SIGINT as usize => "SIGINT",
            _ => "SIGTERM",
        })
    }
}

/// The agent's driver: every link, the poller, the rescan schedule and the stop state.
/// One method per kind of event — frames ([`Agent::on_readable`]), timers
/// ([`Agent::on_timers`]), endpoint events ([`Agent::on_endpoint_event`]), transmits
/// ([`Agent::flush_transmits`]), stop signals ([`Agent::on_signal`]) and interface
/// rescans ([`Agent::on_rescan`]) — the same shape as `hmd`'s driver: a feature adds a
/// field and a method.
pub struct Agent {
    config: Config,
    /// The keys of the host group, read at start (none when `auth = off`).
    keys: Option<Keyring>,
    clock: MonotonicClock,
    poll: Poll,
    events: Events,
    signals: Signals,
    links: Vec<Link>,
    next_token: usize,
    verdicts: Vec<(InterfaceName, Verdict)>,
    /// Last open failure per interface, so that a retry every rescan logs once.
    open_failures: Vec<(InterfaceName, String)>,
    warned_no_interface: bool,
    next_rescan: Instant,
    /// Set once a stop was requested: when to give up waiting for acknowledgements.
    stop_deadline: Option<Instant>,
    pending: Vec<PendingShutdown>,
    report: StopReport,
    tx: Vec<u8>,
    /// The service manager (`NOTIFY_SOCKET`): READY after the first interface scan,
    /// `WATCHDOG=1` at the end of a turn when due.
    notifier: Notifier,
    pacer: Option<WatchdogPacer>,
    /// The monitors heard, to log once when one's Hellos stop and once when they return.
    hellos: HelloWatch,
    /// Where the application report comes from (the AME).
    source: Box<dyn ReportSource>,
    /// Kept alive for the source's change callback.
    _waker: Arc<Waker>,
    /// The source changed since it was last read.
    source_changed: bool,
    /// The report exchange's state (`report.rs`).
    reporter: Reporter,
    /// Report payloads to send this turn.
    outgoing: Vec<Outgoing>,
}

impl Agent {
    /// Install the signal handlers and create the poller. Nothing is opened yet.
    /// `source` is the application report's (the AME's handle): it wakes the loop when
    /// its generation changes.
    pub fn new(config: Config, source: Box<dyn ReportSource>) -> Result<Agent, RuntimeError> {
        // Keys first: a key file others may read stops the start before anything opens.
        let keys = config.auth.keyring()?;
        if let Some(k) = &keys {
            info!(
                auth = %config.auth.mode,
                key = k.primary().id(),
                second_key = ?k.second().map(Key::id),
                "authenticated frames"
            );
        }
        let poll = Poll::new().map_err(RuntimeError::Poll)?;
        let signals = Signals::install().map_err(RuntimeError::Signals)?;
        poll.registry()
            .register(
                &mut SourceFd(&signals.pipe.as_raw_fd()),
                SIGNAL_TOKEN,
                Interest::READABLE,
            )
            .map_err(RuntimeError::Signals)?;
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            warn!("service manager notifications off: {e}");
            Notifier::disabled()
        });
        let pacer = notifier.watchdog_timeout().map(WatchdogPacer::new);
        let waker =
            Arc::new(Waker::new(poll.registry(), REPORT_TOKEN).map_err(RuntimeError::Poll)?);
        let wake = Arc::clone(&waker);
        source.set_on_change(Box::new(move || {
            if let Err(e) = wake.wake() {
                debug!("cannot wake the agent's loop for a report change: {e}");
            }
        }));
        let (generation, apps) = source.status();
        let reporter = Reporter::new(dataplane::endpoint::process_incarnation(), generation, apps);
        if let Some(p) = pacer {
            info!(every = ?p.interval(), "service manager watchdog: pinging from the loop");
        }
        Ok(Agent {
            config,
            keys,
            clock: MonotonicClock::new(),
            poll,
            events: Events::with_capacity(64),
            signals,
            links: Vec::new(),
            next_token: 1,
            verdicts: Vec::new(),
            open_failures: Vec::new(),
            warned_no_interface: false,
            next_rescan: Instant::ZERO,
            stop_deadline: None,
            pending: Vec::new(),
            report: StopReport {
                sent: 0,
                delivered: 0,
            },
            tx: vec![0u8; TX_BUF_LEN],
            notifier,
            pacer,
            hellos: HelloWatch::default(),
            source,
            _waker: waker,
            source_changed: false,
            reporter,
            outgoing: Vec::new(),
        })
    }

    /// Run until SIGTERM or SIGINT, then stop gracefully: send `SHDN:DAEMON` to every
    /// monitor and wait up to [`STOP_GRACE`] for the acknowledgements. A second signal
    /// ends the wait at once.
    pub fn run(mut self) -> Result<StopReport, RuntimeError> {
        self.on_rescan(self.clock.now())?;
        let ready = format!("{} interface(s) open", self.links.len());
        if let Err(e) = self.notifier.ready(&ready) {
            warn!("cannot tell the service manager READY=1: {e}");
        }
        loop {
            let signalled = self.wait()?;
            let now = self.clock.now();
            if signalled && self.on_signal(now).is_break() {
                break;
            }
            self.on_readable(now);
            self.on_timers(now);
            self.on_endpoint_events(now);
            self.on_report(now);
            self.flush_transmits(now);
            match self.stop_deadline {
                Some(deadline) => {
                    if self.pending.is_empty() || now >= deadline {
                        break;
                    }
                }
                None => {
                    if now >= self.next_rescan {
                        self.on_rescan(now)?;
                        self.on_endpoint_events(now);
                        self.flush_transmits(now);
                    }
                }
            }
            self.on_turn_completed();
        }
        for p in &self.pending {
            warn!(iface = %p.iface, monitor = %p.monitor, "SHDN:DAEMON not acknowledged in time");
        }
        let r = self.reporter.stats();
        info!(
            generation = self.reporter.generation(),
            confirmed = self.reporter.confirmed(),
            doorbells = r.doorbells,
            requests = r.requests,
            chunks = r.chunks,
            confirms = r.confirms,
            confirms_unknown = r.confirms_unknown,
            refused = r.malformed,
            "application report exchange at stop"
        );
        Ok(self.report)
    }

    /// Sleep until a socket or the signal pipe is readable or the next deadline; mark
    /// the readable links. `true` when the signal pipe woke us.
    fn wait(&mut self) -> Result<bool, RuntimeError> {
        let now = self.clock.now();
        let timeout = if self.links.iter().any(|l| l.readable) {
            Duration::ZERO
        } else {
            self.next_deadline().saturating_duration_since(now)
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RuntimeError::Wait(e)),
        }
        let mut signalled = false;
        for event in &self.events {
            if event.token() == SIGNAL_TOKEN {
                signalled = true;
            } else if event.token() == REPORT_TOKEN {
                self.source_changed = true;
            } else if let Some(link) = self.links.iter_mut().find(|l| l.token == event.token()) {
                link.readable = true;
            }
        }
        Ok(signalled)
    }

    /// A stop request: the first begins the graceful stop, a second ends it at once
    /// ([`ControlFlow::Break`]).
    fn on_signal(&mut self, now: Instant) -> ControlFlow<()> {
        let Some(signal) = self.signals.take() else {
            return ControlFlow::Continue(());
        };
        if self.stop_deadline.is_some() {
            warn!(
                signal,
                undelivered = self.pending.len(),
                "second stop request: exiting without waiting for the remaining \
                 SHDN:DAEMON acknowledgements"
            );
            return ControlFlow::Break(());
        }
        self.begin_stop(now, signal);
        ControlFlow::Continue(())
    }

    /// The earliest of every endpoint's timer, the next rescan and the stop deadline.
    fn next_deadline(&self) -> Instant {
        let others = match self.stop_deadline {
            Some(deadline) => deadline,
            None => self.next_rescan,
        };
        let ping = self.pacer.map_or(Instant::FAR_FUTURE, |p| {
            Instant::from_nanos(u64::try_from(p.next_due().as_nanos()).unwrap_or(u64::MAX))
        });
        let silence = self.hellos.next_deadline().unwrap_or(Instant::FAR_FUTURE);
        // No doorbells once stopping.
        let doorbell = match self.stop_deadline {
            None => self.reporter.next_deadline(),
            Some(_) => None,
        }
        .unwrap_or(Instant::FAR_FUTURE);
        self.links
            .iter()
            .filter_map(|l| l.endpoint.poll_timeout())
            .fold(others.min(ping).min(silence).min(doorbell), Instant::min)
    }

    /// The end of a loop turn: `WATCHDOG=1` if one is due. Only here, so a loop that
    /// stops turning stops the pings.
    fn on_turn_completed(&mut self) {
        let now = Duration::from_nanos(self.clock.now().as_nanos());
        if let Some(pacer) = &mut self.pacer
            && pacer.is_due(now)
        {
            match self.notifier.watchdog() {
                Ok(()) => pacer.pinged(now),
                Err(e) => debug!("watchdog ping not delivered: {e}"),
            }
        }
    }

    /// Hand every queued frame of every readable socket to its endpoint. A socket that
    /// fails (the interface went down or vanished) is dropped with its sessions; the
    /// next rescan takes the interface back if it is usable again.
    fn on_readable(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (i, link) in self.links.iter_mut().enumerate() {
            if !link.readable {
                continue;
            }
            let Link {
                socket,
                auth,
                endpoint,
                name,
                ..
            } = link;
            let hellos = &mut self.hellos;
            let ethertype = self.config.ethertype;
            let mut calls = 0;
            let result = loop {
                match socket.recv(|frame| {
                    // Refused frames are counted by the authenticator.
                    if let Ok(frame) = auth.open(frame)
                        && endpoint.handle_frame(now, frame) == Outcome::Handled
                        && let Some(monitor) = hello_source(frame, ethertype)
                        && let Some(back) = hellos.hello(now, *name, monitor)
                    {
                        log_heard(&back);
                    }
                }) {
                    Ok(0) => break Ok(false),
                    Ok(_) if calls + 1 >= RECV_CALLS_PER_WAKE => break Ok(true),
                    Ok(_) => calls += 1,
                    Err(e) if e.is_would_block() => break Ok(false),
                    Err(e) => break Err(e),
                }
            };
            if let Some((n, last)) = link.auth_log.poll(now, &link.auth) {
                warn!(iface = %link.name, refused = n, %last, "frames refused by authentication");
            }
            match result {
                Ok(more) => link.readable = more,
                Err(e) => {
                    warn!(iface = %link.name, "{e}; dropping the interface and its sessions");
                    failed.push(i);
                }
            }
        }
        for i in failed.into_iter().rev() {
            self.drop_link(i);
        }
    }

    /// Run the endpoints' due timers (Hello timeouts, retransmits, heartbeats).
    fn on_timers(&mut self, now: Instant) {
        for link in &mut self.links {
            if link.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                link.endpoint.handle_timeout(now);
            }
        }
        let mut silent = Vec::new();
        self.hellos.check(now, &mut silent);
        silent.iter().for_each(log_heard);
    }

    /// Every event every endpoint raised.
    fn on_endpoint_events(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            while let Some(event) = self.links[i].endpoint.poll_event() {
                self.on_endpoint_event(now, i, &event);
            }
        }
    }

    /// One event of link number `i`'s endpoint: log it, settle an awaited `SHDN`, tell
    /// the reporter of heartbeat starts, closed sessions and report messages.
    fn on_endpoint_event(&mut self, now: Instant, i: usize, event: &EndpointEvent) {
        let link = &self.links[i];
        let key = |peer| MonitorKey {
            iface: link.name,
            peer,
        };
        match event {
            EndpointEvent::HeartbeatStarted { peer, period } => {
                self.reporter.heartbeat_started(now, key(*peer), *period);
            }
            EndpointEvent::Closed { peer, .. } | EndpointEvent::MonitorRestarted { peer, .. } => {
                self.reporter.forget(key(*peer));
            }
            EndpointEvent::Message { peer, payload } => {
                if let Ok(message) = dataplane::message::Message::parse(payload)
                    && self
                        .reporter
                        .on_message(key(*peer), &message, &mut self.outgoing)
                {
                    return;
                }
            }
            _ => {}
        }
        log_event(link, event);
        settle_shutdown(&mut self.pending, &mut self.report, link.name, event);
    }

    /// Read the report source if it changed, then send the doorbells due and the
    /// answers of this turn. Nothing new once stopping.
    fn on_report(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            self.outgoing.clear();
            return;
        }
        if std::mem::take(&mut self.source_changed) {
            let (generation, apps) = self.source.status();
            self.reporter.update(now, generation, apps);
        }
        self.reporter.poll(now, &mut self.outgoing);
        for (key, payload) in self.outgoing.drain(..) {
            let Some(link) = self.links.iter_mut().find(|l| l.name == key.iface) else {
                continue;
            };
            if let Err(e) = link.endpoint.send(
                now,
                key.peer,
                dataplane::session::Priority::Normal,
                &payload,
            ) {
                debug!(iface = %key.iface, peer = key.peer.0, "report message not sent: {e}");
            }
        }
    }

    /// Send every frame the endpoints have ready.
    fn flush_transmits(&mut self, now: Instant) {
        for link in &mut self.links {
            while let Some(len) = link.endpoint.poll_transmit(now, &mut self.tx) {
                let len = match link.auth.seal(&mut self.tx, len) {
                    Ok(n) => n,
                    Err(e) => {
                        warn!(iface = %link.name, "cannot seal a frame: {e}");
                        continue;
                    }
                };
                let frame = self.tx.get(..len).unwrap_or(&[]);
                match link.socket.send(frame) {
                    Ok(()) => {
                        if link.send_failing {
                            info!(iface = %link.name, "sending works again");
                            link.send_failing = false;
                        }
                    }
                    // The protocol copes with a lost frame: reliable ones are
                    // retransmitted, a missed heartbeat is just missed.
                    Err(e) if e.is_would_block() => debug!(iface = %link.name, "{e}"),
                    Err(e) => {
                        if !link.send_failing {
                            warn!(iface = %link.name, "{e}");
                            link.send_failing = true;
                        }
                    }
                }
            }
        }
    }

    /// Stop heartbeating and send `SHDN:DAEMON` to every monitor (seed 004
    /// L9088-9102).
    fn begin_stop(&mut self, now: Instant, signal: &str) {
        let _ = self.notifier.stopping();
        self.stop_deadline = Some(now + STOP_GRACE);
        for link in &mut self.links {
            for (peer, id) in link.endpoint.shutdown(now) {
                let monitor = link.endpoint.peer_mac(peer).unwrap_or(MacAddr([0; 6]));
                self.pending.push(PendingShutdown {
                    iface: link.name,
                    peer,
                    monitor,
                    id,
                });
            }
        }
        self.report.sent = self.pending.len();
        info!(
            signal,
            monitors = self.pending.len(),
            "stop requested: sending SHDN:DAEMON to every monitor"
        );
    }

    /// Read the interface list again, log what changed, drop the interfaces no longer
    /// usable and open the new ones (seed 004 L8759-8773: every 5 s by default).
    fn on_rescan(&mut self, now: Instant) -> Result<(), RuntimeError> {
        self.next_rescan = now + self.config.rescan;
        let facts: Vec<Facts> = match dataplane::io::interfaces() {
            Ok(list) => list.iter().map(Facts::from).collect(),
            Err(e) => {
                warn!("{e}; keeping the current interfaces until the next rescan");
                return Ok(());
            }
        };
        let verdicts = interfaces::select(&self.config.interfaces, &facts);
        for (name, verdict) in interfaces::changes(&self.verdicts, &verdicts) {
            match verdict {
                Some(Verdict::Use { index, mac }) => {
                    info!(iface = %name, index, %mac, "interface usable for HVNCP");
                }
                Some(Verdict::Skip(skip @ interfaces::Skip::HasIp(_))) if self.is_configured() => {
                    error!(iface = %name, "configured interface {skip}; not using it");
                }
                Some(Verdict::Skip(skip)) => info!(iface = %name, "interface {skip}; not using it"),
                None => info!(iface = %name, "interface gone"),
            }
        }
        self.verdicts = verdicts;

        // Drop links whose interface is no longer usable, or is another interface now
        // (deleted and re-created under the same name: new index or MAC).
        let mut i = 0;
        while i < self.links.len() {
            let link = &self.links[i];
            let keep = self.verdicts.iter().any(|(name, v)| {
                *name == link.name
                    && *v
                        == Verdict::Use {
                            index: link.index,
                            mac: link.mac,
                        }
            });
            if keep {
                i += 1;
            } else {
                info!(iface = %link.name, sessions = link.endpoint.len(), "dropping the interface and its sessions");
                self.drop_link(i);
            }
        }

        let wanted: Vec<(InterfaceName, u32, MacAddr)> = self
            .verdicts
            .iter()
            .filter_map(|(name, v)| match v {
                Verdict::Use { index, mac } => Some((*name, *index, *mac)),
                Verdict::Skip(_) => None,
            })
            .filter(|(name, ..)| !self.links.iter().any(|l| l.name == *name))
            .collect();
        for (name, index, mac) in wanted {
            self.open_link(now, name, index, mac)?;
        }
        if self.links.is_empty() && !self.warned_no_interface {
            warn!(
                "no interface to listen for Hello messages on; looking again every {} ms",
                self.config.rescan.as_millis()
            );
        }
        self.warned_no_interface = self.links.is_empty();
        Ok(())
    }

    fn is_configured(&self) -> bool {
        matches!(
            self.config.interfaces,
            crate::config::InterfaceChoice::Configured(_)
        )
    }

    /// Open the socket and the endpoint of one interface. A missing privilege is
    /// fatal (nothing could ever work); any other failure is logged and retried at the
    /// next rescan.
    fn open_link(
        &mut self,
        now: Instant,
        name: InterfaceName,
        index: u32,
        mac: MacAddr,
    ) -> Result<(), RuntimeError> {
        let socket = match RawSocket::open(
            &name,
            self.config.ethertype,
            RxMode::Recvmmsg { batch: RX_BATCH },
        ) {
            Ok(s) => s,
            Err(e) if e.is_permission_denied() => return Err(e.into()),
            Err(e) => {
                let text = e.to_string();
                if !self
                    .open_failures
                    .iter()
                    .any(|(n, t)| *n == name && *t == text)
                {
                    warn!(iface = %name, "{text}; trying again at the next rescan");
                    self.open_failures.retain(|(n, _)| *n != name);
                    self.open_failures.push((name, text));
                }
                return Ok(());
            }
        };
        self.open_failures.retain(|(n, _)| *n != name);
        let mut config = EndpointConfig::agent(mac, self.config.vm_uuid, &self.config.ostype);
        config.session.ethertype = self.config.ethertype;
        // A new link starts its send counter from the clock, above any counter an
        // earlier link (or process) sent (docs/hvncp.md §7.5).
        let auth = Authenticator::new(
            self.config.auth.mode,
            self.keys.clone(),
            auth::initial_counter(SystemTime::now()),
            MAX_AUTH_SENDERS,
        )
        .map_err(dataplane::auth::AuthSetupError::from)?;
        // Room for the authentication trailer within the MTU (docs/hvncp.md §7.1).
        config.session.max_payload -= u16::try_from(auth.overhead()).unwrap_or(0);
        let endpoint = Endpoint::new(config, now).map_err(|source| RuntimeError::Endpoint {
            iface: name,
            source,
        })?;
        let token = Token(self.next_token);
        self.next_token += 1;
        self.poll
            .registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                token,
                Interest::READABLE,
            )
            .map_err(|source| RuntimeError::Register {
                iface: name,
                source,
            })?;
        info!(iface = %name, %mac, ethertype = format_args!("{:#06x}", self.config.ethertype),
              "listening for Hello messages");
        self.links.push(Link {
            name,
            index,
            mac,
            socket,
            auth,
            auth_log: RefusalLog::new(Duration::from_secs(60)),
            endpoint,
            token,
            // Frames may have queued between bind and registration.
            readable: true,
            send_failing: false,
        });
        Ok(())
    }

    /// Forget an interface: its socket, its sessions, any `SHDN` still awaited on it.
    fn drop_link(&mut self, i: usize) {
        let link = self.links.remove(i);
        // Closing the descriptor removes it from epoll anyway; deregistering first
        // keeps mio's bookkeeping exact.
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&link.socket.as_raw_fd()));
        self.pending.retain(|p| p.iface != link.name);
        self.hellos.forget_interface(link.name);
        self.reporter.forget_interface(link.name);
        let s = link.endpoint.stats();
        debug!(
            iface = %link.name,
            frames_in = s.frames_in,
            frames_out = s.frames_out,
            heartbeats_out = s.heartbeats_out,
            sessions_established = s.sessions_established,
            "interface dropped"
        );
    }
}

/// The sender of `frame` when it is a well-formed Hello.
fn hello_source(frame: &[u8], ethertype: u16) -> Option<MacAddr> {
    let f = dataplane::wire::Frame::parse(frame, ethertype).ok()?;
    f.header
        .flags
        .contains(dataplane::wire::Flags::HEL)
        .then_some(f.src)
}

/// One line when a monitor's Hellos stop, one when they return.
fn log_heard(heard: &Heard) {
    match heard {
        Heard::Gone {
            iface,
            monitor,
            silent,
            period,
        } => warn!(
            %iface,
            %monitor,
            silent_ms = silent.as_millis(),
            hello_period_ms = period.as_millis(),
            "host monitor silent: no Hello for {} periods (stopped, crashed or cut off); \
             heartbeats continue",
            crate::monitors::SILENT_PERIODS
        ),
        Heard::Back {
            iface,
            monitor,
            silent,
        } => info!(
            %iface,
            %monitor,
            silent_ms = silent.as_millis(),
            "host monitor heard again"
        ),
    }
}

/// One log line per endpoint event, in the words of seed 004 §2.4-2.6 where it has them.
fn log_event(link: &Link, event: &EndpointEvent) {
    let iface = link.name;
    let mac = |peer| {
        link.endpoint
            .peer_mac(peer)
            .map_or_else(|| "?".to_owned(), |m| m.to_string())
    };
    match event {
        EndpointEvent::MonitorFound { mac, hello, .. } => {
            info!(%iface, monitor = %mac, %hello, "found a host monitor; opening a session");
        }
        EndpointEvent::MonitorRestarted { peer, hello } => {
            info!(%iface, monitor = %mac(*peer), %hello, "host monitor restarted (new Hello identifier); opening a new session");
        }
        EndpointEvent::Established { mac, uuid, .. } => {
            info!(%iface, monitor = %mac, monitor_uuid = %uuid, "session established");
        }
        EndpointEvent::HeartbeatStarted { peer, period } => {
            info!(%iface, monitor = %mac(*peer), period_ms = period.as_millis(), "heartbeating at the period the monitor commanded");
        }
        EndpointEvent::HeartbeatStopped { peer } => {
            info!(%iface, monitor = %mac(*peer), "the monitor stopped monitoring us (STOP_HB)");
        }
        EndpointEvent::Closed { mac, reason, .. } => {
            warn!(%iface, monitor = %mac, %reason, "session closed; it reopens on the monitor's next Hello");
        }
        EndpointEvent::SynRefused { mac, why, .. } => {
            warn!(%iface, monitor = %mac, %why, "refused the monitor's SYN");
        }
        EndpointEvent::Delivered { peer, id } => {
            debug!(%iface, monitor = %mac(*peer), id = id.0, "message acknowledged");
        }
        EndpointEvent::Lost { peer, id } => {
            debug!(%iface, monitor = %mac(*peer), id = id.0, "message lost");
        }
        EndpointEvent::Message { peer, payload } => {
            debug!(%iface, monitor = %mac(*peer), len = payload.len(), "message from the monitor not handled yet");
        }
        // Monitor-role events: an agent endpoint never raises them.
        EndpointEvent::AgentSyn { peer, .. }
        | EndpointEvent::Shutdown { peer }
        | EndpointEvent::Doorbell { peer, .. } => {
            debug!(%iface, monitor = %mac(*peer), "unexpected monitor-role event");
        }
    }
}

/// Strike an awaited `SHDN:DAEMON` off when its monitor acknowledged it, or when it
/// can no longer be (lost, session closed).
fn settle_shutdown(
    pending: &mut Vec<PendingShutdown>,
    report: &mut StopReport,
    iface: InterfaceName,
    event: &EndpointEvent,
) {
    let (peer, id, delivered) = match *event {
        EndpointEvent::Delivered { peer, id } => (peer, Some(id), true),
        EndpointEvent::Lost { peer, id } => (peer, Some(id), false),
        EndpointEvent::Closed { peer, .. } => (peer, None, false),
        _ => return,
    };
    pending.retain(|p| {
        let hit = p.iface == iface && p.peer == peer && id.is_none_or(|id| p.id == id);
        if hit {
            if delivered {
                report.delivered += 1;
                info!(iface = %p.iface, monitor = %p.monitor, "SHDN:DAEMON acknowledged");
            } else {
                warn!(iface = %p.iface, monitor = %p.monitor, "SHDN:DAEMON lost: the session closed");
            }
        }
        !hit
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(iface: &str, peer: u32, id: u64) -> PendingShutdown {
        PendingShutdown {
            iface: InterfaceName::new(iface).expect("valid"),
            peer: PeerId(peer),
            monitor: MacAddr([2, 0, 0, 0, 0, 1]),
            id: MessageId(id),
        }
    }

    #[test]
    fn shutdown_is_settled_by_its_own_acknowledgement_only() {
        let eth1 = InterfaceName::new("eth1").expect("valid");
        let eth2 = InterfaceName::new("eth2").expect("valid");
        let mut waiting = vec![pending("eth1", 0, 7), pending("eth2", 0, 7)];
        let mut report = StopReport {
            sent: 2,
            delivered: 0,
        };
        let ack = |id| EndpointEvent::Delivered {
            peer: PeerId(0),
            id: MessageId(id),
        };
        // Another message's acknowledgement, or one on another interface: no.
        settle_shutdown(&mut waiting, &mut report, eth1, &ack(6));
        assert_eq!(waiting.len(), 2);
        settle_shutdown(&mut waiting, &mut report, eth1, &ack(7));
        assert_eq!(waiting.len(), 1);
        assert_eq!(report.delivered, 1);
        // A closed session settles it as not delivered.
        let closed = EndpointEvent::Closed {
            peer: PeerId(0),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            reason: dataplane::session::CloseReason::Local,
        };
        settle_shutdown(&mut waiting, &mut report, eth2, &closed);
        assert!(waiting.is_empty());
        assert_eq!(report.delivered, 1);
    }
}
