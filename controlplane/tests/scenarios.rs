//! Acceptance scenarios TC-1…TC-14 (seed-controlplane.md §7) on the `sim` platform with the
//! virtual clock: simulated monitors writing a real HSDB, the real Failure Detection
//! Engine, the invariants of the simulation checked at every step (docs/controlplane.md,
//! "Simulation"). Each asserts the decisions, the event sequence, the end state and the
//! timing bound computed from the parameters.
//!
//! The test bed mirrors the seed's (seed 004 L17218-17296): two hosts, `host-01` (the
//! seed's SN101AFDR) and `host-02` (SN10EE85P), two monitors each, six VMs on each; the
//! seed's timing (`standard`: 10 s heartbeats, 20 s miss, 20 s scans, NeedsAttention
//! every third scan, hostFDT 90 s, VMFDT 190 s normal / 140 s fast).

#![allow(clippy::unwrap_used)]

use controlplane::fde::{DBELL_APP_CRITICAL_FAILURE, Fde, Request, Verdict};
use controlplane::params::GroupParams;
use controlplane::simulation::agents::Side;
use controlplane::simulation::engine::FdeEngine;
use controlplane::simulation::faults::{FaultKind, ScheduledFault};
use controlplane::simulation::invariants::FailureKind;
use controlplane::simulation::run::{SimConfig, Simulation, vm_uuid};
use controlplane::simulation::setup::{self, EPOCH_MS as T0};
use hsdb::{
    DetectionSpeed, EventRow, HeartbeatState, HmState, HostId, Priority, RelocationKind, Uuid,
    VmSettings,
};
use tempfile::TempDir;

const MIN: i64 = 60_000;

/// The seed's test bed: 2 hosts × 6 VMs, standard timing.
struct Bed {
    _dir: TempDir,
    sim: Simulation<FdeEngine>,
    cfg: SimConfig,
    params: GroupParams,
}

fn bed(seed: u64) -> Bed {
    let (mut cfg, params) = setup::standard(seed, 2, 6);
    cfg.full_trace = true;
    let dir = tempfile::tempdir().unwrap();
    let sim = setup::with_fde(cfg.clone(), params.clone(), dir.path()).unwrap();
    Bed {
        _dir: dir,
        sim,
        cfg,
        params,
    }
}

impl Bed {
    fn at(&mut self, at_ms: i64, kind: FaultKind) {
        self.sim.schedule([ScheduledFault {
            at: T0 + at_ms,
            kind,
        }]);
    }

    fn run_to(&mut self, at_ms: i64) {
        if let Err(v) = self.sim.run_until(T0 + at_ms) {
            panic!("{v}");
        }
    }

    fn name(&mut self, vm: &Uuid, name: &str, priority: Priority, speed: DetectionSpeed) {
        self.sim
            .hsdb
            .set_vm(
                vm,
                &VmSettings {
                    name: Some(name.to_owned()),
                    priority: Some(priority),
                    detection_speed: Some(speed),
                    ..VmSettings::default()
                },
                T0,
            )
            .unwrap();
        let vmfdt = self.params.vmfdt_ms(speed);
        self.sim.set_vmfdt(*vm, vmfdt);
    }

    fn events(&self) -> Vec<EventRow> {
        self.sim.hsdb.events_after(0, 100_000).unwrap()
    }

    /// The texts of the VM's restart events, in order.
    fn progress(&self, vm: &Uuid) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.vm == Some(*vm) && e.kind.starts_with("VM_RESTART"))
            .map(|e| e.text)
            .collect()
    }

    fn event_kinds(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.kind).collect()
    }

    /// The engine's decisions about `vm`'s subject name with `verdict`.
    fn decisions(&self, name: &str, verdict: Verdict) -> Vec<String> {
        self.sim
            .engine
            .fde
            .decisions()
            .iter()
            .filter(|d| d.verdict == verdict && d.subject.to_string() == format!("vm {name}"))
            .map(|d| d.reason.clone())
            .collect()
    }

    fn running_on(&self, vm: &Uuid) -> Vec<String> {
        self.sim.platform().world().vm_running_on(vm)
    }

    fn actions(&self) -> u64 {
        self.sim.report().actions
    }

    /// The VM-failure bound of the seed's formula: vm_miss_after + VMFDT + one NA cycle +
    /// 1 s + action time (docs/controlplane.md, "Simulation").
    fn vm_bound(&self, vmfdt_ms: i64) -> i64 {
        self.cfg.bounds.vm_deadline(0, false, vmfdt_ms)
    }
}

