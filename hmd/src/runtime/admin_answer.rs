//! Answers to the admin socket (`hmd ctl`, `/metrics`), computed on the dataplane
//! thread from its own tables.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::{AdminRequest, Monitor};
use crate::commands::kind_index;
use crate::metrics::{Kind, Page};
use crate::supervise::link_problem;
use dataplane::heartbeat::HbState;
use hsdb::CommandKind;

impl Monitor<'_> {
    /// Answer every queued admin request.
    pub(super) fn on_admin(&mut self, admin: &Receiver<AdminRequest>) {
        while let Ok(request) = admin.try_recv() {
            let text = self.answer(&request.command);
            let _ = request.reply.send(text);
        }
    }

    /// Text reply to an admin command.
    fn answer(&mut self, command: &str) -> String {
        let mut out = String::new();
        let now = self.clock.now();
        let config = self.config;
        let table = &self.table;
        let interfaces = &mut self.interfaces;
        let w = &self.writer.stats;
        match command {
            "status" => {
                let mut counts = [0usize; 4];
                for (_, _, state, _) in table.iter() {
                    counts[state as usize] += 1;
                }
                let _ = writeln!(out, "monitor      {}", config.monitor_uuid);
                let _ = writeln!(out, "incarnation  {}", self.hello);
                let _ = writeln!(out, "uptime       {:.0} s", now.as_nanos() as f64 / 1e9);
                let _ = writeln!(out, "hsdb         {}", config.hsdb);
                crate::writer::report::status(w, crate::writer::epoch_ms(), &mut out);
                // A session whose agent shut down (SHDN:DAEMON) is not counted: the
                // agent is gone until it opens a new one.
                let mut shut = vec![0usize; interfaces.len()];
                for (key, _, state, _) in table.iter() {
                    if state == HbState::Suspended
                        && let Some(n) = shut.get_mut(usize::from(key.iface))
                    {
                        *n += 1;
                    }
                }
                for (i, iface) in interfaces.iter().enumerate() {
                    let established = iface
                        .endpoint
                        .peers()
                        .filter(|p| iface.endpoint.is_established(*p))
                        .count();
                    let _ = writeln!(
                        out,
                        "interface    {} {} sessions, {} opening, {} shut down by their agent",
                        iface.name,
                        established.saturating_sub(shut[i]),
                        iface.endpoint.half_open_len(),
                        shut[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "vms          {} watched: {} detected, {} missing, {} suspended, {} awaiting first heartbeat",
                    table.len(),
                    counts[HbState::Detected as usize],
                    counts[HbState::Missing as usize],
                    counts[HbState::Suspended as usize],
                    counts[HbState::Awaiting as usize]
                );
                let c = &self.command_counts;
                let _ = writeln!(
                    out,
                    "commands     {} handled: {} STOP_MONITORING, {} START_MONITORING, {} FORGET_VM ({} about VMs not known here); {} read, {} marked done",
                    c.total(),
                    c.by_kind[kind_index(CommandKind::StopMonitoring)],
                    c.by_kind[kind_index(CommandKind::StartMonitoring)],
                    c.by_kind[kind_index(CommandKind::ForgetVm)],
                    c.unknown_vm,
                    w.commands_read.load(Ordering::Relaxed),
                    w.commands_done.load(Ordering::Relaxed)
                );
                let r = &self.reports.counts;
                let _ = writeln!(
                    out,
                    "reports      {} exchange(s) in progress; {} FETCH_APP_REPORT, {} CONFIRM_APP_REPORT handled: {} REPORT, {} CLEARED, {} NOT_CLEARED, {} TIMEOUT, {} NO_SESSION, {} BAD_REPORT, {} refused; {} agent messages dropped",
                    self.reports.len(),
                    c.by_kind[kind_index(CommandKind::FetchAppReport)],
                    c.by_kind[kind_index(CommandKind::ConfirmAppReport)],
                    r.reports,
                    r.cleared,
                    r.not_cleared,
                    r.timeouts,
                    r.no_session,
                    r.bad_reports,
                    r.refused,
                    r.unexpected + r.malformed
                );
                let _ = writeln!(
                    out,
                    "monitoring   {} VMs stopped by the control plane, {} awaited after a start",
                    self.stopped.len(),
                    self.awaited.len()
                );
                if self.rewatch.len() > 0 {
                    let _ = writeln!(
                        out,
                        "restart      {} VMs DETECTED by the previous run not re-paired yet",
                        self.rewatch.len()
                    );
                }
            }
            "vms" => {
                for (key, vm, state, last) in table.iter() {
                    let iface = &interfaces[usize::from(key.iface)];
                    let mac = iface
                        .endpoint
                        .peer_mac(key.peer)
                        .map_or_else(|| "-".to_owned(), |m| m.to_string());
                    let _ = writeln!(
                        out,
                        "{vm} {mac} {} {} last_heartbeat_age_ms={}",
                        iface.name,
                        state.name(),
                        now.saturating_duration_since(last).as_millis()
                    );
                }
            }
            "stats" => {
                for i in interfaces.iter_mut() {
                    for (name, value) in i.endpoint.stats().iter().chain(i.auth.counters().iter()) {
                        let _ = writeln!(out, "{} {name} {value}", i.name);
                    }
                    if let Ok(s) = i.socket.stats() {
                        for (name, value) in socket_counters(&s) {
                            let _ = writeln!(out, "{} {name} {value}", i.name);
                        }
                    }
                    let _ = writeln!(out, "{} link_up {}", i.name, u8::from(i.carrier));
                    let _ = writeln!(out, "{} peers {}", i.name, i.endpoint.len());
                }
                for (name, value) in [
                    ("hsdb_transitions", w.transitions.load(Ordering::Relaxed)),
                    ("hsdb_commits", w.commits.load(Ordering::Relaxed)),
                    ("hsdb_retries", w.retries.load(Ordering::Relaxed)),
                    (
                        "hsdb_last_commit_us",
                        w.last_commit_us.load(Ordering::Relaxed),
                    ),
                    ("vms_watched", table.len() as u64),
                    ("vm_misses_withheld", table.withheld()),
                    ("vms_stopped", self.stopped.len() as u64),
                    ("vms_awaited", self.awaited.len() as u64),
                    (
                        "commands_stop_monitoring",
                        self.command_counts.by_kind[kind_index(CommandKind::StopMonitoring)],
                    ),
                    (
                        "commands_start_monitoring",
                        self.command_counts.by_kind[kind_index(CommandKind::StartMonitoring)],
                    ),
                    (
                        "commands_forget_vm",
                        self.command_counts.by_kind[kind_index(CommandKind::ForgetVm)],
                    ),
                    ("commands_unknown_vm", self.command_counts.unknown_vm),
                    (
                        "commands_fetch_app_report",
                        self.command_counts.by_kind[kind_index(CommandKind::FetchAppReport)],
                    ),
                    (
                        "commands_confirm_app_report",
                        self.command_counts.by_kind[kind_index(CommandKind::ConfirmAppReport)],
                    ),
                    ("report_exchanges_open", self.reports.len() as u64),
                    ("report_requests_sent", self.reports.counts.requests),
                    ("report_chunks_received", self.reports.counts.chunks),
                    ("report_confirms_sent", self.reports.counts.confirms),
                    ("reports_received", self.reports.counts.reports),
                    ("reports_cleared", self.reports.counts.cleared),
                    ("reports_not_cleared", self.reports.counts.not_cleared),
                    ("report_timeouts", self.reports.counts.timeouts),
                    ("report_no_session", self.reports.counts.no_session),
                    ("report_bad", self.reports.counts.bad_reports),
                    ("report_refused", self.reports.counts.refused),
                    ("report_messages_unexpected", self.reports.counts.unexpected),
                    ("report_messages_malformed", self.reports.counts.malformed),
                    ("commands_read", w.commands_read.load(Ordering::Relaxed)),
                    ("commands_done", w.commands_done.load(Ordering::Relaxed)),
                    ("command_errors", w.command_errors.load(Ordering::Relaxed)),
                ]
                .into_iter()
                .chain(crate::writer::report::counters(w))
                {
                    let _ = writeln!(out, "- {name} {value}");
                }
            }
            "metrics" => out = self.metrics(),
            "health" => {
                let links = config.interfaces.iter().filter_map(link_problem);
                let _ = writeln!(out, "{}", self.supervisor.health(w, links));
            }
            other => {
                let _ = writeln!(
                    out,
                    "error: unknown command {other:?}; commands: status, stats, vms, metrics, health"
                );
            }
        }
        out
    }

    /// The Prometheus page: every counter of every interface, the kernel's and the
    /// HSDB writer's counters, and gauges of VMs per interface and state and of
    /// sessions per interface.
    fn metrics(&mut self) -> String {
        let mut page = Page::default();
        let names: Vec<String> = self.interfaces.iter().map(|i| i.name.clone()).collect();
        let label = |i: usize| [("interface", names[i].as_str())];
        let values = |counters: &mut dyn Iterator<Item = (&'static str, u64)>| {
            Some(counters.map(|(_, v)| v).collect())
        };
        let endpoint: Vec<_> = self
            .interfaces
            .iter()
            .map(|i| values(&mut i.endpoint.stats().iter()))
            .collect();
        per_interface_counters(
            &mut page,
            &names,
            dataplane::stats::Counters::HELP,
            &endpoint,
        );
        let auth: Vec<_> = self
            .interfaces
            .iter()
            .map(|i| values(&mut i.auth.counters().iter()))
            .collect();
        per_interface_counters(
            &mut page,
            &names,
            dataplane::auth::AuthCounters::HELP,
            &auth,
        );
        let sockets: Vec<_> = self
            .interfaces
            .iter_mut()
            .map(|i| {
                let s = i.socket.stats().ok()?;
                values(&mut socket_counters(&s).into_iter())
            })
            .collect();
        per_interface_counters(&mut page, &names, &SOCKET_HELP, &sockets);
        let mut vms = vec![[0u64; 4]; names.len()];
        let mut shut = vec![0u64; names.len()];
        for (key, _, state, _) in self.table.iter() {
            if let Some(row) = vms.get_mut(usize::from(key.iface)) {
                row[state as usize] += 1;
            }
            if state == HbState::Suspended
                && let Some(n) = shut.get_mut(usize::from(key.iface))
            {
                *n += 1;
            }
        }
        let states = [
            HbState::Awaiting,
            HbState::Detected,
            HbState::Missing,
            HbState::Suspended,
        ];
        let lower: Vec<String> = states.iter().map(|s| s.name().to_lowercase()).collect();
        page.family(
            "vms",
            Kind::Gauge,
            "VMs watched, by interface and heartbeat state (awaiting: no heartbeat yet).",
            (0..names.len()).flat_map(|i| {
                let (names, lower, vms) = (&names, &lower, &vms);
                states.iter().enumerate().map(move |(k, s)| {
                    (
                        [
                            ("interface", names[i].as_str()),
                            ("state", lower[k].as_str()),
                        ],
                        vms[i][*s as usize],
                    )
                })
            }),
        );
        let sessions: Vec<u64> = self
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, iface)| {
                let established = iface
                    .endpoint
                    .peers()
                    .filter(|p| iface.endpoint.is_established(*p))
                    .count() as u64;
                established.saturating_sub(shut[i])
            })
            .collect();
        page.family(
            "sessions",
            Kind::Gauge,
            "Established sessions whose agent has not shut down, by interface.",
            sessions.iter().enumerate().map(|(i, n)| (label(i), *n)),
        );
        page.family(
            "peers_half_open",
            Kind::Gauge,
            "Peers whose session is not established yet, by interface.",
            self.interfaces
                .iter()
                .enumerate()
                .map(|(i, iface)| (label(i), iface.endpoint.half_open_len() as u64)),
        );
        let w = &self.writer.stats;
        let none: [(&str, &str); 0] = [];
        for (name, help, value) in [
            (
                "hsdb_transitions",
                "Transitions committed to the HSDB.",
                &w.transitions,
            ),
            ("hsdb_commits", "HSDB transactions committed.", &w.commits),
            (
                "hsdb_retries",
                "HSDB commits that failed and were retried.",
                &w.retries,
            ),
        ] {
            page.family(
                name,
                Kind::Counter,
                help,
                [(none, value.load(Ordering::Relaxed))],
            );
        }
        page.family(
            "hsdb_last_commit_us",
            Kind::Gauge,
            "Duration of the last HSDB commit, in microseconds.",
            [(none, w.last_commit_us.load(Ordering::Relaxed))],
        );
        crate::writer::report::metrics(w, &mut page);
        page.family(
            "commands",
            Kind::Counter,
            "Commands from the control plane handled, by kind.",
            CommandKind::ALL.iter().map(|k| {
                (
                    [("kind", k.as_str())],
                    self.command_counts.by_kind[kind_index(*k)],
                )
            }),
        );
        let r = &self.reports.counts;
        page.family(
            "report_exchanges",
            Kind::Counter,
            "Application-report exchanges with agents (FETCH_APP_REPORT, CONFIRM_APP_REPORT) by outcome.",
            [
                ("REPORT", r.reports),
                ("CLEARED", r.cleared),
                ("NOT_CLEARED", r.not_cleared),
                ("TIMEOUT", r.timeouts),
                ("NO_SESSION", r.no_session),
                ("BAD_REPORT", r.bad_reports),
                ("REFUSED", r.refused),
            ]
            .map(|(outcome, n)| ([("outcome", outcome)], n)),
        );
        page.family(
            "report_exchanges_open",
            Kind::Gauge,
            "Application-report exchanges waiting for their agent's answer.",
            [(none, self.reports.len() as u64)],
        );
        page.family(
            "report_messages_dropped",
            Kind::Counter,
            "PMSG_RSP / CLRDB from agents that answer no exchange in progress (unexpected) or do not parse (malformed).",
            [("unexpected", r.unexpected), ("malformed", r.malformed)]
                .map(|(reason, n)| ([("reason", reason)], n)),
        );
        page.family(
            "commands_unknown_vm",
            Kind::Counter,
            "Commands about a VM this monitor never knew.",
            [(none, self.command_counts.unknown_vm)],
        );
        page.family(
            "vms_watched",
            Kind::Gauge,
            "VMs watched, every interface and state.",
            [(none, self.table.len() as u64)],
        );
        page.family(
            "link_up",
            Kind::Gauge,
            "1 while the interface is up with carrier, 0 while the monitor is deaf there.",
            self.interfaces
                .iter()
                .enumerate()
                .map(|(i, iface)| (label(i), u64::from(iface.carrier))),
        );
        page.family(
            "vm_misses_withheld",
            Kind::Counter,
            "Misses not declared because the VM's interface had no carrier (one per VM per vm_miss_after of outage).",
            [(none, self.table.withheld())],
        );
        page.finish()
    }
}

