//! The peer table under forged source MACs: limits, eviction of the oldest half-open
//! peers, refusal when full of established peers, refused peers holding no session, and
//! counters that add up.

use std::time::Duration;

use dataplane::endpoint::{Drop, Endpoint, EndpointConfig, EndpointEvent, Outcome};
use dataplane::message::{AgentSyn, HelloId, Uuid};
use dataplane::sim::{FakeAgent, connect_fake_agents};
use dataplane::time::Instant;
use dataplane::wire::{DEFAULT_ETHERTYPE, Flags, FrameBuilder, HvncpRepr, MacAddr, VERSION};

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

/// An agent's first SYN (SYN|ACKR|BEG with its properties), built from the header
/// fields, from `src`.
fn forged_syn(src: MacAddr, uuid: Uuid, buf: &mut [u8]) -> usize {
    let mut payload = Vec::new();
    AgentSyn {
        uuid,
        ostype: "linux",
        ver_lower: VERSION,
        ver_upper: VERSION,
        inc: None,
    }
    .encode(&mut payload);
    let header = HvncpRepr {
        version: VERSION,
        number: 7,
        flags: Flags::SYN | Flags::ACKR | Flags::BEG,
        frag_index: 0,
        payload_len: u16::try_from(payload.len()).expect("short"),
    };
    FrameBuilder {
        dst: MONITOR,
        src,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(buf, &header, &payload)
    .expect("fits")
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
fn forged_syns_evict_the_oldest_half_open_peers_never_an_established_one() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(64, 8), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 10, 0x6a6a_0000_0000);
    assert_eq!(ep.half_open_len(), 0, "established peers are not half-open");
    let mut buf = [0u8; 256];
    let forged = |i| MacAddr::from_u64(FORGED + i);
    for i in 0..100u64 {
        let n = forged_syn(forged(i), uuid_of(i), &mut buf);
        assert_eq!(ep.handle_frame(t0, &buf[..n]), Outcome::Handled);
        drain(&mut ep, t0);
        check_accounting(&ep);
        // Oldest first: the 8 newest are in the table, the one before them is not.
        let first_kept = (i + 1).saturating_sub(8);
        assert!((first_kept..=i).all(|k| ep.peer_by_mac(forged(k)).is_some()));
        if first_kept > 0 {
            assert_eq!(ep.peer_by_mac(forged(first_kept - 1)), None);
        }
    }
    assert_eq!(ep.stats().peers_evicted, 92);
    assert_eq!(ep.half_open_len(), 8);
    assert_eq!(ep.len(), 18);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, t0), 10);
    assert_eq!(ep.stats().drop_table_full, 0);
}

#[test]
fn forged_heartbeats_from_unknown_macs_are_bounded_the_same_way() {
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(64, 8), t0).expect("valid");
    let mut agents = connect_fake_agents(&mut ep, t0, 10, 0x6a6a_0000_0000);
    let mut buf = [0u8; 64];
    for i in 0..1000u64 {
        let n = forged_heartbeat(MacAddr::from_u64(FORGED + i), &mut buf);
        assert_eq!(
            ep.handle_frame(t0, &buf[..n]),
            Outcome::Dropped(Drop::NoSession)
        );
        drain(&mut ep, t0);
    }
    check_accounting(&ep);
    assert_eq!(ep.stats().sessions_reopened, 1000);
    assert_eq!(ep.stats().peers_evicted, 992);
    assert_eq!(ep.len(), 18);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, t0), 10);
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
    for i in 0..20u64 {
        let n = forged_syn(MacAddr::from_u64(FORGED + i), uuid_of(i), &mut buf);
        assert_eq!(ep.handle_frame(t0, &buf[..n]), Outcome::Handled);
        drain(&mut ep, t0);
    }
    assert_eq!(ep.len(), 12);
    assert_eq!(ep.half_open_len(), 2);
    assert_eq!(ep.stats().peers_evicted, 18);
    check_accounting(&ep);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, t0), 10);
}

#[test]
fn a_real_agent_completes_its_handshake_during_a_flood_and_is_then_safe() {
    // An agent whose handshake needs two frames from it: forged SYNs arrive in between
    // but fewer than the half-open limit, so it is not evicted; once established, no
    // number of forged SYNs evicts it.
    let t0 = Instant::from_millis(1);
    let mut ep = Endpoint::new(config(1024, 64), t0).expect("valid");
    let mut buf = [0u8; 256];
    let mut forged = 0u64;
    let mut flood = |ep: &mut Endpoint, count: u64| {
        for _ in 0..count {
            let n = forged_syn(
                MacAddr::from_u64(FORGED + forged),
                uuid_of(forged),
                &mut buf,
            );
            ep.handle_frame(t0, &buf[..n]);
            forged += 1;
        }
        drain(ep, t0);
    };
    flood(&mut ep, 500);
    let mut agents = connect_fake_agents(&mut ep, t0, 1, 0x6a6a_0000_0000);
    flood(&mut ep, 5000);
    assert_eq!(heartbeats_accepted(&mut ep, &mut agents, t0), 1);
    assert!(ep.is_established(ep.peer_by_mac(agents[0].mac).expect("kept")));
    check_accounting(&ep);
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
        // A frame every microsecond; timers (retransmissions of our SYNs) run as they
        // would in a driver.
        now += Duration::from_micros(1);
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
    assert_eq!(s.peers_added, FORGED_COUNT + 100);
    assert_eq!(s.peers_evicted + ep.half_open_len() as u64, FORGED_COUNT);
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
}
