//! A peer written from HVNCP.md's letter alone, against our real endpoints.
//!
//! Every frame the peer sends is built byte by byte from HVNCP.md's header table by the
//! small encoder below (Ethernet header, the 8-byte header, the checksum as the wrapping
//! sum of the header bytes but the checksum byte plus the payload bytes), and every frame
//! it reads is decoded by offsets: nothing of the crate's wire layer is used for the peer.
//! It does what the letter allows and the crate's own peers never do: it acknowledges
//! SYNs with a plain `ACK n`, writes verbs in lower case, refreshes an open session with
//! a SYN that carries neither ACKR nor properties, and repeats heartbeat numbers.

use std::time::Duration;

use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Outcome};
use dataplane::message::{HelloId, Uuid};
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

const MONITOR_MAC: [u8; 6] = [0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11];
const AGENT_MAC: [u8; 6] = [0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07];
const BROADCAST: [u8; 6] = [0xff; 6];
const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
const HM_UUID: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";

/// HVNCP.md §2 flag bits.
const ACKR: u8 = 0x80;
const ACK: u8 = 0x40;
const BEG: u8 = 0x20;
const END: u8 = 0x10;
const SYN: u8 = 0x04;
const HEL: u8 = 0x02;

/// An HVNCP v2.0 frame from HVNCP.md §1-§2: destination, source, EtherType 0x0600, then
/// version 2.0, number, flags, checksum, fragment index, big-endian payload length, the
/// payload, and zero padding to 60 bytes.
fn encode(dst: [u8; 6], src: [u8; 6], number: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("short payload");
    let [len_hi, len_lo] = len.to_be_bytes();
    let mut header = [2, 0, number, flags, 0, 0, len_hi, len_lo];
    let mut sum = 0u8;
    for (i, b) in header.iter().enumerate() {
        if i != 4 {
            sum = sum.wrapping_add(*b);
        }
    }
    for b in payload {
        sum = sum.wrapping_add(*b);
    }
    header[4] = sum;
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x06, 0x00]);
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    frame.resize(frame.len().max(60), 0);
    frame
}

/// A frame as the peer reads it, by offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    dst: [u8; 6],
    number: u8,
    flags: u8,
    payload: Vec<u8>,
}

fn decode(frame: &[u8]) -> Seen {
    assert!(frame.len() >= 22, "{} bytes", frame.len());
    assert_eq!(&frame[12..14], &[0x06, 0x00], "EtherType");
    assert_eq!(frame[14], 2, "major version");
    let len = usize::from(u16::from_be_bytes([frame[20], frame[21]]));
    let payload = frame[22..22 + len].to_vec();
    let mut sum = 0u8;
    for (i, b) in frame[14..22].iter().enumerate() {
        if i != 4 {
            sum = sum.wrapping_add(*b);
        }
    }
    for b in &payload {
        sum = sum.wrapping_add(*b);
    }
    assert_eq!(frame[18], sum, "checksum of {:02x?}", &frame[..22 + len]);
    Seen {
        dst: frame[..6].try_into().expect("6 bytes"),
        number: frame[16],
        flags: frame[17],
        payload,
    }
}

/// Everything the endpoint sends at `now`, after its timers due by then ran (as a
/// driver does).
fn sent(ep: &mut Endpoint, now: Instant) -> Vec<Seen> {
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    let mut buf = vec![0u8; 1514];
    std::iter::from_fn(|| ep.poll_transmit(now, &mut buf).map(|n| decode(&buf[..n]))).collect()
}

fn drain_events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s.as_bytes()).expect("uuid")
}

fn hello_id() -> HelloId {
    HelloId {
        secs: 1_556_303_548,
        nanos: 719_328_000,
        suffix: 38,
    }
}

