//! A simulated Ethernet segment with loss, duplication, reordering and delay, on a
//! virtual clock: deterministic tests, examples and benches of whole endpoints.
//!
//! Every node is a real [`Endpoint`]; only the wire and the clock are simulated. The
//! same seed gives the same run, frame for frame.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use std::collections::HashMap;

use crate::endpoint::{Endpoint, EndpointConfig, EndpointEvent, PeerId};
use crate::session::Session;
use crate::session::{self, MessageId, Priority, SendError};
use crate::time::Instant;
use crate::wire::{Frame, MacAddr};

/// How the link treats each frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by `reorder_delay` (so later frames
    /// overtake it).
    pub reorder: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Uniform extra delay in `0..jitter`.
    pub jitter: Duration,
    /// Extra delay of a reordered frame.
    pub reorder_delay: Duration,
}

impl LinkConfig {
    /// No loss, no duplication, 50 µs delay.
    pub const PERFECT: LinkConfig = LinkConfig {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        delay: Duration::from_micros(50),
        jitter: Duration::ZERO,
        reorder_delay: Duration::ZERO,
    };

    /// `loss` both ways, plus as much reordering, 5 % duplicates and some jitter.
    pub fn lossy(loss: f64) -> LinkConfig {
        LinkConfig {
            loss,
            duplicate: 0.05,
            reorder: loss,
            delay: Duration::from_micros(200),
            jitter: Duration::from_micros(300),
            reorder_delay: Duration::from_millis(3),
        }
    }
}

/// A small deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
    /// Uniform duration in `0..max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.next_u64() % nanos)
        }
    }
}

/// Index of a node in a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

#[derive(Debug)]
struct Node {
    endpoint: Endpoint,
    mac: MacAddr,
    /// False: the node's cable is pulled (frames to and from it vanish).
    link_up: bool,
    timer_at: Instant,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

/// What the link did, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames sent by nodes (a broadcast counts once).
    pub sent: u64,
    /// Copies delivered to a node.
    pub delivered: u64,
    /// Copies lost.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
}

/// A broadcast segment of endpoints on a virtual clock.
#[derive(Debug)]
pub struct Network {
    now: Instant,
    link: LinkConfig,
    rng: Rng,
    nodes: Vec<Node>,
    by_mac: HashMap<MacAddr, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    events: Vec<(NodeId, Instant, EndpointEvent)>,
    stats: LinkStats,
    buf: Vec<u8>,
    trace: bool,
}

