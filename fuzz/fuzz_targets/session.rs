//! Two real sessions, an agent and a monitor, joined by a link the fuzzer drives.
//!
//! The input is structured (`arbitrary`): a link discipline, the two initial packet
//! numbers, then [`Op`]s: the agent connects; either side sends a message or a
//! datagram, or closes; a frame in flight is delivered (any of them: reordering),
//! dropped, duplicated or delivered corrupted; time passes; a forged frame (any header,
//! valid checksum) or raw bytes reach a side. After every operation the frames each side
//! sends are queued on the link and its events drained. At the end the link turns
//! perfect and the pair runs until nothing is in flight and no timer is set.
//!
//! The configuration is small (160-byte packets, the least a session accepts; 1 KiB
//! messages, 10 ms RTO, window 8) so that fragmentation, windows and timers are reached in
//! a few operations.
//!
//! Every payload sent embeds a marker, its sender and a sequence number unique to the
//! sender, so a payload identifies its send. Invariants checked always:
//!
//! - no panic; every frame a session emits parses, comes from its MAC to its peer's,
//!   carries at most `max_payload` bytes, and a SYN carries the session's properties;
//! - `Acked`/`Lost` only for ids `send` returned, and at most one of them per id;
//! - `send` refuses with `QueueFull` exactly when the bytes of the messages neither acked
//!   nor lost, plus the new one, exceed `max_queued_bytes`;
//! - `reassembly_bytes()` ≤ 2 × `max_message`; delivered messages ≤ `max_message`;
//! - timers: after `handle_timeout(now)` and draining `poll_transmit(now)`,
//!   `poll_timeout()` is `None` or later than `now` (the driver never spins); an idle
//!   session has no timer and holds no reassembly memory;
//! - after the final perfect-link run: nothing in flight, no timer, no reassembly memory,
//!   no SYN outstanding, and a side whose direction is open has a final `Acked` or `Lost`
//!   for every message it sent (nothing is stuck).
//!
//! With the bounded link (the default discipline), the link also keeps what the
//! protocol assumes of a network: a frame lives at most one RTO and is overtaken by at
//! most 64 frames; timers run when due, as a driver runs them. Then, for every payload
//! received by a side whose receive epoch (the span between two peer SYNs, or a close,
//! or a connect) is clean, and sent in a clean sending incarnation of the peer (the span
//! between two abandonments of its sending state):
//!
//! - it was sent by the peer, byte for byte, at the priority it arrives with (reliable
//!   messages as `Event::Message`, datagrams as `Input::Datagram`);
//! - reliable messages arrive at most once and in send order per priority within one
//!   epoch and incarnation; datagrams at most once per epoch;
//! - `Acked(id)` implies the peer delivered the message (unless a forged frame reached
//!   the peer since it was sent).
//!
//! "Clean" means no forged input could have influenced it: forged and raw frames, a
//! corrupted frame that still parses but differs from the original (the 8-bit sum misses
//! some changes of the length field), anything a side emits while handling such a frame,
//! and any frame of an incarnation such a frame reached, are all tainted; a tainted
//! frame dirties the epoch and the incarnation of the side that receives it. Corruption of
//! any other covered byte must be detected by `Frame::parse`.
//!
//! The "wild" discipline lifts the link bounds (frames live forever, up to 4096 queued per
//! direction; time jumps without running the timers in between) and checks only the
//! invariants that hold always.
//!
//! Packets of an abandoned sending incarnation (sent before the SYN that opened the
//! receiver's current epoch) must be refused on the bounded link: no data packet of it is
//! accepted (a duplicate is fine), and no SYN of it reopens the session (which would mix
//! old fragments into new messages, or reset the receiver under a message whose
//! fragments it already acknowledged). On the wild link, where frames live forever and
//! 8-bit numbers wrap, nothing can tell them apart, and they are treated as tainted.
//! (Across agent processes, the SYN's incarnation property does it however late the SYN
//! arrives: that rule is the endpoint's, tested in `dataplane/tests/link.rs`.)
//! `HVNCP_FUZZ_TRACE=1` prints every step, to read a reproducer.

#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use dataplane::session::{
    Config, Event, Input as Rx, MessageId, Priority, Refusal, SendError, Session, TxState,
};
use dataplane::time::Instant;
use dataplane::wire::{
    DEFAULT_ETHERTYPE, ETHERNET_HEADER_LEN, Flags, Frame, FrameBuilder, HEADER_LEN, HvncpRepr,
    MIN_FRAME_LEN, MacAddr, VERSION,
};
use libfuzzer_sys::fuzz_target;

