//! One HVNCP session: the reliable exchange between one local interface and one peer MAC.
//!
//! The session is a state machine with no IO and no clock (quinn-proto style):
//!
//! - feed it received frames with [`Session::handle_frame`] and timer expiries with
//!   [`Session::handle_timeout`];
//! - after either, and after [`Session::send`], drain [`Session::poll_transmit`] until
//!   it returns `None`, and [`Session::poll_event`] likewise;
//! - wake it at [`Session::poll_timeout`].
//!
//! It owns: the SYN handshake and its BEG/END reverse-open rule, acknowledgements, the
//! send window with retransmission (RTO doubling per retry, bounded retries), duplicate
//! detection, fragmentation and per-priority reassembly, and urgent preemption. It knows
//! nothing of message contents: heartbeats and `START_HB` are the endpoint's business.
//!
//! Memory: an idle session is a few dozen bytes inline; everything that only exists while
//! something is in flight lives in a boxed `Active` part that is freed again when the
//! session falls idle. Receiving an unacknowledged datagram (a heartbeat) never allocates.

mod config;
mod rx;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, ConfigError, MAX_FRAGMENTS};
pub use rx::{Assembled, DEDUP_WINDOW, Fragment, Reassembly, ReassemblyError, RxWindow, Seen};

use crate::time::Instant;
use crate::wire::{self, Flags, Frame, FrameBuilder, HvncpRepr, MacAddr, VERSION};

/// Message priority (the PRI flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Normal.
    Normal,
    /// Urgent: sent before any queued normal packet, between two packets of a normal
    /// message if need be (seed 004 L10394-10412).
    Urgent,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::Normal => 0,
            Priority::Urgent => 1,
        }
    }
    fn flag(self) -> Flags {
        match self {
            Priority::Normal => Flags::EMPTY,
            Priority::Urgent => Flags::PRI,
        }
    }
    fn of(flags: Flags) -> Priority {
        if flags.contains(Flags::PRI) {
            Priority::Urgent
        } else {
            Priority::Normal
        }
    }
    /// Urgent first.
    const ORDER: [Priority; 2] = [Priority::Urgent, Priority::Normal];
}

/// Identifies a message given to [`Session::send`], in its [`Event::Acked`] or
/// [`Event::Lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// A packet was retransmitted `max_retries` times without acknowledgement.
    #[error("packet {number} unacknowledged after {retries} retransmissions")]
    RetriesExhausted {
        /// Its packet number.
        number: u8,
        /// Retransmissions made.
        retries: u8,
    },
    /// Our SYN was retransmitted `max_retries` times without acknowledgement: the
    /// handshake failed.
    #[error("our SYN {number} unacknowledged after {retries} retransmissions")]
    SynUnacknowledged {
        /// Its packet number.
        number: u8,
        /// Retransmissions made.
        retries: u8,
    },
    /// Our SYN was acknowledged but the peer never sent its own.
    #[error("the peer acknowledged our SYN but never sent its own")]
    HandshakeTimeout,
    /// The local side closed it.
    #[error("closed locally")]
    Local,
    /// Agent: the session was established but the monitor never sent `START_HB` (it
    /// lost the session on its side, e.g. its half-open peer was evicted,
    /// `docs/hvncp.md` §6.5); the next Hello reopens it.
    #[error("established, but the monitor sent no START_HB")]
    StartHbMissing,
}

impl CloseReason {
    /// True when the session failed during a handshake: our SYN was never
    /// acknowledged, the peer never sent its own, or (agent) the monitor never sent
    /// `START_HB` after it.
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            CloseReason::SynUnacknowledged { .. }
                | CloseReason::HandshakeTimeout
                | CloseReason::StartHbMissing
        )
    }
}

/// Something the application must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer (re)synchronised: its SYN payload (properties). `reverse` is true when
    /// it asked us to open our direction too (BEG); we do so automatically.
    PeerSyn {
        /// SYN payload.
        payload: Vec<u8>,
        /// The SYN carried BEG.
        reverse: bool,
    },
    /// Both directions are open: our SYN was acknowledged and we hold the peer's.
    Established,
    /// A complete acknowledged message from the peer, in order for its priority.
    Message {
        /// Its priority.
        priority: Priority,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// Every packet of a message we sent was acknowledged.
    Acked(MessageId),
    /// A message we accepted was dropped unsent or incompletely acknowledged because
    /// the session was replaced or closed.
    Lost(MessageId),
    /// The session failed; a new SYN is needed.
    Closed(CloseReason),
}

