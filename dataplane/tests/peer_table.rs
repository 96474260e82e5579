//! The peer table under forged source MACs and pairing storms (docs/hvncp.md §6.5):
//! limits; the oldest half-open peer evicted only once it is older than the half-open
//! grace, a new peer refused without state before that; refusal when full of
//! established peers; refused peers holding no session; counters that add up; storms of
//! real agents (more than the half-open limit at once) that all pair with no handshake
//! in progress evicted; agents whose monitor-side peer was evicted mid-handshake pairing
//! again.

use std::time::Duration;

use dataplane::endpoint::{
    DEFAULT_HALF_OPEN_GRACE, Drop, Endpoint, EndpointConfig, EndpointEvent, Outcome, Role,
};
use dataplane::message::{HelloId, Uuid};
use dataplane::session::CloseReason;
use dataplane::sim::{FakeAgent, LinkConfig, Network, NodeId, connect_fake_agents};
use dataplane::time::Instant;
use dataplane::wire::{DEFAULT_ETHERTYPE, MacAddr};

const GRACE: Duration = DEFAULT_HALF_OPEN_GRACE;

const MONITOR: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
/// Forged MACs start here (real agents at 0x6a6a_0000_0000).
const FORGED: u64 = 0x0aff_0000_0000;

fn config(max_peers: usize, max_half_open: usize) -> EndpointConfig {
    let hello = HelloId {
        secs: 1_556_303_548,
        nanos: 719_328_000,
        suffix: 38,
    };
    let uuid = Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid");
    let mut c = EndpointConfig::monitor(MONITOR, uuid, hello);
    c.max_peers = max_peers;
    c.max_half_open = max_half_open;
    c
}

fn uuid_of(n: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8..].copy_from_slice(&0x4856_4e43_0000_0002u64.to_be_bytes());
    Uuid(b)
}

/// An agent's first SYN (SYN|ACKR|BEG with its properties) from `src`.
fn forged_syn(src: MacAddr, uuid: Uuid, buf: &mut [u8]) -> usize {
    dataplane::sim::forged_syn(src, MONITOR, uuid, None, buf).expect("fits")
}

/// A heartbeat from `src`, a MAC the monitor may not know.
fn forged_heartbeat(src: MacAddr, buf: &mut [u8]) -> usize {
    FakeAgent {
        mac: src,
        next_number: 3,
    }
    .heartbeat(MONITOR, buf)
}

fn drain(ep: &mut Endpoint, now: Instant) -> Vec<EndpointEvent> {
    let mut buf = [0u8; 2048];
    let events: Vec<EndpointEvent> = std::iter::from_fn(|| ep.poll_event()).collect();
    while ep.poll_transmit(now, &mut buf).is_some() {}
    events
}

/// peers_added − peers_evicted − peers_removed is the table's size, and the half-open
/// part never passes its limit.
fn check_accounting(ep: &Endpoint) {
    let s = ep.stats();
    assert_eq!(
        s.peers_added - s.peers_evicted - s.peers_removed,
        ep.len() as u64,
        "{s:?}"
    );
    assert!(ep.half_open_len() <= ep.config().max_half_open);
    assert!(ep.len() <= ep.config().max_peers);
}

fn heartbeats_accepted(ep: &mut Endpoint, agents: &mut [FakeAgent], now: Instant) -> usize {
    let mut buf = [0u8; 64];
    let mut accepted = 0;
    for a in agents {
        let n = a.heartbeat(MONITOR, &mut buf);
        if matches!(ep.handle_frame(now, &buf[..n]), Outcome::Heartbeat(_)) {
            accepted += 1;
        }
    }
    accepted
}

