//! The executor's durable side on a real HSDB: cleanups owed to a lost host across an
//! engine restart, a copy found running on a returning host, the per-VM restart budget.

use hsdb::{HostId, Hsdb, Transition};

use super::maintenance::empty_hsdb;
use super::on_hsdb::{hsdb_group, managed_vm, monitors_turn, populate_group};
use super::{FakePlatform, T0, hm, uuid};
use crate::clock::{Clock, ManualClock};
use crate::fde::{Fde, Verdict};
use crate::params::GroupParams;
use crate::platform::sim::SimPlatform;
use crate::platform::{HostInfo, VmSpec};

fn kinds(db: &Hsdb) -> Vec<String> {
    db.events_after(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

fn sim_group(db: &mut Hsdb, clock: &ManualClock, vms: &[(u8, i64)]) -> SimPlatform {
    let platform = SimPlatform::empty(clock.clone(), 7);
    {
        let mut w = platform.world();
        for h in 1..=3 {
            w.add_host(&format!("host-{h}"), 8000, 16384).unwrap();
        }
        for (n, h) in vms {
            w.add_vm(
                &format!("host-{h}"),
                VmSpec {
                    uuid: uuid(*n),
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
    platform
}

/// Run `fde` until `until`, the monitors of `live` heart-beating every second.
fn run(
    fde: &mut Fde,
    db: &mut Hsdb,
    platform: &mut SimPlatform,
    clock: &ManualClock,
    live: &[i64],
    until: i64,
) {
    let mut next_second = clock.now_ms();
    while clock.now_ms() < until {
        let now = clock.now_ms();
        if now >= next_second {
            monitors_turn(db, live, now);
            next_second = now + 1_000;
        }
        let t = fde.tick(now, db, platform).unwrap();
        clock.advance_to(t.next_wake_ms.min(next_second));
    }
}

/// Host 1 is lost; its VMs are restarted on host 2 and the cleanups host 1 could not
/// take are owed in the HSDB. The daemon restarts (a new engine on the same HSDB). Host
/// 1 comes back with vm1 running again (its autostart): the new engine stops it there —
/// a VM never runs on two hosts — and removes both definitions; each owed row ends with
/// its outcome.
#[test]
fn test_owed_cleanup_survives_an_engine_restart_and_stops_a_returning_copy() {
    owed_cleanup_across_restart(None);
}

/// The same with the HSDB on PostgreSQL.
#[test]
fn test_owed_cleanup_survives_an_engine_restart_on_postgres() {
    owed_cleanup_across_restart(Some("owed_cleanup_across_restart"));
}

fn owed_cleanup_across_restart(pg: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = empty_hsdb(&dir, pg) else {
        return;
    };
    let mut db = populate_group(db, 3);
    managed_vm(&mut db, 1, 1, true);
    managed_vm(&mut db, 4, 1, false);
    let clock = ManualClock::new(T0);
    let mut platform = sim_group(&mut db, &clock, &[(1, 1), (4, 1)]);
    let params = GroupParams::resolve("hg", &db.params().unwrap()).unwrap();
    let mut fde = Fde::new(params.clone());
    fde.set_clock(std::sync::Arc::new(clock.clone()));
    run(
        &mut fde,
        &mut db,
        &mut platform,
        &clock,
        &[1, 2, 3],
        T0 + 3_000,
    );
    platform.world().host_loss("host-1").unwrap();
    run(
        &mut fde,
        &mut db,
        &mut platform,
        &clock,
        &[2, 3],
        T0 + 40_000,
    );
    assert_eq!(platform.world().vm_running_on(&uuid(1)), ["host-2"]);
    assert_eq!(platform.world().vm_running_on(&uuid(4)), ["host-2"]);
    let owed = db.owed_cleanups(Some(HostId(1))).unwrap();
    let mut owed_vms: Vec<_> = owed.iter().map(|o| o.vm).collect();
    owed_vms.sort();
    assert_eq!(owed_vms, [uuid(1), uuid(4)], "{owed:?}");
    assert!(owed.iter().all(|o| o.relocation.is_some()));
    assert!(owed[0].why.contains("cleanup on host-1 failed"), "{owed:?}");

    // The daemon restarts: a new engine, nothing in memory.
    drop(fde);
    let mut fde = Fde::new(params);
    fde.set_clock(std::sync::Arc::new(clock.clone()));
    run(
        &mut fde,
        &mut db,
        &mut platform,
        &clock,
        &[2, 3],
        clock.now_ms() + 5_000,
    );
    assert_eq!(
        db.owed_cleanups(None).unwrap().len(),
        2,
        "host 1 is not back"
    );
    assert_eq!(fde.owed_cleanups().len(), 2, "read from the HSDB");
    // Host 1 returns and starts vm1 again by itself: two copies for a moment.
    {
        let mut w = platform.world();
        w.host_restore("host-1").unwrap();
        w.vm_power_on("host-1", &uuid(1)).unwrap();
        assert_eq!(w.violations().len(), 1, "the injected double run");
    }
    run(
        &mut fde,
        &mut db,
        &mut platform,
        &clock,
        &[1, 2, 3],
        clock.now_ms() + 5_000,
    );
    let w = platform.world();
    assert_eq!(w.vm_running_on(&uuid(1)), ["host-2"], "stopped on host-1");
    assert_eq!(w.vm_defined_on(&uuid(1)), ["host-2"]);
    assert_eq!(w.vm_defined_on(&uuid(4)), ["host-2"]);
    assert_eq!(w.violations().len(), 1, "no second double run");
    drop(w);
    assert!(db.owed_cleanups(None).unwrap().is_empty());
    let h1 = db.cleanup_history(&uuid(1), 5).unwrap();
    assert_eq!(h1[0].result.as_deref(), Some("stopped and cleaned"));
    let h4 = db.cleanup_history(&uuid(4), 5).unwrap();
    assert_eq!(h4[0].result.as_deref(), Some("cleaned"));
    let k = kinds(&db);
    assert_eq!(count(&k, "VM_DUPLICATE_STOPPED"), 1, "{k:?}");
    assert_eq!(count(&k, "VM_CLEANUP_DONE"), 2, "{k:?}");
    let stopped = fde
        .decisions()
        .iter()
        .find(|d| d.verdict == Verdict::Cleanup && d.reason.contains("found running"))
        .map(|d| d.reason.clone())
        .unwrap();
    assert_eq!(
        stopped,
        "VM vm1 found running on returning host host-1 while it runs on host-2: stopped on \
         host-1 (a VM never runs on two hosts)"
    );
    // Settled once: more scans do nothing more.
    let mut platform2 = platform.clone();
    run(
        &mut fde,
        &mut db,
        &mut platform2,
        &clock,
        &[1, 2, 3],
        clock.now_ms() + 5_000,
    );
    assert_eq!(count(&kinds(&db), "VM_CLEANUP_DONE"), 2);
}

/// A VM that keeps failing: restarted `vm_restart_limit` (3) times within
/// `vm_restart_window`, then not restarted (VM_RESTART_BUDGET_EXHAUSTED once, however
/// many scans see it failed); once its oldest restart leaves the window, it is
/// restarted again.
#[test]
fn test_restart_budget_caps_restarts_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = hsdb_group(&dir, 3);
    managed_vm(&mut db, 1, 1, true);
    let vm = uuid(1);
    db.set_param(&hsdb::ParamScope::System, "profile", "fast")
        .unwrap();
    db.set_param(
        &hsdb::ParamScope::HostGroup("hg".into()),
        "vm_restart_window",
        "120",
    )
    .unwrap();
    let params = GroupParams::resolve("hg", &db.params().unwrap()).unwrap();
    assert_eq!(
        (params.vm_restart_limit, params.vm_restart_window_ms),
        (3, 120_000)
    );
    let mut fde = Fde::new(params);
    let mut platform = FakePlatform::default();
    for id in 1..=3 {
        platform.hosts.push(HostInfo {
            name: format!("host-{id}"),
            cpu_milli: 8000,
            memory_mb: 16384,
            vms: Vec::new(),
        });
    }
    platform.ping.insert(vm, Ok(false));
    // The VM fails on `host`: both its monitors miss it.
    let fail_on = |db: &mut Hsdb, host: i64, at: i64| {
        let batch: Vec<Transition> = (1..=2)
            .map(|n| Transition::Missing {
                vm,
                hm: hm(host, n),
                at,
            })
            .collect();
        db.apply(&batch).unwrap();
    };
    // The restarted VM's agent pairs with the target's monitors.
    let paired_on = |db: &mut Hsdb, host: i64, at: i64| {
        let batch: Vec<Transition> = (1..=2)
            .map(|n| Transition::Discovered {
                vm,
                hm: hm(host, n),
                mac: hsdb::MacAddr([6, 0, 0, 1, u8::try_from(host).unwrap(), n]),
                ostype: "linux".into(),
                ver_lower: hsdb::Version { major: 2, minor: 0 },
                ver_upper: hsdb::Version { major: 2, minor: 0 },
                at,
            })
            .collect();
        db.apply(&batch).unwrap();
    };
    let mut now = T0;
    let mut host = 1;
    fail_on(&mut db, host, now);
    let mut done = 0;
    let mut exhausted_at = None;
    while now < T0 + 400_000 {
        monitors_turn(&mut db, &[1, 2, 3], now);
        now = fde
            .tick(now, &mut db, &mut platform)
            .unwrap()
            .next_wake_ms
            .min(now + 1_000);
        let rows = db.relocations(Some(&vm), 100).unwrap();
        let ended = rows.iter().filter(|r| r.ended_ms.is_some()).count();
        if ended > done {
            done = ended;
            let to = rows[0].to_host.unwrap().0;
            assert_eq!(rows[0].result.as_deref(), Some("success"));
            host = to;
            paired_on(&mut db, host, now);
            fail_on(&mut db, host, now + 1_000);
        }
        if exhausted_at.is_none() && count(&kinds(&db), "VM_RESTART_BUDGET_EXHAUSTED") > 0 {
            exhausted_at = Some(now);
            assert_eq!(done, 3, "three restarts, then the budget");
        }
        if done == 4 {
            break;
        }
    }
    let exhausted_at = exhausted_at.expect("budget exhausted");
    let rows = db.relocations(Some(&vm), 100).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let first = rows[3].started_ms;
    assert!(
        exhausted_at - first < 120_000,
        "four failures within the window"
    );
    // The fourth restart waited for the first to leave the window.
    assert!(
        rows[0].started_ms >= first + 120_000,
        "{}",
        rows[0].started_ms - first
    );
    let k = kinds(&db);
    assert_eq!(
        count(&k, "VM_RESTART_BUDGET_EXHAUSTED"),
        1,
        "once per episode"
    );
    let refusals = fde
        .decisions()
        .iter()
        .filter(|d| d.verdict == Verdict::BudgetExhausted)
        .count();
    assert!(refusals > 3, "decided at every NeedsAttention: {refusals}");
    let text = fde
        .decisions()
        .iter()
        .find(|d| d.verdict == Verdict::BudgetExhausted)
        .unwrap()
        .reason
        .clone();
    assert!(
        text.contains("restarted 3 times within vm_restart_window 2m (vm_restart_limit 3)"),
        "{text}"
    );
}
