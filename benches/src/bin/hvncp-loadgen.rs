//! `hvncp-loadgen`: many VM agents simulated from one process on one interface, to load a
//! real host monitor (`hmd`) over a real link.
//!
//! Every simulated agent has its own MAC (`--first-mac`, `+1`, `+2`, …) and VM UUID
//! (derived from the MAC), and runs a real HVNCP [`Session`]: it answers the monitor's
//! Hello with a SYN carrying its properties, completes the handshake, acknowledges
//! `START_HB`, and re-pairs when the monitor restarts (a new Hello id) or the session
//! fails (at the next Hello, as `vmmd`) — also when the monitor never sends `START_HB`
//! after the handshake (it lost its side, docs/hvncp.md §6.5: the session is closed
//! after two retransmission spans, `start_hb_missing`). Handshakes are paced (`--syn-rate`) so that 100,000 agents do not all answer
//! the same Hello in the same millisecond. Once `START_HB` arrived, the agent
//! heartbeats: the whole fleet sends `--rate` heartbeats per second round-robin over
//! the heartbeating agents, or each agent every `--period-ms`, or (neither given) every
//! agent at the period the monitor commanded.
//!
//! Commands, one per line on standard input (ranges: `all`, `7`, `0-9999`, `1,5,9-12`):
//!
//! | command | effect |
//! |---|---|
//! | `silence <range>` | one last heartbeat from each chosen agent at the same moment, then none; the agents still acknowledge (a hung application that keeps its session) |
//! | `pause <range>` | the agents send and answer nothing (as under `kill -STOP`) |
//! | `resume <range>` | undo `silence` / `pause`; a paused agent whose session failed re-pairs at the next Hello |
//! | `shutdown <range>` | graceful stop: `SHDN:DAEMON`, then silence |
//! | `rate <n>\|max` / `period <ms>` / `follow` | change the heartbeat schedule |
//! | `report` | print a report line now |
//! | `quit` | exit (also SIGTERM, SIGINT, or `--seconds`) |
//!
//! Standard output is one line per event, `kind key=value …`, for scripts:
//! `ready` once every agent heartbeats, `report` every `--report-ms` (offered heartbeats
//! and the offered rate over the interval), `silenced`/`paused` with the first and last
//! of the chosen agents' final heartbeat times (ms since the Unix epoch), `error` for a
//! bad command. Logs go to standard error.
//!
//! Example (root, `g0` one end of a veth pair whose other end `hmd` listens on):
//!
//! ```text
//! ip netns exec gen hvncp-loadgen --interface g0 --agents 10000 --rate 20000
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use dataplane::auth::{self, AuthConfig, AuthMode, Authenticator};
use dataplane::io::{InterfaceName, RawSocket, RxMode, SocketConfig};
use dataplane::message::{AgentSyn, HelloId, Message, Uuid};
use dataplane::session::{self, CloseReason, Event, Priority, Session, TxState};
use dataplane::sim::Rng;
use dataplane::time::{Instant, MonotonicClock};
use dataplane::wire::{Flags, Frame, MacAddr, VERSION};

