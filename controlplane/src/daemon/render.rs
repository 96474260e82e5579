//! `hactl status` for a person: the daemon's [`DaemonStatus`] as text.

use std::fmt::Write as _;

use super::leadership::LeaseView;
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
    match &s.lease {
        None => {
            let _ = writeln!(
                out,
                "controller {}: the only controller (SQLite: no lease)",
                printable(&s.controller_id)
            );
        }
        Some(l) => {
            let _ = writeln!(
                out,
                "controller {}: lease ttl {}, renewed every {}, margin {}; a dead leader is \
                 replaced within {}",
                printable(&s.controller_id),
                duration(l.ttl_ms),
                duration(l.renew_every_ms),
                duration(l.margin_ms),
                duration(l.takeover_bound_ms)
            );
            let _ = writeln!(
                out,
                "hsdb duties (event log, housekeeping): {}",
                lead(&s.duties, &s.controller_id)
            );
        }
    }
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
    if !s.notifiers.is_empty() {
        let mut t = Table::new(&[
            "NOTIFIER",
            "KIND",
            "STATE",
            "OFFSET",
            "LAG",
            "DELIVERED",
            "FILTERED",
            "RETRIES",
            "LOST",
            "LAST_ERROR",
        ]);
        for n in &s.notifiers {
            let error = match (&n.last_error, n.last_error_ms) {
                (Some(e), Some(at)) => format!(
                    "{} ago: {e}",
                    duration(u64::try_from(s.now_ms.saturating_sub(at)).unwrap_or(0))
                ),
                (Some(e), None) => e.clone(),
                (None, _) => "-".to_owned(),
            };
            t.row(vec![
                n.name.clone(),
                n.kind.clone(),
                n.state.clone(),
                n.offset.to_string(),
                n.lag.to_string(),
                n.delivered.to_string(),
                n.filtered.to_string(),
                n.retries.to_string(),
                n.lost.to_string(),
                error,
            ]);
        }
        out.push_str(&t.render());
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
        "LEADER",
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
            lead(&g.lease, &s.controller_id),
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
        let r = g.lease.refused;
        if r.actions + r.probes + r.writes > 0 {
            let _ = writeln!(
                out,
                "{}: refused by the fence since start: {} action(s), {} probe(s), {} \
                 write(s); last: {}",
                printable(&g.name),
                r.actions,
                r.probes,
                r.writes,
                printable(g.lease.last_refusal.as_deref().unwrap_or("-"))
            );
        }
        if let Some(e) = &g.lease.last_error {
            let _ = writeln!(out, "{}: lease: {}", printable(&g.name), printable(e));
        }
        if let Some(e) = &g.last_error {
            let _ = writeln!(out, "{}: last error: {}", printable(&g.name), printable(e));
        }
        let p = &g.policies;
        if p.collocations + p.anticollocations + p.workgroups + p.vms_with_exclusions > 0
            || !p.problems.is_empty()
            || p.last_error.is_some()
        {
            let _ = writeln!(
                out,
                "{}: policies: {} collocation(s), {} anticollocation(s), {} workgroup(s), {} \
                 VM(s) with host exclusions",
                printable(&g.name),
                p.collocations,
                p.anticollocations,
                p.workgroups,
                p.vms_with_exclusions
            );
        }
        for problem in &p.problems {
            let _ = writeln!(
                out,
                "{}: policy problem: {}",
                printable(&g.name),
                printable(problem)
            );
        }
        if let Some(e) = &p.last_error {
            let _ = writeln!(
                out,
                "{}: policies not reloaded (the previous ones stay in force): {}",
                printable(&g.name),
                printable(e)
            );
        }
        if !g.maintenance.is_empty() {
            let _ = writeln!(
                out,
                "{}: hosts in maintenance: {}",
                printable(&g.name),
                printable(&g.maintenance.join(", "))
            );
        }
        if let Some(r) = &g.operator_request {
            let _ = writeln!(out, "{}: {}", printable(&g.name), printable(r));
        }
        if !g.capacity_short.is_empty() {
            let _ = writeln!(
                out,
                "{}: cannot absorb the loss of every host (verify): {} without a place; \
                 `hactl verify {}` says why",
                printable(&g.name),
                printable(&g.capacity_short.join(", ")),
                printable(&g.name)
            );
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

/// Who leads, for a table cell: `this controller #7`, `ctl-b:4242:… #7`, `sole`,
/// `nobody`.
fn lead(v: &LeaseView, me: &str) -> String {
    match (v.role.as_str(), &v.leader, v.token) {
        ("sole", _, _) => "sole".to_owned(),
        ("leader", _, Some(t)) => format!("this controller #{t}"),
        ("follower", Some(l), Some(t)) if l != me => format!("{} #{t}", printable(l)),
        ("", _, _) => "-".to_owned(),
        _ => "nobody".to_owned(),
    }
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
            lease: Default::default(),
            policies: Default::default(),
            maintenance: vec!["host-c".into()],
            operator_request: Some(
                "request 7: evacuate host host-c, 1 of 2 VM(s) moved by live migration".into(),
            ),
            capacity_short: vec!["host-a: 5 VM(s)".into()],
        });
        let text = status(&s);
        assert!(text.contains("hg1: hosts in maintenance: host-c"), "{text}");
        assert!(
            text.contains(
                "hg1: cannot absorb the loss of every host (verify): host-a: 5 VM(s) without a \
                 place; `hactl verify hg1` says why"
            ),
            "{text}"
        );
        assert!(
            text.contains("hg1: request 7: evacuate host host-c, 1 of 2 VM(s) moved"),
            "{text}"
        );
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
    fn leaders_tokens_and_refusals_are_shown() {
        use crate::daemon::leadership::Refusals;
        use crate::daemon::status::LeaseTimings;
        let mut s = DaemonStatus::starting("postgres://h/hsdb", "sim", "default", 0);
        s.controller_id = "ctl-a:41:1".into();
        s.lease = Some(LeaseTimings {
            ttl_ms: 10_000,
            renew_every_ms: 2_000,
            margin_ms: 1_000,
            takeover_bound_ms: 32_000,
        });
        s.duties = LeaseView {
            role: "follower".into(),
            leader: Some("ctl-b:77:2".into()),
            token: Some(4),
            ..LeaseView::default()
        };
        let mut g = GroupStatus::new("hg1", 20_000, 0);
        g.lease = LeaseView {
            role: "leader".into(),
            leader: Some("ctl-a:41:1".into()),
            token: Some(9),
            refused: Refusals {
                actions: 1,
                probes: 2,
                writes: 3,
            },
            last_refusal: Some("start host-b vm1: expired".into()),
            ..LeaseView::default()
        };
        s.groups.push(g);
        let text = status(&s);
        assert!(
            text.contains("controller ctl-a:41:1: lease ttl 10.0s"),
            "{text}"
        );
        assert!(text.contains("replaced within 32.0s"), "{text}");
        assert!(
            text.contains("hsdb duties (event log, housekeeping): ctl-b:77:2 #4"),
            "{text}"
        );
        assert!(text.contains("this controller #9"), "{text}");
        assert!(
            text.contains("1 action(s), 2 probe(s), 3 write(s); last: start host-b vm1: expired"),
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
