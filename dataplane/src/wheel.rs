//! A hashed timing wheel: O(1) insert, reschedule and cancel; expiry touches only the
//! buckets that are due.
//!
//! Time is cut into ticks of a fixed length; tick `t` maps to bucket `t mod buckets`
//! (a power of two). Each bucket is an intrusive doubly-linked list threaded through
//! one slab of nodes, so a timer costs one node (no allocation once the slab has grown
//! to the largest number of timers pending at once) and is unlinked in O(1) by its
//! [`TimerId`].
//!
//! Every node keeps its exact deadline in nanoseconds. A deadline more than one
//! revolution (`tick × buckets`) away shares its bucket with nearer ones; the exact
//! deadline serves as its round count: when the bucket comes round, a node whose
//! deadline is still ahead stays where it is. So the wheel is correct for any deadline
//! distance, and [`TimerWheel::expire`] fires a timer at the first call with
//! `now >= deadline`: never before, and never later than that call. The tick only
//! decides how deadlines are grouped, not when they fire.
//!
//! Two summaries keep idle time cheap:
//!
//! - a bitmap of the non-empty buckets, so walking from one due bucket to the next skips
//!   empty ones 64 at a time;
//! - per bucket, a lower bound of its deadlines: a bucket whose bound is after `now`
//!   (say, only timers due in a later revolution) is skipped without reading its list.
//!
//! From these the wheel keeps a lower bound of every pending deadline: lowered by each
//! insert, recomputed (a walk of the bitmap that stops at the first bucket holding a
//! timer due in its own tick) when [`TimerWheel::expire`] reaches it and when the
//! earliest timer is cancelled or moved out of a bucket it leaves empty.
//! [`TimerWheel::next_deadline`] returns it in O(1), and `expire` before it returns at
//! once. A cancelled timer whose bucket still holds others can leave the bound early
//! (one spurious wake-up), never late.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::time::Instant;

/// End of a bucket list or of the free list.
const NIL: u32 = u32::MAX;
/// Flag in `Node::prev` of a bucket's first node; the low bits are the bucket index.
const HEAD: u32 = 1 << 31;
/// `Node::prev` of a node in no bucket: free, or fired and being handed to the caller.
const DETACHED: u32 = u32::MAX;
/// Most buckets (so that `HEAD | bucket` never equals `DETACHED`).
const MAX_BUCKETS: usize = 1 << 30;
/// Most timers pending at once (node indices stay below `HEAD`).
const MAX_TIMERS: usize = (1 << 31) - 1;

/// A pending timer, as returned by [`TimerWheel::insert`].
///
/// Valid until the timer fires without being rescheduled, or is cancelled; after that
/// the wheel may give the same id to another timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(NonZeroU32);

impl TimerId {
    fn index(self) -> u32 {
        self.0.get() - 1
    }
}

#[derive(Debug, Clone, Copy)]
struct Node<K> {
    key: K,
    /// Deadline in nanoseconds.
    deadline: u64,
    /// Previous node in the bucket, `HEAD | bucket` for the first, `DETACHED` if none.
    prev: u32,
    /// Next node in the bucket (or in the free list, or in the fired list), `NIL` last.
    next: u32,
}

/// Timers keyed by `K`, on a hashed wheel of `buckets` buckets of `tick` each.
pub struct TimerWheel<K> {
    /// Tick length in nanoseconds.
    tick: u64,
    /// `buckets - 1`.
    mask: u64,
    /// First node of each bucket.
    heads: Box<[u32]>,
    /// Per bucket, at most its earliest deadline (ns); `u64::MAX` when empty.
    lower: Box<[u64]>,
    /// One bit per non-empty bucket.
    occupied: Box<[u64]>,
    nodes: Vec<Node<K>>,
    /// First free node.
    free: u32,
    /// Every tick before this one has been processed: each pending timer sits in the
    /// bucket of tick `max(deadline / tick, cursor when linked)`, never before this one.
    cursor: u64,
    /// At most the earliest pending deadline (ns); `u64::MAX` when nothing is pending.
    next: u64,
    len: usize,
    /// Timers linked into a bucket since creation (inserts and reschedules).
    #[cfg(test)]
    links: u64,
}

