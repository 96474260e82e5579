//! The monitor's handlers: frames, timers, endpoint events, transmits and the state
//! changes they produce.

use dataplane::endpoint::{EndpointEvent, Outcome};
use dataplane::time::Instant;
use dataplane::wire::VERSION;
use hsdb::Transition;

use super::{Interface, Monitor, epoch_ms};
use crate::quiet::suppressed_note;
use crate::refusals::{Report, Source};
use dataplane::heartbeat::{Change, HbState, SessionKey};

/// The name of an event, for a debug line (its fields are the endpoint's business).
fn event_kind(event: &EndpointEvent) -> &'static str {
    match event {
        EndpointEvent::MonitorFound { .. } => "MonitorFound",
        EndpointEvent::MonitorRestarted { .. } => "MonitorRestarted",
        EndpointEvent::HeartbeatStarted { .. } => "HeartbeatStarted",
        EndpointEvent::HeartbeatStopped { .. } => "HeartbeatStopped",
        EndpointEvent::Message { .. } => "Message",
        EndpointEvent::Delivered { .. } => "Delivered",
        EndpointEvent::Lost { .. } => "Lost",
        _ => "other",
    }
}

/// The heartbeat-table key of interface number `i`.
fn iface_key(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

impl Monitor<'_> {
    /// Frames: drain every socket (the readable ones and, cheaply, the others); a
    /// heartbeat goes straight to the heartbeat table.
    pub(super) fn on_readable(&mut self, now: Instant) {
        let mut failed = false;
        let Monitor {
            interfaces,
            table,
            changes,
            busy,
            ..
        } = self;
        for (i, iface) in interfaces.iter_mut().enumerate() {
            let key_iface = iface_key(i);
            let Interface {
                socket,
                auth,
                auth_log,
                endpoint,
                name,
                down,
                ..
            } = iface;
            let received = socket.recv(|frame| {
                // Refused frames are counted by the authenticator (stats, metrics).
                let Ok(frame) = auth.open(frame) else {
                    return;
                };
                if let Outcome::Heartbeat(peer) = endpoint.handle_frame(now, frame)
                    && let Some(change) = table.heartbeat(
                        SessionKey {
                            iface: key_iface,
                            peer,
                        },
                        now,
                    )
                {
                    changes.push(change);
                }
            });
            if let Some((n, last)) = auth_log.poll(now, auth) {
                tracing::warn!(
                    "interface {name}: {n} frames refused by authentication (last: {last})"
                );
            }
            // A link going down is reported once by the socket; the daemon keeps
            // serving its other interfaces, and the silent VMs become MISSING.
            if let Ok(n) = received
                && n > 0
            {
                *busy = true;
            }
            match received {
                Ok(_) if *down => {
                    tracing::info!(iface = %name, "interface receiving again");
                    *down = false;
                }
                Ok(_) => {}
                Err(e) if !*down => {
                    tracing::warn!(iface = %name, error = %e, "interface cannot receive");
                    *down = true;
                    failed = true;
                }
                Err(_) => {}
            }
        }
        // A receive error is often the first sign of a lost carrier: look now.
        if failed {
            self.on_link_check(now, true);
        }
    }

    /// Timers: the endpoints' (Hello, retransmits, session timeouts), the miss
    /// deadlines, and the monitor's own heartbeat in the HSDB.
    pub(super) fn on_timers(&mut self, now: Instant) {
        for iface in &mut self.interfaces {
            if iface.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                iface.endpoint.handle_timeout(now);
            }
        }
        self.on_link_check(now, false);
        self.table.expire(now, &mut self.changes);
        self.on_rewatch_deadline(now);
        self.on_awaited_deadline(now);
        self.on_report_timeouts(now);
        let mut reports = Vec::new();
        self.refusals.close_if_due(now, &mut reports);
        self.write_refusals(now, reports);
        if now >= self.next_hm_heartbeat {
            self.pending.push(Transition::HmHeartbeat {
                hm: self.config.monitor_uuid,
                at: epoch_ms(&self.clock, now),
            });
            self.next_hm_heartbeat = now + self.config.hm_heartbeat_period;
        }
    }

    /// The previous run's DETECTED VMs that have not re-paired by the deadline are
    /// MISSING (seed 004 L8365-8367, vioHmRestartVMs): one summary line, one
    /// transition per VM.
    fn on_rewatch_deadline(&mut self, now: Instant) {
        let gone = self.rewatch.expire(now);
        if gone.is_empty() {
            return;
        }
        const SHOWN: usize = 5;
        let first: Vec<String> = gone.iter().take(SHOWN).map(ToString::to_string).collect();
        tracing::warn!(
            count = gone.len(),
            within_ms = (self.config.hello_period + self.config.vm_miss_after).as_millis(),
            first = %format_args!("{}{}", first.join(","), if gone.len() > SHOWN { ",…" } else { "" }),
            "VMs DETECTED before the restart did not re-pair: MISSING"
        );
        let (hm, at) = (self.config.monitor_uuid, epoch_ms(&self.clock, now));
        for vm in gone {
            tracing::debug!(%vm, state = "MISSING", "VM did not re-pair after the restart");
            self.pending.push(Transition::Missing { vm, hm, at });
        }
    }

    /// The VMs a START_MONITORING found without a session that have not paired by
    /// their deadline are MISSING.
    fn on_awaited_deadline(&mut self, now: Instant) {
        let gone = self.awaited.expire(now);
        let (hm, at) = (self.config.monitor_uuid, epoch_ms(&self.clock, now));
        for vm in gone {
            tracing::warn!(
                %vm,
                within_ms = (self.config.hello_period + self.config.vm_miss_after).as_millis(),
                "VM whose monitoring was started did not pair: MISSING"
            );
            self.pending.push(Transition::Missing { vm, hm, at });
        }
    }

    /// Every event every endpoint raised this turn.
    pub(super) fn on_endpoint_events(&mut self, now: Instant) {
        for i in 0..self.interfaces.len() {
            while let Some(event) = self.interfaces[i].endpoint.poll_event() {
                self.on_endpoint_event(now, i, event);
            }
        }
    }

    /// One event of interface number `i`'s endpoint.
    pub(super) fn on_endpoint_event(&mut self, now: Instant, i: usize, event: EndpointEvent) {
        let key = |peer| SessionKey {
            iface: iface_key(i),
            peer,
        };
        let hm = self.config.monitor_uuid;
        let at = epoch_ms(&self.clock, now);
        let iface = &mut self.interfaces[i];
        match event {
            EndpointEvent::AgentSyn {
                peer,
                mac,
                uuid,
                ostype,
                ver_lower,
                ver_upper,
            } => {
                // Under a flood of new MACs the peer may have been evicted since (and
                // its id given to another): nothing to do then.
                if iface.endpoint.peer_mac(peer) != Some(mac) {
                    return;
                }
                if let Some(known) = self.known_macs.get(&uuid)
                    && *known != mac
                {
                    let why =
                        format!("VM {uuid} is registered with MAC {known}, SYN came from {mac}");
                    // The peer is removed: no session kept, silence on the wire. The
                    // row and the log line are aggregated per source and interval.
                    iface.endpoint.refuse(peer);
                    self.on_refused(now, i, mac, Some(uuid), &why);
                    return;
                }
                // One line per SYN would let a flood of SYNs flood the log: debug; the
                // discovery below is logged once per VM.
                tracing::debug!(iface = %iface.name, vm = %uuid, %mac, %ostype, "SYN");
                self.syn_facts
                    .insert(key(peer), (ostype, ver_lower, ver_upper));
            }
            EndpointEvent::Established { peer, mac, uuid } => {
                let (ostype, ver_lower, ver_upper) = self
                    .syn_facts
                    .remove(&key(peer))
                    .unwrap_or_else(|| (String::new(), VERSION, VERSION));
                self.known_macs.insert(uuid, mac);
                self.rewatch.paired(&uuid);
                self.awaited.paired(&uuid);
                if self.stopped.contains(&uuid) {
                    // Down on purpose (being restarted): not watched, and asked not to
                    // heartbeat until monitoring starts again (START_HB went with the
                    // handshake).
                    let mut stop = Vec::new();
                    dataplane::message::Message::StopHb.encode(&mut stop);
                    let sent = iface
                        .endpoint
                        .send(now, peer, dataplane::session::Priority::Normal, &stop)
                        .is_ok();
                    self.table.unwatch(key(peer));
                    tracing::info!(
                        iface = %iface.name,
                        vm = %uuid,
                        %mac,
                        stop_hb_sent = sent,
                        "VM paired while its HA monitoring is stopped: not watched"
                    );
                    // Its application report can still be fetched and confirmed.
                    self.on_report_session(now, uuid, key(peer));
                    return;
                }
                // A discovery is a state change too: summarised at scale (quiet.rs).
                if self
                    .transitions
                    .record(now, uuid, "DISCOVERED", iface_key(i))
                {
                    tracing::info!(
                        iface = %iface.name,
                        vm = %uuid,
                        %mac,
                        hb_period_ms = self.config.hb_period.as_millis(),
                        "VM discovered, START_HB sent"
                    );
                } else {
                    tracing::debug!(
                        iface = %iface.name,
                        vm = %uuid,
                        %mac,
                        hb_period_ms = self.config.hb_period.as_millis(),
                        "VM discovered, START_HB sent"
                    );
                }
                self.pending.push(Transition::Discovered {
                    vm: uuid,
                    hm,
                    mac,
                    ostype,
                    ver_lower,
                    ver_upper,
                    at,
                });
                self.table.watch(key(peer), uuid, now);
                self.on_report_session(now, uuid, key(peer));
            }
            EndpointEvent::Shutdown { peer } => {
                if let Some(c) = self.table.suspend(key(peer), now) {
                    self.changes.push(c);
                }
            }
            EndpointEvent::Doorbell { peer, vector } => {
                if let Some(vm) = iface.endpoint.peer_uuid(peer) {
                    self.pending
                        .push(Transition::Doorbell { vm, hm, vector, at });
                }
            }
            EndpointEvent::SynRefused { mac, why, .. } => {
                self.on_refused(now, i, mac, None, &why);
            }
            EndpointEvent::Message { peer, payload } => {
                if !self.on_report_message(now, i, peer, &payload) {
                    tracing::debug!(
                        iface = %self.interfaces[i].name,
                        verb = %String::from_utf8_lossy(
                            dataplane::message::Message::parse(&payload)
                                .map_or(&b"?"[..], |m| m.verb())
                        ),
                        "message from an agent not used by the monitor"
                    );
                }
            }
            EndpointEvent::Closed { peer, mac, reason } => {
                if reason.is_handshake() {
                    // Counted in `handshakes_failed`; rate-limited, since forged MACs
                    // fail handshakes by the thousand.
                    if let Some(n) = self.warnings.handshake_failed.check(now) {
                        tracing::warn!(
                            iface = %iface.name,
                            %mac,
                            %reason,
                            "handshake failed: the VM at this MAC is not monitored until it pairs again{}",
                            suppressed_note(n)
                        );
                    }
                } else if iface.endpoint.was_established(peer) {
                    // Rate-limited: 10,000 silent VMs close 10,000 sessions.
                    match self.warnings.session_closed.check(now) {
                        Some(n) => tracing::info!(
                            iface = %iface.name,
                            %mac,
                            %reason,
                            "session closed{}",
                            suppressed_note(n)
                        ),
                        None => {
                            tracing::debug!(iface = %iface.name, %mac, %reason, "session closed")
                        }
                    }
                } else {
                    tracing::debug!(iface = %iface.name, %mac, %reason, "session closed before it was established");
                }
            }
            other => tracing::debug!(
                iface = %iface.name,
                event = event_kind(&other),
                "endpoint event not used by the monitor"
            ),
        }
    }

    /// A SYN from `mac` on interface number `i` was refused: counted, and written and
    /// logged when it is the first from this source in the interval.
    fn on_refused(
        &mut self,
        now: Instant,
        i: usize,
        mac: dataplane::wire::MacAddr,
        vm: Option<dataplane::message::Uuid>,
        why: &str,
    ) {
        let source = Source {
            iface: iface_key(i),
            mac,
        };
        let mut reports = Vec::new();
        if let Some(first) = self.refusals.refused(now, source, vm, why, &mut reports) {
            reports.push(first);
        }
        self.write_refusals(now, reports);
    }

    /// One `SYN_REFUSED` event row and one warning line per report.
    fn write_refusals(&mut self, now: Instant, reports: Vec<Report>) {
        let at = epoch_ms(&self.clock, now);
        for report in reports {
            let iface = report
                .iface()
                .and_then(|i| self.interfaces.get(usize::from(i)))
                .map_or("-", |i| i.name.as_str());
            let text = report.text(iface);
            tracing::warn!(iface = %iface, kind = "SYN_REFUSED", "{text}");
            self.pending.push(Transition::Event {
                kind: "SYN_REFUSED".into(),
                vm: report.vm(),
                hm: Some(self.config.monitor_uuid),
                text,
                at,
            });
        }
    }

    /// Send every frame the endpoints have ready.
    pub(super) fn flush_transmits(&mut self, now: Instant) {
        for iface in &mut self.interfaces {
            while let Some(len) = iface.endpoint.poll_transmit(now, &mut self.tx) {
                let len = match iface.auth.seal(&mut self.tx, len) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("{}: cannot seal a frame: {e}", iface.name);
                        continue;
                    }
                };
                if let Err(e) = iface.socket.send(&self.tx[..len])
                    && !iface.down
                    && iface.carrier
                    && let Some(n) = self.warnings.send_failed.check(now)
                {
                    tracing::warn!(
                        iface = %iface.name,
                        error = %e,
                        "send failed{}",
                        suppressed_note(n)
                    );
                }
            }
        }
    }

    /// Turn this turn's heartbeat state changes into transitions and hand everything
    /// pending to the HSDB writer.
    pub(super) fn commit_changes(&mut self) {
        let hm = self.config.monitor_uuid;
        let now = self.clock.now();
        if let Some(summary) = self.transitions.poll(now) {
            tracing::info!("{summary}");
        }
        self.warnings.report_suppressed(now);
        for c in self.changes.drain(..) {
            let at = epoch_ms(&self.clock, c.at);
            let vm = c.vm;
            // The first few of a burst at info, the rest at debug and summed up once
            // the burst is over (quiet.rs).
            let loud = self
                .transitions
                .record(c.at, vm, c.state.name(), c.key.iface);
            log_change(&self.interfaces, self.config.vm_miss_after, &c, loud);
            self.pending.push(match c.state {
                HbState::Detected | HbState::Awaiting => Transition::Detected { vm, hm, at },
                HbState::Missing => Transition::Missing { vm, hm, at },
                HbState::Suspended => Transition::Suspended { vm, hm, at },
            });
        }
        if !self.pending.is_empty() || !self.completions.is_empty() {
            self.writer.send_batch(crate::writer::Batch {
                transitions: std::mem::take(&mut self.pending),
                completions: std::mem::take(&mut self.completions),
            });
        }
    }
}

/// One line per heartbeat state change, with the interface; a MISSING one says how
/// long the VM had been silent. At info when `loud`, else at debug.
fn log_change(interfaces: &[Interface], miss_after: std::time::Duration, c: &Change, loud: bool) {
    let iface = interfaces.get(usize::from(c.key.iface));
    let name = iface.map_or("-", |i| i.name.as_str());
    let state = c.state.name();
    let (silent_ms, note) = if c.state == HbState::Missing {
        match iface.and_then(|i| i.endpoint.last_heartbeat(c.key.peer)) {
            Some(last) => (Some(c.at.saturating_duration_since(last).as_millis()), ""),
            None => (
                Some(miss_after.as_millis()),
                ": no heartbeat since its session opened",
            ),
        }
    } else {
        (None, "")
    };
    if loud {
        tracing::info!(vm = %c.vm, iface = %name, state = %state, silent_ms, "VM state changed{note}");
    } else {
        tracing::debug!(vm = %c.vm, iface = %name, state = %state, silent_ms, "VM state changed{note}");
    }
}
