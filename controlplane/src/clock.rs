//! The clock every time-based decision of the control plane reads (DESIGN.md §2: injectable
//! clock everywhere that decides on time).
//!
//! Times are integer milliseconds since the Unix epoch, as in the HSDB. The daemon uses
//! [`SystemClock`]; tests and the simulation use [`ManualClock`], which only moves when
//! told to, so a simulated hour takes microseconds and any run replays exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now", in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970: report the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that moves only when told to; cheap to clone (clones share the time).
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// Move forward by `ms` (negative values are ignored: time never goes back).
    pub fn advance(&self, ms: i64) {
        if ms > 0 {
            self.now.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Move to `at_ms` if it is later than now.
    pub fn advance_to(&self, at_ms: i64) {
        self.now.fetch_max(at_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_manual_clock_moves_only_forward_and_clones_share_it() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        clock.advance(500);
        assert_eq!(other.now_ms(), 1_500);
        clock.advance(-100);
        clock.advance_to(1_200);
        assert_eq!(clock.now_ms(), 1_500);
        other.advance_to(9_000);
        assert_eq!(clock.now_ms(), 9_000);
    }

    #[test]
    fn test_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
