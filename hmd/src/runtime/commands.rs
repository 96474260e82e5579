//! Acting on the control plane's commands (`crate::commands`): the dataplane thread owns
//! the sessions and the heartbeat table, so it is the one that stops, starts and
//! forgets; the HSDB writer read the commands and marks them done.
//!
//! - **STOP_MONITORING** — the VM is down on purpose (being restarted): its sessions
//!   leave the heartbeat table (no MISSING, whatever its silence), `STOP_HB` is sent on
//!   each established one so that the agent stops heartbeating, and the sessions are
//!   kept (a START needs no new handshake). The VM is remembered as stopped: if its
//!   agent pairs again meanwhile (the VM rebooted), the new session is not watched
//!   either and gets `STOP_HB` at once. The stop is written to the HSDB
//!   (`StopWatching`: the monitor's row of the VM becomes STOPPED), so it outlives a
//!   restart of the monitor: the next run reads the STOPPED rows and does not watch
//!   those VMs (docs/operations.md).
//! - **START_MONITORING** — each established session of the VM is watched again from
//!   the command on (`START_HB` sent; MISSING unless a heartbeat comes within
//!   `vm_miss_after`). A VM without an established session is awaited: watched when it
//!   pairs, MISSING if it has not paired within a Hello period plus `vm_miss_after` —
//!   the same bound as after a monitor restart. `StartWatching` turns a STOPPED row
//!   DETECTED again (a restart from then on re-watches it).
//! - **FORGET_VM** — the VM moved to another host: every peer of it is removed from the
//!   endpoints (which frees its place in the bounded peer table), it leaves the
//!   heartbeat table and every list of this thread, and its row for this monitor is
//!   deleted (`Forget`; a move already deleted it, in the transaction that queued the
//!   command, and then this changes nothing) — so a restart does not watch it again.
//!   If the VM is in fact still here and talks to the monitor, it pairs again and is
//!   discovered again: a command cannot make a monitor deaf to a VM it hears.
//!
//! - **FETCH_APP_REPORT**, **CONFIRM_APP_REPORT** — an exchange with the VM's agent
//!   begins (`reports.rs`); the command completes when the agent has answered or the
//!   exchange timed out, a later turn.
//!
//! Acting twice is harmless (a restart reads the commands not yet marked done again):
//! a second STOP is `ALREADY_STOPPED`, a second START `ALREADY_MONITORED`, a second
//! FORGET `UNKNOWN_VM`.

use std::collections::{HashMap, HashSet};

use dataplane::heartbeat::SessionKey;
use dataplane::message::{Message, Uuid};
use dataplane::session::Priority;
use dataplane::time::Instant;

use super::{Monitor, epoch_ms};
use hsdb::{CommandKind, Transition};

use crate::commands::{Code, Command, Completion, kind_index};

/// Commands handled since the start, per kind, and those about VMs not known here.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CommandCounts {
    /// Per [`kind_index`].
    pub(super) by_kind: [u64; CommandKind::ALL.len()],
    /// Of which about a VM this monitor never knew.
    pub(super) unknown_vm: u64,
}

impl CommandCounts {
    /// Every command handled.
    pub(super) fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

/// The sessions of one VM: every peer whose SYN named it, on any interface.
#[derive(Debug, Default)]
struct Sessions {
    keys: Vec<SessionKey>,
}

impl Monitor<'_> {
    /// Act on every command the writer handed over.
    pub(super) fn on_commands(&mut self, now: Instant) {
        while let Ok(batch) = self.commands.try_recv() {
            let mut sessions = self.sessions_of(&batch);
            for command in batch {
                self.command_counts.by_kind[kind_index(command.kind)] += 1;
                let (code, detail) = match command.kind {
                    CommandKind::StopMonitoring => self.stop_monitoring(now, &command, &sessions),
                    CommandKind::StartMonitoring => self.start_monitoring(now, &command, &sessions),
                    CommandKind::ForgetVm => {
                        let keys = sessions.remove(&command.vm).unwrap_or_default();
                        self.forget_vm(now, &command, &keys)
                    }
                    CommandKind::FetchAppReport | CommandKind::ConfirmAppReport => {
                        let found = sessions.get(&command.vm);
                        let known = self.knows(&command.vm, found);
                        let keys = found.map_or(Vec::new(), |s| s.keys.clone());
                        match self.begin_report_exchange(now, &command, &keys, known) {
                            Some(outcome) => outcome,
                            // In progress: completed when the agent answers.
                            None => continue,
                        }
                    }
                };
                if code == Code::UnknownVm {
                    self.command_counts.unknown_vm += 1;
                }
                let at = epoch_ms(&self.clock, now);
                tracing::info!(
                    command = %command.kind,
                    id = command.id,
                    vm = %command.vm,
                    outcome = %code,
                    waited_ms = at.saturating_sub(command.created_ms),
                    "{detail}"
                );
                self.completions.push(Completion {
                    id: command.id,
                    result: format!("{code}: {detail}"),
                    at,
                });
            }
        }
    }

