//! One test per decision rule, on a fake store (replies set by the test) and a fake
//! platform (answers set by the test, every call recorded); `on_hsdb`: the engine on a
//! real HSDB file, with the fake platform and with the `sim` platform.

#![allow(clippy::unwrap_used)]

mod app;
mod exec;
mod maintenance;
mod moves;
mod on_hsdb;
mod plan;
mod verify;

use std::collections::{HashMap, HashSet};

use hsdb::{DetectionSpeed, HmState, HostId, Priority, Uuid, VmRow, VmState};

use super::*;
use crate::events::{Event, EventKind};
use crate::hs::DiscoveryType;
use crate::params::{GroupParams, RestartPolicy};
use crate::platform::{HostInfo, PlatformError, PowerState, VmSpec, VmStatus};
use crate::relocate::{Ledger, MonitorCommand};

const T0: i64 = 1_700_000_000_000;

fn uuid(n: u8) -> Uuid {
    Uuid([n; 16])
}

fn hm(host: i64, n: u8) -> Uuid {
    let mut u = Uuid([0xa0 + n; 16]);
    u.0[0] = u8::try_from(host).unwrap();
    u
}

#[derive(Debug, Default)]
struct FakeStore {
    hosts: Vec<HostView>,
    na: NaView,
    vms: HashMap<Uuid, VmRow>,
    deaf: HashMap<Uuid, Vec<String>>,
    node: NodeData,
    acked: Vec<i64>,
    node_acked: Vec<i64>,
    na_calls: usize,
    /// Command id → (monitor, command, VM).
    commands: Vec<(i64, Uuid, MonitorCommand, Uuid)>,
    /// Monitors that complete their commands.
    answering: HashSet<Uuid>,
    relocations: Vec<Relocation>,
    events: Vec<Event>,
}

#[derive(Debug, Clone)]
struct Relocation {
    at: i64,
    vm: Uuid,
    from: Option<HostId>,
    to: HostId,
    kind: String,
    phases: Vec<String>,
    result: Option<String>,
    reasons: Option<String>,
}

impl Ledger for FakeStore {
    fn enqueue_command(
        &mut self,
        hm: &Uuid,
        command: MonitorCommand,
        vm: &Uuid,
        _at: i64,
    ) -> hsdb::Result<i64> {
        let id = i64::try_from(self.commands.len()).unwrap() + 1;
        self.commands.push((id, *hm, command, *vm));
        Ok(id)
    }
    fn command_result(&mut self, id: i64) -> hsdb::Result<Option<String>> {
        let (_, hm, _, _) = self.commands[usize::try_from(id - 1).unwrap()];
        Ok(self.answering.contains(&hm).then(|| "ok".to_owned()))
    }
    fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from: Option<HostId>,
        to: HostId,
        kind: &str,
        reasons: Option<&str>,
        at: i64,
    ) -> hsdb::Result<i64> {
        self.relocations.push(Relocation {
            at,
            vm: *vm,
            from,
            to,
            kind: kind.to_owned(),
            phases: Vec::new(),
            result: None,
            reasons: reasons.map(str::to_owned),
        });
        Ok(i64::try_from(self.relocations.len()).unwrap())
    }
    fn relocation_phase(&mut self, id: i64, phase: &str, _at: i64) -> hsdb::Result<()> {
        self.relocations[usize::try_from(id - 1).unwrap()]
            .phases
            .push(phase.to_owned());
        Ok(())
    }
    fn relocation_end(&mut self, id: i64, result: &str, _at: i64) -> hsdb::Result<()> {
        self.relocations[usize::try_from(id - 1).unwrap()].result = Some(result.to_owned());
        Ok(())
    }
    fn record_events(&mut self, events: &[Event]) -> hsdb::Result<()> {
        self.events.extend_from_slice(events);
        Ok(())
    }
}

impl HealthStore for FakeStore {
    fn quick_query(&mut self, _now_ms: i64, _group: &str) -> hsdb::Result<Vec<HostView>> {
        Ok(self.hosts.clone())
    }
    fn needs_attention(
        &mut self,
        _now_ms: i64,
        _group: &str,
        _limits: NaLimits,
        new_tag: i64,
    ) -> hsdb::Result<NaView> {
        self.na_calls += 1;
        let mut na = self.na.clone();
        if na.tag.is_some() {
            na.tag = Some(new_tag);
        }
        Ok(na)
    }
    fn acknowledge(&mut self, tag: i64) -> hsdb::Result<usize> {
        self.acked.push(tag);
        Ok(1)
    }
    fn node_data(&mut self, _group: &str, new_tag: i64) -> hsdb::Result<NodeData> {
        let mut d = std::mem::take(&mut self.node);
        if !d.events.is_empty() {
            d.tag = Some(new_tag);
        }
        Ok(d)
    }
    fn acknowledge_node_data(&mut self, tag: i64) -> hsdb::Result<usize> {
        self.node_acked.push(tag);
        for h in &mut self.hosts {
            for m in &mut h.monitors {
                m.has_data = false;
            }
        }
        Ok(1)
    }
    fn vm(&mut self, uuid: &Uuid) -> hsdb::Result<Option<VmRow>> {
        Ok(self.vms.get(uuid).cloned())
    }
    fn vms_on_host(&mut self, host: HostId) -> hsdb::Result<Vec<VmRow>> {
        let mut v: Vec<VmRow> = self
            .vms
            .values()
            .filter(|v| v.current_host.or(v.home_host) == Some(host))
            .cloned()
            .collect();
        v.sort_by_key(|v| v.uuid);
        Ok(v)
    }
    fn deaf_interfaces(&mut self, hm: &Uuid) -> hsdb::Result<Vec<String>> {
        Ok(self.deaf.get(hm).cloned().unwrap_or_default())
    }
    fn same_host_restarts(&mut self, vm: &Uuid, since_ms: i64) -> hsdb::Result<u32> {
        let n = self
            .relocations
            .iter()
            .rev()
            .filter(|r| r.vm == *vm)
            .take_while(|r| r.from == Some(r.to) && r.at >= since_ms)
            .count();
        Ok(u32::try_from(n).unwrap())
    }
}

