//! The real engine in the simulation: [`Fde`] behind the [`Engine`] trait, with its
//! store wrapped so that acknowledgements can be lost on purpose.

use hsdb::{HostId, Hsdb, Uuid, VmRow};

use super::run::{Engine, Turn};
use crate::events::Event;
use crate::fde::{Fde, HealthStore, HostView, NaLimits, NaView, NodeData, Subject, Verdict};
use crate::platform::Platform;
use crate::relocate::{Ledger, MonitorCommand};

/// The Failure Detection Engine under test.
pub struct FdeEngine {
    /// The engine.
    pub fde: Fde,
    /// Acknowledgements still to lose.
    lose: u32,
    /// Acknowledgements lost so far.
    pub acks_lost: u64,
    /// The last decision traced.
    last_seq: u64,
}

impl FdeEngine {
    /// Drive `fde`.
    pub fn new(fde: Fde) -> FdeEngine {
        FdeEngine {
            fde,
            lose: 0,
            acks_lost: 0,
            last_seq: 0,
        }
    }
}

impl Engine for FdeEngine {
    fn turn(
        &mut self,
        now: i64,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
    ) -> Result<Turn, String> {
        let mut store = LossyStore {
            inner: hsdb,
            lose: &mut self.lose,
            lost: &mut self.acks_lost,
        };
        let tick = self
            .fde
            .tick(now, &mut store, platform)
            .map_err(|e| e.to_string())?;
        // The decisions of this turn, oldest first (the log is bounded: take them from
        // its end).
        let last = self.last_seq;
        let mut fresh: Vec<(Option<Uuid>, String)> = self
            .fde
            .decisions()
            .iter()
            .rev()
            .take_while(|d| d.seq > last)
            .filter(|d| d.verdict != Verdict::NoAction)
            .map(|d| {
                let vm = match d.subject {
                    Subject::Vm { uuid, .. } => Some(uuid),
                    _ => None,
                };
                let line = format!("scan {} {} {}: {}", d.scan, d.subject, d.verdict, d.reason);
                (vm, line)
            })
            .collect();
        fresh.reverse();
        self.last_seq = self.fde.decisions().total();
        Ok(Turn {
            next_ms: tick.next_wake_ms,
            notes: fresh,
        })
    }

    fn lose_acks(&mut self, count: u32) -> bool {
        self.lose = self.lose.saturating_add(count);
        true
    }
}

/// The HSDB as the engine sees it, except that the next `lose` acknowledgements of
/// NeedsAttention tags never reach it (a reply's ack lost on the way: its items stay
/// tagged but unacknowledged and are reported again under the next tag).
struct LossyStore<'a> {
    inner: &'a mut Hsdb,
    lose: &'a mut u32,
    lost: &'a mut u64,
}

impl Ledger for LossyStore<'_> {
    fn enqueue_command(
        &mut self,
        hm: &Uuid,
        command: MonitorCommand,
        vm: &Uuid,
        at: i64,
    ) -> hsdb::Result<i64> {
        Ledger::enqueue_command(self.inner, hm, command, vm, at)
    }

    fn command_result(&mut self, id: i64) -> hsdb::Result<Option<String>> {
        self.inner.command_result(id)
    }

    fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from: Option<HostId>,
        to: HostId,
        cause: &str,
        at: i64,
    ) -> hsdb::Result<i64> {
        Ledger::relocation_begin(self.inner, vm, from, to, cause, at)
    }

    fn relocation_phase(&mut self, id: i64, phase: &str, at: i64) -> hsdb::Result<()> {
        Ledger::relocation_phase(self.inner, id, phase, at)
    }

    fn relocation_end(&mut self, id: i64, result: &str, at: i64) -> hsdb::Result<()> {
        Ledger::relocation_end(self.inner, id, result, at)
    }

    fn record_events(&mut self, events: &[Event]) -> hsdb::Result<()> {
        self.inner.record_events(events)
    }
}

impl HealthStore for LossyStore<'_> {
    fn quick_query(&mut self, now_ms: i64, group: &str) -> hsdb::Result<Vec<HostView>> {
        HealthStore::quick_query(self.inner, now_ms, group)
    }

    fn needs_attention(
        &mut self,
        now_ms: i64,
        group: &str,
        limits: NaLimits,
        new_tag: i64,
    ) -> hsdb::Result<NaView> {
        HealthStore::needs_attention(self.inner, now_ms, group, limits, new_tag)
    }

    fn acknowledge(&mut self, tag: i64) -> hsdb::Result<usize> {
        if *self.lose > 0 {
            *self.lose -= 1;
            *self.lost += 1;
            return Ok(0);
        }
        HealthStore::acknowledge(self.inner, tag)
    }

    fn node_data(&mut self, group: &str, new_tag: i64) -> hsdb::Result<NodeData> {
        HealthStore::node_data(self.inner, group, new_tag)
    }

    fn acknowledge_node_data(&mut self, tag: i64) -> hsdb::Result<usize> {
        HealthStore::acknowledge_node_data(self.inner, tag)
    }

    fn vm(&mut self, uuid: &Uuid) -> hsdb::Result<Option<VmRow>> {
        HealthStore::vm(self.inner, uuid)
    }

    fn vms_on_host(&mut self, host: HostId) -> hsdb::Result<Vec<VmRow>> {
        HealthStore::vms_on_host(self.inner, host)
    }

    fn deaf_interfaces(&mut self, hm: &Uuid) -> hsdb::Result<Vec<String>> {
        HealthStore::deaf_interfaces(self.inner, hm)
    }

    fn same_host_restarts(&mut self, vm: &Uuid, since_ms: i64) -> hsdb::Result<u32> {
        HealthStore::same_host_restarts(self.inner, vm, since_ms)
    }
}
