//! [`HealthStore`] and [`Ledger`] over the HSDB (`hsdb::Hsdb`, docs/hsdb.md §8).

use hsdb::{
    CommandKind, DiscoveryKind, HostId, Hsdb, InterfaceState, RelocationKind, Transition, Uuid,
    VmRow,
};

use super::{
    AppFetch, HealthStore, HostView, MonitorView, NaLimits, NaView, NodeData, NodeEvent,
    OpenRelocation, VmAttention,
};
use crate::events::Event;
use crate::hs::DiscoveryType;
use crate::relocate::{Ledger, MonitorCommand};

/// Node events read per scan; more wait for the next one (the monitor keeps `hasData`).
const NODE_EVENTS_PER_SCAN: usize = 100;

/// A new term looks for unfinished restarts among this many newest `relocation` rows
/// (one still open behind 10,000 newer ones is long past taking over).
const OPEN_RELOCATIONS_SCANNED: u32 = 10_000;

/// The restart budget reads at most this many of a VM's newest rows in its window (far
/// above any `vm_restart_limit`).
const RESTARTS_SCANNED: u32 = 1_000;

impl Ledger for Hsdb {
    fn enqueue_command(
        &mut self,
        hm: &Uuid,
        command: MonitorCommand,
        vm: &Uuid,
        at: i64,
    ) -> hsdb::Result<i64> {
        let kind = match command {
            MonitorCommand::StopMonitoring => CommandKind::StopMonitoring,
            MonitorCommand::StartMonitoring => CommandKind::StartMonitoring,
            MonitorCommand::ForgetVm => CommandKind::ForgetVm,
        };
        Hsdb::enqueue_command(self, hm, kind, vm, at)
    }

    fn command_result(&mut self, id: i64) -> hsdb::Result<Option<String>> {
        Ok(self
            .command(id)?
            .filter(|c| c.done_ms.is_some())
            .map(|c| c.result.unwrap_or_default()))
    }

    fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from: Option<HostId>,
        to: HostId,
        cause: &str,
        reasons: Option<&str>,
        at: i64,
    ) -> hsdb::Result<i64> {
        let kind = if cause == crate::relocate::RestartKind::Move.as_str() {
            RelocationKind::Move
        } else if from == Some(to) {
            RelocationKind::Restart
        } else {
            RelocationKind::Relocate
        };
        let id = Hsdb::relocation_begin_explained(self, vm, from, Some(to), kind, reasons, at)?;
        Hsdb::relocation_phase(self, id, &format!("cause {cause}"), at)?;
        Ok(id)
    }

    fn relocation_phase(&mut self, id: i64, phase: &str, at: i64) -> hsdb::Result<()> {
        Hsdb::relocation_phase(self, id, phase, at)
    }

    fn relocation_end(&mut self, id: i64, result: &str, at: i64) -> hsdb::Result<()> {
        Hsdb::relocation_end(self, id, result, at)
    }

    fn record_events(&mut self, events: &[Event]) -> hsdb::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let batch: Vec<Transition> = events.iter().map(Event::transition).collect();
        self.apply(&batch).map(|_| ())
    }
}

fn monitor(s: &hsdb::HmStatus) -> MonitorView {
    MonitorView {
        uuid: s.hm.uuid,
        state: s.hm.state,
        reason: s.hm.reason,
        silent_ms: s.silent_ms.max(0),
        has_data: s.hm.has_data,
    }
}

impl HealthStore for Hsdb {
    fn quick_query(&mut self, now_ms: i64, group: &str) -> hsdb::Result<Vec<HostView>> {
        Ok(self
            .quick_query_group(group, now_ms)?
            .into_iter()
            .map(|q| HostView {
                id: q.host.id,
                name: q.host.name,
                cpu_milli: q.host.cpu_milli,
                memory_mb: q.host.memory_mb,
                monitors: q.hms.iter().map(monitor).collect(),
            })
            .collect())
    }