#[derive(Debug, Default)]
struct FakePlatform {
    alive: HashMap<String, Result<bool, PlatformError>>,
    ping: HashMap<Uuid, Result<bool, PlatformError>>,
    status: HashMap<Uuid, Result<VmStatus, PlatformError>>,
    /// (host, cpu, memory, VMs).
    hosts: Vec<HostInfo>,
    stop_fails: HashMap<String, PlatformError>,
    start_fails: HashSet<String>,
    cleanup_fails: bool,
    /// `hosts()` times out (the platform is unreachable: placement waits).
    hosts_fail: bool,
    calls: Vec<String>,
}

fn timeout(op: &str) -> PlatformError {
    PlatformError::Timeout {
        op: op.to_owned(),
        after_ms: 2000,
    }
}

impl Platform for FakePlatform {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        self.calls.push("hosts".into());
        if self.hosts_fail {
            return Err(timeout("hosts"));
        }
        Ok(self.hosts.clone())
    }
    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.calls.push(format!("host_alive {host}"));
        self.alive.get(host).cloned().unwrap_or(Ok(true))
    }
    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        self.calls.push(format!("ping {vm}"));
        self.ping.get(vm).cloned().unwrap_or(Ok(true))
    }
    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.calls.push(format!("vm_status {host} {vm}"));
        self.status.get(vm).cloned().unwrap_or(Ok(VmStatus {
            power: PowerState::Running,
            os_started: true,
        }))
    }
    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.calls.push(format!("stop {host} {vm}"));
        match self.stop_fails.get(host) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.calls.push(format!("start {host} {}", vm.uuid));
        if self.start_fails.contains(host) {
            return Err(PlatformError::Failed {
                op: format!("start {host}"),
                why: "no resources".into(),
            });
        }
        for h in &mut self.hosts {
            h.vms.retain(|(s, _)| s.uuid != vm.uuid);
        }
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == host) {
            h.vms.push((
                vm.clone(),
                VmStatus {
                    power: PowerState::Running,
                    os_started: true,
                },
            ));
        }
        Ok(())
    }
    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.calls.push(format!("cleanup {host} {vm}"));
        if self.cleanup_fails {
            return Err(PlatformError::Unreachable {
                host: host.to_owned(),
                why: "connection refused".into(),
            });
        }
        Ok(())
    }
}

struct Rig {
    fde: Fde,
    store: FakeStore,
    platform: FakePlatform,
    now: i64,
}

fn monitor(uuid: Uuid) -> MonitorView {
    MonitorView {
        uuid,
        state: HmState::Up,
        reason: 0,
        silent_ms: 0,
        has_data: false,
    }
}

fn vm_row(n: u8, host: i64) -> VmRow {
    VmRow {
        uuid: uuid(n),
        name: format!("vm{n}"),
        current_host: Some(HostId(host)),
        home_host: Some(HostId(host)),
        state: VmState::Started,
        managed: true,
        ha_monitor: true,
        priority: Priority::Medium,
        detection_speed: DetectionSpeed::Normal,
        cpu_milli: 1000,
        memory_mb: 1024,
        ostype: None,
        agent_versions: None,
        short_msg: 0,
        updated_ms: 0,
    }
}

fn missed(n: u8, host: i64, secs: u64) -> VmAttention {
    VmAttention {
        uuid: uuid(n),
        host: HostId(host),
        state: VmState::Started,
        state_chg: false,
        missed_hb_s: Some(secs),
        short_msg: None,
        doorbell_ms: None,
        doorbell_hm: None,
        missed_hm_entry: None,
        discovery: None,
    }
}

impl Rig {
    /// Three hosts of 8 CPUs / 16 GiB with two monitors each; vm1 on host 1.
    fn new(params: GroupParams) -> Rig {
        let mut store = FakeStore::default();
        let mut platform = FakePlatform::default();
        for id in 1..=3 {
            let name = format!("host-{id}");
            store.hosts.push(HostView {
                id: HostId(id),
                name: name.clone(),
                cpu_milli: 8000,
                memory_mb: 16384,
                monitors: vec![monitor(hm(id, 1)), monitor(hm(id, 2))],
            });
            store.answering.insert(hm(id, 1));
            store.answering.insert(hm(id, 2));
            platform.hosts.push(HostInfo {
                name,
                cpu_milli: 8000,
                memory_mb: 16384,
                vms: Vec::new(),
            });
        }
        store.vms.insert(uuid(1), vm_row(1, 1));
        Rig {
            fde: Fde::new(params),
            store,
            platform,
            now: T0,
        }
    }

    fn standard() -> Rig {
        Rig::new(GroupParams::standard("hg"))
    }

    /// Tick at the next scan's time (restarts are stepped in the same tick).
    fn scan(&mut self) -> ScanReport {
        if let Some(t) = self.fde.next_scan_ms() {
            self.now = self.now.max(t);
        }
        let t = self
            .fde
            .tick(self.now, &mut self.store, &mut self.platform)
            .unwrap();
        t.scan.unwrap()
    }

    /// Scans up to and including the next QuickQuery.
    fn qq(&mut self) -> ScanReport {
        loop {
            let r = self.scan();
            if r.request == Request::QuickQuery {
                return r;
            }
        }
    }

    /// Scans up to and including the next NeedsAttention, which returns `na`.
    fn na(&mut self, vms: Vec<VmAttention>) -> ScanReport {
        self.store.na = NaView {
            vms,
            ..NaView::default()
        };
        loop {
            let r = self.scan();
            if r.request == Request::NeedsAttention {
                return r;
            }
        }
    }

    /// Tick at each wake time until `until`.
    fn run_until(&mut self, until: i64) {
        while self.now < until {
            let t = self
                .fde
                .tick(self.now, &mut self.store, &mut self.platform)
                .unwrap();
            self.now = t.next_wake_ms.min(until);
        }
    }

    fn last(&self) -> &Decision {
        self.fde.decisions().iter().next_back().unwrap()
    }

