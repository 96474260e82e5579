//! Which host monitors are still heard: inside a VM, the only sign that a monitor went
//! away (`kill -9`, a crash, a cut link) is that its Hellos stop. Heartbeats are not
//! acknowledged, so nothing else would say so.
//!
//! Each monitor (interface and MAC) is tracked from its Hellos. Its Hello period is
//! not announced: it is taken as the longest of the last [`INTERVALS`] intervals between
//! two of its Hellos once two intervals were seen, and as the seed's default period
//! (30 s, seed 004 L8313) before. The longest, not the last: a monitor's first
//! interval is often short (its first Hello goes when its loop starts, the next on its
//! fixed schedule), and a period judged too short would report a live monitor gone. A
//! monitor silent for [`SILENT_PERIODS`] periods is reported once as gone; its next
//! Hello reports it once as back, with how long it was silent, and its period is learnt
//! again from the Hellos that follow.

use std::collections::HashMap;
use std::time::Duration;

use dataplane::io::InterfaceName;
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

/// Hello periods without a Hello after which a monitor is reported gone.
pub const SILENT_PERIODS: u32 = 3;
/// The Hello period assumed until two Hellos were heard (seed 004 L8313).
pub const DEFAULT_HELLO_PERIOD: Duration = Duration::from_secs(30);
/// Intervals between Hellos remembered per monitor.
pub const INTERVALS: usize = 3;
/// Shortest and longest Hello period taken from the intervals (`hmd`'s range).
const PERIOD_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));

#[derive(Debug, Clone, Copy)]
struct Track {
    last: Instant,
    /// The last intervals between two Hellos, newest at `next - 1` (a ring).
    intervals: [Option<Duration>; INTERVALS],
    next: usize,
    /// Reported gone and not heard since.
    gone: bool,
}

impl Track {
    fn new(now: Instant) -> Track {
        Track {
            last: now,
            intervals: [None; INTERVALS],
            next: 0,
            gone: false,
        }
    }
    fn period(&self) -> Duration {
        let seen = self.intervals.iter().flatten();
        if seen.clone().count() < 2 {
            return DEFAULT_HELLO_PERIOD;
        }
        seen.copied().max().unwrap_or(DEFAULT_HELLO_PERIOD)
    }
    fn deadline(&self) -> Instant {
        self.last + self.period() * SILENT_PERIODS
    }
}

/// A change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// No Hello for [`SILENT_PERIODS`] periods.
    Gone {
        /// The interface it was heard on.
        iface: InterfaceName,
        /// The monitor's MAC.
        monitor: MacAddr,
        /// Since its last Hello.
        silent: Duration,
        /// The Hello period it was judged by.
        period: Duration,
    },
    /// A Hello again after being reported gone.
    Back {
        /// The interface.
        iface: InterfaceName,
        /// The monitor's MAC.
        monitor: MacAddr,
        /// How long it had been silent.
        silent: Duration,
    },
}

/// Every monitor heard, per interface and MAC.
#[derive(Debug, Default)]
pub struct HelloWatch {
    monitors: HashMap<(InterfaceName, MacAddr), Track>,
}

impl HelloWatch {
    /// A Hello from `monitor` on `iface` at `now`: [`Heard::Back`] if it had been
    /// reported gone.
    pub fn hello(&mut self, now: Instant, iface: InterfaceName, monitor: MacAddr) -> Option<Heard> {
        match self.monitors.get_mut(&(iface, monitor)) {
            None => {
                self.monitors.insert((iface, monitor), Track::new(now));
                None
            }
            Some(track) => {
                let interval = now.saturating_duration_since(track.last);
                if track.gone {
                    // The interval spans the silence, not a period: learn it again.
                    *track = Track::new(now);
                    return Some(Heard::Back {
                        iface,
                        monitor,
                        silent: interval,
                    });
                }
                track.last = now;
                track.intervals[track.next] = Some(interval.clamp(PERIOD_RANGE.0, PERIOD_RANGE.1));
                track.next = (track.next + 1) % INTERVALS;
                None
            }
        }
    }

