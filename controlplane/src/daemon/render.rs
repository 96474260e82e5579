//! `hactl status` for a person: the daemon's [`DaemonStatus`] as text.

use std::fmt::Write as _;

use super::status::{DaemonStatus, RequestSummary};
use crate::cli::table::{Table, duration, printable, utc};

/// The status as lines and tables.
pub fn status(s: &DaemonStatus) -> String {
    let mut out = String::new();
    let up = u64::try_from(s.now_ms.saturating_sub(s.started_ms)).unwrap_or(0);
    let _ = writeln!(
        out,
        "hactl run {} (pid {}), {} for {}, since {} UTC",
        printable(&s.version),
        s.pid,
        printable(&s.state),
        duration(up),
        utc(s.started_ms)
    );
    let _ = writeln!(
        out,
        "hsdb {}  platform {}  profile {}",
        printable(&s.hsdb),
        printable(&s.platform),
        printable(&s.profile)
    );
    if !s.below_seed_ranges.is_empty() {
        let _ = writeln!(
            out,
            "WARNING: parameters below the seed's ranges (the daemon may act on outages the \
             seed's product would wait out):"
        );
        for p in &s.below_seed_ranges {
            let _ = writeln!(out, "  {}", printable(p));
        }
    }
    let _ = writeln!(
        out,
        "scans {}  events logged {} (last id {})",
        s.scans_total, s.events_logged, s.last_event_id
    );
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error: {}", printable(e));
    }
    if s.groups.is_empty() {
        let _ = writeln!(
            out,
            "no host group served yet (add hosts with `hactl add host NAME group=G …`)"
        );
        return out;
    }
    let mut groups = Table::new(&[
        "HOST_GROUP",
        "SCANS",
        "INTERVAL",
        "NEXT_SCAN",
        "LAST_QQ",
        "LAST_NA",
        "IN_FLIGHT",
        "ERRORS",
    ]);
    let request = |r: &Option<RequestSummary>, na: bool| match r {
        None => "-".to_owned(),
        Some(r) => {
            let mut text = format!("#{} {} decisions", r.scan, r.decisions);
            if !na {
                let _ = write!(
                    text,
                    ", {}/{} monitors unhealthy",
                    r.monitors_unhealthy, r.monitors
                );
            }
            if let Some(tag) = r.tag {
                let _ = write!(text, ", acked {tag}");
            }
            text
        }
    };
    for g in &s.groups {
        let next = u64::try_from(g.next_scan_ms.saturating_sub(s.now_ms)).unwrap_or(0);
        groups.row(vec![
            g.name.clone(),
            g.scans.to_string(),
            duration(g.scan_interval_ms),
            format!("in {}", duration(next)),
            request(&g.last_qq, false),
            request(&g.last_na, true),
            g.in_flight.len().to_string(),
            g.errors.to_string(),
        ]);
    }
    out.push_str(&groups.render());
    for g in &s.groups {
        if let Some(e) = &g.last_error {
            let _ = writeln!(out, "{}: last error: {}", printable(&g.name), printable(e));
        }
        if !g.in_flight.is_empty() {
            let _ = writeln!(out, "\n{}: in flight", printable(&g.name));
            let mut t = Table::new(&["VM", "FROM", "TO", "PHASE", "SINCE"]);
            for f in &g.in_flight {
                t.row(vec![
                    f.vm.clone(),
                    f.from_host.clone(),
                    f.to_host.clone().unwrap_or_else(|| "-".into()),
                    f.phase.clone(),
                    utc(f.since_ms),
                ]);
            }
            out.push_str(&t.render());
        }
        if !g.last_decisions.is_empty() {
            let _ = writeln!(out, "\n{}: last decisions", printable(&g.name));
            let mut t = Table::new(&["TIME", "SCAN", "DECISION"]);
            for d in &g.last_decisions {
                t.row(vec![utc(d.at_ms), d.scan.to_string(), d.text.clone()]);
            }
            out.push_str(&t.render());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{Decision, GroupStatus, InFlight};

    #[test]
    fn status_names_groups_requests_decisions_and_the_fast_warning() {
        let mut s = DaemonStatus::starting("/var/lib/hvha/hsdb.sqlite", "sim", "fast", 0);
        s.now_ms = 65_000;
        s.state = "running".into();
        s.below_seed_ranges = vec!["scan_interval 2 s (seed: 20 s)".into()];
        s.groups.push(GroupStatus {
            name: "hg1".into(),
            scans: 3,
            scan_interval_ms: 2_000,
            next_scan_ms: 66_000,
            last_qq: Some(RequestSummary {
                scan: 2,
                at_ms: 62_000,
                hosts: 2,
                monitors: 4,
                monitors_unhealthy: 1,
                decisions: 0,
                tag: None,
            }),
            last_na: Some(RequestSummary {
                scan: 3,
                at_ms: 64_000,
                hosts: 2,
                monitors: 4,
                monitors_unhealthy: 1,
                decisions: 2,
                tag: Some(-42),
            }),
            in_flight: vec![InFlight {
                vm: "61be20f0-09a8-4753-b5e5-564f8a545ed5".into(),
                from_host: "host-a".into(),
                to_host: Some("host-b".into()),
                phase: "start".into(),
                since_ms: 64_500,
            }],
            last_decisions: vec![Decision {
                at_ms: 64_000,
                scan: 3,
                text: "relocate vm1: missedHb 150 s > VMFDT 140 s\nnot pingable".into(),
            }],
            errors: 0,
            last_error: None,
        });
        let text = status(&s);
        assert!(text.contains("running for 1m05s"), "{text}");
        assert!(
            text.contains("WARNING: parameters below the seed's ranges"),
            "{text}"
        );
        assert!(text.contains("scan_interval 2 s (seed: 20 s)"), "{text}");
        assert!(
            text.contains("#2 0 decisions, 1/4 monitors unhealthy"),
            "{text}"
        );
        assert!(text.contains("#3 2 decisions, acked -42"), "{text}");
        assert!(text.contains("in 1.0s"), "{text}");
        assert!(text.contains("host-a  host-b  start"), "{text}");
        assert!(
            text.contains("missedHb 150 s > VMFDT 140 s?not pingable"),
            "{text}"
        );
    }

    #[test]
    fn no_group_says_how_to_add_one() {
        let s = DaemonStatus::starting("h", "sim", "default", 0);
        assert!(status(&s).contains("hactl add host"));
        assert!(!status(&s).contains("WARNING"));
    }
}
