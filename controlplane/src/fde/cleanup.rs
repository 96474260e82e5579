//! Cleanups owed to hosts that could not be reached: the seed's CLEAN_LPARS list
//! (seed-controlplane.md §4.4, seed 004 L3784-3801; gap 16), made durable.
//!
//! A restart away from a host the platform could not reach cannot remove the VM's
//! definition there (and, for a host cut off rather than dead, perhaps a copy still
//! running). The cleanup is *owed*: written to the HSDB's `owed_cleanup` table (a store
//! without it keeps it in memory), so that it survives a daemon restart and a change of
//! leader. An engine loads the owed list at its first scan.
//!
//! At every QuickQuery, for each host owed something that is back — one of its monitors
//! is healthy, or the platform says its hypervisor answers — each owed VM is settled:
//!
//! 1. a VM being restarted (the per-VM lock) waits for the next scan;
//! 2. the platform's view of every host decides (one `hosts` call):
//!    - the VM runs on another live host: the copy on the returning host is a duplicate.
//!      If it runs there, it is **stopped** there (`platform.stop`, then the cleanup) —
//!      a VM never runs on two hosts; the decision log and the event
//!      VM_DUPLICATE_STOPPED say `VM <name> found running on returning host <H> while
//!      it runs on <G>: stopped on <H> (a VM never runs on two hosts)`;
//!    - it runs on the returning host and on no other: that copy is the VM (the HSDB
//!      or an operator moved it back): left alone, the owed row closed `obsolete`;
//!    - it runs nowhere: its definition on the returning host is removed, unless the
//!      VM's current host is the returning host (it lives there again: `obsolete`);
//! 3. `platform.cleanup` removes the definition; its outcome (`cleaned`, `stopped and
//!    cleaned`, `obsolete: …`) ends the owed row, with VM_CLEANUP_DONE; a failure is
//!    counted in the row and tried again at the next scan.

use hsdb::{HostId, Uuid};

use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::platform::{Platform, PlatformError, PowerState};

/// A cleanup owed to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owed {
    /// Its `owed_cleanup` row, when the store keeps them.
    pub id: Option<i64>,
    /// The host.
    pub host: HostId,
    /// The VM.
    pub vm: Uuid,
}

fn running(p: PowerState) -> bool {
    !matches!(
        p,
        PowerState::NotActivated | PowerState::MigratingNotActivated
    )
}

impl Fde {
    /// The cleanups owed to hosts, as the engine knows them now.
    pub fn owed_cleanups(&self) -> Vec<(HostId, Uuid)> {
        self.owed_cleanups.iter().map(|o| (o.host, o.vm)).collect()
    }

    /// Record a cleanup owed to `host` (durably when the store keeps them).
    pub(super) fn owe_cleanup(
        &mut self,
        now_ms: i64,
        host: HostId,
        vm: Uuid,
        relocation: Option<i64>,
        why: &str,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        if self
            .owed_cleanups
            .iter()
            .any(|o| o.host == host && o.vm == vm)
        {
            return Ok(());
        }
        let id = store.owe_cleanup(host, &vm, relocation, why, now_ms)?;
        tracing::warn!(%vm, host = %self.host_name(host), owed = ?id,
            "configuration cleanup owed to host {} until it is back: {why}", self.host_name(host));
        self.owed_cleanups.push(Owed { id, host, vm });
        Ok(())
    }

