//! The protocol's notion of time: a monotonic instant supplied by the caller.
//!
//! The engine never reads a clock. Drivers read [`MonotonicClock`] (the system's
//! monotonic clock, counted from the driver's start); tests pass a virtual clock and run
//! simulated hours in milliseconds.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time, in nanoseconds since an arbitrary epoch chosen by the caller.
///
/// Eight bytes (half of `std::time::Instant`), which matters in a table of 100,000
/// sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch of the caller's clock.
    pub const ZERO: Instant = Instant(0);
    /// A time later than any other; used as "never".
    pub const FAR_FUTURE: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::FAR_FUTURE`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

/// The system's monotonic clock as the engine counts time: [`Instant::ZERO`] when the
/// clock was created, then nanoseconds since. The one adapter from
/// [`std::time::Instant`] that every driver (`hmd`, `vmmd`, the load generator) uses.
///
/// It also anchors the wall clock once, at creation, for timestamps that leave the
/// process (the HSDB's milliseconds since the Unix epoch): a later step of the wall
/// clock (NTP, an operator) does not make monotonic intervals jump.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: std::time::Instant,
    unix_ms_at_start: u64,
}

impl MonotonicClock {
    /// A clock reading [`Instant::ZERO`] now.
    pub fn new() -> MonotonicClock {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        MonotonicClock {
            start: std::time::Instant::now(),
            unix_ms_at_start: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Now (saturating at [`Instant::FAR_FUTURE`] after 584 years).
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// The engine's instant of a system instant (`Instant::ZERO` if before the start).
    pub fn at(&self, t: std::time::Instant) -> Instant {
        let elapsed = t.saturating_duration_since(self.start);
        Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time from now until `t`, zero if `t` has passed.
    pub fn until(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.now())
    }

    /// Milliseconds since the Unix epoch at `t`: the wall clock read at creation plus the
    /// monotonic time since.
    pub fn unix_ms(&self, t: Instant) -> u64 {
        self.unix_ms_at_start.saturating_add(t.as_millis())
    }
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_millis(2), Instant::from_millis(7));
        assert_eq!(
            Instant::FAR_FUTURE + Duration::from_secs(1),
            Instant::FAR_FUTURE
        );
        assert_eq!(
            Instant::from_millis(1).saturating_duration_since(Instant::from_millis(3)),
            Duration::ZERO
        );
        assert_eq!(Instant::from_millis(3).as_millis(), 3);
    }

    #[test]
    fn monotonic_clock_starts_at_zero_and_advances() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now();
        assert!(a < Instant::from_millis(1000));
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
        assert_eq!(clock.until(a), Duration::ZERO);
        assert!(clock.until(b + Duration::from_secs(60)) > Duration::from_secs(59));
        // The start reads as zero, and so does anything before it.
        assert_eq!(clock.at(clock.start), Instant::ZERO);
        if let Some(earlier) = clock.start.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.at(earlier), Instant::ZERO);
        }
    }

    #[test]
    fn unix_ms_is_the_anchor_plus_monotonic_time() {
        let clock = MonotonicClock::new();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let t0 = clock.unix_ms(Instant::ZERO);
        // The anchor is the wall clock at creation (within the test's own run time).
        assert!(t0.abs_diff(wall) < 60_000, "{t0} vs {wall}");
        assert_eq!(clock.unix_ms(Instant::from_millis(1500)), t0 + 1500);
    }
}
