//! The leader lease and the fence, each test on SQLite and on PostgreSQL (a fresh
//! database of the `pglab` server; skipped, saying so, on a machine without PostgreSQL,
//! failed under `CI=true`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;
use crate::{Options, ParamScope, Target};

/// Where the test's database lives; kept for the life of the test.
enum Place {
    Sqlite(TempDir),
    Postgres(Target),
}

impl Place {
    fn target(&self) -> Target {
        match self {
            Place::Sqlite(dir) => Target::Sqlite(dir.path().join("hsdb.sqlite")),
            Place::Postgres(t) => t.clone(),
        }
    }

    fn connect(&self) -> Hsdb {
        Hsdb::connect(&self.target(), &Options::default()).unwrap()
    }
}

/// A fresh database on `backend`, or `None` (skipped) when PostgreSQL is not here.
fn place(postgres: bool, test: &str) -> Option<Place> {
    if !postgres {
        return Some(Place::Sqlite(tempfile::tempdir().unwrap()));
    }
    let server = pglab::require(test)?;
    let url = server.fresh_database("lease");
    Some(Place::Postgres(Target::parse(&url).unwrap()))
}

/// `name::sqlite` and `name::postgres` running `body` on a fresh database of each.
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    if let Some(p) = super::place(false, concat!(module_path!(), "::sqlite")) {
                        super::$name(&p);
                    }
                }
                #[test]
                fn postgres() {
                    if let Some(p) = super::place(true, concat!(module_path!(), "::postgres")) {
                        super::$name(&p);
                    }
                }
            }
        )+
    };
}

both!(
    acquire_renew_follow_release_and_tokens_are_never_reused,
    a_lease_expires_on_the_database_clock_and_a_lapsed_one_gets_a_new_token,
    a_fenced_write_after_a_takeover_fails_and_writes_nothing,
    the_local_check_refuses_before_the_database_is_asked,
    a_takeover_waits_for_a_fenced_write_in_flight_to_commit,
    bad_holders_and_ttls_are_refused,
);

fn acquire_renew_follow_release_and_tokens_are_never_reused(p: &Place) {
    let mut a = p.connect();
    let mut b = p.connect();
    assert_eq!(a.lease("hg1").unwrap(), None);
    let LeaseOutcome::Acquired(l1) = a.lease_acquire("hg1", "ctl-a", 10_000).unwrap() else {
        panic!("the first candidate acquires");
    };
    assert_eq!((l1.holder.as_str(), l1.token), ("ctl-a", 1));
    assert_eq!(l1.expires_ms - l1.acquired_ms, 10_000);
    let LeaseOutcome::Renewed(r) = a.lease_acquire("hg1", "ctl-a", 10_000).unwrap() else {
        panic!("its own live lease is renewed");
    };
    assert_eq!(r.token, 1);
    assert_eq!(r.acquired_ms, l1.acquired_ms);
    assert!(r.renewed_ms >= l1.renewed_ms);
    match b.lease_acquire("hg1", "ctl-b", 10_000).unwrap() {
        LeaseOutcome::HeldBy(l) => assert_eq!((l.holder.as_str(), l.token), ("ctl-a", 1)),
        other => panic!("{other:?}"),
    }
    // Another group is another lease.
    assert!(matches!(
        b.lease_acquire("hg2", "ctl-b", 10_000).unwrap(),
        LeaseOutcome::Acquired(Lease { token: 1, .. })
    ));
    // Release hands it over at once, with the next token; a second release is a no.
    assert!(
        !b.lease_release("hg1", "ctl-b").unwrap(),
        "not b's to release"
    );
    assert!(a.lease_release("hg1", "ctl-a").unwrap());
    assert!(!a.lease_release("hg1", "ctl-a").unwrap());
    let LeaseOutcome::Acquired(l2) = b.lease_acquire("hg1", "ctl-b", 10_000).unwrap() else {
        panic!("a released lease is free");
    };
    assert_eq!(l2.token, 2);
    b.lease_release("hg1", "ctl-b").unwrap();
    // Even the same holder gets a new token after a release.
    let LeaseOutcome::Acquired(l3) = b.lease_acquire("hg1", "ctl-b", 10_000).unwrap() else {
        panic!();
    };
    assert_eq!(l3.token, 3);
    let rows = a.leases().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].host_group, "hg1");
    assert_eq!(rows[0].token, 3);
    assert_eq!(a.lease("hg1").unwrap().unwrap(), l3);
}