/// A letter-following agent pairs with our monitor, acknowledging the monitor's SYN with
/// a plain ACK: it gets a bare `START_HB` (the default 10 s period), and its heartbeats,
/// lowercase verbs, refreshes and repeated numbers all count.
#[test]
fn a_spec_agent_acknowledging_with_plain_acks_is_monitored() {
    let t0 = Instant::from_millis(1);
    let config = EndpointConfig::monitor(MacAddr(MONITOR_MAC), uuid(HM_UUID), hello_id());
    let mut monitor = Endpoint::new(config, t0).expect("monitor");

    // The Hello, broadcast at start.
    let hello = sent(&mut monitor, t0);
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0].dst, BROADCAST);
    assert_eq!(hello[0].flags & HEL, HEL);

    // SYN with ACKR and BEG, the agent's properties, number 1 (the seed's).
    let props = format!("uuid={VM_UUID}:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0");
    let syn = encode(
        MONITOR_MAC,
        AGENT_MAC,
        1,
        SYN | ACKR | BEG,
        props.as_bytes(),
    );
    assert_eq!(syn[17], 0xa4);
    assert_eq!(monitor.handle_frame(t0, &syn), Outcome::Handled);
    let answer = sent(&mut monitor, t0);
    let monitor_syn = answer
        .iter()
        .find(|f| f.flags & SYN != 0 && f.flags & ACK == 0)
        .expect("the monitor's own SYN")
        .clone();
    assert_eq!(monitor_syn.flags & (ACKR | END), ACKR | END);
    assert!(
        answer
            .iter()
            .any(|f| f.flags & ACK != 0 && f.number == 1 && f.payload.is_empty()),
        "our SYN 1 acknowledged: {answer:?}"
    );

    // A plain ACK of the monitor's SYN: flags 0x40, its number, nothing else.
    let ack = encode(MONITOR_MAC, AGENT_MAC, monitor_syn.number, ACK, b"");
    assert_eq!(monitor.handle_frame(t0, &ack), Outcome::Handled);
    let events = drain_events(&mut monitor);
    assert!(
        events.iter().any(
            |e| matches!(e, EndpointEvent::Established { uuid: u, .. } if *u == uuid(VM_UUID))
        ),
        "the VM is discovered: {events:?}"
    );
    let start = sent(&mut monitor, t0);
    assert_eq!(start.len(), 1, "{start:?}");
    assert_eq!(
        start[0].payload, b"START_HB",
        "bare START_HB for the 10 s default"
    );
    assert_eq!(start[0].flags, ACKR | BEG | END);
    let ack = encode(MONITOR_MAC, AGENT_MAC, start[0].number, ACK, b"");
    assert_eq!(monitor.handle_frame(t0, &ack), Outcome::Handled);
    assert!(
        drain_events(&mut monitor)
            .iter()
            .any(|e| matches!(e, EndpointEvent::Delivered { .. })),
        "START_HB acknowledged by the plain ACK"
    );

    // Heartbeats numbered from the SYN's number, in both letter cases.
    let peer = monitor
        .peer_by_mac(MacAddr(AGENT_MAC))
        .expect("the agent's session");
    let mut now = t0;
    for (number, text) in [(1u8, &b"HB:"[..]), (2, b"hb:"), (3, b"Hb")] {
        now = now.saturating_add(Duration::from_secs(10));
        let hb = encode(MONITOR_MAC, AGENT_MAC, number, BEG | END, text);
        assert_eq!(monitor.handle_frame(now, &hb), Outcome::Heartbeat(peer));
        assert_eq!(monitor.last_heartbeat(peer), Some(now));
    }
    // A refresh: SYN without ACKR and without properties. Nothing is reset, nothing
    // answered.
    let refresh = encode(MONITOR_MAC, AGENT_MAC, 4, SYN, b"");
    assert_eq!(monitor.handle_frame(now, &refresh), Outcome::Handled);
    assert!(monitor.is_established(peer));
    assert!(drain_events(&mut monitor).is_empty());
    assert!(
        sent(&mut monitor, now).iter().all(|f| f.dst == BROADCAST),
        "only Hellos"
    );
    // A peer that repeats a heartbeat number (or whose numbers went backwards): still
    // alive, counted as duplicates.
    for number in [4u8, 4, 4, 200] {
        now = now.saturating_add(Duration::from_secs(10));
        let hb = encode(MONITOR_MAC, AGENT_MAC, number, BEG | END, b"HB:");
        assert_eq!(monitor.handle_frame(now, &hb), Outcome::Heartbeat(peer));
        assert_eq!(monitor.last_heartbeat(peer), Some(now));
    }
    // Whole messages without ACKR whatever BEG, END and the index say.
    now = now.saturating_add(Duration::from_secs(10));
    let odd = encode(MONITOR_MAC, AGENT_MAC, 5, 0, b"HB:");
    assert_eq!(monitor.handle_frame(now, &odd), Outcome::Heartbeat(peer));
    // Lowercase reliable verbs.
    let dbell = encode(MONITOR_MAC, AGENT_MAC, 6, ACKR | BEG | END, b"dbell:28");
    assert_eq!(monitor.handle_frame(now, &dbell), Outcome::Handled);
    assert!(
        drain_events(&mut monitor)
            .iter()
            .any(|e| matches!(e, EndpointEvent::Doorbell { vector: 0x28, .. }))
    );
    let acks: Vec<Seen> = sent(&mut monitor, now)
        .into_iter()
        .filter(|f| f.dst == AGENT_MAC)
        .collect();
    assert_eq!(
        acks,
        vec![Seen {
            dst: AGENT_MAC,
            number: 6,
            flags: ACK,
            payload: Vec::new()
        }]
    );

    // The session never failed: time passes, no SYN is retransmitted, nothing closes.
    let later = now.saturating_add(Duration::from_secs(15));
    let retransmitted: Vec<Seen> = sent(&mut monitor, later)
        .into_iter()
        .filter(|f| f.dst == AGENT_MAC)
        .collect();
    assert!(retransmitted.is_empty(), "{retransmitted:?}");
    assert!(monitor.is_established(peer));
    let stats = monitor.stats();
    assert_eq!(stats.handshakes_failed, 0);
    assert_eq!(stats.sessions_closed, 0);
    assert_eq!(stats.heartbeats_in, 5);
    assert_eq!(
        stats.heartbeats_duplicate, 3,
        "the second and third 4, and 200 (a number before the SYN's)"
    );
    assert_eq!(stats.syn_refreshes, 1);
    assert_eq!(stats.drops(), 0, "{stats:?}");
}