#[test]
fn forged_syns_displace_only_half_open_peers_older_than_the_grace_never_an_established_one() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(64, 8), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 10, 0x6a6a_0000_0000);
    assert_eq!(ep.half_open_len(), 0, "established peers are not half-open");
    let mut buf = [0u8; 256];
    let forged = |i| MacAddr::from_u64(FORGED + i);
    let mut syn = |ep: &mut Endpoint, at: Instant, i: u64| {
        let n = forged_syn(forged(i), uuid_of(i), &mut buf);
        let outcome = ep.handle_frame(at, &buf[..n]);
        drain(ep, at);
        check_accounting(ep);
        outcome
    };
    // 8 fill the half-open places.
    for i in 0..8 {
        assert_eq!(syn(&mut ep, t0, i), Outcome::Handled);
    }
    // Younger than the grace, their handshakes may be in progress: 50 more MACs are
    // refused and create nothing, until the last instant of the grace.
    let young = t0 + (GRACE - Duration::from_millis(1));
    for i in 8..58 {
        assert_eq!(syn(&mut ep, young, i), Outcome::Dropped(Drop::HalfOpenFull));
        assert_eq!(ep.peer_by_mac(forged(i)), None);
    }
    assert_eq!(ep.stats().drop_half_open_full, 50);
    assert_eq!(ep.stats().peers_evicted, 0);
    assert_eq!(ep.stats().peers_added, 10 + 8);
    assert!((0..8).all(|k| ep.peer_by_mac(forged(k)).is_some()));
    // Once the grace has passed each new MAC displaces the oldest stale one; the new
    // ones are young again, so the rest are refused.
    let stale = t0 + GRACE;
    for i in 58..78u64 {
        let expected = if i < 66 {
            Outcome::Handled
        } else {
            Outcome::Dropped(Drop::HalfOpenFull)
        };
        assert_eq!(syn(&mut ep, stale, i), expected, "forged MAC {i}");
        // Oldest first.
        if i < 66 {
            assert_eq!(ep.peer_by_mac(forged(i - 58)), None);
            assert!(ep.peer_by_mac(forged(i)).is_some());
        }
    }
    assert_eq!(ep.stats().peers_evicted, 8);
    assert_eq!(ep.stats().drop_half_open_full, 50 + 12);
    assert_eq!(ep.half_open_len(), 8);
    assert_eq!(ep.len(), 18);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, stale), 10);
    assert_eq!(ep.stats().drop_table_full, 0);
}

#[test]
fn forged_heartbeats_from_unknown_macs_are_bounded_the_same_way() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(64, 8), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 10, 0x6a6a_0000_0000);
    let mut buf = [0u8; 64];
    // One every 400 ms: each finds the oldest of the 8 half-open peers 3.2 s old, past
    // the grace.
    let mut now = t0;
    for i in 0..1000u64 {
        now += Duration::from_millis(400);
        let n = forged_heartbeat(MacAddr::from_u64(FORGED + i), &mut buf);
        assert_eq!(
            ep.handle_frame(now, &buf[..n]),
            Outcome::Dropped(Drop::NoSession)
        );
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        drain(&mut ep, now);
    }
    check_accounting(&ep);
    assert_eq!(ep.stats().sessions_reopened, 1000);
    assert_eq!(ep.stats().peers_evicted, 992);
    assert_eq!(ep.stats().drop_half_open_full, 0);
    assert_eq!(ep.len(), 18);
    // Faster than that, they are refused without a session: a burst of 100 at once.
    for i in 1000..1100u64 {
        let n = forged_heartbeat(MacAddr::from_u64(FORGED + i), &mut buf);
        ep.handle_frame(now, &buf[..n]);
    }
    drain(&mut ep, now);
    check_accounting(&ep);
    assert_eq!(ep.stats().sessions_reopened, 1000);
    assert_eq!(ep.stats().drop_half_open_full, 100);
    assert_eq!(ep.len(), 18);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, now), 10);
}

#[test]
fn a_table_full_of_established_peers_refuses_new_ones() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(16, 4), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 16, 0x6a6a_0000_0000);
    assert_eq!(ep.len(), 16);
    let mut buf = [0u8; 256];
    for i in 0..50u64 {
        let n = forged_syn(MacAddr::from_u64(FORGED + i), uuid_of(i), &mut buf);
        assert_eq!(
            ep.handle_frame(t0, &buf[..n]),
            Outcome::Dropped(Drop::TableFull)
        );
    }
    assert_eq!(ep.stats().drop_table_full, 50);
    assert_eq!(ep.stats().peers_evicted, 0);
    check_accounting(&ep);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, t0), 16);
    // Room again once the application removes a peer.
    let gone = ep.peer_by_mac(agents[0].mac).expect("known");
    ep.remove_peer(gone);
    let n = forged_syn(MacAddr::from_u64(FORGED + 99), uuid_of(99), &mut buf);
    assert_eq!(ep.handle_frame(t0, &buf[..n]), Outcome::Handled);
    check_accounting(&ep);
}

