//! The sessions of one local interface, keyed by peer MAC, with the behaviour of a host
//! monitor or of an agent on top of them.
//!
//! Like [`Session`], an [`Endpoint`] does no IO and reads no clock. A driver:
//!
//! 1. hands every received frame to [`Endpoint::handle_frame`];
//! 2. calls [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] is reached;
//! 3. after either, sends every frame [`Endpoint::poll_transmit`] yields and handles
//!    every [`Endpoint::poll_event`].
//!
//! Role behaviour (`docs/hvncp.md` §3):
//!
//! - **Monitor**: broadcasts Hello at start and every `hello_period`; answers an agent's
//!   SYN (refusing one of a previous incarnation of the agent, `docs/hvncp.md` §3.8);
//!   once the session is established reports the VM as discovered and sends `START_HB`
//!   (with `period_ms=…` unless the period is the default 10 s); records heartbeats,
//!   repeated numbers included (no event, no allocation: the returned
//!   [`Outcome::Heartbeat`] tells the caller); reports `SHDN`, `DBELL` and other
//!   messages as events.
//! - **Agent**: on a Hello from a monitor it has no session with, or whose identifier
//!   changed (the monitor restarted), opens a session with SYN+BEG; on `START_HB`
//!   heartbeats at the commanded period; on `STOP_HB` stops; [`Endpoint::shutdown`]
//!   sends `SHDN:DAEMON`.
//!
//! The hot path — a heartbeat from a known, open peer — is one parse, one hash lookup,
//! one duplicate-window update and one store: no allocation, no lock, no event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;

use crate::message::{AgentSyn, HelloId, Message, MonitorSyn, PERIOD_MS_RANGE, Uuid};
use crate::session::{self, CloseReason, Input, MessageId, Priority, SendError, Session, TxState};
use crate::stats::Counters;
use crate::time::Instant;
use crate::wire::{self, Flags, Frame, FrameBuilder, HvncpRepr, MacAddr, VERSION};

/// Index of a peer in an endpoint's table. Stable while the peer is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

impl PeerId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// What this endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A host monitor (`hmd`).
    Monitor {
        /// This incarnation's Hello identifier; a new one tells agents we restarted.
        hello: HelloId,
        /// Hello broadcast period (default 30 s, seed 004 L8313).
        hello_period: Duration,
        /// Heartbeat period commanded in `START_HB` (default 10 s, seed 004 L9021).
        hb_period: Duration,
    },
    /// A VM agent (`vmmd`).
    Agent {
        /// OS type announced in the SYN (`linux`, `aix`, …).
        ostype: String,
    },
}

/// Everything an endpoint needs to know about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Monitor or agent, with its role parameters.
    pub role: Role,
    /// MAC of the local interface.
    pub local_mac: MacAddr,
    /// Our identity: the monitor's UUID, or the VM's.
    pub uuid: Uuid,
    /// Protocol parameters shared by all sessions.
    pub session: session::Config,
    /// Largest number of peers in the table. When it is full, a new peer takes the
    /// place of the oldest half-open one if that one is older than `half_open_grace`;
    /// with none, it is refused (`drop_table_full`, or `drop_half_open_full` while the
    /// oldest half-open peer is younger).
    pub max_peers: usize,
    /// Largest number of half-open peers (never established) in the table, at most
    /// `max_peers`. Past it, a new peer evicts the oldest half-open one if that one has
    /// been half-open for `half_open_grace` (`peers_evicted`), and is refused without
    /// any state otherwise (`drop_half_open_full`): forged source MACs cost a bounded
    /// table, never displace an established peer, and never a handshake in progress
    /// (docs/hvncp.md §6.5).
    pub max_half_open: usize,
    /// How long a half-open peer is safe from eviction: its handshake's time to
    /// complete. `session.rto..=session.retransmission_span()`; default 3 s
    /// ([`DEFAULT_HALF_OPEN_GRACE`]).
    pub half_open_grace: Duration,
    /// Reassembly memory for all sessions together, in bytes.
    pub reassembly_budget: usize,
    /// Seed for initial packet numbers (drivers pass something random).
    pub seed: u64,
    /// Agent: the incarnation announced in our SYN (`inc`, docs/hvncp.md §3.8), the same
    /// for every interface of one agent process. [`EndpointConfig::agent`] fills in
    /// [`process_incarnation`]; `None` announces none, as the seed's agents. A monitor
    /// ignores it.
    pub incarnation: Option<u64>,
}

