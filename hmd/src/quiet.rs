//! Quiet logs at scale: VM state changes summarised per burst, repeated warnings
//! rate-limited (docs/operations.md, "Logs").
//!
//! When 10,000 VMs go MISSING at once, one line per VM says nothing an operator can
//! read and costs the dataplane thread time it needs. [`TransitionLog`] groups changes
//! into bursts: a burst starts with a change after a quiet second and lasts until one
//! second passes without a change (or 10 s have passed: a long storm gets a line every
//! 10 s). The first [`LOUD`] changes of a burst are logged one by one at info, as they
//! happen, so a single VM's failure is reported at once; the others go to debug, and
//! when the burst ends one info line sums it up: changes per state and interface, and
//! the first few VMs. A burst of 10,000 misses is therefore at most `LOUD + 1` info
//! lines.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use dataplane::message::Uuid;
use dataplane::ratelimit::RateLimiter;
use dataplane::time::Instant;

/// Changes of a burst logged one by one at info.
pub const LOUD: u64 = 3;

/// A burst ends after this long without a change.
const QUIET_GAP: Duration = Duration::from_secs(1);

/// A burst is summed up at least this often while it lasts.
const MAX_BURST: Duration = Duration::from_secs(10);

/// VMs named in a summary.
const FIRST_NAMED: usize = 5;

