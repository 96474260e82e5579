//! The engine with the policy planner: what it tells the planner about the group.

use super::{Rig, missed, uuid, vm_row};
use crate::fde::Verdict;
use crate::planner::{Policies, VmSet};

fn placements(rig: &Rig) -> Vec<String> {
    rig.fde
        .decisions()
        .iter()
        .filter(|d| d.verdict == Verdict::Recover && d.reason.starts_with("policy planner"))
        .map(|d| format!("{}: {}", d.subject, d.reason))
        .collect()
}

/// A VM the engine restarted is a partner where it went, even before the platform shows
/// it there: the second VM of an anticollocation failing later goes elsewhere.
#[test]
fn test_anticollocation_counts_the_engines_own_restarts() {
    let mut rig = Rig::standard();
    rig.store.vms.insert(uuid(2), vm_row(2, 1));
    rig.platform.ping.insert(uuid(1), Ok(false));
    rig.platform.ping.insert(uuid(2), Ok(false));
    rig.fde.set_policies(Policies {
        anticollocations: vec![VmSet {
            name: "apart".into(),
            members: vec![uuid(1), uuid(2)],
        }],
        ..Policies::default()
    });
    rig.na(vec![missed(1, 1, 240)]);
    let p = placements(&rig);
    assert_eq!(p.len(), 1, "{p:?}");
    // host-2 and host-3 are equal fits: the lower id.
    assert!(
        p[0].starts_with("vm vm1: policy planner: restart on host host-2 "),
        "{p:?}"
    );
    // A platform that does not show vm1 on host-2 (yet).
    assert!(!rig.platform.hosts[1].vms.is_empty());
    for h in &mut rig.platform.hosts {
        h.vms.clear();
    }
    rig.na(vec![missed(2, 1, 240)]);
    let p = placements(&rig);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[1].starts_with("vm vm2: policy planner: restart on host host-3 "),
        "{p:?}"
    );
}