/// What a received frame was, when it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A single-packet unacknowledged message (a heartbeat): its payload, borrowed from
    /// the frame. Never queued, never allocated.
    Datagram(&'a [u8]),
    /// Handled inside the session (SYN, ACK, a fragment, a reliable message now waiting
    /// in [`Session::poll_event`]).
    Consumed,
    /// A packet already delivered: acknowledged again if asked, not delivered.
    Duplicate,
    /// A SYN without `ACKR` on a session whose receiving direction is open: the peer
    /// refreshes the session (seed 004 L10419-10442). Nothing changes.
    Refresh,
}

/// Why a received frame was refused. Each is a counter in the daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Data before the peer's SYN.
    #[error("data before the peer's SYN")]
    NotOpen,
    /// Older than the duplicate window.
    #[error("packet number too old to tell whether it is a duplicate")]
    Stale,
    /// A fragment that cannot be part of the message being reassembled, an oversized
    /// message, or a fragment of a discarded message.
    #[error("fragment refused by reassembly")]
    Reassembly,
    /// Reassembly memory exhausted; the fragment will be retransmitted.
    #[error("reassembly memory budget exhausted")]
    OverBudget,
    /// Payload longer than a packet may carry here.
    #[error("payload longer than the packet limit")]
    Oversized,
    /// A Hello, which is the endpoint's business.
    #[error("hello frames are handled by the endpoint")]
    Hello,
    /// Acknowledgement of nothing we have in flight (late or duplicated ACK).
    #[error("acknowledgement of nothing in flight")]
    UnexpectedAck,
}

/// Why [`Session::send`] or [`Session::emit_datagram`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Longer than `max_message` (or, for a datagram, than one packet).
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Message length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `max_queued_bytes` already waiting.
    #[error("send queue full ({queued} bytes queued)")]
    QueueFull {
        /// Bytes already queued.
        queued: usize,
    },
    /// Datagrams need our direction open (our SYN acknowledged).
    #[error("session not open for sending")]
    NotOpen,
    /// The packet-number span is used up by unacknowledged packets.
    #[error("too many packets unacknowledged to number another one")]
    Blocked,
    /// Frame emission failed (buffer too small).
    #[error(transparent)]
    Wire(#[from] wire::Error),
}

/// State of our sending direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// No SYN sent, or the session failed.
    Closed,
    /// Our SYN is out, unacknowledged.
    SynSent,
    /// Our SYN was acknowledged: data may flow.
    Open,
}

#[derive(Debug)]
struct Outgoing {
    id: MessageId,
    data: Vec<u8>,
    frag_size: usize,
    frags: usize,
    next_frag: usize,
    acked: usize,
}

#[derive(Debug, Clone, Copy)]
enum Sent {
    Syn,
    Fragment { index: u8 },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    number: u8,
    priority: Priority,
    what: Sent,
    deadline: Instant,
    retries: u8,
    /// First transmission: past the retransmission span the receiver may have forgotten
    /// the number, so the packet is not sent again (the session fails instead).
    first_sent: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckOut {
    number: u8,
    priority: Priority,
    syn: bool,
}

#[derive(Debug)]
struct SynOut {
    payload: Vec<u8>,
    flags: Flags,
    number: u8,
    sent: bool,
}

/// The part of a session that exists only while something is in progress.
#[derive(Debug, Default)]
struct Active {
    syn: Option<SynOut>,
    queue: [VecDeque<Outgoing>; 2],
    current: [Option<Outgoing>; 2],
    inflight: Vec<InFlight>,
    acks: VecDeque<AckOut>,
    reassembly: [Reassembly; 2],
    events: VecDeque<Event>,
    queued_bytes: usize,
    handshake_deadline: Option<Instant>,
}

impl Active {
    fn is_idle(&self) -> bool {
        self.syn.is_none()
            && self.queue.iter().all(VecDeque::is_empty)
            && self.current.iter().all(Option::is_none)
            && self.inflight.is_empty()
            && self.acks.is_empty()
            && self
                .reassembly
                .iter()
                .all(|r| !r.in_progress() && !r.is_poisoned())
            && self.events.is_empty()
            && self.handshake_deadline.is_none()
    }
}

/// What every session of one local interface shares: parameters, our SYN payload, our
/// MAC. Held once per endpoint, so that a session itself stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    config: Config,
    syn: Box<[u8]>,
    mac: MacAddr,
    /// `config.dedup_horizon()`, computed once: it is needed for every packet.
    dedup_horizon: Duration,
    /// `config.retransmission_span()`, computed once.
    retransmission_span: Duration,
}

