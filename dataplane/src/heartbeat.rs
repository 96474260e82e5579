//! Miss detection: which VMs heartbeat, which went silent.
//!
//! A heartbeat only stores a time in the VM's slot (no allocation, no timer operation).
//! Each watched VM has at most one timer on a hashed timing wheel ([`TimerWheel`]);
//! when it fires, the slot is checked: if a heartbeat arrived meanwhile the timer is
//! moved to `last + vm_miss_after` (same timer, O(1)), otherwise the VM is MISSING. So
//! the wheel does one operation per VM per `vm_miss_after`, whatever the heartbeat rate.
//! Watching a VM again moves its timer; a graceful stop cancels it.
//!
//! The wheel has [`BUCKETS`] = 4096 buckets of [`TICK`] = 10 ms: one revolution is
//! 40.96 s, longer than the default `vm_miss_after` (20 s) and the fast profile's 3 s, so
//! usually a bucket holds only timers due in its 10 ms; the longest allowed
//! `vm_miss_after` (10 h) waits ~880 revolutions, each timer keeping its exact deadline
//! as its round count. The tick groups deadlines, it does not round them: MISSING is
//! declared by the first [`HeartbeatTable::expire`] at or after
//! `last heartbeat + vm_miss_after`, never before, never at a later call. Why 10 ms: the
//! daemon sleeps with millisecond resolution and the HSDB writer gathers 10 ms by
//! default, so finer buckets would buy nothing; when a bucket is only partly due the
//! daemon wakes at most ~10 times (once a millisecond) before all of it is, and each wake
//! reads one 10 ms bucket, not the whole table.
//!
//! The daemon sleeps until [`HeartbeatTable::next_deadline`]: a lower bound of the
//! earliest deadline kept by the wheel in O(1) (exact unless a cancelled or moved timer
//! leaves it early, costing one spurious wake-up; never late), so an idle monitor wakes
//! when a VM is due, not every tick.
//!
//! Memory: a slot of 32 bytes and a wheel node of 24 per watched VM, 56 bytes (5.6 MB for
//! 100,000 VMs; growing vectors may hold up to twice that), plus 48.5 KiB for the wheel.
//!
//! An interface without carrier hears nothing: while it is deaf
//! ([`HeartbeatTable::set_hearing`]) its VMs' misses are withheld, and each is owed a
//! full `vm_miss_after` once it hears again.
//!
//! The HSDB is written on transitions only (seed 004 L8136-8137: the VM_HB thread "does
//! the HSDB update in case there is a miss"): DETECTED on the first heartbeat and when
//! heartbeats resume, MISSING once, SUSPENDED on a graceful stop.

use std::time::Duration;

use crate::endpoint::PeerId;
use crate::message::Uuid;
use crate::time::Instant;

use crate::wheel::{TimerId, TimerWheel};

/// Width of a timer-wheel bucket.
pub const TICK: Duration = Duration::from_millis(10);
/// Buckets on the timer wheel (one revolution: `TICK × BUCKETS` = 40.96 s).
pub const BUCKETS: usize = 4096;

/// A VM's session: which interface, which peer in that interface's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Index of the interface in the configuration.
    pub iface: u16,
    /// The peer in that interface's endpoint.
    pub peer: PeerId,
}

/// Heartbeat state of one VM as seen by this monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbState {
    /// Discovered, no heartbeat yet.
    Awaiting,
    /// Heartbeats arrive.
    Detected,
    /// No heartbeat for `vm_miss_after`.
    Missing,
    /// The agent stopped gracefully; silence is expected.
    Suspended,
}

impl HbState {
    /// Upper-case name, as in the HSDB and the logs.
    pub fn name(self) -> &'static str {
        match self {
            HbState::Awaiting => "AWAITING",
            HbState::Detected => "DETECTED",
            HbState::Missing => "MISSING",
            HbState::Suspended => "SUSPENDED",
        }
    }
}