    fn needs_attention(
        &mut self,
        now_ms: i64,
        group: &str,
        limits: NaLimits,
        new_tag: i64,
    ) -> hsdb::Result<NaView> {
        let rows = self.needs_attention_group(
            group,
            now_ms,
            hsdb::NaLimits {
                max_items: usize::try_from(limits.max_items)
                    .unwrap_or(usize::MAX)
                    .max(1),
                hm_silent_after_ms: limits.hm_silent_after_ms,
            },
            new_tag,
        )?;
        let mut vms = Vec::with_capacity(rows.vms.len());
        for v in &rows.vms {
            let Some(host) = v.host else {
                // No monitor placed it on a host yet: nothing the engine can decide.
                tracing::debug!(vm = %v.uuid, state = %v.state, "NeedsAttention: VM without a host");
                continue;
            };
            vms.push(VmAttention {
                uuid: v.uuid,
                host,
                state: v.state,
                state_chg: v.state_chg,
                // Only a positive count is a miss, as the seed reports it (seed 004
                // L13440-13442) and as `hs` builds the reply: a miss less than a second
                // old is not one yet.
                missed_hb_s: v.missed_sec().filter(|&s| s > 0),
                short_msg: v.short_msg,
                doorbell_ms: v.doorbell_ms,
                doorbell_hm: v.doorbell_hm,
                missed_hm_entry: v.missed_hm_entry,
                discovery: v.discovery.map(|d| match d {
                    DiscoveryKind::Moved => DiscoveryType::Moved,
                    DiscoveryKind::Managed => DiscoveryType::Managed,
                    DiscoveryKind::Unmanaged => DiscoveryType::Unmanaged,
                }),
            });
        }
        Ok(NaView {
            tag: rows.tag,
            vms,
            monitors: rows.hms.iter().map(|s| (s.hm.host, monitor(s))).collect(),
            more: rows.more,
        })
    }

    fn acknowledge(&mut self, tag: i64) -> hsdb::Result<usize> {
        Hsdb::acknowledge(self, tag)
    }

    fn node_data(&mut self, group: &str, new_tag: i64) -> hsdb::Result<NodeData> {
        let rows = self.node_data_group(group, new_tag, NODE_EVENTS_PER_SCAN)?;
        Ok(NodeData {
            tag: rows.tag,
            events: rows
                .events
                .into_iter()
                .map(|e| NodeEvent {
                    hm: e.hm,
                    text: e.text,
                })
                .collect(),
        })
    }

    fn acknowledge_node_data(&mut self, tag: i64) -> hsdb::Result<usize> {
        Hsdb::acknowledge_node_data(self, tag)
    }

    fn vm(&mut self, uuid: &Uuid) -> hsdb::Result<Option<VmRow>> {
        Hsdb::vm(self, uuid)
    }

    fn vms_on_host(&mut self, host: HostId) -> hsdb::Result<Vec<VmRow>> {
        Ok(self
            .vms()?
            .into_iter()
            .filter(|v| v.current_host.or(v.home_host) == Some(host))
            .collect())
    }

