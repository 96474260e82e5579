//! Reassembly of fragmented messages, checked against a model.
//!
//! `session::Reassembly::add` takes a `Fragment`, which `dataplane` does not export, so
//! the reassembly is driven the way it is used: through a [`Session`] whose receive
//! direction a peer SYN opened, fed one fragment frame per operation with
//! [`Session::handle_frame_within`] (every accepted frame a new packet number, so the
//! duplicate window never interferes). Both priorities are exercised, each with its own model: a
//! map from fragment index to bytes, the END fragment's index, the time of the last
//! progress and the poison flag.
//!
//! The input is structured (`arbitrary`): a memory budget, then [`Op`]s: add a fragment,
//! let time pass, run the timers (which expire stalled messages), or reset with a new
//! peer SYN. The configuration is the default one: 64 KiB messages, 1492-byte packets,
//! a 13 s reassembly timeout. The rules are those of `docs/hvncp.md` §3.6.
//!
//! Invariants, after every operation:
//!
//! - `reassembly_bytes()` is the sum of the fragments the models hold; neither priority
//!   ever holds more than `max_message`, and the session never more than the budget;
//! - a fragment is accepted exactly when it is consistent with the ones held (index
//!   below `MAX_FRAGMENTS`, not a held index, not past the END fragment, an END fragment
//!   not below a held index), fits in `max_message` and in the budget, and its priority is
//!   not poisoned; an accepted fragment is acknowledged (one ACK with its number and
//!   priority), a refused one is not. `OverBudget` only when over budget, leaving what is
//!   held; a `Reassembly` refusal only for a poisoned priority, an inconsistent or an
//!   oversized fragment; a consistent oversized fragment drops the partial message and
//!   poisons its priority, any other refusal leaves what is held;
//! - a message completes exactly when every index up to the END fragment's is held; its
//!   bytes are the fragments added since the last completion, reset or expiry,
//!   concatenated in index order. A single-packet message (BEG and END) is delivered as
//!   is, unless its priority is poisoned, and leaves a partial message alone;
//! - `poll_timeout()` is the earliest reassembly deadline (last progress + timeout);
//!   `handle_timeout` discards exactly the partial messages past their deadline, and a
//!   discarded message poisons its priority: every later fragment is refused until the
//!   next peer SYN, which resets both priorities.

#![no_main]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use dataplane::session::{Config, Event, Input as Rx, MAX_FRAGMENTS, Priority, Refusal, Session};
use dataplane::time::Instant;
use dataplane::wire::{
    DEFAULT_ETHERTYPE, DEFAULT_MAX_PAYLOAD, Flags, Frame, FrameBuilder, HvncpRepr, MacAddr, VERSION,
};
use libfuzzer_sys::fuzz_target;

const LOCAL: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const PEER: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);

#[derive(Arbitrary, Debug)]
struct Input {
    /// Reassembly memory the session may use, in units of 4 bytes (0..=256 KiB).
    budget: u16,
    /// Number of the peer's first SYN.
    first_number: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A fragment of `len % 1493` bytes at `index` (BEG when `index` is 0, as the wire
    /// requires), with END when `last`. Its bytes depend on `fill`, `index` and the
    /// position, so that misplaced bytes are seen.
    Add {
        urgent: bool,
        index: u8,
        last: bool,
        len: u16,
        fill: u8,
    },
    /// Let `ms` × 16 ms pass (no timer runs).
    Advance { ms: u16 },
    /// Run the session's timers at the current time.
    Expire,
    /// A new SYN from the peer: both priorities start afresh.
    Reset,
}

/// What one priority's reassembly should hold.
#[derive(Default, Clone, PartialEq)]
struct Model {
    parts: BTreeMap<u8, Vec<u8>>,
    /// Fragment count, once the END fragment was added.
    total: Option<usize>,
    last_progress: Option<Instant>,
    poisoned: bool,
}

/// Indices and lengths, not the bytes.
impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<(u8, usize)> = self.parts.iter().map(|(&i, p)| (i, p.len())).collect();
        write!(
            f,
            "{{parts (index, len) {parts:?}, total {:?}, last progress {:?}, poisoned {}}}",
            self.total, self.last_progress, self.poisoned
        )
    }
}