impl Network {
    /// An empty segment starting at time zero.
    pub fn new(link: LinkConfig, seed: u64) -> Network {
        Network {
            now: Instant::ZERO,
            link,
            rng: Rng::new(seed),
            nodes: Vec::new(),
            by_mac: HashMap::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            stats: LinkStats::default(),
            buf: vec![0u8; 9100],
            trace: std::env::var_os("HVNCP_SIM_TRACE").is_some(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Change the link's behaviour from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Link totals.
    pub fn link_stats(&self) -> LinkStats {
        self.stats
    }

    /// Attach an endpoint (it starts now). Its random seed is replaced by one drawn
    /// from the network's, so that a run is reproducible.
    pub fn add(&mut self, mut config: EndpointConfig) -> Result<NodeId, session::ConfigError> {
        config.seed = self.rng.next_u64();
        config.incarnation = config.incarnation.map(|_| self.rng.next_u64());
        let mac = config.local_mac;
        let endpoint = Endpoint::new(config, self.now)?;
        let id = self.nodes.len();
        self.nodes.push(Node {
            endpoint,
            mac,
            link_up: true,
            timer_at: Instant::FAR_FUTURE,
        });
        self.by_mac.insert(mac, id);
        self.flush(id);
        Ok(NodeId(id))
    }

    /// Replace a node's endpoint by a fresh one (a daemon restart: `config` should
    /// carry a new Hello identifier for a monitor; an agent announcing an incarnation
    /// gets a new one). Frames in flight to it still arrive.
    pub fn restart(
        &mut self,
        node: NodeId,
        mut config: EndpointConfig,
    ) -> Result<(), session::ConfigError> {
        config.seed = self.rng.next_u64();
        config.incarnation = config.incarnation.map(|_| self.rng.next_u64());
        let endpoint = Endpoint::new(config, self.now)?;
        self.nodes[node.0].endpoint = endpoint;
        self.nodes[node.0].timer_at = Instant::FAR_FUTURE;
        self.flush(node.0);
        Ok(())
    }

    /// Pull or plug a node's cable.
    pub fn set_link_up(&mut self, node: NodeId, up: bool) {
        self.nodes[node.0].link_up = up;
    }

    /// A node's MAC.
    pub fn mac(&self, node: NodeId) -> MacAddr {
        self.nodes[node.0].mac
    }

    /// A node's endpoint.
    pub fn endpoint(&self, node: NodeId) -> &Endpoint {
        &self.nodes[node.0].endpoint
    }

    /// Queue a reliable message from `node` to its `peer`, then let it transmit.
    pub fn send(
        &mut self,
        node: NodeId,
        peer: PeerId,
        priority: Priority,
        payload: &[u8],
    ) -> Result<MessageId, SendError> {
        let now = self.now;
        let id = self.nodes[node.0]
            .endpoint
            .send(now, peer, priority, payload)?;
        self.flush(node.0);
        Ok(id)
    }

    /// Monitor `node` refuses its `peer`'s SYN (e.g. a UUID conflict).
    pub fn refuse(&mut self, node: NodeId, peer: PeerId) {
        self.nodes[node.0].endpoint.refuse(peer);
        self.flush(node.0);
    }

    /// Agent `node` stops gracefully (sends `SHDN:DAEMON`).
    pub fn shutdown(&mut self, node: NodeId) -> Vec<(PeerId, MessageId)> {
        let now = self.now;
        let sent = self.nodes[node.0].endpoint.shutdown(now);
        self.flush(node.0);
        sent
    }

    /// Put a frame built outside the simulated nodes (a forged one, say) on the wire
    /// now, as if a host without an endpoint sent it: it reaches the node its
    /// destination MAC names (every node for broadcast) under the link's rules.
    pub fn inject(&mut self, frame: &[u8]) {
        self.stats.sent += 1;
        let Some(dst) = frame.get(..6) else {
            return;
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(dst);
        let dst = MacAddr(mac);
        if dst.is_broadcast() {
            for to in 0..self.nodes.len() {
                self.schedule(to, frame);
            }
        } else if let Some(&to) = self.by_mac.get(&dst) {
            self.schedule(to, frame);
        }
    }

    /// Every event so far, with the node and time it happened at; the log is emptied.
    pub fn take_events(&mut self) -> Vec<(NodeId, Instant, EndpointEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Events so far, without emptying the log.
    pub fn events(&self) -> &[(NodeId, Instant, EndpointEvent)] {
        &self.events
    }

    /// Run until virtual time `until`, processing every delivery and timer before it.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_frame = self.in_flight.peek().map(|Reverse(f)| f.at);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let next = match (next_frame, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_frame == Some(next) {
                if let Some(Reverse(f)) = self.in_flight.pop() {
                    self.deliver(f);
                }
            } else if let Some(Reverse((t, node))) = self.timers.pop()
                && self.nodes[node].timer_at == t
            {
                self.nodes[node].timer_at = Instant::FAR_FUTURE;
                let now = self.now;
                self.nodes[node].endpoint.handle_timeout(now);
                self.flush(node);
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn deliver(&mut self, f: InFlight) {
        if !self.nodes[f.to].link_up {
            self.stats.lost += 1;
            return;
        }
        self.stats.delivered += 1;
        let now = self.now;
        self.nodes[f.to].endpoint.handle_frame(now, &f.frame);
        self.flush(f.to);
    }

    /// Send what `node` has to send, collect its events, reschedule its timer.
    fn flush(&mut self, node: usize) {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(len) = self.nodes[node].endpoint.poll_transmit(now, &mut buf) {
            self.transmit(node, &buf[..len]);
        }
        self.buf = buf;
        while let Some(event) = self.nodes[node].endpoint.poll_event() {
            self.events.push((NodeId(node), now, event));
        }
        if let Some(t) = self.nodes[node].endpoint.poll_timeout()
            && t < self.nodes[node].timer_at
        {
            self.nodes[node].timer_at = t;
            self.timers.push(Reverse((t, node)));
        }
    }

    fn transmit(&mut self, from: usize, frame: &[u8]) {
        self.stats.sent += 1;
        if self.trace
            && let Ok(f) = Frame::parse(frame, crate::wire::DEFAULT_ETHERTYPE)
        {
            let text = String::from_utf8_lossy(&f.payload[..f.payload.len().min(40)]);
            eprintln!(
                "{:>12} ns  node {from} {} -> {}  #{:<3} {:<16} frag {:<2} len {:<5} {text}",
                self.now.as_nanos(),
                f.src,
                f.dst,
                f.header.number,
                f.header.flags.to_string(),
                f.header.frag_index,
                f.payload.len(),
            );
        }
        if !self.nodes[from].link_up {
            self.stats.lost += 1;
            return;
        }
        // The destination MAC is all the link needs (the frame is ours, so long enough).
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let dst = MacAddr(dst);
        if dst.is_broadcast() {
            for to in 0..self.nodes.len() {
                if to != from {
                    self.schedule(to, frame);
                }
            }
        } else if let Some(&to) = self.by_mac.get(&dst) {
            self.schedule(to, frame);
        }
    }

    fn schedule(&mut self, to: usize, frame: &[u8]) {
        if self.rng.chance(self.link.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.link.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.link.delay + self.rng.duration(self.link.jitter);
            if self.rng.chance(self.link.reorder) {
                delay += self.link.reorder_delay;
            }
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at: self.now + delay,
                seq: self.seq,
                to,
                frame: frame.to_vec(),
            }));
        }
    }
}

/// An agent reduced to what a load test needs after its handshake: its MAC and the next
/// packet number it will put on a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeAgent {
    /// The agent's MAC.
    pub mac: MacAddr,
    /// Number of its next packet.
    pub next_number: u8,
}

impl FakeAgent {
    /// Write this agent's next heartbeat frame to `monitor` into `buf` (60 bytes).
    pub fn heartbeat(&mut self, monitor: MacAddr, buf: &mut [u8]) -> usize {
        let header = crate::wire::HvncpRepr {
            version: crate::wire::VERSION,
            number: self.next_number,
            flags: crate::wire::Flags::BEG | crate::wire::Flags::END,
            frag_index: 0,
            payload_len: 3,
        };
        self.next_number = self.next_number.wrapping_add(1);
        crate::wire::FrameBuilder {
            dst: monitor,
            src: self.mac,
            ethertype: crate::wire::DEFAULT_ETHERTYPE,
        }
        .emit(buf, &header, b"HB:")
        .unwrap_or(0)
    }
}

/// An agent's first SYN (SYN|ACKR|BEG carrying its properties, HVNCP number 7) from
/// `src` to `monitor`, built from the header fields with no session behind it: what a
/// forged source MAC or a pairing storm puts on the wire. Returns the frame's length.
pub fn forged_syn(
    src: MacAddr,
    monitor: MacAddr,
    uuid: crate::message::Uuid,
    inc: Option<u64>,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    let mut payload = Vec::new();
    crate::message::AgentSyn {
        uuid,
        ostype: "linux",
        ver_lower: crate::wire::VERSION,
        ver_upper: crate::wire::VERSION,
        inc,
    }
    .encode(&mut payload);
    let header = crate::wire::HvncpRepr {
        version: crate::wire::VERSION,
        number: 7,
        flags: crate::wire::Flags::SYN | crate::wire::Flags::ACKR | crate::wire::Flags::BEG,
        frag_index: 0,
        payload_len: u16::try_from(payload.len()).unwrap_or(u16::MAX),
    };
    crate::wire::FrameBuilder {
        dst: monitor,
        src,
        ethertype: crate::wire::DEFAULT_ETHERTYPE,
    }
    .emit(buf, &header, &payload)
}

/// Open sessions between `monitor` and `count` agents with MACs `first_mac`,
/// `first_mac + 1`, … (VM UUIDs derived from the MAC), by running each agent's real
/// session through the handshake and `START_HB`, frame by frame, on a perfect wire.
/// Used to fill session tables for tests and benches.
pub fn connect_fake_agents(
    monitor: &mut Endpoint,
    now: Instant,
    count: usize,
    first_mac: u64,
) -> Vec<FakeAgent> {
    let config = std::sync::Arc::new(session::Config::default());
    let monitor_mac = monitor.config().local_mac;
    let mut agents = Vec::with_capacity(count);
    let mut buf = vec![0u8; 2048];
    let mut to_agent: Vec<Vec<u8>> = Vec::new();
    for i in 0..count as u64 {
        let mac = MacAddr::from_u64(first_mac + i);
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&(first_mac + i).to_be_bytes());
        uuid[8..].copy_from_slice(&0x4856_4e43_0000_0001u64.to_be_bytes());
        let syn = crate::message::AgentSyn {
            uuid: crate::message::Uuid(uuid),
            ostype: "linux",
            ver_lower: crate::wire::VERSION,
            ver_upper: crate::wire::VERSION,
            inc: Some(first_mac.wrapping_add(i)),
        };
        let mut payload = Vec::new();
        syn.encode(&mut payload);
        let mut agent = Session::new(
            config.clone(),
            payload.into(),
            mac,
            monitor_mac,
            i.to_le_bytes()[0],
        );
        agent.connect();
        for _ in 0..8 {
            let mut moved = false;
            while let Some(len) = agent.poll_transmit(now, &mut buf) {
                monitor.handle_frame(now, &buf[..len]);
                moved = true;
            }
            while let Some(len) = monitor.poll_transmit(now, &mut buf) {
                to_agent.push(buf[..len].to_vec());
            }
            for f in to_agent.drain(..) {
                if let Ok(frame) = Frame::parse(&f, crate::wire::DEFAULT_ETHERTYPE)
                    && frame.dst == mac
                {
                    let _ = agent.handle_frame(now, &frame);
                    moved = true;
                }
            }
            while agent.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        while monitor.poll_event().is_some() {}
        let mut hb = [0u8; 64];
        let next_number = match agent.emit_datagram(Priority::Normal, b"HB:", &mut hb) {
            Ok(len) => Frame::parse(&hb[..len], crate::wire::DEFAULT_ETHERTYPE)
                .map(|f| f.header.number)
                .unwrap_or(0),
            Err(_) => 0,
        };
        agents.push(FakeAgent { mac, next_number });
    }
    agents
}