/// A state change to write to the HSDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The VM.
    pub vm: Uuid,
    /// Its session.
    pub key: SessionKey,
    /// Its new state.
    pub state: HbState,
    /// When.
    pub at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    vm: Uuid,
    state: HbState,
    /// Its miss came due while its interface was deaf and was withheld.
    withheld: bool,
    last: Instant,
    /// This slot's timer on the wheel, if any.
    timer: Option<TimerId>,
}

/// Heartbeat state of every watched VM, per interface and peer.
#[derive(Debug)]
pub struct HeartbeatTable {
    miss_after: Duration,
    slots: Vec<Vec<Option<Slot>>>,
    /// Per interface: no carrier, nothing can be heard there ([`HeartbeatTable::set_hearing`]).
    deaf: Vec<bool>,
    wheel: TimerWheel<SessionKey>,
    watched: usize,
    /// Misses withheld because their interface was deaf, since creation.
    withheld: u64,
}

impl HeartbeatTable {
    /// A table for `interfaces` interfaces, declaring MISSING after `miss_after`.
    pub fn new(interfaces: usize, miss_after: Duration) -> HeartbeatTable {
        HeartbeatTable {
            miss_after,
            slots: vec![Vec::new(); interfaces],
            deaf: vec![false; interfaces],
            wheel: TimerWheel::new(TICK, BUCKETS),
            watched: 0,
            withheld: 0,
        }
    }

    /// Number of VMs watched.
    pub fn len(&self) -> usize {
        self.watched
    }

    /// No VM is watched.
    pub fn is_empty(&self) -> bool {
        self.watched == 0
    }

    /// Start watching `vm` on `key` (its session was established): AWAITING its first
    /// heartbeat, MISSING if none comes within `vm_miss_after`. Watching again restarts
    /// the wait (the VM's timer moves, no second one).
    pub fn watch(&mut self, key: SessionKey, vm: Uuid, now: Instant) {
        let Some(column) = self.slots.get_mut(usize::from(key.iface)) else {
            return;
        };
        let index = key.peer.0 as usize;
        if column.len() <= index {
            column.resize(index + 1, None);
        }
        let slot = &mut column[index];
        let deadline = now + self.miss_after;
        let timer = match slot.and_then(|s| s.timer) {
            Some(id) if self.wheel.reschedule(id, deadline) => id,
            _ => self.wheel.insert(deadline, key),
        };
        if slot.is_none() {
            self.watched += 1;
            // Room for a timer per watched VM: a heartbeat re-arming one never allocates.
            self.wheel.reserve(self.watched);
        }
        *slot = Some(Slot {
            vm,
            state: HbState::Awaiting,
            withheld: false,
            last: now,
            timer: Some(timer),
        });
    }

    /// A heartbeat arrived. Returns the change to write when the VM was not DETECTED.
    /// The hot path: two array indexings and a store.
    #[inline]
    pub fn heartbeat(&mut self, key: SessionKey, now: Instant) -> Option<Change> {
        let miss_after = self.miss_after;
        let slot = self
            .slots
            .get_mut(usize::from(key.iface))?
            .get_mut(key.peer.0 as usize)?
            .as_mut()?;
        slot.last = now;
        if slot.state == HbState::Detected {
            return None;
        }
        slot.state = HbState::Detected;
        if slot.timer.is_none() {
            // After MISSING or SUSPENDED: one O(1) insert, into a free node.
            slot.timer = Some(self.wheel.insert(now + miss_after, key));
        }
        Some(Change {
            vm: slot.vm,
            key,
            state: HbState::Detected,
            at: now,
        })
    }

    /// The agent stopped gracefully (`SHDN:DAEMON`): SUSPENDED, never MISSING until it
    /// heartbeats again.
    pub fn suspend(&mut self, key: SessionKey, now: Instant) -> Option<Change> {
        let slot = self
            .slots
            .get_mut(usize::from(key.iface))?
            .get_mut(key.peer.0 as usize)?
            .as_mut()?;
        if slot.state == HbState::Suspended {
            return None;
        }
        slot.state = HbState::Suspended;
        if let Some(id) = slot.timer.take() {
            self.wheel.cancel(id);
        }
        Some(Change {
            vm: slot.vm,
            key,
            state: HbState::Suspended,
            at: now,
        })
    }