/// The state changes of one burst.
#[derive(Debug, Clone)]
struct Burst {
    started: Instant,
    last: Instant,
    total: u64,
    /// (state, interface index) → changes.
    counts: BTreeMap<(&'static str, u16), u64>,
    first: Vec<(Uuid, &'static str, u16)>,
}

/// Groups VM state changes into bursts and decides which are logged at info.
#[derive(Debug)]
pub struct TransitionLog {
    interfaces: Vec<String>,
    burst: Option<Burst>,
}

/// What a finished burst sums up to; `Display` is the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Changes in the burst.
    pub total: u64,
    /// Of which logged one by one at info.
    pub loud: u64,
    /// From the first change to the last.
    pub lasted: Duration,
    /// (state, interface name, changes), by state then interface.
    pub counts: Vec<(&'static str, String, u64)>,
    /// The first VMs of the burst: (VM, state, interface name).
    pub first: Vec<(Uuid, &'static str, String)>,
}

impl TransitionLog {
    /// For a monitor whose interface number `i` is `interfaces[i]`.
    pub fn new(interfaces: Vec<String>) -> TransitionLog {
        TransitionLog {
            interfaces,
            burst: None,
        }
    }

    /// A change at `now`: `true` when it is to be logged at info (one of the first
    /// [`LOUD`] of its burst), `false` for debug. Call [`poll`](Self::poll) first, so
    /// that a change after a quiet gap starts a new burst.
    pub fn record(&mut self, now: Instant, vm: Uuid, state: &'static str, iface: u16) -> bool {
        let burst = self.burst.get_or_insert_with(|| Burst {
            started: now,
            last: now,
            total: 0,
            counts: BTreeMap::new(),
            first: Vec::new(),
        });
        burst.last = now;
        burst.total += 1;
        *burst.counts.entry((state, iface)).or_insert(0) += 1;
        if burst.first.len() < FIRST_NAMED {
            burst.first.push((vm, state, iface));
        }
        burst.total <= LOUD
    }

    /// The summary of the burst that is over at `now` (a quiet second, or 10 s of
    /// storm), if it had more changes than were logged one by one. Call every turn.
    pub fn poll(&mut self, now: Instant) -> Option<Summary> {
        let burst = self.burst.as_ref()?;
        let quiet = now.saturating_duration_since(burst.last) >= QUIET_GAP;
        let long = now.saturating_duration_since(burst.started) >= MAX_BURST;
        if quiet || long { self.finish() } else { None }
    }

    /// End the current burst now (at shutdown): its summary, as for [`poll`](Self::poll).
    pub fn finish(&mut self) -> Option<Summary> {
        let burst = self.burst.take()?;
        if burst.total <= LOUD {
            return None;
        }
        let name = |i: u16| {
            self.interfaces
                .get(usize::from(i))
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        };
        Some(Summary {
            total: burst.total,
            loud: LOUD,
            lasted: burst.last.saturating_duration_since(burst.started),
            counts: burst
                .counts
                .iter()
                .map(|(&(state, i), &n)| (state, name(i), n))
                .collect(),
            first: burst
                .first
                .iter()
                .map(|&(vm, state, i)| (vm, state, name(i)))
                .collect(),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} VM state changes in {:.1} s (the first {} logged above, all at debug):",
            self.total,
            self.lasted.as_secs_f64(),
            self.loud
        )?;
        let mut last_state = "";
        for (state, iface, n) in &self.counts {
            if *state == last_state {
                write!(f, ", {iface} {n}")?;
            } else {
                let sum: u64 = self
                    .counts
                    .iter()
                    .filter(|(s, _, _)| s == state)
                    .map(|(_, _, n)| n)
                    .sum();
                let sep = if last_state.is_empty() { " " } else { "); " };
                write!(f, "{sep}{state} {sum} ({iface} {n}")?;
                last_state = state;
            }
        }
        if !last_state.is_empty() {
            f.write_str(")")?;
        }
        f.write_str("; first:")?;
        for (i, (vm, state, iface)) in self.first.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{vm} {state} on {iface}")?;
        }
        Ok(())
    }
}

/// The warnings a flood repeats, each rate-limited: a few lines per 10 s, then one line
/// with the count of what was suppressed. (Refused SYNs have their own aggregation per
/// source, `refusals`.)
#[derive(Debug)]
pub struct Warnings {
    /// A session that closed.
    pub session_closed: RateLimiter,
    /// A session that failed its handshake (docs/hvncp.md §3.2): a VM not monitored.
    pub handshake_failed: RateLimiter,
    /// A send that failed.
    pub send_failed: RateLimiter,
}

/// Window of the warning limits.
const WARN_WINDOW: Duration = Duration::from_secs(10);

/// Lines let through per window.
const WARN_BURST: u32 = 5;

impl Default for Warnings {
    fn default() -> Warnings {
        let limit = RateLimiter::new(WARN_BURST, WARN_WINDOW);
        Warnings {
            session_closed: limit.clone(),
            handshake_failed: limit.clone(),
            send_failed: limit,
        }
    }
}

impl Warnings {
    /// Log "N more suppressed" for every limit whose window ended in silence.
    pub fn report_suppressed(&mut self, now: Instant) {
        for (what, limit) in [
            ("session closed", &mut self.session_closed),
            ("handshake failed", &mut self.handshake_failed),
            ("send failure", &mut self.send_failed),
        ] {
            if let Some(n) = limit.take_suppressed(now) {
                tracing::warn!(suppressed = n, "{n} more \"{what}\" lines suppressed");
            }
        }
    }
}

/// ` (N similar lines suppressed)` when `n` > 0, for the line a limit lets through.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines suppressed before this one)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(i: u8) -> Uuid {
        Uuid([i; 16])
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn log() -> TransitionLog {
        TransitionLog::new(vec!["hv0".into(), "hv1".into()])
    }

    #[test]
    fn a_few_changes_are_logged_one_by_one_without_summary() {
        let mut l = log();
        assert!(l.record(ms(0), vm(1), "MISSING", 0));
        assert!(l.record(ms(300), vm(2), "MISSING", 1));
        assert_eq!(
            l.poll(ms(1200)),
            None,
            "burst still open: 900 ms since the last"
        );
        assert!(l.record(ms(1250), vm(3), "DETECTED", 0));
        assert_eq!(
            l.poll(ms(2250)),
            None,
            "three changes, all logged: no summary"
        );
        // After the quiet second a new burst starts, loud again.
        assert!(l.record(ms(5000), vm(4), "MISSING", 0));
    }

    #[test]
    fn ten_thousand_misses_are_three_lines_and_a_summary() {
        let mut l = log();
        let mut loud = 0;
        // Spread over 5 s, one every 0.5 ms, polled every millisecond as the loop does.
        for i in 0..10_000u64 {
            let now = Instant::from_nanos(i * 500_000);
            assert_eq!(l.poll(now), None);
            let iface = u16::from(i % 4 == 0);
            let v = vm(u8::try_from(i % 251).unwrap_or(0));
            loud += u64::from(l.record(now, v, "MISSING", iface));
        }
        assert_eq!(loud, LOUD);
        assert_eq!(l.poll(ms(5000)), None, "still within the quiet gap");
        let s = l.poll(ms(6000)).expect("the burst is over");
        assert_eq!(s.total, 10_000);
        assert_eq!(
            s.counts,
            vec![
                ("MISSING", "hv0".into(), 7500),
                ("MISSING", "hv1".into(), 2500)
            ]
        );
        assert_eq!(s.first.len(), FIRST_NAMED);
        let line = s.to_string();
        assert!(
            line.starts_with(
                "10000 VM state changes in 5.0 s (the first 3 logged above, all at debug): \
                 MISSING 10000 (hv0 7500, hv1 2500); first: \
                 00000000-0000-0000-0000-000000000000 MISSING on hv1, 01010101-"
            ),
            "{line}"
        );
        assert!(
            line.ends_with(", 04040404-0404-0404-0404-040404040404 MISSING on hv1"),
            "{line}"
        );
        assert_eq!(l.poll(ms(9000)), None, "summarised once");
    }

    #[test]
    fn a_long_storm_is_summed_up_every_ten_seconds() {
        let mut l = log();
        let mut summaries = Vec::new();
        for t in 0..30_000u64 {
            if let Some(s) = l.poll(ms(t)) {
                summaries.push(s);
            }
            let state = if t % 2 == 0 { "MISSING" } else { "DETECTED" };
            l.record(ms(t), vm(1), state, 0);
        }
        summaries.extend(l.finish());
        assert_eq!(summaries.len(), 3, "{summaries:?}");
        assert_eq!(summaries.iter().map(|s| s.total).sum::<u64>(), 30_000);
        let line = summaries[0].to_string();
        assert!(
            line.contains(": DETECTED 5000 (hv0 5000); MISSING 5000 (hv0 5000); first:"),
            "{line}"
        );
    }

    #[test]
    fn unknown_interface_index_is_named_by_number() {
        let mut l = TransitionLog::new(Vec::new());
        for i in 0..5 {
            l.record(ms(i), vm(1), "SUSPENDED", 7);
        }
        let s = l.finish().expect("5 > LOUD");
        assert_eq!(s.counts, vec![("SUSPENDED", "#7".into(), 5)]);
    }
}
