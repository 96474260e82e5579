//! Tests of the simulation's machinery with small engines written here: one that never
//! acts, one that acts without looking (the checker must catch it), one that acts
//! correctly on a hang.

#![allow(clippy::unwrap_used)]

use hsdb::{DetectionSpeed, HeartbeatState, Hsdb, NaLimits};

use super::faults::{FaultKind, ScheduledFault};
use super::invariants::{Bounds, Rule};
use super::monitor::MonitorTimers;
use super::run::{Engine, IdleEngine, SimConfig, Simulation, Turn, host_name, vm_uuid};
use crate::platform::{Platform, VmSpec};

const T0: i64 = 1_700_000_000_000;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        group: "hg".into(),
        hosts: 3,
        vms_per_host: 3,
        host_vms: Vec::new(),
        unmanaged_every: 0,
        host_cpu_milli: 16_000,
        host_memory_mb: 65_536,
        vm_cpu_milli: 1_000,
        vm_memory_mb: 2_048,
        detection_speed: DetectionSpeed::Normal,
        timers: MonitorTimers::seed(),
        boot_ms: 30_000,
        start_ms: T0,
        engine_delay_ms: 40_000,
        bounds: Bounds {
            miss_ms: 20_000,
            hello_ms: 30_000,
            scan_interval_ms: 20_000,
            na_every: 3,
            host_fdt_ms: 90_000,
            hm_silent_after_ms: 65_000,
            action_ms: 30_000,
            per_vm_ms: 6_000,
        },
        vmfdt_ms: 190_000,
        history_lines: 40,
        full_trace: true,
    }
}

fn sim<E: Engine>(cfg: SimConfig, engine: E) -> (tempfile::TempDir, Simulation<E>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulation::new(cfg, engine, &dir.path().join("hsdb.sqlite")).unwrap();
    (dir, s)
}

/// Acts on NeedsAttention like a careless engine: any VM missed for `after_ms` is
/// restarted on the next host, with no ping and no look at the platform.
struct Careless {
    after_ms: i64,
    tag: i64,
}

impl Engine for Careless {
    fn turn(&mut self, now: i64, db: &mut Hsdb, p: &mut dyn Platform) -> Result<Turn, String> {
        self.tag += 1;
        let na = db
            .needs_attention(now, NaLimits::default(), self.tag)
            .map_err(|e| e.to_string())?;
        if let Some(tag) = na.tag {
            db.acknowledge(tag).map_err(|e| e.to_string())?;
        }
        for vm in na.vms {
            if vm.missed_ms.unwrap_or(0) < self.after_ms {
                continue;
            }
            let Some(host) = vm.host else { continue };
            let from = host_name(usize::try_from(host.0 - 1).unwrap());
            let to = host_name(usize::try_from(host.0 % 3).unwrap());
            let _ = p.stop(&from, &vm.uuid);
            let spec = VmSpec {
                uuid: vm.uuid,
                name: String::new(),
                cpu_milli: 1_000,
                memory_mb: 2_048,
            };
            let _ = p.start(&to, &spec);
        }
        Ok(Turn {
            next_ms: now + 20_000,
            notes: Vec::new(),
        })
    }
}

/// [`Careless`] that pings first, stops before starting, and leaves a VM it restarted
/// alone for ten minutes: enough for a hang.
struct Careful(Careless, std::collections::BTreeMap<hsdb::Uuid, i64>);

impl Engine for Careful {
    fn turn(&mut self, now: i64, db: &mut Hsdb, p: &mut dyn Platform) -> Result<Turn, String> {
        self.0.tag += 1;
        let na = db
            .needs_attention(now, NaLimits::default(), self.0.tag)
            .map_err(|e| e.to_string())?;
        if let Some(tag) = na.tag {
            db.acknowledge(tag).map_err(|e| e.to_string())?;
        }
        let mut notes = Vec::new();
        for vm in na.vms {
            if vm.missed_ms.unwrap_or(0) < self.0.after_ms
                || self.1.get(&vm.uuid).is_some_and(|t| now - t < 600_000)
                || p.ping(&vm.uuid) != Ok(false)
            {
                continue;
            }
            self.1.insert(vm.uuid, now);
            let Some(host) = vm.host else { continue };
            let from = host_name(usize::try_from(host.0 - 1).unwrap());
            let to = host_name(usize::try_from(host.0 % 3).unwrap());
            if p.stop(&from, &vm.uuid).is_err() {
                continue;
            }
            let spec = VmSpec {
                uuid: vm.uuid,
                name: String::new(),
                cpu_milli: 1_000,
                memory_mb: 2_048,
            };
            p.start(&to, &spec).map_err(|e| e.to_string())?;
            notes.push((
                Some(vm.uuid),
                format!("relocated {} {from} -> {to}", vm.uuid),
            ));
        }
        Ok(Turn {
            next_ms: now + 20_000,
            notes,
        })
    }
}

