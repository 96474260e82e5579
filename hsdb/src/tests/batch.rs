//! A mass failure: thousands of transitions in one call, one transaction.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::{Applied, HeartbeatState, Synchronous};

const N: u32 = 10_000;

both!(test_ten_thousand_missing_in_one_transaction);
fn test_ten_thousand_missing_in_one_transaction() {
    let mut f = Fixture::new();
    let discover: Vec<Transition> = (0..N)
        .map(|i| discovered(vm_n(i), hm1(), mac_n(i, 0), T0))
        .collect();
    let setup = f.db.apply(&discover).expect("discover");
    assert_eq!((setup.discovered, setup.vms_created), (10_000, 10_000));

    // Host-wide network loss: the monitor declares every VM MISSING at once.
    let at = T0 + 19_000;
    let batch: Vec<Transition> = (0..N)
        .map(|i| Transition::Missing {
            vm: vm_n(i),
            hm: hm1(),
            at,
        })
        .collect();
    let commits = f.count_commits();
    let started = Instant::now();
    let applied = f.db.apply(&batch).expect("apply");
    let elapsed = started.elapsed();
    eprintln!(
        "hsdb: 10,000 Missing in one apply (synchronous=FULL): {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );

    assert_eq!(commits.load(Ordering::SeqCst), 1, "one transaction");
    assert_eq!(
        applied,
        Applied {
            missing: 10_000,
            ..Applied::default()
        }
    );
    let missed = f.int(
        "SELECT COUNT(*) FROM vm_hm WHERE hb_missed_ms = ?1 AND last_state = 'MISSING'",
        crate::db::params![at],
    );
    assert_eq!(missed, 10_000);
    for i in [0, 1, 4_999, N - 1] {
        let row = f.db.vm_hm(&vm_n(i), &hm1()).expect("read").expect("row");
        assert_eq!(
            (row.hb_missed_ms, row.last_state),
            (Some(at), HeartbeatState::Missing)
        );
    }
    assert_eq!(
        f.db.pending().expect("pending").len(),
        10_000,
        "discoveries only"
    );
    f.db.integrity_check().expect("integrity");

    // And all of it is durable: a second connection sees it.
    let db = f.reopen(&Options::default());
    assert_eq!(db.vms().expect("vms").len(), 10_000);
}

both!(test_discovery_storm_consumed_in_bounded_steps);
fn test_discovery_storm_consumed_in_bounded_steps() {
    // 100,000 VMs discovered at once (a new host group, or a store rebuilt): the
    // controller consumes them 1,000 per NeedsAttention reply, acknowledging each.
    const STEP: usize = 1_000;
    let mut f = Fixture::with(Synchronous::Normal);
    // On PostgreSQL 20,000 VMs (20 replies): every statement is a round trip to the
    // server, and the same steps at a fifth of the size keep the suite fast.
    let vms: u32 = match f.db.backend() {
        crate::Backend::Sqlite => 100_000,
        crate::Backend::Postgres => 20_000,
    };
    let total = usize::try_from(vms).expect("fits");
    let storm: Vec<Transition> = (0..vms)
        .map(|i| discovered(vm_n(i), hm1(), mac_n(i, 0), T0))
        .collect();
    let applied = f.db.apply(&storm).expect("storm");
    assert_eq!(applied.pending_added, total);
    let limits = crate::NaLimits {
        max_items: STEP,
        ..crate::NaLimits::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut replies = 0;
    loop {
        let tag = 1_000 + replies;
        let rows = f.db.needs_attention(T0 + 1, limits, tag).expect("NA");
        replies += 1;
        let items: usize = rows.vms.iter().map(|v| v.items.len()).sum();
        assert!(items <= STEP, "reply {replies}: {items} items");
        for vm in &rows.vms {
            assert!(seen.insert(vm.uuid), "{} reported twice", vm.uuid);
            assert_eq!(vm.discovery, Some(crate::DiscoveryKind::Unmanaged));
        }
        if rows.tag.is_some() {
            assert_eq!(f.db.acknowledge(tag).expect("ack"), items);
        }
        if !rows.more {
            assert!(items <= STEP);
            break;
        }
        assert_eq!(items, STEP, "a reply with more to come is full");
        assert!(replies <= 200, "no progress");
    }
    assert_eq!(seen.len(), total);
    assert_eq!(
        usize::try_from(replies).expect("few"),
        total / STEP,
        "every item in steps of 1,000"
    );
    assert!(f.db.pending().expect("pending").is_empty());
    let last =
        f.db.needs_attention(T0 + 2, limits, 9)
            .expect("NA after the storm");
    assert!(last.vms.is_empty() && last.tag.is_none() && !last.more);
}
