//! The agent's side of the application-report exchange (docs/hvncp.md "Application
//! reports"; seed 004 L8177-8195, L9152-9158).
//!
//! The Application Monitoring Engine keeps a report *generation* that grows whenever
//! anything in its report changes. The agent remembers the generation the control plane
//! last confirmed (`confirmed`, 0 at start). While the current generation is above it,
//! the agent rings the doorbell (`DBELL:<vector>`) to every monitor it heartbeats to:
//! at once when the generation changes, then every [`REPEAT`] until a confirmation
//! comes — it "keeps the doorbell up", so a monitor or control plane that restarts in
//! the middle of an exchange loses nothing. A monitor is rung for the first time
//! [`INITIAL_CYCLES`] heartbeat periods after its `START_HB` (seed 004 L11750-11752:
//! "Initial DBELL will be send after 4 HB cycle's").
//!
//! On `PMSG_REQ:<req>` the agent answers with the `PMSG_RSP` chunks of its *current*
//! report (each chunk one HVNCP packet, `hvha_appreport::pmsg`); on
//! `GMSG:<req>:<gen>` it raises `confirmed` to `gen` — never above its own
//! generation — and answers `CLRDB:<req>:<gen>`. A `GMSG` for a generation above its
//! own was not sent by this agent process (a previous process's, after a restart of the
//! agent): nothing is confirmed, and the answer is `CLRDB:<req>:0`.
//!
//! **Generations on the wire** are the AME's plus an offset drawn from the agent process's
//! incarnation ([`generation_offset`]: its top 40 bits). The AME counts from 1 in every
//! process, so without it a confirmation of a previous process's report — a CONFIRM
//! that waited in the HSDB while the VM restarted — would name a generation the new
//! process soon has too (small numbers), and silence a report the control plane never
//! saw. With it, the generations of two processes meet with a chance of about 2^-40;
//! within one process they still grow by one per change.
//!
//! [`Reporter`] is a pure state machine on an injected clock: the runtime
//! (`runtime.rs`) feeds it the time, the AME's status, the monitors' heartbeat starts and
//! closes and their messages, and sends the payloads it returns.

use std::time::Duration;

use dataplane::endpoint::PeerId;
use dataplane::io::InterfaceName;
use dataplane::message::Message;
use dataplane::time::Instant;
use hvha_appreport::pmsg::{Confirm, PmsgReq};
use hvha_appreport::{AppReport, AppState, AppStatus, DBELL_APP_CRITICAL_FAILURE, DBELL_REPORT};
use tracing::{debug, info, warn};

/// How often an unconfirmed report's doorbell is rung again (docs/hvncp.md
/// "Application reports").
pub const REPEAT: Duration = Duration::from_secs(10);

/// Heartbeat periods after a monitor's `START_HB` before its first doorbell (seed 004
/// L11752).
pub const INITIAL_CYCLES: u32 = 4;

/// Least time between two doorbells to one monitor: an engine whose generation changes
/// at every round does not make the agent ring at every round.
pub const MIN_SPACING: Duration = Duration::from_secs(1);

/// Where the report comes from: the AME (its handle, `ame::service::AmeHandle`), or
/// [`NoApplications`] when none runs.
pub trait ReportSource: Send {
    /// The report generation and the status of every application. The generation grows
    /// by at least one whenever any field of any application changes, and starts at 1.
    fn status(&self) -> (u64, Vec<AppStatus>);
    /// Call `f` (from any thread) after each change of the generation.
    fn set_on_change(&self, f: Box<dyn Fn() + Send + Sync>);
}

/// The AME's handle: its status and its change callback are the report's.
impl ReportSource for crate::ame::service::AmeHandle {
    fn status(&self) -> (u64, Vec<AppStatus>) {
        crate::ame::service::AmeHandle::status(self)
    }

    fn set_on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        crate::ame::service::AmeHandle::set_on_change(self, f);
    }
}