#[test]
fn a_nearly_full_table_gives_half_open_peers_only_what_is_left() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(12, 8), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 10, 0x6a6a_0000_0000);
    let mut buf = [0u8; 256];
    // One every 2 s: the oldest of the 2 half-open peers is then 4 s old.
    let mut now = t0;
    for i in 0..20u64 {
        now += Duration::from_secs(2);
        let n = forged_syn(MacAddr::from_u64(FORGED + i), uuid_of(i), &mut buf);
        assert_eq!(ep.handle_frame(now, &buf[..n]), Outcome::Handled);
        drain(&mut ep, now);
    }
    assert_eq!(ep.len(), 12);
    assert_eq!(ep.half_open_len(), 2);
    assert_eq!(ep.stats().peers_evicted, 18);
    // A full table whose half-open peers are young refuses the new one the same way.
    let n = forged_syn(MacAddr::from_u64(FORGED + 99), uuid_of(99), &mut buf);
    assert_eq!(
        ep.handle_frame(now, &buf[..n]),
        Outcome::Dropped(Drop::HalfOpenFull)
    );
    assert_eq!(ep.stats().drop_table_full, 0);
    check_accounting(&ep);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, now), 10);
}

#[test]
fn a_real_agent_gets_a_stale_place_during_a_flood_and_is_then_safe() {
    // Forged SYNs fill the half-open places; once they are older than the grace a real
    // agent's SYN takes the oldest one's place, and once established no number of
    // forged SYNs evicts it.
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(1024, 64), t0).expect("valid");
    let mut buf = [0u8; 256];
    let mut forged = 0u64;
    let mut flood = |ep: &mut Endpoint, at: Instant, count: u64| {
        for _ in 0..count {
            let n = forged_syn(
                MacAddr::from_u64(FORGED + forged),
                uuid_of(forged),
                &mut buf,
            );
            ep.handle_frame(at, &buf[..n]);
            forged += 1;
        }
        drain(ep, at);
    };
    flood(&mut ep, t0, 500);
    assert_eq!(ep.stats().drop_half_open_full, 500 - 64);
    let later = t0 + GRACE;
    let mut agents = connect_fake_agents(&mut ep, later, 1, 0x6a6a_0000_0000);
    flood(&mut ep, later, 5000);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, later), 1);
    assert!(ep.is_established(ep.peer_by_mac(agents[0].mac).expect("kept")));
    // The agent took one stale place, the flood the 63 others.
    assert_eq!(ep.stats().peers_evicted, 64);
    check_accounting(&ep);
    assert_eq!(ep.len(), 65);
    let much_later = later + GRACE * 4;
    flood(&mut ep, much_later, 5000);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, much_later), 1);
    assert_eq!(ep.len(), 65);
}