impl Local {
    /// Shared state for the sessions of interface `mac` sending `syn` as SYN payload.
    pub fn new(config: Config, syn: &[u8], mac: MacAddr) -> Local {
        Local {
            dedup_horizon: config.dedup_horizon(),
            retransmission_span: config.retransmission_span(),
            config,
            syn: syn.into(),
            mac,
        }
    }

    /// Protocol parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Payload of our SYNs (our properties, `docs/hvncp.md` §4).
    pub fn syn(&self) -> &[u8] {
        &self.syn
    }

    /// MAC of the local interface.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }
}

/// One session with one peer.
#[derive(Debug)]
pub struct Session {
    local: Arc<Local>,
    peer: MacAddr,
    tx: TxState,
    tx_next: u8,
    /// Number and payload hash of the peer SYN that opened the receive direction.
    peer_syn: Option<(u8, u32)>,
    /// When that SYN was taken.
    peer_syn_at: Instant,
    rx: Option<RxWindow>,
    next_message: u32,
    active: Option<Box<Active>>,
}

impl Session {
    /// A closed session from `local` to `peer`. `local_syn` is the payload of our SYNs
    /// (our properties, `docs/hvncp.md` §4). `initial_number` is the first packet number
    /// we will use; drivers pick it at random so that a restarted peer is not mistaken
    /// for a retransmitting one.
    pub fn new(
        config: Arc<Config>,
        local_syn: Arc<[u8]>,
        local: MacAddr,
        peer: MacAddr,
        initial_number: u8,
    ) -> Session {
        Session::with_local(
            Arc::new(Local::new(*config, &local_syn, local)),
            peer,
            initial_number,
        )
    }

    /// A closed session to `peer` sharing `local` with the other sessions of its
    /// interface (what an endpoint does).
    pub fn with_local(local: Arc<Local>, peer: MacAddr, initial_number: u8) -> Session {
        Session {
            local,
            peer,
            tx: TxState::Closed,
            tx_next: initial_number,
            peer_syn: None,
            peer_syn_at: Instant::ZERO,
            rx: None,
            next_message: 0,
            active: None,
        }
    }

    fn frame_builder(&self) -> FrameBuilder {
        FrameBuilder {
            dst: self.peer,
            src: self.local.mac,
            ethertype: self.local.config.ethertype,
        }
    }

    /// The peer's MAC.
    pub fn peer(&self) -> MacAddr {
        self.peer
    }

    /// The local interface's MAC.
    pub fn local(&self) -> MacAddr {
        self.local.mac
    }

    /// State of our sending direction.
    pub fn tx_state(&self) -> TxState {
        self.tx
    }

    /// True when we hold the peer's SYN and may receive.
    pub fn can_receive(&self) -> bool {
        self.rx.is_some()
    }

    /// True when both directions are open.
    pub fn is_established(&self) -> bool {
        self.tx == TxState::Open && self.rx.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.local.config
    }

    /// Bytes held in reassembly buffers.
    pub fn reassembly_bytes(&self) -> usize {
        self.active
            .as_ref()
            .map_or(0, |a| a.reassembly.iter().map(Reassembly::bytes).sum())
    }

    /// True if nothing is in flight, queued or pending: only the inline part is held.
    pub fn is_idle(&self) -> bool {
        self.active.is_none()
    }

    fn active(&mut self) -> &mut Active {
        self.active.get_or_insert_with(Box::default)
    }