impl<K> fmt::Debug for TimerWheel<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("tick_ns", &self.tick)
            .field("buckets", &self.heads.len())
            .field("cursor", &self.cursor)
            .field("next", &self.next)
            .field("len", &self.len)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl<K: Copy> TimerWheel<K> {
    /// An empty wheel of `buckets` buckets of `tick` each: one revolution is
    /// `tick × buckets`; deadlines farther away are fine (they wait for their round).
    ///
    /// Fixed memory: 12.125 bytes per bucket. Per timer: one node (the key, 8 bytes of
    /// deadline, two 4-byte links).
    ///
    /// # Panics
    ///
    /// If `buckets` is not a power of two in `1..=2^30`, or `tick` is zero or longer
    /// than `u64::MAX` nanoseconds.
    pub fn new(tick: Duration, buckets: usize) -> TimerWheel<K> {
        assert!(
            buckets.is_power_of_two() && buckets <= MAX_BUCKETS,
            "buckets: a power of two up to 2^30, not {buckets}"
        );
        let tick = u64::try_from(tick.as_nanos()).unwrap_or(0);
        assert!(tick > 0, "tick: 1 ns to u64::MAX ns");
        TimerWheel {
            tick,
            mask: (buckets - 1) as u64,
            heads: vec![NIL; buckets].into_boxed_slice(),
            lower: vec![u64::MAX; buckets].into_boxed_slice(),
            occupied: vec![0; buckets.div_ceil(64)].into_boxed_slice(),
            nodes: Vec::new(),
            free: NIL,
            cursor: 0,
            next: u64::MAX,
            len: 0,
            #[cfg(test)]
            links: 0,
        }
    }

    /// Make room for `total` timers pending at once, so that inserts up to that number
    /// do not allocate.
    pub fn reserve(&mut self, total: usize) {
        self.nodes.reserve(total.saturating_sub(self.nodes.len()));
    }

    /// Start a timer firing at `deadline` (O(1)). A deadline not after the last `now`
    /// given to [`TimerWheel::expire`] fires at the next call.
    pub fn insert(&mut self, deadline: Instant, key: K) -> TimerId {
        let index = if self.free == NIL {
            assert!(self.nodes.len() < MAX_TIMERS, "more than 2^31 - 1 timers");
            let index = u32::try_from(self.nodes.len()).unwrap_or(NIL);
            self.nodes.push(Node {
                key,
                deadline: 0,
                prev: DETACHED,
                next: NIL,
            });
            index
        } else {
            let index = self.free;
            let node = &mut self.nodes[index as usize];
            self.free = node.next;
            node.key = key;
            index
        };
        self.link(index, deadline.as_nanos());
        TimerId(NonZeroU32::MIN.saturating_add(index))
    }

    /// Move a pending timer to `deadline` (O(1)), keeping its id. Returns false, and does
    /// nothing, if `id` is not pending.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant) -> bool {
        let index = id.index();
        let Some(&Node {
            prev,
            deadline: before,
            ..
        }) = self.nodes.get(index as usize)
        else {
            return false;
        };
        if prev == DETACHED {
            return false;
        }
        let emptied = self.unlink(index);
        self.forget(before, emptied);
        self.link(index, deadline.as_nanos());
        true
    }

    /// Stop a pending timer (O(1)); its key, or `None` if `id` is not pending.
    pub fn cancel(&mut self, id: TimerId) -> Option<K> {
        let index = id.index();
        let node = self.nodes.get(index as usize)?;
        if node.prev == DETACHED {
            return None;
        }
        let (key, before) = (node.key, node.deadline);
        let emptied = self.unlink(index);
        self.release(index);
        self.forget(before, emptied);
        Some(key)
    }

    /// When [`TimerWheel::expire`] must next run: at or before the earliest pending
    /// deadline (never after it), `None` if no timer is pending. O(1).
    ///
    /// After `expire(now)` it is later than `now`, unless a timer was since inserted
    /// with a deadline not after `now`.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.len > 0).then_some(Instant::from_nanos(self.next))
    }

    /// Fire every timer whose deadline is not after `now`: `fire(key, deadline)` returns
    /// the timer's next deadline, to keep it pending under the same id, or `None` to drop
    /// it. Order: bucket by bucket from the previous call's tick on, so in tick order when
    /// the call spans less than one revolution; in no particular order within a bucket.
    ///
    /// Only buckets of the ticks since the previous call are visited, non-empty ones
    /// only, and only those that may hold a due timer are read. Returns at once before
    /// [`TimerWheel::next_deadline`]. A returned deadline not after `now` fires at the
    /// next call, not in this one.
    pub fn expire(&mut self, now: Instant, mut fire: impl FnMut(K, Instant) -> Option<Instant>) {
        let now = now.as_nanos();
        if self.next > now {
            return;
        }
        let end = (now / self.tick).max(self.cursor);
        let span = self.bucket_count().min(
            usize::try_from(end - self.cursor)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let start = self.bucket(self.cursor);
        // Detach the due timers into a list first: `fire` may reschedule them into the
        // buckets being visited.
        let mut fired = (NIL, NIL);
        let mut from = 0;
        while let Some(distance) = self.next_occupied(start, from, span) {
            let b = (start + distance) & self.bucket_mask();
            if self.lower[b] <= now {
                self.collect(b, now, &mut fired);
            }
            from = distance + 1;
        }
        self.cursor = end;
        let mut index = fired.0;
        while index != NIL {
            let node = self.nodes[index as usize];
            match fire(node.key, Instant::from_nanos(node.deadline)) {
                Some(deadline) => self.link(index, deadline.as_nanos()),
                None => self.release(index),
            }
            index = node.next;
        }
        self.next = self.earliest();
    }

    fn bucket_count(&self) -> usize {
        self.heads.len()
    }

    fn bucket_mask(&self) -> usize {
        self.heads.len() - 1
    }

    /// The bucket of tick `tick`.
    fn bucket(&self, tick: u64) -> usize {
        // Below `buckets`, itself a `usize`: the conversion cannot fail.
        usize::try_from(tick & self.mask).unwrap_or(0)
    }

    /// Link a detached node into the bucket of `deadline` (or of the current tick if
    /// that is past).
    fn link(&mut self, index: u32, deadline: u64) {
        let b = self.bucket((deadline / self.tick).max(self.cursor));
        let head = self.heads[b];
        let node = &mut self.nodes[index as usize];
        node.deadline = deadline;
        // `b < 2^30`: no overlap with `DETACHED`.
        node.prev = HEAD | u32::try_from(b).unwrap_or(0);
        node.next = head;
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        self.heads[b] = index;
        self.occupied[b / 64] |= 1 << (b % 64);
        self.lower[b] = self.lower[b].min(deadline);
        self.next = self.next.min(deadline);
        self.len += 1;
        #[cfg(test)]
        {
            self.links += 1;
        }
    }

    /// Take a linked node out of its bucket; it is left detached. True if the bucket is
    /// now empty.
    fn unlink(&mut self, index: u32) -> bool {
        let Node { prev, next, .. } = self.nodes[index as usize];
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let mut emptied = false;
        if prev & HEAD == 0 {
            self.nodes[prev as usize].next = next;
        } else {
            let b = (prev & !HEAD) as usize;
            self.heads[b] = next;
            if next == NIL {
                self.occupied[b / 64] &= !(1 << (b % 64));
                self.lower[b] = u64::MAX;
                emptied = true;
            }
        }
        self.nodes[index as usize].prev = DETACHED;
        self.len -= 1;
        emptied
    }

    /// A timer due at `deadline` left its bucket: if it was the earliest and its bucket
    /// is now empty, look for the next one. (While the bucket holds other timers, its
    /// bound still counts the timer and the walk would find the same value.)
    fn forget(&mut self, deadline: u64, emptied: bool) {
        if emptied && deadline == self.next {
            self.next = self.earliest();
        }
    }

    /// Put a detached node on the free list.
    fn release(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        node.prev = DETACHED;
        node.next = self.free;
        self.free = index;
    }

    /// Detach the timers of bucket `b` due at `now` onto the `fired` list (head, tail),
    /// and tighten the bucket's lower bound to its remaining timers.
    fn collect(&mut self, b: usize, now: u64, fired: &mut (u32, u32)) {
        let mut lower = u64::MAX;
        let mut index = self.heads[b];
        while index != NIL {
            let node = self.nodes[index as usize];
            if node.deadline <= now {
                self.unlink(index);
                self.nodes[index as usize].next = NIL;
                if fired.1 == NIL {
                    fired.0 = index;
                } else {
                    self.nodes[fired.1 as usize].next = index;
                }
                fired.1 = index;
            } else {
                lower = lower.min(node.deadline);
            }
            index = node.next;
        }
        if self.heads[b] != NIL {
            self.lower[b] = lower;
        }
    }

    /// Distance from bucket `start` (going round) of the first non-empty bucket at a
    /// distance in `from..limit`.
    fn next_occupied(&self, start: usize, from: usize, limit: usize) -> Option<usize> {
        let n = self.bucket_count();
        let mut distance = from;
        while distance < limit {
            let b = (start + distance) & (n - 1);
            let bits = self.occupied[b / 64] >> (b % 64);
            if bits != 0 {
                let found = distance + bits.trailing_zeros() as usize;
                return (found < limit).then_some(found);
            }
            // To the end of this bitmap word, or of the wheel if that comes first.
            distance += (64 - b % 64).min(n - b);
        }
        None
    }

    /// A lower bound of every pending deadline: the least bucket bound, visiting the
    /// buckets from the cursor on and stopping once a bucket's tick starts after the best
    /// bound found (no timer there or beyond can be earlier).
    fn earliest(&self) -> u64 {
        let mut best = u64::MAX;
        if self.len == 0 {
            return best;
        }
        let start = self.bucket(self.cursor);
        let mut from = 0;
        while let Some(distance) = self.next_occupied(start, from, self.bucket_count()) {
            // A timer in this bucket or a later one is due in this bucket's tick (or a
            // later revolution) at the earliest; a deadline in a past tick sits at
            // distance 0.
            let tick_start = self
                .cursor
                .saturating_add(distance as u64)
                .saturating_mul(self.tick);
            if tick_start >= best {
                break;
            }
            best = best.min(self.lower[(start + distance) & self.bucket_mask()]);
            from = distance + 1;
        }
        best
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Timers the slab can hold without allocating.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// Timers linked into a bucket since creation (inserts and reschedules).
    #[cfg(test)]
    pub fn links(&self) -> u64 {
        self.links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ns(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    /// Expire at `now`, dropping every fired timer; the keys in firing order.
    fn fire(w: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, |k, deadline| {
            assert!(deadline <= now, "{k} fired at {now:?}, due {deadline:?}");
            out.push(k);
            None
        });
        out
    }

    /// A small deterministic generator (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn node_is_24_bytes_for_a_session_key() {
        assert_eq!(
            std::mem::size_of::<Node<crate::heartbeat::SessionKey>>(),
            24
        );
        assert_eq!(std::mem::size_of::<Option<TimerId>>(), 4);
    }

    #[test]
    fn fires_in_deadline_order_at_the_first_check_not_before() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 64);
        // Deadlines in ms, inserted out of order, some within one tick, one past a
        // revolution (640 ms).
        let deadlines = [35u64, 5, 12, 17, 640, 11, 900, 36, 1300, 0];
        for (k, d) in deadlines.iter().enumerate() {
            w.insert(ms(*d), u32::try_from(k).unwrap_or(0));
        }
        let mut order = Vec::new();
        for t in 0..=1400 {
            for k in fire(&mut w, ms(t)) {
                assert_eq!(deadlines[k as usize], t, "timer {k} fired at {t} ms");
                order.push(deadlines[k as usize]);
            }
        }
        let mut sorted = deadlines.to_vec();
        sorted.sort_unstable();
        assert_eq!(order, sorted);
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn one_call_reports_earlier_ticks_first() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 16);
        for (k, d) in [(0u32, 95u64), (1, 5), (2, 155), (3, 45), (4, 15)] {
            w.insert(ms(d), k);
        }
        // One revolution is 160 ms: every deadline is within the first.
        assert_eq!(fire(&mut w, ms(1_000)), vec![1, 4, 3, 0, 2]);
    }

    #[test]
    fn deadlines_beyond_one_revolution_wait_for_their_round() {
        // 8 buckets of 10 ms: a revolution is 80 ms.
        let mut w = TimerWheel::new(Duration::from_millis(10), 8);
        w.insert(ms(25), 0);
        w.insert(ms(25 + 80), 1);
        w.insert(ms(25 + 80 * 50) + Duration::from_nanos(1), 2);
        w.insert(ms(3), 3); // same bucket class as none of the others
        let mut fired = Vec::new();
        for t in 0..=4_100 {
            for k in fire(&mut w, ms(t)) {
                fired.push((k, t));
            }
        }
        assert_eq!(fired, vec![(3, 3), (0, 25), (1, 105), (2, 4_026)]);
    }

    #[test]
    fn far_deadline_does_not_wake_every_tick() {
        // The daemon's wheel: 4096 × 10 ms; 10 h is the longest vm_miss_after.
        let mut w = TimerWheel::new(Duration::from_millis(10), 4096);
        let far = ms(36_000_000);
        w.insert(far, 7);
        w.insert(far + Duration::from_nanos(5), 8);
        let mut now = ms(0);
        let mut wakes = 0;
        let mut fired = Vec::new();
        while let Some(t) = w.next_deadline() {
            assert!(t > now, "no busy loop");
            now = t;
            wakes += 1;
            fired.extend(fire(&mut w, now).into_iter().map(|k| (k, now)));
        }
        assert_eq!(fired, vec![(7, far), (8, far + Duration::from_nanos(5))]);
        assert_eq!(
            wakes, 2,
            "one wake per deadline, not one per tick or revolution"
        );
    }

    #[test]
    fn many_timers_in_one_bucket() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 4096);
        // 10,000 timers in the tick [100 ms, 110 ms), one per microsecond, plus 1,000
        // in the same bucket one revolution later.
        for k in 0..10_000u32 {
            w.insert(ms(100) + Duration::from_micros(u64::from(k)), k);
        }
        for k in 0..1_000u32 {
            w.insert(
                ms(100 + 40_960) + Duration::from_micros(u64::from(k)),
                10_000 + k,
            );
        }
        assert!(fire(&mut w, ns(99_999_999)).is_empty());
        assert_eq!(w.next_deadline(), Some(ms(100)));
        let first = fire(&mut w, ms(105));
        assert_eq!(first.len(), 5_001, "deadlines 100.000..=105.000 ms");
        assert!(first.iter().all(|&k| k <= 5_000));
        assert_eq!(w.next_deadline(), Some(ms(105) + Duration::from_micros(1)));
        assert_eq!(fire(&mut w, ms(200)).len(), 4_999);
        assert_eq!(w.len(), 1_000);
        assert!(fire(&mut w, ms(40_000)).is_empty());
        assert_eq!(w.next_deadline(), Some(ms(100 + 40_960)));
        assert_eq!(fire(&mut w, ms(50_000)).len(), 1_000);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_never_late_and_after_now_once_expired() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 8);
        assert_eq!(w.next_deadline(), None);
        let a = w.insert(ms(500), 1);
        assert_eq!(w.next_deadline(), Some(ms(500)));
        w.insert(ms(37), 2);
        assert_eq!(w.next_deadline(), Some(ms(37)));
        // Cancelling the earliest may leave the bound early, never late.
        assert_eq!(w.cancel(a), Some(1));
        assert!(w.next_deadline() <= Some(ms(37)));
        assert_eq!(w.cancel(a), None, "cancelled twice");
        assert!(fire(&mut w, ms(36)).is_empty());
        assert!(w.next_deadline().is_some_and(|t| t > ms(36) && t <= ms(37)));
        assert_eq!(fire(&mut w, ms(37)), vec![2]);
        assert_eq!(w.next_deadline(), None);
        // A deadline already past fires at the next call.
        w.insert(ms(10), 3);
        assert_eq!(w.next_deadline(), Some(ms(10)));
        assert_eq!(fire(&mut w, ms(37)), vec![3]);
    }

    #[test]
    fn reschedule_and_fire_keep_the_id() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 8);
        let id = w.insert(ms(50), 9);
        assert!(w.reschedule(id, ms(20)));
        assert_eq!(w.next_deadline(), Some(ms(20)));
        // Fired and re-armed 1 s later by the callback: same id, still pending.
        let mut seen = Vec::new();
        w.expire(ms(20), |k, d| {
            seen.push((k, d));
            Some(ms(1_020))
        });
        assert_eq!(seen, vec![(9, ms(20))]);
        assert_eq!(w.len(), 1);
        assert!(w.reschedule(id, ms(1_500)));
        assert!(fire(&mut w, ms(1_499)).is_empty());
        assert_eq!(fire(&mut w, ms(1_500)), vec![9]);
        assert!(!w.reschedule(id, ms(2_000)), "fired and dropped");
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn slab_reuses_nodes() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 64);
        w.reserve(100);
        let capacity = w.capacity();
        for round in 0..50u64 {
            for k in 0..100u32 {
                w.insert(ms(round * 1_000 + u64::from(k)), k);
            }
            assert_eq!(fire(&mut w, ms(round * 1_000 + 999)).len(), 100);
        }
        assert_eq!(
            w.capacity(),
            capacity,
            "no growth past the largest pending count"
        );
    }

    /// The wheel against a plain list of (id, key, deadline), under random inserts,
    /// cancels, reschedules, re-arming callbacks and time steps from 0 to hundreds of
    /// revolutions, on wheels of 1 to 64 buckets and ticks of 1 ns to 20 µs.
    #[test]
    fn matches_a_reference_model() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let buckets = 1usize << rng.below(7);
            let tick = 1 + rng.below(20_000);
            let revolution = tick * buckets as u64;
            let mut w = TimerWheel::new(Duration::from_nanos(tick), buckets);
            let mut model: Vec<(TimerId, u32, u64)> = Vec::new();
            let mut now = rng.below(10 * revolution);
            let mut next_key = 0u32;
            let pick = |rng: &mut Rng, n: usize| usize::try_from(rng.below(n as u64)).unwrap_or(0);
            for step in 0..3_000 {
                let ctx = format!("seed {seed} step {step} now {now}");
                match rng.below(10) {
                    0..=3 => {
                        let delay = match rng.below(4) {
                            0 => rng.below(tick),
                            1 => rng.below(revolution),
                            2 => rng.below(5 * revolution),
                            _ => rng.below(200 * revolution),
                        };
                        // Now and then a deadline already past.
                        let deadline = if rng.below(20) == 0 {
                            now.saturating_sub(delay)
                        } else {
                            now + delay
                        };
                        let id = w.insert(ns(deadline), next_key);
                        model.push((id, next_key, deadline));
                        next_key += 1;
                    }
                    4 if !model.is_empty() => {
                        let (id, key, _) = model.swap_remove(pick(&mut rng, model.len()));
                        assert_eq!(w.cancel(id), Some(key), "{ctx}");
                        assert_eq!(w.cancel(id), None, "{ctx}");
                    }
                    5 if !model.is_empty() => {
                        let i = pick(&mut rng, model.len());
                        let deadline = now + rng.below(3 * revolution);
                        assert!(w.reschedule(model[i].0, ns(deadline)), "{ctx}");
                        model[i].2 = deadline;
                    }
                    _ => {
                        now += match rng.below(4) {
                            0 => 0,
                            1 => rng.below(tick),
                            2 => rng.below(2 * revolution),
                            _ => rng.below(300 * revolution),
                        };
                        let (due, pending): (Vec<(TimerId, u32, u64)>, Vec<_>) =
                            model.iter().partition(|e| e.2 <= now);
                        let mut expected: Vec<(u32, u64)> =
                            due.iter().map(|e| (e.1, e.2)).collect();
                        expected.sort_unstable();
                        let cursor = w.cursor;
                        let within_a_revolution = now / tick - cursor < buckets as u64;
                        let rearm = rng.below(2) == 0;
                        let mut fired = Vec::new();
                        let mut next_model = pending;
                        w.expire(ns(now), |k, d| {
                            fired.push((k, d.as_nanos()));
                            if rearm && k % 3 == 0 {
                                let later = now + 1 + u64::from(k) % (2 * revolution);
                                // Re-armed under the same id.
                                if let Some(e) = due.iter().find(|e| e.1 == k) {
                                    next_model.push((e.0, k, later));
                                }
                                Some(ns(later))
                            } else {
                                None
                            }
                        });
                        if within_a_revolution {
                            // In tick order (a past deadline counts as the cursor's).
                            let ticks: Vec<u64> =
                                fired.iter().map(|f| (f.1 / tick).max(cursor)).collect();
                            assert!(ticks.is_sorted(), "{ctx}: {ticks:?}");
                        }
                        fired.sort_unstable();
                        assert_eq!(fired, expected, "{ctx}");
                        model = next_model;
                        if let Some(t) = w.next_deadline() {
                            assert!(t.as_nanos() > now, "{ctx}: next {t:?} not after now");
                        }
                    }
                }
                assert_eq!(w.len(), model.len(), "{ctx}");
                let earliest = model.iter().map(|e| e.2).min();
                assert_eq!(w.next_deadline().is_some(), earliest.is_some(), "{ctx}");
                if let (Some(next), Some(earliest)) = (w.next_deadline(), earliest) {
                    assert!(
                        next.as_nanos() <= earliest,
                        "{ctx}: next_deadline {next:?} after a pending deadline {earliest}"
                    );
                }
            }
        }
    }
}