#[test]
fn refused_peers_hold_no_session_and_are_not_reopened_from_our_side() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(64, 8), t0).expect("valid");
    let mut buf = [0u8; 256];
    let spoofer = MacAddr::from_u64(FORGED + 1);
    drain(&mut ep, t0); // the first Hello
    for round in 0..100u64 {
        let now = t0 + Duration::from_millis(round);
        let n = forged_syn(spoofer, uuid_of(1), &mut buf);
        assert_eq!(ep.handle_frame(now, &buf[..n]), Outcome::Handled);
        let Some(EndpointEvent::AgentSyn { peer, mac, .. }) = ep.poll_event() else {
            panic!("an AgentSyn event first");
        };
        assert_eq!(mac, spoofer);
        ep.refuse(peer); // its VM is registered with another MAC
        assert_eq!(ep.poll_event(), None, "the caller knows: no event");
        // Nothing is sent to it, and it holds no place in the table.
        assert_eq!(ep.poll_transmit(now, &mut buf), None);
        assert!(ep.is_empty());
        // Its heartbeats do not make us open a session to it either.
        let n = forged_heartbeat(spoofer, &mut buf);
        assert_eq!(
            ep.handle_frame(now, &buf[..n]),
            Outcome::Dropped(Drop::NoSession)
        );
        assert!(ep.is_empty());
        assert_eq!(ep.poll_transmit(now, &mut buf), None);
    }
    assert_eq!(ep.stats().syn_refused, 100);
    assert_eq!(ep.stats().peers_removed, 100);
    assert_eq!(ep.stats().sessions_reopened, 0);
    check_accounting(&ep);
    // Timers of refused peers send nothing to them (only the periodic Hello goes out).
    let later = t0 + Duration::from_secs(60);
    ep.handle_timeout(later);
    while let Some(n) = ep.poll_transmit(later, &mut buf) {
        let frame = dataplane::wire::Frame::parse(&buf[..n], DEFAULT_ETHERTYPE).expect("ours");
        assert!(frame.dst.is_broadcast(), "only Hellos: {frame:?}");
    }
}

#[test]
fn forged_macs_far_beyond_the_limits_leave_a_bounded_table_at_default_limits() {
    // 12 times the half-open limit (the e2e test floods a real hmd with a million).
    const FORGED_COUNT: u64 = 200_000;
    let t0 = Instant::from_millis(1);
    let defaults = config(
        dataplane::endpoint::DEFAULT_MONITOR_MAX_PEERS,
        dataplane::endpoint::DEFAULT_MONITOR_MAX_HALF_OPEN,
    );
    let mut ep = Endpoint::new(defaults, t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 100, 0x6a6a_0000_0000);
    let mut buf = [0u8; 256];
    let mut now = t0;
    for i in 0..FORGED_COUNT {
        // A frame every 20 µs (50,000 new MACs a second, what a release `hmd` takes
        // from a flood, docs/perf.md): 4 s in all, past the grace, so that stale
        // half-open peers are displaced as well as new ones refused. Timers
        // (retransmissions of our SYNs) run as they would in a driver.
        now += Duration::from_micros(20);
        let mac = MacAddr::from_u64(FORGED + i);
        let n = if i % 2 == 0 {
            forged_syn(mac, uuid_of(i), &mut buf)
        } else {
            forged_heartbeat(mac, &mut buf)
        };
        ep.handle_frame(now, &buf[..n]);
        if i % 256 == 0 {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            drain(&mut ep, now);
        }
        if i % 20_000 == 0 {
            assert_eq!(heartbeats_accepted(&mut ep, &mut agents, now), 100);
        }
    }
    drain(&mut ep, now);
    check_accounting(&ep);
    let s = ep.stats();
    // Every forged MAC added a peer or was refused without one.
    assert_eq!(s.peers_added + s.drop_half_open_full, FORGED_COUNT + 100);
    assert_eq!(
        s.peers_evicted + ep.half_open_len() as u64,
        s.peers_added - 100
    );
    assert!(s.peers_evicted > 0 && s.drop_half_open_full > 0, "{s:?}");
    assert_eq!(ep.len(), 100 + ep.half_open_len());
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, now), 100);
}

#[test]
fn limits_are_validated() {
    let t0 = Instant::from_millis(1);
    let e = Endpoint::new(config(64, 0), t0).expect_err("zero");
    assert_eq!(e.key, "max_half_open");
    let e = Endpoint::new(config(64, 65), t0).expect_err("above max_peers");
    assert_eq!(e.key, "max_half_open");
    assert!(e.to_string().contains("65"), "{e}");
    let e = Endpoint::new(config(0, 1), t0).expect_err("zero");
    assert_eq!(e.key, "max_peers");
    assert!(Endpoint::new(config(64, 64), t0).is_ok());
    let mut c = config(64, 8);
    c.half_open_grace = Duration::from_millis(199);
    let e = Endpoint::new(c.clone(), t0).expect_err("shorter than one rto");
    assert_eq!(e.key, "half_open_grace");
    assert!(e.to_string().contains("199ms"), "{e}");
    c.half_open_grace = Duration::from_millis(12_601);
    let e = Endpoint::new(c.clone(), t0).expect_err("longer than the span");
    assert_eq!(e.key, "half_open_grace");
    c.half_open_grace = Duration::from_millis(200);
    assert!(Endpoint::new(c.clone(), t0).is_ok());
    c.half_open_grace = Duration::from_millis(12_600);
    assert!(Endpoint::new(c, t0).is_ok());
}

