//! The leadership state machine on a virtual clock: two or three candidates share one
//! in-memory lease table whose clock is the same virtual time (the database's clock and
//! the candidates' monotonic clocks run at the same rate, as real ones nearly do).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::memory::MemoryLeases;
use super::*;
use crate::clock::{Clock, ManualClock, Monotonic};

const S: LeaseSettings = LeaseSettings {
    ttl_ms: 10_000,
    renew_every_ms: 2_000,
    margin_ms: 1_000,
};

struct Candidate {
    l: Leadership,
    store: MemoryLeases,
    events: Vec<LeaseEvent>,
}

impl Candidate {
    fn new(holder: &str, store: &MemoryLeases, clock: &ManualClock) -> Candidate {
        Candidate {
            l: Leadership::new("hg1", holder, S, clock.mono_ms()),
            store: store.clone(),
            events: Vec::new(),
        }
    }

    /// What the daemon's lease thread does when it wakes: an attempt if due (answered at
    /// once), then the deadline.
    fn drive(&mut self, clock: &ManualClock) {
        let now = clock.mono_ms();
        if let Some(a) = self.l.poll_attempt(now) {
            let o = self.store.acquire("hg1", self.l.holder(), S.ttl_ms);
            self.l.handle_outcome(a, o, clock.mono_ms());
        }
        self.l.handle_timeout(clock.mono_ms());
        while let Some(e) = self.l.poll_event() {
            self.events.push(e);
        }
    }
}

fn setup() -> (ManualClock, MemoryLeases) {
    let clock = ManualClock::new(1_000_000);
    let store = MemoryLeases::new(Arc::new(clock.clone()));
    (clock, store)
}

