//! The monitor's timing wheel (`dataplane::wheel::TimerWheel`), checked against a model.
//!
//! The model is a `BTreeMap` from a timer's key to its id and exact deadline. The input
//! is structured (`arbitrary`): the wheel's tick (1 ns to 64 µs) and bucket count (1 to
//! 1024, so that deadlines many revolutions away are common), then [`Op`]s: start a
//! timer (in the future, in the past, or at any absolute deadline up to "never"), move
//! one, cancel one, use an id that is no longer pending, and expire after some time or
//! exactly at the wheel's own `next_deadline`, re-arming some of the timers that fire.
//!
//! Invariants:
//!
//! - `expire(now)` fires every timer whose deadline is not after `now`, each exactly
//!   once, with its exact deadline, and nothing else: nothing fires before its deadline,
//!   everything fires at the first check at or after it. A timer re-armed by the
//!   callback keeps its id and never fires again in the same call, even when its new
//!   deadline is not after `now` (it fires at the next call);
//! - `next_deadline()` is `None` exactly when no timer is pending, and otherwise never
//!   later than the earliest pending deadline; right after `expire(now)`, when every
//!   pending deadline is after `now`, it is after `now` too (no busy loop);
//! - `reschedule` and `cancel` succeed exactly on pending timers; `len()` is the number
//!   of pending timers.

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use dataplane::time::Instant;
use dataplane::wheel::{TimerId, TimerWheel};
use libfuzzer_sys::fuzz_target;

/// Ids of fired or cancelled timers kept for [`Op::Stale`].
const STALE_KEPT: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Tick length minus one, in nanoseconds.
    tick: u16,
    /// Base-two logarithm of the bucket count, modulo 11.
    buckets_log2: u8,
    ops: Vec<Op>,
}

// Variant order is the seed format: benches/src/bin/hvncp-corpus.rs mirrors it.
#[derive(Arbitrary, Debug)]
enum Op {
    /// A timer `delay` ns after (or, if `past`, before) the last `now`.
    Insert { delay: u32, past: bool },
    /// A timer at an absolute deadline (`u64::MAX`: never, in practice).
    InsertAt { deadline: u64 },
    /// Move pending timer number `which` to `delay` ns after the last `now`.
    Reschedule { which: u16, delay: u32 },
    /// Cancel pending timer number `which`.
    Cancel { which: u16 },
    /// Cancel (or move) an id that fired or was cancelled, unless it was given again.
    Stale {
        which: u16,
        cancel: bool,
        delay: u32,
    },
    /// Let `advance` ns pass and expire; a fired timer whose key's bit is set in `rearm`
    /// is re-armed `delay` ns after `now`.
    Expire { advance: u32, rearm: u8, delay: u32 },
    /// Expire exactly at `next_deadline()` (or at the last `now` when nothing is pending).
    ExpireAtNext { rearm: u8, delay: u32 },
}

struct Model {
    wheel: TimerWheel<u32>,
    /// Pending timers: key -> (id, deadline in ns).
    pending: BTreeMap<u32, (TimerId, u64)>,
    stale: Vec<TimerId>,
    next_key: u32,
    /// The last `now` given to `expire`.
    now: u64,
}

impl Model {
    fn nth(&self, which: u16) -> Option<(u32, TimerId)> {
        if self.pending.is_empty() {
            return None;
        }
        let n = usize::from(which) % self.pending.len();
        self.pending.iter().nth(n).map(|(&k, &(id, _))| (k, id))
    }

    fn retire(&mut self, id: TimerId) {
        if self.stale.len() == STALE_KEPT {
            self.stale.remove(0);
        }
        self.stale.push(id);
    }

    fn insert(&mut self, deadline: u64) {
        let key = self.next_key;
        self.next_key += 1;
        let id = self.wheel.insert(Instant::from_nanos(deadline), key);
        assert!(
            self.pending.values().all(|&(other, _)| other != id),
            "id {id:?} given to two pending timers"
        );
        self.pending.insert(key, (id, deadline));
    }