impl EndpointConfig {
    /// Check every value against its range; the error names the key and the range.
    pub fn validate(&self) -> Result<(), session::ConfigError> {
        self.session.validate()?;
        let err = |key, value: String, allowed| session::ConfigError {
            key,
            value,
            allowed,
        };
        let periods = Duration::from_millis(u64::from(*PERIOD_MS_RANGE.start()))
            ..=Duration::from_millis(u64::from(*PERIOD_MS_RANGE.end()));
        if let Role::Monitor {
            hello_period,
            hb_period,
            ..
        } = &self.role
        {
            if !periods.contains(hello_period) {
                return Err(err(
                    "hello_period",
                    format!("{hello_period:?}"),
                    "100 ms..=1 h",
                ));
            }
            if !periods.contains(hb_period) {
                return Err(err("hb_period", format!("{hb_period:?}"), "100 ms..=1 h"));
            }
        }
        if let Role::Agent { ostype } = &self.role
            && AgentSyn::parse(
                format!(
                    "uuid={}:ostype={ostype}:verVmmLower=2.0:verVmmUpper=2.0",
                    self.uuid
                )
                .as_bytes(),
            )
            .is_err()
        {
            return Err(err(
                "ostype",
                format!("{ostype:?}"),
                "1..=32 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if self.max_peers == 0 || self.max_peers > MAX_PEERS_LIMIT {
            return Err(err("max_peers", self.max_peers.to_string(), "1..=16777216"));
        }
        if self.max_half_open == 0 || self.max_half_open > self.max_peers {
            return Err(err(
                "max_half_open",
                self.max_half_open.to_string(),
                "1..=max_peers",
            ));
        }
        if self.half_open_grace < self.session.rto
            || self.half_open_grace > self.session.retransmission_span()
        {
            return Err(err(
                "half_open_grace",
                format!("{:?}", self.half_open_grace),
                "session.rto..=the retransmission span (200 ms..=12.6 s by default)",
            ));
        }
        if self.reassembly_budget < self.session.max_message {
            return Err(err(
                "reassembly_budget",
                self.reassembly_budget.to_string(),
                "at least session.max_message",
            ));
        }
        Ok(())
    }

    /// A monitor with the default periods.
    pub fn monitor(local_mac: MacAddr, uuid: Uuid, hello: HelloId) -> EndpointConfig {
        EndpointConfig {
            role: Role::Monitor {
                hello,
                hello_period: Duration::from_secs(30),
                hb_period: Duration::from_secs(10),
            },
            local_mac,
            uuid,
            session: session::Config::default(),
            max_peers: DEFAULT_MONITOR_MAX_PEERS,
            max_half_open: DEFAULT_MONITOR_MAX_HALF_OPEN,
            half_open_grace: DEFAULT_HALF_OPEN_GRACE,
            reassembly_budget: 64 << 20,
            seed: random_seed() ^ local_mac.to_u64(),
            incarnation: None,
        }
    }

    /// An agent.
    pub fn agent(local_mac: MacAddr, uuid: Uuid, ostype: &str) -> EndpointConfig {
        EndpointConfig {
            role: Role::Agent {
                ostype: ostype.to_owned(),
            },
            local_mac,
            uuid,
            session: session::Config::default(),
            max_peers: 64,
            max_half_open: 16,
            half_open_grace: DEFAULT_HALF_OPEN_GRACE,
            reassembly_budget: 4 << 20,
            seed: random_seed() ^ local_mac.to_u64(),
            incarnation: Some(process_incarnation()),
        }
    }
}

/// Highest `max_peers` accepted (peer ids are `u32`, links in the half-open list too).
pub const MAX_PEERS_LIMIT: usize = 1 << 24;

/// A monitor's default `max_peers`: 100,000 VMs on one interface with 31 % to spare
/// (VMs migrating in before the ones that left are forgotten): about 30 MiB of table at
/// the ~230 bytes per idle established peer measured by `dataplane/tests/alloc.rs`.
pub const DEFAULT_MONITOR_MAX_PEERS: usize = 131_072;

/// A monitor's default `max_half_open`: a burst of 16,384 simultaneous handshakes (a
/// whole host group re-pairing after a monitor restart paces its SYNs far below this)
/// while forged MACs can hold at most 1/8 of the table.
pub const DEFAULT_MONITOR_MAX_HALF_OPEN: usize = 16_384;

/// Default `half_open_grace`: 3 s = `rto` × (1 + 2 + 4 + 8) with the default 200 ms
/// `rto`, i.e. our SYN sent four times (at 0, 0.2, 0.6 and 1.4 s) and the full timeout
/// after the fourth waited. A real handshake takes one round trip, a few more on a
/// lossy link or behind a loaded monitor's receive queue; a peer that answered none of
/// four copies in 3 s is, on a link where others pair, a forged MAC or a dead peer.
/// Under a flood a forged peer holds its place for 3 s at least and then gives it up:
/// places free up at `max_half_open` / 3 s (5,461 a second with the defaults), shared
/// between the flood and the real agents pairing meanwhile, which resend a refused SYN
/// 5 times and try again at every Hello.
pub const DEFAULT_HALF_OPEN_GRACE: Duration = Duration::from_secs(3);

/// Most refused MACs remembered so that their data does not make us open a session
/// to them from our side.
const REFUSED_MEMORY: usize = 1024;

/// "No peer" in the half-open list.
const NIL: u32 = u32::MAX;

/// 64 bits from the process's hash randomness (no clock, no extra dependency): a
/// restarted daemon must not reuse its previous initial packet numbers.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x4856_4e43_u64)
}

/// This process's agent incarnation: 64 random bits drawn once, at the first call, and
/// the same for every endpoint of the process afterwards (docs/hvncp.md §3.8).
/// Never 0, which a monitor reads as "no incarnation".
pub fn process_incarnation() -> u64 {
    static INCARNATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(|| random_seed().max(1))
}

/// What happened to one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A heartbeat from this peer (monitor role). The caller updates its miss
    /// detection; [`Endpoint::last_heartbeat`] has the time too.
    Heartbeat(PeerId),
    /// Accepted; look at [`Endpoint::poll_event`] and [`Endpoint::poll_transmit`].
    Handled,
    /// Refused and counted.
    Dropped(Drop),
}

/// Why a frame was refused (each is also a counter in [`Counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The wire layer refused it.
    Wire(wire::Error),
    /// The session refused it.
    Session(session::Refusal),
    /// Addressed to someone else, or sent by us.
    NotForUs,
    /// From a MAC with no session, and not opening one.
    NoSession,
    /// The table is full of established peers.
    TableFull,
    /// The half-open places are all taken by handshakes younger than
    /// `half_open_grace` (docs/hvncp.md §6.5): nothing was created; the peer retries.
    HalfOpenFull,
    /// A payload that is not a valid message here.
    Malformed,
    /// A SYN from a previous incarnation of the agent that holds this session
    /// (docs/hvncp.md §3.8).
    OldIncarnation,
}

/// Something the application of the endpoint must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Agent: a monitor we had no session with sent a Hello.
    MonitorFound {
        /// The monitor's session.
        peer: PeerId,
        /// Its MAC.
        mac: MacAddr,
        /// Its Hello identifier.
        hello: HelloId,
    },
    /// Agent: a known monitor sent a new Hello identifier (it restarted); the old
    /// session was dropped and a new one is being opened.
    MonitorRestarted {
        /// The monitor's session.
        peer: PeerId,
        /// The new identifier.
        hello: HelloId,
    },
    /// Monitor: an agent synchronised; `uuid` is the VM it claims to be. The
    /// application may refuse it with [`Endpoint::refuse`] (e.g. the UUID belongs to
    /// another MAC). Under a flood of new MACs the peer may have been evicted (half-open
    /// peers go oldest first) before the event is read, and its id given to another:
    /// act on it only while [`Endpoint::peer_mac`] still returns `mac`.
    AgentSyn {
        /// The agent's session.
        peer: PeerId,
        /// Its MAC.
        mac: MacAddr,
        /// The VM UUID from its SYN.
        uuid: Uuid,
        /// Its OS type.
        ostype: String,
        /// Oldest protocol version it speaks.
        ver_lower: crate::wire::Version,
        /// Newest protocol version it speaks.
        ver_upper: crate::wire::Version,
    },
    /// Both directions are open. Monitor: the VM is discovered and `START_HB` is on
    /// its way. Agent: the monitor is connected.
    Established {
        /// The session.
        peer: PeerId,
        /// The peer's MAC.
        mac: MacAddr,
        /// The peer's UUID (VM or monitor).
        uuid: Uuid,
    },
    /// Agent: the monitor commanded heartbeats at this period.
    HeartbeatStarted {
        /// The monitor's session.
        peer: PeerId,
        /// Period.
        period: Duration,
    },
    /// Agent: the monitor stopped monitoring us.
    HeartbeatStopped {
        /// The monitor's session.
        peer: PeerId,
    },
    /// Monitor: the agent is stopping gracefully (`SHDN:DAEMON`): the VM is SUSPENDED,
    /// not missing.
    Shutdown {
        /// The agent's session.
        peer: PeerId,
    },
    /// Monitor: application status changed (`DBELL`).
    Doorbell {
        /// The agent's session.
        peer: PeerId,
        /// The notification vector.
        vector: u64,
    },
    /// Any other well-formed message (application reporting, …), for the application.
    Message {
        /// The session.
        peer: PeerId,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A message sent with [`Endpoint::send`] was fully acknowledged.
    Delivered {
        /// The session.
        peer: PeerId,
        /// The message.
        id: MessageId,
    },
    /// A message sent with [`Endpoint::send`] was abandoned (session replaced/closed).
    Lost {
        /// The session.
        peer: PeerId,
        /// The message.
        id: MessageId,
    },
    /// The endpoint refused a SYN (bad properties, incompatible version); not raised
    /// for [`Endpoint::refuse`], whose caller knows.
    SynRefused {
        /// The session.
        peer: PeerId,
        /// The peer's MAC.
        mac: MacAddr,
        /// Why.
        why: String,
    },
    /// The session failed or was closed; it reopens on the next Hello/SYN.
    Closed {
        /// The session.
        peer: PeerId,
        /// The peer's MAC.
        mac: MacAddr,
        /// Why.
        reason: CloseReason,
    },
}