    fn verdicts(&self, vm: u8) -> Vec<Verdict> {
        self.fde
            .decisions()
            .iter()
            .filter(|d| matches!(&d.subject, Subject::Vm { uuid: u, .. } if *u == uuid(vm)))
            .map(|d| d.verdict)
            .collect()
    }

    fn events(&self, kind: EventKind) -> Vec<&Event> {
        self.store
            .events
            .iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    fn progress_texts(&self, vm: u8) -> Vec<String> {
        self.store
            .events
            .iter()
            .filter(|e| e.vm == Some(uuid(vm)))
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::VmRestartProgress | EventKind::VmRestartCompleted
                )
            })
            .map(|e| e.text.clone())
            .collect()
    }

    fn calls(&self, prefix: &str) -> Vec<String> {
        self.platform
            .calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn silence_host(&mut self, id: i64, silent_ms: i64) {
        for m in &mut self.store.hosts[usize::try_from(id - 1).unwrap()].monitors {
            m.silent_ms = silent_ms;
        }
    }
}

// ---- cadence -------------------------------------------------------------------------

#[test]
fn test_scan_one_is_quickquery_at_once_and_na_every_third() {
    let mut rig = Rig::standard();
    let t = rig.fde.tick(T0, &mut rig.store, &mut rig.platform).unwrap();
    let first = t.scan.unwrap();
    assert_eq!((first.scan, first.request), (1, Request::QuickQuery));
    assert_eq!(t.next_wake_ms, T0 + 20_000, "next request 20 s later");
    // An early tick runs no scan.
    let early = rig
        .fde
        .tick(T0 + 5_000, &mut rig.store, &mut rig.platform)
        .unwrap();
    assert!(early.scan.is_none());
    let mut kinds = Vec::new();
    let mut now = T0 + 20_000;
    for _ in 2..=9 {
        let t = rig
            .fde
            .tick(now, &mut rig.store, &mut rig.platform)
            .unwrap();
        kinds.push(t.scan.unwrap().request);
        now = t.next_wake_ms;
    }
    use Request::{NeedsAttention as Na, QuickQuery as Qq};
    assert_eq!(kinds, [Qq, Na, Qq, Qq, Na, Qq, Qq, Na]);
    assert_eq!(rig.store.na_calls, 3);
}

#[test]
fn test_first_quickquery_reports_every_monitor_up_and_responsive() {
    let mut rig = Rig::standard();
    rig.scan();
    assert_eq!(rig.events(EventKind::ViosCaaStateUpDetected).len(), 6);
    assert_eq!(rig.events(EventKind::ViosHmRespDetected).len(), 6);
    rig.qq();
    assert_eq!(
        rig.events(EventKind::ViosCaaStateUpDetected).len(),
        6,
        "only changes after"
    );
    rig.store.hosts[0].monitors[0].silent_ms = 70_000;
    rig.store.hosts[0].monitors[1].state = HmState::Down;
    rig.qq();
    assert_eq!(rig.events(EventKind::ViosHmNonrespDetected).len(), 1);
    assert_eq!(rig.events(EventKind::ViosCaaStateDownDetected).len(), 1);
}

// ---- VM decisions --------------------------------------------------------------------

#[test]
fn test_missed_below_vmfdt_is_no_action_with_the_seed_line() {
    let mut rig = Rig::standard();
    for n in [50, 111, 171, 189] {
        rig.na(vec![missed(1, 1, n)]);
        assert_eq!(rig.last().verdict, Verdict::NoAction);
        assert_eq!(
            rig.last().reason,
            format!("Missed HB count {n} for VM vm1 is less than its VMFDT 190")
        );
    }
    assert!(rig.calls("ping").is_empty(), "no probe below the threshold");
}

#[test]
fn test_missed_equal_to_vmfdt_pings_and_pingable_is_ignored() {
    let mut rig = Rig::standard();
    rig.na(vec![missed(1, 1, 190)]);
    assert_eq!(
        rig.calls("ping").len(),
        1,
        "gap 7: the threshold is reached at equality"
    );
    assert_eq!(rig.last().verdict, Verdict::Pingable);
    rig.na(vec![missed(1, 1, 232)]);
    assert_eq!(
        rig.last().reason,
        "VM vm1 is pingable ignoring missed HB count 232"
    );
    assert!(rig.events(EventKind::VmFailureDetected).is_empty());
    assert!(
        rig.store.relocations.is_empty(),
        "a pingable VM is never relocated"
    );
}

#[test]
fn test_vm_failure_running_relocates_in_the_seed_steps() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    let r = rig.na(vec![missed(1, 1, 240)]);
    assert_eq!(r.restarts_submitted, 1);
    let failure = rig.events(EventKind::VmFailureDetected);
    assert_eq!(failure.len(), 1);
    assert!(
        failure[0].text.contains("missed HB count 240"),
        "{}",
        failure[0].text
    );
    assert!(rig.verdicts(1).contains(&Verdict::Recover));
    // Monitors answer at once: the restart ran to its end in the same tick.
    assert_eq!(
        rig.progress_texts(1),
        [
            "Stopping HA monitoring for VM vm1",
            "HA monitoring for VM vm1 stopped",
            "Shutdown has started for VM vm1",
            "Shutdown has completed for VM vm1",
            "Restart has started for VM vm1",
            "Starting HA monitoring for VM vm1",
            "HA monitoring for VM vm1 started",
            "Restart on Target host host-2 has completed for VM vm1",
            "Configuration cleanup started for VM vm1",
            "Configuration cleanup completed for VM vm1",
        ]
    );
    assert_eq!(
        rig.calls("stop").len() + rig.calls("start").len() + rig.calls("cleanup").len(),
        3
    );
    assert_eq!(rig.calls("start"), [format!("start host-2 {}", uuid(1))]);
    let rel = &rig.store.relocations[0];
    assert_eq!(
        (rel.from, rel.to, rel.kind.as_str()),
        (Some(HostId(1)), HostId(2), "vm_failure")
    );
    assert_eq!(rel.result.as_deref(), Some("success"));
    // The decision's explanation goes with the row: target and why, why not host 1.
    let reasons = rel.reasons.as_deref().expect("reasons");
    assert!(reasons.starts_with("vm1: to host-2 ("), "{reasons}");
    assert!(reasons.contains("\n    host-1  "), "{reasons}");
    assert_eq!(rel.phases.first().map(String::as_str), Some("queued"));
    assert_eq!(rel.phases.last().map(String::as_str), Some("done"));
    assert_eq!(
        rig.fde.current_host(&uuid(1), Some(HostId(1))),
        Some(HostId(2))
    );
    let kinds: Vec<MonitorCommand> = rig.store.commands.iter().map(|c| c.2).collect();
    assert_eq!(
        kinds,
        [
            MonitorCommand::StopMonitoring,
            MonitorCommand::StopMonitoring,
            MonitorCommand::StartMonitoring,
            MonitorCommand::StartMonitoring,
            MonitorCommand::ForgetVm,
            MonitorCommand::ForgetVm,
        ]
    );
    let summary = rig.events(EventKind::RestartSummary);
    assert_eq!(
        summary[0].text,
        "1 out of 1 VMs have been successfully restarted"
    );
    assert!(rig.fde.restarts().is_empty());
}