fn a_lease_expires_on_the_database_clock_and_a_lapsed_one_gets_a_new_token(p: &Place) {
    let mut a = p.connect();
    let mut b = p.connect();
    let LeaseOutcome::Acquired(l) = a.lease_acquire("hg1", "ctl-a", 300).unwrap() else {
        panic!();
    };
    // The database's clock, not ours, stamps it.
    let now = a.db_now_ms().unwrap();
    assert!((now - l.acquired_ms).abs() < 5_000, "{now} vs {l:?}");
    std::thread::sleep(Duration::from_millis(900));
    let LeaseOutcome::Acquired(taken) = b.lease_acquire("hg1", "ctl-b", 300).unwrap() else {
        panic!("an expired lease is free");
    };
    assert_eq!(taken.token, 2);
    assert!(taken.acquired_ms >= l.expires_ms);
    // The old holder's renewal finds it taken.
    assert!(matches!(
        a.lease_acquire("hg1", "ctl-a", 300).unwrap(),
        LeaseOutcome::HeldBy(Lease { token: 2, .. })
    ));
    // b lets it lapse and comes back: nobody took it, but it is a new term.
    std::thread::sleep(Duration::from_millis(900));
    assert!(matches!(
        b.lease_acquire("hg1", "ctl-b", 10_000).unwrap(),
        LeaseOutcome::Acquired(Lease { token: 3, .. })
    ));
}

fn fence(group: &str, holder: &str, token: i64) -> Fence {
    Fence {
        host_group: group.into(),
        holder: holder.into(),
        token,
        check: None,
    }
}

