//! Which host monitors are still heard: inside a VM, the only sign that a monitor went
//! away (`kill -9`, a crash, a cut link) is that its Hellos stop. Heartbeats are not
//! acknowledged, so nothing else would say so.
//!
//! Each monitor (interface and MAC) is tracked from its Hellos. Its Hello period is
//! not announced: it is taken as the last interval between two of its Hellos, and as
//! the seed's default period (30 s, seed 004 L8313) until two were heard. A monitor
//! silent for [`SILENT_PERIODS`] periods is reported once as gone; its next Hello
//! reports it once as back, with how long it was silent.

use std::collections::HashMap;
use std::time::Duration;

use dataplane::io::InterfaceName;
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

/// Hello periods without a Hello after which a monitor is reported gone.
pub const SILENT_PERIODS: u32 = 3;
/// The Hello period assumed until two Hellos were heard (seed 004 L8313).
pub const DEFAULT_HELLO_PERIOD: Duration = Duration::from_secs(30);
/// Shortest and longest Hello period taken from the intervals (`hmd`'s range).
const PERIOD_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));

#[derive(Debug, Clone, Copy)]
struct Track {
    last: Instant,
    period: Option<Duration>,
    /// Reported gone and not heard since.
    gone: bool,
}

impl Track {
    fn period(&self) -> Duration {
        self.period.unwrap_or(DEFAULT_HELLO_PERIOD)
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
                self.monitors.insert(
                    (iface, monitor),
                    Track {
                        last: now,
                        period: None,
                        gone: false,
                    },
                );
                None
            }
            Some(track) => {
                let interval = now.saturating_duration_since(track.last);
                track.last = now;
                if track.gone {
                    // The interval spans the silence, not a period: keep the old one.
                    track.gone = false;
                    return Some(Heard::Back {
                        iface,
                        monitor,
                        silent: interval,
                    });
                }
                if interval >= PERIOD_RANGE.0 {
                    track.period = Some(interval.min(PERIOD_RANGE.1));
                }
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
        // The silence did not become the period.
        assert_eq!(w.next_deadline(), Some(at(11_500)));
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