// ---- Pairing storms of real agents through the simulated link ----

fn storm_monitor(max_peers: usize, max_half_open: usize) -> EndpointConfig {
    let mut c = config(max_peers, max_half_open);
    let Role::Monitor { hello, .. } = c.role else {
        unreachable!("a monitor")
    };
    // The fast profile (HVNCP.md §5): a Hello every 2 s, heartbeats every second.
    c.role = Role::Monitor {
        hello,
        hello_period: Duration::from_secs(2),
        hb_period: Duration::from_secs(1),
    };
    c
}

fn storm_agent(i: u64) -> EndpointConfig {
    EndpointConfig::agent(
        MacAddr::from_u64(0x6a6a_0000_0000 + i),
        uuid_of(0x7000_0000 + i),
        "linux",
    )
}

/// Run the network in 10 ms steps until `done` or `limit`; the half-open limit is
/// checked at every step. The virtual time it took.
fn run_until_all(
    net: &mut Network,
    monitor: NodeId,
    limit: Duration,
    done: impl Fn(&Network) -> bool,
) -> Option<Duration> {
    let start = net.now();
    while net.now() < start + limit {
        net.run_for(Duration::from_millis(10));
        let ep = net.endpoint(monitor);
        assert!(ep.half_open_len() <= ep.config().max_half_open);
        check_accounting(ep);
        if done(net) {
            return Some(net.now().saturating_duration_since(start));
        }
    }
    None
}

/// Every agent heartbeating to the monitor, and the monitor holding each established.
fn all_paired(net: &Network, monitor: NodeId, agents: &[NodeId]) -> bool {
    let mon = net.endpoint(monitor);
    let monitor_mac = net.mac(monitor);
    agents.iter().all(|&a| {
        let ep = net.endpoint(a);
        ep.peer_by_mac(monitor_mac)
            .is_some_and(|p| ep.is_heartbeating(p))
            && mon
                .peer_by_mac(net.mac(a))
                .is_some_and(|p| mon.is_established(p))
    })
}

/// `agents` real agents hear the monitor's first Hello at the same moment and all send
/// their SYN at once, many more than `max_half_open`. Returns the virtual time until
/// every one heartbeats, and the network.
fn storm(agents: u64, max_half_open: usize, link: LinkConfig, seed: u64) -> (Duration, Network) {
    let count = usize::try_from(agents).expect("small");
    let mut net = Network::new(link, seed);
    let nodes: Vec<NodeId> = (0..agents)
        .map(|i| net.add(storm_agent(i)).expect("valid"))
        .collect();
    let m = net
        .add(storm_monitor(4 * count, max_half_open))
        .expect("valid");
    // Each wave of SYN copies (at 0, 0.2, 0.6, 1.4, 3.0 and 6.2 s after the Hello)
    // pairs at least `max_half_open` agents; an agent whose copies were all refused
    // fails its handshake at 12.6 s and sends its SYN again at the next Hello (2 s):
    // a cycle of at most 14.6 s pairs at least 6 × max_half_open.
    let waves = count.div_ceil(max_half_open);
    let cycles = u32::try_from(waves.div_ceil(6)).expect("small");
    let bound = Duration::from_millis(14_600) * cycles + Duration::from_secs(2);
    let took =
        run_until_all(&mut net, m, bound, |net| all_paired(net, m, &nodes)).unwrap_or_else(|| {
            panic!(
                "{agents} agents not all paired within {bound:?}: monitor {:?}",
                net.endpoint(m).stats()
            )
        });
    (took, net)
}