const AGENT: usize = 0;
const MONITOR: usize = 1;
const AGENT_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);
const MONITOR_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
/// SYN payloads are opaque to a session. Short ones keep the fuzz inputs small; the
/// real properties (84 and 58 bytes) would fit the 128-byte packets as well.
const AGENT_SYN: &[u8] = b"ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0";
const MONITOR_SYN: &[u8] = b"verHmRunning=2.0";

/// Operations run per input; the rest is ignored.
const MAX_OPS: usize = 512;
/// Bounded link: most frames (in either direction) that may overtake a frame.
const REORDER_FRAMES: u64 = 64;
/// Wild link: most frames queued per direction.
const WILD_QUEUE: usize = 4096;
/// Frames a session may emit in one drain, events in one drain, timer steps in one
/// advance, rounds of the final run: beyond, the engine is taken to spin.
const MAX_DRAIN: usize = 10_000;
const MAX_STEPS: usize = 10_000;
const MAX_SETTLE: usize = 200_000;

/// Payload marker: magic, sender tag, kind, sequence number (u32 LE).
const MAGIC: [u8; 3] = [0xf7, b'F', b'Z'];
const MARK_LEN: usize = 9;
const RELIABLE: u8 = b'R';
const DATAGRAM: u8 = b'D';

fn config() -> Config {
    Config {
        max_payload: 160,
        rto: Duration::from_millis(10),
        rto_max: Duration::from_millis(40),
        max_retries: 3,
        window: 8,
        max_message: 1024,
        // At least the retransmission span (10 + 20 + 40 + 40 ms).
        reassembly_timeout: Duration::from_millis(150),
        max_queued_bytes: 4096,
        handshake_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Lift the link bounds and check only what holds always.
    wild: bool,
    agent_number: u8,
    monitor_number: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The agent opens (or reopens) the session, as on a Hello.
    ConnectAgent,
    /// Queue a reliable message of `len % 1025` bytes (at least the marker).
    Send {
        from_agent: bool,
        urgent: bool,
        len: u16,
        fill: u8,
    },
    /// Emit an unacknowledged single-packet message of `len % 65` bytes.
    Datagram {
        from_agent: bool,
        urgent: bool,
        len: u8,
        fill: u8,
    },
    /// Deliver the frame at `index % queued` on its way to the agent or the monitor.
    Deliver { to_agent: bool, index: u8 },
    /// Deliver every frame in flight now, oldest first.
    DeliverAll,
    /// Lose a frame.
    Drop { to_agent: bool, index: u8 },
    /// Queue a second copy of a frame.
    Duplicate { to_agent: bool, index: u8 },
    /// Deliver a copy of a frame with one byte flipped by `xor` (at least one bit).
    Corrupt {
        to_agent: bool,
        index: u8,
        offset: u8,
        xor: u8,
    },
    /// Let time pass; timers run.
    Advance { ms: u16 },
    /// A side closes its session locally.
    Close { agent: bool },
    /// A frame from the peer's MAC with any header and payload and a valid checksum.
    Forge {
        to_agent: bool,
        number: u8,
        flags: u8,
        frag_index: u8,
        payload: Vec<u8>,
    },
    /// Any bytes, through `Frame::parse`.
    Raw { to_agent: bool, bytes: Vec<u8> },
}

/// `HVNCP_FUZZ_TRACE=1`: print every step (to replay a reproducer).
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("HVNCP_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

fuzz_target!(|input: Input| {
    let config = config();
    config.validate().expect("the fuzz configuration is valid");
    let mut h = Harness::new(config, &input);
    for op in input.ops.iter().take(MAX_OPS) {
        trace!("@{:?} {op:?}", h.now);
        h.apply(op);
        h.check();
    }
    h.settle();
});

/// One frame on the link.
#[derive(Debug, Clone)]
struct Wire {
    bytes: Vec<u8>,
    /// When it was emitted.
    at: Instant,
    /// Emission order over both directions.
    serial: u64,
    /// Sending incarnation of its sender when emitted.
    inc: usize,
    /// Emitted while handling a tainted frame.
    tainted: bool,
}

/// A payload a side sent.
#[derive(Debug)]
struct Sent {
    kind: u8,
    priority: Priority,
    /// Sending incarnation at `send`.
    inc: usize,
    payload: Vec<u8>,
    /// Times the peer delivered exactly this payload.
    delivered: u32,
    /// The peer's `forged_in` at `send`.
    peer_forged_at_send: u64,
}

struct Side {
    name: &'static str,
    tag: u8,
    session: Session,
    mac: MacAddr,
    syn: &'static [u8],
    /// Sending incarnation: bumped whenever the session abandons what it was sending
    /// (connect, a peer SYN asking for the reverse direction, close or failure).
    inc: usize,
    /// Per incarnation: a tainted frame reached this side during it.
    inc_dirty: Vec<bool>,
    /// Receive epoch: bumped on every peer SYN, close, failure or connect.
    epoch: u32,
    /// A tainted frame reached this side during the current epoch (or opened it).
    epoch_dirty: bool,
    /// Sending incarnation of the peer SYN that opened the current epoch, if real.
    epoch_inc: Option<usize>,
    /// Tainted frames received so far.
    forged_in: u64,
    /// Everything sent, indexed by sequence number.
    sent: Vec<Sent>,
    /// Message id → sequence number.
    ids: HashMap<MessageId, usize>,
    /// Message id → acked (true) or lost (false).
    terminal: HashMap<MessageId, bool>,
    /// As a receiver: (epoch, peer incarnation, priority) → last sequence delivered.
    in_order: HashMap<(u32, usize, Priority), usize>,
    /// As a receiver: (epoch, sequence) of datagrams delivered.
    datagrams: HashSet<(u32, usize)>,
}

impl Side {
    fn new(
        name: &'static str,
        config: &Config,
        mac: MacAddr,
        peer: MacAddr,
        syn: &'static [u8],
        number: u8,
    ) -> Side {
        Side {
            name,
            tag: name.as_bytes()[0],
            session: Session::new(Arc::new(*config), syn.into(), mac, peer, number),
            mac,
            syn,
            inc: 0,
            inc_dirty: vec![false],
            epoch: 0,
            epoch_dirty: false,
            epoch_inc: None,
            forged_in: 0,
            sent: Vec::new(),
            ids: HashMap::new(),
            terminal: HashMap::new(),
            in_order: HashMap::new(),
            datagrams: HashSet::new(),
        }
    }

    fn new_inc(&mut self) {
        self.inc += 1;
        self.inc_dirty.push(false);
    }

    fn new_epoch(&mut self, dirty: bool, opened_by: Option<usize>) {
        self.epoch += 1;
        self.epoch_dirty = dirty;
        self.epoch_inc = if dirty { None } else { opened_by };
    }

    /// Bytes of the messages sent and neither acked nor lost.
    fn pending_bytes(&self) -> usize {
        self.ids
            .iter()
            .filter(|(id, _)| !self.terminal.contains_key(id))
            .map(|(_, &seq)| self.sent[seq].payload.len())
            .sum()
    }
}

struct Harness {
    config: Config,
    sides: [Side; 2],
    /// `queues[i]`: frames on their way to side `i`.
    queues: [VecDeque<Wire>; 2],
    now: Instant,
    serial: u64,
    wild: bool,
    /// Number and incarnation of a SYN from an abandoned incarnation being delivered
    /// (bounded link only).
    old_syn: Option<(u8, usize)>,
    buf: Vec<u8>,
}

fn priority(urgent: bool) -> Priority {
    if urgent {
        Priority::Urgent
    } else {
        Priority::Normal
    }
}

fn other(i: usize) -> usize {
    1 - i
}

/// `tag`'s payload number `seq` of `len` bytes: marker then filler that differs in every
/// 128-byte packet.
fn payload(tag: u8, kind: u8, seq: usize, len: usize, fill: u8) -> Vec<u8> {
    let seq = u32::try_from(seq).expect("fewer than 2^32 sends");
    let mut p = Vec::with_capacity(len.max(MARK_LEN));
    p.extend_from_slice(&MAGIC);
    p.push(tag);
    p.push(kind);
    p.extend_from_slice(&seq.to_le_bytes());
    for i in MARK_LEN..len {
        p.push(fill ^ (i as u8) ^ ((i >> 8) as u8).wrapping_mul(0x9d));
    }
    p
}

/// (sender tag, kind, sequence number) of a marked payload.
fn marker(p: &[u8]) -> Option<(u8, u8, usize)> {
    if p.len() < MARK_LEN || p[..3] != MAGIC {
        return None;
    }
    let seq = u32::from_le_bytes([p[5], p[6], p[7], p[8]]);
    Some((p[3], p[4], usize::try_from(seq).ok()?))
}

/// One line for a frame: addresses left out.
fn describe(bytes: &[u8]) -> String {
    match Frame::parse(bytes, DEFAULT_ETHERTYPE) {
        Ok(f) => {
            let h = f.header;
            let mark = marker(f.payload)
                .map(|(t, k, s)| format!(" {}{}#{s}", t as char, k as char))
                .unwrap_or_default();
            format!(
                "n={} {} frag={} len={}{mark}",
                h.number, h.flags, h.frag_index, h.payload_len
            )
        }
        Err(e) => format!("unparsable ({e})"),
    }
}

fn describe_event(event: &Event) -> String {
    match event {
        Event::Message { priority, payload } => match marker(payload) {
            Some((t, k, seq)) => format!(
                "Message {priority:?} {}{}#{seq} ({} bytes)",
                t as char,
                k as char,
                payload.len()
            ),
            None => format!("Message {priority:?} unmarked ({} bytes)", payload.len()),
        },
        Event::PeerSyn { payload, reverse } => {
            format!(
                "PeerSyn {:?} reverse={reverse}",
                payload.escape_ascii().to_string()
            )
        }
        other => format!("{other:?}"),
    }
}

impl Harness {
    fn new(config: Config, input: &Input) -> Harness {
        Harness {
            sides: [
                Side::new(
                    "Agent",
                    &config,
                    AGENT_MAC,
                    MONITOR_MAC,
                    AGENT_SYN,
                    input.agent_number,
                ),
                Side::new(
                    "Monitor",
                    &config,
                    MONITOR_MAC,
                    AGENT_MAC,
                    MONITOR_SYN,
                    input.monitor_number,
                ),
            ],
            config,
            queues: [VecDeque::new(), VecDeque::new()],
            now: Instant::ZERO,
            serial: 0,
            wild: input.wild,
            old_syn: None,
            buf: vec![0; 2048],
        }
    }

    /// `(side i, its peer)`.
    fn two(&mut self, i: usize) -> (&mut Side, &mut Side) {
        let [agent, monitor] = &mut self.sides;
        if i == AGENT {
            (agent, monitor)
        } else {
            (monitor, agent)
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::ConnectAgent => {
                let agent = &mut self.sides[AGENT];
                agent.session.connect();
                agent.new_inc();
                agent.new_epoch(false, None);
                self.after(AGENT, false);
            }
            Op::Send {
                from_agent,
                urgent,
                len,
                fill,
            } => {
                let len = usize::from(len) % (self.config.max_message + 1);
                self.send(side(from_agent), priority(urgent), len, fill);
            }
            Op::Datagram {
                from_agent,
                urgent,
                len,
                fill,
            } => {
                let len = usize::from(len) % (usize::from(self.config.max_payload) + 1);
                self.datagram(side(from_agent), priority(urgent), len, fill);
            }
            Op::Deliver { to_agent, index } => {
                if let Some(w) = self.take(side(to_agent), index) {
                    self.deliver_wire(side(to_agent), &w);
                }
            }
            Op::DeliverAll => {
                let n = self.queues[0].len() + self.queues[1].len();
                for _ in 0..n {
                    let Some((to, w)) = self.pop_oldest() else {
                        break;
                    };
                    self.deliver_wire(to, &w);
                }
            }
            Op::Drop { to_agent, index } => {
                self.take(side(to_agent), index);
            }
            Op::Duplicate { to_agent, index } => {
                let q = &self.queues[side(to_agent)];
                if !q.is_empty() {
                    let copy = q[usize::from(index) % q.len()].clone();
                    self.queues[side(to_agent)].push_back(copy);
                }
            }
            Op::Corrupt {
                to_agent,
                index,
                offset,
                xor,
            } => self.corrupt(side(to_agent), index, offset, xor),
            Op::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
            Op::Close { agent } => {
                self.sides[side(agent)].session.close();
                self.after(side(agent), false);
            }
            Op::Forge {
                to_agent,
                number,
                flags,
                frag_index,
                ref payload,
            } => {
                let to = side(to_agent);
                let payload = &payload[..payload.len().min(128)];
                let header = HvncpRepr {
                    version: VERSION,
                    number,
                    flags: Flags::from_bits(flags),
                    frag_index,
                    payload_len: u16::try_from(payload.len()).expect("at most 128"),
                };
                let builder = FrameBuilder {
                    dst: self.sides[to].mac,
                    src: self.sides[other(to)].mac,
                    ethertype: DEFAULT_ETHERTYPE,
                };
                let mut frame = vec![0u8; 256];
                let len = builder
                    .emit(&mut frame, &header, payload)
                    .expect("the buffer holds any forged frame");
                frame.truncate(len);
                self.deliver(to, &frame, true, None);
            }
            Op::Raw {
                to_agent,
                ref bytes,
            } => self.deliver(side(to_agent), bytes, true, None),
        }
    }

    fn send(&mut self, from: usize, priority: Priority, len: usize, fill: u8) {
        let max_queued = self.config.max_queued_bytes;
        let (me, peer) = self.two(from);
        let seq = me.sent.len();
        let p = payload(me.tag, RELIABLE, seq, len, fill);
        let pending = me.pending_bytes();
        match me.session.send(priority, &p) {
            Ok(id) => {
                assert!(
                    pending + p.len() <= max_queued,
                    "{} accepted {} bytes with {pending} pending",
                    me.name,
                    p.len()
                );
                assert!(!me.ids.contains_key(&id), "{id:?} returned twice");
                me.ids.insert(id, seq);
                me.sent.push(Sent {
                    kind: RELIABLE,
                    priority,
                    inc: me.inc,
                    payload: p,
                    delivered: 0,
                    peer_forged_at_send: peer.forged_in,
                });
            }
            Err(SendError::QueueFull { queued }) => {
                assert!(
                    pending + p.len() > max_queued,
                    "{}: QueueFull with {pending} bytes pending",
                    me.name
                );
                assert_eq!(queued, pending, "{}: queued bytes", me.name);
            }
            Err(e) => panic!("{}: send of {} bytes refused: {e:?}", me.name, p.len()),
        }
        self.after(from, false);
    }

    fn datagram(&mut self, from: usize, priority: Priority, len: usize, fill: u8) {
        let (me, peer) = self.two(from);
        let seq = me.sent.len();
        let p = payload(me.tag, DATAGRAM, seq, len, fill);
        let mut buf = vec![0u8; 2048];
        match me.session.emit_datagram(priority, &p, &mut buf) {
            Ok(len) => {
                me.sent.push(Sent {
                    kind: DATAGRAM,
                    priority,
                    inc: me.inc,
                    payload: p,
                    delivered: 0,
                    peer_forged_at_send: peer.forged_in,
                });
                buf.truncate(len);
                self.emitted(from, buf, false);
            }
            Err(SendError::NotOpen) => {
                assert_ne!(me.session.tx_state(), TxState::Open, "{}", me.name);
            }
            Err(SendError::Blocked) => {}
            Err(e) => panic!("{}: datagram of {} bytes refused: {e:?}", me.name, p.len()),
        }
        self.after(from, false);
    }

    /// Remove the frame at `index % queued` on its way to `to`.
    fn take(&mut self, to: usize, index: u8) -> Option<Wire> {
        let q = &mut self.queues[to];
        if q.is_empty() {
            return None;
        }
        let i = usize::from(index) % q.len();
        q.remove(i)
    }

    fn pop_oldest(&mut self) -> Option<(usize, Wire)> {
        let to = (0..2)
            .filter(|&i| !self.queues[i].is_empty())
            .min_by_key(|&i| self.queues[i][0].serial)?;
        self.queues[to].pop_front().map(|w| (to, w))
    }

    /// Deliver a frame from the link: tainted if emitted tainted or by a dirty
    /// incarnation.
    fn deliver_wire(&mut self, to: usize, w: &Wire) {
        let tainted = w.tainted || self.sides[other(to)].inc_dirty[w.inc];
        self.deliver(to, &w.bytes, tainted, Some(w.inc));
    }

    fn corrupt(&mut self, to: usize, index: u8, offset: u8, xor: u8) {
        let q = &self.queues[to];
        if q.is_empty() {
            return;
        }
        let w = q[usize::from(index) % q.len()].clone();
        let mut bytes = w.bytes.clone();
        let at = usize::from(offset) % bytes.len();
        bytes[at] ^= xor.max(1);
        let original = Frame::parse(&w.bytes, DEFAULT_ETHERTYPE).expect("frames on the link parse");
        let Ok(corrupted) = Frame::parse(&bytes, DEFAULT_ETHERTYPE) else {
            return;
        };
        let covered =
            ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + HEADER_LEN + original.payload.len();
        let length_field = ETHERNET_HEADER_LEN + 6..ETHERNET_HEADER_LEN + 8;
        assert!(
            !covered.contains(&at) || length_field.contains(&at),
            "flipping byte {at} of {:02x?} by {xor:#04x} went unnoticed",
            w.bytes
        );
        let same = corrupted.header == original.header && corrupted.payload == original.payload;
        let tainted = w.tainted || !same || self.sides[other(to)].inc_dirty[w.inc];
        self.deliver(to, &bytes, tainted, Some(w.inc));
    }

    /// Hand `bytes` to side `to` as a received frame. `inc`: sending incarnation of a
    /// real frame.
    fn deliver(&mut self, to: usize, bytes: &[u8], tainted: bool, inc: Option<usize>) {
        let frame = match Frame::parse(bytes, DEFAULT_ETHERTYPE) {
            Ok(frame) => frame,
            Err(e) => {
                assert!(tainted, "a frame a session emitted does not parse: {e}");
                return;
            }
        };
        let now = self.now;
        let strict = !self.wild;
        let max_payload = usize::from(self.config.max_payload);
        let strict_incarnation = !self.wild;
        let (me, peer) = self.two(to);
        // A data packet or SYN the peer sent before the SYN that opened our receive
        // epoch: the communication it belongs to was invalidated. Such a packet could
        // put a fragment of an old message into a new one, or reset the session under a
        // message being received: on the bounded link it must be refused; on the wild
        // one it is treated as forged.
        let flags = frame.header.flags;
        let from_old_incarnation = !tainted
            && !flags.contains(Flags::ACK)
            && inc
                .zip(me.epoch_inc)
                .is_some_and(|(sent_in, opened_by)| sent_in < opened_by);
        let tainted = tainted || (from_old_incarnation && !strict_incarnation);
        let old_syn = from_old_incarnation && strict_incarnation && flags.contains(Flags::SYN);
        trace!(
            "  -> {} {}{}",
            me.name,
            describe(bytes),
            if tainted { " (tainted)" } else { "" }
        );
        if tainted {
            me.forged_in += 1;
            me.epoch_dirty = true;
            me.inc_dirty[me.inc] = true;
        }
        let result = me.session.handle_frame(now, &frame);
        trace!("     {result:?}");
        if from_old_incarnation && strict_incarnation && !flags.contains(Flags::SYN) {
            assert!(
                !matches!(result, Ok(Rx::Consumed | Rx::Datagram(_))),
                "{}: accepted packet {} of {}'s incarnation {}, after the SYN of its \
                 incarnation {:?} opened this session",
                me.name,
                frame.header.number,
                peer.name,
                inc.unwrap_or_default(),
                me.epoch_inc
            );
        }
        match result {
            Ok(Rx::Datagram(p)) => {
                let f = frame.header.flags;
                // Without ACKR a packet is a whole message, whatever BEG and END say.
                assert!(
                    !f.intersects(Flags::ACKR | Flags::ACK | Flags::SYN),
                    "{}: datagram from a frame with flags {f}",
                    me.name
                );
                assert!(p.len() <= max_payload);
                let pri = if f.contains(Flags::PRI) {
                    Priority::Urgent
                } else {
                    Priority::Normal
                };
                check_datagram(strict, me, peer, pri, p);
            }
            Ok(Rx::Consumed | Rx::Duplicate) => {}
            Ok(Rx::Refresh) => {
                let f = frame.header.flags;
                assert!(
                    f.contains(Flags::SYN) && !f.intersects(Flags::ACKR | Flags::ACK),
                    "{}: refresh from a frame with flags {f}",
                    me.name
                );
                assert!(
                    me.session.can_receive(),
                    "{}: refresh while closed",
                    me.name
                );
            }
            Err(refusal) => {
                if !tainted {
                    assert!(
                        !matches!(refusal, Refusal::Oversized | Refusal::Hello),
                        "{}: a real frame refused: {refusal:?}",
                        me.name
                    );
                }
            }
        }
        if old_syn {
            self.old_syn = Some((frame.header.number, inc.unwrap_or_default()));
        }
        self.events(to, tainted, inc);
        self.old_syn = None;
        self.transmit(to, tainted);
    }

    /// Drain the events and transmissions of side `i` after something happened to it.
    fn after(&mut self, i: usize, tainted: bool) {
        self.events(i, tainted, None);
        self.transmit(i, tainted);
    }

    fn events(&mut self, i: usize, tainted: bool, inc: Option<usize>) {
        let strict = !self.wild;
        let max_message = self.config.max_message;
        let old_syn = self.old_syn;
        let (me, peer) = self.two(i);
        for _ in 0..MAX_DRAIN {
            let Some(event) = me.session.poll_event() else {
                return;
            };
            trace!("     {} event {}", me.name, describe_event(&event));
            match event {
                Event::PeerSyn { payload, reverse } => {
                    if let Some((number, sent_in)) = old_syn {
                        panic!(
                            "{}: SYN {number} of {}'s abandoned incarnation {sent_in} \
                             reopened the session opened by a SYN of incarnation {:?}",
                            me.name, peer.name, me.epoch_inc
                        );
                    }
                    if !tainted {
                        assert_eq!(payload, peer.syn, "{}: SYN payload", me.name);
                    }
                    me.new_epoch(tainted, inc);
                    if reverse {
                        me.new_inc();
                    }
                }
                Event::Established => {
                    assert!(me.session.is_established(), "{}", me.name);
                }
                Event::Message { priority, payload } => {
                    assert!(payload.len() <= max_message, "{}", me.name);
                    check_message(strict, me, peer, priority, &payload);
                }
                Event::Acked(id) => terminate(strict, me, peer, id, true),
                Event::Lost(id) => terminate(strict, me, peer, id, false),
                Event::Closed(reason) => {
                    assert_eq!(me.session.tx_state(), TxState::Closed, "{reason:?}");
                    assert!(!me.session.can_receive(), "{}: {reason:?}", me.name);
                    me.new_epoch(false, None);
                    me.new_inc();
                }
            }
        }
        panic!("{}: poll_event never returns None", self.sides[i].name);
    }

    fn transmit(&mut self, i: usize, tainted: bool) {
        let max_payload = usize::from(self.config.max_payload);
        let peer_mac = self.sides[other(i)].mac;
        for _ in 0..MAX_DRAIN {
            let now = self.now;
            let side = &mut self.sides[i];
            let Some(len) = side.session.poll_transmit(now, &mut self.buf) else {
                return;
            };
            assert!(
                (MIN_FRAME_LEN..=self.buf.len()).contains(&len),
                "frame of {len} bytes"
            );
            let bytes = self.buf[..len].to_vec();
            let f = Frame::parse(&bytes, DEFAULT_ETHERTYPE).unwrap_or_else(|e| {
                panic!("{} emitted a frame that does not parse: {e}", side.name)
            });
            assert_eq!((f.src, f.dst), (side.mac, peer_mac), "addresses");
            assert!(f.payload.len() <= max_payload, "{} bytes", f.payload.len());
            let flags = f.header.flags;
            assert!(!flags.contains(Flags::HEL), "sessions send no Hello");
            if flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) {
                assert_eq!(f.payload, side.syn, "our SYN carries our properties");
            }
            self.emitted(i, bytes, tainted);
        }
        panic!("{}: poll_transmit never returns None", self.sides[i].name);
    }

    /// Put a frame side `from` emitted on the link.
    fn emitted(&mut self, from: usize, bytes: Vec<u8>, tainted: bool) {
        self.serial += 1;
        let w = Wire {
            bytes,
            at: self.now,
            serial: self.serial,
            inc: self.sides[from].inc,
            tainted,
        };
        let to = other(from);
        trace!(
            "  {} emits {}{}",
            self.sides[from].name,
            describe(&w.bytes),
            if tainted { " (tainted)" } else { "" }
        );
        self.queues[to].push_back(w);
        if self.wild {
            if self.queues[to].len() > WILD_QUEUE {
                self.queues[to].pop_front();
            }
        } else {
            let serial = self.serial;
            for q in &mut self.queues {
                q.retain(|w| serial - w.serial < REORDER_FRAMES);
            }
        }
    }

    fn set_now(&mut self, now: Instant) {
        debug_assert!(now >= self.now);
        self.now = now;
        if !self.wild {
            let lifetime = self.config.rto;
            for q in &mut self.queues {
                q.retain(|w| now.saturating_duration_since(w.at) <= lifetime);
            }
        }
    }

    /// Run both sides' timers at `now`; afterwards no timer may be due.
    fn timers(&mut self) {
        for i in [AGENT, MONITOR] {
            self.sides[i].session.handle_timeout(self.now);
            self.after(i, false);
        }
        for s in &self.sides {
            if let Some(t) = s.session.poll_timeout() {
                assert!(
                    t > self.now,
                    "{}: timer at {t:?} still due after handle_timeout({:?})",
                    s.name,
                    self.now
                );
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.sides
            .iter()
            .filter_map(|s| s.session.poll_timeout())
            .min()
    }

    /// Let `d` pass. On the bounded link the timers run when due, as a driver runs them.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        if !self.wild {
            let mut steps = 0;
            while let Some(t) = self.next_timer().filter(|&t| t <= target) {
                steps += 1;
                assert!(steps < MAX_STEPS, "timers keep firing");
                self.set_now(t);
                self.timers();
            }
        }
        self.set_now(target);
        self.timers();
    }

    /// Invariants that hold after every operation.
    fn check(&self) {
        let max_message = self.config.max_message;
        for s in &self.sides {
            let held = s.session.reassembly_bytes();
            assert!(
                held <= 2 * max_message,
                "{}: {held} bytes reassembling",
                s.name
            );
            if let Some(t) = s.session.poll_timeout() {
                assert!(t > self.now, "{}: timer at {t:?} is overdue", s.name);
            }
            if s.session.is_idle() {
                assert_eq!(
                    s.session.poll_timeout(),
                    None,
                    "{}: idle with a timer",
                    s.name
                );
                assert_eq!(held, 0, "{}: idle while reassembling", s.name);
            }
        }
    }

    /// A perfect link until nothing moves, then check that nothing is stuck.
    fn settle(&mut self) {
        trace!("@{:?} settle", self.now);
        for _ in 0..MAX_SETTLE {
            if let Some((to, w)) = self.pop_oldest() {
                self.deliver_wire(to, &w);
                continue;
            }
            match self.next_timer() {
                Some(t) => {
                    trace!("@{t:?} timers");
                    self.set_now(t);
                    self.timers();
                }
                None => {
                    self.check();
                    return self.quiescent();
                }
            }
        }
        panic!("the pair never falls quiet");
    }

    fn quiescent(&self) {
        for s in &self.sides {
            assert_eq!(s.session.poll_timeout(), None);
            assert_eq!(s.session.reassembly_bytes(), 0, "{}", s.name);
            let state = s.session.tx_state();
            assert_ne!(state, TxState::SynSent, "{}: SYN outstanding", s.name);
            if state == TxState::Open {
                for (id, &seq) in &s.ids {
                    assert!(
                        s.terminal.contains_key(id),
                        "{}: {id:?} (sequence {seq}) neither acked nor lost, direction open",
                        s.name
                    );
                }
            }
        }
    }
}

fn side(agent: bool) -> usize {
    if agent { AGENT } else { MONITOR }
}

/// A reliable message `me` received from `peer`.
fn check_message(strict: bool, me: &mut Side, peer: &mut Side, priority: Priority, payload: &[u8]) {
    let Some((tag, kind, seq)) = marker(payload) else {
        assert!(
            !strict || me.epoch_dirty,
            "{}: unmarked message {payload:02x?} in a clean epoch",
            me.name
        );
        return;
    };
    let rec = peer
        .sent
        .get_mut(seq)
        .filter(|r| tag == peer.tag && kind == RELIABLE && r.kind == RELIABLE);
    let exact = rec
        .as_ref()
        .is_some_and(|r| r.payload == payload && r.priority == priority);
    if let Some(r) = rec.filter(|_| exact) {
        r.delivered += 1;
    }
    if !strict || me.epoch_dirty {
        return;
    }
    let what = format!(
        "{} received {priority:?} message {} {kind} #{seq} ({} bytes) in epoch {}",
        me.name,
        tag as char,
        payload.len(),
        me.epoch
    );
    let Some(r) = peer
        .sent
        .get(seq)
        .filter(|r| tag == peer.tag && r.kind == RELIABLE && kind == RELIABLE)
    else {
        panic!("{what}: the peer never sent it");
    };
    if peer.inc_dirty[r.inc] {
        return;
    }
    assert_eq!(r.priority, priority, "{what}: priority");
    assert!(
        r.payload == payload,
        "{what}: content differs from what was sent ({} bytes)",
        r.payload.len()
    );
    let key = (me.epoch, r.inc, priority);
    if let Some(&last) = me.in_order.get(&key) {
        assert!(
            seq > last,
            "{what}: after #{last} of the same incarnation ({}) and epoch: {}",
            r.inc,
            if seq == last {
                "duplicate"
            } else {
                "out of order"
            }
        );
    }
    me.in_order.insert(key, seq);
    trace!("     checked: {what}");
}

/// A datagram `me` received from `peer`.
fn check_datagram(strict: bool, me: &mut Side, peer: &Side, priority: Priority, payload: &[u8]) {
    let Some((tag, kind, seq)) = marker(payload) else {
        assert!(
            !strict || me.epoch_dirty,
            "{}: unmarked datagram in a clean epoch",
            me.name
        );
        return;
    };
    if !strict || me.epoch_dirty {
        return;
    }
    let what = format!(
        "{} received {priority:?} datagram {} {kind} #{seq} in epoch {}",
        me.name, tag as char, me.epoch
    );
    let Some(r) = peer
        .sent
        .get(seq)
        .filter(|r| tag == peer.tag && r.kind == DATAGRAM && kind == DATAGRAM)
    else {
        panic!("{what}: the peer never sent it");
    };
    if peer.inc_dirty[r.inc] {
        return;
    }
    assert_eq!(r.priority, priority, "{what}: priority");
    assert!(r.payload == payload, "{what}: content differs");
    assert!(
        me.datagrams.insert((me.epoch, seq)),
        "{what}: delivered twice"
    );
    trace!("     checked: {what}");
}

/// `Acked` or `Lost` for `id` at `me`.
fn terminate(strict: bool, me: &mut Side, peer: &Side, id: MessageId, acked: bool) {
    let Some(&seq) = me.ids.get(&id) else {
        panic!("{}: {id:?} was never returned by send", me.name);
    };
    if let Some(was) = me.terminal.insert(id, acked) {
        panic!(
            "{}: {id:?} {} after {}",
            me.name,
            if acked { "acked" } else { "lost" },
            if was { "acked" } else { "lost" }
        );
    }
    let r = &me.sent[seq];
    if acked
        && strict
        && !me.inc_dirty[r.inc]
        && !peer.epoch_dirty
        && peer.forged_in == r.peer_forged_at_send
    {
        assert!(
            r.delivered > 0,
            "{}: {id:?} (#{seq}, {} bytes) acked but {} never delivered it",
            me.name,
            r.payload.len(),
            peer.name
        );
        trace!("     checked: {id:?} acked and delivered");
    }
}
