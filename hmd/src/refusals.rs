//! Refused SYNs, aggregated per source and interval so that a misbehaving or spoofing
//! sender cannot grow the HSDB or the log without bound.
//!
//! A SYN is refused when its VM UUID is registered with another MAC (HVNCP.md §6) or
//! when the endpoint finds it invalid (properties, version). Each refusal used to write
//! one `SYN_REFUSED` event row and two log lines: a VM resending its SYN every few
//! seconds, or a flood of forged ones, grew both for as long as it lasted.
//!
//! Now, per interval (60 s, opened by the first refusal after a quiet one):
//!
//! - the **first** refusal from a source (interface and MAC) writes one row and one
//!   line at once, as before, so an operator sees it without delay;
//! - **further** refusals from that source are counted; when the interval closes, one
//!   row and one line per source say how many more there were;
//! - at most [`MAX_SOURCES`] sources are followed per interval; refusals from any other
//!   source are only counted, and one row and one line at the close say how many were
//!   not recorded one by one.
//!
//! So an interval writes at most `2 × MAX_SOURCES + 1` rows and as many lines, whatever
//! the number of refused SYNs. Pure and clock-injected: the driver passes the time and
//! turns [`Report`]s into rows and lines.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use dataplane::message::Uuid;
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

/// Length of an aggregation interval.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Sources (interface and MAC) followed one by one per interval.
pub const MAX_SOURCES: usize = 64;

/// Most bytes of a refusal's reason kept.
const MAX_WHY: usize = 200;

/// Where a refused SYN came from: interface number and source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// The interface's index in the monitor's configuration.
    pub iface: u16,
    /// The SYN's source MAC.
    pub mac: MacAddr,
}

/// A row to write and a line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first refusal from this source in the interval.
    First {
        /// Where from.
        source: Source,
        /// The VM the SYN claimed to be, when it parsed.
        vm: Option<Uuid>,
        /// Why it was refused.
        why: String,
    },
    /// More refusals from this source in the interval that just closed.
    Repeated {
        /// Where from.
        source: Source,
        /// The VM of its last refused SYN, when it parsed.
        vm: Option<Uuid>,
        /// Why its last SYN was refused.
        why: String,
        /// Refusals after the first.
        count: u64,
        /// The interval's length.
        interval: Duration,
    },
    /// Refusals from sources past [`MAX_SOURCES`] in the interval that just closed.
    NotRecorded {
        /// How many.
        count: u64,
        /// The interval's length.
        interval: Duration,
    },
}

impl Report {
    /// The VM the row is about, if any.
    pub fn vm(&self) -> Option<Uuid> {
        match self {
            Report::First { vm, .. } | Report::Repeated { vm, .. } => *vm,
            Report::NotRecorded { .. } => None,
        }
    }

    /// The interface the report is about, if one.
    pub fn iface(&self) -> Option<u16> {
        match self {
            Report::First { source, .. } | Report::Repeated { source, .. } => Some(source.iface),
            Report::NotRecorded { .. } => None,
        }
    }

    /// The text of the row and the line, naming the interface as `iface`.
    pub fn text(&self, iface: &str) -> String {
        Text(self, iface).to_string()
    }
}

struct Text<'a>(&'a Report, &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let iface = self.1;
        match self.0 {
            Report::First { source, why, .. } => write!(
                f,
                "{iface}: SYN from {} refused: {why} (further refusals from it are counted for {} s)",
                source.mac,
                INTERVAL.as_secs()
            ),
            Report::Repeated {
                source,
                why,
                count,
                interval,
                ..
            } => write!(
                f,
                "{iface}: {count} more SYNs from {} refused in the last {} s: {why}",
                source.mac,
                interval.as_secs()
            ),
            Report::NotRecorded { count, interval } => write!(
                f,
                "{count} more SYNs refused in the last {} s from sources past the first {MAX_SOURCES}, not recorded one by one",
                interval.as_secs()
            ),
        }
    }
}

#[derive(Debug)]
struct Followed {
    vm: Option<Uuid>,
    why: String,
    /// Refusals after the first.
    more: u64,
}