    fn push_event(&mut self, event: Event) {
        self.active().events.push_back(event);
    }

    /// Open our direction (and ask the peer to open its own): the agent's move on a
    /// Hello (`docs/hvncp.md` §3.2). Any previous communication with this peer is
    /// dropped first, its pending messages reported [`Event::Lost`].
    pub fn connect(&mut self) {
        self.abandon_tx();
        // Never reuse the number of a previous SYN of ours: the peer would take the new
        // SYN for a retransmission of the old one.
        self.tx_next = self.tx_next.wrapping_add(1);
        self.rx = None;
        self.peer_syn = None;
        if let Some(a) = self.active.as_mut() {
            for r in &mut a.reassembly {
                r.reset();
            }
            a.acks.clear();
            a.handshake_deadline = None;
        }
        let local = Arc::clone(&self.local);
        self.start_syn(Flags::BEG, &local.syn);
    }

    /// Queue our SYN (with BEG when initiating, END when answering a BEG).
    fn start_syn(&mut self, which: Flags, payload: &[u8]) {
        let number = self.tx_next;
        self.tx = TxState::SynSent;
        self.active().syn = Some(SynOut {
            payload: payload.to_vec(),
            flags: Flags::SYN | Flags::ACKR | which,
            number,
            sent: false,
        });
    }

