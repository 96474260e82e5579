//! What the service manager and other supervisors see of `hmd`: `READY=1` once the
//! interfaces are open and the HSDB registered, `WATCHDOG=1` from the dataplane loop
//! itself, and the `health` verdict (`hmd health`).
//!
//! A ping is sent only at the end of a completed loop turn, and only while the HSDB
//! writer makes progress ([`WriterStats::stalled`]): a wedged loop sends nothing because
//! it does not reach the end of a turn, a writer blocked on a lock or a failing disk
//! withholds the pings, and systemd (`WatchdogSec=`) kills and restarts the daemon. A
//! link that is down does not withhold pings: a restart does not mend a cable; `health`
//! reports it instead. Rules and thresholds: docs/operations.md, "Running under systemd".

use std::fmt;
use std::time::Duration;

use hvha_notify::{Notifier, WatchdogPacer};

use crate::writer::{Stall, WriterStats};

/// Without a watchdog, `health` calls a writer stuck after this long without progress
/// while it owes transitions: three times the HSDB's 5 s lock wait.
const WRITER_STALL_DEFAULT: Duration = Duration::from_secs(15);

/// The shortest writer-stall limit, whatever `WATCHDOG_USEC` says: a commit of 10,000
/// rows takes ~0.1 s, and a busy disk may take several times that.
const WRITER_STALL_MIN: Duration = Duration::from_secs(1);

/// The daemon's side of the service manager's protocol.
#[derive(Debug)]
pub struct Supervisor {
    notifier: Notifier,
    pacer: Option<WatchdogPacer>,
    writer_stall: Duration,
    /// Pings are being withheld (logged once per episode).
    withholding: bool,
}

impl Supervisor {
    /// From `NOTIFY_SOCKET` / `WATCHDOG_USEC` / `WATCHDOG_PID`. Unusable values are
    /// logged and notifications turned off: a daemon started by hand with stray
    /// variables still runs.
    pub fn from_env() -> Supervisor {
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            tracing::warn!("service manager notifications off: {e}");
            Notifier::disabled()
        });
        Supervisor::new(notifier)
    }

    /// Around an existing notifier.
    pub fn new(notifier: Notifier) -> Supervisor {
        let pacer = notifier.watchdog_timeout().map(WatchdogPacer::new);
        let writer_stall =
            pacer.map_or(WRITER_STALL_DEFAULT, |p| p.interval().max(WRITER_STALL_MIN));
        if let Some(p) = pacer {
            tracing::info!(
                "service manager watchdog: pinging every {:?} while the loop turns and the \
                 HSDB writer is never stalled for more than {writer_stall:?}",
                p.interval()
            );
            if p.interval() < Duration::from_millis(500) {
                tracing::warn!(
                    "WATCHDOG_USEC below 1 s: the loop wakes at least every 200 ms, \
                     pings may come late"
                );
            }
        }
        Supervisor {
            notifier,
            pacer,
            writer_stall,
            withholding: false,
        }
    }

    /// `READY=1`: the interfaces are open and the monitor is registered.
    pub fn ready(&self, status: &str) {
        if let Err(e) = self.notifier.ready(status) {
            tracing::warn!("cannot tell the service manager READY=1: {e}");
        }
    }

    /// `STOPPING=1`: a graceful stop has begun.
    pub fn stopping(&self) {
        let _ = self.notifier.stopping();
    }

    /// When the next ping is due (time since the monitor's clock started), if any.
    pub fn next_ping(&self) -> Option<Duration> {
        self.pacer.map(|p| p.next_due())
    }

    /// The end of a loop turn at `now` (time since the monitor's clock started): ping
    /// if one is due and the writer is not stalled.
    pub fn turn_completed(&mut self, now: Duration, writer: &WriterStats) {
        let Some(pacer) = &mut self.pacer else {
            return;
        };
        if !pacer.is_due(now) {
            return;
        }
        if let Some(stall) = writer.stalled(self.writer_stall) {
            if !self.withholding {
                tracing::error!(
                    "withholding watchdog pings: {}; the service manager will restart hmd",
                    WriterStalled(stall)
                );
                self.withholding = true;
            }
            return;
        }
        if self.withholding {
            tracing::warn!("HSDB writer is making progress again: watchdog pings resume");
            self.withholding = false;
        }
        match self.notifier.watchdog() {
            Ok(()) => pacer.pinged(now),
            // Try again next turn.
            Err(e) => tracing::debug!("watchdog ping not delivered: {e}"),
        }
    }

    /// The `health` verdict: the loop answered (it is running), so what remains to
    /// check is the writer and the interfaces.
    pub fn health(
        &self,
        writer: &WriterStats,
        link_problems: impl Iterator<Item = String>,
    ) -> Health {
        let mut problems = Vec::new();
        if let Some(stall) = writer.stalled(self.writer_stall) {
            problems.push(WriterStalled(stall).to_string());
        }
        problems.extend(link_problems);
        Health { problems }
    }
}

/// What is wrong with HA interface `name` now, if anything: gone, administratively
/// down, or without carrier (read from the kernel when `health` is asked).
pub fn link_problem(name: &dataplane::io::InterfaceName) -> Option<String> {
    match dataplane::io::Interface::by_name(name) {
        Ok(i) if !i.is_up() => Some(format!("interface {name} is administratively down")),
        Ok(i) if !i.is_running() => Some(format!("interface {name} has no carrier")),
        Ok(_) => None,
        // The error names the interface already ("interface hv9 not found").
        Err(e) => Some(e.to_string()),
    }
}

