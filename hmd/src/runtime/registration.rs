//! The monitor's registration in the HSDB (the host, this monitor's incarnation, its
//! interfaces) and what the HSDB says back about its VMs.
//!
//! Normally done at start-up, before the writer starts. With PostgreSQL unreachable at
//! start, `hmd` monitors anyway: the writer registers on its first connection, before it
//! commits anything (every transition names this monitor), and hands what it read to
//! the dataplane thread, which merges it then ([`Monitor::on_registered`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use dataplane::heartbeat::SessionKey;
use dataplane::message::{HelloId, Message, Uuid};
use dataplane::time::Instant;
use dataplane::wire::{MacAddr, VERSION};
use hsdb::{HeartbeatState, HmRecord, HostRecord, Hsdb};
use mio::Waker;

use super::Monitor;
use crate::config::Config;

/// What the monitor registers: owned, so that the writer thread can do it later.
#[derive(Debug, Clone)]
pub(super) struct Registration {
    host: HostRecord,
    hm: HmRecord,
    /// Its interfaces: rows of others are removed.
    interfaces: Vec<String>,
}

impl Registration {
    pub(super) fn new(
        config: &Config,
        hello: HelloId,
        first_mac: MacAddr,
        interfaces: Vec<String>,
    ) -> Registration {
        Registration {
            host: HostRecord {
                id: config.host_id,
                name: config.host_name.clone(),
                machine_type: String::new(),
                model: String::new(),
                serial: String::new(),
                cpu_milli: 0,
                memory_mb: 0,
                host_group: String::new(),
            },
            hm: HmRecord {
                uuid: config.monitor_uuid,
                host: config.host_id,
                mac: first_mac,
                incarnation: hello,
                version: VERSION,
                at: 0,
            },
            interfaces,
        }
    }

    /// Register the host (if absent) and this incarnation at `at` (ms since the Unix
    /// epoch), forget the interfaces no longer configured, and read what the HSDB holds
    /// about this monitor's VMs.
    pub(super) fn register(&self, hsdb: &mut Hsdb, at: i64) -> Result<Registered, hsdb::Error> {
        if hsdb.host(self.host.id)?.is_none() {
            hsdb.upsert_host(&self.host)?;
        }
        hsdb.register_hm(&HmRecord { at, ..self.hm })?;
        let names: Vec<&str> = self.interfaces.iter().map(String::as_str).collect();
        hsdb.retain_hm_interfaces(&self.hm.uuid, &names)?;
        // One read of this monitor's rows (docs/hsdb.md: `vm_hms_of`): MACs and states.
        let mut found = Registered::default();
        for row in hsdb.vm_hms_of(&self.hm.uuid)? {
            if let Some(mac) = row.mac {
                found.known_macs.insert(row.vm, mac);
            }
            match row.last_state {
                HeartbeatState::Detected => found.detected.push(row.vm),
                // Stopped by the control plane: not watched, not re-watched, until a START.
                HeartbeatState::Stopped => {
                    found.stopped.insert(row.vm);
                }
                HeartbeatState::Missing | HeartbeatState::Suspended => {}
            }
        }
        tracing::info!(
            monitor = %self.hm.uuid,
            incarnation = %self.hm.incarnation,
            hsdb = %hsdb.path().display(),
            known_vms = found.known_macs.len(),
            detected_by_previous_run = found.detected.len(),
            stopped_by_control_plane = found.stopped.len(),
            "monitor registered in the HSDB"
        );
        Ok(found)
    }