/// `needles` appear in `hay` in this order (other lines may come between).
fn assert_in_order(hay: &[String], needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match hay[at..].iter().position(|h| h.contains(n)) {
            Some(i) => at += i + 1,
            None => panic!("{n:?} missing after position {at} in {hay:#?}"),
        }
    }
}

/// TC-1: a Linux VM's kernel panics (High priority, fast detection: VMFDT 140 s): relocated
/// to the other host in the seed's restart sequence, within miss + 140 s + NA cycle + action.
#[test]
fn tc01_linux_kernel_crash_relocates() {
    let mut b = bed(1);
    let vm = vm_uuid(5);
    b.name(&vm, "p18lnx02", Priority::High, DetectionSpeed::Fast);
    b.at(10 * MIN, FaultKind::OsCrash { vm });
    b.run_to(30 * MIN);
    assert_in_order(
        &b.progress(&vm),
        &[
            "Stopping HA monitoring for VM p18lnx02",
            "HA monitoring for VM p18lnx02 stopped",
            "Shutdown has started for VM p18lnx02",
            "Shutdown has completed for VM p18lnx02",
            "Restart has started for VM p18lnx02",
            "Starting HA monitoring for VM p18lnx02",
            "HA monitoring for VM p18lnx02 started",
            "Restart on Target host host-02 has completed for VM p18lnx02",
        ],
    );
    // End state: on host-02 only, its definition gone from host-01, the HSDB agrees.
    assert_eq!(b.running_on(&vm), vec!["host-02".to_string()]);
    assert!(
        !b.sim
            .platform()
            .world()
            .vm_defined_on(&vm)
            .contains(&"host-01".to_string())
    );
    assert_eq!(
        b.sim.hsdb.vm(&vm).unwrap().unwrap().current_host,
        Some(HostId(2))
    );
    // Decided at VMFDT 140 s, not pingable, Running with its OS started.
    let recover = b.decisions("p18lnx02", Verdict::Recover);
    assert!(recover[0].contains("VMFDT 140"), "{recover:?}");
    // Timing: 20 + 140 + 60 + 1 s + action (~12 s).
    let rec = b.sim.checker().recovered()[0];
    assert_eq!(rec.kind, FailureKind::OsCrash);
    assert!(rec.latency_ms <= b.vm_bound(140_000), "{rec:?}");
    assert!(rec.latency_ms >= 140_000, "{rec:?}");
    // Exactly one restart: stop, start, cleanup.
    assert_eq!(b.actions(), 3);
}

/// TC-2: an AIX VM crashes into KDB (normal detection: VMFDT 190 s): relocated, its
/// configuration cleaned up on the source host, "1 out of 1" restarted.
#[test]
fn tc02_aix_kernel_crash_relocates_with_cleanup() {
    let mut b = bed(2);
    let vm = vm_uuid(3);
    b.name(&vm, "p18aix02", Priority::Medium, DetectionSpeed::Normal);
    b.at(10 * MIN, FaultKind::OsCrash { vm });
    b.run_to(30 * MIN);
    assert_in_order(
        &b.progress(&vm),
        &[
            "Stopping HA monitoring for VM p18aix02",
            "Shutdown has completed for VM p18aix02",
            "Restart has started for VM p18aix02",
            "Restart on Target host host-02 has completed for VM p18aix02",
            "Configuration cleanup started for VM p18aix02",
            "Configuration cleanup completed for VM p18aix02",
        ],
    );
    let summaries: Vec<String> = b
        .events()
        .into_iter()
        .filter(|e| e.kind == "RESTART_SUMMARY")
        .map(|e| e.text)
        .collect();
    assert_eq!(
        summaries,
        vec!["1 out of 1 VMs have been successfully restarted"]
    );
    let world = b.sim.platform().world();
    assert_eq!(world.vm_defined_on(&vm), vec!["host-02".to_string()]);
    assert!(!world.vms_defined_on("host-01").contains(&vm));
    drop(world);
    let rec = b.sim.checker().recovered()[0];
    assert!(rec.latency_ms <= b.vm_bound(190_000), "{rec:?}");
    assert!(rec.latency_ms >= 190_000, "{rec:?}");
    let relocations = b.sim.hsdb.relocations(Some(&vm), 10).unwrap();
    assert_eq!(relocations.len(), 1);
    assert_eq!(relocations[0].kind, RelocationKind::Relocate);
    assert_eq!(relocations[0].to_host, Some(HostId(2)));
}

