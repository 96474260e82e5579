//! The simulation's only source of randomness: SplitMix64, seeded.
//!
//! Small, fast, and the same sequence on every machine and build: a seed replays its run
//! exactly. Nothing in the simulation reads another source of randomness, and nothing
//! iterates a hash map (every collection that is iterated is ordered).

/// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro).
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// An independent generator for a component, derived from this one's seed and `salt`
    /// (each host, each VM draws from its own stream, so adding one does not shift the
    /// others).
    pub fn fork(&self, salt: u64) -> SimRng {
        let mut r = SimRng::new(self.state ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), without modulo bias worth measuring at the
    /// sizes used here (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        // The high half of a 128-bit product of two u64 fits a u64.
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        let offset = self.below(span);
        lo.saturating_add_unsigned(offset)
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a fraction in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// An exponentially distributed wait with mean `mean_ms` (a Poisson process's gap),
    /// at least 1 ms.
    pub fn exp_ms(&mut self, mean_ms: f64) -> i64 {
        #[allow(clippy::cast_precision_loss)]
        let u = ((self.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        let wait = -mean_ms * u.ln();
        #[allow(clippy::cast_possible_truncation)]
        let ms = wait.min(9.0e15) as i64;
        ms.max(1)
    }

    /// One element of `items`, `None` when empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let n = u64::try_from(items.len()).unwrap_or(u64::MAX);
        items.get(usize::try_from(self.below(n)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_same_seed_same_sequence_other_seed_other_sequence() {
        let a: Vec<u64> = (0..8)
            .scan(SimRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SimRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SimRng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn test_splitmix_reference_values() {
        // SplitMix64 from seed 0: the published first outputs.
        let mut r = SimRng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn test_ranges_stay_inside_and_cover_both_ends() {
        let mut r = SimRng::new(42);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.range_i64(-2, 2);
            assert!((-2..=2).contains(&v));
            seen[usize::try_from(v + 2).unwrap_or(0)] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.range_i64(5, 5), 5);
        assert_eq!(r.range_i64(5, 1), 5);
        assert_eq!(r.below(0), 0);
        let mean: i64 = (0..2000).map(|_| r.exp_ms(1000.0)).sum::<i64>() / 2000;
        assert!((800..1200).contains(&mean), "mean {mean}");
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }

    #[test]
    fn test_forks_are_independent_streams() {
        let root = SimRng::new(1);
        let mut a = root.fork(1);
        let mut b = root.fork(2);
        assert_ne!(a.next_u64(), b.next_u64());
        let mut a2 = root.fork(1);
        let mut a1 = SimRng::new(1).fork(1);
        assert_eq!(a1.next_u64(), a2.next_u64());
    }
}