#[test]
fn test_steady_state_every_vm_detected_by_both_monitors_and_no_violation() {
    let (_dir, mut s) = sim(config(1), IdleEngine { every_ms: 20_000 });
    s.run_for(600_000).unwrap();
    for (h, pair) in s.monitors().chunks(2).enumerate() {
        for m in pair {
            let rows = s.hsdb.vm_hms_of(&m.uuid).unwrap();
            assert_eq!(rows.len(), 3, "host {h}");
            assert!(
                rows.iter()
                    .all(|r| r.last_state == HeartbeatState::Detected)
            );
            let hm = s.hsdb.hm(&m.uuid).unwrap().unwrap();
            assert!(T0 + 600_000 - hm.last_hb_ms <= 30_000);
        }
    }
    let r = s.report();
    assert!((r.vm_hours - 9.0 * 600.0 / 3600.0).abs() < 1e-9);
    // 9 VMs × 2 monitors: one Discovered and one Detected each at the first Hello,
    // nothing else.
    let lines = s.trace().all().unwrap();
    assert_eq!(r.transitions, 36, "{lines:?}");
    assert!(lines.iter().all(|l| l.trim_start().starts_with("0.000 hm")));
}

#[test]
fn test_idle_engine_misses_a_hang_and_the_violation_says_seed_step_vm_history() {
    let (_dir, mut s) = sim(config(7), IdleEngine { every_ms: 20_000 });
    let vm = vm_uuid(4);
    s.schedule([ScheduledFault {
        at: T0 + 100_000,
        kind: FaultKind::VmHang {
            vm,
            heals_after: None,
        },
    }]);
    let v = s.run_for(3_600_000).unwrap_err();
    assert_eq!(v.rule, Rule::FailureNotActedOn);
    assert_eq!((v.seed, v.vm), (7, Some(vm)));
    // Deadline: 100 s + 20 + 190 + 60 + 1 + 30 s.
    assert_eq!(v.at_ms, T0 + 401_001);
    assert!(v.step > 0);
    let text = v.to_string();
    assert!(text.contains("seed 7"), "{text}");
    assert!(
        v.history
            .iter()
            .any(|l| l.contains("fault vm_hang vm-00005")),
        "{text}"
    );
    assert!(v.history.iter().any(|l| l.contains("Missing vm-00005")));
}

#[test]
fn test_careless_engine_restarting_a_live_vm_is_caught() {
    let (_dir, mut s) = sim(
        config(3),
        Careless {
            after_ms: 30_000,
            tag: 0,
        },
    );
    let vm = vm_uuid(0);
    // The agent dies; the guest answers pings: alive.
    s.schedule([ScheduledFault {
        at: T0 + 100_000,
        kind: FaultKind::AgentKill {
            vm,
            heals_after: 3_600_000,
        },
    }]);
    let v = s.run_for(3_600_000).unwrap_err();
    assert_eq!((v.rule, v.vm), (Rule::LiveVmRestarted, Some(vm)));
    assert!(v.detail.contains("stop host-01"), "{v}");
}

#[test]
fn test_careful_engine_relocates_a_hang_within_its_bound() {
    let (_dir, mut s) = sim(
        config(5),
        Careful(
            Careless {
                after_ms: 190_000,
                tag: 0,
            },
            Default::default(),
        ),
    );
    let vm = vm_uuid(1);
    s.schedule([ScheduledFault {
        at: T0 + 100_000,
        kind: FaultKind::VmHang {
            vm,
            heals_after: None,
        },
    }]);
    s.run_for(1_800_000).unwrap();
    let r = s.report();
    assert_eq!(r.recoveries.len(), 1);
    let rec = r.recoveries[0];
    assert!(rec.latency_ms <= rec.bound_ms);
    // The last heartbeat left up to one period before the hang: MISSING comes 10-20 s
    // after it, and the engine waits for 190 s of misses.
    assert!(rec.latency_ms >= 10_000 + 190_000, "{rec:?}");
    assert_eq!(
        s.platform().world().vm_running_on(&vm),
        vec!["host-02".to_string()]
    );
    // The new host's monitors discovered it.
    let row = s.hsdb.vm(&vm).unwrap().unwrap();
    assert_eq!(row.current_host, Some(hsdb::HostId(2)));
}

