//! Failed handshakes, logged so that one is always seen and a flood of them is not
//! (docs/hvncp.md §3.2).
//!
//! A VM whose handshake fails is not monitored at all, so the failure must reach the
//! log, with the peer's MAC and the reason. Forged source MACs fail handshakes by the
//! thousand, so per interface the first failure of an interval is logged at once and
//! the others of the same interval are counted into one line when the interval ends.
//! Every failure is also counted (`handshakes_failed`).

use std::time::Duration;

use dataplane::session::CloseReason;
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

/// The failures of one interface.
#[derive(Debug)]
pub struct HandshakeLog {
    interval: Duration,
    /// End of the interval opened by the last failure logged at once.
    until: Option<Instant>,
    /// Failures since then, not logged yet, and the last of them.
    held: u64,
    last: Option<(MacAddr, CloseReason)>,
}

/// Failures not logged one by one during an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// How many.
    pub count: u64,
    /// The last one's peer.
    pub mac: MacAddr,
    /// The last one's reason.
    pub reason: CloseReason,
}

impl HandshakeLog {
    /// At most one failure logged at once per `interval`.
    pub fn new(interval: Duration) -> HandshakeLog {
        HandshakeLog {
            interval,
            until: None,
            held: 0,
            last: None,
        }
    }

    /// A handshake with `mac` failed: true when this one is to be logged now.
    pub fn failed(&mut self, now: Instant, mac: MacAddr, reason: CloseReason) -> bool {
        if self.until.is_some_and(|until| now < until) {
            self.held += 1;
            self.last = Some((mac, reason));
            return false;
        }
        self.until = Some(now.saturating_add(self.interval));
        true
    }

    /// When the interval is over: the failures held back during it, if any, for one
    /// line. Call every turn.
    pub fn poll(&mut self, now: Instant) -> Option<Held> {
        let until = self.until?;
        if now < until {
            return None;
        }
        self.until = None;
        let (mac, reason) = self.last.take()?;
        let count = std::mem::take(&mut self.held);
        Some(Held { count, mac, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const WHY: CloseReason = CloseReason::SynUnacknowledged {
        number: 9,
        retries: 5,
    };

    #[test]
    fn the_first_is_logged_the_rest_counted_into_one_line() {
        let minute = Duration::from_secs(60);
        let mut log = HandshakeLog::new(minute);
        let t0 = Instant::from_millis(1000);
        assert!(log.failed(t0, A, WHY), "the first at once");
        assert_eq!(log.poll(t0), None);
        for k in 1..=1000u64 {
            let t = t0.saturating_add(Duration::from_millis(k));
            assert!(!log.failed(t, B, CloseReason::HandshakeTimeout));
        }
        assert_eq!(log.poll(t0.saturating_add(Duration::from_secs(59))), None);
        let end = t0.saturating_add(minute);
        assert_eq!(
            log.poll(end),
            Some(Held {
                count: 1000,
                mac: B,
                reason: CloseReason::HandshakeTimeout
            })
        );
        assert_eq!(log.poll(end), None, "once");
        // A quiet interval: nothing to report; the next failure is logged at once.
        let mut log = HandshakeLog::new(minute);
        assert!(log.failed(t0, A, WHY));
        assert_eq!(log.poll(end), None);
        assert!(log.failed(end, A, WHY));
    }
}