    /// Drop everything we were sending; report each accepted message as lost.
    fn abandon_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        a.syn = None;
        a.inflight.clear();
        let mut lost = Vec::new();
        for p in 0..2 {
            if let Some(m) = a.current[p].take() {
                lost.push(m.id);
            }
            lost.extend(a.queue[p].drain(..).map(|m| m.id));
        }
        a.queued_bytes = 0;
        a.events.extend(lost.into_iter().map(Event::Lost));
    }

    /// Close the session locally (e.g. the peer's VM was removed). Pending messages are
    /// reported lost; the next SYN reopens it.
    pub fn close(&mut self) {
        self.fail(CloseReason::Local);
    }

    /// Close the session for a reason the application found (e.g.
    /// [`CloseReason::StartHbMissing`]): as [`Session::close`], reported with `reason`.
    pub fn close_because(&mut self, reason: CloseReason) {
        self.fail(reason);
    }

    fn fail(&mut self, reason: CloseReason) {
        self.abandon_tx();
        self.tx = TxState::Closed;
        self.rx = None;
        self.peer_syn = None;
        if let Some(a) = self.active.as_mut() {
            a.acks.clear();
            a.handshake_deadline = None;
            for r in &mut a.reassembly {
                r.reset();
            }
        }
        self.push_event(Event::Closed(reason));
    }

    /// Queue a message for reliable, ordered delivery at `priority`. It waits until our
    /// direction is open, and behind earlier messages of the same priority.
    pub fn send(&mut self, priority: Priority, payload: &[u8]) -> Result<MessageId, SendError> {
        if payload.len() > self.local.config.max_message {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.local.config.max_message,
            });
        }
        let max_queued = self.local.config.max_queued_bytes;
        let frag_size = usize::from(self.local.config.max_payload);
        let id = MessageId(u64::from(self.next_message));
        let a = self.active();
        if a.queued_bytes + payload.len() > max_queued {
            return Err(SendError::QueueFull {
                queued: a.queued_bytes,
            });
        }
        a.queued_bytes += payload.len();
        a.queue[priority.index()].push_back(Outgoing {
            id,
            data: payload.to_vec(),
            frag_size,
            frags: payload.len().div_ceil(frag_size).max(1),
            next_frag: 0,
            acked: 0,
        });
        self.next_message = self.next_message.wrapping_add(1);
        Ok(id)
    }

    /// Emit an unacknowledged single-packet message (a heartbeat) straight into `buf`,
    /// without queuing or allocating. Returns the frame length.
    pub fn emit_datagram(
        &mut self,
        priority: Priority,
        payload: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, SendError> {
        if payload.len() > usize::from(self.local.config.max_payload) {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: usize::from(self.local.config.max_payload),
            });
        }
        if self.tx != TxState::Open {
            return Err(SendError::NotOpen);
        }
        if !self.span_allows(self.tx_next) {
            return Err(SendError::Blocked);
        }
        let header = HvncpRepr {
            version: VERSION,
            number: self.tx_next,
            flags: Flags::BEG | Flags::END | priority.flag(),
            frag_index: 0,
            payload_len: payload_len_u16(payload.len()),
        };
        let len = self.frame_builder().emit(buf, &header, payload)?;
        self.tx_next = self.tx_next.wrapping_add(1);
        Ok(len)
    }

    /// A new packet number may be used only while every unacknowledged packet stays
    /// inside the receiver's duplicate window.
    fn span_allows(&self, number: u8) -> bool {
        self.active.as_ref().is_none_or(|a| {
            a.inflight
                .iter()
                .all(|f| number.wrapping_sub(f.number) < DEDUP_WINDOW)
        })
    }

    /// Process a frame from this session's peer (the caller routed it by source MAC and
    /// parsed it with [`Frame::parse`]).
    pub fn handle_frame<'a>(
        &mut self,
        now: Instant,
        frame: &Frame<'a>,
    ) -> Result<Input<'a>, Refusal> {
        self.handle_frame_within(now, frame, usize::MAX)
    }

    /// As [`Session::handle_frame`], with at most `budget` more bytes of reassembly
    /// memory available to this session (the endpoint's global bound).
    pub fn handle_frame_within<'a>(
        &mut self,
        now: Instant,
        frame: &Frame<'a>,
        budget: usize,
    ) -> Result<Input<'a>, Refusal> {
        let h = frame.header;
        if h.flags.contains(Flags::HEL) {
            return Err(Refusal::Hello);
        }
        if frame.payload.len() > usize::from(self.local.config.max_payload) {
            return Err(Refusal::Oversized);
        }
        if h.flags.contains(Flags::ACK) {
            return self.handle_ack(now, h);
        }
        if h.flags.contains(Flags::SYN) {
            if !h.flags.contains(Flags::ACKR) {
                // A refresh asks for nothing and carries no properties to open with.
                return if self.rx.is_some() {
                    Ok(Input::Refresh)
                } else {
                    Err(Refusal::NotOpen)
                };
            }
            self.handle_syn(now, h, frame.payload);
            return Ok(Input::Consumed);
        }
        let horizon = self.local.dedup_horizon;
        let Some(rx) = self.rx.as_mut() else {
            return Err(Refusal::NotOpen);
        };
        let priority = Priority::of(h.flags);
        let ackr = h.flags.contains(Flags::ACKR);
        match rx.classify(h.number, now, horizon) {
            Seen::Stale => {
                rx.touch(now);
                return Err(Refusal::Stale);
            }
            Seen::Duplicate => {
                rx.touch(now);
                if ackr {
                    self.queue_ack(h.number, priority, false);
                }
                return Ok(Input::Duplicate);
            }
            Seen::New => {}
        }
        if !ackr {
            // Without ACKR a packet is a whole message, whatever its BEG and END bits
            // and fragment index say (docs/hvncp.md §10.1).
            rx.record(h.number, now, horizon);
            return Ok(Input::Datagram(frame.payload));
        }
        let first = h.flags.contains(Flags::BEG);
        let last = h.flags.contains(Flags::END);
        let max_message = self.local.config.max_message;
        let a = self.active.get_or_insert_with(Box::default);
        let reassembly = &mut a.reassembly[priority.index()];
        let outcome = if first && last {
            if reassembly.is_poisoned() {
                Err(ReassemblyError::Poisoned)
            } else {
                Ok(Assembled::Complete(frame.payload.to_vec()))
            }
        } else {
            let fragment = rx::Fragment {
                index: h.frag_index,
                first,
                last,
                data: frame.payload,
            };
            reassembly.add(now, fragment, max_message, budget)
        };
        match outcome {
            Ok(assembled) => {
                if let Some(rx) = self.rx.as_mut() {
                    rx.record(h.number, now, horizon);
                }
                self.queue_ack(h.number, priority, false);
                if let Assembled::Complete(payload) = assembled {
                    self.push_event(Event::Message { priority, payload });
                }
                Ok(Input::Consumed)
            }
            Err(ReassemblyError::OverBudget) => Err(Refusal::OverBudget),
            Err(ReassemblyError::Malformed | ReassemblyError::Poisoned) => Err(Refusal::Reassembly),
        }
    }

    fn queue_ack(&mut self, number: u8, priority: Priority, syn: bool) {
        let ack = AckOut {
            number,
            priority,
            syn,
        };
        let a = self.active();
        if !a.acks.contains(&ack) {
            a.acks.push_back(ack);
        }
    }

    fn handle_ack<'a>(&mut self, now: Instant, h: HvncpRepr) -> Result<Input<'a>, Refusal> {
        let syn = h.flags.contains(Flags::SYN);
        let Some(a) = self.active.as_mut() else {
            return Err(Refusal::UnexpectedAck);
        };
        let exact = a
            .inflight
            .iter()
            .position(|f| f.number == h.number && matches!(f.what, Sent::Syn) == syn);
        // A plain ACK naming our SYN's number acknowledges the SYN (HVNCP.md §2 asks no
        // more): while our SYN is unacknowledged no data packet of ours is in flight, so
        // the number is unambiguous.
        let plain_syn_ack = exact.is_none() && !syn;
        let found = exact.or_else(|| {
            a.inflight
                .iter()
                .position(|f| plain_syn_ack && f.number == h.number && matches!(f.what, Sent::Syn))
        });
        let Some(pos) = found else {
            return Err(Refusal::UnexpectedAck);
        };
        let acked = a.inflight.swap_remove(pos);
        match acked.what {
            Sent::Syn => {
                a.syn = None;
                self.tx = TxState::Open;
                if plain_syn_ack && self.tx_next == acked.number {
                    // The first packet after a SYN shares its number; a second plain ACK
                    // of the SYN (its copies were acknowledged twice) would then clear
                    // that packet unseen. Skipping the number makes such an ACK match
                    // nothing; a receiver never waits for a gap (HVNCP.md §3.5).
                    self.tx_next = self.tx_next.wrapping_add(1);
                }
                if self.rx.is_some() {
                    self.push_event(Event::Established);
                } else {
                    let deadline = now + self.local.config.handshake_timeout;
                    self.active().handshake_deadline = Some(deadline);
                }
            }
            Sent::Fragment { .. } => {
                let p = acked.priority.index();
                if let Some(m) = a.current[p].as_mut() {
                    m.acked += 1;
                    if m.acked == m.frags && m.next_frag == m.frags {
                        let id = m.id;
                        a.queued_bytes -= m.data.len();
                        a.current[p] = None;
                        a.events.push_back(Event::Acked(id));
                    }
                }
            }
        }
        Ok(Input::Consumed)
    }

    fn handle_syn(&mut self, now: Instant, h: HvncpRepr, payload: &[u8]) {
        let digest = syn_digest(payload);
        if self.rx.is_some()
            && self.peer_syn == Some((h.number, digest))
            && now.saturating_duration_since(self.peer_syn_at) <= self.local.retransmission_span
        {
            // A retransmission of the SYN we already hold: our ACK was lost. Later than
            // the sender's retransmission span it cannot be one: it is a restarted peer
            // that opens with the same number and properties (the seed's agent starts
            // at 1, seed 004 L11360), taken as a new SYN below.
            self.queue_ack(h.number, Priority::Normal, true);
            return;
        }
        if let (Some(_), Some((current, current_digest))) = (self.rx.as_ref(), self.peer_syn)
            && current_digest == digest
            && (1..DEDUP_WINDOW).contains(&current.wrapping_sub(h.number))
            && now.saturating_duration_since(self.peer_syn_at) <= self.local.config.rto
        {
            // An older SYN of the same peer, overtaken on the link by the one we took
            // less than an RTO ago (a sender calls `connect` again only after bumping
            // the number, and never retransmits an abandoned SYN, so only a delayed
            // copy can arrive like this). Taking it would reset a receive side that has
            // already acknowledged data. A restarted peer's SYN cannot come this soon.
            return;
        }
        let reverse = h.flags.contains(Flags::BEG);
        self.rx = Some(RxWindow::new(h.number, now));
        self.peer_syn = Some((h.number, digest));
        self.peer_syn_at = now;
        if let Some(a) = self.active.as_mut() {
            for r in &mut a.reassembly {
                r.reset();
            }
            a.handshake_deadline = None;
        }
        self.push_event(Event::PeerSyn {
            payload: payload.to_vec(),
            reverse,
        });
        if reverse {
            // "SYN begin, invalidate the previous communication" (seed 004 L11493).
            self.abandon_tx();
            if let Some(a) = self.active.as_mut() {
                a.acks.clear();
            }
            let local = Arc::clone(&self.local);
            self.start_syn(Flags::END, &local.syn);
            self.queue_ack(h.number, Priority::Normal, true);
        } else {
            self.queue_ack(h.number, Priority::Normal, true);
            if self.tx == TxState::Open {
                self.push_event(Event::Established);
            }
        }
    }
}