    /// Settle the cleanups owed to hosts that are back (see the module documentation).
    pub(super) fn owed_cleanup_pass(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        if !self.owed_loaded {
            self.owed_loaded = true;
            let ours: Vec<HostId> = self.hosts.iter().map(|h| h.id).collect();
            for o in store.owed_cleanups()? {
                if ours.contains(&o.host)
                    && !self
                        .owed_cleanups
                        .iter()
                        .any(|x| x.host == o.host && x.vm == o.vm)
                {
                    self.owed_cleanups.push(Owed {
                        id: Some(o.id),
                        host: o.host,
                        vm: o.vm,
                    });
                }
            }
            if !self.owed_cleanups.is_empty() {
                tracing::info!(
                    owed = self.owed_cleanups.len(),
                    "cleanups owed to hosts, read from the HSDB"
                );
            }
        }
        if self.owed_cleanups.is_empty() {
            return Ok(());
        }
        let mut hosts: Vec<HostId> = self.owed_cleanups.iter().map(|o| o.host).collect();
        hosts.sort();
        hosts.dedup();
        let mut back = Vec::new();
        for h in hosts {
            let Some(view) = self.hosts.iter().find(|v| v.id == h).cloned() else {
                continue;
            };
            let healthy = view.monitors.iter().any(|m| self.healthy(m));
            if healthy || matches!(platform.host_alive(&view.name), Ok(true)) {
                back.push(view);
            }
        }
        if back.is_empty() {
            return Ok(());
        }
        let infos = match platform.hosts() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cannot read the hosts for the owed cleanups ({e}): next scan");
                return Ok(());
            }
        };
        for view in back {
            let owed: Vec<Owed> = self
                .owed_cleanups
                .iter()
                .filter(|o| o.host == view.id)
                .cloned()
                .collect();
            for o in owed {
                if self.is_busy(&o.vm) {
                    continue;
                }
                let row = store.vm(&o.vm)?;
                let name = row
                    .as_ref()
                    .map_or_else(|| o.vm.to_string(), super::vm::display_name);
                let subject = Subject::Vm {
                    uuid: o.vm,
                    name: name.clone(),
                };
                let elsewhere: Option<String> = infos
                    .iter()
                    .filter(|i| i.name != view.name)
                    .find(|i| {
                        i.vms
                            .iter()
                            .any(|(s, st)| s.uuid == o.vm && running(st.power))
                    })
                    .map(|i| i.name.clone());
                let here = infos
                    .iter()
                    .find(|i| i.name == view.name)
                    .and_then(|i| i.vms.iter().find(|(s, _)| s.uuid == o.vm))
                    .map(|(_, st)| *st);
                let lives_here = self
                    .current_host(&o.vm, row.as_ref().and_then(|r| r.current_host))
                    == Some(view.id);
                let mut stopped = false;
                match (&elsewhere, here) {
                    (None, Some(st)) if running(st.power) => {
                        let text = format!(
                            "VM {name} runs on host {} and on no other host: its only copy, \
                             left alone; the cleanup owed to {} is obsolete",
                            view.name, view.name
                        );
                        self.settle_owed(
                            now_ms,
                            &o,
                            subject,
                            text,
                            "obsolete: the VM runs there",
                            store,
                        )?;
                        continue;
                    }
                    (None, _) if lives_here => {
                        let text = format!(
                            "VM {name} lives on host {} again: the cleanup owed to it is obsolete",
                            view.name
                        );
                        self.settle_owed(
                            now_ms,
                            &o,
                            subject,
                            text,
                            "obsolete: the VM lives there again",
                            store,
                        )?;
                        continue;
                    }
                    (Some(other), Some(st)) if running(st.power) => {
                        match platform.stop(&view.name, &o.vm) {
                            Ok(()) | Err(PlatformError::NoSuchVm { .. }) => {
                                stopped = true;
                                let text = format!(
                                    "VM {name} found running on returning host {} while it runs \
                                     on {other}: stopped on {} (a VM never runs on two hosts)",
                                    view.name, view.name
                                );
                                tracing::warn!(vm = %o.vm, host = %view.name, %other, "{text}");
                                self.decide(
                                    now_ms,
                                    subject.clone(),
                                    Verdict::Cleanup,
                                    text.clone(),
                                );
                                self.event(Event {
                                    kind: EventKind::VmDuplicateStopped,
                                    vm: Some(o.vm),
                                    hm: None,
                                    text,
                                    at: now_ms,
                                });
                            }
                            Err(e) => {
                                let text = format!(
                                    "VM {name} found running on returning host {} while it runs \
                                     on {other}, and its stop failed: {e}; tried again at the \
                                     next scan",
                                    view.name
                                );
                                tracing::error!(vm = %o.vm, host = %view.name, "{text}");
                                self.decide(now_ms, subject, Verdict::ProbeFailed, text.clone());
                                if let Some(id) = o.id {
                                    store.owed_cleanup_outcome(id, false, &text, now_ms)?;
                                }
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
                match platform.cleanup(&view.name, &o.vm) {
                    Ok(()) | Err(PlatformError::NoSuchVm { .. }) => {
                        let result = if stopped {
                            "stopped and cleaned"
                        } else {
                            "cleaned"
                        };
                        let text = format!(
                            "deferred configuration cleanup of VM {name} on host {} done ({result})",
                            view.name
                        );
                        self.settle_owed(now_ms, &o, subject, text, result, store)?;
                    }
                    Err(e) => {
                        let text = format!(
                            "deferred configuration cleanup of VM {name} on host {} failed: {e}; \
                             kept for the next scan",
                            view.name
                        );
                        self.decide(now_ms, subject, Verdict::ProbeFailed, text.clone());
                        if let Some(id) = o.id {
                            store.owed_cleanup_outcome(id, false, &text, now_ms)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn settle_owed(
        &mut self,
        now_ms: i64,
        o: &Owed,
        subject: Subject,
        text: String,
        result: &str,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        if let Some(id) = o.id {
            store.owed_cleanup_outcome(id, true, result, now_ms)?;
        }
        self.owed_cleanups
            .retain(|x| !(x.host == o.host && x.vm == o.vm));
        tracing::info!(vm = %o.vm, host = %self.host_name(o.host), "{text}");
        self.decide(now_ms, subject, Verdict::Cleanup, text.clone());
        self.event(Event {
            kind: EventKind::VmCleanupDone,
            vm: Some(o.vm),
            hm: None,
            text,
            at: now_ms,
        });
        Ok(())
    }
}