/// What an agent keeps per monitor.
#[derive(Debug)]
struct AgentSide {
    /// The monitor's Hello identifier.
    hello: Option<HelloId>,
    /// Next heartbeat to send, while heartbeating.
    next_heartbeat: Option<Instant>,
    /// Heartbeat period in milliseconds.
    hb_period_ms: u32,
    /// A heartbeat is due.
    hb_due: bool,
    /// Established and waiting for `START_HB`: the session is closed if none has
    /// come by then (the monitor lost its side, docs/hvncp.md §6.5).
    start_hb_by: Option<Instant>,
}

impl Default for AgentSide {
    fn default() -> Self {
        AgentSide {
            hello: None,
            next_heartbeat: None,
            hb_period_ms: DEFAULT_HB_PERIOD_MS,
            hb_due: false,
            start_hb_by: None,
        }
    }
}

impl Peer {
    fn agent_mut(&mut self) -> &mut AgentSide {
        self.agent.get_or_insert_with(Box::default)
    }
    fn hello(&self) -> Option<HelloId> {
        self.agent.as_ref().and_then(|a| a.hello)
    }
    fn next_heartbeat(&self) -> Option<Instant> {
        self.agent.as_ref().and_then(|a| a.next_heartbeat)
    }
    fn start_hb_by(&self) -> Option<Instant> {
        self.agent.as_ref().and_then(|a| a.start_hb_by)
    }
    fn stop_heartbeats(&mut self) {
        if let Some(a) = self.agent.as_deref_mut() {
            a.next_heartbeat = None;
            a.hb_due = false;
            a.start_hb_by = None;
        }
    }
}

/// How many previous incarnations of one agent a monitor remembers.
pub const REMEMBERED_INCARNATIONS: usize = 8;

/// Monitor: the incarnations (`inc` of its SYNs) of the agent at one MAC: the current
/// one, and the last [`REMEMBERED_INCARNATIONS`] it replaced, whose SYNs are refused
/// however late they arrive (docs/hvncp.md §3.8). The history is allocated only once an
/// agent restarted; an idle peer pays 16 bytes.
#[derive(Debug, Default)]
struct Incarnations {
    /// The incarnation of the SYN the session holds (or held last); 0 for an agent that
    /// announces none (an announced 0 counts as none).
    current: u64,
    /// Previous incarnations, oldest overwritten first.
    previous: Option<Box<History>>,
}

#[derive(Debug, Default)]
struct History {
    ids: [u64; REMEMBERED_INCARNATIONS],
    len: u8,
    next: u8,
}

impl Incarnations {
    /// True when `inc` is one this agent already replaced.
    fn is_previous(&self, inc: u64) -> bool {
        inc != 0
            && inc != self.current
            && self.previous.as_ref().is_some_and(|h| {
                h.ids
                    .get(..usize::from(h.len))
                    .is_some_and(|ids| ids.contains(&inc))
            })
    }

    /// The agent's SYN announcing `inc` (or none) was taken.
    fn observe(&mut self, inc: Option<u64>) {
        let inc = inc.unwrap_or(0);
        if inc != 0 && inc == self.current {
            return;
        }
        let old = std::mem::replace(&mut self.current, inc);
        if old == 0 {
            return;
        }
        let h = self.previous.get_or_insert_with(Box::default);
        let len = usize::from(h.len);
        if !h.ids.get(..len).is_some_and(|ids| ids.contains(&old)) {
            let slot = usize::from(h.next) % REMEMBERED_INCARNATIONS;
            if let Some(id) = h.ids.get_mut(slot) {
                *id = old;
            }
            h.next = u8::try_from((slot + 1) % REMEMBERED_INCARNATIONS).unwrap_or(0);
            h.len = u8::try_from((len + 1).min(REMEMBERED_INCARNATIONS)).unwrap_or(u8::MAX);
        }
    }
}

#[derive(Debug)]
struct Peer {
    session: Session,
    /// The peer's UUID from its SYN.
    uuid: Option<Uuid>,
    /// Monitor: time of the last heartbeat.
    /// [`Instant::FAR_FUTURE`] before the first (not an `Option`: 8 bytes less in a
    /// table of 100,000 peers).
    last_heartbeat: Instant,
    /// Agent: the state toward this monitor (boxed: a monitor's table holds many peers
    /// and needs none of it).
    agent: Option<Box<AgentSide>>,
    /// In the ready queue.
    queued: bool,
    /// The session was established once: the peer left the half-open list for good
    /// and is never evicted.
    settled: bool,
    /// Half-open list links (older and newer neighbour), `NIL` at the ends or when
    /// settled.
    older: u32,
    newer: u32,
    /// When the peer entered the table: a half-open peer is evicted only once it is
    /// older than `half_open_grace`.
    created: Instant,
    /// Monitor: the incarnations the agent at this MAC announced.
    incarnations: Incarnations,
    /// Reassembly bytes of this session counted in the endpoint's total.
    reassembly_counted: u32,
    /// Earliest deadline scheduled in the timer heap for this peer.
    timer_at: Instant,
}