impl Session {
    /// Smallest buffer [`Session::poll_transmit`] accepts: one full packet plus headers.
    pub fn min_buffer_len(&self) -> usize {
        (wire::ETHERNET_HEADER_LEN + wire::HEADER_LEN + usize::from(self.local.config.max_payload))
            .max(wire::MIN_FRAME_LEN)
    }

    /// Write the next frame to send into `buf` and return its length, or `None` when
    /// nothing is due at `now` (or `buf` is shorter than [`Session::min_buffer_len`]).
    ///
    /// Order: our SYN when first sent (before its companion ACK, as in seed 004
    /// L11509-11516); then, urgent before normal: acknowledgements, retransmissions due,
    /// new fragments. A SYN is never interleaved with data: no new data packet leaves
    /// while our SYN is unacknowledged.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < self.min_buffer_len() {
            return None;
        }
        let sent = self.next_transmit(now, buf);
        self.compact();
        sent
    }

    fn next_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let frame = &self.frame_builder();
        let Session {
            local,
            tx,
            tx_next,
            active,
            ..
        } = self;
        let config = &local.config;
        let span = local.retransmission_span;
        let a = active.as_deref_mut()?;
        if let Some(syn) = a.syn.as_mut().filter(|s| !s.sent) {
            syn.sent = true;
            a.inflight.push(InFlight {
                number: syn.number,
                priority: Priority::Normal,
                what: Sent::Syn,
                deadline: now + config.rto_for(0),
                retries: 0,
                first_sent: now,
            });
            return emit(frame, buf, syn.number, syn.flags, 0, &syn.payload);
        }
        for priority in Priority::ORDER {
            let p = priority.index();
            if let Some(pos) = a.acks.iter().position(|k| k.priority == priority) {
                let k = a.acks.remove(pos)?;
                let mut flags = Flags::ACK | priority.flag();
                if k.syn {
                    flags = flags | Flags::SYN;
                }
                return emit(frame, buf, k.number, flags, 0, &[]);
            }
            let due = a
                .inflight
                .iter_mut()
                .filter(|f| {
                    f.priority == priority
                        && f.deadline <= now
                        && f.retries < config.max_retries
                        && now.saturating_duration_since(f.first_sent) <= span
                })
                .min_by_key(|f| f.deadline);
            if let Some(f) = due {
                f.retries += 1;
                f.deadline = now + config.rto_for(f.retries);
                let (number, what) = (f.number, f.what);
                return match what {
                    Sent::Syn => {
                        let syn = a.syn.as_ref()?;
                        emit(frame, buf, number, syn.flags, 0, &syn.payload)
                    }
                    Sent::Fragment { index } => {
                        let m = a.current[p].as_ref()?;
                        emit_fragment(frame, buf, number, priority, m, usize::from(index))
                    }
                };
            }
            if *tx != TxState::Open || a.syn.is_some() {
                continue;
            }
            if a.current[p].is_none() {
                a.current[p] = a.queue[p].pop_front();
            }
            let Some(m) = a.current[p].as_mut() else {
                continue;
            };
            let number = *tx_next;
            let span_ok = a
                .inflight
                .iter()
                .all(|f| number.wrapping_sub(f.number) < DEDUP_WINDOW);
            if m.next_frag < m.frags && a.inflight.len() < usize::from(config.window) && span_ok {
                let index = m.next_frag;
                m.next_frag += 1;
                *tx_next = tx_next.wrapping_add(1);
                a.inflight.push(InFlight {
                    number,
                    priority,
                    what: Sent::Fragment {
                        index: u8::try_from(index).unwrap_or(u8::MAX),
                    },
                    deadline: now + config.rto_for(0),
                    retries: 0,
                    first_sent: now,
                });
                return emit_fragment(frame, buf, number, priority, m, index);
            }
        }
        None
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.active.as_mut()?.events.pop_front();
        self.compact();
        event
    }

    /// When [`Session::handle_timeout`] must next run, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.active.as_ref()?;
        let timeout = self.local.config.reassembly_timeout;
        a.inflight
            .iter()
            .map(|f| f.deadline)
            .chain(a.handshake_deadline)
            .chain(a.reassembly.iter().filter_map(|r| r.deadline(timeout)))
            .min()
    }

    /// Act on expired timers: fail the session when a packet ran out of retries or the
    /// handshake stalled; discard stale partial messages. Retransmissions that are due
    /// are then produced by [`Session::poll_transmit`]. Returns how many partial
    /// messages were discarded (`drop_reassembly`).
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let max_retries = self.local.config.max_retries;
        let span = self.local.retransmission_span;
        let timeout = self.local.config.reassembly_timeout;
        let Some(a) = self.active.as_mut() else {
            return 0;
        };
        let mut discarded = 0;
        for r in &mut a.reassembly {
            if r.expire(now, timeout).is_some() {
                discarded += 1;
            }
        }
        let exhausted = a
            .inflight
            .iter()
            .find(|f| {
                f.deadline <= now
                    && (f.retries >= max_retries
                        || now.saturating_duration_since(f.first_sent) > span)
            })
            .map(|f| match f.what {
                Sent::Syn => CloseReason::SynUnacknowledged {
                    number: f.number,
                    retries: f.retries,
                },
                Sent::Fragment { .. } => CloseReason::RetriesExhausted {
                    number: f.number,
                    retries: f.retries,
                },
            });
        let stalled = a.handshake_deadline.is_some_and(|d| d <= now);
        if let Some(reason) = exhausted {
            self.fail(reason);
        } else if stalled {
            self.fail(CloseReason::HandshakeTimeout);
        }
        self.compact();
        discarded
    }

    /// Free the boxed part once nothing is left in it.
    fn compact(&mut self) {
        if self.active.as_ref().is_some_and(|a| a.is_idle()) {
            self.active = None;
        }
    }
}

