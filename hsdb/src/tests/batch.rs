//! A mass failure: thousands of transitions in one call, one transaction.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::{Applied, HeartbeatState};

const N: u32 = 10_000;

#[test]
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
    let missed: i64 = f
        .raw()
        .query_row(
            "SELECT COUNT(*) FROM vm_hm WHERE hb_missed_ms = ?1 AND last_state = 'MISSING'",
            [at],
            |r| r.get(0),
        )
        .expect("count");
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
    drop(f.db);
    let db = Hsdb::open(f.dir.path().join("hsdb.sqlite"), &Options::default()).expect("reopen");
    assert_eq!(db.vms().expect("vms").len(), 10_000);
}