/// The aggregator. Memory: at most [`MAX_SOURCES`] sources with a short reason each.
#[derive(Debug)]
pub struct Refusals {
    interval: Duration,
    max_sources: usize,
    /// When the open interval closes; `None` while no refusal is being counted.
    closes_at: Option<Instant>,
    sources: HashMap<Source, Followed>,
    not_recorded: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(INTERVAL, MAX_SOURCES)
    }
}

impl Refusals {
    /// An aggregator with this interval and this many sources followed per interval.
    pub fn new(interval: Duration, max_sources: usize) -> Refusals {
        Refusals {
            interval,
            max_sources,
            closes_at: None,
            sources: HashMap::with_capacity(max_sources),
            not_recorded: 0,
        }
    }

    /// A SYN from `source` was refused at `now`. Returns the report to write and log at
    /// once (the first from this source in the interval), or `None` when it is only
    /// counted. Closes a due interval first (its reports go to `out`).
    pub fn refused(
        &mut self,
        now: Instant,
        source: Source,
        vm: Option<Uuid>,
        why: &str,
        out: &mut Vec<Report>,
    ) -> Option<Report> {
        self.close_if_due(now, out);
        if self.closes_at.is_none() {
            self.closes_at = Some(now + self.interval);
        }
        if let Some(f) = self.sources.get_mut(&source) {
            f.more += 1;
            f.vm = vm;
            if f.why != why {
                f.why = short(why);
            }
            return None;
        }
        if self.sources.len() >= self.max_sources {
            self.not_recorded += 1;
            return None;
        }
        let why = short(why);
        self.sources.insert(
            source,
            Followed {
                vm,
                why: why.clone(),
                more: 0,
            },
        );
        Some(Report::First { source, vm, why })
    }

    /// When [`Refusals::close_if_due`] must next run, if an interval is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.closes_at
    }

    /// Close the open interval if it is due at `now`: one report per source with more
    /// refusals than its first, and one for the refusals not recorded one by one.
    pub fn close_if_due(&mut self, now: Instant, out: &mut Vec<Report>) {
        let Some(at) = self.closes_at else {
            return;
        };
        if now < at {
            return;
        }
        let interval = self.interval;
        let mut repeated: Vec<Report> = self
            .sources
            .drain()
            .filter(|(_, f)| f.more > 0)
            .map(|(source, f)| Report::Repeated {
                source,
                vm: f.vm,
                why: f.why,
                count: f.more,
                interval,
            })
            .collect();
        // Deterministic order for the log: by interface, then MAC.
        repeated.sort_by_key(|r| match r {
            Report::Repeated { source, .. } => (source.iface, source.mac.to_u64()),
            _ => (u16::MAX, u64::MAX),
        });
        out.extend(repeated);
        if self.not_recorded > 0 {
            out.push(Report::NotRecorded {
                count: self.not_recorded,
                interval,
            });
            self.not_recorded = 0;
        }
        self.closes_at = None;
    }
}

