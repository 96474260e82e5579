//! The clock every time-based decision of the control plane reads (DESIGN.md §2: injectable
//! clock everywhere that decides on time).
//!
//! Times are integer milliseconds since the Unix epoch, as in the HSDB. The daemon uses
//! [`SystemClock`]; tests and the simulation use [`ManualClock`], which only moves when
//! told to, so a simulated hour takes microseconds and any run replays exactly.
//!
//! Deadlines that must hold while the process is stopped or the machine sleeps (the
//! leader lease's local deadline, [`crate::lease`]) are measured on a [`Monotonic`]
//! clock instead: [`BootClock`] (Linux `CLOCK_BOOTTIME`: it never jumps with the wall
//! clock, keeps running while the process is stopped by `SIGSTOP`, and — unlike
//! `CLOCK_MONOTONIC` — also while the machine is suspended). [`ManualClock`] is one too.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now", in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970: report the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that moves only when told to; cheap to clone (clones share the time).
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// Move forward by `ms` (negative values are ignored: time never goes back).
    pub fn advance(&self, ms: i64) {
        if ms > 0 {
            self.now.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Move to `at_ms` if it is later than now.
    pub fn advance_to(&self, at_ms: i64) {
        self.now.fetch_max(at_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// A clock that never goes back and keeps running while the process is stopped: the
/// local deadlines of the leader lease are measured on it.
pub trait Monotonic: Send + Sync {
    /// Milliseconds since an arbitrary origin fixed for the life of the clock.
    fn mono_ms(&self) -> u64;
}

/// Linux `CLOCK_BOOTTIME` in milliseconds since the clock was made: monotonic, and
/// running through `SIGSTOP` and through a suspend of the machine (a controller whose
/// machine slept for a minute finds its lease's local deadline passed, as it should).
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    origin_ms: u64,
}

impl BootClock {
    /// A clock whose origin is now.
    pub fn new() -> BootClock {
        BootClock {
            origin_ms: boottime_ms(),
        }
    }
}

impl Default for BootClock {
    fn default() -> BootClock {
        BootClock::new()
    }
}

fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let millis = u64::try_from(t.tv_nsec / 1_000_000).unwrap_or(0);
    secs.saturating_mul(1_000).saturating_add(millis)
}

impl Monotonic for BootClock {
    fn mono_ms(&self) -> u64 {
        boottime_ms().saturating_sub(self.origin_ms)
    }
}

impl Monotonic for ManualClock {
    /// The manual clock's reading (it never goes back); before the epoch reads 0.
    fn mono_ms(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_manual_clock_moves_only_forward_and_clones_share_it() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        clock.advance(500);
        assert_eq!(other.now_ms(), 1_500);
        clock.advance(-100);
        clock.advance_to(1_200);
        assert_eq!(clock.now_ms(), 1_500);
        other.advance_to(9_000);
        assert_eq!(clock.now_ms(), 9_000);
    }

    #[test]
    fn test_boot_clock_moves_forward_with_real_time() {
        let clock = BootClock::new();
        let a = clock.mono_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = clock.mono_ms();
        assert!(b >= a + 25, "{a} then {b}");
    }

    #[test]
    fn test_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