/// One counter family per `(name, help)` of `help`, with one sample per interface:
/// `values[i]` holds interface `i`'s counters in the order of `help` (`None`: it has none
/// to show now).
fn per_interface_counters(
    page: &mut Page,
    names: &[String],
    help: &[(&str, &str)],
    values: &[Option<Vec<u64>>],
) {
    for (k, (name, help)) in help.iter().enumerate() {
        let samples = names.iter().zip(values).filter_map(|(iface, v)| {
            let v = v.as_ref()?.get(k)?;
            Some(([("interface", iface.as_str())], *v))
        });
        page.family(name, Kind::Counter, help, samples);
    }
}

/// The receive socket's counters, with their `# HELP` texts.
const SOCKET_HELP: [(&str, &str); 5] = [
    (
        "kernel_packets",
        "Frames that reached the socket in the kernel, dropped ones included.",
    ),
    (
        "kernel_drops",
        "Frames the kernel dropped because the socket's ring was full.",
    ),
    (
        "kernel_freezes",
        "Times the receive ring froze because every block was held.",
    ),
    (
        "socket_delivered",
        "Frames the socket handed to the endpoint.",
    ),
    (
        "socket_truncated",
        "Frames longer than the receive buffer, not delivered.",
    ),
];

fn socket_counters(s: &dataplane::io::SocketStats) -> [(&'static str, u64); 5] {
    [
        ("kernel_packets", s.kernel_packets),
        ("kernel_drops", s.kernel_drops),
        ("kernel_freezes", s.kernel_freezes),
        ("socket_delivered", s.delivered),
        ("socket_truncated", s.truncated),
    ]
}