/// Most agents one process simulates.
const MAX_AGENTS: u32 = 1_000_000;
/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Heartbeats sent per loop iteration at most, so that frames, timers and commands are
/// looked at in between.
const MAX_PER_ITERATION: u64 = 4096;
/// A schedule more than this far behind forgets the backlog instead of bursting.
const MAX_BACKLOG: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    name = "hvncp-loadgen",
    version,
    about = "Simulate many HVNCP VM agents on one interface: real handshakes with the \
             monitor, then heartbeats at a chosen rate; silence, pause and resume VMs \
             on command (stdin).",
    long_about = None,
    after_help = "Commands on standard input, one per line (RANGE: all, 7, 0-9999, 1,5,9-12):\n  \
        silence RANGE    one last heartbeat each, at once, then none (sessions stay up)\n  \
        pause RANGE      send and answer nothing, as under kill -STOP\n  \
        resume RANGE     undo silence / pause\n  \
        shutdown RANGE   graceful stop: SHDN:DAEMON, then silence\n  \
        rate N|max, period MS, follow   change the heartbeat schedule\n  \
        report           print a report line now\n  \
        quit             exit (also SIGTERM, SIGINT, --seconds)\n\n\
        Standard output: one line per event (ready, report, silenced, paused, resumed, \
        error), as key=value pairs."
)]
struct Cli {
    /// Interface to send on, in the current network namespace (e.g. one end of a veth).
    #[arg(long)]
    interface: String,
    /// Number of simulated agents (1..=1000000).
    #[arg(long, default_value_t = 1000)]
    agents: u32,
    /// MAC of the first agent; the others follow (+1, +2, …). Locally administered.
    #[arg(long, default_value = "02:4c:47:00:00:00")]
    first_mac: String,
    /// Derive the agents' VM UUIDs from this MAC (+1, +2, …) instead of their own MACs:
    /// two load generators on a host's two HA networks, with different --first-mac and
    /// the same --uuid-mac, are the same VMs seen by both monitors.
    #[arg(long)]
    uuid_mac: Option<String>,
    /// Heartbeats per second over the whole fleet, round-robin over the heartbeating
    /// agents (1..=10000000, or `max` for as fast as the link takes them).
    #[arg(long, conflicts_with = "period_ms")]
    rate: Option<String>,
    /// Each agent heartbeats every this many milliseconds (10..=3600000). Without
    /// --rate or --period-ms, agents follow the period the monitor commands.
    #[arg(long)]
    period_ms: Option<u64>,
    /// Handshakes started per second when a Hello (re)opens sessions (1..=1000000).
    #[arg(long, default_value_t = 5000)]
    syn_rate: u32,
    /// Print a report line every this many milliseconds (0: only on `report`).
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Exit after this many seconds (default: on `quit`, SIGTERM or SIGINT).
    #[arg(long)]
    seconds: Option<f64>,
    /// HVNCP EtherType (hex with 0x, or decimal).
    #[arg(long, default_value = "0x0600")]
    ethertype: String,
    /// Authenticate frames (docs/hvncp.md §7) with the key in this file (`<id> <64 hex
    /// digits>`, mode 0600): every frame sent is sealed; see --auth for what is accepted.
    #[arg(long)]
    auth_key: Option<std::path::PathBuf>,
    /// With --auth-key: `require` (default) drops frames from the monitor that are not
    /// authenticated, `accept` takes them too.
    #[arg(long, default_value = "require", requires = "auth_key")]
    auth: String,
}

/// How heartbeats are scheduled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Schedule {
    /// This many per second over the fleet.
    Rate(f64),
    /// As fast as the socket takes them.
    Max,
    /// Each agent every this long.
    Period(Duration),
    /// Each agent at the period its monitor commanded.
    Follow,
}

impl Schedule {
    fn parse_rate(s: &str) -> Result<Schedule, String> {
        if s == "max" {
            return Ok(Schedule::Max);
        }
        match s.parse::<u64>() {
            Ok(n) if (1..=10_000_000).contains(&n) => Ok(Schedule::Rate(n as f64)),
            _ => Err(format!("rate {s:?}: expected 1..=10000000 or max")),
        }
    }
    fn parse_period(s: &str) -> Result<Schedule, String> {
        match s.parse::<u64>() {
            Ok(ms) if (10..=3_600_000).contains(&ms) => {
                Ok(Schedule::Period(Duration::from_millis(ms)))
            }
            _ => Err(format!("period {s:?}: expected 10..=3600000 ms")),
        }
    }
}

/// What an agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Heartbeats when its monitor asked for them.
    Active,
    /// No heartbeats; still answers.
    Silenced,
    /// Nothing at all.
    Paused,
}

struct Agent {
    mac: MacAddr,
    /// The VM's UUID (from the MAC, or from --uuid-mac).
    uuid: Uuid,
    session: Option<Session>,
    mode: Mode,
    /// `START_HB` received on the current session.
    heartbeating: bool,
    /// In the connect queue.
    queued: bool,
    /// Counted as established.
    established: bool,
    /// Commanded period, ms.
    period_ms: u32,
    /// When the last heartbeat left (ns since start; 0: never).
    last_hb: u64,
    /// Established without `START_HB` yet: the session is closed if none came by then.
    start_hb_by: Option<Instant>,
}

impl Agent {
    fn sends_heartbeats(&self) -> bool {
        self.mode == Mode::Active && self.heartbeating
    }
}

