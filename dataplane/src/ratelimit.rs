//! A rate limit for a repeated log line, on the caller's clock.
//!
//! A flood (refused SYNs from thousands of forged MACs, handshakes failing one after
//! another) must not turn into one log line per frame. [`RateLimiter`] lets the first
//! `burst` occurrences of each `window` through and counts the rest; the next line that
//! gets through reports how many were suppressed before it, and
//! [`RateLimiter::take_suppressed`] reports the count of a window that ended in
//! silence, so nothing is hidden without a number. Pure and allocation-free: time is a
//! parameter, like everywhere in this crate.

use std::time::Duration;

use crate::time::Instant;

/// At most `burst` lines per `window`; the others counted.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    burst: u32,
    window: Duration,
    /// Start of the current window; `None` before the first occurrence.
    started: Option<Instant>,
    /// Lines let through in the current window.
    used: u32,
    /// Occurrences suppressed and not reported yet.
    suppressed: u64,
    /// Every occurrence suppressed so far.
    suppressed_total: u64,
}

impl RateLimiter {
    /// `burst` lines per `window` (`burst` 0 suppresses everything, counted).
    pub const fn new(burst: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            burst,
            window,
            started: None,
            used: 0,
            suppressed: 0,
            suppressed_total: 0,
        }
    }

    /// One occurrence at `now`. `Some(n)`: log it, and say that `n` similar lines were
    /// suppressed before it; `None`: suppressed (counted).
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        if self.window_over(now) {
            self.started = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            self.suppressed_total += 1;
            None
        }
    }

    /// Once the window in which lines were suppressed is over: their count (then
    /// reset), for one "N more suppressed" line. `None` while the window lasts or when
    /// nothing is pending. Cheap enough to call on every turn of a loop.
    pub fn take_suppressed(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed == 0 || !self.window_over(now) {
            return None;
        }
        self.started = None;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Occurrences suppressed since this limiter was made (reported or not).
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    fn window_over(&self, now: Instant) -> bool {
        self.started
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn lets_a_burst_through_then_counts() {
        let mut r = RateLimiter::new(3, Duration::from_secs(10));
        assert_eq!(r.check(ms(0)), Some(0));
        assert_eq!(r.check(ms(1)), Some(0));
        assert_eq!(r.check(ms(2)), Some(0));
        for t in 3..1003 {
            assert_eq!(r.check(ms(t)), None, "beyond the burst at {t} ms");
        }
        assert_eq!(r.take_suppressed(ms(9_999)), None, "the window is not over");
        // The first line of the next window carries the count.
        assert_eq!(r.check(ms(10_000)), Some(1000));
        assert_eq!(r.check(ms(10_001)), Some(0));
        assert_eq!(r.suppressed_total(), 1000);
    }

    #[test]
    fn a_window_ending_in_silence_reports_its_count_once() {
        let mut r = RateLimiter::new(1, Duration::from_secs(1));
        assert_eq!(r.check(ms(0)), Some(0));
        assert_eq!(r.check(ms(500)), None);
        assert_eq!(r.check(ms(600)), None);
        assert_eq!(r.take_suppressed(ms(999)), None);
        assert_eq!(r.take_suppressed(ms(1000)), Some(2));
        assert_eq!(r.take_suppressed(ms(5000)), None, "reported once");
        // A new occurrence after the report starts a fresh window with nothing pending.
        assert_eq!(r.check(ms(5001)), Some(0));
        assert_eq!(r.suppressed_total(), 2);
    }

    #[test]
    fn a_flood_costs_at_most_two_lines_per_window() {
        let window = Duration::from_secs(10);
        let mut r = RateLimiter::new(1, window);
        // Lines let through, "N suppressed" lines, and the N they report.
        let (mut passed, mut reports, mut reported) = (0u64, 0u64, 0u64);
        // 1,000,000 occurrences, one every 50 µs: 50 s of virtual time, 5 windows.
        for i in 0..1_000_000u64 {
            let now = Instant::from_nanos(i * 50_000);
            if let Some(n) = r.check(now) {
                passed += 1;
                reported += n;
            }
            if let Some(n) = r.take_suppressed(now) {
                reports += 1;
                reported += n;
            }
        }
        if let Some(n) = r.take_suppressed(Instant::from_nanos(1_000_000 * 50_000) + window) {
            reports += 1;
            reported += n;
        }
        assert_eq!(passed, 5, "one line through per window");
        // Each new window's first line carries the previous window's count; only the
        // last window ends in silence and needs a line of its own.
        assert_eq!(reports, 1);
        assert_eq!(
            passed + reported,
            1_000_000,
            "every occurrence accounted for"
        );
        assert_eq!(r.suppressed_total(), reported);
    }

    #[test]
    fn zero_burst_suppresses_everything() {
        let mut r = RateLimiter::new(0, Duration::from_secs(1));
        assert_eq!(r.check(ms(0)), None);
        assert_eq!(r.take_suppressed(ms(1000)), Some(1));
    }
}
