//! Carrying out FETCH_APP_REPORT and CONFIRM_APP_REPORT (docs/hvncp.md "Application
//! reports"): the monitor's half of the exchange between the control plane and a VM's
//! agent.
//!
//! - **FETCH_APP_REPORT** — `PMSG_REQ:<command id hex>` goes to the VM on one of its
//!   established sessions; the agent answers with the `PMSG_RSP` chunks of its current
//!   report, reassembled here (`hvha_appreport::pmsg::Reassembler`, at most 64 KiB per
//!   exchange); the command completes `REPORT: <the body>` once every chunk is in and
//!   the body parses as a report of the generation the chunks carry, else
//!   `BAD_REPORT: …`.
//! - **CONFIRM_APP_REPORT** (arg: the generation) — `GMSG:<command id hex>:<gen>`;
//!   the agent's `CLRDB:<id>:<gen>` completes it `CLEARED: gen=<gen>`; a `CLRDB` naming
//!   another generation (the agent never had it: it restarted since) `NOT_CLEARED: …`.
//!
//! Either completes `NO_SESSION` when the VM has no established session with this
//! monitor — at once for a VM this monitor never knew, after [`EXCHANGE_TIMEOUT`] for
//! one it knows (the command waits for the VM to pair again: a monitor that has just
//! restarted reads its open commands before its agents have re-paired) —, `TIMEOUT` when the agent has not answered within [`EXCHANGE_TIMEOUT`], and
//! `BUSY` when [`MAX_EXCHANGES`] are in progress. A `PMSG_RSP` or `CLRDB` that answers
//! no exchange in progress (late, duplicated, for a previous run of this monitor, or from
//! another VM) is counted and dropped. The request id is the command's id, so a command
//! carried out again by a restarted monitor asks again under the same id; the agent
//! answers every request, and keeps its doorbell up until a confirmation reaches it.
//!
//! All of this runs on the dataplane thread without touching the HSDB: completions go to
//! the writer with the turn's batch, like every other command's.

use std::collections::HashMap;
use std::time::Duration;

use dataplane::endpoint::PeerId;
use dataplane::heartbeat::SessionKey;
use dataplane::message::{Message, Uuid};
use dataplane::ratelimit::RateLimiter;
use dataplane::session::Priority;
use dataplane::time::Instant;
use hvha_appreport::AppReport;
use hvha_appreport::pmsg::{Confirm, PmsgReq, PmsgRsp, Reassembler};

use super::{Monitor, epoch_ms};
use crate::commands::{Code, Command, Completion};

/// How long the agent has to answer a `PMSG_REQ` completely, or a `GMSG`.
pub(super) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Exchanges in progress at most: each holds up to 64 KiB of report, so 16 MiB in all.
pub(super) const MAX_EXCHANGES: usize = 256;

/// What an exchange waits for.
#[derive(Debug)]
enum Awaiting {
    /// The chunks of a report.
    Report(Reassembler),
    /// The `CLRDB` of this generation.
    Clear { generation: u64 },
}

/// One command in progress.
#[derive(Debug)]
struct Exchange {
    command: Command,
    /// The VM's session the request went on (its answer may come on any of the VM's).
    key: SessionKey,
    deadline: Instant,
    awaiting: Awaiting,
}

/// Report exchanges counted since the start (admin `stats`, `status`, metrics).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReportCounts {
    /// `PMSG_REQ` sent.
    pub(super) requests: u64,
    /// FETCH completed `REPORT`.
    pub(super) reports: u64,
    /// `PMSG_RSP` chunks taken.
    pub(super) chunks: u64,
    /// `GMSG` sent.
    pub(super) confirms: u64,
    /// CONFIRM completed `CLEARED`.
    pub(super) cleared: u64,
    /// CONFIRM completed `NOT_CLEARED`.
    pub(super) not_cleared: u64,
    /// Completed `TIMEOUT`.
    pub(super) timeouts: u64,
    /// Completed `NO_SESSION`.
    pub(super) no_session: u64,
    /// FETCH completed `BAD_REPORT`.
    pub(super) bad_reports: u64,
    /// Completed `BAD_ARG` or `BUSY`.
    pub(super) refused: u64,
    /// `PMSG_RSP` / `CLRDB` answering no exchange in progress, or from another VM.
    pub(super) unexpected: u64,
    /// Report messages whose arguments do not parse, or verbs only agents receive.
    pub(super) malformed: u64,
}

