//! The engine on a real HSDB file.

use hsdb::{
    DetectionSpeed, HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, Transition,
    Version,
};

use super::{FakePlatform, T0, hm, uuid};
use crate::clock::{Clock, ManualClock};
use crate::fde::Fde;
use crate::params::GroupParams;
use crate::platform::sim::SimPlatform;
use crate::platform::{HostInfo, VmSpec};

const V2: Version = Version { major: 2, minor: 0 };

/// An HSDB file with hosts `1..=hosts` of group `hg` (8 CPUs, 16 GiB), two monitors each,
/// heart-beating at `T0`.
pub(super) fn hsdb_group(dir: &tempfile::TempDir, hosts: i64) -> Hsdb {
    let db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).unwrap();
    populate_group(db, hosts)
}

/// [`hsdb_group`]'s hosts and monitors in `db` (SQLite or PostgreSQL).
pub(super) fn populate_group(mut db: Hsdb, hosts: i64) -> Hsdb {
    for id in 1..=hosts {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: format!("host-{id}"),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: 8000,
            memory_mb: 16384,
            host_group: "hg".into(),
        })
        .unwrap();
        for n in 1..=2 {
            db.register_hm(&HmRecord {
                uuid: hm(id, n),
                host: HostId(id),
                mac: MacAddr([2, 0, 0, 0, u8::try_from(id).unwrap(), n]),
                incarnation: HelloId::parse(b"1556303548.719328000.38").unwrap(),
                version: V2,
                at: T0,
            })
            .unwrap();
        }
    }
    db
}

/// A managed VM `n` on `host`: discovered by both monitors when `agent`, else only added
/// by the operator with `host` as its home.
pub(super) fn managed_vm(db: &mut Hsdb, n: u8, host: i64, agent: bool) {
    let vm = uuid(n);
    if agent {
        let batch: Vec<Transition> = (1..=2)
            .map(|m| Transition::Discovered {
                vm,
                hm: hm(host, m),
                mac: MacAddr([6, 0, 0, n, u8::try_from(host).unwrap(), m]),
                ostype: "linux".into(),
                ver_lower: V2,
                ver_upper: V2,
                at: T0,
            })
            .collect();
        db.apply(&batch).unwrap();
    }
    db.set_vm(
        &vm,
        &hsdb::VmSettings {
            managed: Some(true),
            name: Some(format!("vm{n}")),
            cpu_milli: Some(1000),
            memory_mb: Some(1024),
            home_host: Some(HostId(host)),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
}

/// What the monitors of live hosts do every second: heartbeat, complete their commands.
pub(super) fn monitors_turn(db: &mut Hsdb, hosts: &[i64], now: i64) {
    let beats: Vec<Transition> = hosts
        .iter()
        .flat_map(|h| {
            (1..=2).map(move |n| Transition::HmHeartbeat {
                hm: hm(*h, n),
                at: now,
            })
        })
        .collect();
    db.apply(&beats).unwrap();
    for h in hosts {
        for n in 1..=2 {
            for c in db.commands_for(&hm(*h, n), 0, 100).unwrap() {
                db.complete_command(c.id, "OK", now).unwrap();
            }
        }
    }
}

/// The engine on a real HSDB file: monitors, a VM missing on both of them, the restart's
/// rows, commands and events where docs/hsdb.md says they are.
#[test]
fn test_engine_on_a_real_hsdb() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = hsdb_group(&dir, 2);
    let vm = uuid(1);
    managed_vm(&mut db, 1, 1, true);
    db.set_param(&hsdb::ParamScope::HostGroup("hg".into()), "profile", "fast")
        .unwrap();
    let params = GroupParams::resolve("hg", &db.params().unwrap()).unwrap();
    assert_eq!(params.vmfdt_ms(DetectionSpeed::Normal), 10_000);
    let mut fde = Fde::new(params);
    let mut platform = FakePlatform::default();
    for id in 1..=2 {
        platform.hosts.push(HostInfo {
            name: format!("host-{id}"),
            cpu_milli: 8000,
            memory_mb: 16384,
            vms: Vec::new(),
        });
    }
    platform.ping.insert(vm, Ok(false));
    // Both monitors miss the VM at T0 + 1 s; every monitor heart-beats each second.
    db.apply(&[
        Transition::Missing {
            vm,
            hm: hm(1, 1),
            at: T0 + 1_000,
        },
        Transition::Missing {
            vm,
            hm: hm(1, 2),
            at: T0 + 1_000,
        },
    ])
    .unwrap();
    let mut now = T0 + 1_000;
    let mut restarted_at = None;
    while now < T0 + 40_000 {
        monitors_turn(&mut db, &[1, 2], now);
        let t = fde.tick(now, &mut db, &mut platform).unwrap();
        if restarted_at.is_none() && !db.relocations(Some(&vm), 10).unwrap().is_empty() {
            restarted_at = Some(now);
        }
        now = t.next_wake_ms;
    }
    // VMFDT 10 s from the miss at 1 s, seen by an NA (every 3 s): by 14 s.
    let at = restarted_at.expect("restarted");
    assert!((T0 + 11_000..=T0 + 14_000).contains(&at), "{}", at - T0);
    let rows = db.relocations(Some(&vm), 10).unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.from_host, row.to_host),
        (Some(HostId(1)), Some(HostId(2)))
    );
    assert_eq!(row.kind, hsdb::RelocationKind::Relocate);
    assert_eq!(row.result.as_deref(), Some("success"));
    let steps: Vec<String> = db
        .relocation_steps(row.id)
        .unwrap()
        .into_iter()
        .map(|s| s.phase)
        .collect();
    assert!(steps.contains(&"cause vm_failure".to_owned()), "{steps:?}");
    assert_eq!(steps.last().map(String::as_str), Some("done"), "{steps:?}");
    let events = db.events_after(0, 1000).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"VM_FAILURE_DETECTED"), "{kinds:?}");
    assert!(kinds.contains(&"RESTART_SUMMARY"), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "VIOS_HM_RESP_DETECTED")
            .count(),
        4
    );
    // STOP on the source's monitors, START on the target's, FORGET on the source's.
    let stop = db.commands_for(&hm(1, 1), 0, 100).unwrap();
    assert!(stop.is_empty(), "all completed");
    let all: Vec<hsdb::CommandKind> = (1..=2)
        .flat_map(|h| (1..=2).map(move |n| (h, n)))
        .flat_map(|(h, n)| {
            (1..=20)
                .filter_map(|id| db.command(id).unwrap())
                .filter(move |c| c.hm == hm(h, n))
                .map(|c| c.kind)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        all.iter()
            .filter(|k| **k == hsdb::CommandKind::StopMonitoring)
            .count(),
        2
    );
    assert_eq!(
        all.iter()
            .filter(|k| **k == hsdb::CommandKind::StartMonitoring)
            .count(),
        2
    );
    assert_eq!(
        all.iter()
            .filter(|k| **k == hsdb::CommandKind::ForgetVm)
            .count(),
        2
    );
    // Exactly one restart, and the VM is no longer watched for that failure.
    assert!(!fde.is_busy(&vm));
}

