//! Deterministic link tests: a host monitor and agents, real endpoints, joined by the
//! simulated link (loss, duplication, reordering, delay) on a virtual clock.

use std::collections::BTreeMap;
use std::time::Duration;

use dataplane::endpoint::{Drop, Endpoint, EndpointConfig, EndpointEvent, Outcome, PeerId, Role};
use dataplane::message::{HelloId, Uuid};
use dataplane::session::{self, CloseReason, Priority};
use dataplane::sim::{LinkConfig, Network, NodeId, Rng};
use dataplane::time::Instant;
use dataplane::wire::{DEFAULT_ETHERTYPE, Flags, Frame, FrameBuilder, HvncpRepr, MacAddr, VERSION};

const MONITOR_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);

fn hello(n: u64) -> HelloId {
    HelloId {
        secs: 1_556_303_548 + n,
        nanos: 719_328_000,
        suffix: 38,
    }
}

fn monitor_config(hello_id: HelloId, session: session::Config) -> EndpointConfig {
    let mut c = EndpointConfig::monitor(
        MONITOR_MAC,
        Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid"),
        hello_id,
    );
    c.role = Role::Monitor {
        hello: hello_id,
        hello_period: Duration::from_secs(2),
        hb_period: Duration::from_secs(1),
    };
    c.session = session;
    c
}

fn agent_mac(i: u64) -> MacAddr {
    MacAddr::from_u64(0x6a6a_0ffd_0000 + i)
}

fn agent_config(i: u64, session: session::Config) -> EndpointConfig {
    let mut uuid = [0x61u8; 16];
    uuid[8..].copy_from_slice(&i.to_be_bytes());
    let mut c = EndpointConfig::agent(agent_mac(i), Uuid(uuid), "linux");
    c.session = session;
    c
}

/// A session configuration for a very lossy link: enough retries that a packet
/// (and its acknowledgement) gets through with near certainty, and a reassembly
/// timeout longer than a sender keeps trying.
fn lossy_link_session() -> session::Config {
    session::Config {
        max_retries: 16,
        rto_max: Duration::from_millis(800),
        reassembly_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(30),
        ..session::Config::default()
    }
}