/// The VM UUID of the agent with MAC `mac`: `4c474c47-0000-4000-8000-<mac>`.
fn vm_uuid(mac: MacAddr) -> Uuid {
    let mut uuid = [
        0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    uuid[10..].copy_from_slice(&mac.0);
    Uuid(uuid)
}

/// Parse `all`, `7`, `0-9999`, `1,5,9-12` into indices below `n`.
fn parse_range(s: &str, n: u32) -> Result<Vec<u32>, String> {
    if s == "all" {
        return Ok((0..n).collect());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("range {s:?}: {x:?} is not an agent index"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b || b >= n {
            return Err(format!(
                "range {s:?}: {part:?} is not within 0-{}",
                n.saturating_sub(1)
            ));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Counters printed in reports.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    heartbeats: u64,
    control_frames: u64,
    send_errors: u64,
    frames_in: u64,
    hellos_in: u64,
    other_monitor_hellos: u64,
    refused_frames: u64,
    connects: u64,
    sessions_closed: u64,
    start_hb_missing: u64,
    backlog_dropped: u64,
}

struct Fleet {
    socket: RawSocket,
    /// Seals every frame sent, opens every frame received (`auth = off` without
    /// --auth-key). One send counter for the whole fleet: each agent MAC still sees it
    /// increase.
    auth: Authenticator,
    ethertype: u16,
    clock: MonotonicClock,
    agents: Vec<Agent>,
    by_mac: HashMap<MacAddr, u32>,
    config: Arc<session::Config>,
    rng: Rng,
    monitor: Option<MacAddr>,
    hello: Option<HelloId>,
    connect_queue: VecDeque<u32>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// `start_hb_by` deadlines (stale entries skipped).
    start_hb_timers: BinaryHeap<Reverse<(Instant, u32)>>,
    schedule: Schedule,
    /// Heartbeats the schedule allows but not yet sent.
    credit: f64,
    cursor: usize,
    syn_credit: f64,
    syn_rate: f64,
    totals: Totals,
    established: u32,
    heartbeating: u32,
    ready_reported: bool,
    batch: Vec<[u8; 64]>,
    batch_len: Vec<usize>,
    buf: Vec<u8>,
}

impl Fleet {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn unix_ms_at(&self, t: u64) -> u64 {
        self.clock.unix_ms(Instant::from_nanos(t))
    }

    /// Heartbeats per second the schedule asks for now.
    fn rate(&self) -> Option<f64> {
        let n = f64::from(self.active_count());
        match self.schedule {
            Schedule::Rate(r) => Some(r),
            Schedule::Max => None,
            Schedule::Period(p) => Some(n / p.as_secs_f64()),
            Schedule::Follow => {
                let period_ms = self
                    .agents
                    .iter()
                    .find(|a| a.sends_heartbeats())
                    .map_or(10_000, |a| a.period_ms.max(10));
                Some(n * 1000.0 / f64::from(period_ms))
            }
        }
    }

    fn active_count(&self) -> u32 {
        // Kept exact by the transitions below.
        self.heartbeating
    }

    fn set_heartbeating(&mut self, i: u32, on: bool) {
        let a = &mut self.agents[i as usize];
        let before = a.sends_heartbeats();
        a.heartbeating = on;
        let after = a.sends_heartbeats();
        self.count_change(before, after);
    }

    fn set_mode(&mut self, i: u32, mode: Mode) {
        let a = &mut self.agents[i as usize];
        let before = a.sends_heartbeats();
        a.mode = mode;
        let after = a.sends_heartbeats();
        self.count_change(before, after);
    }

    fn count_change(&mut self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => self.heartbeating += 1,
            (true, false) => self.heartbeating = self.heartbeating.saturating_sub(1),
            _ => {}
        }
    }

    fn send_control(&mut self, len: usize) {
        self.totals.control_frames += 1;
        let len = match self.auth.seal(&mut self.buf, len) {
            Ok(n) => n,
            Err(e) => {
                self.totals.send_errors += 1;
                tracing::debug!("seal: {e}");
                return;
            }
        };
        if let Err(e) = self.socket.send(&self.buf[..len]) {
            self.totals.send_errors += 1;
            tracing::debug!("send: {e}");
        }
    }

    /// After anything touched agent `i`'s session: act on its events, send its frames,
    /// schedule its timer.
    fn pump(&mut self, i: u32, now: Instant) {
        loop {
            let Some(session) = self.agents[i as usize].session.as_mut() else {
                return;
            };
            let Some(event) = session.poll_event() else {
                break;
            };
            match event {
                Event::Established => {
                    let agent = &mut self.agents[i as usize];
                    if !agent.established {
                        agent.established = true;
                        self.established += 1;
                    }
                    if !agent.heartbeating {
                        // As `vmmd` (dataplane's endpoint): a monitor that holds the
                        // session sends START_HB at once; after two retransmission
                        // spans it has lost its side.
                        let by = now + self.config.retransmission_span() * 2;
                        agent.start_hb_by = Some(by);
                        self.start_hb_timers.push(Reverse((by, i)));
                    }
                }
                Event::Message { payload, .. } => match Message::parse(&payload) {
                    Ok(Message::StartHb { period_ms }) => {
                        self.agents[i as usize].period_ms = period_ms.unwrap_or(10_000);
                        self.agents[i as usize].start_hb_by = None;
                        self.set_heartbeating(i, true);
                    }
                    Ok(Message::StopHb) => self.set_heartbeating(i, false),
                    _ => {}
                },
                Event::Closed(reason) => {
                    tracing::debug!("agent {i}: session closed: {reason:?}");
                    self.totals.sessions_closed += 1;
                    self.agents[i as usize].start_hb_by = None;
                    self.set_heartbeating(i, false);
                    if self.agents[i as usize].established {
                        self.agents[i as usize].established = false;
                        self.established = self.established.saturating_sub(1);
                    }
                }
                Event::PeerSyn { .. } | Event::Acked(_) | Event::Lost(_) => {}
            }
        }
        loop {
            let Some(session) = self.agents[i as usize].session.as_mut() else {
                return;
            };
            let Some(len) = session.poll_transmit(now, &mut self.buf) else {
                break;
            };
            self.send_control(len);
        }
        if let Some(t) = self.agents[i as usize]
            .session
            .as_ref()
            .and_then(Session::poll_timeout)
        {
            self.timers.push(Reverse((t, i)));
        }
    }

    fn on_frame(&mut self, now: Instant, bytes: &[u8]) {
        self.totals.frames_in += 1;
        let Ok(bytes) = self.auth.open(bytes) else {
            self.totals.refused_frames += 1;
            return;
        };
        let Ok(frame) = Frame::parse(bytes, self.ethertype) else {
            self.totals.refused_frames += 1;
            return;
        };
        if frame.header.flags.contains(Flags::HEL) {
            self.on_hello(frame.src, frame.payload);
            return;
        }
        if Some(frame.src) != self.monitor {
            self.totals.refused_frames += 1;
            return;
        }
        let Some(&i) = self.by_mac.get(&frame.dst) else {
            self.totals.refused_frames += 1;
            return;
        };
        let agent = &mut self.agents[i as usize];
        if agent.mode == Mode::Paused {
            return;
        }
        let Some(session) = agent.session.as_mut() else {
            return;
        };
        if session.handle_frame(now, &frame).is_err() {
            self.totals.refused_frames += 1;
        }
        self.pump(i, now);
    }

    fn on_hello(&mut self, src: MacAddr, payload: &[u8]) {
        self.totals.hellos_in += 1;
        let Ok(hello) = HelloId::parse(payload) else {
            self.totals.refused_frames += 1;
            return;
        };
        match self.monitor {
            None => {
                tracing::info!("monitor {src} found (Hello {hello})");
                self.monitor = Some(src);
            }
            Some(m) if m != src => {
                self.totals.other_monitor_hellos += 1;
                return;
            }
            Some(_) => {}
        }
        let restarted = self.hello.is_some_and(|h| h != hello);
        if restarted {
            tracing::info!("monitor restarted (Hello {hello}): re-pairing every agent");
        }
        self.hello = Some(hello);
        // Every agent that has no open session (or all, after a restart) connects.
        for i in 0..self.agents.len() {
            let a = &self.agents[i];
            let open = a
                .session
                .as_ref()
                .is_some_and(|s| s.tx_state() != TxState::Closed);
            if a.queued || a.mode == Mode::Paused || (open && !restarted) {
                continue;
            }
            self.agents[i].queued = true;
            self.connect_queue
                .push_back(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }

    fn connect(&mut self, i: u32, now: Instant) {
        let Some(monitor) = self.monitor else {
            return;
        };
        let draw = self.rng.next_u64();
        let initial = draw.to_le_bytes()[0];
        let agent = &mut self.agents[i as usize];
        agent.queued = false;
        if agent.mode == Mode::Paused {
            return;
        }
        let session = agent.session.get_or_insert_with(|| {
            let mut syn = Vec::new();
            AgentSyn {
                uuid: agent.uuid,
                ostype: "loadgen",
                ver_lower: VERSION,
                ver_upper: VERSION,
                // One incarnation per simulated agent, for its whole run (docs/hvncp.md
                // §3.8).
                inc: Some(draw),
            }
            .encode(&mut syn);
            Session::new(
                Arc::clone(&self.config),
                syn.into(),
                agent.mac,
                monitor,
                initial,
            )
        });
        session.connect();
        self.totals.connects += 1;
        self.set_heartbeating(i, false);
        self.pump(i, now);
    }

    /// Close the sessions of agents still waiting for `START_HB` at their deadline; the
    /// next Hello pairs them again.
    fn start_hb_timeouts(&mut self, now: Instant) {
        while let Some(&Reverse((t, i))) = self.start_hb_timers.peek() {
            if t > now {
                break;
            }
            self.start_hb_timers.pop();
            let agent = &mut self.agents[i as usize];
            if agent.start_hb_by != Some(t) || agent.mode == Mode::Paused {
                continue;
            }
            agent.start_hb_by = None;
            let Some(session) = agent.session.as_mut() else {
                continue;
            };
            if session.is_established() && !agent.heartbeating {
                tracing::debug!("agent {i}: established but no START_HB: closing");
                session.close_because(CloseReason::StartHbMissing);
                self.totals.start_hb_missing += 1;
                self.pump(i, now);
            }
        }
    }

    /// Send up to `count` heartbeats round-robin over the heartbeating agents.
    fn heartbeats(&mut self, now: Instant, count: u64) -> u64 {
        if self.heartbeating == 0 || count == 0 {
            return 0;
        }
        let n = self.agents.len();
        let mut sent = 0;
        let mut looked = 0;
        while sent < count && looked < n {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            looked += 1;
            if !self.agents[i].sends_heartbeats() {
                continue;
            }
            looked = 0;
            if self.push_heartbeat(i, now) {
                sent += 1;
            }
        }
        self.flush();
        sent
    }

    /// Put agent `i`'s heartbeat into the batch.
    fn push_heartbeat(&mut self, i: usize, now: Instant) -> bool {
        let k = self.batch_len.len();
        let agent = &mut self.agents[i];
        let Some(session) = agent.session.as_mut() else {
            return false;
        };
        let emitted = session
            .emit_datagram(Priority::Normal, b"HB:", &mut self.batch[k])
            .ok()
            .and_then(|len| self.auth.seal(&mut self.batch[k], len).ok());
        match emitted {
            Some(len) => {
                agent.last_hb = now.as_nanos().max(1);
                self.batch_len.push(len);
                if self.batch_len.len() == BATCH {
                    self.flush();
                }
                true
            }
            None => false,
        }
    }

    fn flush(&mut self) {
        if self.batch_len.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = self
            .batch
            .iter()
            .zip(&self.batch_len)
            .map(|(f, &len)| &f[..len])
            .collect();
        let mut done = 0;
        while done < frames.len() {
            match self.socket.send_batch(&frames[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.is_would_block() => {
                    let _ = self.socket.wait_readable(Some(Duration::from_micros(50)));
                }
                Err(e) => {
                    tracing::debug!("send: {e}");
                    self.totals.send_errors += (frames.len() - done) as u64;
                    break;
                }
            }
        }
        self.totals.heartbeats += done as u64;
        self.batch_len.clear();
    }

    fn command(&mut self, line: &str, now: Instant) -> Result<bool, String> {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else {
            return Ok(true);
        };
        let arg = words.next();
        let n = u32::try_from(self.agents.len()).unwrap_or(u32::MAX);
        let range = |arg: Option<&str>| parse_range(arg.ok_or("give a range")?, n);
        match verb {
            "silence" | "pause" | "shutdown" => {
                let chosen = range(arg)?;
                let mut count = 0u32;
                if verb == "shutdown" {
                    let mut payload = Vec::new();
                    Message::Shutdown { reason: b"DAEMON" }.encode(&mut payload);
                    for &i in &chosen {
                        if let Some(s) = self.agents[i as usize].session.as_mut()
                            && s.send(Priority::Normal, &payload).is_ok()
                        {
                            count += 1;
                            self.pump(i, now);
                        }
                    }
                }
                if verb != "pause" {
                    // The last heartbeat of every chosen agent leaves now, together, so
                    // all their miss deadlines fall within this burst.
                    for &i in &chosen {
                        if self.agents[i as usize].sends_heartbeats() {
                            self.push_heartbeat(i as usize, now);
                        }
                    }
                    self.flush();
                }
                let mode = if verb == "pause" {
                    Mode::Paused
                } else {
                    Mode::Silenced
                };
                let (mut first, mut last) = (u64::MAX, 0u64);
                for &i in &chosen {
                    let a = &self.agents[i as usize];
                    if a.mode == Mode::Active && a.last_hb > 0 {
                        first = first.min(a.last_hb);
                        last = last.max(a.last_hb);
                        if verb != "shutdown" {
                            count += 1;
                        }
                    }
                    self.set_mode(i, mode);
                }
                let done = match verb {
                    "pause" => "paused",
                    "shutdown" => "shut_down",
                    _ => "silenced",
                };
                if first == u64::MAX {
                    println!("{done} count={count} unix_ms={}", unix_ms());
                } else {
                    println!(
                        "{done} count={count} first_last_hb_unix_ms={} last_last_hb_unix_ms={} unix_ms={}",
                        self.unix_ms_at(first),
                        self.unix_ms_at(last),
                        unix_ms()
                    );
                }
            }
            "resume" => {
                let chosen = range(arg)?;
                for &i in &chosen {
                    self.set_mode(i, Mode::Active);
                }
                println!("resumed count={} unix_ms={}", chosen.len(), unix_ms());
            }
            "rate" => {
                self.schedule = Schedule::parse_rate(arg.ok_or("rate: give n or max")?)?;
                self.credit = 0.0;
                println!("schedule rate={}", arg.unwrap_or_default());
            }
            "period" => {
                self.schedule = Schedule::parse_period(arg.ok_or("period: give ms")?)?;
                self.credit = 0.0;
                println!("schedule period_ms={}", arg.unwrap_or_default());
            }
            "follow" => {
                self.schedule = Schedule::Follow;
                self.credit = 0.0;
                println!("schedule follow");
            }
            "report" => self.report(now, None),
            "quit" => return Ok(false),
            other => {
                return Err(format!(
                    "unknown command {other:?}: silence, pause, resume, shutdown, rate, period, follow, report, quit"
                ));
            }
        }
        Ok(true)
    }

    fn report(&self, now: Instant, interval: Option<(Duration, u64)>) {
        let t = &self.totals;
        let (silenced, paused) = self.agents.iter().fold((0, 0), |(s, p), a| match a.mode {
            Mode::Silenced => (s + 1, p),
            Mode::Paused => (s, p + 1),
            Mode::Active => (s, p),
        });
        let rate = interval.map_or(String::new(), |(d, hb)| {
            format!(" offered_rate={:.0}", hb as f64 / d.as_secs_f64().max(1e-9))
        });
        let cpu = dataplane::io::thread_cpu_time()
            .map(|c| c.total().as_secs_f64())
            .unwrap_or(0.0);
        println!(
            "report t_s={:.3} unix_ms={} agents={} established={} heartbeating={} silenced={silenced} paused={paused} offered={}{rate} control_frames={} frames_in={} hellos_in={} connects={} sessions_closed={} start_hb_missing={} send_errors={} refused_frames={} auth_drops={} backlog_dropped={} cpu_s={cpu:.3}",
            now.as_nanos() as f64 / 1e9,
            unix_ms(),
            self.agents.len(),
            self.established,
            self.heartbeating,
            t.heartbeats,
            t.control_frames,
            t.frames_in,
            t.hellos_in,
            t.connects,
            t.sessions_closed,
            t.start_hb_missing,
            t.send_errors,
            t.refused_frames,
            self.auth.counters().drops(),
            t.backlog_dropped,
        );
    }
}

/// The whole part of a non-negative credit (0 for negative or NaN; saturating).
fn whole_count(x: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // Clamped first: the cast cannot truncate or lose a sign.
    let n = x.floor().clamp(0.0, u64::MAX as f64) as u64;
    n
}

fn parse_ethertype(s: &str) -> Result<u16, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match v {
        Ok(v) if v >= 0x0600 => Ok(v),
        _ => Err(format!(
            "--ethertype {s:?}: expected 0x0600..=0xffff (an EtherType, not a length)"
        )),
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    if !(1..=MAX_AGENTS).contains(&cli.agents) {
        return Err(format!(
            "--agents {}: expected 1..={MAX_AGENTS}",
            cli.agents
        ));
    }
    if !(1..=1_000_000).contains(&cli.syn_rate) {
        return Err(format!("--syn-rate {}: expected 1..=1000000", cli.syn_rate));
    }
    let first = MacAddr::parse(&cli.first_mac)
        .ok_or_else(|| format!("--first-mac {:?}: not a MAC address", cli.first_mac))?;
    if first.is_multicast() {
        return Err(format!(
            "--first-mac {first}: a multicast address cannot be an agent's"
        ));
    }
    // The first byte holds the multicast and locally-administered bits: every agent's
    // MAC must keep the first one's.
    let last = MacAddr::from_u64(first.to_u64() + u64::from(cli.agents) - 1);
    if last.0[0] != first.0[0] {
        return Err(format!(
            "--first-mac {first}: {} agents run past {:02x}:ff:ff:ff:ff:ff",
            cli.agents, first.0[0]
        ));
    }
    let uuid_first = match &cli.uuid_mac {
        None => first,
        Some(text) => {
            MacAddr::parse(text).ok_or_else(|| format!("--uuid-mac {text:?}: not a MAC address"))?
        }
    };
    let schedule = match (&cli.rate, cli.period_ms) {
        (Some(r), _) => Schedule::parse_rate(r).map_err(|e| format!("--{e}"))?,
        (None, Some(p)) => Schedule::parse_period(&p.to_string()).map_err(|e| format!("--{e}"))?,
        (None, None) => Schedule::Follow,
    };
    if let Some(s) = cli.seconds
        && !(s > 0.0 && s <= 86_400.0)
    {
        return Err(format!("--seconds {s}: expected 0..=86400"));
    }
    let ethertype = parse_ethertype(&cli.ethertype)?;
    let name: InterfaceName = cli
        .interface
        .parse()
        .map_err(|e| format!("--interface {:?}: {e}", cli.interface))?;
    let auth = match &cli.auth_key {
        None => Authenticator::off(),
        Some(path) => {
            let mode: AuthMode = cli.auth.parse().map_err(|e| format!("--auth: {e}"))?;
            let settings = AuthConfig {
                mode,
                key_file: Some(path.clone()),
                second_key_file: None,
            };
            let keys = settings.keyring().map_err(|e| format!("--auth-key: {e}"))?;
            let first_counter = auth::initial_counter(SystemTime::now());
            let max = usize::try_from(cli.agents).unwrap_or(usize::MAX);
            Authenticator::new(mode, keys, first_counter, max).map_err(|e| e.to_string())?
        }
    };
    let mut socket_config = SocketConfig::new(ethertype, RxMode::Recvmmsg { batch: 64 });
    socket_config.rcvbuf_bytes = 8 << 20;
    let socket = RawSocket::open_with(&name, &socket_config).map_err(|e| e.to_string())?;

    let mut config = session::Config {
        ethertype,
        ..session::Config::default()
    };
    // Room for the trailer within the MTU.
    config.max_payload -= u16::try_from(auth.overhead()).unwrap_or(0);
    config.validate().map_err(|e| e.to_string())?;
    let clock = MonotonicClock::new();
    let mut agents = Vec::with_capacity(cli.agents as usize);
    let mut by_mac = HashMap::with_capacity(cli.agents as usize);
    for i in 0..cli.agents {
        let mac = MacAddr::from_u64(first.to_u64() + u64::from(i));
        by_mac.insert(mac, i);
        agents.push(Agent {
            mac,
            uuid: vm_uuid(MacAddr::from_u64(uuid_first.to_u64() + u64::from(i))),
            session: None,
            mode: Mode::Active,
            heartbeating: false,
            queued: false,
            established: false,
            period_ms: 10_000,
            last_hb: 0,
            start_hb_by: None,
        });
    }
    let seed = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(1);
    let mut fleet = Fleet {
        socket,
        auth,
        ethertype,
        clock,
        agents,
        by_mac,
        config: Arc::new(config),
        rng: Rng::new(seed ^ u64::from(std::process::id())),
        monitor: None,
        hello: None,
        connect_queue: VecDeque::new(),
        timers: BinaryHeap::new(),
        start_hb_timers: BinaryHeap::new(),
        schedule,
        credit: 0.0,
        cursor: 0,
        syn_credit: 0.0,
        syn_rate: f64::from(cli.syn_rate),
        totals: Totals::default(),
        established: 0,
        heartbeating: 0,
        ready_reported: false,
        batch: vec![[0u8; 64]; BATCH],
        batch_len: Vec::with_capacity(BATCH),
        buf: vec![0u8; 9100],
    };
    tracing::info!(
        "{} agents {}..{} on {}, waiting for a monitor's Hello",
        cli.agents,
        first,
        last,
        cli.interface
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let (commands_tx, commands) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if commands_tx.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("stdin thread: {e}"))?;

    let end = cli
        .seconds
        .map(|s| fleet.now() + Duration::from_secs_f64(s));
    let report_every = (cli.report_ms > 0).then(|| Duration::from_millis(cli.report_ms));
    let mut next_report = report_every.map(|d| fleet.now() + d);
    let mut report_base = (fleet.now(), 0u64);
    let mut last = fleet.now();
    let mut frames = Vec::<Vec<u8>>::new();
    while !stop.load(Ordering::Relaxed) {
        let now = fleet.now();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        let dt = now.saturating_duration_since(last).as_secs_f64();
        last = now;
        // Commands.
        let mut quit = false;
        while let Ok(line) = commands.try_recv() {
            match fleet.command(line.trim(), now) {
                Ok(true) => {}
                Ok(false) => quit = true,
                Err(e) => {
                    println!("error {e}");
                    tracing::warn!("{e}");
                }
            }
        }
        if quit {
            break;
        }
        // Frames from the monitor (copied out: handling them sends frames).
        let received = fleet
            .socket
            .recv(|f| frames.push(f.to_vec()))
            .map_err(|e| e.to_string())?;
        for f in frames.drain(..) {
            fleet.on_frame(now, &f);
        }
        // Session timers.
        while let Some(&Reverse((t, i))) = fleet.timers.peek() {
            if t > now {
                break;
            }
            fleet.timers.pop();
            let due = fleet.agents[i as usize]
                .session
                .as_ref()
                .and_then(Session::poll_timeout)
                .is_some_and(|d| d <= now);
            if due && fleet.agents[i as usize].mode != Mode::Paused {
                if let Some(s) = fleet.agents[i as usize].session.as_mut() {
                    s.handle_timeout(now);
                }
                fleet.pump(i, now);
            }
        }
        fleet.start_hb_timeouts(now);
        // Paced handshakes.
        if fleet.connect_queue.is_empty() {
            fleet.syn_credit = 0.0;
        } else {
            fleet.syn_credit = (fleet.syn_credit + dt * fleet.syn_rate).min(fleet.syn_rate);
            while fleet.syn_credit >= 1.0 {
                let Some(i) = fleet.connect_queue.pop_front() else {
                    break;
                };
                fleet.syn_credit -= 1.0;
                fleet.connect(i, now);
            }
        }
        // Heartbeats.
        let count = match fleet.rate() {
            None => MAX_PER_ITERATION,
            Some(rate) => {
                fleet.credit += dt * rate;
                let cap = rate * MAX_BACKLOG.as_secs_f64();
                if fleet.credit > cap.max(1.0) {
                    fleet.totals.backlog_dropped += whole_count(fleet.credit - cap.max(1.0));
                    fleet.credit = cap.max(1.0);
                }
                whole_count(fleet.credit).min(MAX_PER_ITERATION)
            }
        };
        let sent = fleet.heartbeats(now, count);
        if fleet.rate().is_some() {
            fleet.credit -= sent as f64;
            if sent < count {
                // Nobody to send for: do not save the credit up.
                fleet.credit = fleet.credit.min(1.0);
            }
        }
        if !fleet.ready_reported
            && fleet.heartbeating == u32::try_from(fleet.agents.len()).unwrap_or(u32::MAX)
        {
            fleet.ready_reported = true;
            println!(
                "ready agents={} t_s={:.3} unix_ms={}",
                fleet.agents.len(),
                now.as_nanos() as f64 / 1e9,
                unix_ms()
            );
        }
        if let (Some(every), Some(at)) = (report_every, next_report)
            && now >= at
        {
            let hb = fleet.totals.heartbeats - report_base.1;
            fleet.report(
                now,
                Some((now.saturating_duration_since(report_base.0), hb)),
            );
            report_base = (now, fleet.totals.heartbeats);
            next_report = Some(at + every);
        }
        // Sleep until something is due, at most 1 ms (heartbeat pacing); not at all
        // while flat out or while frames keep coming.
        let busy = received > 0 || matches!(fleet.schedule, Schedule::Max) && sent > 0;
        if !busy {
            let mut wait = Duration::from_millis(1);
            if let Some(&Reverse((t, _))) = fleet.timers.peek() {
                wait = wait.min(t.saturating_duration_since(now));
            }
            fleet
                .socket
                .wait_readable(Some(wait))
                .map_err(|e| e.to_string())?;
        }
    }
    let now = fleet.now();
    let hb = fleet.totals.heartbeats - report_base.1;
    fleet.report(
        now,
        Some((now.saturating_duration_since(report_base.0), hb)),
    );
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HVNCP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvncp-loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("all", 3), Ok(vec![0, 1, 2]));
        assert_eq!(parse_range("1", 3), Ok(vec![1]));
        assert_eq!(parse_range("0-2", 3), Ok(vec![0, 1, 2]));
        assert_eq!(parse_range("0,2-3,5", 6), Ok(vec![0, 2, 3, 5]));
        assert!(parse_range("0-3", 3).is_err_and(|e| e.contains("0-2")));
        assert!(parse_range("2-1", 3).is_err());
        assert!(parse_range("x", 3).is_err_and(|e| e.contains("\"x\"")));
        assert!(parse_range("", 3).is_err());
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::parse_rate("max"), Ok(Schedule::Max));
        assert_eq!(Schedule::parse_rate("20000"), Ok(Schedule::Rate(20000.0)));
        assert!(Schedule::parse_rate("0").is_err());
        assert!(Schedule::parse_rate("-5").is_err());
        assert_eq!(
            Schedule::parse_period("1000"),
            Ok(Schedule::Period(Duration::from_secs(1)))
        );
        assert!(Schedule::parse_period("5").is_err());
    }

    #[test]
    fn uuids_are_distinct_and_version_4() {
        let a = vm_uuid(MacAddr::from_u64(0x024c_4700_0000));
        let b = vm_uuid(MacAddr::from_u64(0x024c_4700_0001));
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
    }

    #[test]
    fn ethertypes() {
        assert_eq!(parse_ethertype("0x0600"), Ok(0x0600));
        assert_eq!(parse_ethertype("1536"), Ok(0x0600));
        assert!(parse_ethertype("0x05ff").is_err());
        assert!(parse_ethertype("zz").is_err());
    }
}