    /// Stop watching the VM of `key` (its monitoring was stopped, or it moved away):
    /// its timer is cancelled and its slot freed, so it is never declared MISSING and
    /// its heartbeats are ignored until [`HeartbeatTable::watch`] is called again.
    /// Returns the VM it held, `None` if nothing was watched there. O(1).
    pub fn unwatch(&mut self, key: SessionKey) -> Option<Uuid> {
        let slot = self
            .slots
            .get_mut(usize::from(key.iface))?
            .get_mut(key.peer.0 as usize)?
            .take()?;
        if let Some(id) = slot.timer {
            self.wheel.cancel(id);
        }
        self.watched -= 1;
        Some(slot.vm)
    }

    /// The VM watched on `key` and its state, if one is.
    pub fn get(&self, key: SessionKey) -> Option<(Uuid, HbState)> {
        let slot = self
            .slots
            .get(usize::from(key.iface))?
            .get(key.peer.0 as usize)?
            .as_ref()?;
        Some((slot.vm, slot.state))
    }

    /// When [`HeartbeatTable::expire`] must next run: at or before the earliest
    /// `last heartbeat + vm_miss_after` of a VM not yet MISSING or SUSPENDED (never
    /// after it), `None` if there is none. O(1).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.next_deadline()
    }

    /// Interface `iface` lost (`hearing == false`) or regained its carrier.
    ///
    /// While an interface is deaf, the misses of its VMs are **withheld**: a silence
    /// that nothing could have heard proves nothing about the VMs (docs/architecture.md,
    /// "Link loss: misses withheld, not marked"). When it hears again at `now`, every VM
    /// of it that was heard from or awaited is owed a full `miss_after` from `now`:
    /// MISSING at the first [`HeartbeatTable::expire`] at or after `now + miss_after`
    /// unless it heartbeats. Returns how many of its VMs had their miss withheld during
    /// the outage (0 when going deaf). O(VMs of the interface) when hearing again, O(1)
    /// otherwise.
    pub fn set_hearing(&mut self, iface: u16, hearing: bool, now: Instant) -> usize {
        let Some(deaf) = self.deaf.get_mut(usize::from(iface)) else {
            return 0;
        };
        *deaf = !hearing;
        if !hearing {
            return 0;
        }
        let mut withheld = 0;
        for slot in self.slots[usize::from(iface)].iter_mut().flatten() {
            if matches!(slot.state, HbState::Awaiting | HbState::Detected) {
                slot.last = slot.last.max(now);
            }
            if slot.withheld {
                slot.withheld = false;
                withheld += 1;
            }
        }
        withheld
    }

    /// Whether interface `iface` is hearing (not marked deaf).
    pub fn is_hearing(&self, iface: u16) -> bool {
        !self.deaf.get(usize::from(iface)).copied().unwrap_or(false)
    }

    /// Misses withheld because their interface was deaf, since creation (one per VM per
    /// `miss_after` of outage).
    pub fn withheld(&self) -> u64 {
        self.withheld
    }

    /// Declare MISSING every watched VM silent for `vm_miss_after` at `now`, except on a
    /// deaf interface, where the miss is withheld (the timer waits another `miss_after`).
    /// Touches only the VMs whose timer is due (and the wheel buckets holding them).
    pub fn expire(&mut self, now: Instant, changes: &mut Vec<Change>) {
        let miss_after = self.miss_after;
        let slots = &mut self.slots;
        let deaf = &self.deaf;
        let withheld = &mut self.withheld;
        self.wheel.expire(now, |key, _| {
            let slot = slots
                .get_mut(usize::from(key.iface))?
                .get_mut(key.peer.0 as usize)?
                .as_mut()?;
            let due = slot.last + miss_after;
            match slot.state {
                // A heartbeat came since the timer was set: wait for the new deadline.
                HbState::Awaiting | HbState::Detected if due > now => Some(due),
                // Nothing could be heard: no verdict; look again in `miss_after`.
                HbState::Awaiting | HbState::Detected
                    if deaf.get(usize::from(key.iface)).copied().unwrap_or(false) =>
                {
                    slot.withheld = true;
                    *withheld += 1;
                    Some(now + miss_after)
                }
                HbState::Awaiting | HbState::Detected => {
                    slot.state = HbState::Missing;
                    slot.timer = None;
                    changes.push(Change {
                        vm: slot.vm,
                        key,
                        state: HbState::Missing,
                        at: now,
                    });
                    None
                }
                // Not reached (SUSPENDED cancels the timer, MISSING has none): the next
                // heartbeat arms a new one.
                HbState::Missing | HbState::Suspended => {
                    slot.timer = None;
                    None
                }
            }
        });
    }

    /// State of every watched VM.
    pub fn iter(&self) -> impl Iterator<Item = (SessionKey, Uuid, HbState, Instant)> + '_ {
        self.slots.iter().enumerate().flat_map(|(iface, column)| {
            column.iter().enumerate().filter_map(move |(peer, slot)| {
                let s = slot.as_ref()?;
                let key = SessionKey {
                    iface: u16::try_from(iface).ok()?,
                    peer: PeerId(u32::try_from(peer).ok()?),
                };
                Some((key, s.vm, s.state, s.last))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: SessionKey = SessionKey {
        iface: 0,
        peer: PeerId(3),
    };
    const VM: Uuid = Uuid([7; 16]);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn expire(t: &mut HeartbeatTable, ms: u64) -> Vec<HbState> {
        let mut out = Vec::new();
        t.expire(at(ms), &mut out);
        out.iter().map(|c| c.state).collect()
    }

    #[test]
    fn detected_missing_detected() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        t.watch(K, VM, at(0));
        assert_eq!(
            t.heartbeat(K, at(1_000)).map(|c| c.state),
            Some(HbState::Detected)
        );
        assert_eq!(
            t.heartbeat(K, at(11_000)),
            None,
            "no write while heartbeating"
        );
        assert!(expire(&mut t, 20_000).is_empty(), "last heartbeat 9 s ago");
        assert!(expire(&mut t, 30_999).is_empty());
        assert_eq!(
            expire(&mut t, 31_000),
            vec![HbState::Missing],
            "20 s after the last"
        );
        assert!(expire(&mut t, 60_000).is_empty(), "MISSING is written once");
        assert_eq!(
            t.heartbeat(K, at(61_000)).map(|c| c.state),
            Some(HbState::Detected)
        );
        assert_eq!(expire(&mut t, 81_000), vec![HbState::Missing]);
    }

    #[test]
    fn never_heartbeating_vm_goes_missing() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        t.watch(K, VM, at(0));
        assert_eq!(t.next_deadline(), Some(at(20_000)));
        assert_eq!(expire(&mut t, 20_000), vec![HbState::Missing]);
    }

    #[test]
    fn suspended_is_never_missing() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        t.watch(K, VM, at(0));
        t.heartbeat(K, at(1_000));
        assert_eq!(
            t.suspend(K, at(2_000)).map(|c| c.state),
            Some(HbState::Suspended)
        );
        assert!(expire(&mut t, 100_000).is_empty());
        assert_eq!(
            t.heartbeat(K, at(101_000)).map(|c| c.state),
            Some(HbState::Detected)
        );
    }

    #[test]
    fn one_queue_entry_per_vm_whatever_the_heartbeat_rate() {
        let mut t = HeartbeatTable::new(2, Duration::from_secs(3));
        let keys: Vec<SessionKey> = (0..1000)
            .map(|i| SessionKey {
                iface: (i % 2) as u16,
                peer: PeerId(i / 2),
            })
            .collect();
        for k in &keys {
            t.watch(*k, VM, at(0));
        }
        for ms in (0..10_000).step_by(100) {
            for k in &keys {
                t.heartbeat(*k, at(ms));
            }
            expire(&mut t, ms);
        }
        assert_eq!(t.wheel.len(), keys.len());
        // Watched at 0, due at 3, 6 and 9 s: four timer operations per VM in 10 s of
        // heartbeats every 100 ms.
        assert_eq!(t.wheel.links(), 4 * 1000);
        assert_eq!(t.len(), 1000);
        // All go silent at 9.9 s: all MISSING at 12.9 s, not before.
        assert!(expire(&mut t, 12_899).is_empty());
        assert_eq!(expire(&mut t, 12_900).len(), 1000);
        assert_eq!(t.wheel.len(), 0, "MISSING VMs have no timer");
    }

    fn key(i: u32) -> SessionKey {
        SessionKey {
            iface: u16::try_from(i % 2).unwrap_or(0),
            peer: PeerId(i / 2),
        }
    }

    #[test]
    fn ten_thousand_vms_due_together_are_reported_in_one_call() {
        let mut t = HeartbeatTable::new(2, Duration::from_secs(20));
        for i in 0..10_000 {
            t.watch(key(i), VM, at(1_000));
            t.heartbeat(key(i), at(5_000));
        }
        assert_eq!(t.next_deadline(), Some(at(21_000)), "the watch deadline");
        assert!(expire(&mut t, 21_000).is_empty(), "heartbeats since");
        assert_eq!(t.next_deadline(), Some(at(25_000)));
        assert!(expire(&mut t, 24_999).is_empty());
        let mut changes = Vec::new();
        t.expire(at(25_000), &mut changes);
        assert_eq!(changes.len(), 10_000);
        assert!(
            changes
                .iter()
                .all(|c| c.state == HbState::Missing && c.at == at(25_000))
        );
        let mut keys: Vec<SessionKey> = changes.iter().map(|c| c.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 10_000, "each VM once");
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn heartbeat_just_before_the_deadline_postpones_it() {
        let miss = Duration::from_secs(20);
        let mut t = HeartbeatTable::new(1, miss);
        t.watch(K, VM, at(0));
        t.heartbeat(K, at(1_000));
        assert!(expire(&mut t, 20_000).is_empty(), "re-armed for 21 s");
        assert_eq!(t.next_deadline(), Some(at(21_000)));
        let just_before = Instant::from_nanos(at(21_000).as_nanos() - 1);
        assert_eq!(t.heartbeat(K, just_before), None);
        assert!(expire(&mut t, 21_000).is_empty(), "postponed");
        let deadline = just_before + miss;
        assert_eq!(t.next_deadline(), Some(deadline));
        let mut changes = Vec::new();
        t.expire(Instant::from_nanos(deadline.as_nanos() - 1), &mut changes);
        assert!(changes.is_empty(), "one nanosecond early");
        t.expire(deadline, &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].at, deadline);
    }

    #[test]
    fn missing_is_declared_at_the_first_check_after_the_deadline_whatever_the_tick_phase() {
        // Deadlines at every phase of the 10 ms tick; checks every 0.7 ms.
        let miss = Duration::from_millis(3_000);
        let mut t = HeartbeatTable::new(1, miss);
        let watched_at = |i: u32| Instant::from_nanos(u64::from(i) * 1_234_567);
        for i in 0..200 {
            t.watch(key(2 * i), VM, watched_at(i));
        }
        let mut reported = 0;
        let mut now = Instant::ZERO;
        let step = Duration::from_micros(700);
        while reported < 200 {
            let mut changes = Vec::new();
            t.expire(now, &mut changes);
            for c in &changes {
                let due = watched_at(c.key.peer.0) + miss;
                assert!(due <= now, "{:?} early", c.key);
                assert!(now < due + step, "{:?} late", c.key);
            }
            reported += changes.len();
            now += step;
        }
    }

    #[test]
    fn daemon_sleeping_until_next_deadline_wakes_per_deadline_not_per_tick() {
        // The longest allowed vm_miss_after: 10 h, far beyond one revolution.
        let miss = Duration::from_secs(36_000);
        let mut t = HeartbeatTable::new(1, miss);
        for i in 0..1_000 {
            t.watch(key(2 * i), VM, at(u64::from(i) * 7));
        }
        let mut now = Instant::ZERO;
        let mut wakes = 0;
        let mut missing = 0;
        while let Some(deadline) = t.next_deadline() {
            assert!(deadline > now, "no busy loop");
            now = deadline;
            wakes += 1;
            let mut changes = Vec::new();
            t.expire(now, &mut changes);
            for c in &changes {
                assert_eq!(
                    c.at,
                    at(u64::from(c.key.peer.0) * 7) + miss,
                    "exactly on time"
                );
            }
            missing += changes.len();
        }
        assert_eq!(missing, 1_000);
        assert_eq!(wakes, 1_000, "one wake per distinct deadline");
    }

    #[test]
    fn suspend_cancels_the_timer_and_a_heartbeat_rearms_it() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        t.watch(K, VM, at(0));
        t.heartbeat(K, at(1_000));
        assert_eq!(
            t.suspend(K, at(2_000)).map(|c| c.state),
            Some(HbState::Suspended)
        );
        assert_eq!(t.suspend(K, at(2_500)), None, "written once");
        assert_eq!(t.wheel.len(), 0);
        assert_eq!(t.next_deadline(), None, "nothing to wake for");
        assert_eq!(
            t.heartbeat(K, at(50_000)).map(|c| c.state),
            Some(HbState::Detected)
        );
        assert_eq!(t.next_deadline(), Some(at(70_000)));
        assert!(expire(&mut t, 69_999).is_empty());
        assert_eq!(expire(&mut t, 70_000), vec![HbState::Missing]);
        // Suspended while MISSING: silent, then back.
        assert_eq!(
            t.suspend(K, at(80_000)).map(|c| c.state),
            Some(HbState::Suspended)
        );
        assert!(expire(&mut t, 200_000).is_empty());
    }

    #[test]
    fn watching_again_restarts_the_wait_with_one_timer() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        t.watch(K, VM, at(0));
        t.heartbeat(K, at(1_000));
        // The session is re-established (agent restarted) at 15 s.
        let vm2 = Uuid([8; 16]);
        t.watch(K, vm2, at(15_000));
        assert_eq!(t.len(), 1);
        assert_eq!(t.wheel.len(), 1);
        assert_eq!(t.next_deadline(), Some(at(35_000)));
        assert!(expire(&mut t, 34_999).is_empty());
        let mut changes = Vec::new();
        t.expire(at(35_000), &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].vm, changes[0].state), (vm2, HbState::Missing));
        // Re-watched while MISSING (no timer): armed again.
        t.watch(K, vm2, at(40_000));
        assert_eq!(
            t.iter().map(|e| e.2).collect::<Vec<_>>(),
            vec![HbState::Awaiting]
        );
        assert_eq!(expire(&mut t, 60_000), vec![HbState::Missing]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_unwatched_vm_is_never_missing_and_its_heartbeats_are_ignored() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(2));
        let other = SessionKey {
            iface: 0,
            peer: PeerId(1),
        };
        t.watch(K, VM, at(0));
        t.watch(other, Uuid([8; 16]), at(0));
        assert!(t.heartbeat(K, at(500)).is_some());
        assert_eq!(t.get(K), Some((VM, HbState::Detected)));
        assert_eq!(t.unwatch(K), Some(VM));
        assert_eq!(t.unwatch(K), None, "once");
        assert_eq!(t.get(K), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.wheel.len(), 1, "its timer is cancelled");
        assert_eq!(t.heartbeat(K, at(600)), None, "heartbeats ignored");
        // Only the other VM goes MISSING.
        let mut changes = Vec::new();
        t.expire(at(10_000), &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].key, other);
        // Watched again: the ordinary wait from then on.
        t.watch(K, VM, at(20_000));
        assert_eq!(t.get(K), Some((VM, HbState::Awaiting)));
        assert_eq!(t.len(), 2);
        assert!(expire(&mut t, 21_999).is_empty());
        assert_eq!(expire(&mut t, 22_000), vec![HbState::Missing]);
        // A MISSING or SUSPENDED VM (no timer) can be unwatched too.
        assert_eq!(t.unwatch(K), Some(VM));
        assert_eq!(t.unwatch(other), Some(Uuid([8; 16])));
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn unknown_sessions_are_ignored() {
        let mut t = HeartbeatTable::new(1, Duration::from_secs(20));
        let other = SessionKey {
            iface: 5,
            peer: PeerId(0),
        };
        t.watch(other, VM, at(0));
        assert_eq!(t.heartbeat(other, at(1)), None);
        assert_eq!(t.heartbeat(K, at(1)), None);
        assert_eq!(t.suspend(K, at(1)), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn misses_on_a_deaf_interface_are_withheld_until_a_full_miss_after_past_its_return() {
        let mut t = HeartbeatTable::new(2, Duration::from_millis(1000));
        let other = SessionKey {
            iface: 1,
            peer: PeerId(0),
        };
        t.watch(K, VM, at(0));
        t.watch(other, Uuid([8; 16]), at(0));
        assert!(t.heartbeat(K, at(100)).is_some());
        assert!(t.heartbeat(other, at(100)).is_some());
        // Interface 0 loses its carrier at 500 ms.
        assert_eq!(t.set_hearing(0, false, at(500)), 0);
        assert!(!t.is_hearing(0) && t.is_hearing(1));
        // At 1,100 ms both are due: interface 1's VM is MISSING, interface 0's is withheld,
        // and again at every later check while it stays deaf.
        let mut changes = Vec::new();
        for ms in [1_100, 2_100, 3_100, 4_100] {
            t.expire(at(ms), &mut changes);
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            (changes[0].key, changes[0].state),
            (other, HbState::Missing)
        );
        assert!(t.withheld() >= 3, "{}", t.withheld());
        // Carrier back at 4,500 ms: one VM's miss was withheld; it is owed until 5,500.
        assert_eq!(t.set_hearing(0, true, at(4_500)), 1);
        assert!(t.is_hearing(0));
        let mut changes = Vec::new();
        t.expire(at(5_499), &mut changes);
        assert!(changes.is_empty(), "{changes:?}");
        assert!(t.next_deadline().is_some_and(|d| d <= at(5_500)));
        t.expire(at(5_500), &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].key, changes[0].state), (K, HbState::Missing));
        assert_eq!(changes[0].at, at(5_500));
    }

    #[test]
    fn a_vm_heard_after_the_link_returns_is_never_missing() {
        let mut t = HeartbeatTable::new(1, Duration::from_millis(1000));
        t.watch(K, VM, at(0));
        assert!(t.heartbeat(K, at(100)).is_some());
        t.set_hearing(0, false, at(200));
        let mut changes = Vec::new();
        t.expire(at(3_000), &mut changes);
        assert_eq!(t.set_hearing(0, true, at(3_000)), 1);
        // Heartbeats resume within miss_after of the return.
        assert!(t.heartbeat(K, at(3_900)).is_none(), "still DETECTED");
        t.expire(at(4_000), &mut changes);
        t.expire(at(4_899), &mut changes);
        assert!(changes.is_empty(), "{changes:?}");
        // A second outage counts again; an unknown interface is ignored.
        t.set_hearing(0, false, at(5_000));
        t.expire(at(6_000), &mut changes);
        assert_eq!(t.set_hearing(0, true, at(6_000)), 1);
        assert_eq!(t.set_hearing(7, true, at(6_000)), 0);
        assert!(t.is_hearing(7));
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_heartbeat_never_allocates_and_memory_per_vm_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 32);
        let mut t = HeartbeatTable::new(2, Duration::from_secs(3));
        for i in 0..1_000 {
            t.watch(key(i), VM, at(0));
        }
        assert_eq!(expire(&mut t, 3_000).len(), 1_000);
        let capacity = t.wheel.capacity();
        assert!(capacity >= 1_000);
        // Every VM resumes: 1,000 timers re-armed into the freed nodes.
        for i in 0..1_000 {
            assert!(t.heartbeat(key(i), at(4_000)).is_some());
        }
        assert_eq!(t.wheel.len(), 1_000);
        assert_eq!(t.wheel.capacity(), capacity);
    }
}