/// The exchanges in progress, by request id (= command id).
#[derive(Debug)]
pub(super) struct Exchanges {
    open: HashMap<u64, Exchange>,
    /// Commands about a known VM without an established session: begun when it pairs,
    /// `NO_SESSION` at the deadline.
    parked: Vec<(Command, Instant)>,
    pub(super) counts: ReportCounts,
    /// Lines about unexpected or malformed messages (a guest may send any number).
    noise: RateLimiter,
}

impl Default for Exchanges {
    fn default() -> Exchanges {
        Exchanges {
            open: HashMap::new(),
            parked: Vec::new(),
            counts: ReportCounts::default(),
            noise: RateLimiter::new(5, Duration::from_secs(10)),
        }
    }
}

impl Exchanges {
    /// Exchanges in progress, and commands waiting for their VM to pair.
    pub(super) fn len(&self) -> usize {
        self.open.len() + self.parked.len()
    }

    /// The earliest timeout.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|e| e.deadline)
            .chain(self.parked.iter().map(|(_, t)| *t))
            .min()
    }
}

/// The request id of a command: its id (positive, from the HSDB).
fn req_of(command: &Command) -> u64 {
    u64::try_from(command.id).unwrap_or_default()
}

impl Monitor<'_> {
    /// Send `payload` on session `key` if it is established. True if queued.
    fn send_raw(&mut self, now: Instant, key: SessionKey, payload: &[u8]) -> bool {
        let Some(iface) = self.interfaces.get_mut(usize::from(key.iface)) else {
            return false;
        };
        iface.endpoint.is_established(key.peer)
            && iface
                .endpoint
                .send(now, key.peer, Priority::Normal, payload)
                .is_ok()
    }

    /// The first established session among `keys`.
    fn established(&self, keys: &[SessionKey]) -> Option<SessionKey> {
        keys.iter().copied().find(|k| {
            self.interfaces
                .get(usize::from(k.iface))
                .is_some_and(|i| i.endpoint.is_established(k.peer))
        })
    }

    /// Begin a FETCH_APP_REPORT or CONFIRM_APP_REPORT on one of `keys` (the VM's
    /// sessions): `None` while the exchange is in progress, or waits for a session
    /// (`known`: this monitor knows the VM), completed later; its outcome when it cannot
    /// begin.
    pub(super) fn begin_report_exchange(
        &mut self,
        now: Instant,
        command: &Command,
        keys: &[SessionKey],
        known: bool,
    ) -> Option<(Code, String)> {
        let req = req_of(command);
        if self.reports.open.contains_key(&req)
            || self.reports.parked.iter().any(|(c, _)| c.id == command.id)
        {
            // Handed over twice: the first is in progress.
            return None;
        }
        let confirm = command.kind == hsdb::CommandKind::ConfirmAppReport;
        let generation = if confirm {
            match parse_generation(command.arg.as_deref()) {
                Ok(g) => Some(g),
                Err(why) => {
                    self.reports.counts.refused += 1;
                    return Some((Code::BadArg, why));
                }
            }
        } else {
            None
        };
        if self.reports.len() >= MAX_EXCHANGES {
            self.reports.counts.refused += 1;
            return Some((
                Code::Busy,
                format!(
                    "{MAX_EXCHANGES} report exchanges in progress; the agent keeps ringing, ask again then"
                ),
            ));
        }
        let Some(key) = self.established(keys) else {
            if known {
                tracing::debug!(
                    command = %command.kind,
                    id = command.id,
                    vm = %command.vm,
                    "no session with the VM now: the command waits for it to pair"
                );
                self.reports
                    .parked
                    .push((command.clone(), now + EXCHANGE_TIMEOUT));
                return None;
            }
            self.reports.counts.no_session += 1;
            return Some((
                Code::NoSession,
                "the VM has no established session with this monitor".into(),
            ));
        };
        let (payload, awaiting) = match generation {
            Some(generation) => (
                Confirm { req, generation }.encode(Confirm::GMSG),
                Awaiting::Clear { generation },
            ),
            None => (
                PmsgReq { req }.encode(),
                Awaiting::Report(Reassembler::new(req)),
            ),
        };
        if !self.send_raw(now, key, &payload) {
            self.reports.counts.no_session += 1;
            return Some((
                Code::NoSession,
                "the VM's session refused the message (closing, or its queue is full)".into(),
            ));
        }
        if confirm {
            self.reports.counts.confirms += 1;
        } else {
            self.reports.counts.requests += 1;
        }
        tracing::debug!(
            command = %command.kind,
            id = command.id,
            vm = %command.vm,
            sent = %String::from_utf8_lossy(&payload),
            "report exchange begun"
        );
        self.reports.open.insert(
            req,
            Exchange {
                command: command.clone(),
                key,
                deadline: now + EXCHANGE_TIMEOUT,
                awaiting,
            },
        );
        None
    }

    /// VM `vm` established session `key`: begin the commands that waited for it.
    pub(super) fn on_report_session(&mut self, now: Instant, vm: Uuid, key: SessionKey) {
        if !self.reports.parked.iter().any(|(c, _)| c.vm == vm) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reports.parked)
            .into_iter()
            .partition(|(c, _)| c.vm == vm);
        self.reports.parked = waiting;
        for (command, _) in ready {
            if let Some((code, detail)) = self.begin_report_exchange(now, &command, &[key], false) {
                self.complete_report_command(now, &command, code, detail);
            }
        }
    }

    /// A message from an agent on interface number `i`: the exchange's `PMSG_RSP` and
    /// `CLRDB` are taken here (true); any other message is not the exchange's (false).
    pub(super) fn on_report_message(
        &mut self,
        now: Instant,
        i: usize,
        peer: PeerId,
        payload: &[u8],
    ) -> bool {
        let Ok(message) = Message::parse(payload) else {
            return false;
        };
        let vm = self
            .interfaces
            .get(i)
            .and_then(|iface| iface.endpoint.peer_uuid(peer));
        match message {
            Message::PmsgRsp { args } => {
                match PmsgRsp::parse(args) {
                    Ok(rsp) => self.on_chunk(now, vm, &rsp),
                    Err(e) => self.noise(now, vm, "PMSG_RSP", &e.to_string(), true),
                }
                true
            }
            Message::ClearDb { args } => {
                match Confirm::parse(Confirm::CLRDB, args) {
                    Ok(clear) => self.on_clear(now, vm, clear),
                    Err(e) => self.noise(now, vm, "CLRDB", &e.to_string(), true),
                }
                true
            }
            Message::PmsgReq { .. } | Message::Gmsg { .. } => {
                self.noise(now, vm, "PMSG_REQ/GMSG", "a verb only agents receive", true);
                true
            }
            _ => false,
        }
    }

    /// Count and (rate-limited) log a report message that fits no exchange.
    fn noise(&mut self, now: Instant, vm: Option<Uuid>, verb: &str, why: &str, malformed: bool) {
        if malformed {
            self.reports.counts.malformed += 1;
        } else {
            self.reports.counts.unexpected += 1;
        }
        if let Some(n) = self.reports.noise.check(now) {
            tracing::warn!(
                vm = %vm.map_or_else(|| "?".into(), |v| v.to_string()),
                verb,
                "report message dropped: {why}{}",
                crate::quiet::suppressed_note(n)
            );
        }
    }

    /// The exchange `req`, if it is in progress and about `vm`.
    fn exchange_of(&mut self, req: u64, vm: Option<Uuid>) -> Result<&mut Exchange, &'static str> {
        let ex = self.reports.open.get_mut(&req).ok_or(
            "it answers no exchange in progress (late, duplicated, or for a previous run)",
        )?;
        if Some(ex.command.vm) != vm {
            return Err("it answers an exchange with another VM");
        }
        Ok(ex)
    }

    fn on_chunk(&mut self, now: Instant, vm: Option<Uuid>, rsp: &PmsgRsp<'_>) {
        let ex = match self.exchange_of(rsp.req, vm) {
            Ok(ex) => ex,
            Err(why) => return self.noise(now, vm, "PMSG_RSP", why, false),
        };
        let Awaiting::Report(re) = &mut ex.awaiting else {
            return self.noise(now, vm, "PMSG_RSP", "it answers a confirmation", false);
        };
        let outcome = match re.push(rsp) {
            Ok(None) => {
                self.reports.counts.chunks += 1;
                return;
            }
            Ok(Some((generation, body))) => Ok((generation, body)),
            Err(e) => Err(e.to_string()),
        };
        self.reports.counts.chunks += 1;
        let (code, result) = match outcome {
            Ok((generation, body)) => match check_report(generation, body) {
                Ok((text, apps)) => {
                    self.reports.counts.reports += 1;
                    tracing::info!(
                        vm = %vm.map_or_else(|| "?".into(), |v| v.to_string()),
                        generation,
                        apps,
                        bytes = text.len(),
                        "application report received"
                    );
                    (Code::Report, text)
                }
                Err(why) => {
                    self.reports.counts.bad_reports += 1;
                    (Code::BadReport, why)
                }
            },
            Err(why) => {
                self.reports.counts.bad_reports += 1;
                (
                    Code::BadReport,
                    format!("the chunks do not fit together: {why}"),
                )
            }
        };
        self.finish_exchange(now, rsp.req, code, result);
    }

    fn on_clear(&mut self, now: Instant, vm: Option<Uuid>, clear: Confirm) {
        let ex = match self.exchange_of(clear.req, vm) {
            Ok(ex) => ex,
            Err(why) => return self.noise(now, vm, "CLRDB", why, false),
        };
        let Awaiting::Clear { generation } = ex.awaiting else {
            return self.noise(now, vm, "CLRDB", "it answers a report request", false);
        };
        let (code, detail) = if clear.generation == generation {
            self.reports.counts.cleared += 1;
            (Code::Cleared, format!("gen={generation}"))
        } else {
            self.reports.counts.not_cleared += 1;
            (
                Code::NotCleared,
                format!(
                    "gen={generation}: the agent never had this generation (it answered {}; restarted since the report was fetched?); it keeps ringing",
                    clear.generation
                ),
            )
        };
        self.finish_exchange(now, clear.req, code, detail);
    }

    /// Complete exchange `req` with `code: detail`.
    fn finish_exchange(&mut self, now: Instant, req: u64, code: Code, detail: String) {
        if let Some(ex) = self.reports.open.remove(&req) {
            self.complete_report_command(now, &ex.command, code, detail);
        }
    }

    /// Hand `command`'s result to the writer, with a log line (the report itself is
    /// not logged).
    fn complete_report_command(
        &mut self,
        now: Instant,
        command: &Command,
        code: Code,
        detail: String,
    ) {
        let at = epoch_ms(&self.clock, now);
        let shown: &str = if code == Code::Report {
            "report body"
        } else {
            &detail
        };
        tracing::info!(
            command = %command.kind,
            id = command.id,
            vm = %command.vm,
            outcome = %code,
            waited_ms = at.saturating_sub(command.created_ms),
            "{shown}"
        );
        self.completions.push(Completion {
            id: command.id,
            result: format!("{code}: {detail}"),
            at,
        });
    }

    /// Complete the exchanges whose agent has not answered in time, and the commands
    /// whose VM has not paired in time.
    pub(super) fn on_report_timeouts(&mut self, now: Instant) {
        if self.reports.parked.iter().any(|(_, t)| *t <= now) {
            let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reports.parked)
                .into_iter()
                .partition(|(_, t)| *t <= now);
            self.reports.parked = waiting;
            for (command, _) in late {
                self.reports.counts.no_session += 1;
                let detail = format!(
                    "the VM did not pair with this monitor within {} s",
                    EXCHANGE_TIMEOUT.as_secs()
                );
                self.complete_report_command(now, &command, Code::NoSession, detail);
            }
        }
        let due: Vec<u64> = self
            .reports
            .open
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in due {
            let Some(ex) = self.reports.open.get(&req) else {
                continue;
            };
            let secs = EXCHANGE_TIMEOUT.as_secs();
            let iface = self
                .interfaces
                .get(usize::from(ex.key.iface))
                .map_or("?", |i| i.name.as_str());
            let detail = match &ex.awaiting {
                Awaiting::Report(re) => match (re.missing(), re.generation()) {
                    (Some(missing), Some(generation)) => format!(
                        "{missing} chunk(s) of generation {generation}'s report still missing after {secs} s (asked on {iface})"
                    ),
                    _ => format!("no PMSG_RSP within {secs} s (asked on {iface})"),
                },
                Awaiting::Clear { generation } => {
                    format!("no CLRDB for gen={generation} within {secs} s (asked on {iface})")
                }
            };
            self.reports.counts.timeouts += 1;
            self.finish_exchange(now, req, Code::Timeout, detail);
        }
    }
}