fn a_fenced_write_after_a_takeover_fails_and_writes_nothing(p: &Place) {
    let mut a = p.connect();
    let mut writer = p.connect();
    let mut b = p.connect();
    a.lease_acquire("hg1", "ctl-a", 400).unwrap();
    writer.set_fence(Some(fence("hg1", "ctl-a", 1)));
    assert_eq!(writer.fence().unwrap().token, 1);
    // While the lease holds, fenced writes go through: transactions and single
    // statements alike.
    writer
        .set_param(&ParamScope::System, "scan_interval", "20s")
        .unwrap();
    writer
        .record_event("X", None, None, "while leading", 1)
        .unwrap();
    writer.set_consumer_offset("log", 1).unwrap();
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(matches!(
        b.lease_acquire("hg1", "ctl-b", 10_000).unwrap(),
        LeaseOutcome::Acquired(Lease { token: 2, .. })
    ));
    let events_before = a.events_after(0, 100).unwrap().len();
    for result in [
        writer
            .record_event("X", None, None, "after the takeover", 2)
            .map(|_| ()),
        writer.set_param(&ParamScope::System, "scan_interval", "5s"),
        writer.set_consumer_offset("log", 99),
    ] {
        match result {
            Err(Error::Fenced {
                host_group,
                token,
                why,
            }) => {
                assert_eq!((host_group.as_str(), token), ("hg1", 1));
                assert!(why.contains("held by ctl-b with token 2"), "{why}");
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
    assert!(
        !Error::Fenced {
            host_group: String::new(),
            token: 0,
            why: String::new()
        }
        .is_unavailable()
    );
    // Nothing of it was written.
    assert_eq!(a.events_after(0, 100).unwrap().len(), events_before);
    assert_eq!(
        a.param(&ParamScope::System, "scan_interval")
            .unwrap()
            .as_deref(),
        Some("20s")
    );
    assert_eq!(a.consumer_offset("log").unwrap(), Some(1));
    // Reads are not fenced; unbound, the connection writes again.
    assert!(writer.lease("hg1").unwrap().is_some());
    writer.set_fence(None);
    writer.set_consumer_offset("log", 2).unwrap();
    // A fence on a group nobody ever held says so.
    writer.set_fence(Some(fence("hg9", "ctl-a", 1)));
    match writer.set_consumer_offset("log", 3) {
        Err(Error::Fenced { why, .. }) => assert_eq!(why, "no lease row for the group"),
        other => panic!("{other:?}"),
    }
    // An expired lease nobody took: still fenced (the holder's term is over).
    let mut c = p.connect();
    c.lease_acquire("hg3", "ctl-c", 200).unwrap();
    c.set_fence(Some(fence("hg3", "ctl-c", 1)));
    std::thread::sleep(Duration::from_millis(600));
    match c.set_consumer_offset("log", 4) {
        Err(Error::Fenced { why, .. }) => assert!(why.contains("expired"), "{why}"),
        other => panic!("{other:?}"),
    }
}

fn the_local_check_refuses_before_the_database_is_asked(p: &Place) {
    let mut a = p.connect();
    a.lease_acquire("hg1", "ctl-a", 60_000).unwrap();
    let allowed = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&allowed);
    a.set_fence(Some(Fence {
        check: Some(Arc::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("local deadline passed".into())
            }
        })),
        ..fence("hg1", "ctl-a", 1)
    }));
    a.set_consumer_offset("log", 1).unwrap();
    allowed.store(false, Ordering::SeqCst);
    match a.set_consumer_offset("log", 2) {
        Err(Error::Fenced { why, token: 1, .. }) => assert_eq!(why, "local deadline passed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.consumer_offset("log").unwrap(), Some(1));
    // The lease's own calls are never fenced: renewing must not need the lease.
    assert!(matches!(
        a.lease_acquire("hg1", "ctl-a", 60_000).unwrap(),
        LeaseOutcome::Renewed(_)
    ));
}

fn a_takeover_waits_for_a_fenced_write_in_flight_to_commit(p: &Place) {
    let mut a = p.connect();
    a.lease_acquire("hg1", "ctl-a", 500).unwrap();
    let target = p.target();
    let (checked_tx, checked_rx) = std::sync::mpsc::channel();
    // The old leader's write: the fence checked while the lease holds, then slow — the
    // lease expires in the database in the middle of it.
    let writer = std::thread::spawn(move || {
        let mut w = Hsdb::connect(&target, &Options::default()).unwrap();
        w.set_fence(Some(fence("hg1", "ctl-a", 1)));
        w.write("slow_fenced_write", |tx| {
            let _ = checked_tx.send(());
            std::thread::sleep(Duration::from_millis(1_500));
            tx.execute(
                "slow_fenced_write",
                "INSERT INTO event (kind, text, created_ms) VALUES ('SLOW', 'in flight', 0)",
                params![],
            )?;
            db_now(tx, "slow_fenced_write")
        })
        .unwrap()
    });
    checked_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Expired by now; the takeover must wait for the write in flight.
    let mut b = p.connect();
    let started = Instant::now();
    let outcome = b.lease_acquire("hg1", "ctl-b", 10_000).unwrap();
    let waited = started.elapsed();
    let last_write_ms = writer.join().unwrap();
    let LeaseOutcome::Acquired(l) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(l.token, 2);
    assert!(
        waited >= Duration::from_millis(300),
        "the takeover did not wait for the write in flight: {waited:?}"
    );
    assert!(
        l.acquired_ms >= last_write_ms,
        "acquired at {} before the fenced write's last statement at {last_write_ms}",
        l.acquired_ms
    );
    // The write committed (before the takeover); the next one is fenced.
    let kinds: Vec<String> = a
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["SLOW"]);
    let mut w = p.connect();
    w.set_fence(Some(fence("hg1", "ctl-a", 1)));
    assert!(matches!(
        w.record_event("X", None, None, "late", 3),
        Err(Error::Fenced { .. })
    ));
}

fn bad_holders_and_ttls_are_refused(p: &Place) {
    let mut a = p.connect();
    for (holder, ttl) in [("", 1_000), ("ctl-a", 0), ("ctl-a", 86_400_001)] {
        match a.lease_acquire("hg1", holder, ttl) {
            Err(Error::Options { .. }) => {}
            other => panic!("{holder:?} {ttl}: {other:?}"),
        }
    }
    assert_eq!(a.leases().unwrap(), []);
}
