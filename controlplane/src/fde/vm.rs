//! VM decisions (NeedsAttention), seed 004 L4804-4871, traces L13209-13502.
//!
//! Thresholds are reached at equality (gap 7): `missedHb − HBoffset ≥ VMFDT` pings,
//! `≥ 2 × VMFDT` raises VM_NONRESP_DETECTED, `≥ 86400 s` VM_LPM_HANG_DETECTED. HBoffset
//! applies to every comparison but the Not Activated one, which reads the raw count as
//! the seed does. HBoffset is reset when the VM's heartbeats resume (it leaves a complete
//! NeedsAttention reply's misses) and when the engine restarted it (gap 8).

use std::collections::{HashMap, HashSet};

use hsdb::{HostId, Uuid, VmRow};

use super::{
    DBELL_APP_CRITICAL_FAILURE, Fde, FdeError, HealthStore, LPM_HANG_AFTER_S, NaView, Subject,
    Verdict, VmAttention,
};
use crate::events::{Event, EventKind};
use crate::hs::DiscoveryType;
use crate::params::RestartPolicy;
use crate::platform::{Platform, PowerState};
use crate::relocate::RestartKind;

/// A VM's name, or its UUID when it has none.
pub(super) fn display_name(vm: &VmRow) -> String {
    if vm.name.is_empty() {
        vm.uuid.to_string()
    } else {
        vm.name.clone()
    }
}

impl Fde {
    /// VM decisions on one NeedsAttention reply.
    pub(super) fn vm_decisions(
        &mut self,
        now_ms: i64,
        na: &NaView,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        // Whether a host's monitors are deaf, asked once per host per scan.
        let mut deaf: HashMap<HostId, Option<String>> = HashMap::new();
        let mut missing: HashSet<Uuid> = HashSet::new();
        for a in &na.vms {
            if a.missed_hb_s.is_some() {
                missing.insert(a.uuid);
            }
            self.vm_attention(now_ms, a, store, platform, &mut deaf)?;
        }
        // Heartbeats resumed: a VM watched for misses that a complete reply no longer
        // lists forgets its HBoffset and its reported events (gap 8).
        if !na.more {
            self.vm_watch.retain(|vm, _| missing.contains(vm));
        }
        Ok(())
    }