/// What a storm must show: no place ever taken from a handshake in progress — each agent
/// entered the monitor's table exactly once and completed there — while the limit did
/// refuse SYNs (the storm really was larger than the half-open places).
fn check_storm(net: &Network, agents: u64) {
    let monitor = NodeId(usize::try_from(agents).expect("small"));
    let s = net.endpoint(monitor).stats();
    assert_eq!(s.peers_evicted, 0, "{s:?}");
    assert_eq!(s.peers_added, agents, "one place per agent: {s:?}");
    assert_eq!(s.sessions_established, agents, "{s:?}");
    assert_eq!(s.handshakes_failed, 0, "{s:?}");
    assert_eq!(s.sessions_reopened, 0, "{s:?}");
    assert!(
        s.drop_half_open_full > 0,
        "the storm never hit the limit: {s:?}"
    );
    assert_eq!(net.endpoint(monitor).half_open_len(), 0);
    // No agent waited for a START_HB that never came.
    let missing = net
        .events()
        .iter()
        .filter(|(_, _, e)| {
            matches!(
                e,
                EndpointEvent::Closed {
                    reason: CloseReason::StartHbMissing,
                    ..
                }
            )
        })
        .count();
    assert_eq!(missing, 0);
}

#[test]
fn a_pairing_storm_larger_than_the_half_open_limit_converges_on_a_fast_link() {
    // 400 agents for 32 half-open places, a LAN: 100 µs + up to 1 ms of jitter.
    let link = LinkConfig {
        delay: Duration::from_micros(100),
        jitter: Duration::from_millis(1),
        ..LinkConfig::PERFECT
    };
    let (took, net) = storm(400, 32, link, 7);
    eprintln!(
        "400 agents, 32 half-open places, fast link: all heartbeating after {took:?}; monitor {:?}",
        net.endpoint(NodeId(400)).stats()
    );
    check_storm(&net, 400);
}

#[test]
fn a_pairing_storm_converges_when_handshakes_take_most_of_a_second() {
    // A loaded monitor or a congested link: 250 ms + up to 250 ms each way, so a
    // handshake holds its half-open place for 0.5-1 s. With the rule before (the
    // oldest half-open peer evicted for any new one) 32 places cycle through 300 SYNs
    // in far less, every handshake in progress is evicted, and the agents whose
    // monitor-side peer went stay established without START_HB.
    let link = LinkConfig {
        delay: Duration::from_millis(250),
        jitter: Duration::from_millis(250),
        ..LinkConfig::PERFECT
    };
    let (took, net) = storm(300, 32, link, 8);
    eprintln!(
        "300 agents, 32 half-open places, 0.5-1 s handshakes: all heartbeating after {took:?}; monitor {:?}",
        net.endpoint(NodeId(300)).stats()
    );
    check_storm(&net, 300);
}

/// A forged agent SYN from `src` to the monitor, ready for [`Network::inject`].
fn forged_syn_frame(i: u64) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = forged_syn(MacAddr::from_u64(FORGED + i), uuid_of(i), &mut buf);
    buf[..n].to_vec()
}

/// One agent whose handshake takes 300 ms on the monitor's side (150 ms each way), and a
/// monitor with `max_half_open` places, a grace of one `rto` (200 ms) and forged SYNs
/// injected so that they arrive at the given times: the agent's half-open peer is
/// evicted after the monitor answered its SYN and before the agent's acknowledgement
/// arrives — the agent is established, the monitor knows nothing of it.
fn evicted_mid_handshake(max_half_open: usize, forged_arrivals_ms: &[u64]) -> (Network, NodeId) {
    let link = LinkConfig {
        delay: Duration::from_millis(150),
        ..LinkConfig::PERFECT
    };
    let mut net = Network::new(link, 9);
    let agent = net.add(storm_agent(0)).expect("valid");
    let mut c = storm_monitor(64, max_half_open);
    c.half_open_grace = Duration::from_millis(200);
    // Hello at 0 reaches the agent at 150 ms; its SYN reaches the monitor at 300 ms;
    // the monitor's SYN and ACK reach the agent at 450 ms (established there); its
    // ACK of the monitor's SYN arrives at 600 ms.
    let m = net.add(c).expect("valid");
    for (k, &at) in forged_arrivals_ms.iter().enumerate() {
        net.run_until(Instant::from_millis(at - 150));
        net.inject(&forged_syn_frame(k as u64));
    }
    net.run_until(Instant::from_millis(599));
    let agent_mac = net.mac(agent);
    assert_eq!(
        net.endpoint(m).peer_by_mac(agent_mac),
        None,
        "the agent's peer was evicted"
    );
    assert_eq!(net.endpoint(m).stats().peers_evicted, 1);
    let ep = net.endpoint(agent);
    let monitor = ep.peer_by_mac(net.mac(m)).expect("monitor known");
    assert!(ep.is_established(monitor) && !ep.is_heartbeating(monitor));
    (net, m)
}