#[test]
fn test_probe_errors_are_never_evidence() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Err(timeout("ping")));
    rig.na(vec![missed(1, 1, 300)]);
    assert_eq!(rig.last().verdict, Verdict::ProbeFailed);
    assert!(rig.events(EventKind::VmFailureDetected).is_empty());
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform
        .status
        .insert(uuid(1), Err(timeout("vm_status")));
    rig.na(vec![missed(1, 1, 360)]);
    assert_eq!(rig.last().verdict, Verdict::ProbeFailed);
    assert!(rig.store.relocations.is_empty());
    // The next scan with answers acts.
    rig.platform.status.remove(&uuid(1));
    rig.na(vec![missed(1, 1, 420)]);
    assert_eq!(rig.store.relocations.len(), 1);
    assert_eq!(
        rig.events(EventKind::VmFailureDetected).len(),
        1,
        "once per episode"
    );
}

#[test]
fn test_not_activated_sets_hb_offset_and_recovers_a_crash_at_twice_vmfdt() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::NotActivated,
            os_started: true,
        }),
    );
    rig.na(vec![missed(1, 1, 200)]);
    assert_eq!(rig.last().verdict, Verdict::OffsetSet);
    assert_eq!(rig.fde.hb_offset_s(&uuid(1)), 200);
    // HBoffset applies to the threshold: 260 - 200 = 60 < 190.
    rig.na(vec![missed(1, 1, 260)]);
    assert_eq!(rig.last().verdict, Verdict::NoAction);
    assert!(
        rig.last().reason.contains("HBoffset 200, counted 60"),
        "{}",
        rig.last().reason
    );
    assert_eq!(rig.calls("ping").len(), 1);
    // 390 - 200 = 190 >= VMFDT and 390 >= 2 x 190: crashed off → recover.
    rig.na(vec![missed(1, 1, 390)]);
    assert_eq!(rig.store.relocations.len(), 1);
    assert_eq!(
        rig.fde.hb_offset_s(&uuid(1)),
        0,
        "reset after the restart (gap 8)"
    );
}

#[test]
fn test_not_activated_on_purpose_is_left_alone() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::NotActivated,
            os_started: false,
        }),
    );
    rig.na(vec![missed(1, 1, 400)]);
    assert_eq!(rig.last().verdict, Verdict::OffsetSet);
    assert!(
        rig.last().reason.contains("shut down on purpose"),
        "{}",
        rig.last().reason
    );
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_other_states_raise_nonresp_at_twice_vmfdt_once() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::Error,
            os_started: true,
        }),
    );
    rig.na(vec![missed(1, 1, 379)]);
    assert_eq!(rig.last().verdict, Verdict::NoAction);
    rig.na(vec![missed(1, 1, 380)]);
    assert_eq!(rig.last().verdict, Verdict::NonResponsive);
    rig.na(vec![missed(1, 1, 440)]);
    assert_eq!(rig.events(EventKind::VmNonrespDetected).len(), 1);
    assert!(rig.store.relocations.is_empty());
    // Running with an OS that never started (booting) is not recovered either.
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::Running,
            os_started: false,
        }),
    );
    rig.na(vec![missed(1, 1, 250)]);
    assert!(
        rig.last().reason.contains("OS has not started"),
        "{}",
        rig.last().reason
    );
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_lpm_hang_after_a_day() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::MigratingRunning,
            os_started: true,
        }),
    );
    rig.na(vec![missed(1, 1, 86_399)]);
    assert_eq!(rig.last().verdict, Verdict::NoAction);
    rig.na(vec![missed(1, 1, 86_400)]);
    assert_eq!(rig.last().verdict, Verdict::LpmHang);
    assert_eq!(rig.events(EventKind::VmLpmHangDetected).len(), 1);
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_open_firmware_is_recovered() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::OpenFirmware,
            os_started: false,
        }),
    );
    rig.na(vec![missed(1, 1, 200)]);
    assert_eq!(rig.store.relocations.len(), 1);
}

#[test]
fn test_deaf_monitor_withholds_the_evidence() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.store.deaf.insert(hm(1, 2), vec!["ent1".into()]);
    rig.na(vec![missed(1, 1, 300)]);
    assert_eq!(rig.last().verdict, Verdict::Withheld);
    assert!(
        rig.last().reason.contains("ent1 DOWN"),
        "{}",
        rig.last().reason
    );
    assert!(rig.calls("ping").is_empty());
    // No healthy monitor on the host: the host decision covers it.
    rig.store.deaf.clear();
    rig.silence_host(1, 70_000);
    rig.na(vec![missed(1, 1, 360)]);
    assert_eq!(rig.last().verdict, Verdict::Withheld);
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_unmanaged_and_unmonitored_vms_are_not_acted_on() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.store.vms.get_mut(&uuid(1)).unwrap().managed = false;
    rig.na(vec![missed(1, 1, 300)]);
    assert!(
        rig.last().reason.contains("not managed"),
        "{}",
        rig.last().reason
    );
    rig.store.vms.get_mut(&uuid(1)).unwrap().managed = true;
    rig.store.vms.get_mut(&uuid(1)).unwrap().ha_monitor = false;
    rig.na(vec![missed(1, 1, 360)]);
    assert!(
        rig.last().reason.contains("HA monitoring disabled"),
        "{}",
        rig.last().reason
    );
    assert!(rig.calls("ping").is_empty());
}

