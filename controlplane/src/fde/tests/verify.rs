//! The periodic verify (fde/verify.rs): the loss of each host planned in turn, one event
//! per episode.

use hsdb::Priority;

use super::{Rig, uuid, vm_row};
use crate::events::EventKind;
use crate::fde::Verdict;

fn verify_decisions(rig: &Rig) -> Vec<String> {
    rig.fde
        .decisions()
        .iter()
        .filter(|d| d.verdict == Verdict::Verify)
        .map(|d| format!("{}: {}", d.subject, d.reason))
        .collect()
}

#[test]
fn test_verify_raises_capacity_short_once_per_episode() {
    let mut rig = Rig::standard();
    // Host 1 holds three 6-CPU VMs: hosts 2 and 3 (8 CPUs each) take one each.
    for n in 10..13u8 {
        let mut v = vm_row(n, 1);
        v.cpu_milli = 6_000;
        v.priority = if n == 12 {
            Priority::Low
        } else {
            Priority::High
        };
        rig.store.vms.insert(uuid(n), v);
    }
    // The first scan schedules the verify a scan interval later.
    rig.scan();
    assert!(rig.events(EventKind::GroupCapacityShort).is_empty());
    rig.scan();
    let short = rig.events(EventKind::GroupCapacityShort);
    assert_eq!(short.len(), 1, "{short:?}");
    assert_eq!(
        short[0].text,
        "group hg cannot absorb the loss of every host: host host-1: 1 VM(s) without a place \
         (vm12); `hactl verify hg` says why"
    );
    assert_eq!(rig.fde.capacity_short().get(&hsdb::HostId(1)), Some(&1));
    assert_eq!(rig.fde.capacity_short_summary(), ["host-1: 1 VM(s)"]);
    let d = verify_decisions(&rig);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with(
            "host host-1: verify: the loss of host host-1 would leave 1 managed VM(s) without \
             a place: vm12: no host can take it (of 3 hosts: 1 failed, 2 no room)"
        ),
        "{d:?}"
    );
    // Verified again at every verify_interval (5 min): the same finding, no new event.
    for _ in 0..40 {
        rig.scan();
    }
    assert_eq!(rig.events(EventKind::GroupCapacityShort).len(), 1);
    assert_eq!(verify_decisions(&rig).len(), 1);
    assert!(rig.events(EventKind::GroupCapacityOk).is_empty());
    // Smaller VMs: the group can absorb it again — one event, one decision.
    for n in 10..13u8 {
        rig.store.vms.get_mut(&uuid(n)).unwrap().cpu_milli = 3_000;
    }
    for _ in 0..16 {
        rig.scan();
    }
    let ok = rig.events(EventKind::GroupCapacityOk);
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(
        ok[0].text,
        "group hg can absorb the loss of any one host again (3 hosts verified)"
    );
    let d = verify_decisions(&rig);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[1],
        "host host-1: verify: the loss of host host-1 can be absorbed again"
    );
    assert!(rig.fde.capacity_short().is_empty());
    assert!(rig.fde.capacity_short_summary().is_empty());
    assert!(
        rig.calls("start").is_empty() && rig.calls("stop").is_empty(),
        "a verify acts on nothing"
    );
}