/// The fragment being checked, for failure messages.
struct What<'a> {
    priority: Priority,
    index: u8,
    last: bool,
    len: usize,
    number: u8,
    left: usize,
    before: &'a Model,
    result: &'a Result<Rx<'static>, Refusal>,
    events: &'a [Event],
}

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| match e {
                Event::Message { priority, payload } => {
                    format!("Message({priority:?}, {} bytes)", payload.len())
                }
                other => format!("{other:?}"),
            })
            .collect();
        write!(
            f,
            "{:?} fragment {}{} of {} bytes (number {}, budget left {}) to {:?}: {:?}, \
             events {events:?}",
            self.priority,
            self.index,
            if self.last { " (END)" } else { "" },
            self.len,
            self.number,
            self.left,
            self.before,
            self.result,
        )
    }
}

impl Model {
    fn bytes(&self) -> usize {
        self.parts.values().map(Vec::len).sum()
    }

    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.parts.is_empty() {
            None
        } else {
            self.last_progress.map(|t| t + timeout)
        }
    }
}

struct Harness {
    session: Session,
    max_message: usize,
    timeout: Duration,
    models: [Model; 2],
    now: Instant,
    budget: usize,
    /// Number of the next frame from the peer.
    number: u8,
    /// SYNs sent by the peer, to make each one's payload distinct.
    syns: u32,
    buf: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let config = Config::default();
    config
        .validate()
        .expect("the default configuration is valid");
    assert_eq!(config.max_payload, DEFAULT_MAX_PAYLOAD);
    let mut h = Harness {
        max_message: config.max_message,
        timeout: config.reassembly_timeout,
        session: Session::new(
            Arc::new(config),
            b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0"[..].into(),
            LOCAL,
            PEER,
            0,
        ),
        models: [Model::default(), Model::default()],
        now: Instant::ZERO,
        budget: usize::from(input.budget) * 4,
        number: input.first_number,
        syns: 0,
        buf: vec![0; 2048],
    };
    h.reset();
    for op in &input.ops {
        match *op {
            Op::Add {
                urgent,
                index,
                last,
                len,
                fill,
            } => {
                let len = usize::from(len) % (usize::from(DEFAULT_MAX_PAYLOAD) + 1);
                let data: Vec<u8> = (0..len)
                    .map(|i| fill ^ index ^ (i as u8) ^ ((i >> 8) as u8).rotate_left(3))
                    .collect();
                let priority = if urgent {
                    Priority::Urgent
                } else {
                    Priority::Normal
                };
                h.add(priority, index, last, &data);
            }
            // Up to 17 min: enough to cross any reassembly timeout in one step.
            Op::Advance { ms } => h.now += Duration::from_millis(u64::from(ms) * 16),
            Op::Expire => h.expire(),
            Op::Reset => h.reset(),
        }
        h.check();
    }
});

fn slot(priority: Priority) -> usize {
    match priority {
        Priority::Normal => 0,
        Priority::Urgent => 1,
    }
}