#[test]
fn the_first_candidate_acquires_renewals_keep_the_token_and_push_the_deadline() {
    let (clock, store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    a.drive(&clock);
    assert_eq!(
        a.events,
        [LeaseEvent::Gained {
            token: 1,
            expires_ms: 1_010_000
        }]
    );
    assert_eq!(a.l.check(clock.mono_ms()), Ok(1));
    assert_eq!(a.l.deadline_ms(), Some(1_009_000), "sent + ttl − margin");
    // Not due before renew_every.
    clock.advance(1_999);
    assert!(a.l.poll_attempt(clock.mono_ms()).is_none());
    clock.advance(1);
    a.drive(&clock);
    assert_eq!(a.events.len(), 1, "a renewal is no change of role");
    assert_eq!(a.l.token(), Some(1));
    assert_eq!(a.l.deadline_ms(), Some(1_011_000));
    let lease = store.lease("hg1").unwrap();
    assert_eq!((lease.holder.as_str(), lease.token), ("a", 1));
    assert_eq!(lease.expires_ms, 1_012_000);
    assert_eq!(lease.acquired_ms, 1_000_000);
}

#[test]
fn a_second_candidate_follows_and_names_the_leader() {
    let (clock, store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    let mut b = Candidate::new("b", &store, &clock);
    a.drive(&clock);
    b.drive(&clock);
    assert_eq!(
        b.events,
        [LeaseEvent::LeaderSeen {
            holder: "a".into(),
            token: 1
        }]
    );
    assert_eq!(
        b.l.check(clock.mono_ms()),
        Err(Refusal::NotLeader {
            leader: Some("a".into())
        })
    );
    // A leader that keeps renewing is never taken over.
    for _ in 0..50 {
        clock.advance(2_000);
        a.drive(&clock);
        b.drive(&clock);
    }
    assert_eq!(a.l.check(clock.mono_ms()), Ok(1));
    assert_eq!(b.events.len(), 1, "{:?}", b.events);
}

#[test]
fn a_stopped_leader_is_taken_over_within_the_bound_and_refused_when_it_wakes() {
    let (clock, store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    let mut b = Candidate::new("b", &store, &clock);
    a.drive(&clock);
    b.drive(&clock);
    // a renews once more at +2 s, then is stopped (kill -STOP): nobody drives it.
    clock.advance(2_000);
    a.drive(&clock);
    let last_renewal = clock.mono_ms();
    let mut taken_at = None;
    for _ in 0..40 {
        clock.advance(500);
        b.drive(&clock);
        if b.l.check(clock.mono_ms()).is_ok() && taken_at.is_none() {
            taken_at = Some(clock.mono_ms());
        }
    }
    let taken_at = taken_at.expect("b took over");
    let took = taken_at - last_renewal;
    assert!(took >= S.ttl_ms, "not before the lease expired: {took}");
    assert!(
        took <= S.ttl_ms + S.renew_every_ms,
        "within ttl + renew_every: {took}"
    );
    assert_eq!(b.l.token(), Some(2), "a new holder, a new token");
    assert!(matches!(
        b.events.last(),
        Some(LeaseEvent::Gained { token: 2, .. })
    ));
    // a wakes up (kill -CONT): its own clock ran on, its deadline is long past. Its first
    // check, before any renewal, refuses.
    match a.l.check(clock.mono_ms()) {
        Err(Refusal::Expired {
            token: 1,
            late_by_ms,
        }) => assert!(late_by_ms > 0),
        other => panic!("{other:?}"),
    }
    a.drive(&clock);
    assert_eq!(
        &a.events[1..],
        [
            LeaseEvent::Lost {
                token: 1,
                why: LossReason::DeadlinePassed { failed_attempts: 0 }
            },
            LeaseEvent::LeaderSeen {
                holder: "b".into(),
                token: 2
            }
        ]
    );
    assert_eq!(
        a.l.check(clock.mono_ms()),
        Err(Refusal::NotLeader {
            leader: Some("b".into())
        })
    );
}

#[test]
fn the_deadline_counts_from_the_send_not_from_the_answer() {
    let (clock, store) = setup();
    let mut a = Leadership::new("hg1", "a", S, clock.mono_ms());
    let mut store = store;
    let attempt = a.poll_attempt(clock.mono_ms()).unwrap();
    // The request is slow to arrive: the database stamps the lease 3 s after the send,
    // and the answer is back 4 s after it.
    clock.advance(3_000);
    let outcome = store.acquire("hg1", "a", S.ttl_ms);
    clock.advance(1_000);
    a.handle_outcome(attempt, outcome, clock.mono_ms());
    assert_eq!(a.deadline_ms(), Some(1_000_000 + 10_000 - 1_000));
    assert_eq!(store.lease("hg1").unwrap().expires_ms, 1_013_000);
    // An answer that arrives past its own deadline is of no use.
    let mut b = Leadership::new("hg2", "b", S, clock.mono_ms());
    let attempt = b.poll_attempt(clock.mono_ms()).unwrap();
    let outcome = store.acquire("hg2", "b", S.ttl_ms);
    clock.advance(9_500);
    b.handle_outcome(attempt, outcome, clock.mono_ms());
    assert_eq!(
        b.check(clock.mono_ms()),
        Err(Refusal::NotLeader { leader: None })
    );
    assert_eq!(b.poll_event(), None, "never gained, so nothing lost");
}

#[test]
fn a_database_outage_ends_leadership_at_the_deadline_and_a_lapsed_lease_gets_a_new_token() {
    let (clock, store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    a.drive(&clock);
    store.set_down(true);
    let mut allowed_until = 0;
    for _ in 0..12 {
        clock.advance(1_000);
        a.drive(&clock);
        if a.l.check(clock.mono_ms()).is_ok() {
            allowed_until = clock.mono_ms();
        }
    }
    assert_eq!(
        allowed_until, 1_008_000,
        "acts until just before the deadline"
    );
    assert_eq!(a.l.last_error(), Some("lease store unreachable (injected)"));
    assert!(matches!(
        a.events.last(),
        Some(LeaseEvent::Lost {
            token: 1,
            why: LossReason::DeadlinePassed { failed_attempts: 4 }
        })
    ));
    // Back: nobody took it, but it lapsed: a new lease, a new token.
    store.set_down(false);
    clock.advance(2_000);
    a.drive(&clock);
    assert_eq!(a.l.check(clock.mono_ms()), Ok(2));
    assert!(matches!(
        a.events.last(),
        Some(LeaseEvent::Gained { token: 2, .. })
    ));
}

#[test]
fn a_release_hands_over_at_once_and_tokens_are_never_reused() {
    let (clock, mut store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    let mut b = Candidate::new("b", &store, &clock);
    a.drive(&clock);
    b.drive(&clock);
    a.l.step_down();
    assert!(store.release("hg1", "a").unwrap());
    assert!(!store.release("hg1", "a").unwrap(), "released once");
    clock.advance(2_000);
    b.drive(&clock);
    assert_eq!(b.l.check(clock.mono_ms()), Ok(2));
    // a comes back as a candidate: b holds it.
    a.drive(&clock);
    assert!(a.l.check(clock.mono_ms()).is_err());
    // b releases; a takes it again, with a token larger than any before.
    b.l.step_down();
    store.release("hg1", "b").unwrap();
    clock.advance(2_000);
    a.drive(&clock);
    assert_eq!(a.l.check(clock.mono_ms()), Ok(3));
}

/// A small xorshift for the randomised schedule (fixed seed: the run is exact).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn under_random_pauses_and_slow_answers_no_two_candidates_may_act_at_once() {
    let (clock, store) = setup();
    let names = ["a", "b", "c"];
    let mut ls: Vec<Leadership> = names
        .iter()
        .map(|n| Leadership::new("hg1", n, S, clock.mono_ms()))
        .collect();
    let mut store = store;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut paused_until = [0u64; 3];
    let mut max_token = 0;
    let mut handovers = 0;
    let mut last_leader: Option<usize> = None;
    for _ in 0..200_000 {
        clock.advance(i64::try_from(1 + rng.below(300)).unwrap());
        let now = clock.mono_ms();
        let i = usize::try_from(rng.below(3)).unwrap();
        if rng.below(400) == 0 {
            // Stopped for up to 3 ttl.
            paused_until[i] = now + rng.below(3 * S.ttl_ms);
        }
        if now >= paused_until[i]
            && let Some(a) = ls[i].poll_attempt(now)
        {
            // The request reaches the database after a while, the answer comes back
            // after another: the clock moves between (other candidates do not).
            clock.advance(i64::try_from(rng.below(1_500)).unwrap());
            let o = store.acquire("hg1", names[i], S.ttl_ms);
            if let Ok(o) = &o {
                assert!(o.lease().token >= max_token, "tokens never go back");
                max_token = o.lease().token;
            }
            clock.advance(i64::try_from(rng.below(1_500)).unwrap());
            ls[i].handle_outcome(a, o, clock.mono_ms());
        }
        let now = clock.mono_ms();
        let allowed: Vec<usize> = (0..3).filter(|&j| ls[j].check(now).is_ok()).collect();
        assert!(allowed.len() <= 1, "two may act at {now}: {allowed:?}");
        if let Some(&j) = allowed.first() {
            // Whoever may act holds the newest token.
            assert_eq!(ls[j].check(now), Ok(max_token));
            if last_leader != Some(j) {
                handovers += 1;
                last_leader = Some(j);
            }
        }
    }
    assert!(
        handovers > 20,
        "the schedule exercised takeovers: {handovers}"
    );
}

#[test]
fn settings_are_checked_against_their_ranges_and_each_other() {
    assert_eq!(LeaseSettings::default().check(), Ok(()));
    assert_eq!(LeaseSettings::default().takeover_bound_ms(20_000), 32_000);
    let bad = |s: LeaseSettings| s.check().unwrap_err();
    let e = bad(LeaseSettings { ttl_ms: 1_000, ..S });
    assert_eq!((e.key, e.value), ("lease.ttl_ms", 1_000));
    let e = bad(LeaseSettings {
        renew_every_ms: 4_000,
        ..S
    });
    assert_eq!(e.key, "lease.renew_every_ms");
    assert!(e.allowed.contains("100..=3333"), "{}", e.allowed);
    let e = bad(LeaseSettings {
        margin_ms: 3_000,
        ..S
    });
    assert_eq!(e.key, "lease.margin_ms");
    assert!(e.to_string().contains("lease.margin_ms = 3000"), "{e}");
}

#[test]
fn the_clock_of_the_store_is_the_only_one_that_judges_expiry() {
    // Two controllers whose wall clocks disagree by an hour agree on the lease: it is
    // stamped and judged on the store's clock only.
    let (clock, store) = setup();
    let mut a = Candidate::new("a", &store, &clock);
    a.drive(&clock);
    let lease = store.lease("hg1").unwrap();
    assert_eq!(lease.expires_ms, clock.now_ms() + 10_000);
}
