//! Miss detection: which VMs heartbeat, which went silent.
//!
//! A heartbeat only stores a time in the VM's slot (no allocation, no queue operation).
//! Each watched VM has at most one entry in a deadline queue; when its deadline comes,
//! the slot is checked: if a heartbeat arrived meanwhile the entry is pushed to the new
//! deadline, otherwise the VM is MISSING. So the queue does one operation per VM per
//! `vm_miss_after`, whatever the heartbeat rate.
//!
//! The HSDB is written on transitions only (seed 004 L8136-8137: the VM_HB thread "does
//! the HSDB update in case there is a miss"): DETECTED on the first heartbeat and when
//! heartbeats resume, MISSING once, SUSPENDED on a graceful stop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use dataplane::endpoint::PeerId;
use dataplane::message::Uuid;
use dataplane::time::Instant;

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
    last: Instant,
    /// Deadline currently queued for this slot, if any.
    queued: Option<Instant>,
}

/// Heartbeat state of every watched VM, per interface and peer.
#[derive(Debug)]
pub struct HeartbeatTable {
    miss_after: Duration,
    slots: Vec<Vec<Option<Slot>>>,
    deadlines: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    watched: usize,
}

impl HeartbeatTable {
    /// A table for `interfaces` interfaces, declaring MISSING after `miss_after`.
    pub fn new(interfaces: usize, miss_after: Duration) -> HeartbeatTable {
        HeartbeatTable {
            miss_after,
            slots: vec![Vec::new(); interfaces],
            deadlines: BinaryHeap::new(),
            watched: 0,
        }
    }

    fn slot_mut(&mut self, key: SessionKey) -> Option<&mut Option<Slot>> {
        self.slots
            .get_mut(usize::from(key.iface))?
            .get_mut(key.peer.0 as usize)
    }

    /// Number of VMs watched.
    pub fn len(&self) -> usize {
        self.watched
    }

    /// Start watching `vm` on `key` (its session was established): AWAITING its first
    /// heartbeat, MISSING if none comes within `vm_miss_after`.
    pub fn watch(&mut self, key: SessionKey, vm: Uuid, now: Instant) {
        let Some(column) = self.slots.get_mut(usize::from(key.iface)) else {
            return;
        };
        let index = key.peer.0 as usize;
        if column.len() <= index {
            column.resize(index + 1, None);
        }
        if column[index].is_none() {
            self.watched += 1;
        }
        let deadline = now + self.miss_after;
        column[index] = Some(Slot {
            vm,
            state: HbState::Awaiting,
            last: now,
            queued: Some(deadline),
        });
        self.deadlines.push(Reverse((deadline, key)));
    }

    /// A heartbeat arrived. Returns the change to write when the VM was not DETECTED.
    /// The hot path: two array indexings and a store.
    #[inline]
    pub fn heartbeat(&mut self, key: SessionKey, now: Instant) -> Option<Change> {
        let miss_after = self.miss_after;
        let slot = self.slot_mut(key)?.as_mut()?;
        slot.last = now;
        if slot.state == HbState::Detected {
            return None;
        }
        slot.state = HbState::Detected;
        let change = Change {
            vm: slot.vm,
            key,
            state: HbState::Detected,
            at: now,
        };
        if slot.queued.is_none() {
            let deadline = now + miss_after;
            slot.queued = Some(deadline);
            self.deadlines.push(Reverse((deadline, key)));
        }
        Some(change)
    }

    /// The agent stopped gracefully (`SHDN:DAEMON`): SUSPENDED, never MISSING until it
    /// heartbeats again.
    pub fn suspend(&mut self, key: SessionKey, now: Instant) -> Option<Change> {
        let slot = self.slot_mut(key)?.as_mut()?;
        if slot.state == HbState::Suspended {
            return None;
        }
        slot.state = HbState::Suspended;
        Some(Change {
            vm: slot.vm,
            key,
            state: HbState::Suspended,
            at: now,
        })
    }

    /// When [`HeartbeatTable::expire`] must next run.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// Declare MISSING every watched VM silent for `vm_miss_after` at `now`.
    pub fn expire(&mut self, now: Instant, changes: &mut Vec<Change>) {
        let miss_after = self.miss_after;
        while let Some(&Reverse((deadline, key))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(Some(slot)) = self.slot_mut(key) else {
                continue;
            };
            if slot.queued != Some(deadline) {
                continue;
            }
            slot.queued = None;
            let due = slot.last + miss_after;
            match slot.state {
                HbState::Awaiting | HbState::Detected if due <= now => {
                    slot.state = HbState::Missing;
                    changes.push(Change {
                        vm: slot.vm,
                        key,
                        state: HbState::Missing,
                        at: now,
                    });
                }
                HbState::Awaiting | HbState::Detected => {
                    slot.queued = Some(due);
                    self.deadlines.push(Reverse((due, key)));
                }
                // Missing: re-armed by the next heartbeat. Suspended: nothing expected.
                HbState::Missing | HbState::Suspended => {}
            }
        }
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
        assert!(t.deadlines.len() <= keys.len(), "{}", t.deadlines.len());
        assert_eq!(t.len(), 1000);
        // All go silent at 9.9 s: all MISSING at 12.9 s, not before.
        assert!(expire(&mut t, 12_899).is_empty());
        assert_eq!(expire(&mut t, 12_900).len(), 1000);
    }
}