#[test]
fn test_vm_being_restarted_is_not_decided_twice() {
    let mut params = GroupParams::standard("hg");
    params.command_timeout_ms = 600_000;
    let mut rig = Rig::new(params);
    rig.platform.ping.insert(uuid(1), Ok(false));
    // The source's monitors do not confirm STOP_MONITORING: the restart waits.
    rig.store.answering.clear();
    rig.na(vec![missed(1, 1, 240)]);
    assert_eq!(rig.fde.restarts().len(), 1);
    assert!(rig.fde.is_busy(&uuid(1)));
    // Another NA reports it again while the restart waits.
    rig.na(vec![missed(1, 1, 300)]);
    assert_eq!(rig.last().verdict, Verdict::Busy);
    assert_eq!(rig.store.relocations.len(), 1);
    assert_eq!(rig.calls("ping").len(), 1);
}

#[test]
fn test_command_wait_is_bounded() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.store.answering.clear();
    rig.na(vec![missed(1, 1, 240)]);
    let started = rig.now;
    assert!(rig.calls("stop").is_empty(), "waits for the monitors first");
    rig.run_until(started + 31_000);
    assert_eq!(rig.calls("stop").len(), 1);
    // The target's monitors do not answer either: after another 30 s it completes.
    rig.run_until(started + 62_000);
    let rel = &rig.store.relocations[0];
    let result = rel.result.as_deref().unwrap();
    assert!(result.starts_with("success ("), "{result}");
    assert!(
        result.contains("did not confirm STOP_MONITORING within 30000 ms"),
        "{result}"
    );
    assert!(result.contains("START_MONITORING"), "{result}");
}

#[test]
fn test_advisory_policy_only_notifies() {
    let mut params = GroupParams::standard("hg");
    params.restart_policy = RestartPolicy::Advisory;
    let mut rig = Rig::new(params);
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.na(vec![missed(1, 1, 240)]);
    rig.na(vec![missed(1, 1, 300)]);
    assert_eq!(
        rig.events(EventKind::VmRestartAdvised).len(),
        1,
        "once per episode"
    );
    let text = &rig.events(EventKind::VmRestartAdvised)[0].text;
    assert!(
        text.contains("restart_policy is advisory: not restarted"),
        "{text}"
    );
    // The plan: where it would go and why.
    assert!(
        text.contains("the policy planner would restart it on host host-2 (cpu 1000 milli"),
        "{text}"
    );
    assert!(text.contains("): best fit: leaves cpu"), "{text}");
    assert!(rig.store.relocations.is_empty());
    assert!(rig.calls("stop").is_empty() && rig.calls("start").is_empty());
}

#[test]
fn test_tagged_reply_is_acknowledged_right_after_processing() {
    let mut rig = Rig::standard();
    rig.store.na = NaView {
        tag: Some(1),
        vms: vec![VmAttention {
            state_chg: true,
            missed_hb_s: None,
            ..missed(1, 1, 0)
        }],
        ..NaView::default()
    };
    let r = loop {
        let r = rig.scan();
        if r.request == Request::NeedsAttention {
            break r;
        }
    };
    let tag = r.acked.unwrap();
    assert_eq!(rig.store.acked, [tag]);
    // Missed heartbeats carry no tag and are never acknowledged.
    let r = rig.na(vec![missed(1, 1, 20)]);
    assert_eq!(r.acked, None);
    assert_eq!(rig.store.acked.len(), 1);
}

#[test]
fn test_hb_offset_resets_when_heartbeats_resume() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.status.insert(
        uuid(1),
        Ok(VmStatus {
            power: PowerState::NotActivated,
            os_started: false,
        }),
    );
    rig.na(vec![missed(1, 1, 200)]);
    assert_eq!(rig.fde.hb_offset_s(&uuid(1)), 200);
    // A capped reply does not count as "not missing".
    rig.store.na = NaView {
        more: true,
        ..NaView::default()
    };
    loop {
        if rig.scan().request == Request::NeedsAttention {
            break;
        }
    }
    assert_eq!(rig.fde.hb_offset_s(&uuid(1)), 200);
    rig.na(vec![]);
    assert_eq!(rig.fde.hb_offset_s(&uuid(1)), 0);
}