#[test]
fn an_agent_whose_peer_was_evicted_mid_handshake_is_reopened_on_its_acknowledgement() {
    // 2 places: a forged SYN at 350 ms fills them, one at 550 ms evicts the agent's
    // peer (250 ms old). The agent's ACK at 600 ms comes from a MAC the monitor does not
    // know: it opens the session from its side (evicting the first forged peer, now
    // 250 ms old), and the agent heartbeats long before the next Hello (2 s).
    let (mut net, m) = evicted_mid_handshake(2, &[350, 550]);
    let agents = [NodeId(0)];
    let took = run_until_all(&mut net, m, Duration::from_secs(1), |net| {
        all_paired(net, m, &agents)
    })
    .expect("paired again within a second");
    let s = net.endpoint(m).stats();
    eprintln!("paired again {took:?} after the eviction; monitor {s:?}");
    assert_eq!(s.sessions_reopened, 1, "{s:?}");
    assert_eq!(s.peers_evicted, 2, "{s:?}");
    assert!(
        net.now() < Instant::from_millis(2_000),
        "before the next Hello"
    );
}

#[test]
fn an_agent_left_without_start_hb_pairs_again_at_the_next_hello() {
    // 1 place: the forged SYN at 550 ms evicts the agent's peer and holds the place, so
    // the agent's ACK at 600 ms finds no room (refused, nothing created); one at 790 ms
    // takes the place in turn, so that the agent's ACK at 800 ms of the monitor's SYN
    // retransmitted at 500 ms finds none either. Nothing more comes from the monitor:
    // the agent waits two retransmission spans (25.2 s) for START_HB, closes the session
    // (StartHbMissing, a failed handshake) and pairs again at the next Hello.
    let (mut net, m) = evicted_mid_handshake(1, &[550, 790]);
    assert_eq!(net.endpoint(m).stats().drop_half_open_full, 1);
    net.run_until(Instant::from_millis(850));
    let s = net.endpoint(m).stats();
    assert_eq!((s.peers_evicted, s.drop_half_open_full), (2, 2), "{s:?}");
    assert_eq!(s.sessions_reopened, 0);
    let agents = [NodeId(0)];
    let limit = Duration::from_secs(30);
    let took =
        run_until_all(&mut net, m, limit, |net| all_paired(net, m, &agents)).expect("paired again");
    let closed: Vec<Instant> = net
        .events()
        .iter()
        .filter(|(n, _, e)| {
            *n == NodeId(0)
                && matches!(
                    e,
                    EndpointEvent::Closed {
                        reason: CloseReason::StartHbMissing,
                        ..
                    }
                )
        })
        .map(|(_, t, _)| *t)
        .collect();
    eprintln!("closed for want of START_HB at {closed:?}; paired again at {took:?} + 0.7 s");
    // Established at 450 ms, closed two spans later, before anything else.
    assert_eq!(
        closed,
        vec![Instant::from_millis(450) + Duration::from_millis(25_200)]
    );
    assert_eq!(net.endpoint(NodeId(0)).stats().handshakes_failed, 1);
    // Paired by the Hello that followed (every 2 s), plus the handshake.
    assert!(net.now() <= Instant::from_millis(450 + 25_200 + 2_000 + 1_000));
}