    fn expire(&mut self, now: u64, rearm: u8, delay: u32) {
        assert!(now >= self.now);
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|&(_, &(_, deadline))| deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        let mut fired: BTreeMap<u32, Option<u64>> = BTreeMap::new();
        let pending = &self.pending;
        self.wheel
            .expire(Instant::from_nanos(now), |key, deadline| {
                let &(_, expected) = pending
                    .get(&key)
                    .unwrap_or_else(|| panic!("timer {key} fired but is not pending"));
                assert_eq!(deadline.as_nanos(), expected, "timer {key}: wrong deadline");
                assert!(
                    expected <= now,
                    "timer {key} fired at {now}, before its deadline {expected}"
                );
                let again = (rearm >> (key % 8)) & 1 == 1;
                let next = again.then(|| now.saturating_add(u64::from(delay)));
                assert!(
                    fired.insert(key, next).is_none(),
                    "timer {key} fired twice in one call"
                );
                next.map(Instant::from_nanos)
            });
        let fired_keys: Vec<u32> = fired.keys().copied().collect();
        assert_eq!(
            fired_keys, due,
            "at {now}: fired {fired_keys:?}, due {due:?}"
        );
        for (key, next) in fired {
            match next {
                Some(deadline) => {
                    if let Some(entry) = self.pending.get_mut(&key) {
                        entry.1 = deadline;
                    }
                }
                None => {
                    if let Some((id, _)) = self.pending.remove(&key) {
                        self.retire(id);
                    }
                }
            }
        }
        self.now = now;
        if self.pending.values().all(|&(_, deadline)| deadline > now) {
            assert!(
                self.wheel
                    .next_deadline()
                    .is_none_or(|t| t.as_nanos() > now),
                "after expire({now}) nothing is due, yet next_deadline is {:?}",
                self.wheel.next_deadline()
            );
        }
    }

    fn check(&self) {
        assert_eq!(self.wheel.len(), self.pending.len());
        assert_eq!(self.wheel.is_empty(), self.pending.is_empty());
        let earliest = self.pending.values().map(|&(_, d)| d).min();
        match (self.wheel.next_deadline(), earliest) {
            (None, None) => {}
            (Some(t), Some(e)) => assert!(
                t.as_nanos() <= e,
                "next_deadline {} later than the earliest deadline {e}",
                t.as_nanos()
            ),
            (t, e) => panic!("next_deadline {t:?} with earliest pending deadline {e:?}"),
        }
    }
}

fuzz_target!(|input: Input| {
    let tick = Duration::from_nanos(1 + u64::from(input.tick));
    let buckets = 1usize << (input.buckets_log2 % 11);
    let mut m = Model {
        wheel: TimerWheel::new(tick, buckets),
        pending: BTreeMap::new(),
        stale: Vec::new(),
        next_key: 0,
        now: 0,
    };
    for op in input.ops {
        match op {
            Op::Insert { delay, past } => {
                let deadline = if past {
                    m.now.saturating_sub(u64::from(delay))
                } else {
                    m.now.saturating_add(u64::from(delay))
                };
                m.insert(deadline);
            }
            Op::InsertAt { deadline } => m.insert(deadline),
            Op::Reschedule { which, delay } => {
                if let Some((key, id)) = m.nth(which) {
                    let deadline = m.now.saturating_add(u64::from(delay));
                    assert!(m.wheel.reschedule(id, Instant::from_nanos(deadline)));
                    m.pending.insert(key, (id, deadline));
                }
            }
            Op::Cancel { which } => {
                if let Some((key, id)) = m.nth(which) {
                    assert_eq!(m.wheel.cancel(id), Some(key));
                    m.pending.remove(&key);
                    m.retire(id);
                }
            }
            Op::Stale {
                which,
                cancel,
                delay,
            } => {
                if m.stale.is_empty() {
                    continue;
                }
                let id = m.stale[usize::from(which) % m.stale.len()];
                if m.pending.values().any(|&(live, _)| live == id) {
                    continue; // given again to a pending timer: not stale any more
                }
                if cancel {
                    assert_eq!(m.wheel.cancel(id), None, "a stale id cancelled a timer");
                } else {
                    let deadline = Instant::from_nanos(m.now.saturating_add(u64::from(delay)));
                    assert!(!m.wheel.reschedule(id, deadline), "a stale id was moved");
                }
            }
            Op::Expire {
                advance,
                rearm,
                delay,
            } => {
                let now = m.now.saturating_add(u64::from(advance));
                m.expire(now, rearm, delay);
            }
            Op::ExpireAtNext { rearm, delay } => {
                let now = m
                    .wheel
                    .next_deadline()
                    .map_or(m.now, |t| t.as_nanos().max(m.now));
                m.expire(now, rearm, delay);
            }
        }
        m.check();
    }
});
