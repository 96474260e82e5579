//! Planned maintenance on the `sim` platform and a real HSDB: evacuate with live
//! migration, refused when the plan is incomplete, restore; never a failure.

use hsdb::{HostId, Hsdb, RequestKind, RequestState, Transition};

use super::on_hsdb::{managed_vm, monitors_turn, populate_group};
use super::{T0, hm, uuid};
use crate::clock::{Clock, ManualClock};
use crate::fde::{Fde, Verdict};
use crate::params::GroupParams;
use crate::platform::sim::{Call, SimPlatform};
use crate::platform::{Platform, VmSpec};

pub(super) struct Bed {
    pub(super) db: Hsdb,
    pub(super) platform: SimPlatform,
    pub(super) clock: ManualClock,
    pub(super) fde: Fde,
    _dir: tempfile::TempDir,
}

/// An empty HSDB: an SQLite file in `dir`, or a fresh PostgreSQL database (`None` when
/// PostgreSQL is not available outside CI: the test is skipped).
pub(super) fn empty_hsdb(dir: &tempfile::TempDir, pg: Option<&str>) -> Option<Hsdb> {
    Some(match pg {
        None => Hsdb::open(dir.path().join("hsdb.sqlite"), &hsdb::Options::default()).unwrap(),
        Some(test) => {
            let server = pglab::require(test)?;
            let url = server.fresh_database(test);
            let target = hsdb::Target::parse(&url).unwrap();
            Hsdb::connect(&target, &hsdb::Options::default()).unwrap()
        }
    })
}

