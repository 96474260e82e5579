//! Replay protection: per sender MAC and key, the highest counter verified and a
//! 64-counter sliding window behind it (RFC 4303 §3.4.3's anti-replay window).
//!
//! Only frames whose tag verified reach this table, so a sender without the key cannot
//! create entries however many source MACs it forges. The table is still bounded: when
//! it is full, the least recently verified eighth of the entries is forgotten.

use hashbrown::HashMap;

use crate::wire::MacAddr;

/// Counters accepted behind the highest one seen, for frames reordered on the way.
pub const REPLAY_WINDOW: u64 = 64;

/// The window of one sender MAC and key.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Highest counter verified.
    highest: u64,
    /// Bit `i` set: counter `highest - i` was seen (bit 0 is `highest` itself).
    seen: u64,
    /// Logical time of the last verified frame, for eviction.
    last_used: u64,
}

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Already seen inside the window.
    Duplicate,
    /// Older than the window.
    TooOld,
}

/// Windows of every sender MAC and key heard, bounded.
#[derive(Debug)]
pub(super) struct ReplayTable {
    windows: HashMap<u64, Window, foldhash::fast::RandomState>,
    max: usize,
    tick: u64,
    /// Entries forgotten because the table was full.
    pub(super) evicted: u64,
}

impl ReplayTable {
    /// An empty table holding at most `max` (at least 1) windows.
    pub(super) fn new(max: usize) -> ReplayTable {
        ReplayTable {
            windows: HashMap::with_hasher(Default::default()),
            max: max.max(1),
            tick: 0,
            evicted: 0,
        }
    }

    /// Make room for `additional` senders without reallocating.
    pub(super) fn reserve(&mut self, additional: usize) {
        let room = additional.min(self.max.saturating_sub(self.windows.len()));
        self.windows.reserve(room);
    }

    /// Windows held.
    pub(super) fn len(&self) -> usize {
        self.windows.len()
    }

    /// Accept `counter` from `mac` under `key_id` unless it was seen or is older than the
    /// window; call only once the frame's tag verified.
    pub(super) fn accept(&mut self, mac: MacAddr, key_id: u8, counter: u64) -> Result<(), Replay> {
        let id = mac.to_u64() | u64::from(key_id) << 48;
        self.tick += 1;
        let tick = self.tick;
        if let Some(w) = self.windows.get_mut(&id) {
            if counter > w.highest {
                let shift = counter - w.highest;
                w.seen = if shift >= REPLAY_WINDOW {
                    1
                } else {
                    (w.seen << shift) | 1
                };
                w.highest = counter;
            } else {
                let behind = w.highest - counter;
                if behind >= REPLAY_WINDOW {
                    return Err(Replay::TooOld);
                }
                let bit = 1u64 << behind;
                if w.seen & bit != 0 {
                    return Err(Replay::Duplicate);
                }
                w.seen |= bit;
            }
            w.last_used = tick;
            return Ok(());
        }
        if self.windows.len() >= self.max {
            self.evict();
        }
        self.windows.insert(
            id,
            Window {
                highest: counter,
                seen: 1,
                last_used: tick,
            },
        );
        Ok(())
    }

    /// Forget the least recently used eighth of the windows (at least one). Runs only
    /// when a new key holder appears while the table is full; amortised O(1) per insert.
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.windows.values().map(|w| w.last_used).collect();
        if ages.is_empty() {
            return;
        }
        let k = (ages.len() / 8).max(1) - 1;
        let (_, &mut limit, _) = ages.select_nth_unstable(k);
        let before = self.windows.len();
        self.windows.retain(|_, w| w.last_used > limit);
        self.evicted += (before - self.windows.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn window_accepts_each_counter_once() {
        let mut t = ReplayTable::new(16);
        assert_eq!(t.accept(A, 1, 1000), Ok(()));
        assert_eq!(t.accept(A, 1, 1000), Err(Replay::Duplicate));
        // Reordered but inside the window: once each.
        assert_eq!(t.accept(A, 1, 1003), Ok(()));
        assert_eq!(t.accept(A, 1, 1001), Ok(()));
        assert_eq!(t.accept(A, 1, 1001), Err(Replay::Duplicate));
        assert_eq!(t.accept(A, 1, 1002), Ok(()));
        assert_eq!(t.accept(A, 1, 1003), Err(Replay::Duplicate));
        // The window's edge: 63 behind is inside, 64 is too old.
        assert_eq!(t.accept(A, 1, 1003 + 63), Ok(()));
        assert_eq!(t.accept(A, 1, 1003), Err(Replay::Duplicate));
        assert_eq!(t.accept(A, 1, 1002), Err(Replay::TooOld));
        // A jump past the window forgets the bits.
        assert_eq!(t.accept(A, 1, 5000), Ok(()));
        assert_eq!(t.accept(A, 1, 5000 - 63), Ok(()));
        assert_eq!(t.accept(A, 1, 5000 - 64), Err(Replay::TooOld));
        // Another key or another sender has its own window.
        assert_eq!(t.accept(A, 2, 1000), Ok(()));
        assert_eq!(t.accept(B, 1, 1000), Ok(()));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn full_table_forgets_the_least_recently_used() {
        let mut t = ReplayTable::new(16);
        for i in 0..16u8 {
            assert_eq!(t.accept(MacAddr([2, 0, 0, 0, 1, i]), 1, 10), Ok(()));
        }
        // Sender 0 stays busy: it must survive the eviction.
        assert_eq!(t.accept(MacAddr([2, 0, 0, 0, 1, 0]), 1, 11), Ok(()));
        assert_eq!(t.accept(A, 1, 10), Ok(()));
        assert_eq!(t.len(), 16 - 2 + 1, "an eighth (2) forgotten, A added");
        assert_eq!(t.evicted, 2);
        assert_eq!(
            t.accept(MacAddr([2, 0, 0, 0, 1, 0]), 1, 11),
            Err(Replay::Duplicate),
            "the busy sender kept its window"
        );
        // Senders 1 and 2 were the oldest: forgotten, so their counter is new again.
        assert_eq!(t.accept(MacAddr([2, 0, 0, 0, 1, 1]), 1, 10), Ok(()));
        assert!(t.len() <= 16);
    }
}
