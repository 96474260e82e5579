//! The transitions the HSDB writer holds until the HSDB has them: in order, bounded,
//! with later transitions of a VM and monitor superseding earlier ones where the store
//! would end in the same state without them.
//!
//! While the HSDB is reachable the backlog holds one `flush_ms` of transitions; while it
//! is not (PostgreSQL restarting, a network cut), it holds everything the dataplane
//! produced, so that monitoring never waits for the database. The rules below keep it
//! small when VMs flap, and a bound (`hsdb_backlog_limit`) keeps it from growing
//! without end; what overflow drops is counted by kind, never silently.
//!
//! Supersession rules (docs/operations.md, "When the HSDB is unavailable"), each one
//! exact: the store reaches the same rows, states, MACs, miss times, pending items and
//! events with or without the superseded transition (only `updated_ms`-style
//! timestamps may differ). A VM's *stream* is this monitor's Discovered, Detected,
//! Missing, Suspended, StopWatching, StartWatching and Forget of it, in order; a new
//! transition is compared with the latest held one of its stream:
//!
//! | held        | new         | result |
//! |-------------|-------------|--------|
//! | Missing     | Detected    | the Missing goes (the VM is heard again: no miss is left to record); the new one is then compared with the one before |
//! | Missing     | Discovered  | the Missing goes, likewise |
//! | Missing     | Missing     | the new one goes (the store keeps the first miss time) |
//! | Detected    | Detected    | the new one goes (nothing left to change) |
//! | Discovered  | Detected    | the new one goes |
//! | Suspended   | Suspended   | the new one goes |
//! | Discovered  | Discovered  | the held one takes the new one's MAC, OS type and versions, keeps its time and place; the new one goes |
//! | anything else |           | both stay |
//!
//! Outside the streams: a monitor heartbeat replaces the held one of the same monitor
//! (the store keeps only the latest); a doorbell is OR-ed into the held doorbell of the
//! same VM and monitor; `Event`, `HmEvent` and `HmInterface` are never superseded.
//!
//! Overflow: past `limit` held transitions, one is dropped per new one: the oldest
//! `Event` (a note, logged when it was made); else the oldest stream transition that a
//! later one of the same stream follows (history, not the VM's latest state); else the
//! oldest transition.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use hsdb::{Transition, Uuid};

/// The transition kinds, in the order of [`kind_index`]: the labels of the drop counts.
pub const KINDS: [&str; 12] = [
    "Discovered",
    "Detected",
    "Missing",
    "Suspended",
    "Doorbell",
    "HmHeartbeat",
    "HmEvent",
    "HmInterface",
    "StopWatching",
    "StartWatching",
    "Forget",
    "Event",
];

/// `t`'s place in [`KINDS`].
pub fn kind_index(t: &Transition) -> usize {
    match t {
        Transition::Discovered { .. } => 0,
        Transition::Detected { .. } => 1,
        Transition::Missing { .. } => 2,
        Transition::Suspended { .. } => 3,
        Transition::Doorbell { .. } => 4,
        Transition::HmHeartbeat { .. } => 5,
        Transition::HmEvent { .. } => 6,
        Transition::HmInterface { .. } => 7,
        Transition::StopWatching { .. } => 8,
        Transition::StartWatching { .. } => 9,
        Transition::Forget { .. } => 10,
        Transition::Event { .. } => 11,
    }
}

/// No position.
const NONE: u64 = u64::MAX;

/// Tombstones are swept out once they outnumber the live entries and at least this many.
const SWEEP_MIN: usize = 4096;

/// A (VM, monitor) pair: the key of a stream and of a doorbell.
type Pair = (Uuid, Uuid);

/// The (VM, monitor) stream `t` belongs to, if any.
fn stream_of(t: &Transition) -> Option<Pair> {
    match t {
        Transition::Discovered { vm, hm, .. }
        | Transition::Detected { vm, hm, .. }
        | Transition::Missing { vm, hm, .. }
        | Transition::Suspended { vm, hm, .. }
        | Transition::StopWatching { vm, hm, .. }
        | Transition::StartWatching { vm, hm, .. }
        | Transition::Forget { vm, hm, .. } => Some((*vm, *hm)),
        _ => None,
    }
}

/// What a new stream transition does to the latest held one of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The new one adds nothing: it goes.
    DropNew,
    /// The new one overwrites all the held one wrote: the held one goes.
    DropOld,
    /// The held one takes the new one's facts; the new one goes.
    MergeIntoOld,
    /// Both stay.
    Keep,
}