/// TC-3: host-01 fails (its monitors fall silent, its hypervisor is gone): every managed VM
/// of it — the agent-less one too — restarts on host-02, High priority first; the cleanups
/// fail while host-01 is down and are done when it is back, after which host-01 lists none
/// of them.
#[test]
fn tc03_host_failure_relocates_every_managed_vm() {
    let mut b = bed(3);
    let lnx = vm_uuid(0);
    let ibmi = vm_uuid(1);
    let unmanaged = vm_uuid(4);
    b.name(&lnx, "p18lnx02", Priority::High, DetectionSpeed::Normal);
    b.sim.without_agent(&ibmi);
    b.sim.set_managed(&unmanaged, false).unwrap();
    b.at(
        10 * MIN,
        FaultKind::HostLoss {
            host: 0,
            repaired_after: 20 * MIN,
        },
    );
    b.run_to(45 * MIN);
    let managed: Vec<Uuid> = [0, 1, 2, 3, 5].map(vm_uuid).to_vec();
    for vm in &managed {
        assert_eq!(b.running_on(vm), vec!["host-02".to_string()], "{vm}");
    }
    // The unmanaged VM is not relocated: the operator powered it on when host-01 was back.
    assert_eq!(b.running_on(&unmanaged), vec!["host-01".to_string()]);
    // High priority first.
    let completed: Vec<Uuid> = b
        .events()
        .into_iter()
        .filter(|e| e.kind == "VM_RESTART_COMPLETED")
        .filter_map(|e| e.vm)
        .collect();
    assert_eq!(completed.first(), Some(&lnx), "{completed:?}");
    assert_eq!(completed.len(), managed.len());
    // Cleanups failed while host-01 was down, the restarts still count (gap 16).
    let kinds = b.event_kinds();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "VM_RESTART_STEP_FAILED")
            .count(),
        managed.len()
    );
    assert!(
        b.events()
            .iter()
            .any(|e| e.text == "5 out of 5 VMs have been successfully restarted"),
        "{kinds:?}"
    );
    // Timing: every one within the host bound; none before the monitors had been silent
    // for hostFDT (counted from their last heartbeat, at most one heartbeat period before
    // the loss).
    let earliest = b.params.host_fdt_ms - b.cfg.timers.hm_heartbeat_period_ms;
    for rec in b.sim.checker().recovered() {
        assert_eq!(rec.kind, FailureKind::HostLoss);
        assert!(rec.latency_ms <= rec.bound_ms, "{rec:?}");
        assert!(rec.latency_ms >= earliest, "{rec:?}");
    }
    // Back: host-01's stale definitions were cleaned up; only the unmanaged VM and the
    // ones that never left remain.
    let defined = b.sim.platform().world().vms_defined_on("host-01");
    for vm in &managed {
        assert!(!defined.contains(vm), "{vm} still defined on host-01");
    }
}