    fn same_host_restarts(&mut self, vm: &Uuid, since_ms: i64) -> hsdb::Result<u32> {
        let rows = self.relocations(Some(vm), 16)?;
        let n = rows
            .iter()
            .take_while(|r| r.kind == RelocationKind::Restart && r.started_ms >= since_ms)
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn open_relocations(&mut self) -> hsdb::Result<Vec<OpenRelocation>> {
        let rows = self.relocations(None, OPEN_RELOCATIONS_SCANNED)?;
        let mut open = Vec::new();
        for r in rows.into_iter().filter(|r| r.ended_ms.is_none()) {
            let steps = self.relocation_steps(r.id)?;
            open.push(OpenRelocation {
                id: r.id,
                vm: r.vm,
                from: r.from_host,
                to: r.to_host,
                last_ms: r.phase_ms.unwrap_or(r.started_ms),
                steps: steps.into_iter().map(|s| s.phase).collect(),
            });
        }
        // Oldest first: taken over in the order they were begun.
        open.reverse();
        Ok(open)
    }

    fn owed_cleanups(&mut self) -> hsdb::Result<Vec<hsdb::OwedCleanup>> {
        Hsdb::owed_cleanups(self, None)
    }

    fn owe_cleanup(
        &mut self,
        host: HostId,
        vm: &Uuid,
        relocation: Option<i64>,
        why: &str,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        Hsdb::owe_cleanup(self, host, vm, relocation, why, at).map(Some)
    }

    fn owed_cleanup_outcome(
        &mut self,
        id: i64,
        done: bool,
        text: &str,
        at: i64,
    ) -> hsdb::Result<()> {
        if done {
            Hsdb::owed_cleanup_done(self, id, text, at)
        } else {
            Hsdb::owed_cleanup_failed(self, id, text, at)
        }
    }

    fn restarts_since(
        &mut self,
        vm: &Uuid,
        since_ms: i64,
    ) -> hsdb::Result<Vec<hsdb::RestartRecord>> {
        Hsdb::restarts_since(self, Some(vm), since_ms, RESTARTS_SCANNED)
    }

    fn hosts_in_maintenance(&mut self) -> hsdb::Result<Vec<(HostId, i64)>> {
        Hsdb::hosts_in_maintenance(self)
    }

    fn set_host_maintenance(
        &mut self,
        host: HostId,
        at: Option<i64>,
        request: Option<i64>,
    ) -> hsdb::Result<()> {
        Hsdb::set_host_maintenance(self, host, at, request)
    }

    fn open_operator_requests(&mut self, group: &str) -> hsdb::Result<Vec<hsdb::OperatorRequest>> {
        Hsdb::open_operator_requests(self, group)
    }

    fn update_operator_request(
        &mut self,
        id: i64,
        state: hsdb::RequestState,
        progress: &str,
        result: Option<&str>,
        at: i64,
    ) -> hsdb::Result<()> {
        Hsdb::update_operator_request(self, id, state, progress, result, at)
    }

    fn deaf_interfaces(&mut self, hm: &Uuid) -> hsdb::Result<Vec<String>> {
        Ok(self
            .hm_interfaces(hm)?
            .into_iter()
            .filter(|i| i.state == InterfaceState::Down)
            .map(|i| i.name)
            .collect())
    }

    fn last_restart_end(&mut self, vm: &Uuid) -> hsdb::Result<Option<i64>> {
        Ok(self
            .relocations(Some(vm), 1)?
            .first()
            .map(|r| r.ended_ms.unwrap_or(r.started_ms)))
    }

    fn vm_sessions(&mut self, vm: &Uuid) -> hsdb::Result<Vec<(Uuid, hsdb::HeartbeatState)>> {
        Ok(self
            .vm_hms(vm)?
            .into_iter()
            .map(|r| (r.hm, r.last_state))
            .collect())
    }

    fn app_fetch_open(&mut self, vm: &Uuid) -> hsdb::Result<Option<AppFetch>> {
        Ok(self.open_app_fetch(vm)?.map(AppFetch::from))
    }

    fn app_fetch_request(&mut self, hm: &Uuid, vm: &Uuid, at: i64) -> hsdb::Result<Option<i64>> {
        Hsdb::enqueue_command(self, hm, CommandKind::FetchAppReport, vm, at).map(Some)
    }

    fn app_confirm_request(
        &mut self,
        hm: &Uuid,
        vm: &Uuid,
        generation: u64,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        let arg = generation.to_string();
        self.enqueue_command_arg(hm, CommandKind::ConfirmAppReport, vm, Some(&arg), at)
            .map(Some)
    }

    fn app_fetch_give_up(&mut self, id: i64, why: &str, at: i64) -> hsdb::Result<bool> {
        self.complete_command(id, why, at)
    }

    fn app_fetches_done(&mut self, group: &str, limit: u32) -> hsdb::Result<Vec<AppFetch>> {
        Ok(Hsdb::app_fetches_done(self, Some(group), limit)?
            .into_iter()
            .map(AppFetch::from)
            .collect())
    }

    fn app_fetch_handle(
        &mut self,
        id: i64,
        report: Option<&hvha_appreport::AppReport>,
        confirm_hm: Option<&Uuid>,
        note: &str,
        at: i64,
    ) -> hsdb::Result<hsdb::AppFetchHandled> {
        self.handle_app_fetch(id, report, confirm_hm, note, at)
    }
}

/// A store that loses acknowledgements: the simulation's "lost ack" fault. While
/// `*lose > 0`, an Acknowledge (of NeedsAttention or node data) is not passed on and
/// `*lose` counts down; the items stay pending and come back in the next reply under a
/// new tag. Everything else goes to `store`.
pub struct LosingAcks<'a> {
    /// The real store.
    pub store: &'a mut dyn HealthStore,
    /// Acknowledgements still to lose.
    pub lose: &'a mut u32,
}

