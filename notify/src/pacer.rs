//! When the next `WATCHDOG=1` is due.

use std::time::Duration;

/// The watchdog's ping schedule: one ping every half of the service manager's timeout.
///
/// Time is a `Duration` since any fixed origin the caller chooses (its monotonic clock's
/// start), so the schedule is tested without sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogPacer {
    every: Duration,
    next: Duration,
}

impl WatchdogPacer {
    /// A schedule for a service manager that kills after `timeout` without a ping. The
    /// first ping is due at once.
    pub fn new(timeout: Duration) -> WatchdogPacer {
        WatchdogPacer {
            every: timeout / 2,
            next: Duration::ZERO,
        }
    }

    /// Time between pings: half the timeout.
    pub fn interval(&self) -> Duration {
        self.every
    }

    /// True when a ping is due at `now`.
    pub fn is_due(&self, now: Duration) -> bool {
        now >= self.next
    }

    /// When the next ping is due.
    pub fn next_due(&self) -> Duration {
        self.next
    }

    /// A ping was sent at `now`: the next is due one interval later.
    pub fn pinged(&mut self, now: Duration) {
        self.next = now.saturating_add(self.every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pings_every_half_timeout() {
        let mut p = WatchdogPacer::new(2000 * MS);
        assert_eq!(p.interval(), 1000 * MS);
        assert!(p.is_due(Duration::ZERO), "the first ping is due at once");
        p.pinged(10 * MS);
        assert_eq!(p.next_due(), 1010 * MS);
        assert!(!p.is_due(500 * MS));
        assert!(!p.is_due(1009 * MS));
        assert!(p.is_due(1010 * MS));
        // A late ping (a slow turn) schedules the next from when it was sent.
        p.pinged(1300 * MS);
        assert!(!p.is_due(2299 * MS));
        assert!(p.is_due(2300 * MS));
    }

    #[test]
    fn saturates_far_in_the_future() {
        let mut p = WatchdogPacer::new(Duration::MAX);
        p.pinged(Duration::MAX - MS);
        assert_eq!(p.next_due(), Duration::MAX);
    }
}