    /// The writer's hook for a start without the HSDB: on its first connection,
    /// register, hand the result to the dataplane thread and wake it; nothing on later
    /// ones.
    pub(super) fn on_first_connect(
        self,
        tx: Sender<Registered>,
        waker: Arc<Waker>,
    ) -> impl FnMut(&mut Hsdb) -> Result<(), hsdb::Error> + Send + 'static {
        let mut pending = Some(self);
        move |hsdb: &mut Hsdb| {
            let Some(registration) = &pending else {
                return Ok(());
            };
            let found = registration.register(hsdb, now_ms())?;
            pending = None;
            // Sent once, into a channel of one: never full.
            let _ = tx.try_send(found);
            if let Err(e) = waker.wake() {
                tracing::warn!("cannot wake the dataplane thread for the registration: {e}");
            }
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(crate::writer::epoch_ms()).unwrap_or(i64::MAX)
}

/// What the HSDB says about this monitor's VMs at registration.
#[derive(Debug, Default)]
pub(super) struct Registered {
    /// The MAC of every VM as recorded for this monitor.
    pub(super) known_macs: HashMap<Uuid, MacAddr>,
    /// The VMs the previous run left DETECTED.
    pub(super) detected: Vec<Uuid>,
    /// The VMs whose monitoring the control plane stopped (STOPPED rows).
    pub(super) stopped: HashSet<Uuid>,
}

/// A registration that waits for the HSDB.
#[derive(Debug)]
pub(super) struct Awaited {
    /// From the writer, once.
    pub(super) rx: Receiver<Registered>,
    /// The previous run's VMs are given up on at the same deadline as after a start
    /// with the HSDB: start + a Hello period + `vm_miss_after`.
    pub(super) rewatch_deadline: Instant,
}

impl Monitor<'_> {
    /// The registration the writer made late, if it has come: what the HSDB says is
    /// merged into what this run learnt meanwhile.
    pub(super) fn on_registered(&mut self, now: Instant) {
        let Some(awaited) = &self.registration else {
            return;
        };
        let Ok(found) = awaited.rx.try_recv() else {
            return;
        };
        let deadline = awaited.rewatch_deadline;
        self.registration = None;
        let Registered {
            known_macs,
            detected,
            stopped,
        } = found;
        let known = known_macs.len();
        for (vm, mac) in known_macs {
            self.known_macs.entry(vm).or_insert(mac);
        }
        let mut of_interest: HashSet<Uuid> = stopped.clone();
        of_interest.extend(detected.iter().copied());
        let sessions = self.established_sessions(&of_interest);
        // The control plane's stops outlive the restart, as at a normal start: the
        // sessions paired meanwhile are no longer watched and told to stop heartbeats.
        let mut newly_stopped = 0;
        for vm in stopped {
            if !self.stopped.insert(vm) {
                continue;
            }
            newly_stopped += 1;
            self.rewatch.paired(&vm);
            self.awaited.paired(&vm);
            for &key in sessions.get(&vm).map_or(&[][..], Vec::as_slice) {
                self.table.unwatch(key);
                self.tell(now, key, &Message::StopHb);
            }
        }
        // The previous run's DETECTED VMs that have not paired with this run: MISSING
        // unless they do by the usual deadline (at once if it is past).
        let mut rewatched = 0;
        for vm in detected {
            if !self.stopped.contains(&vm) && !sessions.contains_key(&vm) {
                self.rewatch.add(vm, deadline);
                rewatched += 1;
            }
        }
        tracing::info!(
            known_vms = known,
            stopped_by_control_plane = newly_stopped,
            rewatched,
            "HSDB registration done after it became available: the control plane's stops \
             applied, the previous run's VMs not paired yet re-watched"
        );
    }

    /// The established sessions of `vms`, by VM: one pass over the endpoints' tables.
    pub(super) fn established_sessions(
        &self,
        vms: &HashSet<Uuid>,
    ) -> HashMap<Uuid, Vec<SessionKey>> {
        let mut found: HashMap<Uuid, Vec<SessionKey>> = HashMap::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            let Ok(iface_key) = u16::try_from(i) else {
                continue;
            };
            for peer in iface.endpoint.peers() {
                if iface.endpoint.is_established(peer)
                    && let Some(vm) = iface.endpoint.peer_uuid(peer)
                    && vms.contains(&vm)
                {
                    found.entry(vm).or_default().push(SessionKey {
                        iface: iface_key,
                        peer,
                    });
                }
            }
        }
        found
    }
}