impl LosingAcks<'_> {
    fn lost(&mut self, what: &str, tag: i64) -> bool {
        if *self.lose == 0 {
            return false;
        }
        *self.lose -= 1;
        tracing::info!(
            tag,
            what,
            left = *self.lose,
            "acknowledgement lost (injected)"
        );
        true
    }
}

impl Ledger for LosingAcks<'_> {
    fn enqueue_command(
        &mut self,
        hm: &Uuid,
        command: MonitorCommand,
        vm: &Uuid,
        at: i64,
    ) -> hsdb::Result<i64> {
        self.store.enqueue_command(hm, command, vm, at)
    }
    fn command_result(&mut self, id: i64) -> hsdb::Result<Option<String>> {
        self.store.command_result(id)
    }
    fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from: Option<HostId>,
        to: HostId,
        cause: &str,
        reasons: Option<&str>,
        at: i64,
    ) -> hsdb::Result<i64> {
        self.store
            .relocation_begin(vm, from, to, cause, reasons, at)
    }
    fn relocation_phase(&mut self, id: i64, phase: &str, at: i64) -> hsdb::Result<()> {
        self.store.relocation_phase(id, phase, at)
    }
    fn relocation_end(&mut self, id: i64, result: &str, at: i64) -> hsdb::Result<()> {
        self.store.relocation_end(id, result, at)
    }
    fn record_events(&mut self, events: &[Event]) -> hsdb::Result<()> {
        self.store.record_events(events)
    }
}