/// Our agent against a letter-following monitor that acknowledges the agent's SYN with a
/// plain ACK and sends a bare, lowercase `start_hb`: the agent heartbeats every 10 s.
#[test]
fn our_agent_pairs_with_a_spec_monitor() {
    let t0 = Instant::from_millis(1);
    let config = EndpointConfig::agent(MacAddr(AGENT_MAC), uuid(VM_UUID), "linux");
    let mut agent = Endpoint::new(config, t0).expect("agent");
    let hello = encode(BROADCAST, MONITOR_MAC, 0, HEL, b"1556303548.719328000.38");
    assert_eq!(agent.handle_frame(t0, &hello), Outcome::Handled);
    let syn = sent(&mut agent, t0);
    assert_eq!(syn.len(), 1);
    assert_eq!(syn[0].flags, SYN | ACKR | BEG);
    let text = String::from_utf8(syn[0].payload.clone()).expect("ASCII");
    assert!(
        text.starts_with(&format!("uuid={VM_UUID}:ostype=linux:")),
        "{text}"
    );
    assert!(
        text.contains(":inc="),
        "the agent announces its incarnation: {text}"
    );

    // The monitor's SYN (ACKR, END, its properties), then a plain ACK of the agent's.
    let props = format!("uuid={HM_UUID}:verHmRunning=2.0");
    let m_syn = encode(
        AGENT_MAC,
        MONITOR_MAC,
        9,
        SYN | ACKR | END,
        props.as_bytes(),
    );
    assert_eq!(agent.handle_frame(t0, &m_syn), Outcome::Handled);
    let ack = encode(AGENT_MAC, MONITOR_MAC, syn[0].number, ACK, b"");
    assert_eq!(agent.handle_frame(t0, &ack), Outcome::Handled);
    assert!(
        drain_events(&mut agent)
            .iter()
            .any(|e| matches!(e, EndpointEvent::Established { .. }))
    );
    let ack_of_ours = sent(&mut agent, t0);
    assert_eq!(ack_of_ours.len(), 1);
    assert_eq!(ack_of_ours[0].number, 9);
    assert_ne!(
        ack_of_ours[0].flags & ACK,
        0,
        "an ACK of 9 as the letter reads it"
    );

    // A bare START_HB, in lower case: 10 s, the first heartbeat at once.
    let start = encode(AGENT_MAC, MONITOR_MAC, 9, ACKR | BEG | END, b"start_hb");
    assert_eq!(agent.handle_frame(t0, &start), Outcome::Handled);
    assert!(drain_events(&mut agent).iter().any(|e| matches!(
        e,
        EndpointEvent::HeartbeatStarted { period, .. } if *period == Duration::from_secs(10)
    )));
    let out = sent(&mut agent, t0);
    assert!(
        out.iter().any(|f| f.flags == ACK && f.number == 9),
        "START_HB acknowledged: {out:?}"
    );
    let beats: Vec<&Seen> = out.iter().filter(|f| f.payload == b"HB:").collect();
    assert_eq!(beats.len(), 1, "{out:?}");
    assert_eq!(beats[0].flags, BEG | END);
    let first = beats[0].number;
    let mut numbers = vec![first];
    for k in 1..=3u64 {
        let at = t0.saturating_add(Duration::from_secs(10 * k));
        let out = sent(&mut agent, at);
        assert_eq!(out.len(), 1, "one heartbeat per period: {out:?}");
        numbers.push(out[0].number);
    }
    assert_eq!(
        numbers,
        (0..4u8).map(|k| first.wrapping_add(k)).collect::<Vec<_>>()
    );
    // The monitor refreshes the session: nothing changes.
    let refresh = encode(AGENT_MAC, MONITOR_MAC, 10, SYN, b"");
    assert_eq!(agent.handle_frame(t0, &refresh), Outcome::Handled);
    let peer = agent.peer_by_mac(MacAddr(MONITOR_MAC)).expect("known");
    assert!(agent.is_established(peer) && agent.is_heartbeating(peer));
    assert_eq!(agent.stats().drops(), 0, "{:?}", agent.stats());
}