/// Host loss on the `sim` platform: both monitors of host 1 fall silent and its hypervisor
/// stops answering; its managed VMs (one with an agent, one without) run again on host 2
/// exactly once, within hostFDT + two scans of the last heartbeat; the cleanups the dead
/// host could not take are done when it is back.
#[test]
fn test_host_loss_on_the_sim_platform() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = hsdb_group(&dir, 3);
    managed_vm(&mut db, 1, 1, true);
    managed_vm(&mut db, 4, 1, false);
    managed_vm(&mut db, 5, 2, true);
    let clock = ManualClock::new(T0);
    let mut platform = SimPlatform::empty(clock.clone(), 7);
    {
        let mut w = platform.world();
        for h in 1..=3 {
            w.add_host(&format!("host-{h}"), 8000, 16384).unwrap();
        }
        for (n, h) in [(1, 1), (4, 1), (5, 2)] {
            w.add_vm(
                &format!("host-{h}"),
                VmSpec {
                    uuid: uuid(n),
                    name: format!("vm{n}"),
                    cpu_milli: 1000,
                    memory_mb: 1024,
                },
            )
            .unwrap();
        }
    }
    db.set_param(&hsdb::ParamScope::System, "profile", "fast")
        .unwrap();
    let params = GroupParams::resolve("hg", &db.params().unwrap()).unwrap();
    let bound = params.host_fdt_ms + 2 * params.scan_interval_ms;
    let mut fde = Fde::new(params);
    fde.set_clock(std::sync::Arc::new(clock.clone()));
    let lost_at = T0 + 5_000;
    let mut last_beat = T0;
    let mut next_second = T0;
    let mut moved_at = None;
    while clock.now_ms() < T0 + 60_000 {
        let now = clock.now_ms();
        if now >= next_second {
            let live: Vec<i64> = if now < lost_at {
                vec![1, 2, 3]
            } else {
                vec![2, 3]
            };
            if now < lost_at {
                last_beat = now;
            }
            monitors_turn(&mut db, &live, now);
            next_second = now + 1_000;
        }
        if now >= lost_at
            && platform.world().host_state("host-1") != Some(crate::platform::sim::HostState::Lost)
        {
            platform.world().host_loss("host-1").unwrap();
        }
        let t = fde.tick(now, &mut db, &mut platform).unwrap();
        if moved_at.is_none() && platform.world().vm_running_on(&uuid(4)) == ["host-2"] {
            moved_at = Some(clock.now_ms());
        }
        clock.advance_to(t.next_wake_ms.min(next_second));
    }
    let w = platform.world();
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    assert_eq!(w.vm_running_on(&uuid(1)), ["host-2"]);
    assert_eq!(
        w.vm_running_on(&uuid(4)),
        ["host-2"],
        "the agent-less VM too"
    );
    assert_eq!(w.vm_running_on(&uuid(5)), ["host-2"], "untouched");
    assert!(moved_at.is_some());
    drop(w);
    let rows = db.relocations(None, 10).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        // Decided within hostFDT + two scans of the last heartbeat (the starts then take
        // the sim's 5 s each, one after the other).
        assert!(
            r.started_ms - last_beat <= bound,
            "decided {} ms after the last heartbeat",
            r.started_ms - last_beat
        );
        let result = r.result.as_deref().unwrap();
        assert!(result.starts_with("success ("), "{result}");
        assert!(result.contains("shutdown skipped"), "{result}");
        assert!(result.contains("cleanup on host-1 failed"), "{result}");
        // Each step carries the time it happened: the sim's starts take 5 s.
        let steps = db.relocation_steps(r.id).unwrap();
        let at = |phase: &str| steps.iter().find(|s| s.phase == phase).unwrap().at_ms;
        assert!(
            at("starting_ha_monitoring") - at("restarting") >= 5_000,
            "{steps:?}"
        );
    }
    // The host comes back: its monitors heartbeat, the owed cleanups are done.
    platform.world().host_restore("host-1").unwrap();
    let back = clock.now_ms();
    while clock.now_ms() < back + 5_000 {
        let now = clock.now_ms();
        monitors_turn(&mut db, &[1, 2, 3], now);
        let t = fde.tick(now, &mut db, &mut platform).unwrap();
        clock.advance_to(t.next_wake_ms.min(now + 1_000));
    }
    let w = platform.world();
    assert_eq!(w.vm_defined_on(&uuid(1)), ["host-2"]);
    assert_eq!(w.vm_defined_on(&uuid(4)), ["host-2"]);
    assert!(fde.failed_hosts().is_empty());
    let kinds: Vec<String> = db
        .events_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "HOST_FAILURE_DETECTED")
            .count(),
        1
    );
    assert_eq!(kinds.iter().filter(|k| *k == "HOST_ACTIVE").count(), 1);
    assert!(kinds.contains(&"RESTART_SUMMARY".to_owned()));
}