impl Harness {
    /// Build, parse and hand over one frame from the peer; returns what the session
    /// said and the acknowledgements it sent.
    fn feed(
        &mut self,
        flags: Flags,
        frag_index: u8,
        payload: &[u8],
        budget: usize,
    ) -> (Result<Rx<'static>, Refusal>, Vec<HvncpRepr>) {
        let header = HvncpRepr {
            version: VERSION,
            number: self.number,
            flags,
            frag_index,
            payload_len: u16::try_from(payload.len()).expect("payloads fit a packet"),
        };
        let builder = FrameBuilder {
            dst: LOCAL,
            src: PEER,
            ethertype: DEFAULT_ETHERTYPE,
        };
        let mut frame = vec![0u8; 2048];
        let len = builder
            .emit(&mut frame, &header, payload)
            .expect("the buffer holds a whole packet");
        let parsed = Frame::parse(&frame[..len], DEFAULT_ETHERTYPE)
            .unwrap_or_else(|e| panic!("crafted frame {header:?} refused: {e}"));
        let result = self
            .session
            .handle_frame_within(self.now, &parsed, budget)
            .map(|input| match input {
                Rx::Datagram(_) => panic!("an ACKR fragment delivered as a datagram"),
                Rx::Refresh => panic!("an ACKR fragment taken as a refresh"),
                Rx::Consumed => Rx::Consumed,
                Rx::Duplicate => Rx::Duplicate,
            });
        let mut acks = Vec::new();
        while let Some(n) = self.session.poll_transmit(self.now, &mut self.buf) {
            let f = Frame::parse(&self.buf[..n], DEFAULT_ETHERTYPE)
                .expect("the session emits valid frames");
            assert_eq!((f.src, f.dst), (LOCAL, PEER));
            acks.push(f.header);
        }
        (result, acks)
    }

    /// A new SYN (END: no reverse opening) with a payload never seen before.
    fn reset(&mut self) {
        self.syns += 1;
        let payload = format!("uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:n={}", self.syns);
        let (result, acks) = self.feed(
            Flags::SYN | Flags::ACKR | Flags::END,
            0,
            payload.as_bytes(),
            usize::MAX,
        );
        assert_eq!(result, Ok(Rx::Consumed));
        assert_eq!(acks.len(), 1, "one ACK of the SYN: {acks:?}");
        assert_eq!(acks[0].flags, Flags::ACK | Flags::SYN);
        assert_eq!(acks[0].number, self.number);
        let events: Vec<Event> = std::iter::from_fn(|| self.session.poll_event()).collect();
        assert_eq!(
            events,
            vec![Event::PeerSyn {
                payload: payload.into_bytes(),
                reverse: false
            }]
        );
        self.models = [Model::default(), Model::default()];
        // A SYN numbers the first packet after it.
    }

