//! The writer as the admin socket shows it: `hmd ctl status` lines, `hmd ctl stats`
//! counters and the Prometheus families (docs/operations.md, "When the HSDB is
//! unavailable").

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::WriterStats;
use crate::backlog::KINDS;
use crate::metrics::{Kind, Page};
use hvha_daemon::text::{duration, printable, utc};

/// The `hsdb …` lines of `hmd ctl status`, at `now_ms` (ms since the Unix epoch).
pub fn status(w: &WriterStats, now_ms: u64, out: &mut String) {
    let changed = w.connected_changed_ms.load(Ordering::Relaxed);
    let age = now_ms.saturating_sub(changed);
    let outages = w.outages.load(Ordering::Relaxed);
    let attempts = w.reconnect_attempts.load(Ordering::Relaxed);
    if w.connected.load(Ordering::Relaxed) {
        let _ = writeln!(
            out,
            "hsdb state   connected since {} UTC ({}); {outages} outage(s), {attempts} reconnect attempt(s) so far",
            utc(i64::try_from(changed).unwrap_or(i64::MAX)),
            duration(age)
        );
    } else {
        let _ = writeln!(
            out,
            "hsdb state   UNAVAILABLE since {} UTC ({}): monitoring goes on, transitions are held; {outages} outage(s), {attempts} reconnect attempt(s) so far",
            utc(i64::try_from(changed).unwrap_or(i64::MAX)),
            duration(age)
        );
    }
    let _ = writeln!(
        out,
        "hsdb backlog {} held of at most {}; {} superseded, {} dropped for room",
        w.backlog(),
        w.backlog_limit.load(Ordering::Relaxed),
        w.superseded.load(Ordering::Relaxed),
        w.dropped_total()
    );
    let _ = writeln!(
        out,
        "hsdb writes  {} transitions committed in {} transactions ({} handed over); {} failed commits retried",
        w.transitions.load(Ordering::Relaxed),
        w.commits.load(Ordering::Relaxed),
        w.handed.load(Ordering::Relaxed),
        w.retries.load(Ordering::Relaxed)
    );
    if let Some(e) = w.last_error() {
        let _ = writeln!(
            out,
            "hsdb error   {} ago: {}",
            duration(now_ms.saturating_sub(e.at_ms)),
            printable(&e.message)
        );
    }
}