/// A stalled writer in words.
struct WriterStalled(Stall);

impl fmt::Display for WriterStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HSDB writer stuck: {} transitions waiting, no progress for {:.1} s",
            self.0.owed,
            self.0.silent.as_secs_f64()
        )
    }
}

/// What `hmd health` prints: `healthy`, or `unhealthy: <reason>; <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    problems: Vec<String>,
}

impl Health {
    /// The first word of a healthy answer.
    pub const HEALTHY: &str = "healthy";
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            f.write_str(Health::HEALTHY)
        } else {
            write!(f, "unhealthy: {}", self.problems.join("; "))
        }
    }
}

/// How long `hmd health` waits for an answer: the admin relay gives the dataplane loop
/// 5 s, plus a margin.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(7);

/// `hmd health`: ask the daemon at `socket`; print the verdict. Exit 0 when healthy, 1
/// with the reason when not — including when nothing answers: not running, or the
/// dataplane loop (or the whole process) is stopped or wedged.
pub fn check_health(socket: &std::path::Path) -> std::process::ExitCode {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::process::ExitCode;

    let answer = UnixStream::connect(socket)
        .map_err(|e| {
            format!(
                "cannot connect to {}: {e} (is hmd running?)",
                socket.display()
            )
        })
        .and_then(|mut stream| {
            stream
                .set_read_timeout(Some(HEALTH_TIMEOUT))
                .and_then(|()| stream.set_write_timeout(Some(HEALTH_TIMEOUT)))
                .and_then(|()| stream.write_all(b"health\n"))
                .and_then(|()| {
                    let mut text = String::new();
                    stream.read_to_string(&mut text).map(|_| text)
                })
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                        "no answer from {} within {HEALTH_TIMEOUT:?}: hmd is stopped or wedged",
                        socket.display()
                    ),
                    _ => format!("{}: {e}", socket.display()),
                })
        });
    match answer {
        Ok(text) if text.trim_end() == Health::HEALTHY => {
            println!("{}", Health::HEALTHY);
            ExitCode::SUCCESS
        }
        Ok(text) if text.starts_with("unhealthy") => {
            println!("{}", text.trim_end());
            ExitCode::FAILURE
        }
        // The relay's own words when the dataplane loop does not answer in time.
        Ok(text) => {
            println!(
                "unhealthy: the dataplane loop did not answer ({})",
                text.trim_end().trim_start_matches("error: ")
            );
            ExitCode::FAILURE
        }
        Err(why) => {
            println!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::net::UnixDatagram;

    /// A supervisor notifying a socket of our own, with `WATCHDOG_USEC` = 2 s.
    fn supervised(dir: &std::path::Path) -> (Supervisor, UnixDatagram) {
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        server.set_nonblocking(true).expect("non-blocking");
        let notifier = Notifier::from_vars(
            Some(path.as_os_str()),
            Some(OsStr::new("2000000")),
            None,
            std::process::id(),
        )
        .expect("valid");
        (Supervisor::new(notifier), server)
    }

    fn received(server: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = server.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn pings_at_half_the_timeout_while_the_writer_keeps_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sup, server) = supervised(dir.path());
        let writer = WriterStats::default();
        let s = Duration::from_secs;
        sup.turn_completed(s(0), &writer);
        sup.turn_completed(Duration::from_millis(999), &writer);
        assert_eq!(
            received(&server),
            ["WATCHDOG=1"],
            "one ping, then none before 1 s"
        );
        assert_eq!(sup.next_ping(), Some(s(1)));
        sup.turn_completed(s(1), &writer);
        sup.turn_completed(s(2), &writer);
        assert_eq!(received(&server).len(), 2);
    }

    #[test]
    fn a_stalled_writer_withholds_pings_and_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sup, server) = supervised(dir.path());
        // Owes 5 transitions and has made no progress since its clock started: with a
        // zero limit, a stall once a millisecond has passed.
        let writer = WriterStats::default();
        writer.handed.store(5, std::sync::atomic::Ordering::Relaxed);
        sup.writer_stall = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(5));
        sup.turn_completed(Duration::from_secs(10), &writer);
        assert!(
            received(&server).is_empty(),
            "no ping while the writer is stuck"
        );
        let down = std::iter::once("interface hv1 has no carrier".to_owned());
        let health = sup.health(&writer, down).to_string();
        assert!(
            health.starts_with("unhealthy: HSDB writer stuck: 5 transitions waiting"),
            "{health}"
        );
        assert!(
            health.ends_with("; interface hv1 has no carrier"),
            "{health}"
        );
        // Caught up: pings resume, health is clean.
        writer
            .transitions
            .store(5, std::sync::atomic::Ordering::Relaxed);
        sup.turn_completed(Duration::from_secs(11), &writer);
        assert_eq!(received(&server), ["WATCHDOG=1"]);
        assert_eq!(
            sup.health(&writer, std::iter::empty()).to_string(),
            "healthy"
        );
    }

    #[test]
    fn a_missing_interface_is_named_once() {
        let name: dataplane::io::InterfaceName = "hvnope0".parse().expect("valid name");
        assert_eq!(
            link_problem(&name).as_deref(),
            Some("interface hvnope0 not found")
        );
    }

    #[test]
    fn without_a_watchdog_nothing_is_sent() {
        let mut sup = Supervisor::new(Notifier::disabled());
        assert_eq!(sup.next_ping(), None);
        sup.turn_completed(Duration::from_secs(100), &WriterStats::default());
        assert_eq!(sup.writer_stall, WRITER_STALL_DEFAULT);
    }
}