#[test]
fn test_same_seed_same_trace_other_seed_other_trace() {
    let run = |seed: u64| {
        let mut cfg = config(seed);
        cfg.hosts = 4;
        let (_dir, mut s) = sim(
            cfg,
            Careful(
                Careless {
                    after_ms: 190_000,
                    tag: 0,
                },
                Default::default(),
            ),
        );
        let rates = super::faults::FaultRates::mix(20_000, 10_000, 210_000, 205_000);
        let mut rng = super::rng::SimRng::new(seed);
        let vms = s.vms().to_vec();
        let schedule = rates.schedule(&mut rng, &vms, 4, T0 + 60_000, T0 + 20 * 3_600_000);
        s.schedule(schedule);
        let _ = s.run_for(20 * 3_600_000);
        (s.trace().all().unwrap().to_vec(), s.report())
    };
    let (a, ra) = run(11);
    let (b, rb) = run(11);
    let (c, rc) = run(12);
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    assert_ne!(ra.trace_hash, rc.trace_hash);
    assert_ne!(a, c);
    assert!(ra.faults.values().sum::<u64>() > 5, "{:?}", ra.faults);
}

#[test]
fn test_real_engine_relocates_a_hang_and_leaves_a_quiet_group_alone() {
    let (cfg, params) = super::setup::standard(21, 3, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut s = super::setup::with_fde(cfg, params, dir.path()).unwrap();
    let vm = vm_uuid(2);
    s.schedule([ScheduledFault {
        at: T0 + 1_800_000,
        kind: FaultKind::OsCrash { vm },
    }]);
    let r = s.run_for(3_600_000);
    if let Err(v) = &r {
        panic!("{v}");
    }
    let rep = s.report();
    assert_eq!(rep.recoveries.len(), 1, "{rep:?}");
    assert!(rep.recoveries[0].latency_ms <= rep.recoveries[0].bound_ms);
    let on = s.platform().world().vm_running_on(&vm);
    assert_eq!(on.len(), 1);
    assert_ne!(on[0], "host-01");
}

/// Planned maintenance in the whole loop: an operator evacuates host-01 while the group
/// runs; the real engine moves its VMs by the sim's live migration, the agents go on
/// heart-beating to the target's monitors (same guest, no reboot), and nothing is taken
/// for a failure — no invariant broken, no recovery, every VM running once.
#[test]
fn test_real_engine_evacuates_a_host_by_live_migration() {
    let (cfg, params) = super::setup::standard(23, 3, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut s = super::setup::with_fde(cfg, params, dir.path()).unwrap();
    if let Err(v) = s.run_for(600_000) {
        panic!("{v}");
    }
    let on_first: Vec<hsdb::Uuid> = s.platform().world().vms_on_host("host-01");
    assert_eq!(on_first.len(), 2);
    let mut ops = Hsdb::open(dir.path().join("hsdb.sqlite"), &hsdb::Options::default()).unwrap();
    let id = ops
        .request_operation(
            "hg1",
            hsdb::RequestKind::Evacuate,
            crate::simulation::run::host_id(0),
            "test",
            s.now_ms(),
        )
        .unwrap();
    if let Err(v) = s.run_for(1_200_000) {
        panic!("{v}");
    }
    let r = ops.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, hsdb::RequestState::Done, "{r:?}");
    let world = s.platform().world();
    assert!(world.vms_on_host("host-01").is_empty());
    for vm in &on_first {
        assert_eq!(world.running_hosts_of(vm), 1);
        assert!(world.agent_heartbeats(vm), "its agent goes on");
    }
    drop(world);
    let rep = s.report();
    assert!(rep.recoveries.is_empty(), "{rep:?}");
    // The target's monitors hear them: the HSDB shows them there, DETECTED.
    for vm in &on_first {
        let row = ops.vm(vm).unwrap().unwrap();
        assert_ne!(
            row.current_host,
            Some(crate::simulation::run::host_id(0)),
            "{row:?}"
        );
    }
}