/// TC-4: steady state — a scan every 20 s, NeedsAttention every third, QuickQuery shows
/// every monitor UP and responsive, no decision to act, no action, no VM event.
#[test]
fn tc04_steady_state_scans_and_does_nothing() {
    let mut b = bed(4);
    b.run_to(61 * MIN);
    let scans: Vec<_> = b.sim.engine.scans.iter().cloned().collect();
    // The first scan at the engine's start, then one every 20 s for an hour.
    assert!(scans.len() >= 180, "{}", scans.len());
    for w in scans.windows(2) {
        assert_eq!(w[1].at_ms - w[0].at_ms, 20_000, "{w:?}");
    }
    for s in &scans {
        let na = s.report.scan.is_multiple_of(3);
        assert_eq!(s.report.request == Request::NeedsAttention, na, "{s:?}");
        assert_eq!(s.report.restarts_submitted, 0);
    }
    assert_eq!(scans[0].report.request, Request::QuickQuery);
    assert_eq!(b.actions(), 0);
    assert!(
        b.events().iter().all(|e| e.vm.is_none()),
        "{:?}",
        b.event_kinds()
    );
    let qq = b.sim.hsdb.quick_query(b.sim.now_ms()).unwrap();
    assert_eq!(qq.len(), 2);
    for host in &qq {
        assert_eq!(host.hms.len(), 2);
        for hm in &host.hms {
            assert_eq!(hm.hm.state, HmState::Up);
            assert!(!hm.hm.has_data);
            assert_eq!(hm.hm.reason, 0);
            // Heartbeats every 30 s (hmd's default).
            assert!(hm.response_sec() <= 30, "{hm:?}");
        }
    }
}

/// TC-5: the engine restarts (the daemon): its first scan is a QuickQuery at once, with no
/// wait; it reports every monitor UP and responsive again, and takes no action.
#[test]
fn tc05_daemon_restart_first_scan_at_once() {
    let mut b = bed(5);
    b.run_to(10 * MIN + 7_000);
    let restarted_at = b.sim.now_ms();
    b.sim
        .restart_engine(FdeEngine::new(Fde::new(b.params.clone())));
    let before = b.events().len();
    b.run_to(15 * MIN);
    let first = b.sim.engine.scans.front().cloned().unwrap();
    assert_eq!(first.at_ms, restarted_at);
    assert_eq!(first.report.scan, 1);
    assert_eq!(first.report.request, Request::QuickQuery);
    let fresh: Vec<EventRow> = b.events().into_iter().skip(before).collect();
    for kind in ["VIOS_CAA_STATE_UP_DETECTED", "VIOS_HM_RESP_DETECTED"] {
        let n = fresh
            .iter()
            .filter(|e| e.kind == kind && e.created_ms == restarted_at)
            .count();
        assert_eq!(n, 4, "one {kind} per monitor at the first scan: {fresh:?}");
    }
    assert_eq!(b.actions(), 0);
}