    /// The peers of the batch's VMs, by VM: one pass over the endpoints' tables.
    fn sessions_of(&self, batch: &[Command]) -> HashMap<Uuid, Sessions> {
        let vms: HashSet<Uuid> = batch.iter().map(|c| c.vm).collect();
        let mut found: HashMap<Uuid, Sessions> = HashMap::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            let Ok(iface_key) = u16::try_from(i) else {
                continue;
            };
            for peer in iface.endpoint.peers() {
                if let Some(vm) = iface.endpoint.peer_uuid(peer)
                    && vms.contains(&vm)
                {
                    found.entry(vm).or_default().keys.push(SessionKey {
                        iface: iface_key,
                        peer,
                    });
                }
            }
        }
        found
    }

    /// Whether this monitor knows `vm` at all: a session, a row with its MAC, a
    /// previous run's VM awaited, a START awaited, or stopped.
    fn knows(&self, vm: &Uuid, sessions: Option<&Sessions>) -> bool {
        sessions.is_some_and(|s| !s.keys.is_empty())
            || self.known_macs.contains_key(vm)
            || self.rewatch.contains(vm)
            || self.awaited.contains(vm)
            || self.stopped.contains(vm)
    }

    /// Queue a one-word HVNCP message to the agent of `key` if its session is
    /// established. True if queued.
    pub(super) fn tell(&mut self, now: Instant, key: SessionKey, message: &Message<'_>) -> bool {
        let Some(iface) = self.interfaces.get_mut(usize::from(key.iface)) else {
            return false;
        };
        if !iface.endpoint.is_established(key.peer) {
            return false;
        }
        let mut payload = Vec::new();
        message.encode(&mut payload);
        iface
            .endpoint
            .send(now, key.peer, Priority::Normal, &payload)
            .is_ok()
    }

    fn stop_monitoring(
        &mut self,
        now: Instant,
        command: &Command,
        sessions: &HashMap<Uuid, Sessions>,
    ) -> (Code, String) {
        let vm = command.vm;
        let found = sessions.get(&vm);
        if self.stopped.contains(&vm) {
            return (
                Code::AlreadyStopped,
                "HA monitoring of the VM was stopped already".into(),
            );
        }
        if !self.knows(&vm, found) {
            return (
                Code::UnknownVm,
                "this monitor never knew the VM; nothing to stop".into(),
            );
        }
        let keys = found.map_or(&[][..], |s| &s.keys[..]);
        let mut unwatched = 0;
        let mut told = 0;
        for &key in keys {
            if self.table.unwatch(key).is_some() {
                unwatched += 1;
            }
            if self.tell(now, key, &Message::StopHb) {
                told += 1;
            }
        }
        // No verdict owed any more: neither the restart's nor a START's.
        self.rewatch.paired(&vm);
        self.awaited.paired(&vm);
        self.stopped.insert(vm);
        // In the HSDB too: a restarted monitor must not watch it again.
        self.pending.push(Transition::StopWatching {
            vm,
            hm: self.config.monitor_uuid,
            at: epoch_ms(&self.clock, now),
        });
        (
            Code::Stopped,
            format!(
                "HA monitoring stopped: {unwatched} session(s) no longer watched, STOP_HB sent on {told}, sessions kept"
            ),
        )
    }

    fn start_monitoring(
        &mut self,
        now: Instant,
        command: &Command,
        sessions: &HashMap<Uuid, Sessions>,
    ) -> (Code, String) {
        let vm = command.vm;
        let found = sessions.get(&vm);
        let known = self.knows(&vm, found);
        self.stopped.remove(&vm);
        // A STOPPED row is watched again (DETECTED); any other row is left as it is.
        self.pending.push(Transition::StartWatching {
            vm,
            hm: self.config.monitor_uuid,
            at: epoch_ms(&self.clock, now),
        });
        let keys = found.map_or(&[][..], |s| &s.keys[..]);
        let period_ms = u32::try_from(self.config.hb_period.as_millis()).unwrap_or(u32::MAX);
        let mut watched = 0;
        let mut already = 0;
        for &key in keys {
            let established = self
                .interfaces
                .get(usize::from(key.iface))
                .is_some_and(|i| i.endpoint.is_established(key.peer));
            if !established {
                continue;
            }
            if self.table.get(key).is_some() {
                already += 1;
                continue;
            }
            // From the command on, the ordinary wait: MISSING unless a heartbeat comes
            // within vm_miss_after.
            self.tell(
                now,
                key,
                &Message::StartHb {
                    period_ms: Some(period_ms),
                },
            );
            self.table.watch(key, vm, now);
            watched += 1;
        }
        let miss_after_ms = self.config.vm_miss_after.as_millis();
        if watched > 0 {
            return (
                Code::Started,
                format!(
                    "HA monitoring started: {watched} session(s) watched again, START_HB sent; MISSING unless a heartbeat comes within {miss_after_ms} ms"
                ),
            );
        }
        if already > 0 {
            return (
                Code::AlreadyMonitored,
                format!("the VM is watched already on {already} session(s)"),
            );
        }
        // No established session: watched when it pairs, MISSING if it does not in
        // time (a Hello period for the agent to see one, then the ordinary wait).
        let within = self.config.hello_period + self.config.vm_miss_after;
        if self.rewatch.contains(&vm) {
            // A previous run's VM, already owed its verdict.
            return (
                Code::AlreadyMonitored,
                "the VM is awaited already (it has not re-paired since the monitor started)".into(),
            );
        }
        self.awaited.add(vm, now + within);
        let within_ms = within.as_millis();
        if known {
            (
                Code::AwaitingPairing,
                format!(
                    "no session with the VM now: watched once it pairs, MISSING unless it pairs within {within_ms} ms"
                ),
            )
        } else {
            (
                Code::UnknownVm,
                format!(
                    "this monitor never knew the VM: watched once it pairs, MISSING unless it pairs within {within_ms} ms"
                ),
            )
        }
    }

    fn forget_vm(&mut self, now: Instant, command: &Command, found: &Sessions) -> (Code, String) {
        let vm = command.vm;
        // Its row goes (a move deleted it already: then nothing changes), so a restart
        // does not watch it again.
        self.pending.push(Transition::Forget {
            vm,
            hm: self.config.monitor_uuid,
            at: epoch_ms(&self.clock, now),
        });
        let known = self.knows(&vm, Some(found));
        let mut removed = 0;
        for &key in &found.keys {
            self.table.unwatch(key);
            self.syn_facts.remove(&key);
            if let Some(iface) = self.interfaces.get_mut(usize::from(key.iface))
                && iface.endpoint.peer_uuid(key.peer) == Some(vm)
            {
                iface.endpoint.remove_peer(key.peer);
                removed += 1;
            }
        }
        self.known_macs.remove(&vm);
        self.rewatch.paired(&vm);
        self.awaited.paired(&vm);
        self.stopped.remove(&vm);
        if known {
            (
                Code::Forgotten,
                format!("VM forgotten: {removed} peer(s) removed, no longer watched or awaited"),
            )
        } else {
            (
                Code::UnknownVm,
                "this monitor never knew the VM; nothing to forget".into(),
            )
        }
    }
}
