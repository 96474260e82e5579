//! `hsTag` values: random non-zero signed 64-bit numbers, like the seed's
//! (`-6630805255682309212`, `1735421413719889094`, seed 004 L11078-11082, L7534,
//! L12107), injectable for deterministic tests and simulations.
//!
//! Why random and not a counter (gap 2): a controller restarted with an empty memory, or a
//! second controller reading the same file, must never present a tag that some earlier
//! reply used — a stale acknowledgement carrying it would clear items it never reported.
//! Each NeedsAttention re-tags every item it reports, so a tag lives until the next
//! reply; two random 64-bit tags collide with probability 2⁻⁶⁴.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where new tags come from.
pub trait TagSource {
    /// A new tag, never 0.
    fn next_tag(&mut self) -> i64;
}

/// Tags from the operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomTags;

impl TagSource for RandomTags {
    fn next_tag(&mut self) -> i64 {
        random_tag()
    }
}

/// A random non-zero tag from the operating system's random source (`getrandom`); should
/// that fail, from a randomly keyed SipHash of a process-wide counter, still
/// unpredictable and distinct within the process.
pub fn random_tag() -> i64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    loop {
        let bits = getrandom::u64().unwrap_or_else(|_| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(FALLBACK.fetch_add(1, Ordering::Relaxed));
            h.finish()
        });
        let tag = i64::from_ne_bytes(bits.to_ne_bytes());
        if tag != 0 {
            return tag;
        }
    }
}

/// Deterministic tags for tests and simulations: a SplitMix64 sequence from a seed,
/// 0 skipped, so tags look like the seed's (both signs, all 64 bits) and a run with the
/// same seed gives the same tags.
#[derive(Debug, Clone)]
pub struct SequenceTags {
    state: u64,
}

impl SequenceTags {
    /// The sequence of `seed`.
    pub fn new(seed: u64) -> SequenceTags {
        SequenceTags { state: seed }
    }
}

impl TagSource for SequenceTags {
    fn next_tag(&mut self) -> i64 {
        loop {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let tag = i64::from_ne_bytes(z.to_ne_bytes());
            if tag != 0 {
                return tag;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tags_are_nonzero_and_differ() {
        let tags: Vec<i64> = (0..64).map(|_| random_tag()).collect();
        assert!(tags.iter().all(|&t| t != 0));
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), tags.len(), "64 random tags, no repeat");
        assert!(tags.iter().any(|&t| t < 0) && tags.iter().any(|&t| t > 0));
    }

    #[test]
    fn sequence_tags_repeat_per_seed() {
        let a: Vec<i64> = {
            let mut s = SequenceTags::new(7);
            (0..8).map(|_| s.next_tag()).collect()
        };
        let b: Vec<i64> = {
            let mut s = SequenceTags::new(7);
            (0..8).map(|_| s.next_tag()).collect()
        };
        let c: Vec<i64> = {
            let mut s = SequenceTags::new(8);
            (0..8).map(|_| s.next_tag()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&t| t != 0));
    }
}