/// TC-6: both HA adapters of a VM down for 180 s (it answers pings): NeedsAttention reports
/// its missed heartbeats about once a minute, each below VMFDT 190: no action.
#[test]
fn tc06_missed_heartbeats_below_threshold_no_action() {
    let mut b = bed(6);
    let vm = vm_uuid(2);
    b.name(&vm, "vmraix1", Priority::Medium, DetectionSpeed::Normal);
    b.at(
        10 * MIN,
        FaultKind::AdapterDown {
            vm,
            side: None,
            duration: 180_000,
        },
    );
    b.run_to(20 * MIN);
    let below = b.decisions("vmraix1", Verdict::NoAction);
    let counts: Vec<u64> = below
        .iter()
        .filter(|r| r.contains("is less than its VMFDT 190"))
        .map(|r| {
            r.trim_start_matches("Missed HB count ")
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(counts.len() >= 2, "{below:?}");
    // One sample per NeedsAttention, ~60 s apart, all below 190 s.
    for w in counts.windows(2) {
        assert_eq!(w[1] - w[0], 60, "{counts:?}");
    }
    assert!(counts.iter().all(|c| *c < 190));
    assert_eq!(b.actions(), 0);
    assert!(!b.event_kinds().iter().any(|k| k == "VM_FAILURE_DETECTED"));
}

/// TC-7: the adapters stay down for 5 minutes, the VM answers pings: above VMFDT it is
/// "pingable ignoring missed HB count …", never relocated.
#[test]
fn tc07_missed_heartbeats_above_threshold_but_pingable() {
    let mut b = bed(7);
    let vm = vm_uuid(2);
    b.name(&vm, "vmraix1", Priority::Medium, DetectionSpeed::Normal);
    b.at(
        10 * MIN,
        FaultKind::AdapterDown {
            vm,
            side: None,
            duration: 5 * MIN,
        },
    );
    b.run_to(20 * MIN);
    let pingable = b.decisions("vmraix1", Verdict::Pingable);
    assert!(!pingable.is_empty());
    assert!(
        pingable[0].starts_with("VM vmraix1 is pingable ignoring missed HB count"),
        "{pingable:?}"
    );
    assert_eq!(b.actions(), 0);
    assert_eq!(b.running_on(&vm), vec!["host-01".to_string()]);
    assert!(!b.event_kinds().iter().any(|k| k == "VM_FAILURE_DETECTED"));
    // Heartbeats resumed: DETECTED again on both monitors.
    for row in b.sim.hsdb.vm_hms(&vm).unwrap() {
        assert_eq!(row.last_state, HeartbeatState::Detected);
    }
}

/// TC-8: the VM hangs (no heartbeat, no ping, Running with its OS started): "Limit
/// reached", VM_FAILURE_DETECTED, "not able to ping", recovery with HBoffset 0.
#[test]
fn tc08_missed_heartbeats_unreachable_running_recovers() {
    let mut b = bed(8);
    let vm = vm_uuid(2);
    b.name(&vm, "vmraix1", Priority::Medium, DetectionSpeed::Normal);
    b.at(
        10 * MIN,
        FaultKind::VmHang {
            vm,
            heals_after: None,
        },
    );
    b.run_to(25 * MIN);
    let failure: Vec<EventRow> = b
        .events()
        .into_iter()
        .filter(|e| e.kind == "VM_FAILURE_DETECTED")
        .collect();
    assert_eq!(failure.len(), 1);
    assert!(failure[0].text.contains("Limit reached for VM vmraix1"));
    assert!(failure[0].text.contains("not able to ping VM vmraix1"));
    let recover = b.decisions("vmraix1", Verdict::Recover);
    assert!(
        recover[0].starts_with("VM failure detected. Initiating recovery for VM vmraix1"),
        "{recover:?}"
    );
    assert!(recover[0].contains("state Running"));
    assert!(recover[0].contains("OS had started"));
    assert!(!recover[0].contains("HBoffset"), "HBoffset 0: {recover:?}");
    assert_eq!(b.running_on(&vm), vec!["host-02".to_string()]);
    let rec = b.sim.checker().recovered()[0];
    assert!(rec.latency_ms <= b.vm_bound(190_000), "{rec:?}");
}

/// TC-9: one HA adapter of the VM down for 10 minutes: one monitor misses it, the other
/// still hears it: NeedsAttention never reports it, no decision about it, no action.
#[test]
fn tc09_single_path_miss_not_reported() {
    let mut b = bed(9);
    let vm = vm_uuid(2);
    b.name(&vm, "vmraix1", Priority::Medium, DetectionSpeed::Normal);
    b.at(
        10 * MIN,
        FaultKind::AdapterDown {
            vm,
            side: Some(Side::A),
            duration: 10 * MIN,
        },
    );
    b.run_to(19 * MIN);
    let states: Vec<HeartbeatState> = b
        .sim
        .hsdb
        .vm_hms(&vm)
        .unwrap()
        .iter()
        .map(|r| r.last_state)
        .collect();
    assert!(states.contains(&HeartbeatState::Missing));
    assert!(states.contains(&HeartbeatState::Detected));
    let about: Vec<_> = b
        .sim
        .engine
        .fde
        .decisions()
        .iter()
        .filter(|d| d.subject.to_string() == "vm vmraix1" && d.at_ms > T0 + 10 * MIN)
        .collect();
    assert!(about.is_empty(), "{about:?}");
    assert_eq!(b.actions(), 0);
}

/// TC-10: a state change (the agent stops gracefully: SUSPENDED) is reported with an hsTag
/// and acknowledged right away; it is not reported again. A lost acknowledgement: the
/// items come back under a new tag and are acknowledged then. Missed heartbeats are never
/// acknowledged: they are reported while they last.
#[test]
fn tc10_ack_semantics() {
    let mut b = bed(10);
    let stopped = vm_uuid(2);
    let silent = vm_uuid(3);
    b.at(
        10 * MIN,
        FaultKind::AgentStop {
            vm: stopped,
            restarts_after: 60 * MIN,
        },
    );
    b.run_to(12 * MIN);
    // The state change was reported and acknowledged by the first NeedsAttention after it.
    let acked: Vec<_> = b
        .sim
        .engine
        .scans
        .iter()
        .filter(|s| s.at_ms > T0 + 10 * MIN && s.report.acked.is_some())
        .cloned()
        .collect();
    assert_eq!(acked.len(), 1, "{acked:?}");
    assert!(
        b.sim
            .hsdb
            .pending()
            .unwrap()
            .iter()
            .all(|p| p.vm != Some(stopped)),
        "acknowledged items are gone"
    );
    // Lose the next acknowledgement, then make a change to acknowledge.
    b.at(12 * MIN + 1_000, FaultKind::LostAcks { count: 1 });
    b.at(
        12 * MIN + 2_000,
        FaultKind::AgentStop {
            vm: silent,
            restarts_after: 60 * MIN,
        },
    );
    b.run_to(16 * MIN);
    assert_eq!(b.sim.engine.acks_lost, 1);
    let tags: Vec<i64> = b
        .sim
        .engine
        .scans
        .iter()
        .filter(|s| s.at_ms > T0 + 12 * MIN)
        .filter_map(|s| s.report.acked)
        .collect();
    // The lost one and the one that cleared the items: two different tags.
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_ne!(tags[0], tags[1]);
    assert!(
        b.sim
            .hsdb
            .pending()
            .unwrap()
            .iter()
            .all(|p| p.vm != Some(silent))
    );
    // Missed heartbeats: reported at every NeedsAttention while they last, never acked.
    let missed = vm_uuid(4);
    b.name(
        &missed,
        "vmmissed",
        Priority::Medium,
        DetectionSpeed::Normal,
    );
    b.at(
        17 * MIN,
        FaultKind::AdapterDown {
            vm: missed,
            side: None,
            duration: 10 * MIN,
        },
    );
    b.run_to(25 * MIN);
    let reports = b.decisions("vmmissed", Verdict::NoAction).len()
        + b.decisions("vmmissed", Verdict::Pingable).len();
    assert!(reports >= 6, "{reports}");
    assert_eq!(b.actions(), 0);
}

/// TC-11: an application doorbell (shortMsg 0x28): "SHORTMSG TASK ADDED … dbell 28", the
/// item acknowledged, the VM's short message cleared; no restart (not a critical failure).
#[test]
fn tc11_doorbell_short_message() {
    let mut b = bed(11);
    let vm = vm_uuid(2);
    b.name(&vm, "vmapp", Priority::Medium, DetectionSpeed::Normal);
    b.at(10 * MIN, FaultKind::Doorbell { vm, vector: 0x28 });
    b.run_to(12 * MIN);
    let bells = b.decisions("vmapp", Verdict::Doorbell);
    assert_eq!(
        bells,
        vec!["SHORTMSG TASK ADDED: VM vmapp, dbell 28".to_string()]
    );
    assert_eq!(b.sim.hsdb.vm(&vm).unwrap().unwrap().short_msg, 0);
    assert!(
        b.sim
            .hsdb
            .pending()
            .unwrap()
            .iter()
            .all(|p| p.vm != Some(vm))
    );
    assert_eq!(b.actions(), 0);
}

/// TC-12: one monitor of host-01 stopped on purpose (DOWN, reason 0x40) and its HA link
/// down, the other UP: no host relocation. Its node events are delivered and acknowledged
/// (VIOS_NODE_FAILURE, the adapter's events), and when it is back: UP and responsive again.
#[test]
fn tc12_one_monitor_down_no_host_relocation() {
    let mut b = bed(12);
    b.at(
        10 * MIN,
        FaultKind::MonitorLinkDown {
            host: 0,
            side: Side::A,
            duration: 5 * MIN,
        },
    );
    b.at(
        10 * MIN + 1_000,
        FaultKind::MonitorStop {
            host: 0,
            side: Side::A,
            downtime: 6 * MIN,
        },
    );
    b.run_to(14 * MIN);
    let qq = b.sim.hsdb.quick_query(b.sim.now_ms()).unwrap();
    let host1 = qq.iter().find(|h| h.host.id == HostId(1)).unwrap();
    let down: Vec<_> = host1
        .hms
        .iter()
        .filter(|m| m.hm.state == HmState::Down)
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].hm.reason, 0x40);
    b.run_to(25 * MIN);
    let kinds = b.event_kinds();
    assert_in_order(
        &kinds,
        &["VIOS_CAA_STATE_DOWN_DETECTED", "VIOS_CAA_STATE_UP_DETECTED"],
    );
    for k in [
        "VIOS_NODE_FAILURE",
        "NETWORK_INTERFACE_FAILURE",
        "NETWORK_INTERFACE_ACTIVE",
    ] {
        assert!(kinds.iter().any(|e| e == k), "no {k}: {kinds:?}");
    }
    assert!(
        b.sim.engine.fde.failed_hosts().is_empty(),
        "no host relocation"
    );
    assert_eq!(b.actions(), 0);
    // Node data acknowledged: nothing pending, no monitor holding data.
    for hm in b.sim.hsdb.hms().unwrap() {
        assert!(!hm.has_data, "{hm:?}");
        assert_eq!(hm.state, HmState::Up);
    }
}