#[test]
fn test_moved_vm_is_not_a_failure() {
    let mut rig = Rig::standard();
    rig.na(vec![VmAttention {
        state_chg: true,
        missed_hb_s: None,
        discovery: Some(DiscoveryType::Moved),
        missed_hm_entry: Some(hm(2, 1)),
        ..missed(1, 2, 0)
    }]);
    assert_eq!(rig.last().verdict, Verdict::Moved);
    assert_eq!(rig.events(EventKind::VmMoved).len(), 1);
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_doorbell_and_critical_app_escalation() {
    let mut rig = Rig::standard();
    let bell = |vector| VmAttention {
        missed_hb_s: None,
        short_msg: Some(vector),
        ..missed(1, 1, 0)
    };
    rig.na(vec![bell(0x28)]);
    assert_eq!(rig.last().reason, "SHORTMSG TASK ADDED: VM vm1, dbell 28");
    assert_eq!(rig.events(EventKind::VmDoorbell).len(), 1);
    assert!(rig.store.relocations.is_empty());
    // A critical application in FAILURE: same host three times, then another host.
    for _ in 0..4 {
        rig.na(vec![bell(DBELL_APP_CRITICAL_FAILURE)]);
    }
    let kinds: Vec<(String, HostId)> = rig
        .store
        .relocations
        .iter()
        .map(|r| (r.kind.clone(), r.to))
        .collect();
    assert_eq!(
        kinds,
        [
            ("app_restart".to_owned(), HostId(1)),
            ("app_restart".to_owned(), HostId(1)),
            ("app_restart".to_owned(), HostId(1)),
            ("app_relocation".to_owned(), HostId(2)),
        ]
    );
    assert_eq!(rig.events(EventKind::AppFailureDetected).len(), 4);
    // Same-host restarts stop and start on the host and clean nothing.
    assert_eq!(rig.calls("cleanup").len(), 1);
    assert!(
        rig.store.relocations[0]
            .result
            .as_deref()
            .unwrap()
            .contains("no configuration cleanup")
    );
}

// ---- host decisions ------------------------------------------------------------------

fn host_rig() -> Rig {
    let mut rig = Rig::standard();
    let mut high = vm_row(2, 1);
    high.priority = Priority::High;
    rig.store.vms.insert(uuid(2), high);
    let mut unmanaged = vm_row(3, 1);
    unmanaged.managed = false;
    rig.store.vms.insert(uuid(3), unmanaged);
    let mut agentless = vm_row(4, 1);
    agentless.ha_monitor = false;
    rig.store.vms.insert(uuid(4), agentless);
    rig.store.vms.insert(uuid(5), vm_row(5, 2));
    // The VMs of host 1 die with it.
    for n in 1..=4 {
        rig.platform.ping.insert(uuid(n), Ok(false));
    }
    rig
}

#[test]
fn test_host_failure_waits_for_host_fdt_and_platform_confirmation() {
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    // Last heartbeat 70 s ago: silent (> 65 s) but not for 90 s yet.
    rig.silence_host(1, 70_000);
    rig.qq();
    let d = rig.last();
    assert_eq!(d.verdict, Verdict::Waiting);
    assert!(
        d.reason
            .contains("unhealthy for 70s < host_failure_detection_time 90s"),
        "{}",
        d.reason
    );
    assert!(rig.calls("host_alive").is_empty());
    rig.silence_host(1, 90_000);
    rig.qq();
    assert_eq!(rig.events(EventKind::HostFailureDetected).len(), 1);
    assert_eq!(rig.fde.failed_hosts(), [HostId(1)]);
    // Managed VMs only, agent-less included, High priority first; the dead source is
    // neither stopped nor waited for.
    let moved: Vec<Uuid> = rig.store.relocations.iter().map(|r| r.vm).collect();
    assert_eq!(moved, [uuid(2), uuid(1), uuid(4)]);
    assert!(
        rig.store
            .relocations
            .iter()
            .all(|r| r.kind == "host_failure")
    );
    assert!(rig.calls("stop").is_empty());
    assert!(
        rig.store.relocations.iter().all(|r| r
            .result
            .as_deref()
            .unwrap()
            .contains("shutdown skipped"))
    );
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "3 out of 3 VMs have been successfully restarted"
    );
    // Acted on once: the next scans do not relocate again.
    rig.qq();
    rig.qq();
    assert_eq!(rig.store.relocations.len(), 3);
    assert_eq!(rig.events(EventKind::HostFailureDetected).len(), 1);
}

#[test]
fn test_one_healthy_monitor_means_no_host_failure() {
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.store.hosts[0].monitors[0].silent_ms = 600_000;
    rig.qq();
    rig.qq();
    assert!(rig.calls("host_alive").is_empty());
    assert!(rig.store.relocations.is_empty());
}

#[test]
fn test_host_that_answers_is_not_failed_and_timeouts_are_not_confirmations() {
    let mut rig = host_rig();
    rig.silence_host(1, 120_000);
    rig.qq();
    rig.qq();
    assert_eq!(rig.events(EventKind::HostMonitorsUnresponsive).len(), 1);
    assert_eq!(rig.last().verdict, Verdict::HostAlive);
    rig.platform
        .alive
        .insert("host-1".into(), Err(timeout("host_alive")));
    rig.qq();
    assert_eq!(rig.last().verdict, Verdict::ProbeFailed);
    assert!(rig.store.relocations.is_empty());
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.qq();
    assert_eq!(rig.store.relocations.len(), 3);
}

#[test]
fn test_planned_shutdown_is_not_a_failure() {
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    for m in &mut rig.store.hosts[0].monitors {
        m.state = HmState::Down;
        m.reason = REASON_SHUTDOWN;
        m.silent_ms = 100_000;
    }
    rig.qq();
    assert_eq!(rig.last().verdict, Verdict::PlannedShutdown);
    assert_eq!(rig.events(EventKind::HostShutdownDetected).len(), 1);
    assert!(rig.store.relocations.is_empty());
    // One monitor stopped on purpose and the other gone silent: a failure.
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.silence_host(1, 100_000);
    rig.store.hosts[0].monitors[0].state = HmState::Down;
    rig.store.hosts[0].monitors[0].reason = REASON_SHUTDOWN;
    rig.qq();
    assert_eq!(rig.events(EventKind::HostFailureDetected).len(), 1);
}

#[test]
fn test_down_monitors_are_dated_from_first_sight() {
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    for m in &mut rig.store.hosts[0].monitors {
        m.state = HmState::Down;
    }
    // QuickQueries at 0, 20, 60, 80 s (40 and 100 are NeedsAttention) → waiting; at
    // 120 s → failure.
    for _ in 0..4 {
        rig.qq();
    }
    assert!(rig.store.relocations.is_empty());
    rig.qq();
    assert_eq!(rig.events(EventKind::HostFailureDetected).len(), 1);
}

