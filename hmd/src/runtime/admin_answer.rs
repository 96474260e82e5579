//! Answers to the admin socket (`hmd ctl`, `/metrics`), computed on the dataplane
//! thread from its own tables.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::{AdminRequest, Monitor};
use crate::supervise::link_problem;
use dataplane::heartbeat::HbState;

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
                let _ = writeln!(out, "hsdb         {}", config.hsdb.display());
                for i in interfaces.iter() {
                    let _ = writeln!(out, "interface    {} {} sessions", i.name, i.endpoint.len());
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
            "stats" | "metrics" => {
                let prom = command == "metrics";
                for i in interfaces.iter_mut() {
                    for (name, value) in i.endpoint.stats().iter().chain(i.auth.counters().iter()) {
                        if prom {
                            let _ = writeln!(
                                out,
                                "hvha_hmd_{name}{{interface=\"{}\"}} {value}",
                                i.name
                            );
                        } else {
                            let _ = writeln!(out, "{} {name} {value}", i.name);
                        }
                    }
                    if let Ok(s) = i.socket.stats() {
                        for (name, value) in [
                            ("kernel_packets", s.kernel_packets),
                            ("kernel_drops", s.kernel_drops),
                            ("kernel_freezes", s.kernel_freezes),
                            ("socket_delivered", s.delivered),
                            ("socket_truncated", s.truncated),
                        ] {
                            if prom {
                                let _ = writeln!(
                                    out,
                                    "hvha_hmd_{name}{{interface=\"{}\"}} {value}",
                                    i.name
                                );
                            } else {
                                let _ = writeln!(out, "{} {name} {value}", i.name);
                            }
                        }
                    }
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
                ] {
                    if prom {
                        let _ = writeln!(out, "hvha_hmd_{name} {value}");
                    } else {
                        let _ = writeln!(out, "- {name} {value}");
                    }
                }
            }
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
}