fn established(net: &Network, node: NodeId) -> Vec<(PeerId, Instant)> {
    net.events()
        .iter()
        .filter(|(n, _, _)| *n == node)
        .filter_map(|(_, t, e)| match e {
            EndpointEvent::Established { peer, .. } => Some((*peer, *t)),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_completes_in_the_minimum_number_of_exchanges() {
    let mut net = Network::new(LinkConfig::PERFECT, 1);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_millis(10));
    // Hello, SYN+BEG, SYN+END, ACK of the agent's SYN, ACK of the monitor's SYN,
    // START_HB, its ACK, first heartbeat: 8 frames, 4 link crossings for the handshake.
    assert_eq!(net.link_stats().sent, 8, "{:?}", net.link_stats());
    let on_monitor = established(&net, m);
    let on_agent = established(&net, a);
    assert_eq!(on_monitor.len(), 1);
    assert_eq!(on_agent.len(), 1);
    // The agent is open after 3 one-way trips (Hello, SYN, SYN back), the monitor after 4.
    assert_eq!(on_agent[0].1, Instant::from_nanos(150_000));
    assert_eq!(on_monitor[0].1, Instant::from_nanos(200_000));
    let mon = net.endpoint(m);
    let peer = mon.peer_by_mac(agent_mac(1)).expect("agent known");
    assert!(
        mon.last_heartbeat(peer).is_some(),
        "first heartbeat arrived"
    );
    assert!(net.events().iter().any(|(n, _, e)| *n == a
        && matches!(e, EndpointEvent::HeartbeatStarted { period, .. } if *period == Duration::from_secs(1))));
}

#[test]
fn heartbeats_are_never_acknowledged() {
    let mut net = Network::new(LinkConfig::PERFECT, 2);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(1));
    let out_before = net.endpoint(m).stats().frames_out;
    let hellos_before = net.endpoint(m).stats().hellos_out;
    let hb_before = net.endpoint(m).stats().heartbeats_in;
    net.run_for(Duration::from_secs(60));
    let mon = net.endpoint(m).stats();
    let agent = net.endpoint(a).stats();
    let heartbeats = mon.heartbeats_in - hb_before;
    assert!((59..=61).contains(&heartbeats), "1 s period: {heartbeats}");
    assert_eq!(agent.heartbeats_out, mon.heartbeats_in, "perfect link");
    // Everything the monitor sent in that minute was a Hello: no acknowledgements.
    assert_eq!(mon.frames_out - out_before, mon.hellos_out - hellos_before);
    assert_eq!(agent.acks_unexpected + mon.acks_unexpected, 0);
}

/// One message per line: (sender node, priority, bytes).
type Sent = (NodeId, Priority, Vec<u8>);

fn random_message(rng: &mut Rng, big: bool) -> Vec<u8> {
    let len = if big {
        64 * 1024
    } else {
        (rng.next_u64() % 4000) as usize
    };
    // An application message (`GMSG:`, opaque arguments): a tag unique to the
    // message, then pseudo-random bytes.
    let mut v = b"GMSG:".to_vec();
    v.extend_from_slice(format!("{:016x}", rng.next_u64()).as_bytes());
    v.extend((0..len.saturating_sub(v.len())).map(|_| rng.next_u64().to_le_bytes()[0]));
    v
}

#[test]
fn every_reliable_message_arrives_exactly_once_in_order_under_20_percent_loss() {
    for seed in 20..28 {
        exactly_once_in_order(seed);
    }
}

fn exactly_once_in_order(seed: u64) {
    let cfg = lossy_link_session();
    let mut net = Network::new(LinkConfig::lossy(0.20), seed);
    let a = net.add(agent_config(1, cfg)).expect("valid");
    let m = net.add(monitor_config(hello(0), cfg)).expect("valid");
    net.run_for(Duration::from_secs(20));
    let on_monitor = established(&net, m);
    let on_agent = established(&net, a);
    assert!(
        !on_monitor.is_empty() && !on_agent.is_empty(),
        "handshake done under loss"
    );
    let m_peer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    let a_peer = net.endpoint(a).peer_by_mac(MONITOR_MAC).expect("known");
    net.take_events();

    let mut rng = Rng::new(seed * 31);
    let mut sent: Vec<Sent> = Vec::new();
    for round in 0..30 {
        for (node, peer) in [(m, m_peer), (a, a_peer)] {
            let priority = if rng.chance(0.3) {
                Priority::Urgent
            } else {
                Priority::Normal
            };
            let body = random_message(&mut rng, round % 10 == 0);
            net.send(node, peer, priority, &body).expect("accepted");
            sent.push((node, priority, body));
        }
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(Duration::from_secs(120));

    let stats = net.link_stats();
    assert!(
        stats.lost * 100 >= 15 * (stats.lost + stats.delivered) && stats.duplicated > 20,
        "the link was as bad as asked: {stats:?}"
    );
    let mut received: BTreeMap<(NodeId, Priority), Vec<Vec<u8>>> = BTreeMap::new();
    let mut delivered = 0;
    for (node, _, event) in net.take_events() {
        match event {
            EndpointEvent::Message { payload, .. } => {
                // Which priority it was sent at: look it up by content (tags are unique).
                let (from, priority, _) = sent
                    .iter()
                    .find(|(n, _, b)| *n != node && *b == payload)
                    .expect("every delivered message is one that was sent, intact");
                received
                    .entry((*from, *priority))
                    .or_default()
                    .push(payload);
            }
            EndpointEvent::Delivered { .. } => delivered += 1,
            EndpointEvent::Closed { reason, .. } => panic!("seed {seed}: session failed: {reason}"),
            _ => {}
        }
    }
    for key in [m, a]
        .into_iter()
        .flat_map(|n| [(n, Priority::Normal), (n, Priority::Urgent)])
    {
        let expected: Vec<&Vec<u8>> = sent
            .iter()
            .filter(|(n, p, _)| (*n, *p) == key)
            .map(|(_, _, b)| b)
            .collect();
        let got: Vec<&Vec<u8>> = received
            .get(&key)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        assert_eq!(
            got.len(),
            expected.len(),
            "seed {seed} {key:?}: each message exactly once"
        );
        assert!(got == expected, "seed {seed} {key:?}: in the order sent");
    }
    assert_eq!(
        delivered,
        sent.len(),
        "seed {seed}: every sender saw every message acknowledged"
    );
}

#[test]
fn default_config_under_heavy_loss_fails_loudly_never_silently() {
    // With the default 5 retries a 20 % loss link (36 % round-trip loss) exhausts a
    // packet's retries now and then. What must never happen: a message delivered twice,
    // damaged, or reported delivered when it was not.
    let mut net = Network::new(LinkConfig::lossy(0.20), 7);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(30));
    let mut rng = Rng::new(5);
    let mut bodies = Vec::new();
    for _ in 0..40 {
        let Some(peer) = net.endpoint(m).peer_by_mac(agent_mac(1)) else {
            break;
        };
        let body = random_message(&mut rng, true);
        if net.send(m, peer, Priority::Normal, &body).is_ok() {
            bodies.push(body);
        }
        net.run_for(Duration::from_secs(3));
    }
    net.run_for(Duration::from_secs(60));
    let mut seen = Vec::new();
    for (node, _, e) in net.take_events() {
        if let (true, EndpointEvent::Message { payload, .. }) = (node == a, e) {
            assert!(bodies.contains(&payload), "intact");
            assert!(!seen.contains(&payload), "never twice");
            seen.push(payload);
        }
    }
    assert!(!seen.is_empty());
}

#[test]
fn urgent_message_overtakes_a_long_normal_one() {
    let mut link = LinkConfig::PERFECT;
    link.delay = Duration::from_millis(1);
    let mut net = Network::new(link, 3);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_millis(100));
    let peer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    net.take_events();
    let mut long = b"GMSG:".to_vec();
    long.resize(64 * 1024, b'n');
    net.send(m, peer, Priority::Normal, &long)
        .expect("accepted");
    net.send(m, peer, Priority::Urgent, b"GMSG:urgent")
        .expect("accepted");
    net.run_for(Duration::from_secs(1));
    let order: Vec<usize> = net
        .events()
        .iter()
        .filter(|(n, _, _)| *n == a)
        .filter_map(|(_, _, e)| match e {
            EndpointEvent::Message { payload, .. } => Some(payload.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec![11, 64 * 1024],
        "urgent first, then the long one, intact"
    );
}

#[test]
fn monitor_restart_leads_to_a_fresh_session() {
    let mut net = Network::new(LinkConfig::PERFECT, 4);
    let agents: Vec<NodeId> = (1..=3)
        .map(|i| {
            net.add(agent_config(i, session::Config::default()))
                .expect("valid")
        })
        .collect();
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(3));
    net.take_events();
    // The monitor restarts: a new endpoint, a new Hello identifier.
    net.restart(m, monitor_config(hello(1), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(3));
    let events = net.take_events();
    for a in &agents {
        assert!(
            events.iter().any(|(n, _, e)| n == a
                && matches!(e, EndpointEvent::MonitorRestarted { hello: h, .. } if *h == hello(1))),
            "agent {a:?} noticed the new incarnation"
        );
        assert!(
            events
                .iter()
                .any(|(n, _, e)| n == a && matches!(e, EndpointEvent::Established { .. }))
        );
    }
    let discovered = events
        .iter()
        .filter(|(n, _, e)| *n == m && matches!(e, EndpointEvent::Established { .. }))
        .count();
    assert_eq!(discovered, 3, "the new monitor discovered every VM");
    let mon = net.endpoint(m);
    for i in 1..=3 {
        let peer = mon.peer_by_mac(agent_mac(i)).expect("known");
        assert!(mon.last_heartbeat(peer).is_some(), "heartbeats resumed");
    }
}

#[test]
fn retries_running_out_close_the_session_and_the_next_hello_reopens_it() {
    let mut net = Network::new(LinkConfig::PERFECT, 5);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(1));
    let peer = net.endpoint(a).peer_by_mac(MONITOR_MAC).expect("known");
    net.take_events();
    // The agent's cable is pulled while it rings the doorbell.
    net.set_link_up(a, false);
    net.send(a, peer, Priority::Normal, b"DBELL:28")
        .expect("accepted");
    net.run_for(Duration::from_secs(13));
    let events = net.take_events();
    let closed: Vec<&CloseReason> = events
        .iter()
        .filter_map(|(n, _, e)| match e {
            EndpointEvent::Closed { reason, .. } if *n == a => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "{events:?}");
    assert!(matches!(
        closed[0],
        CloseReason::RetriesExhausted { retries: 5, .. }
    ));
    assert!(
        events
            .iter()
            .any(|(n, _, e)| *n == a && matches!(e, EndpointEvent::Lost { .. }))
    );
    assert!(!net.endpoint(a).is_established(peer));
    // Cable back: the next Hello (every 2 s here) reopens the session.
    net.set_link_up(a, true);
    net.run_for(Duration::from_secs(3));
    assert!(net.endpoint(a).is_established(peer));
    assert!(net.endpoint(a).is_heartbeating(peer), "START_HB again");
    let mpeer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    assert!(net.endpoint(m).is_established(mpeer));
}

#[test]
fn monitor_reopens_when_its_side_failed_but_the_agent_did_not_notice() {
    let mut net = Network::new(LinkConfig::PERFECT, 6);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(1));
    let mpeer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    // The monitor's sends fail while the agent is unreachable; the agent's
    // unacknowledged heartbeats cannot tell it anything went wrong.
    net.set_link_up(a, false);
    net.send(m, mpeer, Priority::Normal, b"STOP_HB")
        .expect("accepted");
    net.run_for(Duration::from_secs(13));
    assert!(!net.endpoint(m).is_established(mpeer));
    net.set_link_up(a, true);
    net.run_for(Duration::from_secs(2));
    assert!(
        net.endpoint(m).is_established(mpeer),
        "reopened by the monitor"
    );
    let apeer = net.endpoint(a).peer_by_mac(MONITOR_MAC).expect("known");
    assert!(net.endpoint(a).is_heartbeating(apeer));
    let hb = net.endpoint(m).stats().heartbeats_in;
    net.run_for(Duration::from_secs(5));
    assert!(
        net.endpoint(m).stats().heartbeats_in >= hb + 4,
        "heartbeats flow again"
    );
}

#[test]
fn graceful_agent_stop_is_reported_and_acknowledged() {
    let mut net = Network::new(LinkConfig::lossy(0.1), 8);
    let cfg = lossy_link_session();
    let a = net.add(agent_config(1, cfg)).expect("valid");
    let m = net.add(monitor_config(hello(0), cfg)).expect("valid");
    net.run_for(Duration::from_secs(10));
    let sent = net.shutdown(a);
    assert_eq!(sent.len(), 1);
    net.run_for(Duration::from_secs(30));
    let events = net.take_events();
    assert!(
        events
            .iter()
            .any(|(n, _, e)| *n == m && matches!(e, EndpointEvent::Shutdown { .. }))
    );
    assert!(
        events.iter().any(|(n, _, e)| *n == a
            && matches!(e, EndpointEvent::Delivered { id, .. } if *id == sent[0].1))
    );
    let peer = net.endpoint(a).peer_by_mac(MONITOR_MAC).expect("known");
    assert!(!net.endpoint(a).is_heartbeating(peer));
}

#[test]
fn restarted_monitor_reopens_from_a_heartbeat_when_the_hello_was_missed() {
    let mut net = Network::new(LinkConfig::PERFECT, 9);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let slow_hello = |h| {
        let mut c = monitor_config(h, session::Config::default());
        c.role = Role::Monitor {
            hello: h,
            hello_period: Duration::from_secs(30),
            hb_period: Duration::from_secs(1),
        };
        c
    };
    let m = net.add(slow_hello(hello(0))).expect("valid");
    net.run_for(Duration::from_secs(3));
    // The monitor restarts while the agent's link is briefly down: its one Hello is lost.
    net.set_link_up(a, false);
    net.restart(m, slow_hello(hello(1))).expect("valid");
    net.run_for(Duration::from_millis(100));
    net.set_link_up(a, true);
    net.take_events();
    net.run_for(Duration::from_secs(2));
    let mon = net.endpoint(m);
    let peer = mon
        .peer_by_mac(agent_mac(1))
        .expect("known from its heartbeat");
    assert!(
        mon.is_established(peer),
        "reopened without waiting 30 s for a Hello"
    );
    assert_eq!(mon.stats().sessions_reopened, 1);
    assert!(
        net.events()
            .iter()
            .any(|(n, _, e)| *n == a && matches!(e, EndpointEvent::HeartbeatStarted { .. }))
    );
}

#[test]
fn restarted_agent_pairs_again_on_the_next_hello() {
    let mut net = Network::new(LinkConfig::PERFECT, 10);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    net.run_for(Duration::from_secs(1));
    // The agent process restarts: same MAC, same VM, a new endpoint.
    net.restart(a, agent_config(1, session::Config::default()))
        .expect("valid");
    net.take_events();
    net.run_for(Duration::from_secs(3));
    let mon = net.endpoint(m);
    let peer = mon.peer_by_mac(agent_mac(1)).expect("known");
    assert!(mon.is_established(peer));
    let apeer = net.endpoint(a).peer_by_mac(MONITOR_MAC).expect("known");
    assert!(net.endpoint(a).is_heartbeating(apeer));
    let syns = net
        .events()
        .iter()
        .filter(|(n, _, e)| *n == m && matches!(e, EndpointEvent::AgentSyn { .. }))
        .count();
    assert_eq!(
        syns, 1,
        "its new SYN was taken as new, not as a retransmission"
    );
}

#[test]
fn a_refused_agent_is_not_reopened_by_its_heartbeats() {
    let mut net = Network::new(LinkConfig::PERFECT, 11);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    let m = net
        .add(monitor_config(hello(0), session::Config::default()))
        .expect("valid");
    let _ = a;
    net.run_for(Duration::from_secs(1));
    let peer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    net.refuse(m, peer); // e.g. its VM UUID is registered with another MAC
    net.run_for(Duration::from_secs(10));
    let mon = net.endpoint(m);
    assert!(!mon.is_established(peer));
    // A refused peer holds no session: its heartbeats come from a MAC we do not know.
    assert_eq!(mon.peer_by_mac(agent_mac(1)), None);
    assert_eq!(mon.stats().sessions_reopened, 0);
    assert_eq!(mon.stats().syn_refused, 1);
    assert!(
        mon.stats().drop_no_session >= 9,
        "its heartbeats are dropped"
    );
}

#[test]
fn endpoint_config_values_are_validated() {
    let mut c = monitor_config(hello(0), session::Config::default());
    c.role = Role::Monitor {
        hello: hello(0),
        hello_period: Duration::ZERO,
        hb_period: Duration::from_secs(1),
    };
    let e = c.validate().expect_err("zero hello period");
    assert_eq!(e.key, "hello_period");
    c.role = Role::Monitor {
        hello: hello(0),
        hello_period: Duration::from_secs(30),
        hb_period: Duration::from_secs(7200),
    };
    assert_eq!(c.validate().expect_err("2 h heartbeat").key, "hb_period");
    let mut a = agent_config(1, session::Config::default());
    a.role = Role::Agent {
        ostype: "linux 6.1".into(),
    };
    let e = a.validate().expect_err("space in ostype");
    assert_eq!(e.key, "ostype");
    assert!(e.to_string().contains("\"linux 6.1\""), "{e}");
    a.role = Role::Agent {
        ostype: "linux".into(),
    };
    a.reassembly_budget = 10;
    assert_eq!(
        a.validate().expect_err("tiny budget").key,
        "reassembly_budget"
    );
}

#[test]
fn discarded_partial_messages_release_the_endpoint_budget() {
    let mut link = LinkConfig::PERFECT;
    link.delay = Duration::from_millis(1);
    let mut net = Network::new(link, 12);
    let a = net
        .add(agent_config(1, session::Config::default()))
        .expect("valid");
    // One packet in flight at a time, so the message leaves packet by packet.
    let one_by_one = session::Config {
        window: 1,
        ..session::Config::default()
    };
    let m = net
        .add(monitor_config(hello(0), one_by_one))
        .expect("valid");
    net.run_for(Duration::from_secs(1));
    let peer = net.endpoint(m).peer_by_mac(agent_mac(1)).expect("known");
    let mut body = b"GMSG:".to_vec();
    body.resize(4000, b'x');
    net.send(m, peer, Priority::Normal, &body)
        .expect("accepted");
    // Two of its three packets reach the agent, then the monitor's cable is pulled.
    net.run_for(Duration::from_micros(2500));
    net.set_link_up(m, false);
    net.run_for(Duration::from_millis(10));
    assert_eq!(
        net.endpoint(a).reassembly_bytes(),
        2 * 1492,
        "a partial message is held"
    );
    net.run_for(Duration::from_secs(20));
    assert_eq!(
        net.endpoint(a).reassembly_bytes(),
        0,
        "released when discarded"
    );
    assert_eq!(net.endpoint(a).stats().drop_reassembly, 1);
}

/// Every frame `ep` has to send at `now` (after its due timers ran), as bytes.
fn outbox(ep: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    let mut buf = vec![0u8; 1514];
    std::iter::from_fn(|| ep.poll_transmit(now, &mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// Shuttle frames between a monitor and an agent until both are quiet; returns what the
/// agent sent (to replay later).
fn pump(monitor: &mut Endpoint, agent: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut from_agent = Vec::new();
    loop {
        let down = outbox(monitor, now);
        let up = outbox(agent, now);
        if down.is_empty() && up.is_empty() {
            return from_agent;
        }
        for f in &down {
            agent.handle_frame(now, f);
        }
        for f in &up {
            monitor.handle_frame(now, f);
        }
        from_agent.extend(up);
    }
}

fn is_syn(frame: &[u8]) -> bool {
    Frame::parse(frame, DEFAULT_ETHERTYPE).is_ok_and(|f| {
        f.header.flags.contains(Flags::SYN | Flags::ACKR) && !f.header.flags.contains(Flags::ACK)
    })
}

/// One run of the agent at `agent_mac(1)` (a process start: a new incarnation), paired
/// with `monitor` through a new Hello. Returns its endpoint and its SYNs.
fn agent_run(
    monitor: &mut Endpoint,
    incarnation: Option<u64>,
    hello_id: HelloId,
    now: Instant,
) -> (Endpoint, Vec<Vec<u8>>) {
    let mut config = agent_config(1, session::Config::default());
    config.incarnation = incarnation;
    let mut agent = Endpoint::new(config, now).expect("agent");
    let hello = hello_frame(hello_id);
    agent.handle_frame(now, &hello);
    let sent = pump(monitor, &mut agent, now);
    let syns: Vec<Vec<u8>> = sent.into_iter().filter(|f| is_syn(f)).collect();
    assert!(!syns.is_empty(), "the run sent its SYN");
    (agent, syns)
}

/// A Hello from the monitor, as the agent would receive it.
fn hello_frame(id: HelloId) -> Vec<u8> {
    let mut text = Vec::new();
    id.encode(&mut text);
    let header = HvncpRepr {
        version: VERSION,
        number: 0,
        flags: Flags::HEL,
        frag_index: 0,
        payload_len: u16::try_from(text.len()).expect("short"),
    };
    let mut buf = vec![0u8; 64];
    let len = FrameBuilder {
        dst: MacAddr::BROADCAST,
        src: MONITOR_MAC,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(&mut buf, &header, &text)
    .expect("fits");
    buf.truncate(len);
    buf
}

/// docs/hvncp.md §3.8: a SYN of a previous run of the agent never reopens the session of
/// a later run, however late it arrives; the monitor remembers the last
/// `REMEMBERED_INCARNATIONS` runs of a MAC, and an agent without incarnation still pairs.
#[test]
fn a_late_syn_of_a_previous_agent_run_never_reopens_the_session() {
    let mut now = Instant::from_millis(1);
    let mut monitor =
        Endpoint::new(monitor_config(hello(0), session::Config::default()), now).expect("monitor");
    outbox(&mut monitor, now);
    let peer_of = |m: &Endpoint| m.peer_by_mac(agent_mac(1)).expect("known");
    // Runs 1..=10 of the agent, each with its own incarnation; keep every SYN it sent.
    let mut runs: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut agent = None;
    for run in 1..=10u64 {
        now = now.saturating_add(Duration::from_secs(60));
        let (a, syns) = agent_run(&mut monitor, Some(0x1000 + run), hello(0), now);
        let peer = peer_of(&monitor);
        assert!(monitor.is_established(peer), "run {run} pairs");
        runs.push(syns);
        agent = Some(a);
    }
    let mut agent = agent.expect("a run");
    while monitor.poll_event().is_some() {}
    let peer = peer_of(&monitor);
    // An hour later, SYNs of runs 2..=9 arrive: every one is refused, nothing answered,
    // the session of run 10 untouched and still heartbeating.
    now = now.saturating_add(Duration::from_secs(3600));
    let before = monitor.stats().clone();
    for syns in &runs[1..9] {
        for syn in syns {
            assert_eq!(
                monitor.handle_frame(now, syn),
                Outcome::Dropped(Drop::OldIncarnation)
            );
        }
    }
    let refused: u64 = runs[1..9].iter().map(|s| s.len() as u64).sum();
    assert_eq!(
        monitor.stats().syn_old_incarnation - before.syn_old_incarnation,
        refused
    );
    assert!(
        monitor.poll_event().is_none(),
        "no AgentSyn, no Established"
    );
    assert!(
        outbox(&mut monitor, now)
            .iter()
            .all(|f| Frame::parse(f, DEFAULT_ETHERTYPE).is_ok_and(|f| f.dst.is_broadcast())),
        "silence toward the agent (Hellos only)"
    );
    assert!(monitor.is_established(peer));
    let hb = outbox(&mut agent, now);
    assert!(!hb.is_empty(), "run 10 heartbeats");
    for f in &hb {
        assert_eq!(monitor.handle_frame(now, f), Outcome::Heartbeat(peer));
    }
    // The current run's own SYN is not refused: an hour later it is a new SYN of that
    // run (past the retransmission span it cannot be a copy), and the session reopens.
    let current = runs[9][0].clone();
    assert_eq!(monitor.handle_frame(now, &current), Outcome::Handled);
    assert!(
        std::iter::from_fn(|| monitor.poll_event())
            .any(|e| matches!(e, EndpointEvent::AgentSyn { .. }))
    );
    pump(&mut monitor, &mut agent, now);
    assert!(monitor.is_established(peer));
    while monitor.poll_event().is_some() {}
    // Memory is bounded: run 1 is beyond the last REMEMBERED_INCARNATIONS (8) and its
    // SYN counts as a new run, which the monitor takes (docs/hvncp.md §3.8).
    assert_eq!(dataplane::endpoint::REMEMBERED_INCARNATIONS, 8);
    assert_eq!(monitor.handle_frame(now, &runs[0][0]), Outcome::Handled);
    assert!(
        std::iter::from_fn(|| monitor.poll_event())
            .any(|e| matches!(e, EndpointEvent::AgentSyn { .. })),
        "a forgotten run is a new one"
    );
    // An agent that announces no incarnation (the seed's) pairs like before, and the
    // runs before it stay refused.
    now = now.saturating_add(Duration::from_secs(60));
    let (_old_style, syns) = agent_run(&mut monitor, None, hello(0), now);
    assert!(monitor.is_established(peer_of(&monitor)));
    assert!(
        !String::from_utf8_lossy(
            Frame::parse(&syns[0], DEFAULT_ETHERTYPE)
                .expect("valid")
                .payload
        )
        .contains("inc="),
        "no incarnation announced"
    );
    // Remembered now: runs 4..=10 and run 1 (taken again above); runs 2 and 3 were the
    // oldest and made room.
    for syns in runs[3..].iter().chain(&runs[..1]) {
        assert_eq!(
            monitor.handle_frame(now, &syns[0]),
            Outcome::Dropped(Drop::OldIncarnation)
        );
    }
}

/// A handshake that fails is counted and reported with the peer's MAC and the reason.
#[test]
fn a_failed_handshake_is_counted_and_reported_with_mac_and_reason() {
    let mut now = Instant::from_millis(1);
    let mut monitor =
        Endpoint::new(monitor_config(hello(0), session::Config::default()), now).expect("monitor");
    outbox(&mut monitor, now);
    let mut agent = Endpoint::new(agent_config(1, session::Config::default()), now).expect("agent");
    agent.handle_frame(now, &hello_frame(hello(0)));
    // The agent's SYN reaches the monitor; nothing of the monitor reaches the agent, so
    // the monitor's SYN is never acknowledged.
    for f in outbox(&mut agent, now) {
        monitor.handle_frame(now, &f);
    }
    let mut events = Vec::new();
    let mut to_agent = 0;
    let end = now + Duration::from_secs(20);
    while let Some(t) = monitor.poll_timeout().filter(|&t| t <= end) {
        now = t;
        to_agent += outbox(&mut monitor, now)
            .iter()
            .filter(|f| Frame::parse(f, DEFAULT_ETHERTYPE).is_ok_and(|f| f.dst == agent_mac(1)))
            .count();
        events.extend(std::iter::from_fn(|| monitor.poll_event()));
    }
    let failed: Vec<(MacAddr, CloseReason)> = events
        .iter()
        .filter_map(|e| match e {
            EndpointEvent::Closed { mac, reason, .. } => Some((*mac, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].0, agent_mac(1));
    assert!(failed[0].1.is_handshake());
    assert!(
        matches!(
            failed[0].1,
            CloseReason::SynUnacknowledged { retries: 5, .. }
        ),
        "{:?}",
        failed[0].1
    );
    assert!(
        failed[0].1.to_string().contains("SYN"),
        "the reason reads as a handshake failure: {}",
        failed[0].1
    );
    assert_eq!(to_agent, 1 + 1 + 5, "SYN, its ACK, 5 retransmissions");
    assert_eq!(monitor.stats().handshakes_failed, 1);
    assert_eq!(monitor.stats().sessions_closed, 1);
}