/// The generation a CONFIRM_APP_REPORT names: 1-20 decimal digits, 1..2^64.
fn parse_generation(arg: Option<&str>) -> Result<u64, String> {
    let Some(text) = arg else {
        return Err("no argument: CONFIRM_APP_REPORT needs the generation in decimal".into());
    };
    let shown: String = text.chars().take(32).collect();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "argument \"{}\" is not a generation (1-20 decimal digits)",
            shown.escape_debug()
        ));
    }
    match text.parse::<u64>() {
        Ok(0) => Err("generation 0 names no report (generations start at 1)".into()),
        Ok(g) => Ok(g),
        Err(_) => Err(format!("generation {shown} is above 2^64-1")),
    }
}

/// The body of a complete report as the result's text, with its application count;
/// why not, when it does not parse or its header names another generation.
fn check_report(generation: u64, body: Vec<u8>) -> Result<(String, usize), String> {
    let report = AppReport::parse(&body).map_err(|e| format!("the report does not parse: {e}"))?;
    if report.generation != generation {
        return Err(format!(
            "the report says gen={} but its chunks said {generation}",
            report.generation
        ));
    }
    let apps = report.apps.len();
    let text = String::from_utf8(body).map_err(|_| "the report is not UTF-8".to_string())?;
    Ok((text, apps))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn generation_argument() {
        assert_eq!(parse_generation(Some("7")), Ok(7));
        assert_eq!(parse_generation(Some("18446744073709551615")), Ok(u64::MAX));
        for bad in [
            None,
            Some(""),
            Some("0"),
            Some("-1"),
            Some("+3"),
            Some(" 3"),
            Some("0x10"),
            Some("18446744073709551616"),
            Some("123456789012345678901"),
        ] {
            let err = parse_generation(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        // The error names the value, cut and escaped.
        let err = parse_generation(Some("abc\ndef")).unwrap_err();
        assert!(err.contains("abc\\ndef"), "{err}");
    }

    #[test]
    fn report_body_checked_against_the_chunks_generation() {
        let body = AppReport {
            inc: 0xab,
            generation: 3,
            apps: vec![hvha_appreport::AppStatus::new(
                "web",
                hvha_appreport::AppState::Normal,
            )],
        }
        .encode()
        .into_bytes();
        let (text, apps) = check_report(3, body.clone()).unwrap();
        assert_eq!((text.as_bytes(), apps), (&body[..], 1));
        assert!(check_report(4, body).unwrap_err().contains("gen=3"));
        assert!(
            check_report(1, b"HVHA-APPS 2 garbage\n".to_vec())
                .unwrap_err()
                .contains("does not parse")
        );
    }
}