/// The session table of one local interface and its role behaviour.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    local: Arc<session::Local>,
    index: HashMap<MacAddr, PeerId, foldhash::fast::RandomState>,
    peers: Vec<Option<Peer>>,
    free: Vec<PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    due_scratch: Vec<(Instant, PeerId)>,
    ready: VecDeque<PeerId>,
    events: VecDeque<EndpointEvent>,
    next_hello: Instant,
    hello_due: bool,
    reassembly_bytes: usize,
    /// Agent: `shutdown` was called; Hellos no longer open sessions.
    shutting_down: bool,
    rng: u64,
    /// Half-open peers, oldest first (an intrusive list through `Peer::older/newer`).
    half_open: HalfOpen,
    /// MACs whose SYN the application refused lately.
    refused: RefusedMacs,
    stats: Counters,
}

/// Ends and length of the list of half-open peers.
#[derive(Debug)]
struct HalfOpen {
    oldest: u32,
    newest: u32,
    len: usize,
}

/// The last [`REFUSED_MEMORY`] MACs refused with [`Endpoint::refuse`]: a tombstone that
/// keeps us from opening a session to them from our side when they send data. Fixed
/// size, allocated once.
#[derive(Debug)]
struct RefusedMacs {
    set: hashbrown::HashSet<MacAddr, foldhash::fast::RandomState>,
    order: VecDeque<MacAddr>,
}

impl RefusedMacs {
    fn new() -> RefusedMacs {
        RefusedMacs {
            set: hashbrown::HashSet::with_capacity_and_hasher(REFUSED_MEMORY, Default::default()),
            order: VecDeque::with_capacity(REFUSED_MEMORY),
        }
    }
    fn insert(&mut self, mac: MacAddr) {
        if !self.set.insert(mac) {
            return;
        }
        if self.order.len() == REFUSED_MEMORY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(mac);
    }
    fn contains(&self, mac: &MacAddr) -> bool {
        !self.set.is_empty() && self.set.contains(mac)
    }
}

/// Default heartbeat period when `START_HB` carries none (seed 004 L9021).
const DEFAULT_HB_PERIOD_MS: u32 = 10_000;

impl Endpoint {
    /// An endpoint starting at `now`. A monitor broadcasts its first Hello at once.
    pub fn new(config: EndpointConfig, now: Instant) -> Result<Endpoint, session::ConfigError> {
        config.validate()?;
        let mut local_syn = Vec::new();
        match &config.role {
            Role::Monitor { .. } => MonitorSyn {
                uuid: config.uuid,
                ver_running: VERSION,
            }
            .encode(&mut local_syn),
            Role::Agent { ostype } => AgentSyn {
                uuid: config.uuid,
                ostype,
                ver_lower: VERSION,
                ver_upper: VERSION,
                inc: config.incarnation,
            }
            .encode(&mut local_syn),
        }
        let is_monitor = matches!(config.role, Role::Monitor { .. });
        // The first Hello goes at once (hello_due), the next one a period later.
        let next_hello = match &config.role {
            Role::Monitor { hello_period, .. } => now + *hello_period,
            Role::Agent { .. } => Instant::FAR_FUTURE,
        };
        let capacity = if is_monitor { 1024 } else { 4 };
        Ok(Endpoint {
            local: Arc::new(session::Local::new(
                config.session,
                &local_syn,
                config.local_mac,
            )),
            index: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            peers: Vec::with_capacity(capacity),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            due_scratch: Vec::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            next_hello,
            hello_due: is_monitor,
            reassembly_bytes: 0,
            shutting_down: false,
            rng: config.seed ^ 0x9e37_79b9_7f4a_7c15,
            half_open: HalfOpen {
                oldest: NIL,
                newest: NIL,
                len: 0,
            },
            refused: RefusedMacs::new(),
            stats: Counters::default(),
            config,
        })
    }