/// At most [`MAX_WHY`] bytes of a reason, cut at a character boundary.
fn short(why: &str) -> String {
    let mut end = why.len().min(MAX_WHY);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(i: u64) -> Source {
        Source {
            iface: 0,
            mac: MacAddr::from_u64(0x0aff_0000_0000 + i),
        }
    }

    fn vm() -> Option<Uuid> {
        Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").ok()
    }

    const WHY: &str =
        "VM 61be20f0-09a8-4753-b5e5-564f8a545ed5 is registered with MAC 6a:6a:00:00:00:01";

    #[test]
    fn first_refusal_reported_at_once_the_others_counted_until_the_interval_closes() {
        let t0 = Instant::from_millis(1);
        let mut r = Refusals::default();
        let mut out = Vec::new();
        let first = r.refused(t0, src(1), vm(), WHY, &mut out).expect("first");
        assert_eq!(
            first,
            Report::First {
                source: src(1),
                vm: vm(),
                why: WHY.into()
            }
        );
        let line = first.text("ha0");
        assert!(
            line.contains("ha0") && line.contains(&src(1).mac.to_string()) && line.contains(WHY),
            "{line}"
        );
        for s in 1..=59u64 {
            assert_eq!(
                r.refused(t0 + Duration::from_secs(s), src(1), vm(), WHY, &mut out),
                None
            );
        }
        assert!(out.is_empty());
        assert_eq!(r.next_deadline(), Some(t0 + INTERVAL));
        r.close_if_due(t0 + Duration::from_millis(59_999), &mut out);
        assert!(out.is_empty(), "not before the interval's end");
        r.close_if_due(t0 + INTERVAL, &mut out);
        assert_eq!(
            out,
            vec![Report::Repeated {
                source: src(1),
                vm: vm(),
                why: WHY.into(),
                count: 59,
                interval: INTERVAL
            }]
        );
        assert!(
            out[0].text("ha0").contains("59 more SYNs"),
            "{}",
            out[0].text("ha0")
        );
        assert_eq!(r.next_deadline(), None, "quiet until the next refusal");
        // A new interval: the source is reported at once again.
        out.clear();
        assert!(
            r.refused(t0 + INTERVAL * 3, src(1), vm(), WHY, &mut out)
                .is_some()
        );
    }

    #[test]
    fn a_single_refusal_writes_one_row_only() {
        let t0 = Instant::from_millis(1);
        let mut r = Refusals::default();
        let mut out = Vec::new();
        assert!(r.refused(t0, src(1), vm(), WHY, &mut out).is_some());
        r.close_if_due(t0 + INTERVAL, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn sources_past_the_cap_are_counted_together() {
        let t0 = Instant::from_millis(1);
        let mut r = Refusals::new(INTERVAL, 4);
        let mut out = Vec::new();
        let firsts = (0..10u64)
            .filter_map(|i| r.refused(t0, src(i), None, "bad SYN", &mut out))
            .count();
        assert_eq!(firsts, 4);
        // Sources 0..4 again (counted as theirs), 4..10 again (not recorded).
        for i in 0..10u64 {
            assert_eq!(r.refused(t0, src(i), None, "bad SYN", &mut out), None);
        }
        r.close_if_due(t0 + INTERVAL, &mut out);
        assert_eq!(out.len(), 5, "{out:?}");
        for (i, report) in out[..4].iter().enumerate() {
            assert!(
                matches!(report, Report::Repeated { source, count: 1, .. } if *source == src(i as u64)),
                "{report:?}"
            );
        }
        assert_eq!(
            out[4],
            Report::NotRecorded {
                count: 12,
                interval: INTERVAL
            }
        );
        assert_eq!(out[4].vm(), None);
        assert!(out[4].text("-").starts_with("12 more SYNs refused"));
    }

    #[test]
    fn a_long_spoofing_flood_writes_a_bounded_number_of_rows() {
        // One hour of refused SYNs: 1,000 forged sources cycling, 100 SYNs per second
        // (360,000 refusals), each report a row and a line.
        let t0 = Instant::from_millis(1);
        let mut r = Refusals::default();
        let mut rows = 0u64;
        let mut refusals = 0u64;
        let mut out = Vec::new();
        let mut counted = 0u64;
        for ms in (0..3_600_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            r.close_if_due(now, &mut out);
            if r.refused(now, src(ms / 10 % 1000), vm(), WHY, &mut out)
                .is_some()
            {
                rows += 1;
                counted += 1;
            }
            refusals += 1;
        }
        r.close_if_due(t0 + Duration::from_secs(3700), &mut out);
        rows += out.len() as u64;
        for report in &out {
            counted += match report {
                Report::Repeated { count, .. } | Report::NotRecorded { count, .. } => *count,
                Report::First { .. } => 0,
            };
        }
        let intervals = 3600 / INTERVAL.as_secs() + 1;
        let bound = intervals * (2 * MAX_SOURCES as u64 + 1);
        assert_eq!(counted, refusals, "every refusal counted in some row");
        assert!(
            rows <= bound,
            "{rows} rows for {refusals} refusals (bound {bound})"
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let t0 = Instant::from_millis(1);
        let mut r = Refusals::default();
        let why = "é".repeat(300);
        let Some(Report::First { why: kept, .. }) =
            r.refused(t0, src(1), None, &why, &mut Vec::new())
        else {
            panic!("first");
        };
        assert!(kept.len() <= MAX_WHY);
        assert!(why.starts_with(&kept));
    }
}