/// The application-escalation count survives a daemon restart: it is read from the VM's
/// relocation rows (same-host restarts since its last relocation, within 24 h).
#[test]
fn test_same_host_restarts_are_counted_from_relocation_rows() {
    use crate::fde::HealthStore;
    use crate::relocate::Ledger;

    let dir = tempfile::tempdir().unwrap();
    let mut db = hsdb_group(&dir, 2);
    managed_vm(&mut db, 1, 1, true);
    let vm = uuid(1);
    let day = crate::fde::APP_RESTART_WINDOW_MS;
    let restart = |db: &mut Hsdb, to: i64, at: i64| {
        Ledger::relocation_begin(
            db,
            &vm,
            Some(HostId(1)),
            HostId(to),
            "app_restart",
            None,
            at,
        )
        .unwrap();
    };
    restart(&mut db, 1, T0 - 2 * day);
    restart(&mut db, 2, T0 - day / 2);
    assert_eq!(
        db.same_host_restarts(&vm, T0 - day).unwrap(),
        0,
        "relocated since"
    );
    restart(&mut db, 1, T0 - 3_000);
    restart(&mut db, 1, T0 - 2_000);
    assert_eq!(db.same_host_restarts(&vm, T0 - day).unwrap(), 2);
    assert_eq!(
        db.same_host_restarts(&vm, T0 - 2_500).unwrap(),
        1,
        "the window"
    );
    // A new engine (a daemon restart) with one more same-host restart behind it: the
    // next critical failure is the third same-host restart, the one after relocates.
    restart(&mut db, 1, T0 - 1_000);
    let mut fde = Fde::new(GroupParams::standard("hg"));
    let mut platform = FakePlatform::default();
    for id in 1..=2 {
        platform.hosts.push(HostInfo {
            name: format!("host-{id}"),
            cpu_milli: 8000,
            memory_mb: 16384,
            vms: Vec::new(),
        });
    }
    db.apply(&[Transition::Doorbell {
        vm,
        hm: hm(1, 1),
        vector: crate::fde::DBELL_APP_CRITICAL_FAILURE,
        at: T0,
    }])
    .unwrap();
    let mut now = T0;
    while now < T0 + 70_000 {
        monitors_turn(&mut db, &[1, 2], now);
        now = fde.tick(now, &mut db, &mut platform).unwrap().next_wake_ms;
    }
    let rows = db.relocations(Some(&vm), 1).unwrap();
    assert_eq!(rows[0].kind, hsdb::RelocationKind::Relocate, "{rows:?}");
    assert_eq!(rows[0].to_host, Some(HostId(2)));
}