    fn add(&mut self, priority: Priority, index: u8, last: bool, data: &[u8]) {
        let p = slot(priority);
        let before = self.models[p].clone();
        let first = index == 0;
        let i = usize::from(index);
        let model = &self.models[p];
        let inconsistent = i >= MAX_FRAGMENTS
            || model.parts.contains_key(&index)
            || model.total.is_some_and(|t| i >= t)
            || (last && model.parts.keys().any(|&k| k > index));
        let oversized = model.bytes() + data.len() > self.max_message;
        // What is left of the session's budget, as an endpoint passes it.
        let left = self.budget.saturating_sub(self.session.reassembly_bytes());
        let over_budget = data.len() > left;
        let single = first && last;

        let mut flags = Flags::ACKR;
        if first {
            flags = flags | Flags::BEG;
        }
        if last {
            flags = flags | Flags::END;
        }
        if priority == Priority::Urgent {
            flags = flags | Flags::PRI;
        }
        let number = self.number;
        let (result, acks) = self.feed(flags, index, data, left);
        if result.is_ok() {
            // The number is used up only once received; a refused packet's number is
            // reused, as a sender retransmits under the same number (a refused number
            // does not move the window: skipping 128 of them would look stale).
            self.number = self.number.wrapping_add(1);
        }
        let events: Vec<Event> = std::iter::from_fn(|| self.session.poll_event()).collect();
        // Formatted only if a check fails.
        let what = What {
            priority,
            index,
            last,
            len: data.len(),
            number,
            left,
            before: &before,
            result: &result,
            events: &events,
        };

        match result {
            Ok(Rx::Consumed) => {
                assert_eq!(acks.len(), 1, "accepted but not acknowledged once: {what}");
                let mut expected = Flags::ACK;
                if priority == Priority::Urgent {
                    expected = expected | Flags::PRI;
                }
                assert_eq!(
                    (acks[0].number, acks[0].flags),
                    (number, expected),
                    "{what}"
                );
                assert!(!before.poisoned, "accepted while poisoned: {what}");
                if single {
                    // Delivered as is; a partial message stays as it was.
                    assert_eq!(
                        events,
                        vec![Event::Message {
                            priority,
                            payload: data.to_vec()
                        }],
                        "{what}"
                    );
                    return;
                }
                assert!(
                    !inconsistent && !oversized && !over_budget,
                    "accepted a fragment that breaks a rule (inconsistent {inconsistent}, \
                     oversized {oversized}, over budget {over_budget}): {what}"
                );
                let model = &mut self.models[p];
                model.parts.insert(index, data.to_vec());
                model.last_progress = Some(self.now);
                if last {
                    model.total = Some(i + 1);
                }
                if model.total.is_some_and(|t| model.parts.len() == t) {
                    let message: Vec<u8> = model.parts.values().flatten().copied().collect();
                    assert_eq!(events.len(), 1, "one message completed: {what}");
                    let Event::Message {
                        priority: got,
                        payload,
                    } = &events[0]
                    else {
                        panic!("a completed message is a Message event: {what}");
                    };
                    assert_eq!(*got, priority, "{what}");
                    assert_eq!(payload.len(), message.len(), "{what}");
                    assert!(*payload == message, "bytes not in index order: {what}");
                    *model = Model::default();
                } else {
                    assert!(events.is_empty(), "partial message delivered: {what}");
                }
            }
            Err(refusal) => {
                assert!(acks.is_empty(), "refused fragment acknowledged: {what}");
                assert!(events.is_empty(), "{what}");
                match refusal {
                    Refusal::OverBudget => {
                        assert!(!single && over_budget, "OverBudget within budget: {what}");
                        assert!(!before.poisoned, "{what}");
                    }
                    Refusal::Reassembly if before.poisoned => {}
                    Refusal::Reassembly => {
                        assert!(!single, "single-packet message refused: {what}");
                        let held: usize = self.models.iter().map(Model::bytes).sum();
                        if self.session.reassembly_bytes() == held {
                            assert!(inconsistent, "fragment wrongly refused: {what}");
                        } else {
                            // The message grew past `max_message`: dropped, and the
                            // rest of it refused.
                            assert!(oversized, "held fragments dropped: {what}");
                            self.models[p] = Model {
                                poisoned: true,
                                ..Model::default()
                            };
                        }
                    }
                    other => panic!("unexpected refusal {other:?}: {what}"),
                }
            }
            Ok(other) => panic!("a new fragment was taken for {other:?}: {what}"),
        }
    }

    /// Run the timers: exactly the stalled partial messages are discarded.
    fn expire(&mut self) {
        let stalled: Vec<usize> = (0..2)
            .filter(|&p| {
                self.models[p]
                    .deadline(self.timeout)
                    .is_some_and(|d| self.now >= d)
            })
            .collect();
        let discarded = self.session.handle_timeout(self.now);
        assert_eq!(
            discarded,
            stalled.len(),
            "at {:?} with {:?}",
            self.now,
            self.models
        );
        for p in stalled {
            self.models[p] = Model {
                poisoned: true,
                ..Model::default()
            };
        }
        assert!(
            self.session
                .poll_transmit(self.now, &mut self.buf)
                .is_none()
        );
        assert_eq!(self.session.poll_event(), None, "timers deliver nothing");
    }

    fn check(&self) {
        let held: usize = self.models.iter().map(Model::bytes).sum();
        assert_eq!(
            self.session.reassembly_bytes(),
            held,
            "session holds {} bytes, models {:?}",
            self.session.reassembly_bytes(),
            self.models
        );
        for m in &self.models {
            assert!(m.bytes() <= self.max_message, "{} bytes held", m.bytes());
        }
        assert!(
            held <= self.budget,
            "{held} bytes held, budget {}",
            self.budget
        );
        let deadline = self
            .models
            .iter()
            .filter_map(|m| m.deadline(self.timeout))
            .min();
        assert_eq!(self.session.poll_timeout(), deadline, "{:?}", self.models);
    }
}