/// TC-13: a VM moves to host-02 by live migration: discovered there (MOVED), its old
/// monitors forget it, no failure, no restart.
#[test]
fn tc13_live_migration_is_not_a_failure() {
    let mut b = bed(13);
    let vm = vm_uuid(2);
    b.name(&vm, "vmlpm", Priority::Medium, DetectionSpeed::Normal);
    b.at(10 * MIN, FaultKind::LiveMigration { vm, to: 1 });
    b.run_to(20 * MIN);
    let moved = b.decisions("vmlpm", Verdict::Moved);
    assert!(!moved.is_empty());
    assert!(moved[0].contains("moved to host host-02"), "{moved:?}");
    assert_eq!(b.running_on(&vm), vec!["host-02".to_string()]);
    assert_eq!(
        b.sim.hsdb.vm(&vm).unwrap().unwrap().current_host,
        Some(HostId(2))
    );
    // No restart, no failure event; the old host's monitors no longer hold a row for it.
    assert_eq!(b.actions(), 0);
    assert!(!b.event_kinds().iter().any(|k| k == "VM_FAILURE_DETECTED"));
    let rows = b.sim.hsdb.vm_hms(&vm).unwrap();
    let old: Vec<Uuid> = b.sim.monitors()[..2].iter().map(|m| m.uuid).collect();
    assert!(rows.iter().all(|r| !old.contains(&r.hm)), "{rows:?}");
}