    fn vm_attention(
        &mut self,
        now_ms: i64,
        a: &VmAttention,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
        deaf: &mut HashMap<HostId, Option<String>>,
    ) -> Result<(), FdeError> {
        let row = store.vm(&a.uuid)?;
        let name = row
            .as_ref()
            .map_or_else(|| a.uuid.to_string(), display_name);
        let subject = Subject::Vm {
            uuid: a.uuid,
            name: name.clone(),
        };
        let host_name = self.host_name(a.host);
        // The engine itself restarted the VM on the host it is now reported on: a MOVED
        // discovery there is the restart's, not a live migration.
        let restarted_here = self.relocated.get(&a.uuid) == Some(&a.host);
        if let Some(moved) = self.relocated.get(&a.uuid).copied() {
            if row.as_ref().and_then(|r| r.current_host) == Some(moved) {
                // The HSDB caught up with the restart.
                self.relocated.remove(&a.uuid);
            } else if moved != a.host && a.discovery.is_none() {
                self.decide(
                    now_ms,
                    subject,
                    Verdict::NoAction,
                    format!(
                        "VM {name} was restarted on host {}: what host {host_name} reports about it is stale",
                        self.host_name(moved)
                    ),
                );
                return Ok(());
            }
        }
        match a.discovery {
            Some(DiscoveryType::Moved) if restarted_here => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::Moved,
                    format!(
                        "VM {name} came up on host {host_name}, where the engine restarted or \
                         moved it: not a failure, nothing to decide"
                    ),
                );
                // Its misses on the old host are history.
                self.vm_watch.remove(&a.uuid);
            }
            Some(DiscoveryType::Moved) => {
                let text = format!(
                    "VM {name} moved to host {host_name} (live migration{}): not a failure",
                    a.missed_hm_entry
                        .map(|m| format!(", no row yet for monitor {m}"))
                        .unwrap_or_default()
                );
                self.decide(now_ms, subject.clone(), Verdict::Moved, text.clone());
                self.event(Event {
                    kind: EventKind::VmMoved,
                    vm: Some(a.uuid),
                    hm: None,
                    text,
                    at: now_ms,
                });
                // Its misses on the old host are history.
                self.vm_watch.remove(&a.uuid);
            }
            Some(DiscoveryType::Unmanaged | DiscoveryType::CannotManage) => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::NoAction,
                    format!(
                        "VM {name} discovered on host {host_name}, not managed ({})",
                        a.state
                    ),
                );
            }
            Some(DiscoveryType::Managed) | None => {
                if a.state_chg {
                    self.decide(
                        now_ms,
                        subject.clone(),
                        Verdict::NoAction,
                        format!(
                            "VM {name} on host {host_name}: monitoring state now {}",
                            a.state
                        ),
                    );
                }
            }
        }
        if let Some(vector) = a.short_msg {
            self.doorbell(now_ms, a, row.as_ref(), &subject, vector, store)?;
        }
        if let Some(missed) = a.missed_hb_s {
            self.missed_heartbeats(
                now_ms,
                a,
                row.as_ref(),
                &subject,
                missed,
                store,
                platform,
                deaf,
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn missed_heartbeats(
        &mut self,
        now_ms: i64,
        a: &VmAttention,
        row: Option<&VmRow>,
        subject: &Subject,
        missed: u64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
        deaf: &mut HashMap<HostId, Option<String>>,
    ) -> Result<(), FdeError> {
        let Subject::Vm { name, .. } = subject else {
            return Ok(());
        };
        let name = name.clone();
        let Some(row) = row else {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!("VM {name} missed HB count {missed} but is not in the HSDB"),
            );
            return Ok(());
        };
        if !row.managed {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!("VM {name} is not managed: missed HB count {missed} ignored"),
            );
            return Ok(());
        }
        let vp = self.params.for_vm(row);
        if !vp.ha_monitor {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!("VM {name} has HA monitoring disabled: missed HB count {missed} ignored"),
            );
            return Ok(());
        }
        if self.is_busy(&a.uuid) {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::Busy,
                format!("VM {name} is being restarted: missed HB count {missed} not decided again"),
            );
            return Ok(());
        }
        if self.host_watch.get(&a.host).is_some_and(|w| w.failed) {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::Busy,
                format!(
                    "host {} of VM {name} failed: the host relocation covers it",
                    self.host_name(a.host)
                ),
            );
            return Ok(());
        }
        let watch = self.vm_watch.entry(a.uuid).or_default();
        watch.hb_missed_s = missed;
        let offset = watch.hb_offset_s;
        let effective = missed.saturating_sub(offset);
        let vmfdt_ms = vp.vmfdt_ms;
        let vmfdt_s = vmfdt_ms / 1000;
        let offset_text = if offset > 0 {
            format!(" (HBoffset {offset}, counted {effective})")
        } else {
            String::new()
        };
        if secs_ms(effective) < vmfdt_ms {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!(
                    "Missed HB count {missed} for VM {name} is less than its VMFDT \
                     {vmfdt_s}{offset_text}"
                ),
            );
            return Ok(());
        }
        // Evidence only if every monitor of the host hears its VMs.
        if let Some(why) = self.deaf_monitors(a.host, store, deaf)? {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::Withheld,
                format!("missed HB count {missed} for VM {name} withheld: {why}"),
            );
            return Ok(());
        }
        match platform.ping(&a.uuid) {
            Err(e) => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::ProbeFailed,
                    format!(
                        "missed HB count {missed} >= VMFDT {vmfdt_s} for VM {name}, but ping \
                         failed ({e}): no evidence, decided again at the next scan"
                    ),
                );
                return Ok(());
            }
            Ok(true) => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::Pingable,
                    format!("VM {name} is pingable ignoring missed HB count {missed}"),
                );
                return Ok(());
            }
            Ok(false) => {}
        }
        let first = !self.watch(&a.uuid).failure_reported;
        self.watch(&a.uuid).failure_reported = true;
        if first {
            let text = format!(
                "Limit reached for VM {name}: missed HB count {missed}{offset_text} >= VMFDT \
                 {vmfdt_s}; not able to ping VM {name}"
            );
            self.event(Event {
                kind: EventKind::VmFailureDetected,
                vm: Some(a.uuid),
                hm: None,
                text,
                at: now_ms,
            });
        }
        let host_name = self.host_name(a.host);
        let status = match platform.vm_status(&host_name, &a.uuid) {
            Ok(s) => s,
            Err(e) => {
                self.decide(
                    now_ms,
                    subject.clone(),
                    Verdict::ProbeFailed,
                    format!(
                        "VM {name} not pingable with missed HB count {missed} >= VMFDT {vmfdt_s}, \
                         but its state on host {host_name} is unknown ({e}): decided again at the \
                         next scan"
                    ),
                );
                return Ok(());
            }
        };
        let numbers = format!("missed HB count {missed}{offset_text}, VMFDT {vmfdt_s}");
        match status.power {
            PowerState::Running if status.os_started => {
                let reason = format!(
                    "VM failure detected. Initiating recovery for VM {name}: state Running on host \
                     {host_name}, OS had started, not pingable, {numbers}"
                );
                self.recover(now_ms, row, a.host, RestartKind::VmFailure, reason, store)?;
            }
            PowerState::Running => {
                // Booting: the seed's refcode says the OS is not up yet (gap 6).
                self.not_recovered(
                    now_ms,
                    a,
                    subject,
                    effective,
                    vmfdt_ms,
                    &numbers,
                    "Running but its OS has not started",
                );
            }
            PowerState::NotActivated => {
                self.watch(&a.uuid).hb_offset_s = missed;
                let reason =
                    format!("VM {name} is Not Activated on host {host_name}: HBoffset := {missed}");
                if secs_ms(missed) >= 2 * vmfdt_ms {
                    if status.os_started {
                        let reason = format!(
                            "{reason}; missed HB count {missed} >= 2 x VMFDT {} and it went off \
                             without a shutdown (crashed): recovering",
                            2 * vmfdt_s
                        );
                        self.recover(now_ms, row, a.host, RestartKind::VmFailure, reason, store)?;
                    } else {
                        self.decide(
                            now_ms,
                            subject.clone(),
                            Verdict::OffsetSet,
                            format!(
                                "{reason}; missed HB count {missed} >= 2 x VMFDT {} but it was \
                                 shut down on purpose: no action",
                                2 * vmfdt_s
                            ),
                        );
                    }
                } else {
                    self.decide(
                        now_ms,
                        subject.clone(),
                        Verdict::OffsetSet,
                        format!(
                            "{reason}; missed HB count {missed} < 2 x VMFDT {}",
                            2 * vmfdt_s
                        ),
                    );
                }
            }
            PowerState::OpenFirmware => {
                // The seed spares a VM booted into SMS on purpose (boot mode `sms`); the
                // platforms here cannot tell, so firmware for a whole VMFDT is a failure.
                let reason = format!(
                    "VM {name} is in Open Firmware on host {host_name}, not pingable, {numbers}: \
                     recovering"
                );
                self.recover(now_ms, row, a.host, RestartKind::VmFailure, reason, store)?;
            }
            PowerState::MigratingRunning => {
                if missed >= LPM_HANG_AFTER_S {
                    let w = self.watch(&a.uuid);
                    let first = !w.lpm_hang_reported;
                    w.lpm_hang_reported = true;
                    let text = format!(
                        "VM {name} is Migrating - Running with missed HB count {missed} >= \
                         {LPM_HANG_AFTER_S}: migration hang"
                    );
                    self.decide(now_ms, subject.clone(), Verdict::LpmHang, text.clone());
                    if first {
                        self.event(Event {
                            kind: EventKind::VmLpmHangDetected,
                            vm: Some(a.uuid),
                            hm: None,
                            text,
                            at: now_ms,
                        });
                    }
                } else {
                    self.decide(
                        now_ms,
                        subject.clone(),
                        Verdict::NoAction,
                        format!(
                            "VM {name} is Migrating - Running, {numbers}: no action below \
                             {LPM_HANG_AFTER_S} s"
                        ),
                    );
                }
            }
            other => {
                let state = format!("{other}");
                self.not_recovered(now_ms, a, subject, effective, vmfdt_ms, &numbers, &state);
            }
        }
        Ok(())
    }

    /// A VM not pingable in a state the engine does not recover from: VM_NONRESP_DETECTED
    /// once it has been silent 2 × VMFDT (gap 9: the VM's FDT).
    #[allow(clippy::too_many_arguments)]
    fn not_recovered(
        &mut self,
        now_ms: i64,
        a: &VmAttention,
        subject: &Subject,
        effective: u64,
        vmfdt_ms: i64,
        numbers: &str,
        state: &str,
    ) {
        let name = match subject {
            Subject::Vm { name, .. } => name.clone(),
            other => other.to_string(),
        };
        if secs_ms(effective) >= 2 * vmfdt_ms {
            let w = self.watch(&a.uuid);
            let first = !w.nonresp_reported;
            w.nonresp_reported = true;
            let text = format!(
                "VM {name} is {state}, not pingable, {numbers}: non-responsive for >= 2 x VMFDT"
            );
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NonResponsive,
                text.clone(),
            );
            if first {
                self.event(Event {
                    kind: EventKind::VmNonrespDetected,
                    vm: Some(a.uuid),
                    hm: None,
                    text,
                    at: now_ms,
                });
            }
        } else {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!("VM {name} is {state}, not pingable, {numbers}: not recovered; watched"),
            );
        }
    }

    fn watch(&mut self, vm: &Uuid) -> &mut super::VmWatch {
        self.vm_watch.entry(*vm).or_default()
    }

    /// Why the misses of `host`'s VMs are no evidence now, if they are not.
    fn deaf_monitors(
        &mut self,
        host: HostId,
        store: &mut dyn HealthStore,
        cache: &mut HashMap<HostId, Option<String>>,
    ) -> Result<Option<String>, FdeError> {
        if let Some(why) = cache.get(&host) {
            return Ok(why.clone());
        }
        let Some(view) = self.hosts.iter().find(|h| h.id == host).cloned() else {
            let why = Some(format!("host {host} was not in the last QuickQuery"));
            cache.insert(host, why.clone());
            return Ok(why);
        };
        let mut why = None;
        if !view.monitors.iter().any(|m| self.healthy(m)) {
            why = Some(format!(
                "no monitor of host {} is healthy: the host decision covers it",
                view.name
            ));
        } else {
            for m in &view.monitors {
                let down = store.deaf_interfaces(&m.uuid)?;
                if !down.is_empty() {
                    why = Some(format!(
                        "monitor {} of host {} has HA interface(s) {} DOWN: its misses are no \
                         evidence",
                        m.uuid,
                        view.name,
                        down.join(", ")
                    ));
                    break;
                }
            }
        }
        cache.insert(host, why.clone());
        Ok(why)
    }

    /// Recover a failed VM: plan a restart on another host (or advise), within its
    /// restart budget (fde/budget.rs).
    pub(super) fn recover(
        &mut self,
        now_ms: i64,
        row: &VmRow,
        host: HostId,
        kind: RestartKind,
        reason: String,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let subject = Subject::Vm {
            uuid: row.uuid,
            name: display_name(row),
        };
        if self.params.restart_policy == RestartPolicy::Advisory {
            self.decide(now_ms, subject, Verdict::Recover, reason);
            // Once per episode: the next NeedsAttention finds it failed again.
            let w = self.watch(&row.uuid);
            if !w.advised {
                w.advised = true;
                self.advise(now_ms, row, host, "it failed");
            }
            return Ok(());
        }
        if !self.budget_allows(now_ms, row, "it failed", store)? {
            return Ok(());
        }
        self.decide(now_ms, subject, Verdict::Recover, reason);
        let batch = self.executor.open_batch(1);
        self.queue_job(row.clone(), host, kind, false, batch);
        Ok(())
    }

    /// Advisory mode: say what would be done (gap 14), with the plan, once the scan's
    /// placement has planned it (fde/place.rs).
    pub(super) fn advise(&mut self, _now_ms: i64, row: &VmRow, host: HostId, why: &str) {
        self.advice.push((row.clone(), host, why.to_owned()));
    }

    /// The VM_RESTART_ADVISED event and decision, `plan` saying where it would go and
    /// what to do.
    pub(super) fn advise_now(
        &mut self,
        now_ms: i64,
        row: &VmRow,
        host: HostId,
        why: &str,
        plan: &str,
    ) {
        let name = display_name(row);
        let text = format!(
            "VM {name} on host {} needs a restart ({why}); restart_policy is advisory: not \
             restarted — {plan}",
            self.host_name(host),
        );
        self.decide(
            now_ms,
            Subject::Vm {
                uuid: row.uuid,
                name,
            },
            Verdict::Advised,
            text.clone(),
        );
        self.event(Event {
            kind: EventKind::VmRestartAdvised,
            vm: Some(row.uuid),
            hm: None,
            text,
            at: now_ms,
        });
    }

    /// An application doorbell: the seed's SHORTMSG task (seed 004 L13649-13651): the
    /// VM's application report is fetched (fde/app.rs), and a critical application
    /// failure escalates (seed 004 L13767-13771, gap 17).
    fn doorbell(
        &mut self,
        now_ms: i64,
        a: &VmAttention,
        row: Option<&VmRow>,
        subject: &Subject,
        vector: u64,
        store: &mut dyn HealthStore,
    ) -> Result<(), FdeError> {
        let name = match subject {
            Subject::Vm { name, .. } => name.clone(),
            other => other.to_string(),
        };
        let text = format!("SHORTMSG TASK ADDED: VM {name}, dbell {vector:x}");
        self.decide(now_ms, subject.clone(), Verdict::Doorbell, text.clone());
        self.event(Event {
            kind: EventKind::VmDoorbell,
            vm: Some(a.uuid),
            hm: None,
            text,
            at: now_ms,
        });
        // The report first: a fetch is queued whatever the ladder decides.
        self.request_app_report(now_ms, a, subject, vector, store)?;
        if vector & DBELL_APP_CRITICAL_FAILURE == 0 {
            return Ok(());
        }
        let Some(row) = row.filter(|r| r.managed) else {
            self.decide(
                now_ms,
                subject.clone(),
                Verdict::NoAction,
                format!("critical application of VM {name} failed, but the VM is not managed"),
            );
            return Ok(());
        };
        // The doorbell's time (when its monitor wrote it) is the failure's evidence: a
        // doorbell rung before the VM's last restart ended is stale (fde/app.rs).
        let evidence_ms = a.doorbell_ms.unwrap_or(now_ms);
        self.critical_app_failure(
            now_ms,
            row,
            a.host,
            evidence_ms,
            &super::app::Evidence::Doorbell,
            store,
        )
    }
}

/// Seconds to ms, saturating.
fn secs_ms(s: u64) -> i64 {
    i64::try_from(s)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}