fn rule(held: &Transition, new: &Transition) -> Rule {
    use Transition::{Detected, Discovered, Missing, Suspended};
    match (held, new) {
        (Missing { .. }, Detected { .. } | Discovered { .. }) => Rule::DropOld,
        (Missing { .. }, Missing { .. })
        | (Detected { .. } | Discovered { .. }, Detected { .. })
        | (Suspended { .. }, Suspended { .. }) => Rule::DropNew,
        (Discovered { .. }, Discovered { .. }) => Rule::MergeIntoOld,
        _ => Rule::Keep,
    }
}

/// One place in the backlog: a transition, or a tombstone once it was superseded or
/// dropped.
#[derive(Debug)]
struct Slot {
    t: Option<Transition>,
    /// The previous held transition of its stream ([`NONE`]: none known).
    prev: u64,
    /// A later transition of its stream followed it (it is in `overtaken`).
    overtaken: bool,
}

/// What the backlog did to the transitions given to it, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BacklogCounts {
    /// Transitions superseded or merged by the rules (not an error: the store ends the
    /// same without them).
    pub superseded: u64,
    /// Transitions dropped because the backlog was full, by kind ([`KINDS`]).
    pub dropped: [u64; KINDS.len()],
}

impl BacklogCounts {
    /// Transitions dropped, every kind.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// The held transitions, oldest first. Positions (`seq`) only grow; `slots[0]` is at
/// position `base`.
#[derive(Debug)]
pub struct Backlog {
    slots: VecDeque<Slot>,
    base: u64,
    live: usize,
    dead: usize,
    limit: usize,
    /// The latest held transition of each stream.
    streams: HashMap<Pair, u64>,
    /// The held doorbell of each (VM, monitor).
    doorbells: HashMap<Pair, u64>,
    /// The held heartbeat of each monitor.
    heartbeats: HashMap<Uuid, u64>,
    /// Held `Event`s, oldest first (some may be gone: checked when used).
    events: VecDeque<u64>,
    /// Stream transitions a later one of their stream followed, oldest first (likewise).
    overtaken: BinaryHeap<Reverse<u64>>,
    counts: BacklogCounts,
}

impl Backlog {
    /// An empty backlog holding at most `limit` transitions (at least one).
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            slots: VecDeque::new(),
            base: 0,
            live: 0,
            dead: 0,
            limit: limit.max(1),
            streams: HashMap::new(),
            doorbells: HashMap::new(),
            heartbeats: HashMap::new(),
            events: VecDeque::new(),
            overtaken: BinaryHeap::new(),
            counts: BacklogCounts::default(),
        }
    }

    /// Transitions held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What was superseded and dropped so far.
    pub fn counts(&self) -> &BacklogCounts {
        &self.counts
    }

    /// The position the next transition will take: everything given before is at a
    /// lower one.
    pub fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    /// The position of the oldest transition held (= [`end`](Self::end) when empty):
    /// everything given at a lower position was taken, superseded or dropped.
    pub fn start(&self) -> u64 {
        self.base
    }

    /// Hold `t` after everything held, superseding what the rules allow; if that makes
    /// one too many, drop one (module documentation).
    pub fn push(&mut self, t: Transition) {
        match &t {
            Transition::HmHeartbeat { hm, at } => {
                let (hm, at) = (*hm, *at);
                if let Some(Transition::HmHeartbeat { at: held, .. }) = self
                    .heartbeats
                    .get(&hm)
                    .copied()
                    .and_then(|s| self.get_mut(s))
                {
                    *held = (*held).max(at);
                    self.counts.superseded += 1;
                    return;
                }
                let seq = self.append(t, NONE);
                self.heartbeats.insert(hm, seq);
            }
            Transition::Doorbell { vm, hm, vector, .. } => {
                let (pair, vector) = ((*vm, *hm), *vector);
                if let Some(Transition::Doorbell { vector: held, .. }) = self
                    .doorbells
                    .get(&pair)
                    .copied()
                    .and_then(|s| self.get_mut(s))
                {
                    *held |= vector;
                    self.counts.superseded += 1;
                    return;
                }
                let seq = self.append(t, NONE);
                self.doorbells.insert(pair, seq);
            }
            Transition::Event { .. } => {
                let seq = self.append(t, NONE);
                self.events.push_back(seq);
            }
            Transition::HmEvent { .. } | Transition::HmInterface { .. } => {
                self.append(t, NONE);
            }
            _ => match stream_of(&t) {
                Some(pair) => self.push_stream(pair, t),
                None => {
                    self.append(t, NONE);
                }
            },
        }
        while self.live > self.limit {
            self.drop_one();
        }
        if self.dead > self.live && self.dead >= SWEEP_MIN {
            self.sweep();
        }
    }

    /// Move up to `max` of the oldest transitions to the end of `into`, in order.
    pub fn take(&mut self, max: usize, into: &mut Vec<Transition>) {
        let mut taken = 0;
        while taken < max {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.base += 1;
            match slot.t {
                Some(t) => {
                    into.push(t);
                    self.live -= 1;
                    taken += 1;
                }
                None => self.dead -= 1,
            }
        }
        self.skip_dead_front();
        if self.live == 0 {
            // Nothing held: every index is stale. Cleared, capacity kept.
            self.base += self.slots.len() as u64;
            self.slots.clear();
            self.dead = 0;
            self.streams.clear();
            self.doorbells.clear();
            self.heartbeats.clear();
            self.events.clear();
            self.overtaken.clear();
            return;
        }
        while self.events.front().is_some_and(|&s| s < self.base) {
            self.events.pop_front();
        }
        while self.overtaken.peek().is_some_and(|r| r.0 < self.base) {
            self.overtaken.pop();
        }
    }

    /// The held transitions, oldest first.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Transition> {
        self.slots.iter().filter_map(|s| s.t.as_ref())
    }

    fn push_stream(&mut self, pair: Pair, mut t: Transition) {
        let mut prev = self.streams.get(&pair).copied().unwrap_or(NONE);
        if !self.is_live(prev) {
            prev = NONE;
        }
        while prev != NONE {
            let Some(held) = self.get_mut(prev) else {
                break;
            };
            match rule(held, &t) {
                Rule::Keep => break,
                Rule::DropNew => {
                    self.counts.superseded += 1;
                    self.streams.insert(pair, prev);
                    return;
                }
                Rule::MergeIntoOld => {
                    merge_discovered(held, &mut t);
                    self.counts.superseded += 1;
                    self.streams.insert(pair, prev);
                    return;
                }
                Rule::DropOld => {
                    let before = self.slot(prev).map_or(NONE, |s| s.prev);
                    self.kill(prev);
                    self.counts.superseded += 1;
                    prev = if self.is_live(before) { before } else { NONE };
                }
            }
        }
        let seq = self.append(t, prev);
        self.streams.insert(pair, seq);
        if let Some(slot) = self.slot_mut(prev)
            && !slot.overtaken
        {
            slot.overtaken = true;
            self.overtaken.push(Reverse(prev));
        }
    }

    /// One transition goes to make room (module documentation for which).
    fn drop_one(&mut self) {
        while let Some(seq) = self.events.pop_front() {
            if self.is_live(seq) {
                self.drop_at(seq);
                return;
            }
        }
        while let Some(Reverse(seq)) = self.overtaken.pop() {
            let latest = self
                .get(seq)
                .and_then(stream_of)
                .map(|pair| self.streams.get(&pair) == Some(&seq));
            match latest {
                // Gone already.
                None => {}
                // Nothing follows it any more (what did was dropped): it is the
                // stream's latest again, not history.
                Some(true) => {
                    if let Some(slot) = self.slot_mut(seq) {
                        slot.overtaken = false;
                    }
                }
                Some(false) => {
                    self.drop_at(seq);
                    return;
                }
            }
        }
        // The front is live (tombstones there are swept as they appear).
        if self.live > 0 {
            self.drop_at(self.base);
        }
    }

    /// Drop the transition at `seq` for room: counted, and the indexes that name it
    /// forget it.
    fn drop_at(&mut self, seq: u64) {
        let Some(slot) = self.slot(seq) else {
            return;
        };
        let prev = slot.prev;
        let Some(t) = slot.t.as_ref() else {
            return;
        };
        let kind = kind_index(t);
        let (heartbeat, doorbell, stream) = match t {
            Transition::HmHeartbeat { hm, .. } => (Some(*hm), None, None),
            Transition::Doorbell { vm, hm, .. } => (None, Some((*vm, *hm)), None),
            other => (None, None, stream_of(other)),
        };
        self.counts.dropped[kind] += 1;
        if let Some(hm) = heartbeat
            && self.heartbeats.get(&hm) == Some(&seq)
        {
            self.heartbeats.remove(&hm);
        }
        if let Some(pair) = doorbell
            && self.doorbells.get(&pair) == Some(&seq)
        {
            self.doorbells.remove(&pair);
        }
        if let Some(pair) = stream
            && self.streams.get(&pair) == Some(&seq)
        {
            if self.is_live(prev) {
                self.streams.insert(pair, prev);
            } else {
                self.streams.remove(&pair);
            }
        }
        self.kill(seq);
    }

    fn append(&mut self, t: Transition, prev: u64) -> u64 {
        let seq = self.end();
        self.slots.push_back(Slot {
            t: Some(t),
            prev,
            overtaken: false,
        });
        self.live += 1;
        seq
    }

    /// Turn the transition at `seq` into a tombstone (indexes are the caller's).
    fn kill(&mut self, seq: u64) {
        if let Some(slot) = self.slot_mut(seq)
            && slot.t.take().is_some()
        {
            self.live -= 1;
            self.dead += 1;
        }
        self.skip_dead_front();
    }

    fn skip_dead_front(&mut self) {
        while self.slots.front().is_some_and(|s| s.t.is_none()) {
            self.slots.pop_front();
            self.base += 1;
            self.dead -= 1;
        }
    }

    /// Renumber the live transitions without the tombstones between them, and every
    /// index with them.
    fn sweep(&mut self) {
        let mut moved = Vec::with_capacity(self.slots.len());
        let mut next = self.base;
        for slot in &self.slots {
            if slot.t.is_some() {
                moved.push(next);
                next += 1;
            } else {
                moved.push(NONE);
            }
        }
        let base = self.base;
        let map = |seq: u64| -> u64 {
            if seq == NONE || seq < base {
                return NONE;
            }
            usize::try_from(seq - base)
                .ok()
                .and_then(|i| moved.get(i).copied())
                .unwrap_or(NONE)
        };
        self.slots.retain(|s| s.t.is_some());
        for slot in &mut self.slots {
            slot.prev = map(slot.prev);
        }
        self.dead = 0;
        self.streams.retain(|_, seq| {
            *seq = map(*seq);
            *seq != NONE
        });
        self.doorbells.retain(|_, seq| {
            *seq = map(*seq);
            *seq != NONE
        });
        self.heartbeats.retain(|_, seq| {
            *seq = map(*seq);
            *seq != NONE
        });
        self.events = self
            .events
            .iter()
            .map(|&s| map(s))
            .filter(|&s| s != NONE)
            .collect();
        self.overtaken = self
            .overtaken
            .iter()
            .map(|r| map(r.0))
            .filter(|&s| s != NONE)
            .map(Reverse)
            .collect();
    }

    fn index(&self, seq: u64) -> Option<usize> {
        if seq == NONE || seq < self.base {
            return None;
        }
        usize::try_from(seq - self.base)
            .ok()
            .filter(|&i| i < self.slots.len())
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        self.index(seq).and_then(|i| self.slots.get(i))
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.index(seq).and_then(|i| self.slots.get_mut(i))
    }

    fn is_live(&self, seq: u64) -> bool {
        self.slot(seq).is_some_and(|s| s.t.is_some())
    }

    fn get(&self, seq: u64) -> Option<&Transition> {
        self.slot(seq).and_then(|s| s.t.as_ref())
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Transition> {
        self.slot_mut(seq).and_then(|s| s.t.as_mut())
    }
}

/// A held `Discovered` takes a newer one's facts (MAC, OS type, versions); it keeps
/// its own time. No allocation: the OS type is swapped.
fn merge_discovered(held: &mut Transition, new: &mut Transition) {
    if let (
        Transition::Discovered {
            mac,
            ostype,
            ver_lower,
            ver_upper,
            ..
        },
        Transition::Discovered {
            mac: new_mac,
            ostype: new_ostype,
            ver_lower: new_lower,
            ver_upper: new_upper,
            ..
        },
    ) = (held, new)
    {
        *mac = *new_mac;
        std::mem::swap(ostype, new_ostype);
        *ver_lower = *new_lower;
        *ver_upper = *new_upper;
    }
}

#[cfg(test)]
mod tests;