/// TC-14: a critical application fails (the doorbell's critical-failure bit, until the
/// agent's application engine exists): the VM is restarted on the same host, three times,
/// and on the fourth failure relocated to another host.
#[test]
fn tc14_critical_app_restarts_three_times_then_relocates() {
    let mut b = bed(14);
    let vm = vm_uuid(2);
    b.name(&vm, "vmdb2", Priority::Medium, DetectionSpeed::Normal);
    for k in 0..4 {
        b.at(
            (10 + 10 * k) * MIN,
            FaultKind::Doorbell {
                vm,
                vector: DBELL_APP_CRITICAL_FAILURE,
            },
        );
    }
    b.run_to(55 * MIN);
    let mut rows = b.sim.hsdb.relocations(Some(&vm), 10).unwrap();
    rows.reverse();
    let kinds: Vec<RelocationKind> = rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            RelocationKind::Restart,
            RelocationKind::Restart,
            RelocationKind::Restart,
            RelocationKind::Relocate
        ],
        "{rows:?}"
    );
    for r in &rows[..3] {
        assert_eq!((r.from_host, r.to_host), (Some(HostId(1)), Some(HostId(1))));
    }
    assert_eq!(rows[3].to_host, Some(HostId(2)));
    assert_eq!(b.running_on(&vm), vec!["host-02".to_string()]);
    let escalations = b.decisions("vmdb2", Verdict::AppEscalation);
    assert_eq!(escalations.len(), 4, "{escalations:?}");
    assert!(escalations[0].ends_with("restart on the same host host-01"));
    assert!(escalations[3].ends_with("relocate to another host"));
    assert_eq!(
        b.event_kinds()
            .iter()
            .filter(|k| *k == "APP_FAILURE_DETECTED")
            .count(),
        4
    );
}