#[test]
fn test_host_back_runs_owed_cleanups() {
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.platform.cleanup_fails = true;
    rig.silence_host(1, 100_000);
    rig.qq();
    // Cleanup owed to the dead host (not called: it is gone): tolerated, counted a
    // success (gap 16).
    assert!(rig.calls("cleanup host-1").is_empty());
    assert_eq!(rig.events(EventKind::VmRestartStepFailed).len(), 3);
    assert!(
        rig.events(EventKind::VmRestartStepFailed)[0]
            .text
            .starts_with("ERROR: Restart has encountered an error for VM")
    );
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "3 out of 3 VMs have been successfully restarted"
    );
    rig.platform.cleanup_fails = false;
    rig.silence_host(1, 0);
    rig.qq();
    assert_eq!(rig.events(EventKind::HostActive).len(), 1);
    assert!(rig.fde.failed_hosts().is_empty());
    assert_eq!(
        rig.calls("cleanup host-1").len(),
        3,
        "none while the host was gone (not called), then the 3 deferred ones"
    );
}

// ---- placement and execution ---------------------------------------------------------

#[test]
fn test_vm_that_fits_nowhere_is_reported_and_placed_later() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.store.vms.get_mut(&uuid(1)).unwrap().memory_mb = 20_000;
    rig.na(vec![missed(1, 1, 240)]);
    assert_eq!(rig.events(EventKind::VmRestartNoHost).len(), 1);
    let text = &rig.events(EventKind::VmRestartNoHost)[0].text;
    assert!(
        text.contains(
            "host-2: no room: free cpu 8000 milli / memory 16384 MiB, needs 1000 / 20000"
        ),
        "{text}"
    );
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "0 out of 1 VMs have been successfully restarted"
    );
    assert_eq!(rig.fde.waiting_for_placement().len(), 1);
    rig.scan();
    assert_eq!(
        rig.events(EventKind::VmRestartNoHost).len(),
        1,
        "reported once"
    );
    rig.store.hosts[2].memory_mb = 32_768;
    rig.scan();
    assert_eq!(rig.store.relocations.len(), 1);
    assert_eq!(rig.store.relocations[0].to, HostId(3));
}

#[test]
fn test_restarts_per_target_host_are_capped() {
    let mut params = GroupParams::standard("hg");
    params.max_restarts_per_host = 2;
    let mut rig = Rig::new(params);
    for n in 2..=6 {
        rig.store.vms.insert(uuid(n), vm_row(n, 1));
    }
    for n in 1..=6 {
        rig.platform.ping.insert(uuid(n), Ok(false));
    }
    rig.store.hosts.truncate(2);
    rig.platform.alive.insert("host-1".into(), Ok(false));
    // The target's monitors do not answer START_MONITORING: restarts hold their slot.
    rig.store.answering.remove(&hm(2, 1));
    rig.store.answering.remove(&hm(2, 2));
    rig.silence_host(1, 100_000);
    rig.scan();
    let active = |rig: &Rig| {
        rig.fde
            .restarts()
            .iter()
            .filter(|r| r.phase != crate::relocate::Phase::Queued)
            .count()
    };
    assert_eq!(rig.fde.restarts().len(), 6);
    assert_eq!(active(&rig), 2);
    assert_eq!(rig.calls("start").len(), 2);
    let t = rig.now;
    rig.run_until(t + 29_000);
    assert_eq!(rig.calls("start").len(), 2);
    rig.run_until(t + 95_000);
    assert_eq!(rig.calls("start").len(), 6);
    rig.run_until(t + 200_000);
    assert!(rig.fde.restarts().is_empty());
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "6 out of 6 VMs have been successfully restarted"
    );
}

#[test]
fn test_start_failure_is_placed_elsewhere() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.start_fails.insert("host-2".into());
    rig.na(vec![missed(1, 1, 240)]);
    let targets: Vec<HostId> = rig.store.relocations.iter().map(|r| r.to).collect();
    assert_eq!(targets, [HostId(2), HostId(3)]);
    assert!(
        rig.store.relocations[0]
            .result
            .as_deref()
            .unwrap()
            .starts_with("failed:")
    );
    assert_eq!(rig.store.relocations[1].result.as_deref(), Some("success"));
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "1 out of 1 VMs have been successfully restarted"
    );
}

#[test]
fn test_stop_failure_on_a_live_source_never_starts_a_second_copy() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.stop_fails.insert(
        "host-1".into(),
        PlatformError::Failed {
            op: "stop".into(),
            why: "busy".into(),
        },
    );
    rig.na(vec![missed(1, 1, 240)]);
    assert!(rig.calls("start").is_empty());
    assert_eq!(rig.events(EventKind::VmRestartFailed).len(), 1);
    assert!(
        rig.events(EventKind::VmRestartFailed)[0]
            .text
            .contains("could run twice")
    );
    let kinds: Vec<MonitorCommand> = rig.store.commands.iter().map(|c| c.2).collect();
    assert_eq!(
        kinds,
        [
            MonitorCommand::StopMonitoring,
            MonitorCommand::StopMonitoring,
            MonitorCommand::StartMonitoring,
            MonitorCommand::StartMonitoring,
        ],
        "the source's monitors watch the VM again"
    );
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "0 out of 1 VMs have been successfully restarted"
    );
    assert!(!rig.fde.is_busy(&uuid(1)), "the lock is released");
}

#[test]
fn test_stop_timeout_is_retried_within_the_action_bound() {
    let mut params = GroupParams::standard("hg");
    params.action_timeout_ms = 10_000;
    let mut rig = Rig::new(params);
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform
        .stop_fails
        .insert("host-1".into(), timeout("stop"));
    rig.na(vec![missed(1, 1, 240)]);
    let t = rig.now;
    rig.run_until(t + 15_000);
    assert!(rig.calls("stop").len() >= 2, "{:?}", rig.calls("stop"));
    assert!(rig.calls("start").is_empty());
    assert_eq!(rig.events(EventKind::VmRestartFailed).len(), 1);
}

// ---- node data -----------------------------------------------------------------------