/// The writer's `hmd ctl stats` counters (`- name value`), after the older ones.
pub fn counters(w: &WriterStats) -> [(&'static str, u64); 10] {
    [
        (
            "hsdb_connected",
            u64::from(w.connected.load(Ordering::Relaxed)),
        ),
        (
            "hsdb_connected_changed_ms",
            w.connected_changed_ms.load(Ordering::Relaxed),
        ),
        ("hsdb_handed", w.handed.load(Ordering::Relaxed)),
        ("hsdb_backlog", w.backlog()),
        (
            "hsdb_backlog_limit",
            w.backlog_limit.load(Ordering::Relaxed),
        ),
        ("hsdb_superseded", w.superseded.load(Ordering::Relaxed)),
        ("hsdb_dropped", w.dropped_total()),
        ("hsdb_outages", w.outages.load(Ordering::Relaxed)),
        (
            "hsdb_reconnect_attempts",
            w.reconnect_attempts.load(Ordering::Relaxed),
        ),
        ("hsdb_owed", w.owed()),
    ]
}

/// The writer's Prometheus families beyond the commit counters.
pub fn metrics(w: &WriterStats, page: &mut Page) {
    let none: [(&str, &str); 0] = [];
    page.family(
        "hsdb_connected",
        Kind::Gauge,
        "1 while a connection to the HSDB is open, 0 while it is unavailable.",
        [(none, u64::from(w.connected.load(Ordering::Relaxed)))],
    );
    page.family(
        "hsdb_connected_changed_timestamp_seconds",
        Kind::Gauge,
        "When hsdb_connected last changed (or hmd started), seconds since the Unix epoch.",
        [(none, w.connected_changed_ms.load(Ordering::Relaxed) / 1000)],
    );
    page.family(
        "hsdb_backlog",
        Kind::Gauge,
        "Transitions held by the HSDB writer, not yet committed.",
        [(none, w.backlog())],
    );
    page.family(
        "hsdb_backlog_limit",
        Kind::Gauge,
        "Most transitions the HSDB writer holds (hsdb_backlog_limit).",
        [(none, w.backlog_limit.load(Ordering::Relaxed))],
    );
    page.family(
        "hsdb_handed",
        Kind::Counter,
        "Transitions handed to the HSDB writer.",
        [(none, w.handed.load(Ordering::Relaxed))],
    );
    page.family(
        "hsdb_superseded",
        Kind::Counter,
        "Transitions superseded by a later one of the same VM and monitor (the HSDB ends the same without them).",
        [(none, w.superseded.load(Ordering::Relaxed))],
    );
    page.family(
        "hsdb_backlog_dropped",
        Kind::Counter,
        "Transitions dropped because the backlog was full, by kind.",
        KINDS
            .iter()
            .zip(&w.dropped)
            .map(|(k, n)| ([("kind", *k)], n.load(Ordering::Relaxed))),
    );
    page.family(
        "hsdb_outages",
        Kind::Counter,
        "Times the HSDB became unavailable (a start without it included).",
        [(none, w.outages.load(Ordering::Relaxed))],
    );
    page.family(
        "hsdb_reconnect_attempts",
        Kind::Counter,
        "Attempts to connect to the HSDB after it became unavailable.",
        [(none, w.reconnect_attempts.load(Ordering::Relaxed))],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_connected_or_not_since_when_and_the_backlog() {
        let w = WriterStats::default();
        w.connected.store(true, Ordering::Relaxed);
        // 2024-06-01 12:00:00 UTC.
        let at = 1_717_243_200_000;
        w.connected_changed_ms.store(at, Ordering::Relaxed);
        w.transitions.store(40, Ordering::Relaxed);
        w.commits.store(3, Ordering::Relaxed);
        w.handed.store(45, Ordering::Relaxed);
        w.superseded.store(2, Ordering::Relaxed);
        w.held.store(3, Ordering::Relaxed);
        let mut out = String::new();
        status(&w, at + 65_000, &mut out);
        assert_eq!(
            out,
            "hsdb state   connected since 2024-06-01 12:00:00 UTC (1m05s); 0 outage(s), 0 reconnect attempt(s) so far\n\
             hsdb backlog 3 held of at most 200000; 2 superseded, 0 dropped for room\n\
             hsdb writes  40 transitions committed in 3 transactions (45 handed over); 0 failed commits retried\n"
        );

        w.connected.store(false, Ordering::Relaxed);
        w.outages.store(1, Ordering::Relaxed);
        w.reconnect_attempts.store(7, Ordering::Relaxed);
        w.dropped[0].store(5, Ordering::Relaxed);
        w.set_last_error("db error: connection\nrefused");
        let mut out = String::new();
        status(
            &w,
            w.connected_changed_ms.load(Ordering::Relaxed) + 2_500,
            &mut out,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("hsdb state   UNAVAILABLE since ")
                && lines[0].contains("(2.5s): monitoring goes on")
                && lines[0].ends_with("1 outage(s), 7 reconnect attempt(s) so far"),
            "{out}"
        );
        assert!(lines[1].ends_with("5 dropped for room"), "{out}");
        assert!(
            lines[3].starts_with("hsdb error   ")
                && lines[3].ends_with(" ago: db error: connection?refused"),
            "{out}"
        );
        let c = counters(&w);
        assert!(c.contains(&("hsdb_connected", 0)));
        assert!(c.contains(&("hsdb_backlog", 3)));
        assert!(c.contains(&("hsdb_dropped", 5)));
        // 45 handed: 40 committed, 2 superseded, 5 dropped (more than handed: 0).
        assert!(c.contains(&("hsdb_owed", 0)));
    }

    #[test]
    fn every_family_is_on_the_page() {
        let w = WriterStats::default();
        w.dropped[11].store(4, Ordering::Relaxed);
        let mut page = Page::default();
        metrics(&w, &mut page);
        let text = page.finish();
        for line in [
            "hvha_hmd_hsdb_connected 0",
            "hvha_hmd_hsdb_backlog 0",
            "hvha_hmd_hsdb_backlog_limit 200000",
            "hvha_hmd_hsdb_superseded_total 0",
            "hvha_hmd_hsdb_backlog_dropped_total{kind=\"Event\"} 4",
            "hvha_hmd_hsdb_backlog_dropped_total{kind=\"Missing\"} 0",
            "hvha_hmd_hsdb_outages_total 0",
            "hvha_hmd_hsdb_reconnect_attempts_total 0",
            "hvha_hmd_hsdb_handed_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