/// A new term (another controller that gained the lease, or the daemon restarted) in the
/// middle of a relocation: the new engine takes the unfinished `relocation` row over and
/// goes on from its last phase toward the row's own target. The VM runs on one host at
/// every instant (the simulation's invariants), is restarted once, and its row says who
/// did what.
#[test]
fn a_new_term_takes_over_a_relocation_left_unfinished() {
    for (case, cut_at) in [(0, "stopping_ha_monitoring"), (1, "starting_ha_monitoring")] {
        let mut b = bed(40 + case);
        let vm = vm_uuid(5);
        b.name(&vm, "p18lnx02", Priority::High, DetectionSpeed::Fast);
        b.at(10 * MIN, FaultKind::OsCrash { vm });
        // Run until the restart waits in `cut_at`, then replace the engine.
        let mut waited = 0;
        loop {
            b.run_to(10 * MIN + waited);
            let rows = b.sim.hsdb.relocations(Some(&vm), 10).unwrap();
            if rows.first().is_some_and(|r| r.phase == cut_at) {
                break;
            }
            waited += 100;
            assert!(waited < 10 * MIN, "never in {cut_at}");
        }
        let actions_before = b.actions();
        let mut fde = Fde::new(b.params.clone());
        fde.set_actor("ctl-b (token 2)".into());
        b.sim.restart_engine(FdeEngine::taking_over(fde));
        b.run_to(30 * MIN);
        let rows = b.sim.hsdb.relocations(Some(&vm), 10).unwrap();
        assert_eq!(rows.len(), 1, "one relocation, taken over: {rows:?}");
        let row = &rows[0];
        assert_eq!(row.to_host, Some(HostId(2)));
        assert!(
            row.result
                .as_deref()
                .is_some_and(|r| r.starts_with("success")),
            "{row:?}"
        );
        let steps: Vec<String> = b
            .sim
            .hsdb
            .relocation_steps(row.id)
            .unwrap()
            .into_iter()
            .map(|s| s.phase)
            .collect();
        assert_in_order(
            &steps,
            &[
                "cause vm_failure",
                cut_at,
                &format!("taken over by ctl-b (token 2) from {cut_at}"),
                "cleaning_up",
                "done",
            ],
        );
        assert_eq!(
            b.running_on(&vm),
            vec!["host-02".to_string()],
            "case {case}"
        );
        let taken = b.decisions("p18lnx02", Verdict::TakenOver);
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert!(taken[0].contains("toward host host-02"), "{taken:?}");
        // The new engine never decided a second restart of it.
        assert!(b.decisions("p18lnx02", Verdict::Recover).is_empty());
        let rec = b.sim.checker().recovered();
        assert_eq!(rec.len(), 1, "{rec:?}");
        // Case 0: nothing was done on the platform yet; the new term stops, starts and
        // cleans up. Case 1: the old term had stopped it and started it on host-02; the
        // new one finds it running there and only cleans up host-01 — no action twice.
        let after = b.actions() - actions_before;
        assert_eq!(after, if case == 0 { 3 } else { 1 }, "case {case}");
        if case == 1 {
            assert!(
                row.result
                    .as_deref()
                    .unwrap()
                    .contains("already running on host-02 when taken over: not started again"),
                "{row:?}"
            );
        }
    }
}