/// The report of an agent that watches no application: generation 1, empty. Still
/// rung once and confirmed, so that the control plane knows the VM has none. (vmmd
/// always runs the AME, even with no application: this one is for tools and tests.)
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoApplications;

impl ReportSource for NoApplications {
    fn status(&self) -> (u64, Vec<AppStatus>) {
        (1, Vec::new())
    }

    fn set_on_change(&self, _f: Box<dyn Fn() + Send + Sync>) {}
}

/// One monitor session: the interface and the peer in that interface's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorKey {
    /// The interface.
    pub iface: InterfaceName,
    /// The monitor's session on it.
    pub peer: PeerId,
}

/// A payload for one monitor.
pub type Outgoing = (MonitorKey, Vec<u8>);

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportStats {
    /// Doorbells rung (one per monitor per ring).
    pub doorbells: u64,
    /// `PMSG_REQ` answered.
    pub requests: u64,
    /// `PMSG_RSP` chunks produced.
    pub chunks: u64,
    /// `GMSG` answered with a `CLRDB` naming the generation.
    pub confirms: u64,
    /// `GMSG` for a generation this agent never had (answered `CLRDB:<req>:0`).
    pub confirms_unknown: u64,
    /// Report messages refused: bad arguments, or a verb only monitors receive.
    pub malformed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Monitor {
    key: MonitorKey,
    /// No doorbell before (its `START_HB` + [`INITIAL_CYCLES`] periods).
    ready_at: Instant,
    /// The next doorbell, while the report is unconfirmed.
    next_ring: Instant,
    last_ring: Option<Instant>,
}

/// The agent's report state (module documentation).
#[derive(Debug)]
pub struct Reporter {
    inc: u64,
    /// Added to the source's generations (module documentation).
    offset: u64,
    generation: u64,
    body: Vec<u8>,
    vector: u64,
    confirmed: u64,
    monitors: Vec<Monitor>,
    stats: ReportStats,
}

/// The generation offset of agent process `inc`: its incarnation's top 40 bits.
pub fn generation_offset(inc: u64) -> u64 {
    inc >> 24
}

impl Reporter {
    /// The report of agent process `inc` (its incarnation, never 0) at source
    /// generation `generation`, offset by [`generation_offset`]`(inc)`.
    pub fn new(inc: u64, generation: u64, apps: Vec<AppStatus>) -> Reporter {
        Reporter::with_offset(inc, generation_offset(inc), generation, apps)
    }

    /// The same with a given offset: the report's generation is `offset` + the
    /// source's.
    pub fn with_offset(inc: u64, offset: u64, generation: u64, apps: Vec<AppStatus>) -> Reporter {
        let mut r = Reporter {
            inc,
            offset,
            generation: 0,
            body: Vec::new(),
            vector: DBELL_REPORT,
            confirmed: 0,
            monitors: Vec::new(),
            stats: ReportStats::default(),
        };
        r.set_report(offset.saturating_add(generation), apps);
        r
    }

    /// The current generation (the source's plus the offset).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The highest generation the control plane confirmed (0: none yet).
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Whether the doorbell is up: the current report is not confirmed.
    pub fn ringing(&self) -> bool {
        self.generation > self.confirmed
    }

    /// Counters since the start.
    pub fn stats(&self) -> ReportStats {
        self.stats
    }

    fn set_report(&mut self, generation: u64, apps: Vec<AppStatus>) {
        let critical_failure = apps
            .iter()
            .any(|a| a.critical && a.state == AppState::Failure);
        self.vector = DBELL_REPORT
            | if critical_failure {
                DBELL_APP_CRITICAL_FAILURE
            } else {
                0
            };
        self.generation = generation;
        self.body = AppReport {
            inc: self.inc,
            generation,
            apps,
        }
        .encode()
        .into_bytes();
    }

    /// The AME's status now (its generation and applications). A new generation
    /// replaces the report, and the doorbell rings at once (at most once per
    /// [`MIN_SPACING`] per monitor) to every monitor past its first [`INITIAL_CYCLES`]
    /// heartbeats. True if the generation changed.
    pub fn update(&mut self, now: Instant, source: u64, apps: Vec<AppStatus>) -> bool {
        let generation = self.offset.saturating_add(source);
        if generation == self.generation {
            return false;
        }
        let previous = self.generation;
        self.set_report(generation, apps);
        if generation < self.confirmed {
            // The source went back (it was replaced): what was confirmed was another
            // report's generation.
            self.confirmed = 0;
        }
        info!(
            generation,
            previous,
            confirmed = self.confirmed,
            vector = format_args!("{:#x}", self.vector),
            bytes = self.body.len(),
            "application report changed: ringing the doorbell until the control plane confirms it"
        );
        for m in &mut self.monitors {
            let earliest = m.last_ring.map_or(now, |t| t + MIN_SPACING);
            m.next_ring = earliest.max(now);
        }
        true
    }

    /// The monitor of `key` started our heartbeats every `period`: it is rung from
    /// [`INITIAL_CYCLES`] periods on. A repeated start (monitoring resumed on the same
    /// session) changes nothing.
    pub fn heartbeat_started(&mut self, now: Instant, key: MonitorKey, period: Duration) {
        if self.monitors.iter().any(|m| m.key == key) {
            return;
        }
        let ready_at = now + period.saturating_mul(INITIAL_CYCLES);
        debug!(iface = %key.iface, peer = key.peer.0, ready_in_ms = (ready_at.saturating_duration_since(now)).as_millis(),
               "first doorbell to this monitor after {INITIAL_CYCLES} heartbeat cycles");
        self.monitors.push(Monitor {
            key,
            ready_at,
            next_ring: ready_at,
            last_ring: None,
        });
    }

    /// The session of `key` is gone (closed, or the monitor restarted).
    pub fn forget(&mut self, key: MonitorKey) {
        self.monitors.retain(|m| m.key != key);
    }

    /// Forget every monitor of interface `iface` (dropped).
    pub fn forget_interface(&mut self, iface: InterfaceName) {
        self.monitors.retain(|m| m.key.iface != iface);
    }

    /// The doorbells due at `now`, appended to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        if !self.ringing() {
            return;
        }
        let mut payload = Vec::new();
        Message::Doorbell {
            vector: self.vector,
        }
        .encode(&mut payload);
        for m in &mut self.monitors {
            if now < m.ready_at || now < m.next_ring {
                continue;
            }
            debug!(iface = %m.key.iface, peer = m.key.peer.0, generation = self.generation,
                   confirmed = self.confirmed, "doorbell");
            out.push((m.key, payload.clone()));
            m.last_ring = Some(now);
            m.next_ring = now + REPEAT;
            self.stats.doorbells += 1;
        }
    }

    /// When [`Reporter::poll`] has something to send next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ringing() {
            return None;
        }
        self.monitors
            .iter()
            .map(|m| m.ready_at.max(m.next_ring))
            .min()
    }

    /// A message from the monitor of `key`: `PMSG_REQ` and `GMSG` are answered (the
    /// answers appended to `out`); true if it was one of the exchange's messages (handled
    /// or refused), false for any other message.
    pub fn on_message(
        &mut self,
        key: MonitorKey,
        message: &Message<'_>,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        match *message {
            Message::PmsgReq { args } => {
                let Ok(req) = PmsgReq::parse(args) else {
                    self.refused(key, message);
                    return true;
                };
                // The body is at most MAX_BODY for up to 16 applications; a larger one
                // (more applications than any configuration allows) is not sent.
                let Some(chunks) =
                    hvha_appreport::pmsg::responses(req.req, self.generation, &self.body)
                else {
                    warn!(
                        bytes = self.body.len(),
                        "application report too large to send"
                    );
                    return true;
                };
                info!(iface = %key.iface, peer = key.peer.0, req = format_args!("{:x}", req.req),
                      generation = self.generation, chunks = chunks.len(),
                      "report requested (PMSG_REQ): sending the current report");
                self.stats.requests += 1;
                self.stats.chunks += chunks.len() as u64;
                out.extend(chunks.into_iter().map(|c| (key, c)));
                true
            }
            Message::Gmsg { args } => {
                let Ok(confirm) = Confirm::parse(Confirm::GMSG, args) else {
                    self.refused(key, message);
                    return true;
                };
                let answered = if confirm.generation <= self.generation {
                    self.confirmed = self.confirmed.max(confirm.generation);
                    self.stats.confirms += 1;
                    if self.ringing() {
                        info!(
                            confirmed = confirm.generation,
                            generation = self.generation,
                            "report confirmed (GMSG) but a newer one exists: the doorbell stays up"
                        );
                    } else {
                        info!(
                            generation = self.generation,
                            "report confirmed (GMSG): doorbell down"
                        );
                    }
                    confirm.generation
                } else {
                    self.stats.confirms_unknown += 1;
                    warn!(
                        asked = confirm.generation,
                        generation = self.generation,
                        "GMSG for a generation this agent process never had (a previous \
                           process's?): nothing confirmed, answering CLRDB with generation 0"
                    );
                    0
                };
                out.push((
                    key,
                    Confirm {
                        req: confirm.req,
                        generation: answered,
                    }
                    .encode(Confirm::CLRDB),
                ));
                true
            }
            // Only monitors receive these.
            Message::PmsgRsp { .. } | Message::ClearDb { .. } => {
                self.refused(key, message);
                true
            }
            _ => false,
        }
    }

    fn refused(&mut self, key: MonitorKey, message: &Message<'_>) {
        self.stats.malformed += 1;
        warn!(iface = %key.iface, peer = key.peer.0,
              verb = %String::from_utf8_lossy(message.verb()),
              "report message refused: bad arguments, or a verb only monitors receive");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hvha_appreport::pmsg::{PmsgRsp, Reassembler};
    use hvha_appreport::{AppReport, MonitorKind};

    const HB: Duration = Duration::from_secs(10);
    const INC: u64 = 0xfeed_0001;

    fn key(iface: &str, peer: u32) -> MonitorKey {
        MonitorKey {
            iface: InterfaceName::new(iface).unwrap(),
            peer: PeerId(peer),
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn app(name: &str, state: AppState, critical: bool) -> AppStatus {
        AppStatus {
            critical,
            monitor: MonitorKind::Http,
            since_ms: 1_556_303_548_719,
            detail: "HTTP 503 from 127.0.0.1:8080 /health".into(),
            ..AppStatus::new(name, state)
        }
    }

    /// Doorbells due at `now`: (monitor, vector).
    fn rings(r: &mut Reporter, now: Instant) -> Vec<(MonitorKey, u64)> {
        let mut out = Vec::new();
        r.poll(now, &mut out);
        out.into_iter()
            .map(|(k, p)| match Message::parse(&p).unwrap() {
                Message::Doorbell { vector } => (k, vector),
                other => panic!("not a doorbell: {other:?}"),
            })
            .collect()
    }

    fn send(r: &mut Reporter, k: MonitorKey, payload: &[u8]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        assert!(r.on_message(k, &Message::parse(payload).unwrap(), &mut out));
        out
    }

    /// Reassemble the PMSG_RSP answers to `req` as a monitor does.
    fn reassemble(answers: &[Outgoing], req: u64) -> (u64, AppReport) {
        let mut re = Reassembler::new(req);
        let mut done = None;
        for (_, payload) in answers {
            let Message::PmsgRsp { args } = Message::parse(payload).unwrap() else {
                panic!("not a PMSG_RSP");
            };
            assert!(payload.len() <= 1492, "one HVNCP packet");
            if let Some(d) = re.push(&PmsgRsp::parse(args).unwrap()).unwrap() {
                done = Some(d);
            }
        }
        let (generation, body) = done.expect("complete");
        (generation, AppReport::parse(&body).unwrap())
    }

    fn clrdb(out: &[Outgoing]) -> Confirm {
        assert_eq!(out.len(), 1);
        let Message::ClearDb { args } = Message::parse(&out[0].1).unwrap() else {
            panic!("not a CLRDB");
        };
        Confirm::parse(Confirm::CLRDB, args).unwrap()
    }

    #[test]
    fn first_doorbell_after_four_heartbeat_cycles_then_every_ten_seconds() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(100), m, HB);
        assert_eq!(r.next_deadline(), Some(at(140)));
        assert!(rings(&mut r, at(139)).is_empty());
        assert_eq!(rings(&mut r, at(140)), [(m, DBELL_REPORT)]);
        // Not again before the repeat.
        assert!(rings(&mut r, at(149)).is_empty());
        assert_eq!(r.next_deadline(), Some(at(150)));
        assert_eq!(rings(&mut r, at(150)), [(m, DBELL_REPORT)]);
        assert_eq!(r.stats().doorbells, 2);
    }

    #[test]
    fn initial_delay_follows_the_commanded_period() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 3);
        r.heartbeat_started(at(10), m, Duration::from_secs(1));
        assert!(rings(&mut r, Instant::from_millis(13_999)).is_empty());
        assert_eq!(rings(&mut r, at(14)).len(), 1);
        // A repeated START_HB on the same session does not restart the wait.
        r.heartbeat_started(at(20), m, Duration::from_secs(30));
        assert_eq!(rings(&mut r, at(24)).len(), 1);
    }

    #[test]
    fn a_change_rings_at_once_every_ready_monitor_with_the_critical_bit() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let (a, b, late) = (key("eth1", 0), key("eth2", 0), key("eth1", 1));
        r.heartbeat_started(at(0), a, HB);
        r.heartbeat_started(at(0), b, HB);
        assert_eq!(rings(&mut r, at(40)).len(), 2);
        r.heartbeat_started(at(41), late, HB);
        // A critical application fails: both ready monitors at once, with 0x100; the
        // monitor still in its first four cycles waits.
        assert!(r.update(
            at(45),
            2,
            vec![
                app("web", AppState::Failure, true),
                app("db", AppState::Normal, false),
            ]
        ));
        let v = DBELL_REPORT | DBELL_APP_CRITICAL_FAILURE;
        assert_eq!(rings(&mut r, at(45)), [(a, v), (b, v)]);
        // A non-critical FAILURE sets no escalation bit.
        assert!(r.update(at(47), 3, vec![app("db", AppState::Failure, false)]));
        assert_eq!(
            rings(&mut r, at(47)),
            [(a, DBELL_REPORT), (b, DBELL_REPORT)]
        );
        // Unconfirmed: rung again; the late monitor once its four cycles are over.
        assert_eq!(
            rings(&mut r, at(80)),
            [(a, DBELL_REPORT), (b, DBELL_REPORT)]
        );
        assert_eq!(rings(&mut r, at(81)), [(late, DBELL_REPORT)]);
        // The same generation again is no change.
        assert!(!r.update(at(50), 3, Vec::new()));
    }

    #[test]
    fn changes_in_a_burst_ring_at_most_once_a_second() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(0), m, HB);
        assert_eq!(rings(&mut r, at(40)).len(), 1);
        r.update(Instant::from_millis(40_200), 2, Vec::new());
        assert_eq!(r.next_deadline(), Some(at(41)));
        assert!(rings(&mut r, Instant::from_millis(40_200)).is_empty());
        assert_eq!(rings(&mut r, at(41)).len(), 1);
    }

    #[test]
    fn request_is_answered_with_the_current_report_in_one_packet_chunks() {
        let apps: Vec<AppStatus> = (0..16)
            .map(|i| AppStatus {
                detail: "é%:\n".repeat(60),
                ..app(&format!("app{i}"), AppState::Failing, i % 2 == 0)
            })
            .collect();
        let mut r = Reporter::with_offset(INC, 0, 7, apps.clone());
        let m = key("eth1", 0);
        let out = send(&mut r, m, b"PMSG_REQ:2a");
        assert!(
            out.len() > 1,
            "a 16-application report takes several chunks"
        );
        assert!(out.iter().all(|(k, _)| *k == m));
        let (generation, report) = reassemble(&out, 0x2a);
        assert_eq!(generation, 7);
        assert_eq!(report.inc, INC);
        assert_eq!(report.generation, 7);
        assert_eq!(report.apps.len(), 16);
        // The detail as sent: cut to 256 bytes at a character boundary.
        let sent = &report.apps[3].detail;
        assert!(apps[3].detail.starts_with(sent.as_str()) && (250..=256).contains(&sent.len()));
        // Asked again (a monitor restarted and carries out the command again): the
        // current report again, now of a newer generation.
        r.update(at(1), 8, vec![app("web", AppState::Normal, true)]);
        let (generation, report) = reassemble(&send(&mut r, m, b"PMSG_REQ:2A"), 0x2a);
        assert_eq!((generation, report.apps.len()), (8, 1));
        assert_eq!(r.stats().requests, 2);
    }

    #[test]
    fn empty_report_is_one_chunk() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let out = send(&mut r, key("eth1", 0), b"PMSG_REQ:1");
        assert_eq!(out.len(), 1);
        let (generation, report) = reassemble(&out, 1);
        assert_eq!((generation, report.apps.len()), (1, 0));
    }

    #[test]
    fn confirmation_stops_the_doorbell_and_is_answered() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(0), m, HB);
        assert_eq!(rings(&mut r, at(40)).len(), 1);
        let answer = clrdb(&send(&mut r, m, b"GMSG:10:1"));
        assert_eq!((answer.req, answer.generation), (0x10, 1));
        assert_eq!(r.confirmed(), 1);
        assert!(!r.ringing());
        assert_eq!(r.next_deadline(), None);
        assert!(rings(&mut r, at(1000)).is_empty());
        // A duplicate confirmation (hmd restarted before completing it) is answered the
        // same way and changes nothing.
        assert_eq!(clrdb(&send(&mut r, m, b"GMSG:10:1")).generation, 1);
        assert_eq!(r.confirmed(), 1);
        // The next change rings again.
        r.update(at(1001), 2, vec![app("web", AppState::Normal, true)]);
        assert_eq!(rings(&mut r, at(1001)).len(), 1);
    }

    #[test]
    fn confirmation_of_an_older_generation_keeps_the_doorbell_up() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(0), m, HB);
        r.update(at(50), 5, Vec::new());
        assert_eq!(rings(&mut r, at(50)).len(), 1);
        // The control plane fetched generation 4's report... then 5 came.
        assert_eq!(clrdb(&send(&mut r, m, b"GMSG:11:4")).generation, 4);
        assert_eq!(r.confirmed(), 4);
        assert!(r.ringing());
        assert_eq!(rings(&mut r, at(60)).len(), 1);
        // A late confirmation of an even older one does not lower it.
        send(&mut r, m, b"GMSG:12:2");
        assert_eq!(r.confirmed(), 4);
        send(&mut r, m, b"GMSG:13:5");
        assert!(!r.ringing());
    }

    #[test]
    fn confirmation_of_a_generation_never_sent_confirms_nothing() {
        // This agent process is at generation 2; a GMSG for 9 was meant for a previous
        // process (the agent restarted after the control plane fetched its report).
        let mut r = Reporter::with_offset(INC, 0, 2, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(0), m, HB);
        let answer = clrdb(&send(&mut r, m, b"GMSG:20:9"));
        assert_eq!((answer.req, answer.generation), (0x20, 0));
        assert_eq!(r.confirmed(), 0);
        assert!(r.ringing());
        assert_eq!(r.stats().confirms_unknown, 1);
        assert_eq!(rings(&mut r, at(40)).len(), 1);
    }

    #[test]
    fn bad_or_misdirected_messages_are_counted_not_answered() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let m = key("eth1", 0);
        for bad in [
            &b"PMSG_REQ:xyz"[..],
            b"PMSG_REQ:11112222333344445",
            b"GMSG:10",
            b"GMSG:10:-1",
            b"GMSG:10:99999999999999999999999",
            b"PMSG_RSP:1:1:1/1:x",
            b"CLRDB:1:1",
        ] {
            assert!(send(&mut r, m, bad).is_empty(), "{bad:?}");
        }
        assert_eq!(r.stats().malformed, 7);
        assert_eq!(r.confirmed(), 0);
        // Other messages are not the exchange's.
        let mut out = Vec::new();
        assert!(!r.on_message(m, &Message::StopHb, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_closed_session_is_no_longer_rung() {
        let mut r = Reporter::with_offset(INC, 0, 1, Vec::new());
        let (a, b) = (key("eth1", 0), key("eth2", 5));
        r.heartbeat_started(at(0), a, HB);
        r.heartbeat_started(at(0), b, HB);
        r.forget(a);
        assert_eq!(rings(&mut r, at(40)), [(b, DBELL_REPORT)]);
        r.forget_interface(InterfaceName::new("eth2").unwrap());
        assert_eq!(r.next_deadline(), None);
        // The monitor restarted: a new session, a new wait of four cycles.
        r.heartbeat_started(at(50), a, HB);
        assert!(rings(&mut r, at(89)).is_empty());
        assert_eq!(rings(&mut r, at(90)), [(a, DBELL_REPORT)]);
    }

    #[test]
    fn a_previous_agent_process_confirmation_confirms_nothing() {
        // Process A reported its source generation 3; the VM restarted before the
        // control plane's confirmation reached it. Process B, at its own source
        // generation 3, must not take A's confirmation for its own.
        let (inc_a, inc_b) = (0x1111_2222_3333_4444, 0x9999_aaaa_bbbb_cccc);
        let a = Reporter::new(inc_a, 3, Vec::new());
        let mut b = Reporter::new(inc_b, 3, vec![app("web", AppState::Normal, true)]);
        assert_eq!(a.generation(), generation_offset(inc_a) + 3);
        assert_ne!(a.generation(), b.generation());
        let m = key("eth1", 0);
        b.heartbeat_started(at(0), m, HB);
        let stale = format!("GMSG:5:{}", a.generation());
        send(&mut b, m, stale.as_bytes());
        assert!(b.ringing(), "B's report is still unconfirmed");
        assert_eq!(rings(&mut b, at(40)).len(), 1);
        // B's own generation, as its report says, is confirmed.
        let (generation, report) = reassemble(&send(&mut b, m, b"PMSG_REQ:6"), 6);
        assert_eq!(
            (generation, report.generation),
            (b.generation(), b.generation())
        );
        let own = format!("GMSG:7:{generation}");
        assert_eq!(
            clrdb(&send(&mut b, m, own.as_bytes())).generation,
            generation
        );
        assert!(!b.ringing());
        // Within one process, one step per change; the wire generation fits the HSDB.
        b.update(at(50), 4, Vec::new());
        assert_eq!(b.generation(), generation + 1);
        assert!(i64::try_from(generation_offset(u64::MAX) + u64::from(u32::MAX)).is_ok());
    }

    #[test]
    fn the_ame_handle_is_a_report_source() {
        let ame =
            crate::ame::service::Ame::spawn(crate::ame::config::AmeConfig::default()).unwrap();
        let source: Box<dyn ReportSource> = Box::new(ame.handle());
        source.set_on_change(Box::new(|| {}));
        assert_eq!(source.status(), ame.handle().status());
        assert_eq!(source.status().0, 1, "the AME's first generation");
        ame.shutdown();
    }

    #[test]
    fn a_source_that_went_back_is_rung_again() {
        let mut r = Reporter::with_offset(INC, 0, 5, Vec::new());
        let m = key("eth1", 0);
        r.heartbeat_started(at(0), m, HB);
        send(&mut r, m, b"GMSG:1:5");
        assert!(!r.ringing());
        r.update(at(60), 1, Vec::new());
        assert!(r.ringing());
        assert_eq!(rings(&mut r, at(60)).len(), 1);
    }
}