impl HealthStore for LosingAcks<'_> {
    fn quick_query(&mut self, now_ms: i64, group: &str) -> hsdb::Result<Vec<HostView>> {
        self.store.quick_query(now_ms, group)
    }
    fn needs_attention(
        &mut self,
        now_ms: i64,
        group: &str,
        limits: NaLimits,
        new_tag: i64,
    ) -> hsdb::Result<NaView> {
        self.store.needs_attention(now_ms, group, limits, new_tag)
    }
    fn acknowledge(&mut self, tag: i64) -> hsdb::Result<usize> {
        if self.lost("NeedsAttention", tag) {
            return Ok(0);
        }
        self.store.acknowledge(tag)
    }
    fn node_data(&mut self, group: &str, new_tag: i64) -> hsdb::Result<NodeData> {
        self.store.node_data(group, new_tag)
    }
    fn acknowledge_node_data(&mut self, tag: i64) -> hsdb::Result<usize> {
        if self.lost("node data", tag) {
            return Ok(0);
        }
        self.store.acknowledge_node_data(tag)
    }
    fn vm(&mut self, uuid: &Uuid) -> hsdb::Result<Option<VmRow>> {
        self.store.vm(uuid)
    }
    fn vms_on_host(&mut self, host: HostId) -> hsdb::Result<Vec<VmRow>> {
        self.store.vms_on_host(host)
    }
    fn deaf_interfaces(&mut self, hm: &Uuid) -> hsdb::Result<Vec<String>> {
        self.store.deaf_interfaces(hm)
    }
    fn hosts_in_maintenance(&mut self) -> hsdb::Result<Vec<(HostId, i64)>> {
        self.store.hosts_in_maintenance()
    }
    fn set_host_maintenance(
        &mut self,
        host: HostId,
        at: Option<i64>,
        request: Option<i64>,
    ) -> hsdb::Result<()> {
        self.store.set_host_maintenance(host, at, request)
    }
    fn open_operator_requests(&mut self, group: &str) -> hsdb::Result<Vec<hsdb::OperatorRequest>> {
        self.store.open_operator_requests(group)
    }
    fn update_operator_request(
        &mut self,
        id: i64,
        state: hsdb::RequestState,
        progress: &str,
        result: Option<&str>,
        at: i64,
    ) -> hsdb::Result<()> {
        self.store
            .update_operator_request(id, state, progress, result, at)
    }
    fn same_host_restarts(&mut self, vm: &Uuid, since_ms: i64) -> hsdb::Result<u32> {
        self.store.same_host_restarts(vm, since_ms)
    }
    fn open_relocations(&mut self) -> hsdb::Result<Vec<OpenRelocation>> {
        self.store.open_relocations()
    }
    fn owed_cleanups(&mut self) -> hsdb::Result<Vec<hsdb::OwedCleanup>> {
        self.store.owed_cleanups()
    }
    fn owe_cleanup(
        &mut self,
        host: HostId,
        vm: &Uuid,
        relocation: Option<i64>,
        why: &str,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        self.store.owe_cleanup(host, vm, relocation, why, at)
    }
    fn owed_cleanup_outcome(
        &mut self,
        id: i64,
        done: bool,
        text: &str,
        at: i64,
    ) -> hsdb::Result<()> {
        self.store.owed_cleanup_outcome(id, done, text, at)
    }
    fn restarts_since(
        &mut self,
        vm: &Uuid,
        since_ms: i64,
    ) -> hsdb::Result<Vec<hsdb::RestartRecord>> {
        self.store.restarts_since(vm, since_ms)
    }
    fn last_restart_end(&mut self, vm: &Uuid) -> hsdb::Result<Option<i64>> {
        self.store.last_restart_end(vm)
    }
    fn vm_sessions(&mut self, vm: &Uuid) -> hsdb::Result<Vec<(Uuid, hsdb::HeartbeatState)>> {
        self.store.vm_sessions(vm)
    }
    fn app_fetch_open(&mut self, vm: &Uuid) -> hsdb::Result<Option<AppFetch>> {
        self.store.app_fetch_open(vm)
    }
    fn app_fetch_request(&mut self, hm: &Uuid, vm: &Uuid, at: i64) -> hsdb::Result<Option<i64>> {
        self.store.app_fetch_request(hm, vm, at)
    }
    fn app_confirm_request(
        &mut self,
        hm: &Uuid,
        vm: &Uuid,
        generation: u64,
        at: i64,
    ) -> hsdb::Result<Option<i64>> {
        self.store.app_confirm_request(hm, vm, generation, at)
    }
    fn app_fetch_give_up(&mut self, id: i64, why: &str, at: i64) -> hsdb::Result<bool> {
        self.store.app_fetch_give_up(id, why, at)
    }
    fn app_fetches_done(&mut self, group: &str, limit: u32) -> hsdb::Result<Vec<AppFetch>> {
        self.store.app_fetches_done(group, limit)
    }
    fn app_fetch_handle(
        &mut self,
        id: i64,
        report: Option<&hvha_appreport::AppReport>,
        confirm_hm: Option<&Uuid>,
        note: &str,
        at: i64,
    ) -> hsdb::Result<hsdb::AppFetchHandled> {
        self.store
            .app_fetch_handle(id, report, confirm_hm, note, at)
    }
}