    /// Report, once each, the monitors silent for [`SILENT_PERIODS`] periods at `now`.
    pub fn check(&mut self, now: Instant, out: &mut Vec<Heard>) {
        for ((iface, monitor), track) in &mut self.monitors {
            if !track.gone && now >= track.deadline() {
                track.gone = true;
                out.push(Heard::Gone {
                    iface: *iface,
                    monitor: *monitor,
                    silent: now.saturating_duration_since(track.last),
                    period: track.period(),
                });
            }
        }
    }

    /// When [`HelloWatch::check`] must next run, if a monitor is still heard.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.monitors
            .values()
            .filter(|t| !t.gone)
            .map(Track::deadline)
            .min()
    }

    /// Forget the monitors of an interface that is no longer used.
    pub fn forget_interface(&mut self, iface: InterfaceName) {
        self.monitors.retain(|(i, _), _| *i != iface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MON: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn eth1() -> InterfaceName {
        InterfaceName::new("eth1").expect("name")
    }

    fn gone_at(w: &mut HelloWatch, ms: u64) -> Vec<Heard> {
        let mut out = Vec::new();
        w.check(at(ms), &mut out);
        out
    }

    #[test]
    fn silence_of_three_observed_periods_is_reported_once_and_the_return_once() {
        let mut w = HelloWatch::default();
        for t in [0, 500, 1000] {
            assert_eq!(w.hello(at(t), eth1(), MON), None);
        }
        assert_eq!(w.next_deadline(), Some(at(2500)));
        assert!(gone_at(&mut w, 2499).is_empty());
        assert_eq!(
            gone_at(&mut w, 2500),
            [Heard::Gone {
                iface: eth1(),
                monitor: MON,
                silent: Duration::from_millis(1500),
                period: Duration::from_millis(500),
            }]
        );
        assert!(gone_at(&mut w, 9000).is_empty(), "reported once");
        assert_eq!(w.next_deadline(), None);
        assert_eq!(
            w.hello(at(10_000), eth1(), MON),
            Some(Heard::Back {
                iface: eth1(),
                monitor: MON,
                silent: Duration::from_millis(9000),
            })
        );
        // The silence did not become the period: it is learnt again.
        assert_eq!(w.next_deadline(), Some(at(100_000)));
        w.hello(at(10_500), eth1(), MON);
        w.hello(at(11_000), eth1(), MON);
        assert_eq!(w.next_deadline(), Some(at(12_500)));
    }

    #[test]
    fn a_short_first_interval_does_not_report_a_live_monitor_gone() {
        // The monitor's first Hello goes when its loop starts, 141 ms before the next
        // one on its 500 ms schedule.
        let mut w = HelloWatch::default();
        let mut t = 0;
        w.hello(at(t), eth1(), MON);
        t += 141;
        w.hello(at(t), eth1(), MON);
        for _ in 0..20 {
            t += 500;
            assert!(gone_at(&mut w, t - 1).is_empty(), "reported gone at {t}");
            assert_eq!(w.hello(at(t), eth1(), MON), None);
        }
        assert_eq!(w.next_deadline(), Some(at(t + 1500)));
    }

    #[test]
    fn one_hello_waits_three_default_periods() {
        let mut w = HelloWatch::default();
        w.hello(at(0), eth1(), MON);
        assert!(gone_at(&mut w, 89_999).is_empty());
        assert_eq!(gone_at(&mut w, 90_000).len(), 1);
    }

    #[test]
    fn a_forgotten_interface_reports_nothing() {
        let mut w = HelloWatch::default();
        w.hello(at(0), eth1(), MON);
        w.forget_interface(eth1());
        assert!(gone_at(&mut w, 1_000_000).is_empty());
        assert_eq!(w.next_deadline(), None);
    }
}