/// Hosts 1-3; vm1, vm2 on host 1 (home host 1), vm3 on host 2; fast profile; on SQLite,
/// or on PostgreSQL when `pg` names the test.
pub(super) fn bed_on(pg: Option<&str>) -> Option<Bed> {
    let dir = tempfile::tempdir().unwrap();
    let mut db = populate_group(empty_hsdb(&dir, pg)?, 3);
    for (n, h) in [(1, 1), (2, 1), (3, 2)] {
        managed_vm(&mut db, n, h, true);
    }
    let clock = ManualClock::new(T0);
    let platform = SimPlatform::empty(clock.clone(), 11);
    {
        let mut w = platform.world();
        for h in 1..=3 {
            w.add_host(&format!("host-{h}"), 8000, 16384).unwrap();
        }
        for (n, h) in [(1, 1), (2, 1), (3, 2)] {
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
    let mut fde = Fde::new(params);
    fde.set_clock(std::sync::Arc::new(clock.clone()));
    Some(Bed {
        db,
        platform,
        clock,
        fde,
        _dir: dir,
    })
}

pub(super) fn bed() -> Bed {
    bed_on(None).unwrap()
}

impl Bed {
    /// Run until `until`: the monitors of `live` heartbeat every second; each VM's agent
    /// pairs with the monitors of the host it runs on (Discovered there, as `vmmd` does
    /// after a move) and the monitors of the host it left miss it.
    pub(super) fn run(&mut self, live: &[i64], until: i64) {
        let mut next_second = self.clock.now_ms();
        while self.clock.now_ms() < until {
            let now = self.clock.now_ms();
            if now >= next_second {
                monitors_turn(&mut self.db, live, now);
                self.agents(now);
                next_second = now + 1_000;
            }
            let t = self
                .fde
                .tick(now, &mut self.db, &mut self.platform)
                .unwrap();
            self.clock.advance_to(t.next_wake_ms.min(next_second));
        }
    }

    pub(super) fn agents(&mut self, now: i64) {
        for n in 1..=3u8 {
            let running = self.platform.world().vm_running_on(&uuid(n));
            let [host] = running.as_slice() else { continue };
            let id: i64 = host.trim_start_matches("host-").parse().unwrap();
            let row = self.db.vm(&uuid(n)).unwrap().unwrap();
            if row.current_host == Some(HostId(id)) {
                continue;
            }
            let mut batch: Vec<Transition> = (1..=2)
                .map(|m| Transition::Discovered {
                    vm: uuid(n),
                    hm: hm(id, m),
                    mac: hsdb::MacAddr([6, 0, 0, n, u8::try_from(id).unwrap(), m]),
                    ostype: "linux".into(),
                    ver_lower: hsdb::Version { major: 2, minor: 0 },
                    ver_upper: hsdb::Version { major: 2, minor: 0 },
                    at: now,
                })
                .collect();
            // Its heartbeats stopped reaching the old host's monitors.
            if let Some(old) = row.current_host {
                batch.extend((1..=2).map(|m| Transition::Missing {
                    vm: uuid(n),
                    hm: hm(old.0, m),
                    at: now,
                }));
            }
            let _ = self.db.apply(&batch);
        }
    }

    fn request(&mut self, kind: RequestKind, host: i64) -> i64 {
        self.db
            .request_operation("hg", kind, HostId(host), "test", self.clock.now_ms())
            .unwrap()
    }

    pub(super) fn kinds(&self) -> Vec<String> {
        self.db
            .events_after(0, 100_000)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

/// Evacuate host 1 on the sim (live migration): its VMs end on other hosts, each on one
/// host, by `migrate` alone (no stop, no start); the host is in maintenance; nothing is
/// a failure — no VM failure, no host failure, no restart for a failure — not even when
/// the host is then powered off. Restore returns both home VMs in one request.
#[test]
fn test_evacuate_by_live_migration_then_restore() {
    evacuate_then_restore(bed());
}

/// The same with the HSDB on PostgreSQL.
#[test]
fn test_evacuate_by_live_migration_then_restore_on_postgres() {
    if let Some(b) = bed_on(Some("evacuate_then_restore")) {
        evacuate_then_restore(b);
    }
}

fn evacuate_then_restore(mut b: Bed) {
    b.run(&[1, 2, 3], T0 + 3_000);
    let id = b.request(RequestKind::Evacuate, 1);
    b.run(&[1, 2, 3], T0 + 30_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    let result = r.result.unwrap();
    assert!(
        result.contains("2 VM(s) moved by live migration"),
        "{result}"
    );
    assert_eq!(
        b.db.hosts_in_maintenance()
            .unwrap()
            .iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
        [HostId(1)]
    );
    assert!(b.fde.in_maintenance(HostId(1)));
    {
        let w = b.platform.world();
        for n in 1..=2 {
            let on = w.vm_running_on(&uuid(n));
            assert_eq!(on.len(), 1, "{on:?}");
            assert_ne!(on[0], "host-1");
            assert_eq!(w.vm_defined_on(&uuid(n)), on, "the definition moved");
        }
        let calls: Vec<Call> = w.history().iter().map(|c| c.call).collect();
        assert_eq!(calls.iter().filter(|c| **c == Call::Migrate).count(), 2);
        assert!(
            !calls.contains(&Call::Stop) && !calls.contains(&Call::Start),
            "{calls:?}"
        );
        assert!(w.violations().is_empty());
    }
    // The HSDB followed the agents: MOVED on the new hosts.
    for n in 1..=2 {
        let row = b.db.vm(&uuid(n)).unwrap().unwrap();
        assert_ne!(row.current_host, Some(HostId(1)));
    }
    let rows = b.db.relocations(None, 10).unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            row.result.as_deref(),
            Some("success (moved by live migration)")
        );
        let steps: Vec<String> =
            b.db.relocation_steps(row.id)
                .unwrap()
                .into_iter()
                .map(|s| s.phase)
                .collect();
        assert!(steps.contains(&"cause evacuate".to_owned()), "{steps:?}");
        assert!(steps.contains(&"migrating".to_owned()), "{steps:?}");
        assert!(!steps.contains(&"shutting_down".to_owned()), "{steps:?}");
    }
    // Host 1 goes down for its maintenance: silence is not a failure.
    b.platform.world().host_power_off("host-1").unwrap();
    let down = b.clock.now_ms();
    b.run(&[2, 3], down + 30_000);
    let k = b.kinds();
    for bad in [
        "HOST_FAILURE_DETECTED",
        "VM_FAILURE_DETECTED",
        "VM_RESTART_FAILED",
        "HOST_MONITORS_UNRESPONSIVE",
    ] {
        assert!(!k.iter().any(|x| x == bad), "{bad} in {k:?}");
    }
    assert_eq!(
        k.iter()
            .filter(|x| *x == "HOST_MAINTENANCE_STARTED")
            .count(),
        1
    );
    assert!(
        !b.fde
            .decisions()
            .iter()
            .any(|d| d.verdict == Verdict::Recover || d.verdict == Verdict::HostFailure),
        "no failure decided"
    );
    assert!(
        b.fde
            .decisions()
            .iter()
            .any(|d| d.verdict == Verdict::Maintenance
                && d.reason.contains("in maintenance: not a failure"))
    );
    assert_eq!(
        b.db.relocations(None, 10).unwrap().len(),
        2,
        "nothing relocated"
    );
    // TC-13: NeedsAttention showed each moved VM as MOVED (and its misses on host 1's
    // monitors): decided a move, never a failure.
    for n in 1..=2 {
        assert!(
            b.fde.decisions().iter().any(|d| d.verdict == Verdict::Moved
                && matches!(&d.subject, crate::fde::Subject::Vm { uuid: u, .. } if *u == uuid(n))),
            "vm{n}"
        );
    }

    // Back from maintenance: restore returns vm1 and vm2 (home host 1) in one request.
    b.platform.world().host_restore("host-1").unwrap();
    b.run(&[1, 2, 3], b.clock.now_ms() + 3_000);
    let id = b.request(RequestKind::Restore, 1);
    b.run(&[1, 2, 3], b.clock.now_ms() + 30_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    assert!(
        r.result
            .as_deref()
            .unwrap()
            .contains("2 VM(s) returned home by live migration"),
        "{r:?}"
    );
    assert!(b.db.hosts_in_maintenance().unwrap().is_empty());
    let w = b.platform.world();
    assert_eq!(w.vm_running_on(&uuid(1)), ["host-1"]);
    assert_eq!(w.vm_running_on(&uuid(2)), ["host-1"]);
    assert_eq!(
        w.vm_running_on(&uuid(3)),
        ["host-2"],
        "not its home: untouched"
    );
    drop(w);
    assert!(b.kinds().iter().any(|k| k == "HOST_MAINTENANCE_ENDED"));
}

/// An evacuation whose plan is incomplete is refused with each VM's reason; nothing
/// moves and the host does not enter maintenance.
#[test]
fn test_evacuate_refused_when_the_plan_is_incomplete() {
    let mut b = bed();
    b.db.set_vm(
        &uuid(2),
        &hsdb::VmSettings {
            memory_mb: Some(20_000),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    b.run(&[1, 2, 3], T0 + 3_000);
    let id = b.request(RequestKind::Evacuate, 1);
    b.run(&[1, 2, 3], T0 + 20_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Refused, "{r:?}");
    let why = r.result.unwrap();
    assert!(
        why.contains("the plan is incomplete, nothing moved"),
        "{why}"
    );
    assert!(why.contains("VM vm2:"), "{why}");
    assert!(!why.contains("VM vm1:"), "vm1 fits: {why}");
    assert!(b.db.hosts_in_maintenance().unwrap().is_empty());
    let w = b.platform.world();
    assert!(w.history().is_empty(), "no action: {:?}", w.history());
    assert_eq!(w.vm_running_on(&uuid(1)), ["host-1"]);
    drop(w);
    assert!(b.kinds().iter().any(|k| k == "HOST_MAINTENANCE_REFUSED"));
    assert!(b.db.relocations(None, 10).unwrap().is_empty());
}

/// On a platform that cannot live-migrate, the evacuation is a stop and a start, and
/// the rows say so.
#[test]
fn test_evacuate_without_live_migration_is_stop_and_start() {
    let mut b = bed();
    b.platform.world().set_live_migration(false);
    assert!(!b.platform.live_migration());
    b.run(&[1, 2, 3], T0 + 3_000);
    let id = b.request(RequestKind::Evacuate, 1);
    b.run(&[1, 2, 3], T0 + 60_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    assert!(
        r.result
            .as_deref()
            .unwrap()
            .contains("moved by stop and start"),
        "{r:?}"
    );
    let w = b.platform.world();
    let calls: Vec<Call> = w.history().iter().map(|c| c.call).collect();
    assert!(!calls.contains(&Call::Migrate));
    assert_eq!(calls.iter().filter(|c| **c == Call::Stop).count(), 2);
    assert_eq!(calls.iter().filter(|c| **c == Call::Start).count(), 2);
    for n in 1..=2 {
        assert_eq!(w.running_hosts_of(&uuid(n)), 1);
        assert!(!w.vm_defined_on(&uuid(n)).contains(&"host-1".to_owned()));
    }
    drop(w);
    for row in b.db.relocations(None, 10).unwrap() {
        assert_eq!(
            row.result.as_deref(),
            Some("success (moved by stop and start (the platform cannot live-migrate))")
        );
    }
}

/// A live migration whose answer is lost (it timed out but took effect) is found done
/// on the target and not sent again; one that fails leaves its VM running on the source:
/// the request ends FAILED naming it, the host stays in maintenance, and the VM is not
/// restarted for it.
#[test]
fn test_evacuate_migration_lost_answer_and_failure() {
    use crate::platform::sim::{FailureRule, InjectedError};
    let mut b = bed();
    {
        let mut w = b.platform.world();
        // vm1's migration outlasts the driver's timeout: applied, answer lost.
        w.set_latency(Call::Migrate, 12_000);
        w.inject_failure(FailureRule {
            call: Call::Migrate,
            host: None,
            vm: Some(uuid(2)),
            times: 1,
            error: InjectedError::Failed,
        });
    }
    b.run(&[1, 2, 3], T0 + 3_000);
    let id = b.request(RequestKind::Evacuate, 1);
    b.run(&[1, 2, 3], T0 + 60_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Failed, "{r:?}");
    let result = r.result.unwrap();
    assert!(
        result.contains("evacuated in part: 1 VM(s) moved"),
        "{result}"
    );
    assert!(
        result.contains("VM vm2: could not live-migrate VM vm2"),
        "{result}"
    );
    assert_eq!(
        b.db.hosts_in_maintenance().unwrap().len(),
        1,
        "still in maintenance"
    );
    let w = b.platform.world();
    let on1 = w.vm_running_on(&uuid(1));
    assert_eq!(on1.len(), 1);
    assert_ne!(on1[0], "host-1");
    assert_eq!(w.vm_running_on(&uuid(2)), ["host-1"], "stays where it runs");
    let migrates: Vec<_> = w
        .history()
        .iter()
        .filter(|c| c.call == Call::Migrate)
        .map(|c| (c.vm, c.error.is_some()))
        .collect();
    assert_eq!(
        migrates,
        [(Some(uuid(1)), true), (Some(uuid(2)), true)],
        "one call each: vm1's timed out (applied), vm2's failed; none sent again"
    );
    assert!(w.violations().is_empty());
    drop(w);
    let rows = b.db.relocations(None, 10).unwrap();
    let results: Vec<&str> = rows.iter().filter_map(|r| r.result.as_deref()).collect();
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("success (moved by live migration")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("failed: could not live-migrate")),
        "{results:?}"
    );
    assert!(!b.kinds().iter().any(|k| k == "VM_FAILURE_DETECTED"));
}

/// A host without VMs is evacuated at once (nothing to move) and is in maintenance;
/// evacuating it again is harmless; a restore of it returns nothing and ends it.
#[test]
fn test_evacuate_an_empty_host_and_restore_it() {
    let mut b = bed();
    b.run(&[1, 2, 3], T0 + 3_000);
    let id = b.request(RequestKind::Evacuate, 3);
    b.run(&[1, 2, 3], T0 + 10_000);
    let r = b.db.operator_request(id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    assert!(
        r.result.as_deref().unwrap().contains("0 VM(s) moved"),
        "{r:?}"
    );
    let again = b.request(RequestKind::Evacuate, 3);
    b.run(&[1, 2, 3], T0 + 15_000);
    assert_eq!(
        b.db.operator_request(again).unwrap().unwrap().state,
        RequestState::Done
    );
    assert_eq!(b.db.hosts_in_maintenance().unwrap().len(), 1);
    let (names, active) = b.fde.maintenance_summary();
    assert_eq!((names, active), (vec!["host-3".to_owned()], None));
    let restore = b.request(RequestKind::Restore, 3);
    b.run(&[1, 2, 3], T0 + 20_000);
    let r = b.db.operator_request(restore).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Done, "{r:?}");
    assert!(b.db.hosts_in_maintenance().unwrap().is_empty());
    assert!(b.db.relocations(None, 10).unwrap().is_empty());
    assert!(
        b.platform.world().history().is_empty(),
        "no platform action"
    );
}