fn emit(
    frame: &FrameBuilder,
    buf: &mut [u8],
    number: u8,
    flags: Flags,
    frag_index: u8,
    payload: &[u8],
) -> Option<usize> {
    let header = HvncpRepr {
        version: VERSION,
        number,
        flags,
        frag_index,
        payload_len: payload_len_u16(payload.len()),
    };
    frame.emit(buf, &header, payload).ok()
}

fn emit_fragment(
    frame: &FrameBuilder,
    buf: &mut [u8],
    number: u8,
    priority: Priority,
    m: &Outgoing,
    index: usize,
) -> Option<usize> {
    let start = (index * m.frag_size).min(m.data.len());
    let end = (start + m.frag_size).min(m.data.len());
    let mut flags = Flags::ACKR | priority.flag();
    if index == 0 {
        flags = flags | Flags::BEG;
    }
    if index + 1 == m.frags {
        flags = flags | Flags::END;
    }
    let frag_index = u8::try_from(index).ok()?;
    emit(frame, buf, number, flags, frag_index, &m.data[start..end])
}

fn payload_len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// A 32-bit digest of a SYN payload, to recognise its retransmissions.
fn syn_digest(payload: &[u8]) -> u32 {
    let mut h = foldhash::fast::FixedState::with_seed(0x4856_4e43).build_hasher();
    h.write(payload);
    let v = h.finish();
    let folded = (v ^ (v >> 32)).to_le_bytes();
    u32::from_le_bytes([folded[0], folded[1], folded[2], folded[3]])
}

#[cfg(test)]
mod tests;