    /// Reserve room for `additional` more peers (avoids rehashing under load).
    pub fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional);
        self.peers.reserve(additional);
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Counters {
        &self.stats
    }

    /// Number of peers in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The peer with this MAC.
    pub fn peer_by_mac(&self, mac: MacAddr) -> Option<PeerId> {
        self.index.get(&mac).copied()
    }

    fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.index()).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// A peer's MAC.
    pub fn peer_mac(&self, id: PeerId) -> Option<MacAddr> {
        self.peer(id).map(|p| p.session.peer())
    }

    /// A peer's UUID, once its SYN was accepted.
    pub fn peer_uuid(&self, id: PeerId) -> Option<Uuid> {
        self.peer(id).and_then(|p| p.uuid)
    }

    /// Monitor: when the last heartbeat from this peer arrived.
    pub fn last_heartbeat(&self, id: PeerId) -> Option<Instant> {
        self.peer(id)
            .map(|p| p.last_heartbeat)
            .filter(|&t| t != Instant::FAR_FUTURE)
    }

    /// True when the session with this peer is established.
    pub fn is_established(&self, id: PeerId) -> bool {
        self.peer(id).is_some_and(|p| p.session.is_established())
    }

    /// True when the session with this peer was established at least once (the peer
    /// is then never evicted, docs/hvncp.md §6.5); false for a handshake that never
    /// completed.
    pub fn was_established(&self, id: PeerId) -> bool {
        self.peer(id).is_some_and(|p| p.settled)
    }

    /// Agent: true while heartbeating to this monitor.
    pub fn is_heartbeating(&self, id: PeerId) -> bool {
        self.peer(id).is_some_and(|p| p.next_heartbeat().is_some())
    }

    /// Bytes of one table entry (the session and its role state, without the boxed
    /// part that exists only while something is in flight).
    pub const PEER_SIZE: usize = std::mem::size_of::<Option<Peer>>();

    /// Every peer id in the table.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        // Slab order, not hash order: deterministic for simulations.
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .filter_map(|(i, _)| u32::try_from(i).ok().map(PeerId))
    }

    /// Bytes held in reassembly buffers, all sessions together.
    pub fn reassembly_bytes(&self) -> usize {
        self.reassembly_bytes
    }

    fn next_initial_number(&mut self) -> u8 {
        // splitmix64: cheap, deterministic from the seed.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_le_bytes()[0]
    }

    /// Make room for one more peer at `now`: when the half-open limit is reached, or
    /// the table is full and holds a half-open peer, evict the oldest half-open peer if
    /// it has been half-open for `half_open_grace`. Refused otherwise, creating
    /// nothing: `drop_half_open_full` while that peer is younger (its handshake may be
    /// in progress, and the new peer retries), `drop_table_full` when the table is full
    /// of established peers. O(1).
    fn make_room(&mut self, now: Instant) -> Result<(), Drop> {
        let full = self.index.len() >= self.config.max_peers;
        if !full && self.half_open.len < self.config.max_half_open {
            return Ok(());
        }
        let Some(oldest) = self.peer(PeerId(self.half_open.oldest)) else {
            self.stats.drop_table_full += 1;
            return Err(Drop::TableFull);
        };
        if now.saturating_duration_since(oldest.created) < self.config.half_open_grace {
            self.stats.drop_half_open_full += 1;
            return Err(Drop::HalfOpenFull);
        }
        // Silently: a half-open peer was never reported established, so the
        // application holds nothing for it but what an `AgentSyn` told it, and that
        // id may now name the next peer (check `peer_mac` before acting on an old
        // event's id).
        self.forget(PeerId(self.half_open.oldest));
        self.stats.peers_evicted += 1;
        Ok(())
    }

    fn insert_peer(&mut self, now: Instant, mac: MacAddr) -> Result<PeerId, Drop> {
        self.make_room(now)?;
        let number = self.next_initial_number();
        let session = Session::with_local(Arc::clone(&self.local), mac, number);
        let peer = Peer {
            session,
            uuid: None,
            last_heartbeat: Instant::FAR_FUTURE,
            agent: None,
            queued: false,
            settled: false,
            older: NIL,
            newer: NIL,
            created: now,
            incarnations: Incarnations::default(),
            reassembly_counted: 0,
            timer_at: Instant::FAR_FUTURE,
        };
        let id = if let Some(id) = self.free.pop() {
            self.peers[id.index()] = Some(peer);
            id
        } else {
            // Below MAX_PEERS_LIMIT (validated), so always a u32.
            let id = PeerId(u32::try_from(self.peers.len()).map_err(|_| Drop::TableFull)?);
            self.peers.push(Some(peer));
            id
        };
        self.index.insert(mac, id);
        self.link_newest(id);
        self.stats.peers_added += 1;
        Ok(id)
    }

    /// Append a peer to the half-open list (it is the newest).
    fn link_newest(&mut self, id: PeerId) {
        let newest = self.half_open.newest;
        if let Some(peer) = self.peer_mut(id) {
            peer.older = newest;
            peer.newer = NIL;
        } else {
            return;
        }
        match self.peers.get_mut(newest as usize).and_then(Option::as_mut) {
            Some(prev) => prev.newer = id.0,
            None => self.half_open.oldest = id.0,
        }
        self.half_open.newest = id.0;
        self.half_open.len += 1;
    }

    /// Take a peer out of the half-open list, if it is in it.
    fn unlink(&mut self, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer.settled {
            return;
        }
        let (older, newer) = (peer.older, peer.newer);
        peer.older = NIL;
        peer.newer = NIL;
        match self.peers.get_mut(older as usize).and_then(Option::as_mut) {
            Some(p) => p.newer = newer,
            None => self.half_open.oldest = newer,
        }
        match self.peers.get_mut(newer as usize).and_then(Option::as_mut) {
            Some(p) => p.older = older,
            None => self.half_open.newest = older,
        }
        self.half_open.len -= 1;
    }

    /// The session was established: the peer leaves the half-open list for good.
    fn settle(&mut self, id: PeerId) {
        self.unlink(id);
        if let Some(peer) = self.peer_mut(id) {
            peer.settled = true;
        }
    }

    /// Drop a peer from every structure. Stale entries it leaves in the timer heap and
    /// the ready queue are skipped when reached; the heap is rebuilt when they pile up.
    fn forget(&mut self, id: PeerId) {
        self.unlink(id);
        if let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::take) {
            self.reassembly_bytes -= peer.reassembly_counted as usize;
            self.index.remove(&peer.session.peer());
            self.free.push(id);
        }
        self.compact_timers();
    }

    /// Rebuild the timer heap from the live peers once stale entries (of peers that
    /// were evicted or removed) outnumber the live ones: O(table) at most once per
    /// table-size removals, so amortised O(1) per removal, and the heap stays within
    /// twice the table.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.index.len() + 1024 {
            return;
        }
        let mut entries = std::mem::take(&mut self.timers).into_vec();
        entries.clear();
        for (i, peer) in self.peers.iter().enumerate() {
            if let Some(p) = peer
                && p.timer_at != Instant::FAR_FUTURE
                && let Ok(i) = u32::try_from(i)
            {
                entries.push(Reverse((p.timer_at, PeerId(i))));
            }
        }
        self.timers = BinaryHeap::from(entries);
    }

    /// Forget a peer entirely (e.g. its VM was removed). Pending messages are lost.
    pub fn remove_peer(&mut self, id: PeerId) {
        if self.peer(id).is_some() {
            self.forget(id);
            self.stats.peers_removed += 1;
        }
    }

    /// Number of half-open peers (never established) in the table.
    pub fn half_open_len(&self) -> usize {
        self.half_open.len
    }

    /// Refuse a peer's SYN (e.g. its VM UUID is registered with another MAC): the peer
    /// is removed from the table (it holds no session, nothing is sent to it) and its
    /// MAC remembered among the last refused ones, so that its data does not make us
    /// open a session to it from our side. A new SYN from it is a new peer, for the
    /// application to judge again. No [`EndpointEvent::SynRefused`] is raised: that
    /// event reports the refusals the endpoint makes itself.
    pub fn refuse(&mut self, id: PeerId) {
        let Some(peer) = self.peer(id) else {
            return;
        };
        let mac = peer.session.peer();
        self.forget(id);
        self.refused.insert(mac);
        self.stats.syn_refused += 1;
        self.stats.peers_removed += 1;
    }

    /// Queue a reliable message to a peer.
    pub fn send(
        &mut self,
        now: Instant,
        id: PeerId,
        priority: Priority,
        payload: &[u8],
    ) -> Result<MessageId, SendError> {
        let peer = self.peer_mut(id).ok_or(SendError::NotOpen)?;
        let mid = peer.session.send(priority, payload)?;
        self.process(now, id);
        Ok(mid)
    }

    /// Agent: stop heartbeating and send `SHDN:DAEMON` to every connected monitor
    /// (seed 004 L9088-9102). Watch for [`EndpointEvent::Delivered`] before exiting.
    pub fn shutdown(&mut self, now: Instant) -> Vec<(PeerId, MessageId)> {
        self.shutting_down = true;
        let ids: Vec<PeerId> = self.peers().collect();
        let mut sent = Vec::new();
        let mut payload = Vec::new();
        Message::Shutdown { reason: b"DAEMON" }.encode(&mut payload);
        for id in ids {
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            peer.stop_heartbeats();
            if peer.session.tx_state() == TxState::Closed {
                continue;
            }
            if let Ok(mid) = peer.session.send(Priority::Normal, &payload) {
                sent.push((id, mid));
            }
            self.process(now, id);
        }
        sent
    }

    /// Handle one received frame. Never panics, never allocates on the heartbeat path.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) -> Outcome {
        self.stats.frames_in += 1;
        let frame = match Frame::parse(bytes, self.local.config().ethertype) {
            Ok(f) => f,
            Err(e) => {
                self.stats.count_wire(e);
                return Outcome::Dropped(Drop::Wire(e));
            }
        };
        if frame.src == self.config.local_mac
            || (frame.dst != self.config.local_mac && !frame.dst.is_broadcast())
        {
            self.stats.drop_not_for_us += 1;
            return Outcome::Dropped(Drop::NotForUs);
        }
        if frame.header.flags.contains(Flags::HEL) {
            return self.handle_hello(now, &frame);
        }
        let id = match self.index.get(&frame.src) {
            Some(id) => *id,
            None => {
                let monitor = matches!(self.config.role, Role::Monitor { .. });
                let flags = frame.header.flags;
                if monitor
                    && flags.contains(Flags::SYN | Flags::BEG | Flags::ACKR)
                    && !flags.contains(Flags::ACK)
                {
                    match self.insert_peer(now, frame.src) {
                        Ok(id) => id,
                        Err(why) => return Outcome::Dropped(why),
                    }
                } else {
                    self.stats.drop_no_session += 1;
                    // Data from an agent we have no session with: we restarted and it
                    // has not heard our new Hello yet (Hellos may be lost, and come only
                    // every 30 s). Open the session from our side rather than let its
                    // heartbeats go unheard until the next Hello.
                    // Not to a MAC whose SYN was refused lately. A refresh (SYN without
                    // ACKR) also says the agent believes the session open, and so does
                    // an ACK: typically the agent's ACK of our SYN arriving after its
                    // half-open peer was evicted (docs/hvncp.md §6.5) — the agent is
                    // established and waits for START_HB. Only a SYN with ACKR
                    // and without BEG (an answer to a SYN of ours) creates nothing.
                    let believes_open = flags.contains(Flags::ACK)
                        || !flags.contains(Flags::SYN)
                        || !flags.contains(Flags::ACKR);
                    if monitor
                        && believes_open
                        && !self.refused.contains(&frame.src)
                        && let Ok(id) = self.insert_peer(now, frame.src)
                        && let Some(peer) = self.peer_mut(id)
                    {
                        peer.session.connect();
                        self.stats.sessions_reopened += 1;
                        self.process(now, id);
                    }
                    return Outcome::Dropped(Drop::NoSession);
                }
            }
        };
        let budget = self
            .config
            .reassembly_budget
            .saturating_sub(self.reassembly_bytes);
        let monitor = matches!(self.config.role, Role::Monitor { .. });
        let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
            return Outcome::Dropped(Drop::NoSession);
        };
        let flags = frame.header.flags;
        if monitor
            && flags.contains(Flags::SYN | Flags::ACKR)
            && !flags.contains(Flags::ACK)
            && let Ok(syn) = AgentSyn::parse(frame.payload)
            && let Some(inc) = syn.inc
            && peer.incarnations.is_previous(inc)
        {
            // A SYN of a run of the agent that a later run replaced, however late it
            // arrives: it must not reopen (and so reset) the later run's session.
            self.stats.syn_old_incarnation += 1;
            return Outcome::Dropped(Drop::OldIncarnation);
        }
        let result = peer.session.handle_frame_within(now, &frame, budget);
        match result {
            // Heartbeats take this path: one parse, a time stamp, a counter; no
            // allocation.
            Ok(Input::Datagram(payload)) => self.handle_message(now, id, payload, false),
            Ok(Input::Consumed) => {
                self.process(now, id);
                Outcome::Handled
            }
            Ok(Input::Duplicate) => {
                if let Some(outcome) = self.repeated_heartbeat(now, id, &frame) {
                    self.process(now, id);
                    return outcome;
                }
                self.stats.duplicates += 1;
                self.process(now, id);
                Outcome::Handled
            }
            Ok(Input::Refresh) => {
                self.stats.syn_refreshes += 1;
                Outcome::Handled
            }
            Err(r) => {
                if r == session::Refusal::Stale
                    && let Some(outcome) = self.repeated_heartbeat(now, id, &frame)
                {
                    return outcome;
                }
                self.stats.count_refusal(r);
                self.account(id);
                let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
                    return Outcome::Dropped(Drop::Session(r));
                };
                // A monitor whose session failed while the agent still believes it open
                // (its heartbeats need no acknowledgement, so it cannot notice) opens
                // the session again from its side.
                if r == session::Refusal::NotOpen
                    && matches!(self.config.role, Role::Monitor { .. })
                    && peer.session.tx_state() == TxState::Closed
                {
                    peer.session.connect();
                    self.stats.sessions_reopened += 1;
                    self.process(now, id);
                }
                Outcome::Dropped(Drop::Session(r))
            }
        }
    }

    /// Monitor: a heartbeat whose number the duplicate window says was already seen (a
    /// copy, or a peer that does not number its heartbeats as we do) still proves the
    /// agent alive: recorded as liveness, counted `heartbeats_duplicate`.
    fn repeated_heartbeat(
        &mut self,
        now: Instant,
        id: PeerId,
        frame: &Frame<'_>,
    ) -> Option<Outcome> {
        let flags = frame.header.flags;
        let whole = !flags.contains(Flags::ACKR) || flags.contains(Flags::BEG | Flags::END);
        if !matches!(self.config.role, Role::Monitor { .. })
            || !whole
            || !crate::message::is_heartbeat(frame.payload)
        {
            return None;
        }
        let peer = self.peer_mut(id)?;
        peer.last_heartbeat = now;
        self.stats.heartbeats_duplicate += 1;
        Some(Outcome::Heartbeat(id))
    }

    fn handle_hello(&mut self, now: Instant, frame: &Frame<'_>) -> Outcome {
        self.stats.hellos_in += 1;
        let Ok(hello) = HelloId::parse(frame.payload) else {
            self.stats.msg_malformed += 1;
            return Outcome::Dropped(Drop::Malformed);
        };
        if matches!(self.config.role, Role::Monitor { .. }) || self.shutting_down {
            // Another monitor's Hello, or we are stopping: nothing for us to do.
            return Outcome::Handled;
        }
        let mac = frame.src;
        let id = match self.index.get(&mac) {
            Some(id) => *id,
            None => {
                let id = match self.insert_peer(now, mac) {
                    Ok(id) => id,
                    Err(why) => return Outcome::Dropped(why),
                };
                self.events.push_back(EndpointEvent::MonitorFound {
                    peer: id,
                    mac,
                    hello,
                });
                id
            }
        };
        let Some(peer) = self.peer_mut(id) else {
            return Outcome::Dropped(Drop::NoSession);
        };
        let restarted = peer.hello().is_some_and(|h| h != hello);
        let connect =
            peer.hello().is_none() || restarted || peer.session.tx_state() == TxState::Closed;
        peer.agent_mut().hello = Some(hello);
        if connect {
            peer.stop_heartbeats();
            peer.uuid = None;
            peer.session.connect();
            if restarted {
                self.events
                    .push_back(EndpointEvent::MonitorRestarted { peer: id, hello });
            }
            self.process(now, id);
        }
        Outcome::Handled
    }

    /// A message from a peer, reliable (from the session's events) or not.
    fn handle_message(
        &mut self,
        now: Instant,
        id: PeerId,
        payload: &[u8],
        reliable: bool,
    ) -> Outcome {
        let monitor = matches!(self.config.role, Role::Monitor { .. });
        let message = match Message::parse(payload) {
            Ok(m) => m,
            Err(_) => {
                self.stats.msg_malformed += 1;
                return Outcome::Dropped(Drop::Malformed);
            }
        };
        if reliable {
            self.stats.messages_in += 1;
        }
        let event = match (monitor, message) {
            (true, Message::Heartbeat { .. }) => {
                if let Some(peer) = self.peer_mut(id) {
                    peer.last_heartbeat = now;
                }
                self.stats.heartbeats_in += 1;
                return Outcome::Heartbeat(id);
            }
            (true, Message::Shutdown { .. }) => EndpointEvent::Shutdown { peer: id },
            (true, Message::Doorbell { vector }) => EndpointEvent::Doorbell { peer: id, vector },
            (false, Message::StartHb { period_ms }) => {
                let period_ms = period_ms.unwrap_or(DEFAULT_HB_PERIOD_MS);
                let Some(peer) = self.peer_mut(id) else {
                    return Outcome::Dropped(Drop::NoSession);
                };
                let agent = peer.agent_mut();
                agent.hb_period_ms = period_ms;
                // The first heartbeat goes at once so the monitor sees us quickly.
                agent.next_heartbeat = Some(now);
                agent.hb_due = false;
                agent.start_hb_by = None;
                self.schedule(id);
                EndpointEvent::HeartbeatStarted {
                    peer: id,
                    period: Duration::from_millis(u64::from(period_ms)),
                }
            }
            (false, Message::StopHb) => {
                if let Some(peer) = self.peer_mut(id) {
                    peer.stop_heartbeats();
                }
                EndpointEvent::HeartbeatStopped { peer: id }
            }
            (_, Message::Unknown { .. }) => {
                self.stats.msg_unknown += 1;
                return Outcome::Handled;
            }
            _ => EndpointEvent::Message {
                peer: id,
                payload: payload.to_vec(),
            },
        };
        self.events.push_back(event);
        Outcome::Handled
    }

    /// After anything touched a session: act on its events, queue it for sending,
    /// reschedule its timer.
    fn process(&mut self, now: Instant, id: PeerId) {
        loop {
            let Some(peer) = self.peer_mut(id) else {
                return;
            };
            let Some(event) = peer.session.poll_event() else {
                break;
            };
            self.on_session_event(now, id, event);
        }
        self.account(id);
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if !peer.queued {
            peer.queued = true;
            self.ready.push_back(id);
        }
        self.schedule(id);
    }

    /// Bring the endpoint's reassembly total up to date with this session's.
    fn account(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        let now_held = u32::try_from(peer.session.reassembly_bytes()).unwrap_or(u32::MAX);
        self.reassembly_bytes =
            self.reassembly_bytes - peer.reassembly_counted as usize + now_held as usize;
        peer.reassembly_counted = now_held;
    }

    fn schedule(&mut self, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        let deadline = [
            peer.session.poll_timeout(),
            peer.next_heartbeat(),
            peer.start_hb_by(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(t) = deadline
            && t < peer.timer_at
        {
            peer.timer_at = t;
            self.timers.push(Reverse((t, id)));
        }
    }

    fn on_session_event(&mut self, now: Instant, id: PeerId, event: session::Event) {
        let monitor = matches!(self.config.role, Role::Monitor { .. });
        let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        let mac = peer.session.peer();
        match event {
            session::Event::PeerSyn { payload, .. } => {
                let checked = if monitor {
                    AgentSyn::parse(&payload)
                        .map_err(|e| e.to_string())
                        .and_then(|syn| {
                            peer.incarnations.observe(syn.inc);
                            if syn.ver_lower.major <= VERSION.major
                                && VERSION.major <= syn.ver_upper.major
                            {
                                Ok((
                                    syn.uuid,
                                    Some((syn.ostype.to_owned(), syn.ver_lower, syn.ver_upper)),
                                ))
                            } else {
                                Err(format!(
                                    "agent speaks {}..{}, we speak {}",
                                    syn.ver_lower, syn.ver_upper, VERSION
                                ))
                            }
                        })
                } else {
                    MonitorSyn::parse(&payload)
                        .map_err(|e| e.to_string())
                        .and_then(|syn| {
                            if syn.ver_running.major == VERSION.major {
                                Ok((syn.uuid, None))
                            } else {
                                Err(format!(
                                    "monitor runs {}, we speak {}",
                                    syn.ver_running, VERSION
                                ))
                            }
                        })
                };
                match checked {
                    Ok((uuid, ostype)) => {
                        peer.uuid = Some(uuid);
                        if let Some((ostype, ver_lower, ver_upper)) = ostype {
                            self.events.push_back(EndpointEvent::AgentSyn {
                                peer: id,
                                mac,
                                uuid,
                                ostype,
                                ver_lower,
                                ver_upper,
                            });
                        }
                    }
                    Err(why) => {
                        peer.uuid = None;
                        peer.session.close();
                        self.stats.syn_refused += 1;
                        self.events
                            .push_back(EndpointEvent::SynRefused { peer: id, mac, why });
                    }
                }
            }
            session::Event::Established => {
                self.stats.sessions_established += 1;
                // Established once: never evicted from now on.
                self.settle(id);
                let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
                    return;
                };
                let Some(uuid) = peer.uuid else {
                    return;
                };
                if matches!(self.config.role, Role::Agent { .. }) && peer.next_heartbeat().is_none()
                {
                    // A monitor that holds the session sends START_HB at once. It has
                    // our acknowledgement of its SYN within one retransmission span (it
                    // resends that SYN for no longer, and we acknowledge every copy),
                    // and its START_HB arrives within the next span: past two spans,
                    // it lost its side of the session (docs/hvncp.md §6.5) or never
                    // monitors us, and the next Hello pairs again.
                    let wait = self.local.config().retransmission_span() * 2;
                    peer.agent_mut().start_hb_by = Some(now + wait);
                }
                if let Role::Monitor { hb_period, .. } = self.config.role {
                    let period_ms = u32::try_from(hb_period.as_millis()).unwrap_or(u32::MAX);
                    let mut start = Vec::new();
                    // The seed's monitor sends a bare `START_HB` for its 10 s default
                    // (seed 004 L11589, L11786); a period only when it differs.
                    Message::StartHb {
                        period_ms: (period_ms != DEFAULT_HB_PERIOD_MS).then_some(period_ms),
                    }
                    .encode(&mut start);
                    let _ = peer.session.send(Priority::Normal, &start);
                }
                self.events.push_back(EndpointEvent::Established {
                    peer: id,
                    mac,
                    uuid,
                });
            }
            session::Event::Message { payload, .. } => {
                self.handle_message(now, id, &payload, true);
            }
            session::Event::Acked(mid) => {
                self.events
                    .push_back(EndpointEvent::Delivered { peer: id, id: mid });
            }
            session::Event::Lost(mid) => {
                self.events
                    .push_back(EndpointEvent::Lost { peer: id, id: mid });
            }
            session::Event::Closed(reason) => {
                peer.stop_heartbeats();
                self.stats.sessions_closed += 1;
                if reason.is_handshake() {
                    self.stats.handshakes_failed += 1;
                }
                self.events.push_back(EndpointEvent::Closed {
                    peer: id,
                    mac,
                    reason,
                });
            }
        }
    }

    /// When [`Endpoint::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hello = matches!(self.config.role, Role::Monitor { .. }).then_some(self.next_hello);
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        [hello, timer].into_iter().flatten().min()
    }

    /// Run every timer due at `now`: Hello, retransmissions, reassembly and handshake
    /// timeouts, agent heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Role::Monitor { hello_period, .. } = self.config.role
            && now >= self.next_hello
        {
            self.hello_due = true;
            while self.next_hello <= now {
                self.next_hello += hello_period;
            }
        }
        // Take every due entry first: handling one may schedule it again at `now`
        // (a retransmission is due until poll_transmit sends it).
        let mut due = std::mem::take(&mut self.due_scratch);
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            due.push((t, id));
        }
        for (t, id) in due.drain(..) {
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            if peer.timer_at != t {
                continue;
            }
            peer.timer_at = Instant::FAR_FUTURE;
            let discarded = peer.session.handle_timeout(now);
            if let Some(agent) = peer.agent.as_deref_mut()
                && agent.start_hb_by.is_some_and(|t| t <= now)
            {
                agent.start_hb_by = None;
                if peer.session.is_established() {
                    // Closed(StartHbMissing), counted as a failed handshake.
                    peer.session.close_because(CloseReason::StartHbMissing);
                }
            }
            if let Some(agent) = peer.agent.as_deref_mut()
                && let Some(next) = agent.next_heartbeat
                && next <= now
            {
                agent.hb_due = true;
                let period = Duration::from_millis(u64::from(agent.hb_period_ms));
                let mut following = next + period;
                while following <= now {
                    following += period;
                }
                agent.next_heartbeat = Some(following);
            }
            self.stats.drop_reassembly += discarded as u64;
            self.process(now, id);
        }
        self.due_scratch = due;
        // After a burst (100,000 handshakes) the queues are mostly empty: give the
        // memory back instead of keeping the peak for good.
        if self.timers.capacity() > 4096 && self.timers.len() * 4 < self.timers.capacity() {
            self.timers.shrink_to(self.timers.len() * 2);
        }
        if self.ready.capacity() > 4096 && self.ready.len() * 4 < self.ready.capacity() {
            self.ready.shrink_to(self.ready.len() * 2);
        }
        if self.events.capacity() > 4096 && self.events.len() * 4 < self.events.capacity() {
            self.events.shrink_to(self.events.len() * 2);
        }
    }

    /// Write the next frame to send into `buf` (at least 1514 bytes for the default
    /// MTU) and return its length; `None` when nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.hello_due {
            self.hello_due = false;
            if let Some(len) = self.emit_hello(buf) {
                self.stats.hellos_out += 1;
                self.stats.frames_out += 1;
                return Some(len);
            }
        }
        while let Some(&id) = self.ready.front() {
            let Some(peer) = self.peers.get_mut(id.index()).and_then(Option::as_mut) else {
                self.ready.pop_front();
                continue;
            };
            if let Some(agent) = peer.agent.as_deref_mut()
                && agent.hb_due
            {
                agent.hb_due = false;
                let mut hb = [0u8; 3];
                let n = Message::Heartbeat { seq: None }
                    .encode_into(&mut hb)
                    .unwrap_or(0);
                if let Ok(len) = peer.session.emit_datagram(Priority::Normal, &hb[..n], buf) {
                    self.stats.heartbeats_out += 1;
                    self.stats.frames_out += 1;
                    self.schedule(id);
                    return Some(len);
                }
            }
            if let Some(len) = peer.session.poll_transmit(now, buf) {
                // Round robin: the next frame comes from the next peer in line.
                self.ready.pop_front();
                self.ready.push_back(id);
                self.stats.frames_out += 1;
                self.schedule(id);
                return Some(len);
            }
            peer.queued = false;
            self.ready.pop_front();
            self.schedule(id);
        }
        None
    }

    fn emit_hello(&self, buf: &mut [u8]) -> Option<usize> {
        let Role::Monitor { hello, .. } = &self.config.role else {
            return None;
        };
        let mut text = [0u8; 64];
        let n = hello.encode_into(&mut text).ok()?;
        let header = HvncpRepr {
            version: VERSION,
            number: 0,
            flags: Flags::HEL,
            frag_index: 0,
            payload_len: u16::try_from(n).ok()?,
        };
        FrameBuilder {
            dst: MacAddr::BROADCAST,
            src: self.config.local_mac,
            ethertype: self.local.config().ethertype,
        }
        .emit(buf, &header, &text[..n])
        .ok()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }
}