#[test]
fn test_node_data_events_are_emitted_and_acknowledged() {
    let mut rig = Rig::standard();
    rig.store.hosts[0].monitors[0].has_data = true;
    rig.store.node = NodeData {
        tag: None,
        events: ["NODE_DOWN", "ADAPTER_UP", "NODE_UP", "REP_DOWN"]
            .iter()
            .map(|t| NodeEvent {
                hm: hm(1, 1),
                text: format!(
                    "BEGIN_EVENT_INFO\nEVENT_TYPE={t}\nREASON=NODE_SHUTDOWN\nEND_EVENT_INFO\n"
                ),
            })
            .collect(),
    };
    rig.scan();
    let kinds: Vec<EventKind> = rig
        .store
        .events
        .iter()
        .filter(|e| e.hm == Some(hm(1, 1)))
        .map(|e| e.kind)
        .filter(|k| {
            !matches!(
                k,
                EventKind::ViosCaaStateUpDetected | EventKind::ViosHmRespDetected
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::ViosNodeFailure,
            EventKind::NetworkInterfaceActive,
            EventKind::ViosNodeActive,
            EventKind::ViosNodeEvent,
        ]
    );
    assert_eq!(rig.store.node_acked.len(), 1);
    rig.scan();
    assert_eq!(
        rig.store.node_acked.len(),
        1,
        "has_data cleared: not asked again"
    );
}

#[test]
fn test_decision_log_is_bounded() {
    let mut log = DecisionLog::new(3);
    for i in 0..5 {
        log.push(
            i,
            1,
            Subject::Monitor { uuid: uuid(1) },
            Verdict::NoAction,
            format!("d{i}"),
        );
    }
    let kept: Vec<&str> = log.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(kept, ["d2", "d3", "d4"]);
    assert_eq!(log.total(), 5);
    assert_eq!(log.since(4).count(), 1);
}

#[test]
fn test_stale_report_after_a_restart_is_not_decided_again() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.na(vec![missed(1, 1, 240)]);
    assert_eq!(rig.store.relocations.len(), 1);
    // The old host's monitors still have the VM missing, and the HSDB still says host 1.
    rig.na(vec![missed(1, 1, 300)]);
    assert_eq!(rig.store.relocations.len(), 1, "no second restart");
    assert!(rig.last().reason.contains("stale"), "{}", rig.last().reason);
    // Once the HSDB says host 2 (the agent paired there), the engine follows it.
    rig.store.vms.get_mut(&uuid(1)).unwrap().current_host = Some(HostId(2));
    rig.na(vec![missed(1, 2, 20)]);
    assert!(
        rig.last().reason.contains("less than its VMFDT"),
        "{}",
        rig.last().reason
    );
}

#[test]
fn test_vm_already_running_elsewhere_is_not_restarted() {
    let mut rig = Rig::standard();
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.hosts[2].vms.push((
        VmSpec {
            uuid: uuid(1),
            name: "vm1".into(),
            cpu_milli: 1000,
            memory_mb: 1024,
        },
        VmStatus {
            power: PowerState::Running,
            os_started: true,
        },
    ));
    rig.na(vec![missed(1, 1, 240)]);
    assert!(rig.store.relocations.is_empty());
    assert!(rig.calls("start").is_empty());
    assert_eq!(
        rig.last().reason,
        "already running on host host-3: not restarted"
    );
}

#[test]
fn test_lost_acknowledgement_is_reported_again() {
    let mut rig = Rig::standard();
    rig.store.na = NaView {
        tag: Some(1),
        vms: vec![VmAttention {
            missed_hb_s: None,
            short_msg: Some(0x2),
            ..missed(1, 1, 0)
        }],
        ..NaView::default()
    };
    let mut lose = 1;
    let mut now = T0;
    let mut acked = Vec::new();
    for _ in 0..6 {
        let mut store = LosingAcks {
            store: &mut rig.store,
            lose: &mut lose,
        };
        let t = rig.fde.tick(now, &mut store, &mut rig.platform).unwrap();
        if let Some(tag) = t.scan.and_then(|s| s.acked) {
            acked.push(tag);
        }
        now = t.next_wake_ms;
    }
    // Two NeedsAttention replies under two tags; the first acknowledgement was lost.
    assert_eq!(acked.len(), 2);
    assert_ne!(acked[0], acked[1]);
    assert_eq!(rig.store.acked, [acked[1]]);
    assert_eq!(lose, 0);
    assert_eq!(rig.events(EventKind::VmDoorbell).len(), 2, "reported again");
}

#[test]
fn test_failed_host_vm_that_answers_ping_is_not_restarted() {
    let mut rig = host_rig();
    let mut p = rig.fde.params().clone();
    p.host_failure_ping_vms = true;
    rig.fde.set_params(p);
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.silence_host(1, 100_000);
    // vm1 and vm4 do not answer; vm2 (High) answers: alive behind a partition.
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.ping.insert(uuid(4), Ok(false));
    rig.platform.ping.insert(uuid(2), Ok(true));
    rig.qq();
    let moved: Vec<Uuid> = rig.store.relocations.iter().map(|r| r.vm).collect();
    assert_eq!(moved, [uuid(1), uuid(4)]);
    assert_eq!(rig.fde.waiting_for_placement().len(), 1);
    assert!(rig.verdicts(2).contains(&Verdict::Pingable));
    // A ping that fails is no evidence: still not restarted.
    rig.platform.ping.insert(uuid(2), Err(timeout("ping")));
    rig.qq();
    assert_eq!(rig.store.relocations.len(), 2);
    // The host comes back: the VM was alive there all along.
    rig.silence_host(1, 0);
    rig.qq();
    assert!(rig.fde.waiting_for_placement().is_empty());
    assert_eq!(rig.store.relocations.len(), 2);
    assert_eq!(
        rig.events(EventKind::RestartSummary)[0].text,
        "2 out of 3 VMs have been successfully restarted"
    );
}

#[test]
fn test_failed_host_vms_are_not_pinged_by_default() {
    // The seed's host relocation: every managed VM of the failed host, no VM pinged.
    let mut rig = host_rig();
    rig.platform.alive.insert("host-1".into(), Ok(false));
    rig.silence_host(1, 100_000);
    rig.platform.ping.insert(uuid(2), Ok(true));
    rig.qq();
    assert_eq!(rig.store.relocations.len(), 3);
    assert!(rig.calls("ping").is_empty());
}
