//! Host decisions (QuickQuery), monitor events and node data.
//!
//! Truth table of a host whose every monitor has been unhealthy for
//! `host_failure_detection_time` (gap 3; docs/controlplane.md):
//!
//! | monitors                         | `host_alive` | decision                              |
//! |----------------------------------|--------------|---------------------------------------|
//! | any                              | error        | no evidence: decided again next scan  |
//! | any                              | true         | not a host failure (the seed's sanity check): HOST_MONITORS_UNRESPONSIVE |
//! | every one DOWN with reason 0x40  | false        | planned shutdown: HOST_SHUTDOWN_DETECTED, nothing relocated |
//! | otherwise                        | false        | host failure: relocate its managed VMs |

use hsdb::{HmState, HostId};

use super::{Fde, FdeError, HealthStore, HostView, REASON_SHUTDOWN, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::params::{RestartPolicy, show_ms};
use crate::platform::Platform;
use crate::relocate::RestartKind;

impl Fde {
    /// Events for monitors that came up or back (the first QuickQuery reports every UP
    /// and responsive monitor, seed 004 L3784-3839), went down or silent.
    pub(super) fn monitor_events(&mut self, now_ms: i64) {
        let mut events = Vec::new();
        for host in &self.hosts {
            for m in &host.monitors {
                let up = m.state == HmState::Up;
                let responsive = m.silent_ms <= self.params.hm_silent_after_ms;
                let prev = self.monitors_seen.insert(m.uuid, (up, responsive));
                let (was_up, was_responsive) = match prev {
                    Some(p) => (Some(p.0), Some(p.1)),
                    None => (None, None),
                };
                let mut push = |kind: EventKind, text: String| {
                    events.push(Event {
                        kind,
                        vm: None,
                        hm: Some(m.uuid),
                        text,
                        at: now_ms,
                    });
                };
                if up && was_up != Some(true) {
                    push(
                        EventKind::ViosCaaStateUpDetected,
                        format!("monitor {} of host {} is UP", m.uuid, host.name),
                    );
                } else if !up && was_up == Some(true) {
                    push(
                        EventKind::ViosCaaStateDownDetected,
                        format!(
                            "monitor {} of host {} is DOWN (reason 0x{:08x})",
                            m.uuid, host.name, m.reason
                        ),
                    );
                }
                if responsive && was_responsive != Some(true) {
                    push(
                        EventKind::ViosHmRespDetected,
                        format!(
                            "monitor {} of host {} heart-beats (last {} ago)",
                            m.uuid,
                            host.name,
                            show_ms(m.silent_ms)
                        ),
                    );
                } else if !responsive && was_responsive == Some(true) {
                    push(
                        EventKind::ViosHmNonrespDetected,
                        format!(
                            "monitor {} of host {} silent for {} (> hm_silent_after {})",
                            m.uuid,
                            host.name,
                            show_ms(m.silent_ms),
                            show_ms(self.params.hm_silent_after_ms)
                        ),
                    );
                }
            }
        }
        self.events.extend(events);
    }

    /// Host decisions on the last QuickQuery.
    pub(super) fn host_decisions(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let hosts = self.hosts.clone();
        for host in &hosts {
            self.host_decision(now_ms, host, store, platform)?;
        }
        // Cleanups owed to hosts that are back (fde/cleanup.rs).
        self.owed_cleanup_pass(now_ms, store, platform)
    }

    fn host_decision(
        &mut self,
        now_ms: i64,
        host: &HostView,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        let subject = Subject::Host {
            id: host.id,
            name: host.name.clone(),
        };
        if host.monitors.is_empty() {
            // No monitor, no evidence either way.
            return Ok(());
        }
        if self.in_maintenance(host.id) {
            // Planned maintenance (fde/maintenance.rs): its monitors' silence or loss is
            // not a failure; said once per episode.
            let unhealthy = !host.monitors.iter().any(|m| self.healthy(m));
            let w = self.host_watch.entry(host.id).or_default();
            let first = unhealthy && !w.reported;
            w.reported = unhealthy;
            w.down_since.clear();
            if first {
                self.decide(
                    now_ms,
                    subject,
                    Verdict::Maintenance,
                    format!(
                        "every monitor of host {} unhealthy, but the host is in maintenance: \
                         not a failure, nothing relocated",
                        host.name
                    ),
                );
            }
            return Ok(());
        }
        let silent_after = self.params.hm_silent_after_ms;
        let watch = self.host_watch.entry(host.id).or_default();
        // Each monitor's DOWN is dated from the first scan that saw it; UP clears it.
        for m in &host.monitors {
            if m.state == HmState::Down {
                watch.down_since.entry(m.uuid).or_insert(now_ms);
            } else {
                watch.down_since.remove(&m.uuid);
            }
        }
        let healthy = host
            .monitors
            .iter()
            .filter(|m| m.state == HmState::Up && m.silent_ms <= silent_after)
            .count();
        if healthy > 0 {
            let was_failed = watch.failed;
            watch.failed = false;
            watch.reported = false;
            if was_failed {
                let reason = format!(
                    "{healthy} of {} monitors of host {} healthy again: CEC IS UP, READY FOR \
                     RELOCATION",
                    host.monitors.len(),
                    host.name
                );
                self.decide(now_ms, subject, Verdict::HostBack, reason.clone());
                self.event(Event {
                    kind: EventKind::HostActive,
                    vm: None,
                    hm: None,
                    text: reason,
                    at: now_ms,
                });
                // Its VMs that answered pings all along were alive: nothing to restart.
                let alive: Vec<super::PlacementJob> = self
                    .jobs
                    .iter()
                    .filter(|j| j.from == host.id && !j.ping_checked)
                    .cloned()
                    .collect();
                for j in alive {
                    self.jobs.retain(|x| x.vm.uuid != j.vm.uuid);
                    self.decide(
                        now_ms,
                        Subject::Vm {
                            uuid: j.vm.uuid,
                            name: super::vm::display_name(&j.vm),
                        },
                        Verdict::NoAction,
                        format!(
                            "host {} is back and the VM answered pings: not restarted",
                            host.name
                        ),
                    );
                    self.executor.batch_shortfall(j.batch, 1, now_ms, store)?;
                }
            }
            return Ok(());
        }
        // Every monitor unhealthy. Since when: a silent monitor since its last heartbeat,
        // a DOWN one since it was first seen DOWN (or its last heartbeat, if earlier);
        // the host since the last of them became unhealthy.
        let since = host
            .monitors
            .iter()
            .map(|m| {
                let last_hb = now_ms - m.silent_ms;
                let silent = (m.silent_ms > silent_after).then_some(last_hb);
                let down = watch.down_since.get(&m.uuid).copied();
                match (silent, down) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => now_ms,
                }
            })
            .max()
            .unwrap_or(now_ms);
        let unhealthy_for = now_ms - since;
        let monitors_text = host
            .monitors
            .iter()
            .map(|m| {
                format!(
                    "{} {} reason 0x{:02x} silent {}",
                    m.uuid,
                    m.state,
                    m.reason,
                    show_ms(m.silent_ms)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        if watch.failed {
            // Already acted on; its VMs are being placed and restarted.
            return Ok(());
        }
        let fdt = self.params.host_fdt_ms;
        if unhealthy_for < fdt {
            self.decide(
                now_ms,
                subject,
                Verdict::Waiting,
                format!(
                    "every monitor of host {} unhealthy for {} < host_failure_detection_time \
                     {} ({monitors_text})",
                    host.name,
                    show_ms(unhealthy_for),
                    show_ms(fdt)
                ),
            );
            return Ok(());
        }
        let planned = host
            .monitors
            .iter()
            .all(|m| m.state == HmState::Down && m.reason == REASON_SHUTDOWN);
        let reported = watch.reported;
        match platform.host_alive(&host.name) {
            Err(e) => {
                self.decide(
                    now_ms,
                    subject,
                    Verdict::ProbeFailed,
                    format!(
                        "every monitor of host {} unhealthy for {} >= {}, but host_alive failed \
                         ({e}): not a confirmation, decided again at the next scan",
                        host.name,
                        show_ms(unhealthy_for),
                        show_ms(fdt)
                    ),
                );
            }
            Ok(true) => {
                let reason = format!(
                    "every monitor of host {} unhealthy for {} >= {} ({monitors_text}), but its \
                     hypervisor answers: not a host failure; its VMs are not watched",
                    host.name,
                    show_ms(unhealthy_for),
                    show_ms(fdt)
                );
                self.decide(now_ms, subject, Verdict::HostAlive, reason.clone());
                if !reported {
                    self.set_reported(host.id);
                    self.event(Event {
                        kind: EventKind::HostMonitorsUnresponsive,
                        vm: None,
                        hm: None,
                        text: reason,
                        at: now_ms,
                    });
                }
            }
            Ok(false) if planned => {
                let vms = self.vms_on_host(host.id, store)?;
                let managed = vms.iter().filter(|v| v.managed).count();
                let reason = format!(
                    "every monitor of host {} stopped on purpose (DOWN, reason 0x{REASON_SHUTDOWN:02x}) \
                     and the host is off: planned shutdown, not a failure; {managed} managed VM(s) \
                     not relocated",
                    host.name
                );
                self.decide(now_ms, subject, Verdict::PlannedShutdown, reason.clone());
                if !reported {
                    self.set_reported(host.id);
                    self.event(Event {
                        kind: EventKind::HostShutdownDetected,
                        vm: None,
                        hm: None,
                        text: reason,
                        at: now_ms,
                    });
                }
            }
            Ok(false) => {
                self.host_failure(now_ms, host, unhealthy_for, &monitors_text, store)?;
            }
        }
        Ok(())
    }

    /// The VMs on `host`: the HSDB's, corrected by where the engine restarted VMs.
    pub(super) fn vms_on_host(
        &mut self,
        host: HostId,
        store: &mut dyn HealthStore,
    ) -> Result<Vec<hsdb::VmRow>, FdeError> {
        let mut vms = Vec::new();
        for vm in store.vms_on_host(host)? {
            match self.relocated.get(&vm.uuid) {
                Some(h) if *h != host => {}
                _ => vms.push(vm),
            }
        }
        let moved_here: Vec<hsdb::Uuid> = self
            .relocated
            .iter()
            .filter(|(_, h)| **h == host)
            .map(|(vm, _)| *vm)
            .collect();
        for uuid in moved_here {
            if vms.iter().any(|v| v.uuid == uuid) {
                continue;
            }
            if let Some(vm) = store.vm(&uuid)? {
                vms.push(vm);
            }
        }
        vms.sort_by_key(|v| v.uuid);
        Ok(vms)
    }

    fn set_reported(&mut self, host: HostId) {
        self.host_watch.entry(host).or_default().reported = true;
    }

    fn host_failure(
        &mut self,
        now_ms: i64,
        host: &HostView,
        unhealthy_for: i64,
        monitors_text: &str,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        self.host_watch.entry(host.id).or_default().failed = true;
        let vms = self.vms_on_host(host.id, store)?;
        let managed: Vec<hsdb::VmRow> = vms.into_iter().filter(|v| v.managed).collect();
        let reason = format!(
            "every monitor of host {} unhealthy for {} >= host_failure_detection_time {} \
             ({monitors_text}) and the platform says the host is gone: host failure, {} managed \
             VM(s) to relocate",
            host.name,
            show_ms(unhealthy_for),
            show_ms(self.params.host_fdt_ms),
            managed.len()
        );
        self.decide(
            now_ms,
            Subject::Host {
                id: host.id,
                name: host.name.clone(),
            },
            Verdict::HostFailure,
            reason.clone(),
        );
        self.event(Event {
            kind: EventKind::HostFailureDetected,
            vm: None,
            hm: None,
            text: reason,
            at: now_ms,
        });
        let mut todo = Vec::new();
        for vm in managed {
            if self.is_busy(&vm.uuid) {
                let name = super::vm::display_name(&vm);
                self.decide(
                    now_ms,
                    Subject::Vm {
                        uuid: vm.uuid,
                        name,
                    },
                    Verdict::Busy,
                    "already being restarted: not added to the host relocation".into(),
                );
                continue;
            }
            todo.push(vm);
        }
        if self.params.restart_policy == RestartPolicy::Advisory {
            for vm in todo {
                self.advise(now_ms, &vm, host.id, "its host failed");
            }
            return Ok(());
        }
        let batch = self
            .executor
            .open_batch(u32::try_from(todo.len()).unwrap_or(u32::MAX));
        for vm in todo {
            self.queue_job(vm, host.id, RestartKind::HostFailure, true, batch);
        }
        Ok(())
    }

    /// Read and acknowledge pending node events: VIOS_* events (seed 004 L7147-7154,
    /// L7332-7351).
    pub(super) fn node_data(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let tag = self.next_tag(now_ms);
        let data = store.node_data(&self.params.group, tag)?;
        for e in &data.events {
            let kind = node_event_kind(&e.text);
            self.event(Event {
                kind,
                vm: None,
                hm: Some(e.hm),
                text: e.text.trim().to_owned(),
                at: now_ms,
            });
        }
        if let Some(tag) = data.tag {
            let events = std::mem::take(&mut self.events);
            store.record_events(&events)?;
            store.acknowledge_node_data(tag)?;
            tracing::debug!(
                scan = self.scan,
                tag,
                events = data.events.len(),
                "node data acknowledged"
            );
        }
        Ok(())
    }
}

/// The event for a node event text, by its `EVENT_TYPE=` line (seed 004 L7334-7342,
/// L6644-6667).
pub(super) fn node_event_kind(text: &str) -> EventKind {
    let event_type = text
        .lines()
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix("EVENT_TYPE="))
        .unwrap_or("");
    match event_type {
        "NODE_DOWN" => EventKind::ViosNodeFailure,
        "NODE_UP" => EventKind::ViosNodeActive,
        "ADAPTER_UP" => EventKind::NetworkInterfaceActive,
        "ADAPTER_DOWN" => EventKind::NetworkInterfaceFailure,
        _ => EventKind::ViosNodeEvent,
    }
}
